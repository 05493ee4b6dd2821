//! The fast path against hyper's: the same bytes, sent over raw TCP to a router with the fast
//! path and to one without it, get the same answers — plain requests (which the fast path
//! takes), the ones it leaves to hyper (refusals, the router's API, chunked bodies, framings
//! an attacker could play against two hops), and both mixed on one connection. The cell is a
//! real HTTP server (axum) answering with what it received.

mod common;

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use cell_model::route_feed::RouteState;
use common::{route, router_with};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A cell that answers with what it received (the headers the router sets, a few others, the
/// body).
async fn echo() -> String {
    let app = Router::new().fallback(|req: Request| async move {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        let h = |name: &str| {
            parts
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap_or("?").to_owned())
                .collect::<Vec<_>>()
        };
        axum::Json(json!({
            "method": parts.method.as_str(), "path": parts.uri.path(), "query": parts.uri.query(),
            "host": h("host"), "cell": h("x-cell-id"), "xff": h("x-forwarded-for"),
            "prefix": h("x-forwarded-prefix"), "connection": h("connection"), "te": h("te"),
            "keep_alive": h("keep-alive"), "custom": h("x-custom"),
            "length": h("content-length"), "body": String::from_utf8_lossy(&body),
        }))
    });
    common::serve(app).await
}

/// A router on `cell` (tenants `acme`, active, and `gone`, suspended), with or without the
/// fast path; its `host:port`.
async fn router(cell: &str, fast_path: bool) -> String {
    let (api, _) = router_with(
        vec![
            route("acme", RouteState::Active, cell),
            route("gone", RouteState::Suspended, cell),
        ],
        None,
        |config| config.fast_path = fast_path,
    )
    .await;
    api.base.trim_start_matches("http://").to_owned()
}

/// One answer as the client reads it: status, headers (sorted, lowercased, without `date`)
/// and body.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

/// Sends `parts` on one connection, 30 ms apart, and reads until the router closes it or is
/// silent for 300 ms; the answers, and whether the connection was closed.
async fn exchange(addr: &str, parts: &[&[u8]]) -> (Vec<Answer>, bool) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    for part in parts {
        if tcp.write_all(part).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let closed = loop {
        match tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut chunk)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
        }
    };
    (answers(&bytes), closed)
}

/// The answers in `bytes` (bodies by their declared length, else to the end).
fn answers(mut bytes: &[u8]) -> Vec<Answer> {
    let mut all = Vec::new();
    while !bytes.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut res = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(len)) = res.parse(bytes) else {
            panic!("not an answer: {:?}", String::from_utf8_lossy(bytes));
        };
        let mut kept: Vec<(String, String)> = res
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .filter(|(name, _)| name != "date")
            .collect();
        kept.sort();
        let length = kept
            .iter()
            .find(|(name, _)| name == "content-length")
            .map_or(bytes.len() - len, |(_, v)| v.parse().expect("length"));
        let end = (len + length).min(bytes.len());
        all.push(Answer {
            status: res.code.expect("status"),
            headers: kept,
            body: String::from_utf8_lossy(&bytes[len..end]).into_owned(),
        });
        bytes = &bytes[end..];
    }
    all
}

