//! Binding and serving the public and internal listeners, with graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::http::Readiness;

/// The two bound listeners of a cell service.
#[derive(Debug)]
pub struct Listeners {
    pub public: TcpListener,
    pub internal: TcpListener,
}

impl Listeners {
    /// Binds both addresses (port 0 picks a free port).
    pub async fn bind(public: SocketAddr, internal: SocketAddr) -> anyhow::Result<Self> {
        let public = TcpListener::bind(public)
            .await
            .with_context(|| format!("binding {public}"))?;
        let internal = TcpListener::bind(internal)
            .await
            .with_context(|| format!("binding {internal}"))?;
        Ok(Self { public, internal })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn internal_addr(&self) -> SocketAddr {
        self.internal
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Writes `{"public": "...", "internal": "..."}` atomically, so a supervisor or test waiting
    /// on the file sees the bound ports, never a half-written file.
    pub fn write_ready_file(&self, path: &Path) -> anyhow::Result<()> {
        let body = serde_json::json!({ "public": self.public_addr(), "internal": self.internal_addr(), "pid": std::process::id() });
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, body.to_string())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Serves both routers until `shutdown` resolves, then stops accepting, marks the service
    /// not ready and lets in-flight requests finish.
    pub async fn serve(
        self,
        public: Router,
        internal: Router,
        readiness: Readiness,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            readiness.start_draining();
            let _ = tx.send(true);
        });
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        // Small frames (WebSocket updates, short JSON answers) go out at once: without
        // TCP_NODELAY, Nagle + delayed ACKs add ~40 ms to some of them.
        let nodelay = |tcp: &mut tokio::net::TcpStream| {
            let _ = tcp.set_nodelay(true);
        };
        let public = axum::serve(
            self.public.tap_io(nodelay),
            public.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(wait(rx.clone()));
        let internal = axum::serve(
            self.internal.tap_io(nodelay),
            internal.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(wait(rx));
        tokio::try_join!(async { public.await.context("public listener") }, async {
            internal.await.context("internal listener")
        })?;
        Ok(())
    }
}

/// A cell service ready to serve: its routes wrapped in the shared layers, both listeners
/// bound and the ready file written. Every service's `App` is built around one.
#[derive(Debug)]
pub struct Bound {
    listeners: Listeners,
    public: Router,
    internal: Router,
    readiness: Readiness,
}

impl Bound {
    /// Wraps `api` with [`crate::http::public_router`] (cell guard, body limit, health,
    /// metrics) and `internal` with [`crate::http::internal_router`] (service token), binds the
    /// configured addresses and writes `MRBILL_READY_FILE` if set.
    pub async fn bind(
        service: &'static str,
        common: &crate::config::CommonConfig,
        api: Router,
        internal: Router,
        token: crate::auth::ServiceToken,
        readiness: Readiness,
    ) -> anyhow::Result<Self> {
        let http = crate::http::HttpConfig {
            body_limit: common.body_limit,
            guard: crate::cell::CellGuard::new(&common.cell_id, &common.trusted_proxies),
            readiness: readiness.clone(),
        };
        let public = crate::http::public_router(api, http);
        let internal = crate::http::internal_router(internal, token, common.body_limit);
        let listeners = Listeners::bind(common.http_addr, common.internal_addr).await?;
        if let Some(path) = &common.ready_file {
            listeners.write_ready_file(path)?;
        }
        tracing::info!(public = %listeners.public_addr(), internal = %listeners.internal_addr(), cell = %common.cell_id, "{service} listening");
        Ok(Self {
            listeners,
            public,
            internal,
            readiness,
        })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.listeners.public_addr()
    }

    pub fn internal_addr(&self) -> SocketAddr {
        self.listeners.internal_addr()
    }

    /// Serves until `shutdown` resolves (see [`Listeners::serve`]).
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.listeners
            .serve(self.public, self.internal, self.readiness, shutdown)
            .await
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
