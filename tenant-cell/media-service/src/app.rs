//! Wiring: config → pool + migrations → artifacts, poc client → routers → listeners + workers.

use std::future::Future;
use std::net::SocketAddr;

use service_kit::auth::ServiceToken;
use service_kit::http::Readiness;
use service_kit::peer::Peer;
use service_kit::serve::Bound;
use sqlx::PgPool;

use crate::artifacts::Artifacts;
use crate::config::Config;
use crate::poc::PocClient;
use crate::state::{AppState, Inner};
use crate::{MIGRATOR, jobs, routes};

/// A built, bound, not yet serving media-service.
#[derive(Debug)]
pub struct App {
    bound: Bound,
    state: AppState,
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
        let artifacts = Artifacts::new(
            &config.storage,
            &config.common.tenant,
            &config.common.cell_id,
            config.url_key.clone(),
            config.link_ttl,
        )?;
        let poc = PocClient::new(
            &config.peer.poc_internal_url,
            config.peer.service_token.clone(),
        );
        let readiness = Readiness::new(Some(pool.clone()));
        let common = config.common.clone();
        let service_token = ServiceToken::new(config.peer.service_token.clone());
        let state = AppState::new(Inner {
            pool,
            peer,
            poc,
            artifacts,
            config,
        });
        let api = routes::public(state.clone())
            .merge(service_kit::openapi::route(crate::openapi::public_json));
        let bound = Bound::bind(
            "media-service",
            &common,
            api,
            routes::internal(state.clone()),
            service_token,
            readiness,
        )
        .await?;
        Ok(Self { bound, state })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.bound.public_addr()
    }

    pub fn pool(&self) -> &PgPool {
        &self.state.pool
    }

    /// Serves and runs the job workers until `shutdown` resolves; jobs in progress are handed
    /// back to the queue, in-flight requests drained, the pool closed.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let workers = jobs::spawn(self.state.clone(), stopped);
        let served = self
            .bound
            .serve(async move {
                shutdown.await;
                let _ = stop.send(true);
            })
            .await;
        for w in workers {
            let _ = w.await;
        }
        self.state.pool.close().await;
        served
    }
}
