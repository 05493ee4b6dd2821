//! One exchange with a cell on the fast path: the request as the router forwards it (its head
//! already written), the answer passed to the client as it comes, byte for byte but for its
//! hop-by-hop headers.
//!
//! - A kept connection the request fails on is replaced once by a new one when the failure says
//!   nothing reached the cell (the first write failed), or when the request is idempotent and
//!   bodiless (nothing of the client's is lost by sending it again) — `upstream::send`'s rule.
//! - The answer's framing is the cell's: a declared length, chunks (followed to their end:
//!   `chunked`), or, without either, up to the cell's close — then the client's connection
//!   closes too. A connection is kept only after an answer that ended where its framing said.
//! - An interim answer (1xx) is passed on and the final one read after it.

use std::time::{Duration, SystemTime};

use bytes::{Buf, BytesMut};
use http::uri::Authority;
use http_body_util::BodyExt as _;
use service_kit::ApiError;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::chunked::Chunked;
use crate::pool::{CONN_BUF, Conn};
use crate::targets::Worker;

/// An answer's head may be this long at most (a cell's are a few hundred bytes).
const HEAD_MAX: usize = 64 * 1024;
const HEADERS: usize = 64;

/// One request as the exchange needs it; its head (and the body's first bytes) are in `out`.
pub(super) struct Exchange<'a> {
    pub(super) authority: &'a Authority,
    /// Body bytes still to come from the client.
    pub(super) rest: u64,
    /// Idempotent and bodiless: sent once more if a kept connection fails it.
    pub(super) again: bool,
    /// A HEAD request: the answer has no body.
    pub(super) head: bool,
    /// The client asked to close after the answer.
    pub(super) close: bool,
}

/// What became of an exchange: the status the client got (0: none, the client is gone) and
/// whether its connection stays open.
pub(super) struct Done {
    pub(super) status: u16,
    pub(super) open: bool,
}

/// How an answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// An answer's head as read: its length in the cell's buffer, status and framing (the
/// client's copy is written beside it).
#[derive(Debug)]
struct Head {
    len: usize,
    status: u16,
    framing: Framing,
    /// The cell said it closes the connection.
    closes: bool,
}

/// Why an exchange failed before any answer: whether nothing reached the cell, and whether
/// every byte of the client's body was read.
struct Failed {
    error: anyhow::Error,
    nothing_sent: bool,
    body_read: bool,
}

/// Sends `out` (and the rest of the client's body) to the cell and passes its answer on.
pub(super) async fn exchange(
    worker: &Worker,
    x: Exchange<'_>,
    client: &mut TcpStream,
    buf: &mut BytesMut,
    (out, back): (&[u8], &mut Vec<u8>),
) -> Done {
    let key = x.authority.as_str();
    let sent = match worker.pool.take(key) {
        Some(kept) => match attempt(kept, &x, client, buf, out, back).await {
            Err(failed) if failed.nothing_sent || x.again => {
                tracing::debug!(error = %failed.error, "a kept connection failed the request; sending it on a new one");
                connected(&x, client, buf, out, back).await
            }
            sent => sent,
        },
        None => connected(&x, client, buf, out, back).await,
    };
    let (mut conn, mut head) = match sent {
        Ok(sent) => sent,
        Err(failed) => {
            tracing::warn!(cell = %x.authority, error = ?failed.error, "cell unreachable");
            let e =
                ApiError::unavailable("the tenant's cell is not reachable", Duration::from_secs(1));
            return refuse(client, back, e, x.close || !failed.body_read).await;
        }
    };
    // Interim answers first (101 was not asked for: no upgrade comes this way).
    while (100..200).contains(&head.status) && head.status != 101 {
        conn.buf.advance(head.len);
        if client.write_all(back).await.is_err() {
            return Done {
                status: 0,
                open: false,
            };
        }
        head = match read_head(&mut conn, &x, back).await {
            Ok(head) => head,
            Err(_) => {
                return Done {
                    status: 0,
                    open: false,
                };
            }
        };
    }
    if head.status == 101 {
        let e = ApiError::unavailable(
            "the cell switched protocols unasked",
            Duration::from_secs(1),
        );
        return refuse(client, back, e, true).await;
    }
    conn.buf.advance(head.len);
    match body(&mut conn, head.framing, client, back).await {
        Ok(ended) => {
            let keep = ended && !head.closes && conn.buf.is_empty();
            if keep {
                worker.pool.keep(key, conn);
            }
            Done {
                status: head.status,
                open: ended && !x.close,
            }
        }
        Err(()) => Done {
            status: head.status,
            open: false,
        },
    }
}

/// [`attempt`] on a new connection.
async fn connected(
    x: &Exchange<'_>,
    client: &mut TcpStream,
    buf: &mut BytesMut,
    out: &[u8],
    back: &mut Vec<u8>,
) -> Result<(Conn, Head), Failed> {
    match Box::pin(crate::pool::connect_raw(x.authority)).await {
        Ok(conn) => attempt(conn, x, client, buf, out, back).await,
        Err(error) => Err(Failed {
            error,
            nothing_sent: true,
            body_read: x.rest == 0,
        }),
    }
}

