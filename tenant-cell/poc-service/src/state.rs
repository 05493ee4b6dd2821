//! Shared request state.

use std::sync::Arc;

use service_kit::jwt::{TokenSigner, TokenVerifier};
use sqlx::PgPool;

use crate::config::Config;

/// Cheap to clone; handlers get it through `State`.
#[derive(Clone, Debug)]
pub struct AppState(pub Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub pool: PgPool,
    pub signer: TokenSigner,
    pub verifier: TokenVerifier,
    pub config: Config,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
