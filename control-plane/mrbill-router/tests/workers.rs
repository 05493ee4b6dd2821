//! Each worker thread keeps its own copy of the compiled routes and its own counters, so
//! requests on different workers never write the same memory; what a client sees must not
//! depend on the worker its connection landed on. Connections are handed to the workers in
//! turn, so each of N clients with one kept connection is served by a different worker.

mod common;

use axum::Router;
use cell_model::route_feed::{RouteState, RouteTable};
use common::{route, router_with};
use mrbill_router::{AppState, Rate};

const WORKERS: usize = 3;

async fn backend() -> String {
    common::serve(Router::new().fallback(|| async { "ok" })).await
}

/// One client per worker, each keeping its one connection.
fn clients() -> Vec<reqwest::Client> {
    (0..WORKERS)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client")
        })
        .collect()
}

async fn statuses(clients: &[reqwest::Client], url: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for client in clients {
        let res = client.get(url).send().await.expect("request");
        out.push(res.status().as_u16());
    }
    out
}

fn table(routes: Vec<cell_model::route_feed::RouteEntry>, revision: u64) -> RouteTable {
    let mut table = RouteTable::default();
    table.apply(cell_model::route_feed::RouteEvent::Snapshot { revision, routes });
    table
}

#[tokio::test]
async fn a_route_change_reaches_every_worker_before_its_next_request() {
    let poc = backend().await;
    let (api, state): (_, AppState) =
        router_with(vec![route("acme", RouteState::Active, &poc)], None, |c| {
            c.workers = WORKERS
        })
        .await;
    let url = format!("{}/t/acme/v1/pocs", api.base);
    let clients = clients();
    assert_eq!(statuses(&clients, &url).await, [200; WORKERS]);

    state
        .set_table(table(vec![route("acme", RouteState::Suspended, &poc)], 2))
        .expect("table");
    assert_eq!(statuses(&clients, &url).await, [403; WORKERS]);

    // A tenant added later is routed by every worker, and the first one again too.
    state
        .set_table(table(
            vec![
                route("acme", RouteState::Active, &poc),
                route("globex", RouteState::Active, &poc),
            ],
            3,
        ))
        .expect("table");
    assert_eq!(statuses(&clients, &url).await, [200; WORKERS]);
    let globex = format!("{}/t/globex/v1/pocs", api.base);
    assert_eq!(statuses(&clients, &globex).await, [200; WORKERS]);
}

#[tokio::test]
async fn the_tenants_budget_and_counters_are_one_across_the_workers() {
    let poc = backend().await;
    let (api, state) = router_with(vec![route("acme", RouteState::Active, &poc)], None, |c| {
        c.workers = WORKERS;
        c.tenant_limit = Rate::new(0.01, 4.0);
    })
    .await;
    let url = format!("{}/t/acme/v1/pocs", api.base);
    let clients = clients();
    // Four tokens in all, whichever workers the requests reach: the fifth and sixth are refused.
    let mut seen = statuses(&clients, &url).await;
    seen.extend(statuses(&clients, &url).await);
    seen.sort_unstable();
    assert_eq!(seen, [200, 200, 200, 200, 429, 429]);

    let metrics = common::serve(mrbill_router::metrics::router(state)).await;
    let text = reqwest::get(format!("{metrics}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        "mrbill_router_requests_total{tenant=\"acme\",code=\"2xx\"} 4",
        "mrbill_router_requests_total{tenant=\"acme\",code=\"4xx\"} 2",
        "mrbill_router_rate_limited_total{tenant=\"acme\"} 2",
    ] {
        assert!(text.contains(&format!("{line}\n")), "{line} in\n{text}");
    }
}
