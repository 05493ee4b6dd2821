//! Wiring: config → pool + migrations → rooms → routers → listeners.

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

use crate::config::Config;
use crate::room::Rooms;
use crate::state::{AppState, Inner};
use crate::{MIGRATOR, openapi, routes};

/// A built, bound, not yet serving dojo-service.
#[derive(Debug)]
pub struct App {
    bound: Bound,
    pool: PgPool,
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
            config.live.revocation_cache,
        );
        let readiness = Readiness::new(Some(pool.clone()));
        let common = config.common.clone();
        let service_token = ServiceToken::new(config.service_token.clone());
        let rooms = Arc::new(Rooms::new(pool.clone(), config.live));
        let state = AppState(Arc::new(Inner {
            pool: pool.clone(),
            verifier,
            revocation,
            config,
            rooms,
        }));
        let api = routes::public(state.clone()).route("/openapi.json", get(serve_openapi));
        let bound = Bound::bind(
            "dojo-service",
            &common,
            api,
            routes::internal(state),
            service_token,
            readiness,
        )
        .await?;
        Ok(Self { bound, pool })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.bound.public_addr()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests and closes the pool.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let pool = self.pool.clone();
        self.bound.serve(shutdown).await?;
        pool.close().await;
        Ok(())
    }
}

async fn serve_openapi() -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        openapi::public_json(),
    )
}
