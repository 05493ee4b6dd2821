//! A worker's connections to the cells: HTTP/1.1 keep-alive connections made with hyper's
//! client connection (`hyper::client::conn::http1`), kept per upstream authority by the worker
//! that made them; and, apart, the fast path's (`Conn`: a socket and its read buffer, on which
//! `fast::relay` speaks HTTP/1.1 itself), kept only while idle and dropped at checkout when the
//! cell has closed them (from the readiness the event loop has seen: a system call only for a
//! socket it marked readable).
//!
//! A worker is one thread, so a request costs one lookup in a small map under a lock nobody
//! contends: no pool shared between threads, no task spawned per request to return its
//! connection, no race between a checkout and a connect started just in case (hyper-util's
//! client did all three: about a fifth of a proxied request's instructions, docs/benchmarks.md,
//! "Counted").
//!
//! - A connection goes back to its list as soon as the response's head is in. hyper makes it
//!   ready for the next request once the response's body has been read, so a list may hold busy
//!   connections; a checkout skips them, and drops any the cell has closed.
//! - **A stale connection is retried, once, on a new one**: a request that a kept connection
//!   closed on before any of it was written (the cell closed it while idle) cannot have reached
//!   the cell, so it is sent again whatever its method. Requests that may have reached the cell
//!   are retried only when idempotent and bodiless (`upstream::send`).
//! - Every connection is driven `with_upgrades`: a WebSocket handshake the cell answers 101 takes
//!   the connection over, and it is not kept.
//! - A connection idle for 30 s is closed by the worker's sweep (every 10 s).
//! - Requests come in origin form (`/path?query`, `upstream::Upstream::uri`) and go with the
//!   client's `Host`, or the cell's authority when the client sent none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use anyhow::Context as _;
use http::uri::Authority;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::upstream::UpstreamBody;

/// How often idle connections are looked at, and after how many looks one is closed.
const SWEEP: Duration = Duration::from_secs(10);
const IDLE_SWEEPS: u64 = 3;
/// How long a new connection to a cell may take.
const CONNECT: Duration = Duration::from_secs(10);

/// One worker's kept connections: hyper's, and the fast path's own (`fast`).
#[derive(Default)]
pub(crate) struct Pool {
    kept: Mutex<foldhash::HashMap<Box<str>, Vec<Kept>>>,
    /// The fast path's idle connections, each with the sweep count when it was put back.
    raw: Mutex<foldhash::HashMap<Box<str>, Vec<IdleConn>>>,
    /// Sweeps so far: a connection's age in sweeps, without reading the clock per request.
    sweeps: AtomicU64,
}

struct Kept {
    sender: SendRequest<UpstreamBody>,
    /// The sweep count when it was put back.
    since: u64,
}

/// A connection to a cell that the fast path speaks HTTP/1.1 on itself (`fast::relay`), and
/// the bytes read from it past what was handled. Kept only between exchanges, idle.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) buf: bytes::BytesMut,
}

type IdleConn = (Conn, u64);

/// What a connection to a cell reads into at a time.
pub(crate) const CONN_BUF: usize = 16 * 1024;

impl Conn {
    /// Whether the cell has not closed it (nor sent anything unasked) while it was kept. Reads
    /// the readiness the event loop has already seen; a socket it marked readable is read once,
    /// without waiting, to tell a stale mark from a close.
    fn alive(&self) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            std::task::Poll::Pending => true,
            std::task::Poll::Ready(Err(_)) => false,
            std::task::Poll::Ready(Ok(())) => matches!(
                self.stream.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            ),
        }
    }
}

impl Pool {
    /// A pool whose idle connections a task on the current runtime closes (it ends with the
    /// pool).
    pub(crate) fn new() -> Arc<Self> {
        let pool = Arc::new(Self::default());
        tokio::spawn(sweep(Arc::downgrade(&pool)));
        pool
    }

    /// Sends `req` (in origin form) to `authority` on a kept connection, or a new one, and keeps
    /// the connection for the next request unless the cell switched protocols on it.
    pub(crate) async fn send(
        &self,
        authority: &Authority,
        mut req: Request<UpstreamBody>,
    ) -> anyhow::Result<Response<Incoming>> {
        host(&mut req, authority);
        let key = authority.as_str();
        let (mut sender, kept) = match self.checkout(key) {
            Some(sender) => (sender, true),
            // Connecting is rare; its future boxed keeps the request's future small.
            None => (Box::pin(connect(authority)).await?, false),
        };
        let res = match sender.try_send_request(req).await {
            Ok(res) => res,
            Err(mut e) => match e.take_message() {
                Some(req) if kept => {
                    tracing::debug!(error = %e.into_error(), "a kept connection was closed; sending on a new one");
                    sender = Box::pin(connect(authority)).await?;
                    sender.send_request(req).await?
                }
                _ => return Err(e.into_error().into()),
            },
        };
        if res.status() != StatusCode::SWITCHING_PROTOCOLS {
            self.checkin(key, sender);
        }
        Ok(res)
    }

    /// A kept connection to `authority` that can take a request now. (Keyed by the authority
    /// as the route table spells it: a plain string compares and hashes faster than an
    /// [`Authority`], whose comparisons ignore case.)
    fn checkout(&self, authority: &str) -> Option<SendRequest<UpstreamBody>> {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let list = kept.get_mut(authority)?;
        let mut at = list.len();
        while at > 0 {
            at -= 1;
            if list[at].sender.is_closed() {
                list.swap_remove(at);
            } else if list[at].sender.is_ready() {
                return Some(list.swap_remove(at).sender);
            }
        }
        None
    }

