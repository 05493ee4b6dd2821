//! media never decides which PoCs a user may see: it asks poc-service with `visible_to` and
//! renders what comes back. A recording proxy in front of poc's internal API shows both: every
//! PoC query names the requesting user, and a PoC the proxy slips into the answer (someone
//! else's, private) is rendered as given — media has no filter of its own that could disagree
//! with poc's rules.

use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{Request, State};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::harness::Cell;

#[derive(Clone, Default)]
struct Proxy {
    /// poc-service's real internal API, known once the cell's config exists.
    target: Arc<OnceLock<String>>,
    /// The query strings of the PoC listings media asked for.
    queries: Arc<Mutex<Vec<String>>>,
}

async fn forward(State(proxy): State<Proxy>, req: Request) -> axum::response::Response {
    let target = proxy.target.get().expect("the proxy's target").clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let auth = req.headers().get("authorization").cloned();
    let mut upstream = reqwest::Client::new().get(format!("{target}{path}?{query}"));
    if let Some(auth) = auth {
        upstream = upstream.header("authorization", auth);
    }
    let answer = upstream.send().await.expect("poc-service answers");
    let status = answer.status().as_u16();
    let mut body: Value = answer.json().await.unwrap_or(Value::Null);
    if path == "/internal/v1/pocs" {
        proxy.queries.lock().expect("queries").push(query);
        if let Some(items) = body["items"].as_array_mut()
            && let Some(first) = items.first().cloned()
        {
            let mut slipped = first;
            slipped["id"] = json!(uuid::Uuid::now_v7());
            slipped["owner_id"] = json!(uuid::Uuid::now_v7());
            slipped["name"] = json!("Someone else's secret");
            slipped["visibility"] = json!("private");
            items.push(slipped);
        }
    }
    let status = axum::http::StatusCode::from_u16(status).expect("status");
    (status, axum::Json(body)).into_response()
}

#[tokio::test]
async fn media_asks_poc_with_the_user_and_renders_what_poc_answers() {
    let proxy = Proxy::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let target = proxy.target.clone();
    let cell = Cell::start_with(move |c| {
        target
            .set(c.peer.poc_internal_url.trim_end_matches('/').to_owned())
            .expect("set once");
        c.peer.poc_internal_url = format!("http://{addr}");
    })
    .await;
    let admin = cell.poc.admin().await;
    let ada = cell.poc.member(&admin, "ada@acme.test").await;
    cell.poc.create_poc(&ada, "Ada's own", json!({})).await;
    let done = cell
        .completed_report(&ada, json!({ "format": "csv" }))
        .await;
    let (status, csv, _) = cell
        .fetch(done["download"]["url"].as_str().expect("url"))
        .await;
    assert_eq!(status, 200);
    let csv = String::from_utf8_lossy(&csv);
    assert!(csv.contains("Ada's own"), "{csv}");
    assert!(
        csv.contains("Someone else's secret"),
        "media rendered what poc answered, unfiltered: {csv}"
    );
    let queries = proxy.queries.lock().expect("queries").clone();
    assert!(!queries.is_empty(), "media asked poc for the PoCs");
    assert!(
        queries
            .iter()
            .all(|q| q.contains(&format!("visible_to={}", ada.id))),
        "every listing names the user: {queries:?}"
    );
}
