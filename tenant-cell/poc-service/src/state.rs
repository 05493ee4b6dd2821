//! Shared request state.

use std::sync::Arc;

use service_kit::jwt::{TokenSigner, TokenVerifier};

use crate::search::SearchIndex;
use crate::search::indexer::IndexerHandle;
use sqlx::PgPool;

use crate::config::Config;

/// Cheap to clone; handlers get it through `State`.
pub type AppState = service_kit::state::Shared<Inner>;

pub struct Inner {
    pub pool: PgPool,
    pub signer: TokenSigner,
    pub verifier: TokenVerifier,
    pub config: Config,
    pub index: Arc<dyn SearchIndex>,
    pub indexer: Arc<IndexerHandle>,
    pub mailer: crate::mail::Mailer,
}