/// Each case: what the client sends, in parts.
fn cases() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let one = |s: &str| vec![s.as_bytes().to_vec()];
    let big = format!(
        "POST /t/acme/v1/pocs HTTP/1.1\r\nHost: r\r\nContent-Length: {}\r\n\r\n",
        cell_model::contract::BODY_LIMIT + 1
    );
    vec![
        (
            "path form with a query",
            one("GET /t/acme/v1/pocs?q=a%20b&x=1 HTTP/1.1\r\nHost: r\r\n\r\n"),
        ),
        (
            "host form",
            one("GET /v1/pocs HTTP/1.1\r\nHost: ACME.mrbill.test:8088\r\n\r\n"),
        ),
        ("no host", one("GET /t/acme/v1/pocs HTTP/1.1\r\n\r\n")),
        (
            "openapi",
            one("GET /t/acme/poc/openapi.json HTTP/1.1\r\nHost: r\r\n\r\n"),
        ),
        (
            "a body with its head",
            one(
                "POST /t/acme/v1/pocs HTTP/1.1\r\nHost: r\r\nContent-Length: 11\r\n\r\n{\"a\":\"b c\"}",
            ),
        ),
        (
            "a body after its head, in pieces",
            vec![
                b"PUT /t/acme/v1/pocs/1 HTTP/1.1\r\nHost: r\r\nContent-Length: 10\r\n\r\n01"
                    .to_vec(),
                b"2345".to_vec(),
                b"6789".to_vec(),
            ],
        ),
        (
            "pipelined",
            one(
                "GET /t/acme/v1/pocs/1 HTTP/1.1\r\nHost: r\r\n\r\nPOST /t/acme/v1/pocs HTTP/1.1\r\nHost: r\r\ncontent-length: 2\r\n\r\nhiDELETE /t/acme/v1/pocs/2 HTTP/1.1\r\nHost: r\r\n\r\n",
            ),
        ),
        (
            "head",
            one("HEAD /t/acme/v1/pocs HTTP/1.1\r\nHost: r\r\n\r\n"),
        ),
        (
            "close, and nothing after",
            one(
                "GET /t/acme/v1/pocs HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\nGET /t/acme/v1/pocs HTTP/1.1\r\nHost: r\r\n\r\n",
            ),
        ),
        (
            "spoofed and hop-by-hop headers",
            one(
                "GET /t/acme/v1/pocs HTTP/1.1\r\nHost: r\r\nX-Cell-Id: c-evil\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Prefix: /evil\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive\r\nX-Custom: kept\r\nX-Custom: twice\r\n\r\n",
            ),
        ),
        (
            "no such tenant",
            one("GET /t/nobody/v1/pocs HTTP/1.1\r\nHost: r\r\n\r\n"),
        ),
        (
            "no such endpoint",
            one("POST /t/acme/v9/x HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\n\r\nhi"),
        ),
        (
            "suspended",
            one("GET /t/gone/v1/pocs HTTP/1.1\r\nHost: r\r\n\r\n"),
        ),
        (
            "internal",
            one("GET /t/acme/internal/x HTTP/1.1\r\nHost: r\r\n\r\n"),
        ),
        (
            "the router's own API",
            one("GET /healthz HTTP/1.1\r\nHost: r\r\n\r\n"),
        ),
        (
            "over the body limit",
            vec![
                big.into_bytes(),
                vec![b'x'; cell_model::contract::BODY_LIMIT + 1],
            ],
        ),
        (
            "a chunked body",
            one(
                "POST /t/acme/v1/pocs HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            ),
        ),
        (
            "length and chunks (smuggling)",
            one(
                "POST /t/acme/v1/pocs HTTP/1.1\r\nHost: r\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /t/acme/v1/secret HTTP/1.1\r\nHost: r\r\n\r\n",
            ),
        ),
        (
            "two lengths",
            one(
                "POST /t/acme/v1/pocs HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\nhiGET /t/acme/v1/x HTTP/1.1\r\n\r\n",
            ),
        ),
        (
            "HTTP/1.0",
            one("GET /t/acme/v1/pocs HTTP/1.0\r\nHost: r\r\n\r\n"),
        ),
        (
            "absolute form",
            one("GET http://r/t/acme/v1/pocs HTTP/1.1\r\nHost: r\r\n\r\n"),
        ),
        (
            "expect",
            one(
                "PUT /t/acme/v1/pocs/1 HTTP/1.1\r\nHost: r\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
            ),
        ),
        (
            "garbage",
            one("GET /t/acme/v1/pocs HTTP/1.1\r\nHost r\r\n\r\n"),
        ),
        (
            "plain, the API, plain on one connection",
            one(
                "GET /t/acme/v1/pocs/1 HTTP/1.1\r\nHost: r\r\n\r\nGET /healthz HTTP/1.1\r\nHost: r\r\n\r\nGET /t/acme/v1/pocs/2 HTTP/1.1\r\nHost: r\r\n\r\n",
            ),
        ),
        (
            "a head in pieces",
            vec![
                b"GET /t/acme/v1/p".to_vec(),
                b"ocs HTTP/1.1\r\nHo".to_vec(),
                b"st: r\r\n\r\n".to_vec(),
            ],
        ),
    ]
}

