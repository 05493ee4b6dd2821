//! The router following a route feed: a stand-in control plane (axum) serves NDJSON; the
//! router applies the snapshot and deltas, keeps routing when the feed drops, and resumes from
//! the revision it had.

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{RawQuery, Request};
use axum::routing::get;
use cell_model::route_feed::{RouteEvent, RouteState};
use common::{route, router};

async fn upstream() -> String {
    common::serve(Router::new().fallback(|req: Request| async move { req.uri().path().to_owned() }))
        .await
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
                                routes: vec![route("acme", RouteState::Active, &cell)],
                            },
                            RouteEvent::Upsert {
                                revision: 2,
                                route: route("globex", RouteState::Suspended, &cell),
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
    let feed_url = common::serve(feed).await;

    let (api, state) = router(Vec::new(), None).await;
    tokio::spawn(mrbill_router::feed::follow(
        state,
        feed_url,
        "router-token".into(),
    ));

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
