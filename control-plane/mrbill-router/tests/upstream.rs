//! The exchange with the cell: oversized bodies are the client's mistake (413, never 503), an
//! idempotent request meeting a kept connection the cell has closed is retried once, a
//! connection is kept and reused while the cell keeps it, and the router's own refusals leave
//! its client's connection usable.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use cell_model::contract::BODY_LIMIT;
use cell_model::route_feed::RouteState;
use common::{route, router, router_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A cell service that refuses large bodies the way axum does: 413 as soon as it knows, then
/// the connection closes while the router may still be sending.
async fn strict_service() -> String {
    let app = Router::new()
        .route(
            "/v1/pocs",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    common::serve(app).await
}

#[tokio::test]
async fn bodies_over_the_services_limit_get_413_every_time_never_503() {
    let upstream = strict_service().await;
    let (api, _) = router(vec![route("acme", RouteState::Active, &upstream)], None).await;
    let url = format!("{}/t/acme/v1/pocs", api.base);
    let http = reqwest::Client::new();
    for size in [BODY_LIMIT + 1, 3 * 1024 * 1024, 12 * 1024 * 1024] {
        for attempt in 0..10 {
            let res = http
                .post(&url)
                .header("content-type", "application/json")
                .body(vec![b' '; size])
                .send()
                .await
                .unwrap_or_else(|e| panic!("{size} bytes, attempt {attempt}: {e}"));
            assert_eq!(res.status(), 413, "{size} bytes, attempt {attempt}");
            let body: serde_json::Value = res.json().await.expect("json");
            assert_eq!(body["code"], "payload_too_large");
            assert_eq!(body["details"]["limit_bytes"], BODY_LIMIT);
        }
    }
    // Streamed without a length (chunked): refused once it passes the limit.
    let mut socket = tokio::net::TcpStream::connect(api.base.trim_start_matches("http://"))
        .await
        .expect("connect");
    let head = "POST /t/acme/v1/pocs HTTP/1.1\r\nhost: r\r\ntransfer-encoding: chunked\r\n\r\n";
    socket.write_all(head.as_bytes()).await.expect("head");
    let chunk = [
        format!("{:x}\r\n", 8192).into_bytes(),
        vec![b' '; 8192],
        b"\r\n".to_vec(),
    ]
    .concat();
    for _ in 0..(BODY_LIMIT / 8192 + 4) {
        if socket.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let mut answer = vec![0u8; 256];
    let n = socket.read(&mut answer).await.expect("answer");
    let status_line = String::from_utf8_lossy(&answer[..n]);
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    // At the limit, the body reaches the service whole.
    let res = http
        .post(&url)
        .body(vec![b' '; BODY_LIMIT])
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.expect("text"), BODY_LIMIT.to_string());
}

/// A cell that answers the first request of each connection and breaks the connection off in
/// the middle of answering the second: what a pooled keep-alive connection to a cell that is
/// going away looks like. (A connection closed before any answer is retried by hyper itself.)
async fn one_request_per_connection() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // The next request on this connection gets half an answer, then the connection
                // drops (a cell restarting under it).
                if socket.read(&mut buf).await.is_ok_and(|n| n > 0) {
                    let _ = socket.write_all(b"HTTP/1.1 200").await;
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_idempotent_request_on_a_closed_pooled_connection_is_retried_once() {
    let upstream = one_request_per_connection().await;
    let (api, _) = router(vec![route("acme", RouteState::Active, &upstream)], None).await;
    for attempt in 0..5 {
        let res = api.get("/t/acme/v1/pocs").await;
        assert_eq!(res.status, 200, "attempt {attempt}: {:?}", res.body);
    }
    // A request with a body is never sent twice: the cell may have acted on it.
    api.get("/t/acme/v1/pocs").await.assert_status(200);
    let res = api
        .post("/t/acme/v1/pocs", &serde_json::json!({ "name": "x" }))
        .await;
    res.assert_error(503, "unavailable");
}

/// A cell that answers every request on a connection and counts its connections; with `close`
/// it closes each connection after its first answer, without saying so (`Connection: close`),
/// as a cell does whose idle timeout is shorter than the router's.
async fn counting(close: bool) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                loop {
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    // The request's head, and its body by its declared length.
                    let head_end = seen
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .expect("head")
                        + 4;
                    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while seen.len() < head_end + length {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.drain(..head_end + length);
                    if socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await
                        .is_err()
                        || close
                    {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), connections)
}

#[tokio::test]
async fn connections_to_a_cell_are_kept_and_reused() {
    let (upstream, connections) = counting(false).await;
    let (api, _) = router(vec![route("acme", RouteState::Active, &upstream)], None).await;
    for _ in 0..20 {
        api.get("/t/acme/v1/pocs").await.assert_status(200);
        api.post("/t/acme/v1/pocs", &serde_json::json!({ "name": "x" }))
            .await
            .assert_status(200);
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "one connection, kept"
    );
}

#[tokio::test]
async fn a_request_never_goes_to_a_connection_the_cell_closed_while_it_was_kept() {
    let (upstream, connections) = counting(true).await;
    let (api, _) = router(vec![route("acme", RouteState::Active, &upstream)], None).await;
    for attempt in 0..10 {
        // A body, so the router may not send it twice once the cell could have seen it.
        let res = api
            .post("/t/acme/v1/pocs", &serde_json::json!({ "name": "x" }))
            .await;
        assert_eq!(res.status, 200, "attempt {attempt}: {:?}", res.body);
    }
    assert!(connections.load(Ordering::SeqCst) >= 10);
}

/// The router's own answers (no such tenant or endpoint, suspended, a rate limit) are given
/// without forwarding the body; the connection must still serve the next request, or an
/// ingress pooling it fails that request (hyper closes a connection whose body was not read).
#[tokio::test]
async fn the_routers_own_refusals_keep_the_connection() {
    let upstream =
        common::serve(Router::new().route("/v1/pocs", axum::routing::get(|| async { "ok" }))).await;
    let (api, _) = router_with(
        vec![
            route("acme", RouteState::Active, &upstream),
            route("gone", RouteState::Suspended, &upstream),
        ],
        None,
        |config| config.resolve_limit = mrbill_router::Rate::new(0.01, 2.0),
    )
    .await;
    let addr = api.base.trim_start_matches("http://");
    let json = "application/json";
    for (method, path, status) in [
        ("POST", "/t/nobody/v1/pocs", 404),
        ("POST", "/t/acme/v9/nothing", 404),
        ("PUT", "/t/gone/v1/pocs", 403),
        ("QUERY", "/v1/resolve?tenant=acme", 405),
        ("GET", "/v1/resolve?tenant=acme", 200),
        ("GET", "/v1/resolve?tenant=acme", 429),
    ] {
        let (first, reused) =
            test_support::raw::answer_then_reuse(addr, method, path, json, "/t/acme/v1/pocs").await;
        assert_eq!(first, status, "{method} {path}");
        assert_eq!(
            reused,
            Some(200),
            "{method} {path} ({first}): the next request on the connection got {reused:?}"
        );
    }
}