#[tokio::test]
async fn every_request_gets_the_answer_hyper_gives_it() {
    let cell = echo().await;
    let (fast, full) = (router(&cell, true).await, router(&cell, false).await);
    for (name, parts) in cases() {
        let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let (with, without) = tokio::join!(exchange(&fast, &parts), exchange(&full, &parts));
        assert!(!without.0.is_empty(), "{name}: hyper answered nothing");
        assert_eq!(with, without, "{name}");
    }
}

#[tokio::test]
async fn over_the_tenants_budget_both_paths_answer_429_read_the_body_and_keep_the_connection() {
    let cell = echo().await;
    let mut addrs = Vec::new();
    for fast_path in [true, false] {
        let (api, _) = router_with(vec![route("acme", RouteState::Active, &cell)], None, |c| {
            c.fast_path = fast_path;
            c.tenant_limit = mrbill_router::Rate::new(0.01, 2.0);
        })
        .await;
        addrs.push(api.base.trim_start_matches("http://").to_owned());
    }
    let post = "POST /t/acme/v1/pocs HTTP/1.1\r\nHost: r\r\nContent-Length: 10\r\n\r\n01234";
    let parts: Vec<&[u8]> = vec![
        post.as_bytes(),
        b"56789",
        post.as_bytes(),
        b"56789",
        post.as_bytes(),
        b"56789",
        b"GET /healthz HTTP/1.1\r\nHost: r\r\n\r\n",
    ];
    let (with, without) = tokio::join!(exchange(&addrs[0], &parts), exchange(&addrs[1], &parts));
    let statuses: Vec<u16> = with.0.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 200, 429, 200], "{with:?}");
    assert_eq!(with, without);
}

#[tokio::test]
async fn what_the_cell_gets_on_the_fast_path() {
    let cell = echo().await;
    let fast = router(&cell, true).await;
    let parts = [&b"GET /t/acme/v1/pocs?x=1 HTTP/1.1\r\nHost: r\r\nX-Cell-Id: c-evil\r\nX-Forwarded-For: 6.6.6.6\r\nTE: trailers\r\nX-Custom: kept\r\n\r\n"[..]];
    let (answers, closed) = exchange(&fast, &parts).await;
    assert!(!closed, "kept open");
    let got: serde_json::Value = serde_json::from_str(&answers[0].body).expect("json");
    assert_eq!(got["path"], "/v1/pocs");
    assert_eq!(got["query"], "x=1");
    assert_eq!(got["cell"], json!(["c-acme"]));
    assert_eq!(got["xff"], json!(["127.0.0.1"]));
    assert_eq!(got["prefix"], json!(["/t/acme"]));
    assert_eq!(got["te"], json!([]));
    assert_eq!(got["custom"], json!(["kept"]));
}

