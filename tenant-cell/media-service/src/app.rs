//! Wiring: config → pool + migrations → artifacts, poc client → routers → listeners + workers.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use axum::routing::get;
use service_kit::auth::ServiceToken;
use service_kit::http::Readiness;
use service_kit::jwt::TokenVerifier;
use service_kit::revocation::Revocation;
use service_kit::serve::Bound;
use sqlx::PgPool;

use crate::artifacts::Artifacts;
use crate::config::Config;
use crate::poc::PocClient;
use crate::state::{AppState, Inner};
use crate::{MIGRATOR, jobs, openapi, routes};

/// A built, bound, not yet serving media-service.
#[derive(Debug)]
pub struct App {
    bound: Bound,
    state: AppState,
}

impl App {
    /// Connects to the database (waiting up to 30 s for it), migrates, and binds both listeners.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = service_kit::db::connect_and_migrate(
            &config.common.database_url,
            &MIGRATOR,
            10,
            Duration::from_secs(30),
        )
        .await?;
        Self::build_with_pool(config, pool).await
    }

    /// Like [`App::build`] with an existing (migrated) pool.
    pub async fn build_with_pool(config: Config, pool: PgPool) -> anyhow::Result<Self> {
        let verifier = TokenVerifier::new(
            &config.common.cell_id,
            &[(config.jwt_kid.clone(), config.jwt_public_key.clone())],
        )?;
        let revocation = Revocation::new(
            &config.poc_internal_url,
            config.service_token.clone(),
            config.revocation_cache,
        );
        let artifacts = Artifacts::new(
            &config.storage,
            &config.common.tenant,
            &config.common.cell_id,
            config.url_key.clone(),
            config.link_ttl,
        )?;
        let poc = PocClient::new(&config.poc_internal_url, config.service_token.clone());
        let readiness = Readiness::new(Some(pool.clone()));
        let common = config.common.clone();
        let service_token = ServiceToken::new(config.service_token.clone());
        let state = AppState(Arc::new(Inner {
            pool,
            verifier,
            revocation,
            poc,
            artifacts,
            config,
        }));
        let api = routes::public(state.clone()).route("/openapi.json", get(serve_openapi));
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

async fn serve_openapi() -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        openapi::public_json(),
    )
}
