//! Wiring: config → pool + migrations → routers → listeners.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use service_kit::auth::ServiceToken;
use service_kit::http::Readiness;
use service_kit::jwt::{TokenSigner, TokenVerifier, public_pem_from_private};
use service_kit::serve::Bound;
use sqlx::PgPool;

use crate::config::{Config, SearchConfig};
use crate::search::embedded::EmbeddedIndex;
use crate::search::meili::MeiliIndex;
use crate::search::{SearchIndex, indexer};
use crate::state::{AppState, Inner};
use crate::{MIGRATOR, openapi, routes};

/// A built, bound, not yet serving poc-service.
#[derive(Debug)]
pub struct App {
    bound: Bound,
    pool: PgPool,
    stop_indexer: tokio::sync::watch::Sender<bool>,
    indexer_task: tokio::task::JoinHandle<()>,
}

/// How long a stopping service waits for its indexer to finish the batch it is writing.
const INDEXER_STOP: std::time::Duration = std::time::Duration::from_secs(10);

impl App {
    /// Connects to the database (waiting up to 30 s for it), migrates, and binds both listeners.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = service_kit::db::connect(&config.common, &MIGRATOR).await?;
        Self::build_with_pool(config, pool).await
    }

    /// Like [`App::build`] with an existing (migrated) pool; the index comes from the config.
    pub async fn build_with_pool(config: Config, pool: PgPool) -> anyhow::Result<Self> {
        let index = open_index(&config.search)?;
        Self::build_with_index(config, pool, index).await
    }

    /// Like [`App::build_with_pool`] with a given search index (tests inject failing ones).
    pub async fn build_with_index(
        config: Config,
        pool: PgPool,
        index: Arc<dyn SearchIndex>,
    ) -> anyhow::Result<Self> {
        if let Some(b) = &config.bootstrap {
            match crate::bootstrap::ensure_invite(
                &pool,
                &b.admin_email,
                &b.invite_token_sha256,
                Some(b.expires_at),
            )
            .await
            {
                Ok(_) => tracing::info!("the first admin's invite is in place"),
                Err(crate::bootstrap::BootstrapError::AlreadyBootstrapped) => {
                    tracing::debug!("the cell has its admin; bootstrap configuration ignored")
                }
                Err(crate::bootstrap::BootstrapError::InviteSpent) => tracing::warn!(
                    "the first admin's invite expired unused; the cell serves without it until a new one is issued"
                ),
                Err(e) => return Err(anyhow::anyhow!("bootstrap invite: {e}")),
            }
        }
        let public_pem = public_pem_from_private(&config.jwt_private_key)?;
        let signer = TokenSigner::new(
            &config.jwt_kid,
            &config.jwt_private_key,
            &config.common.cell_id,
            &config.common.tenant,
            config.access_ttl,
        )?;
        let verifier = TokenVerifier::new(
            &config.common.cell_id,
            &[(config.jwt_kid.clone(), public_pem)],
        )?;
        let readiness = Readiness::new(Some(pool.clone()));
        let common = config.common.clone();
        let service_token = ServiceToken::new(config.service_token.clone());
        let (stop_indexer, indexer_stopped) = tokio::sync::watch::channel(false);
        let consumer = indexer::consumer_for(&config.search)?;
        let (indexer, indexer_task) =
            indexer::spawn(pool.clone(), index.clone(), consumer, indexer_stopped).await?;
        let mailer = crate::mail::Mailer::new(&config.mail)?;
        let state = AppState::new(Inner {
            pool: pool.clone(),
            signer,
            verifier,
            config,
            index,
            indexer,
            mailer,
        });

        let api =
            routes::public(state.clone()).merge(service_kit::openapi::route(openapi::public_json));
        let bound = Bound::bind(
            "poc-service",
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
            stop_indexer,
            indexer_task,
        })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.bound.public_addr()
    }

    pub fn internal_addr(&self) -> SocketAddr {
        self.bound.internal_addr()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests, waits for the indexer
    /// to finish its batch and let the index go (at most [`INDEXER_STOP`]), and closes the pool.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let pool = self.pool.clone();
        let usage = tokio::spawn(crate::usage::run(pool.clone()));
        let served = self.bound.serve(shutdown).await;
        usage.abort();
        let _ = self.stop_indexer.send(true);
        if tokio::time::timeout(INDEXER_STOP, self.indexer_task)
            .await
            .is_err()
        {
            tracing::warn!("the search indexer did not stop within 10 s; stopping without it");
        }
        served?;
        pool.close().await;
        Ok(())
    }
}

/// Opens the engine the config names.
pub fn open_index(config: &SearchConfig) -> anyhow::Result<Arc<dyn SearchIndex>> {
    Ok(match config {
        SearchConfig::Embedded { dir: Some(dir) } => Arc::new(EmbeddedIndex::open(dir)?),
        SearchConfig::Embedded { dir: None } => Arc::new(EmbeddedIndex::in_memory()?),
        SearchConfig::Meilisearch {
            url,
            api_key,
            index,
        } => {
            use secrecy::ExposeSecret;
            Arc::new(MeiliIndex::new(
                url,
                api_key.as_ref().map(|k| k.expose_secret()),
                index,
            )?)
        }
    })
}