    fn checkin(&self, authority: &str, sender: SendRequest<UpstreamBody>) {
        let kept_since = Kept {
            sender,
            since: self.sweeps.load(Ordering::Relaxed),
        };
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        match kept.get_mut(authority) {
            Some(list) => list.push(kept_since),
            None => {
                kept.insert(authority.into(), vec![kept_since]);
            }
        }
    }

    /// A kept connection of the fast path's to `authority` that the cell has not closed.
    pub(crate) fn take(&self, authority: &str) -> Option<Conn> {
        let mut raw = self.raw.lock().unwrap_or_else(PoisonError::into_inner);
        let list = raw.get_mut(authority)?;
        while let Some((conn, _)) = list.pop() {
            if conn.alive() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn`, idle, for the next exchange with `authority`.
    pub(crate) fn keep(&self, authority: &str, conn: Conn) {
        let since = self.sweeps.load(Ordering::Relaxed);
        let mut raw = self.raw.lock().unwrap_or_else(PoisonError::into_inner);
        match raw.get_mut(authority) {
            Some(list) => list.push((conn, since)),
            None => {
                raw.insert(authority.into(), vec![(conn, since)]);
            }
        }
    }

    /// Closes the connections idle for [`IDLE_SWEEPS`] sweeps and forgets closed ones.
    fn sweep_once(&self) {
        let now = self.sweeps.fetch_add(1, Ordering::Relaxed) + 1;
        let mut raw = self.raw.lock().unwrap_or_else(PoisonError::into_inner);
        raw.retain(|_, list| {
            list.retain(|(_, since)| now - since < IDLE_SWEEPS);
            !list.is_empty()
        });
        drop(raw);
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.retain(|_, list| {
            list.retain(|k| {
                let idle = k.sender.is_ready() && now - k.since >= IDLE_SWEEPS;
                !k.sender.is_closed() && !idle
            });
            !list.is_empty()
        });
    }

    /// How many connections are kept (busy or idle).
    #[cfg(test)]
    fn len(&self) -> usize {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.values().map(Vec::len).sum()
    }
}

async fn sweep(pool: Weak<Pool>) {
    let mut tick = tokio::time::interval(SWEEP);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.sweep_once();
    }
}

/// A new connection to `authority`, driven by a task of its own.
async fn connect(authority: &Authority) -> anyhow::Result<SendRequest<UpstreamBody>> {
    let stream = tcp(authority).await?;
    // Head and body written from one buffer (`writev(false)`): for the small bodies most
    // requests carry, copying them beside the head costs less than gathering (counted, 1.7 %).
    let (sender, connection) = http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "connection to a cell ended");
        }
    });
    Ok(sender)
}

/// A new connection to `authority` for the fast path.
pub(crate) async fn connect_raw(authority: &Authority) -> anyhow::Result<Conn> {
    Ok(Conn {
        stream: tcp(authority).await?,
        buf: bytes::BytesMut::with_capacity(CONN_BUF),
    })
}

/// A TCP connection to `authority` (at most [`CONNECT`] to make), without Nagle's delay.
async fn tcp(authority: &Authority) -> anyhow::Result<TcpStream> {
    // An IPv6 literal comes bracketed.
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::time::timeout(CONNECT, TcpStream::connect((host, port)))
        .await
        .with_context(|| format!("connecting to {authority} timed out"))?
        .with_context(|| format!("cannot connect to {authority}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The client's `Host`, or the cell's authority when the client sent none.
fn host<B>(req: &mut Request<B>, authority: &Authority) {
    if !req.headers().contains_key(header::HOST)
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().insert(header::HOST, host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_a_host_gets_the_cells() {
        let authority: Authority = "cell.internal:8080".parse().expect("authority");
        let mut req = Request::new(());
        host(&mut req, &authority);
        assert_eq!(req.headers()[header::HOST], "cell.internal:8080");
        let mut req = Request::get("/")
            .header(header::HOST, "acme.mrbill.test")
            .body(())
            .expect("request");
        host(&mut req, &authority);
        assert_eq!(
            req.headers()[header::HOST],
            "acme.mrbill.test",
            "the client's"
        );
    }

    async fn get(pool: &Pool, authority: &Authority) -> StatusCode {
        let req = Request::get("/x")
            .body(UpstreamBody::Right(http_body_util::Full::new(
                bytes::Bytes::new(),
            )))
            .expect("request");
        let res = pool.send(authority, req).await.expect("answer");
        let status = res.status();
        http_body_util::BodyExt::collect(res.into_body())
            .await
            .expect("body");
        status
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_three_sweeps_and_reused_before() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let authority: Authority = listener
            .local_addr()
            .expect("addr")
            .to_string()
            .parse()
            .expect("authority");
        let app = axum::Router::new().fallback(|| async { "ok" });
        tokio::spawn(async move { axum::serve(listener, app).await });
        let pool = Pool::default();
        assert_eq!(get(&pool, &authority).await, StatusCode::OK);
        tokio::task::yield_now().await;
        assert_eq!(pool.len(), 1);
        pool.sweep_once();
        pool.sweep_once();
        assert_eq!(get(&pool, &authority).await, StatusCode::OK);
        assert_eq!(pool.len(), 1, "the kept one was used");
        pool.sweep_once();
        pool.sweep_once();
        assert_eq!(pool.len(), 1, "used two sweeps ago");
        pool.sweep_once();
        assert_eq!(pool.len(), 0, "idle for three sweeps");
    }
}