/// Sends the request on `conn` and reads the answer's head.
async fn attempt(
    mut conn: Conn,
    x: &Exchange<'_>,
    client: &mut TcpStream,
    buf: &mut BytesMut,
    out: &[u8],
    back: &mut Vec<u8>,
) -> Result<(Conn, Head), Failed> {
    let failed = |error: anyhow::Error, nothing_sent: bool, body_read: bool| Failed {
        error,
        nothing_sent,
        body_read,
    };
    let n = match conn.stream.write(out).await {
        Ok(n) => n,
        Err(e) => return Err(failed(e.into(), true, x.rest == 0)),
    };
    if let Err(e) = conn.stream.write_all(&out[n..]).await {
        return Err(failed(e.into(), false, x.rest == 0));
    }
    if x.rest > 0 {
        forward_body(client, buf, &mut conn.stream, x.rest)
            .await
            .map_err(|(e, read)| failed(e, false, read))?;
    }
    match read_head(&mut conn, x, back).await {
        Ok(head) => Ok((conn, head)),
        Err(e) => Err(failed(e, false, true)),
    }
}

/// The rest of the client's body, `rest` bytes, from the client to the cell. A failure says
/// whether the body was read in full.
async fn forward_body(
    client: &mut TcpStream,
    buf: &mut BytesMut,
    cell: &mut TcpStream,
    mut rest: u64,
) -> Result<(), (anyhow::Error, bool)> {
    while rest > 0 {
        buf.reserve(CONN_BUF);
        match client.read_buf(buf).await {
            Ok(0) => return Err((anyhow::anyhow!("the client broke off its body"), false)),
            Err(e) => return Err((e.into(), false)),
            Ok(_) => {}
        }
        let take = buf.len().min(usize::try_from(rest).unwrap_or(usize::MAX));
        rest -= take as u64;
        let written = cell.write_all(&buf[..take]).await;
        buf.advance(take);
        if let Err(e) = written {
            return Err((e.into(), rest == 0));
        }
    }
    Ok(())
}

/// Reads the answer's head from `conn`, writing the client's copy into `back`.
async fn read_head(conn: &mut Conn, x: &Exchange<'_>, back: &mut Vec<u8>) -> anyhow::Result<Head> {
    loop {
        if !conn.buf.is_empty()
            && let Some(head) = answer_head(&conn.buf, back, x.head, x.close)?
        {
            return Ok(head);
        }
        anyhow::ensure!(conn.buf.len() < HEAD_MAX, "the answer's head is too long");
        conn.buf.reserve(CONN_BUF / 2);
        anyhow::ensure!(
            conn.stream.read_buf(&mut conn.buf).await? > 0,
            "the cell closed the connection before answering"
        );
    }
}

