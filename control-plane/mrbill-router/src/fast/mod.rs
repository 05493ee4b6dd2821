//! The fast path: plain requests proxied the way nginx proxies them, without hyper. A client's
//! connection starts here; its request heads are parsed in place (`httparse`, no header map),
//! the head the cell gets is written straight from the client's bytes, and the cell's answer
//! goes back byte for byte but for its hop-by-hop headers, from one task per client
//! connection over connections to the cells that the worker keeps (`pool::Conn`).
//!
//! ```text
//! client bytes ─► head::plain ─┬─ plain, routed, active ─► relay::exchange ─► cell ─► client
//!                              └─ anything else ─► hyper (server::connection), from that
//!                                 request on, with the bytes not yet handled (rewind::Rewind)
//! ```
//!
//! **Invariant:** the fast path answers only what it fully understands, and decides before it
//! acts. A request it does not take — not plain (`head`), the router's own API, no such tenant
//! or endpoint, a route not active (suspended, frozen), a body over the service's limit, a
//! WebSocket handshake — hands the connection to hyper before anything of that request was
//! admitted, counted or sent, and hyper answers it exactly as it would have from the start. So
//! every refusal, limit and upgrade keeps the one implementation it has (`proxy`, `upstream`),
//! but two the fast path meets only after it has taken a request: over the tenant's budget
//! (429) and the cell not reachable (503), answered with the same `ApiError` bodies, the
//! refused body read first as `upstream::refuse` reads it. What the fast path adds is the
//! common case, made cheap: counted, a third of hyper's
//! instructions per request, and 0.57× nginx's (docs/benchmarks.md, "Session 28").
//!
//! What a request gets is the same on both paths: the router's headers (`X-Cell-Id`,
//! `X-Forwarded-For`, `X-Forwarded-Prefix`), the client's others but the hop-by-hop ones, one
//! retry on a new connection by `upstream::send`'s rule, the tenant's rate limit and counters,
//! a head sent within 30 s or the connection closed (slowloris), and, with traces exported,
//! the same span (`trace`) whose context the cell gets in `traceparent`.

mod chunked;
mod head;
mod relay;

use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use cell_model::route_feed::RouteState;
use http::uri::Authority;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use service_kit::ApiError;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::peer::Peer;
use crate::request::{service_for, tenant_of};
use crate::targets::{Target, Worker};
use crate::trace::{Arrived, RequestSpan};

/// What became of a client's connection: closed, or handed to hyper with the bytes not yet
/// handled (the request the fast path did not take, and any after it).
pub(crate) enum Served {
    Closed,
    Hyper(Bytes),
}

/// A head longer than this is hyper's (which allows more, and answers 431 past its own limit).
const HEAD_MAX: usize = 16 * 1024;
/// Headers a plain head may have (more: hyper's).
const HEADERS: usize = 32;
/// What a client's connection reads into at a time.
const BUF: usize = 4 * 1024;
/// A refused request's body is read (and dropped) for at most this long, as `upstream::refuse`
/// does; past it the connection closes after the answer.
const REFUSED_TIME: Duration = Duration::from_secs(1);

/// Serves a client's connection until it closes, or until a request the fast path does not
/// take (then hyper serves the rest).
pub(crate) async fn serve(
    worker: &Worker,
    peer: &Peer,
    client: &mut TcpStream,
    stop: &watch::Receiver<bool>,
) -> Served {
    let mut buf = BytesMut::with_capacity(BUF);
    let (mut out, mut back) = (Vec::with_capacity(1024), Vec::with_capacity(1024));
    // The request's span when traces are exported (kept here rather than in `Next`: most
    // requests have none, and it is large).
    let mut span: Option<RequestSpan> = None;
    // One timer and one stop signal for the connection, re-armed per head.
    let head_timeout = worker.state.config.head_timeout;
    let deadline = tokio::time::sleep(head_timeout);
    tokio::pin!(deadline);
    let mut watching = stop.clone();
    let stopping = watching.wait_for(|stop| *stop);
    tokio::pin!(stopping);
    loop {
        let mut armed = false;
        let next = loop {
            if !buf.is_empty() {
                match take(worker, peer, &buf, &mut out, &mut span) {
                    Take::Partial => {}
                    Take::Hyper => return Served::Hyper(buf.freeze()),
                    Take::Plain(next) => break next,
                }
            }
            if buf.len() >= HEAD_MAX {
                return Served::Hyper(buf.freeze());
            }
            if !armed {
                let at = tokio::time::Instant::now() + head_timeout;
                deadline.as_mut().reset(at);
                armed = true;
            }
            buf.reserve(BUF / 2);
            tokio::select! {
                biased;
                read = client.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return Served::Closed,
                    Ok(_) => {}
                },
                () = &mut deadline => return Served::Closed,
                _ = &mut stopping => return Served::Closed,
            }
        };
        buf.advance(next.len);
        let done = match next.refused {
            Some(e) => {
                let read = discard(client, &mut buf, next.length).await;
                relay::refuse(client, &mut back, e, next.close || !read).await
            }
            None => {
                let first = buf
                    .len()
                    .min(usize::try_from(next.length).unwrap_or(usize::MAX));
                out.extend_from_slice(&buf[..first]);
                buf.advance(first);
                let exchange = relay::Exchange {
                    authority: &next.authority,
                    rest: next.length - first as u64,
                    again: next.again,
                    head: next.head,
                    close: next.close,
                };
                relay::exchange(worker, exchange, client, &mut buf, (&out, &mut back)).await
            }
        };
        if let Ok(status) = StatusCode::from_u16(done.status) {
            next.target.stats.answered_fast(worker.index, status);
            if let Some(span) = span.take() {
                span.end(status);
            }
        }
        if !done.open || *stop.borrow() {
            let _ = client.shutdown().await;
            return Served::Closed;
        }
    }
}

