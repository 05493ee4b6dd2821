//! A connection stays usable after any answer, including the ones a service gives without
//! looking at the request body (401, 404, 405, 415). hyper closes a keep-alive connection whose
//! request body was not read to its end; a proxy that pooled the connection (the router, an
//! ingress) then fails the next request it sends on it, and a client saw 503 "the tenant's cell
//! is not reachable" (schemathesis found it through the router: TRACE/QUERY with a body → 405,
//! then the next PUT failed). Raw TCP, so the body arrives after the headers as it can in life.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::post;
use service_kit::cell::CellGuard;
use service_kit::extract::ApiJson;
use service_kit::http::{HttpConfig, Readiness, public_router};
use service_kit::serve::Listeners;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const LIMIT: usize = 1024;

async fn needs_a_token(headers: http::HeaderMap) -> http::StatusCode {
    if headers.contains_key(http::header::AUTHORIZATION) {
        http::StatusCode::NO_CONTENT
    } else {
        http::StatusCode::UNAUTHORIZED
    }
}

async fn start() -> SocketAddr {
    let api = Router::new()
        .route(
            "/v1/things",
            post(|ApiJson(v): ApiJson<serde_json::Value>| async move { axum::Json(v) }),
        )
        .route("/v1/guarded", post(needs_a_token));
    let readiness = Readiness::new(None);
    let http = HttpConfig {
        body_limit: LIMIT,
        guard: CellGuard::new("c-test", &[]),
        readiness: readiness.clone(),
    };
    let listeners = Listeners::bind(
        "127.0.0.1:0".parse().expect("addr"),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("bind");
    let addr = listeners.public_addr();
    let public = public_router(api, http);
    tokio::spawn(listeners.serve(public, Router::new(), readiness, std::future::pending()));
    addr
}

/// The first answer's status, asserting the connection then serves `/healthz`.
async fn answer_then_reuse(addr: SocketAddr, method: &str, path: &str, content_type: &str) -> u16 {
    let addr = addr.to_string();
    let (status, reused) =
        test_support::raw::answer_then_reuse(&addr, method, path, content_type, "/healthz").await;
    assert_eq!(
        reused,
        Some(200),
        "{method} {path} ({status}) left the connection unusable"
    );
    status
}

#[tokio::test]
async fn answers_given_without_reading_the_body_keep_the_connection() {
    let addr = start().await;
    let json = "application/json";
    assert_eq!(
        answer_then_reuse(addr, "QUERY", "/v1/things", json).await,
        405
    );
    assert_eq!(
        answer_then_reuse(addr, "TRACE", "/v1/things", json).await,
        405
    );
    assert_eq!(
        answer_then_reuse(addr, "PUT", "/v1/things", json).await,
        405
    );
    assert_eq!(
        answer_then_reuse(addr, "POST", "/v1/nothing", json).await,
        404
    );
    assert_eq!(
        answer_then_reuse(addr, "POST", "/v1/guarded", json).await,
        401
    );
    assert_eq!(
        answer_then_reuse(addr, "POST", "/v1/things", "text/plain").await,
        415
    );
    assert_eq!(
        answer_then_reuse(addr, "POST", "/v1/things", json).await,
        200
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_the_limit() {
    let addr = start().await;
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let body = vec![b' '; LIMIT + 1];
    let head = format!(
        "POST /v1/things HTTP/1.1\r\nhost: cell\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    tcp.write_all(&body).await.expect("body");
    let (status, body) = test_support::raw::response(&mut tcp)
        .await
        .expect("an answer");
    assert_eq!(status, 413);
    let body: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["code"], "payload_too_large");
    assert_eq!(body["details"]["limit_bytes"], LIMIT);
}
