//! Raw HTTP/1.1 over TCP, for what client libraries hide: a body that arrives after its head,
//! and whether a connection is still usable after an answer.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one response from `tcp`: its status and body; `None` when the connection closes first.
pub async fn response(tcp: &mut TcpStream) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk))
            .await
            .expect("an answer within 5 s")
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("content-length"));
    while buf.len() < head_end + length {
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    Some((status, body))
}

/// Sends `method path` with a small JSON body to `addr` (`host:port`) — the head first and the
/// body 50 ms later, as a proxy streaming its client's body does — reads the answer, then sends
/// `GET reuse_path` on the same connection. Returns both statuses; the second is `None` when
/// the server closed the connection after the first answer.
pub async fn answer_then_reuse(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    reuse_path: &str,
) -> (u16, Option<u16>) {
    let body = r#"{"current_password":"x","new_password":"y"}"#;
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    tokio::time::sleep(Duration::from_millis(50)).await;
    tcp.write_all(body.as_bytes()).await.expect("body");
    let (status, _) = response(&mut tcp).await.expect("the first answer");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let again = format!("GET {reuse_path} HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    let reused = match tcp.write_all(again.as_bytes()).await {
        Ok(()) => response(&mut tcp).await.map(|(s, _)| s),
        Err(_) => None,
    };
    (status, reused)
}
