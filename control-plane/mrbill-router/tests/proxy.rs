//! The router against a real upstream HTTP server (an echo standing in for a cell service):
//! prefix routing, path and host forms, header rules, route states, resolve, snapshots.

mod common;

use axum::Router;
use axum::extract::Request;
use cell_model::route_feed::{RouteState, RouteTable};
use common::{route, router, router_with};
use serde_json::json;

/// An upstream that answers with what it received.
async fn echo() -> String {
    let app = Router::new().fallback(|req: Request| async move {
        let h = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        axum::Json(json!({ "path": req.uri().path(), "query": req.uri().query(), "cell": h("x-cell-id"), "xff": h("x-forwarded-for"), "prefix": h("x-forwarded-prefix") }))
    });
    common::serve(app).await
}

#[tokio::test]
async fn requests_reach_the_tenants_service_with_router_set_headers() {
    let upstream = echo().await;
    let (api, _) = router(vec![route("acme", RouteState::Active, &upstream)], None).await;
    let spoofing = api
        .with_header("x-cell-id", "c-evil")
        .with_header("x-forwarded-for", "6.6.6.6")
        .with_header("x-forwarded-prefix", "https://evil.example");
    let res = spoofing.get("/t/acme/v1/pocs?q=kube").await;
    let body = res.assert_status(200);
    assert_eq!(body["path"], "/v1/pocs");
    assert_eq!(body["query"], "q=kube");
    assert_eq!(body["cell"], "c-acme", "the client's X-Cell-Id is replaced");
    assert_eq!(
        body["xff"], "127.0.0.1",
        "the client's X-Forwarded-For is replaced"
    );
    assert_eq!(
        body["prefix"], "/t/acme",
        "the path form's prefix, for links the cell hands out"
    );
    let spec = api.get("/t/acme/poc/openapi.json").await;
    assert_eq!(spec.assert_status(200)["path"], "/openapi.json");
    let by_host = api
        .with_header("host", "acme.mrbill.test")
        .with_header("x-forwarded-prefix", "/t/evil")
        .get("/v1/users/me")
        .await;
    let body = by_host.assert_status(200);
    assert_eq!(body["path"], "/v1/users/me");
    assert_eq!(
        body["prefix"], "",
        "the host form has no prefix; a client's is dropped"
    );
}

#[tokio::test]
async fn unknown_suspended_frozen_and_unroutable_requests_get_their_codes() {
    let upstream = echo().await;
    let (api, _) = router(
        vec![
            route("acme", RouteState::Active, &upstream),
            route("globex", RouteState::Suspended, &upstream),
            route("initech", RouteState::Frozen, &upstream),
            route("hooli", RouteState::Active, "http://127.0.0.1:1"),
        ],
        None,
    )
    .await;
    api.get("/t/nobody/v1/pocs")
        .await
        .assert_error(404, "tenant_not_found");
    api.get("/t/globex/v1/pocs")
        .await
        .assert_error(403, "tenant_suspended");
    let frozen = api.get("/t/initech/v1/pocs").await;
    frozen.assert_error(503, "unavailable");
    assert!(frozen.headers.contains_key("retry-after"));
    api.get("/t/acme/internal/v1/users/x/token-version")
        .await
        .assert_error(404, "not_found");
    api.get("/t/acme/v1/dojos")
        .await
        .assert_error(503, "unavailable");
    let down = api.get("/t/hooli/v1/pocs").await;
    down.assert_error(503, "unavailable");
    assert!(down.headers.contains_key("retry-after"));
    api.get("/v1/pocs").await.assert_error(404, "not_found");
}

#[tokio::test]
async fn resolve_finds_tenants_by_slug_or_email_and_returns_the_router_endpoint() {
    let (api, _) = router(
        vec![route("acme", RouteState::Active, "http://127.0.0.1:1")],
        None,
    )
    .await;
    let by_slug = api.get("/v1/resolve?tenant=acme").await;
    let body = by_slug.assert_status(200).clone();
    assert_eq!(
        (body["cell"].as_str(), body["status"].as_str()),
        (Some("c-acme"), Some("active"))
    );
    assert_eq!(body["endpoint"], format!("{}/t/acme", api.base));
    assert_eq!(
        api.get("/v1/resolve?email=ada@ACME.com")
            .await
            .assert_status(200)["tenant"],
        "acme"
    );
    api.get("/v1/resolve?tenant=nobody")
        .await
        .assert_error(404, "tenant_not_found");
    api.get("/v1/resolve")
        .await
        .assert_error(400, "invalid_parameter");
    api.get("/v1/resolve?tenant=a&email=b")
        .await
        .assert_error(400, "invalid_parameter");
}

