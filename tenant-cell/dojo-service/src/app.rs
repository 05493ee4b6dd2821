//! Wiring: config → pool + migrations → rooms → routers → listeners.

use std::future::Future;
use std::net::SocketAddr;

use service_kit::auth::ServiceToken;
use service_kit::http::Readiness;
use service_kit::peer::Peer;
use service_kit::serve::Bound;
use sqlx::PgPool;

use crate::config::Config;
use crate::room::Rooms;
use crate::state::{AppState, Inner};
use crate::{MIGRATOR, routes};

/// A built, bound, not yet serving dojo-service.
#[derive(Debug)]
pub struct App {
    bound: Bound,
    pool: PgPool,
    closing: tokio::sync::watch::Sender<bool>,
}

impl App {
    /// Connects to the database (waiting up to 30 s for it), migrates, and binds both listeners.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = service_kit::db::connect(&config.common, &MIGRATOR).await?;
        Self::build_with_pool(config, pool).await
    }

    /// Like [`App::build`] with an existing (migrated) pool.
    pub async fn build_with_pool(config: Config, pool: PgPool) -> anyhow::Result<Self> {
        let peer = Peer::new(&config.common.cell_id, &config.peer)?;
        let readiness = Readiness::new(Some(pool.clone()));
        let common = config.common.clone();
        let service_token = ServiceToken::new(config.peer.service_token.clone());
        let rooms = Rooms::start(pool.clone(), config.live);
        let state = AppState::new(Inner {
            pool: pool.clone(),
            peer,
            config,
            rooms,
            closing: tokio::sync::watch::Sender::new(false),
        });
        let closing = state.closing.clone();
        let api = routes::public(state.clone())
            .merge(service_kit::openapi::route(crate::openapi::public_json));
        let bound = Bound::bind(
            "dojo-service",
            &common,
            api,
            routes::internal(state),
            service_token,
            readiness,
        )
        .await?;
        Ok(Self {
            bound,
            pool,
            closing,
        })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.bound.public_addr()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves until `shutdown` resolves, then closes the live sockets (1012: reconnect),
    /// drains in-flight requests, waits (bounded) for the sockets to close, and closes the pool.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let pool = self.pool.clone();
        let closing = self.closing.clone();
        let signal = self.closing.clone();
        self.bound
            .serve(async move {
                shutdown.await;
                signal.send_replace(true);
            })
            .await?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
        while closing.receiver_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        pool.close().await;
        Ok(())
    }
}
