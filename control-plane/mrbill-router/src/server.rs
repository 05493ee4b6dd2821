//! Serving connections, thread per core: one acceptor hands each accepted connection to a
//! worker thread (round robin); each worker runs its own single-threaded event loop with its
//! own keep-alive pool to the cells, so a request and its upstream exchange never cross threads.
//!
//! ```text
//! listener ─accept─► acceptor (caller's runtime) ──stream──► worker 0..n (current-thread runtime)
//!                                                             ├─ fast path: plain requests ─► cell
//!                                                             └─ then hyper HTTP/1 conn ─► route()
//!                                                                  ├─ /v1/resolve, /healthz → api
//!                                                                  └─ else → proxy ─► cell (pool)
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use service_kit::ApiError;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tower::Service as _;

use crate::proxy;
use crate::targets::Worker;
use crate::upstream::ProxyBody;
use crate::{AppState, api};

/// How long open connections may take to finish after shutdown begins.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves the router on `listener` until `shutdown` resolves, then lets open requests finish
/// (at most 10 s). `/v1/resolve` and `/healthz` are the router's own API; everything else is
/// proxied to a tenant's cell.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = Vec::new();
    for index in 0..state.config.workers.max(1) {
        let (streams_tx, streams_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let (state, stop) = (state.clone(), stop_rx.clone());
        std::thread::Builder::new()
            .name(format!("router-worker-{index}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(work(index, state, streams_rx, stop)),
                    Err(e) => tracing::error!(error = %e, "worker runtime failed to start"),
                }
                let _ = done_tx.send(());
            })?;
        workers.push((streams_tx, done_rx));
    }
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next = 0;
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "accepted connection unusable");
                continue;
            }
        };
        next = (next + 1) % workers.len();
        if workers[next].0.send((stream, peer)).is_err() {
            tracing::error!(worker = next, "worker is gone; connection dropped");
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    for (streams, done) in workers {
        drop(streams);
        if tokio::time::timeout(DRAIN, done).await.is_err() {
            tracing::warn!("connections still open after 10 s; closing them");
        }
    }
    Ok(())
}

/// One worker: serves the connections it is handed until told to stop, then drains them.
async fn work(
    index: usize,
    state: AppState,
    mut streams: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    mut stop: watch::Receiver<bool>,
) {
    let worker = Arc::new(Worker {
        api: api(state.clone()),
        pool: crate::pool::Pool::new(),
        routes: Default::default(),
        index,
        fast: state.config.fast_path,
        state,
    });
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let (stream, peer) = tokio::select! {
            next = streams.recv() => match next {
                Some(next) => next,
                None => break,
            },
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "connection not registered");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            worker.clone(),
            stream,
            peer,
            stop.clone(),
            open_rx.clone(),
        ));
    }
    drop(open_rx);
    let _ = tokio::time::timeout(DRAIN, open_tx.closed()).await;
}

/// One client connection (HTTP/1.1, upgradable to WebSocket), closed gracefully on stop.
async fn connection(
    worker: Arc<Worker>,
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
    _open: watch::Receiver<()>,
) {
    let peer = crate::peer::Peer::new(peer, &worker.state.config);
    // Plain requests first (`fast`); hyper takes the connection over at the first other one.
    let unread = if worker.fast {
        match crate::fast::serve(&worker, &peer, &mut stream, &stop).await {
            crate::fast::Served::Closed => return,
            crate::fast::Served::Hyper(unread) => unread,
        }
    } else {
        bytes::Bytes::new()
    };
    let stream = crate::rewind::Rewind::new(unread, stream);
    let head_timeout = worker.state.config.head_timeout;
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (worker, peer) = (worker.clone(), peer.clone());
        async move { Ok::<_, Infallible>(route(&worker, &peer, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        // One buffer per answer, as for the cells' side (`pool::connect`).
        .writev(false)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "client connection ended");
            }
            return;
        }
        _ = stop.wait_for(|stop| *stop) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// Errors of one connection that say nothing about the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

async fn route(
    worker: &Worker,
    peer: &crate::peer::Peer,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let client = peer.client(&worker.state.config, req.headers());
    match req.uri().path() {
        "/v1/resolve" | "/healthz" => {
            if req.uri().path() == "/v1/resolve"
                && let Err(wait) = worker.state.admit_resolve(client.ip)
            {
                return crate::upstream::refuse(req.into_body(), ApiError::rate_limited(wait))
                    .await;
            }
            match worker.api.clone().call(req).await {
                Ok(res) => res.map(Either::Right),
                Err(never) => match never {},
            }
        }
        _ => proxy::handle(worker, &client, req).await,
    }
}