#[tokio::test]
async fn a_restarted_router_serves_from_its_snapshot() {
    let upstream = echo().await;
    let snapshot = std::env::temp_dir().join(format!("routes-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&snapshot);
    router(
        vec![route("acme", RouteState::Active, &upstream)],
        Some(snapshot.clone()),
    )
    .await;
    // A new router with no feed at all: the snapshot alone routes.
    let (api, _) = router(Vec::new(), Some(snapshot.clone())).await;
    assert_eq!(
        api.get("/t/acme/v1/pocs").await.assert_status(200)["cell"],
        "c-acme"
    );
    std::fs::remove_file(snapshot).ok();
}

#[tokio::test]
async fn a_tenant_over_its_limit_gets_429_and_others_are_unaffected() {
    let upstream = echo().await;
    let table = vec![
        route("acme", RouteState::Active, &upstream),
        route("globex", RouteState::Active, &upstream),
    ];
    let (api, state) = router_with(table.clone(), None, |c| {
        c.tenant_limit = mrbill_router::Rate::new(1.0, 3.0);
    })
    .await;
    for _ in 0..3 {
        api.get("/t/acme/v1/pocs").await.assert_status(200);
    }
    let limited = api.get("/t/acme/v1/pocs").await;
    limited.assert_error(429, "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    api.get("/t/globex/v1/pocs").await.assert_status(200);
    // A route update does not hand the tenant a fresh bucket.
    state
        .apply(cell_model::route_feed::RouteEvent::Upsert {
            revision: 2,
            route: table[0].clone(),
        })
        .expect("apply");
    api.get("/t/acme/v1/pocs")
        .await
        .assert_error(429, "rate_limited");
}

#[tokio::test]
async fn on_shutdown_requests_in_flight_finish_and_new_connections_are_refused() {
    // An upstream that says when a request reached it, then takes 500 ms to answer.
    let arrived = std::sync::Arc::new(tokio::sync::Notify::new());
    let slow = common::serve(Router::new().fallback({
        let arrived = arrived.clone();
        move || async move {
            arrived.notify_one();
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            "slow"
        }
    }))
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = mrbill_router::Config::new(addr, "mrbill.test", &format!("http://{addr}"));
    let state = mrbill_router::AppState::new(config).expect("state");
    let mut table = RouteTable::default();
    table.apply(cell_model::route_feed::RouteEvent::Snapshot {
        revision: 1,
        routes: vec![route("acme", RouteState::Active, &slow)],
    });
    state.set_table(table).expect("table");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mrbill_router::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}/t/acme/v1/pocs");
    let in_flight = tokio::spawn(reqwest::get(url.clone()));
    // Stop while the request is in flight: it has reached the upstream.
    arrived.notified().await;
    stop.send(()).expect("stop");
    let answer = in_flight
        .await
        .expect("join")
        .expect("the request in flight is answered");
    assert_eq!(answer.text().await.expect("body"), "slow");
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("serve returns once the connections are done")
        .expect("join")
        .expect("serve");
    assert!(
        reqwest::get(url).await.is_err(),
        "nothing listens after shutdown"
    );
}

#[tokio::test]
async fn a_frozen_route_holds_requests_until_it_is_active_again() {
    let upstream = echo().await;
    let (api, state) = router_with(
        vec![route("acme", RouteState::Frozen, &upstream)],
        None,
        |c| {
            c.freeze_wait = std::time::Duration::from_secs(5);
        },
    )
    .await;
    let waiting = tokio::spawn({
        let api = api.clone();
        async move { api.get("/t/acme/v1/pocs").await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "the request waits while the route is frozen"
    );
    let mut table = RouteTable::default();
    table.apply(cell_model::route_feed::RouteEvent::Snapshot {
        revision: 2,
        routes: vec![route("acme", RouteState::Active, &upstream)],
    });
    state.set_table(table).expect("table");
    let res = waiting.await.expect("request");
    assert_eq!(res.assert_status(200)["cell"], "c-acme");
}

/// An upstream that answers with its own name.
async fn named(name: &'static str) -> String {
    common::serve(
        Router::new().fallback(move || async move { axum::Json(json!({ "replica": name })) }),
    )
    .await
}

#[tokio::test]
async fn requests_are_spread_over_replicas_and_a_dojo_stays_on_one() {
    let (a, b, c) = (named("a").await, named("b").await, named("c").await);
    let (d1, d2) = (named("d1").await, named("d2").await);
    let mut entry = route("acme", RouteState::Active, &a);
    entry.replicas = [
        (
            cell_model::contract::Service::Poc,
            vec![a.clone(), b.clone(), c.clone()],
        ),
        (
            cell_model::contract::Service::Dojo,
            vec![d1.clone(), d2.clone()],
        ),
    ]
    .into_iter()
    .collect();
    let (api, _) = router(vec![entry], None).await;
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..30 {
        let res = api.get("/t/acme/v1/pocs").await;
        *seen
            .entry(
                res.assert_status(200)["replica"]
                    .as_str()
                    .expect("name")
                    .to_owned(),
            )
            .or_default() += 1;
    }
    assert_eq!(
        seen.into_values().collect::<Vec<_>>(),
        [10, 10, 10],
        "round robin"
    );
    // Every request about one dojo (REST or its live socket) reaches the same replica; the
    // dojos spread over both.
    let mut homes = std::collections::BTreeSet::new();
    for dojo in 0..16 {
        let id = format!("0190e0c4-0000-7000-8000-{dojo:012}");
        let first = api.get(&format!("/t/acme/v1/dojos/{id}")).await;
        let home = first.assert_status(200)["replica"]
            .as_str()
            .expect("name")
            .to_owned();
        for path in ["", "/live", "/chat", "/participants"] {
            let again = api.get(&format!("/t/acme/v1/dojos/{id}{path}")).await;
            assert_eq!(
                again.assert_status(200)["replica"],
                home.as_str(),
                "{id}{path}"
            );
        }
        homes.insert(home);
    }
    assert_eq!(homes.len(), 2, "dojos are spread over the replicas");
}
