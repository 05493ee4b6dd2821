//! Shared request state.

use std::sync::Arc;

use service_kit::jwt::TokenVerifier;
use service_kit::revocation::{Authenticates, Revocation};
use sqlx::PgPool;

use crate::artifacts::Artifacts;
use crate::config::Config;
use crate::poc::PocClient;

/// Cheap to clone; handlers and workers get it.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub pool: PgPool,
    pub verifier: TokenVerifier,
    pub revocation: Revocation,
    pub poc: PocClient,
    pub artifacts: Artifacts,
    pub config: Config,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl Authenticates for AppState {
    fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    fn revocation(&self) -> &Revocation {
        &self.revocation
    }
}