/// The answer's head if `buf` holds all of it, its client's copy written into `back`: the
/// cell's headers but the hop-by-hop ones, and `Connection: close` when the client's
/// connection closes after it.
fn answer_head(
    buf: &[u8],
    back: &mut Vec<u8>,
    head_request: bool,
    close: bool,
) -> anyhow::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(buf)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let status = res.code.unwrap_or_default();
    anyhow::ensure!((100..600).contains(&status), "status {status}");
    back.clear();
    back.extend_from_slice(b"HTTP/1.1 ");
    back.extend_from_slice(&[
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    back.extend_from_slice(res.reason.unwrap_or_default().as_bytes());
    back.extend_from_slice(b"\r\n");
    // An HTTP/1.0 cell closes after each answer unless it says otherwise; it is not kept.
    let mut closes = res.version == Some(0);
    let (mut length, mut coded, mut chunked) = (None, false, false);
    for header in res.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("connection") {
            closes |= header
                .value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
            continue;
        }
        if name.eq_ignore_ascii_case("keep-alive") || name.eq_ignore_ascii_case("proxy-connection")
        {
            continue;
        }
        if name.eq_ignore_ascii_case("content-length") {
            let n = super::head::digits(header.value)
                .ok_or_else(|| anyhow::anyhow!("a content-length that is not one"))?;
            anyhow::ensure!(length.is_none_or(|l| l == n), "two content-lengths");
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            coded = true;
            chunked = header
                .value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
        super::header(back, name.as_bytes(), header.value);
    }
    anyhow::ensure!(
        !(coded && length.is_some()),
        "both a length and a transfer coding"
    );
    let framing = match (status, length) {
        _ if head_request || status < 200 || status == 204 || status == 304 => Framing::Empty,
        _ if chunked => Framing::Chunked,
        _ if coded => Framing::UntilClose,
        (_, Some(n)) => Framing::Length(n),
        (_, None) => Framing::UntilClose,
    };
    if close || framing == Framing::UntilClose {
        back.extend_from_slice(b"connection: close\r\n");
    }
    back.extend_from_slice(b"\r\n");
    Ok(Some(Head {
        len,
        status,
        framing,
        closes,
    }))
}

/// Passes the body on after the head in `back` (sent with the body's first bytes); whether it
/// ended where its framing said, so the connection may be kept. `Err`: it broke off.
async fn body(
    conn: &mut Conn,
    framing: Framing,
    client: &mut TcpStream,
    back: &mut Vec<u8>,
) -> Result<bool, ()> {
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    let mut chunked = Chunked::default();
    let mut first = true;
    loop {
        let (take, ended) = match framing {
            Framing::Empty => (0, true),
            Framing::Length(_) => {
                let take = conn
                    .buf
                    .len()
                    .min(usize::try_from(left).unwrap_or(usize::MAX));
                left -= take as u64;
                (take, left == 0)
            }
            Framing::Chunked => match chunked.feed(&conn.buf).map_err(|_| ())? {
                Some(n) => (n, true),
                None => (conn.buf.len(), false),
            },
            Framing::UntilClose => (conn.buf.len(), false),
        };
        let written = if first {
            back.extend_from_slice(&conn.buf[..take]);
            client.write_all(back).await
        } else {
            client.write_all(&conn.buf[..take]).await
        };
        written.map_err(|_| ())?;
        first = false;
        conn.buf.advance(take);
        if ended {
            return Ok(true);
        }
        conn.buf.reserve(CONN_BUF);
        match conn.stream.read_buf(&mut conn.buf).await {
            Ok(0) if framing == Framing::UntilClose => return Ok(false),
            Ok(0) | Err(_) => return Err(()),
            Ok(_) => {}
        }
    }
}

/// The router's own answer `error`, sent whole (closing the connection after it when `close`).
pub(super) async fn refuse(
    client: &mut TcpStream,
    back: &mut Vec<u8>,
    error: ApiError,
    close: bool,
) -> Done {
    let (parts, body) = axum::response::IntoResponse::into_response(error).into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    back.clear();
    back.extend_from_slice(b"HTTP/1.1 ");
    back.extend_from_slice(parts.status.as_str().as_bytes());
    back.push(b' ');
    back.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    back.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        super::header(back, name.as_str().as_bytes(), value.as_bytes());
    }
    super::header(back, b"content-length", body.len().to_string().as_bytes());
    let date = httpdate::fmt_http_date(SystemTime::now());
    super::header(back, b"date", date.as_bytes());
    if close {
        back.extend_from_slice(b"connection: close\r\n");
    }
    back.extend_from_slice(b"\r\n");
    back.extend_from_slice(&body);
    let sent = client.write_all(back).await.is_ok();
    Done {
        status: parts.status.as_u16(),
        open: sent && !close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(answer: &str, head_request: bool, close: bool) -> (Option<Head>, String) {
        let mut back = Vec::new();
        let head = answer_head(answer.as_bytes(), &mut back, head_request, close).expect("head");
        (head, String::from_utf8(back).expect("utf-8"))
    }

    #[test]
    fn the_clients_copy_drops_hop_by_hop_headers_and_says_when_it_closes() {
        let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nKeep-Alive: 5\r\nX-A: b\r\n\r\nok";
        let (got, back) = head(answer, false, false);
        let got = got.expect("complete");
        assert_eq!(
            (got.status, got.framing, got.closes),
            (200, Framing::Length(2), true)
        );
        assert_eq!(got.len, answer.len() - 2, "the head, not the body");
        assert_eq!(
            back,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\n"
        );
        let (_, back) = head(
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            false,
            true,
        );
        assert!(back.ends_with("connection: close\r\n\r\n"), "{back}");
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let framing = |answer: &str, head_request| {
            head(answer, head_request, false)
                .0
                .expect("complete")
                .framing
        };
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(framing(chunked, false), Framing::Chunked);
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n", false),
            Framing::UntilClose
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            Framing::Empty
        );
        assert_eq!(
            framing(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                false
            ),
            Framing::Empty
        );
        assert_eq!(
            framing("HTTP/1.1 103 Early Hints\r\n\r\n", false),
            Framing::Empty
        );
        let (_, back) = head("HTTP/1.1 200 OK\r\n\r\n", false, false);
        assert!(back.ends_with("connection: close\r\n\r\n"), "{back}");
        assert!(
            head("HTTP/1.1 200 OK\r\nContent-Le", false, false)
                .0
                .is_none()
        );
    }

    #[test]
    fn answers_no_hop_could_delimit_alike_are_refused() {
        for answer in [
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 999 What\r\n\r\n",
            "HTTP/1.1 abc\r\n\r\n",
        ] {
            let mut back = Vec::new();
            assert!(
                answer_head(answer.as_bytes(), &mut back, false, false).is_err(),
                "{answer:?}"
            );
        }
    }
}
