//! Shared request state.

use std::sync::Arc;

use service_kit::jwt::{TokenSigner, TokenVerifier};

use crate::search::SearchIndex;
use crate::search::indexer::IndexerHandle;
use sqlx::PgPool;

use crate::config::Config;

/// Cheap to clone; handlers get it through `State`.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub pool: PgPool,
    pub signer: TokenSigner,
    pub verifier: TokenVerifier,
    pub config: Config,
    pub index: Arc<dyn SearchIndex>,
    pub indexer: Arc<IndexerHandle>,
    pub mailer: crate::mail::Mailer,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("engine", &self.index.engine())
            .finish_non_exhaustive()
    }
}