/// A request the fast path takes: its head's length, where it goes, and how to answer.
struct Next {
    len: usize,
    target: Arc<Target>,
    authority: Authority,
    /// The body's declared length.
    length: u64,
    again: bool,
    head: bool,
    close: bool,
    /// Over the rate limit: answered without forwarding.
    refused: Option<ApiError>,
}

enum Take {
    /// The head is not all here yet.
    Partial,
    /// Not the fast path's: hyper's from here on.
    Hyper,
    Plain(Next),
}

/// Reads the head at the start of `buf`; for a request the fast path takes, admits it, starts
/// its `span` (traces exported) and writes the head the cell gets into `out`.
fn take(
    worker: &Worker,
    peer: &Peer,
    buf: &[u8],
    out: &mut Vec<u8>,
    span: &mut Option<RequestSpan>,
) -> Take {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Take::Partial,
        Err(_) => return Take::Hyper,
    };
    let Some(plain) = head::plain(&req) else {
        return Take::Hyper;
    };
    let state = &worker.state;
    let Some((tenant, rest)) = tenant_of(plain.host, plain.path, &state.config.domain) else {
        return Take::Hyper;
    };
    let Some((service, upstream_path)) = service_for(rest) else {
        return Take::Hyper;
    };
    if plain.length > service.body_limit() as u64 {
        return Take::Hyper;
    }
    let Some(target) = worker.target(&tenant) else {
        return Take::Hyper;
    };
    if target.state != RouteState::Active {
        return Take::Hyper;
    }
    let Some(upstream) = target.upstream(service, upstream_path) else {
        return Take::Hyper;
    };
    // Decided: from here on the request is the fast path's.
    let client = if plain.forwarded && peer.trusted() {
        let mut forwarded = HeaderMap::new();
        for header in req.headers.iter() {
            if header.name.eq_ignore_ascii_case("x-forwarded-for")
                && let Ok(value) = HeaderValue::from_bytes(header.value)
            {
                forwarded.append(HeaderName::from_static("x-forwarded-for"), value);
            }
        }
        peer.client(&state.config, &forwarded)
    } else {
        peer.client(&state.config, &HeaderMap::new())
    };
    let arrived = Arrived::now(&trace_context(&req, plain.traced));
    let method = arrived
        .is_some()
        .then(|| Method::from_bytes(plain.method.as_bytes()).ok())
        .flatten();
    let refused = state.admit(&target, client.ip).err().map(|wait| {
        target.stats.limited(worker.index);
        ApiError::rate_limited(wait)
    });
    *span = match (arrived, &method) {
        (Some(arrived), Some(method)) if refused.is_some() => {
            arrived.refused(method, StatusCode::TOO_MANY_REQUESTS);
            None
        }
        (Some(arrived), Some(method)) => arrived.routed(method, service, &target.trace),
        _ => None,
    };
    out.clear();
    out.extend_from_slice(plain.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(upstream.base_path().as_bytes());
    out.extend_from_slice(upstream_path.as_bytes());
    if let Some(query) = plain.query {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for header in req.headers.iter() {
        // A traced request's `traceparent` is the router's span's (the client's `tracestate`
        // goes on as it came).
        let replaced = span.is_some() && header.name.eq_ignore_ascii_case("traceparent");
        if !head::dropped(header.name) && !replaced {
            self::header(out, header.name.as_bytes(), header.value);
        }
    }
    if let Some(span) = span {
        self::header(out, b"traceparent", &span.traceparent());
    }
    if plain.host.is_none() {
        self::header(out, b"host", upstream.authority.as_str().as_bytes());
    }
    self::header(out, b"x-cell-id", target.cell_id.as_bytes());
    self::header(out, b"x-forwarded-for", client.forwarded_for.as_bytes());
    // Path form (`/t/<slug>/…`): the cell learns the prefix its links need.
    if rest.len() < plain.path.len() {
        self::header(out, b"x-forwarded-prefix", target.path_prefix.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    let idempotent = matches!(plain.method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE");
    Take::Plain(Next {
        len,
        authority: upstream.authority.clone(),
        target,
        length: plain.length,
        again: idempotent && plain.length == 0,
        head: plain.method == "HEAD",
        close: plain.close,
        refused,
    })
}

/// A request's trace context headers (`traceparent`, `tracestate`), for the span's parent.
fn trace_context(req: &httparse::Request<'_, '_>, traced: bool) -> HeaderMap {
    let mut context = HeaderMap::new();
    if traced {
        for header in req.headers.iter() {
            let name = header.name;
            if (name.eq_ignore_ascii_case("traceparent") || name.eq_ignore_ascii_case("tracestate"))
                && let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_bytes(header.value),
                )
            {
                context.append(name, value);
            }
        }
    }
    context
}

/// One header line.
fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Reads a refused request's body (`length` bytes, the first of them in `buf`) and drops it,
/// for at most [`REFUSED_TIME`]; whether it got to the end.
async fn discard(client: &mut TcpStream, buf: &mut BytesMut, length: u64) -> bool {
    let have = buf.len().min(usize::try_from(length).unwrap_or(usize::MAX));
    buf.advance(have);
    let mut left = length - have as u64;
    let drain = async {
        while left > 0 {
            buf.reserve(BUF);
            match client.read_buf(buf).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
            let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            buf.advance(take);
            left -= take as u64;
        }
        true
    };
    tokio::time::timeout(REFUSED_TIME, drain)
        .await
        .unwrap_or(false)
}
