//! Who a client is, and what one client can do to others: `X-Forwarded-For` believed only from
//! trusted proxies (and appended to), a fair share per client inside each tenant's budget, and
//! `/v1/resolve` limited per client; the metrics that count it. Clients are told apart by their loopback source address
//! (all of 127/8 is this machine), as distinct hosts would be.

mod common;

use std::net::IpAddr;

use axum::Router;
use axum::extract::Request;
use cell_model::route_feed::RouteState;
use common::{route, router_with};
use mrbill_router::Rate;
use serde_json::{Value, json};

/// An upstream that answers with the `X-Forwarded-For` it received.
async fn echo() -> String {
    let app = Router::new().fallback(|req: Request| async move {
        let xff = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        axum::Json(json!({ "xff": xff }))
    });
    common::serve(app).await
}

/// An HTTP client whose connections come from `source`.
fn from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().expect("source address"))
        .build()
        .expect("client")
}

async fn get(client: &reqwest::Client, url: &str, xff: Option<&str>) -> (u16, Value) {
    let mut req = client.get(url);
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn forwarded_for_is_kept_and_appended_only_from_trusted_proxies() {
    let upstream = echo().await;
    let (api, _) = router_with(
        vec![route("acme", RouteState::Active, &upstream)],
        None,
        |c| c.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")],
    )
    .await;
    let url = format!("{}/t/acme/v1/pocs", api.base);
    // The ingress (trusted) forwards its client: the chain is kept and the ingress appended.
    let (status, body) = get(&from("127.0.0.1"), &url, Some("198.51.100.7")).await;
    assert_eq!(status, 200);
    assert_eq!(body["xff"], "198.51.100.7, 127.0.0.1");
    // Anyone else is the client itself, whatever it claims.
    let (status, body) = get(&from("127.0.0.2"), &url, Some("198.51.100.7")).await;
    assert_eq!(status, 200);
    assert_eq!(body["xff"], "127.0.0.2", "a spoofed chain is dropped");
    let (_, body) = get(&from("127.0.0.1"), &url, None).await;
    assert_eq!(body["xff"], "127.0.0.1");
}

/// The attack: one anonymous machine floods a tenant. Before per-client shares it pushed the
/// whole tenant into 429.
#[tokio::test]
async fn a_noisy_client_gets_429_while_the_tenants_other_clients_are_served() {
    let upstream = echo().await;
    let (api, _) = router_with(
        vec![route("acme", RouteState::Active, &upstream)],
        None,
        |c| {
            c.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
            c.tenant_limit = Rate::new(1.0, 30.0);
            c.client_limit = Rate::new(1.0, 5.0);
        },
    )
    .await;
    let url = format!("{}/t/acme/v1/pocs", api.base);
    let noisy = from("127.0.0.2");
    let mut served = 0;
    for _ in 0..60 {
        let (status, body) = get(&noisy, &url, None).await;
        match status {
            200 => served += 1,
            429 => assert_eq!(body["code"], "rate_limited"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(served <= 6, "the noisy client had {served} requests served");
    for quiet in ["127.0.0.3", "127.0.0.4"] {
        let client = from(quiet);
        for _ in 0..4 {
            assert_eq!(get(&client, &url, None).await.0, 200, "{quiet} was refused");
        }
    }
    // Clients behind the trusted ingress are told apart by the address it forwards.
    let ingress = from("127.0.0.1");
    let mut behind = 0;
    for _ in 0..20 {
        behind += usize::from(get(&ingress, &url, Some("198.51.100.9")).await.0 == 200);
    }
    assert!(behind <= 6, "{behind}");
    assert_eq!(
        get(&ingress, &url, Some("198.51.100.10")).await.0,
        200,
        "another client behind the same ingress is served"
    );
}

#[tokio::test]
async fn resolve_is_rate_limited_per_client() {
    let (api, _) = router_with(
        vec![route("acme", RouteState::Active, "http://127.0.0.1:9")],
        None,
        |c| c.resolve_limit = Rate::new(0.5, 3.0),
    )
    .await;
    let url = format!("{}/v1/resolve?tenant=acme", api.base);
    let prober = from("127.0.0.5");
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(get(&prober, &url, None).await.0);
    }
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    let res = prober.get(&url).send().await.expect("request");
    assert!(res.headers().contains_key("retry-after"));
    let (status, body) = get(&from("127.0.0.6"), &url, None).await;
    assert_eq!(status, 200, "another client resolves: {body}");
    assert_eq!(body["tenant"], "acme");
}

/// The router's metrics: per known tenant, answers by class and 429s; requests for names the
/// table does not know are one unlabelled counter (no client grows the label set); the feed's
/// revision and last line. Served on the metrics listener only — the public one lists nobody.
#[tokio::test]
async fn metrics_count_each_tenants_answers_and_429s_on_their_own_listener_only() {
    let upstream = echo().await;
    let table = vec![
        route("acme", RouteState::Active, &upstream),
        route("globex", RouteState::Suspended, &upstream),
    ];
    let (api, state) = router_with(table, None, |c| {
        c.tenant_limit = Rate::new(1.0, 2.0);
        c.client_limit = Rate::new(1.0, 2.0);
    })
    .await;
    for _ in 0..2 {
        api.get("/t/acme/v1/pocs").await.assert_status(200);
    }
    api.get("/t/acme/v1/pocs").await.assert_status(429);
    api.get("/t/globex/v1/pocs").await.assert_status(403);
    for name in ["nobody", "n0body"] {
        api.get(&format!("/t/{name}/v1/pocs"))
            .await
            .assert_status(404);
    }
    let public = api.get("/metrics").await;
    public.assert_status(404);
    assert!(!public.text.contains("acme"), "{}", public.text);

    let metrics = common::serve(mrbill_router::metrics::router(state.clone())).await;
    let scrape = || async {
        reqwest::get(format!("{metrics}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    let text = scrape().await;
    for line in [
        "mrbill_router_requests_total{tenant=\"acme\",code=\"2xx\"} 2",
        "mrbill_router_requests_total{tenant=\"acme\",code=\"4xx\"} 1",
        "mrbill_router_rate_limited_total{tenant=\"acme\"} 1",
        "mrbill_router_requests_total{tenant=\"globex\",code=\"4xx\"} 1",
        "mrbill_router_rate_limited_total{tenant=\"globex\"} 0",
        // acme's two answers and its 429 came from the fast path; globex's 403 from hyper.
        "mrbill_router_fast_path_requests_total{tenant=\"acme\"} 3",
        "mrbill_router_fast_path_requests_total{tenant=\"globex\"} 0",
        "mrbill_router_unknown_tenant_requests_total 2",
        "mrbill_router_routes 2",
        "mrbill_router_route_feed_revision 1",
        "mrbill_router_route_feed_last_seen_timestamp_seconds 0",
    ] {
        assert!(text.contains(&format!("{line}\n")), "{line} in\n{text}");
    }
    assert!(!text.contains("nobody"), "{text}");
    state.feed_seen();
    let text = scrape().await;
    assert!(
        !text.contains("mrbill_router_route_feed_last_seen_timestamp_seconds 0\n"),
        "{text}"
    );
}