/// A cell speaking raw HTTP/1.1: for each request on a connection it writes the next of
/// `answers` (in pieces, 20 ms apart; one delimited by neither a length nor chunks is followed
/// by the close), and it records every request head it read. Returns its
/// URL, the heads, and how many connections it accepted.
async fn scripted(
    answers: Vec<Vec<&'static [u8]>>,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (seen, count) = (heads.clone(), accepted.clone());
    let answers = std::sync::Arc::new(std::sync::Mutex::new(answers.into_iter()));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (seen, answers) = (seen.clone(), answers.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
                    seen.lock()
                        .expect("heads")
                        .push(String::from_utf8_lossy(&buf[..end]).into_owned());
                    buf.drain(..end);
                    let Some(answer) = answers.lock().expect("answers").next() else {
                        return;
                    };
                    let joined = answer.concat();
                    let joined = String::from_utf8_lossy(&joined);
                    for piece in answer {
                        if socket.write_all(piece).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    // An answer without a length or chunks ends where the connection does.
                    if !joined.contains("Content-Length") && !joined.contains("Transfer-Encoding") {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), heads, accepted)
}

#[tokio::test]
async fn answers_pass_in_every_framing_and_connections_are_kept_only_after_a_whole_one() {
    let (cell, heads, accepted) = scripted(vec![
        // Chunks in pieces (with an extension and a trailer), then a declared length on the
        // same connection, then an interim answer before the final one.
        vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: chunks\r\n\r\n5\r\nhel",
            b"lo\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n",
        ],
        vec![b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\nKeep-Alive: timeout=5\r\n\r\nsame"],
        vec![
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ],
        // A HEAD's answer: a length, no body.
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"],
        // Up to the close: the client's connection closes after it.
        vec![
            b"HTTP/1.1 200 OK\r\nX-Kind: close\r\n\r\nuntil",
            b" the end",
        ],
    ])
    .await;
    let fast = router(&cell, true).await;
    let get = "GET /t/acme/v1/pocs HTTP/1.1\r\nHost: r\r\nX-Custom: Kept-Case\r\n\r\n";
    let head = "HEAD /t/acme/v1/pocs HTTP/1.1\r\nHost: r\r\n\r\n";
    let parts: Vec<&[u8]> = vec![
        get.as_bytes(),
        get.as_bytes(),
        get.as_bytes(),
        head.as_bytes(),
        get.as_bytes(),
    ];
    let mut tcp = TcpStream::connect(&fast).await.expect("connect");
    let mut bytes = Vec::new();
    for part in parts {
        tcp.write_all(part).await.expect("send");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut bytes)).await;
    assert!(
        closed.is_ok(),
        "the connection closes after an answer up to the cell's close"
    );
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: chunks\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 1\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\nsame"),
        "{text}"
    );
    assert!(text.contains("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), "{text}");
    assert!(text.contains("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nHTTP/1.1 200 OK\r\nX-Kind: close\r\nconnection: close\r\n\r\nuntil the end"), "{text}");
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one connection to the cell, kept"
    );
    let heads = heads.lock().expect("heads").clone();
    assert_eq!(heads.len(), 5);
    assert!(
        heads[0].contains("\r\nX-Custom: Kept-Case\r\n"),
        "the fast path forwards the client's bytes: {}",
        heads[0]
    );
}

#[tokio::test]
async fn a_broken_answer_closes_the_clients_connection_and_is_not_kept() {
    let (cell, _, accepted) = scripted(vec![
        vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX"],
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
    ])
    .await;
    let fast = router(&cell, true).await;
    let get: &[u8] = b"GET /t/acme/v1/pocs HTTP/1.1\r\nHost: r\r\n\r\n";
    let (first, closed) = exchange(&fast, &[get]).await;
    assert!(closed, "the client learns the answer broke off: {first:?}");
    let (second, _) = exchange(&fast, &[get]).await;
    assert_eq!(second[0].body, "ok");
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the broken connection was not kept"
    );
}

#[tokio::test]
async fn a_head_not_sent_in_time_closes_the_connection_on_either_path() {
    let cell = echo().await;
    for fast_path in [true, false] {
        let (api, _) = router_with(vec![route("acme", RouteState::Active, &cell)], None, |c| {
            c.fast_path = fast_path;
            c.head_timeout = Duration::from_millis(300);
        })
        .await;
        let addr = api.base.trim_start_matches("http://");
        for opening in [&b""[..], b"GET /t/acme/v1/pocs HTTP/1.1\r\nHost: r\r\n"] {
            let mut tcp = TcpStream::connect(addr).await.expect("connect");
            tcp.write_all(opening).await.expect("send");
            let mut rest = Vec::new();
            let read =
                tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut rest)).await;
            assert!(
                read.is_ok(),
                "fast path {fast_path}: {opening:?} is closed within 3 s"
            );
        }
    }
}
