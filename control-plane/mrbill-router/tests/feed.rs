//! The router following a route feed: a stand-in control plane (axum) serves NDJSON; the
//! router applies the snapshot and deltas, keeps routing when the feed drops, and resumes from
//! the revision it had.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{RawQuery, Request};
use axum::routing::get;
use cell_model::routes::{RouteEntry, RouteEvent, RouteState, ServiceUrls};
use mrbill_router::{AppState, Config, app};
use test_support::ApiClient;

fn route(tenant: &str, generation: u64, state: RouteState, poc: &str) -> RouteEntry {
    RouteEntry {
        tenant: tenant.into(),
        cell_id: format!("c-{tenant}"),
        generation,
        state,
        services: ServiceUrls {
            poc: poc.into(),
            dojo: None,
            media: None,
        },
        email_domains: Vec::new(),
    }
}

async fn upstream() -> String {
    let app = Router::new().fallback(|req: Request| async move { req.uri().path().to_owned() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn the_router_follows_the_feed_and_resumes_from_its_revision() {
    let cell = upstream().await;
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let feed = {
        let seen = seen.clone();
        let cell = cell.clone();
        Router::new().route(
            "/v1/routes",
            get(
                move |RawQuery(query): RawQuery, headers: axum::http::HeaderMap| {
                    let seen = seen.clone();
                    let cell = cell.clone();
                    async move {
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        seen.lock()
                            .expect("lock")
                            .push((query.unwrap_or_default(), auth));
                        let events = [
                            RouteEvent::Snapshot {
                                revision: 1,
                                routes: vec![route("acme", 1, RouteState::Active, &cell)],
                            },
                            RouteEvent::Upsert {
                                revision: 2,
                                route: route("globex", 1, RouteState::Suspended, &cell),
                            },
                        ];
                        // The stream ends after two events: a dropped connection, as far as the router knows.
                        events
                            .iter()
                            .map(|e| serde_json::to_string(e).expect("json") + "\n")
                            .collect::<String>()
                    }
                },
            ),
        )
    };
    let feed_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let feed_url = format!("http://{}", feed_listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(feed_listener, feed).await });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state =
        AppState::new(Config::new(addr, "mrbill.test", &format!("http://{addr}"))).expect("state");
    tokio::spawn(mrbill_router::feed::follow(
        state.clone(),
        feed_url,
        "router-token".into(),
    ));
    tokio::spawn(async move {
        axum::serve(
            listener,
            app(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let api = ApiClient::new(format!("http://{addr}"));

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen.lock().expect("lock").len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the router never reconnected to the feed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(api.get("/t/acme/v1/pocs").await.text, "/v1/pocs");
    api.get("/t/globex/v1/pocs")
        .await
        .assert_error(403, "tenant_suspended");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen[0],
        (
            "watch=1&since=0".to_owned(),
            "Bearer router-token".to_owned()
        )
    );
    assert_eq!(
        seen[1].0, "watch=1&since=2",
        "a reconnect resumes from the last applied revision"
    );
}
