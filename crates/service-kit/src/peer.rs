//! What a cell service that does not own accounts (dojo, media) needs to trust a request: the
//! cell's public key, and poc-service's internal API (revocation, data) with the service token
//! that reaches it. Read from the cell contract's variables; one [`Peer`] per service.

use std::time::Duration;

use cell_model::contract::{Secret, env};
use secrecy::{ExposeSecret, SecretString};

use crate::ApiError;
use crate::auth::bearer_token;
use crate::config::{optional, required, secret_file};
use crate::jwt::Claims;
use crate::jwt::TokenVerifier;
use crate::revocation::{Revocation, authenticate};
use axum::extract::FromRequestParts;
use http::request::Parts;

/// Settings of a service that verifies tokens and calls poc-service.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// `kid` and SPKI PEM of the cell's token-signing key (poc-service holds the private key).
    pub jwt_kid: String,
    pub jwt_public_key: String,
    /// Shared secret of the cell's internal API.
    pub service_token: SecretString,
    /// poc-service's internal listener.
    pub poc_internal_url: String,
    /// How long poc-service's answer about a user is trusted (`MRBILL_REVOCATION_CACHE_SECS`,
    /// at most 30 s: the revocation window).
    pub revocation_cache: Duration,
}

impl PeerConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let public_key = secret_file(Secret::JwtPublicKey.env())?
            .ok_or_else(|| anyhow::anyhow!("{} must be set", Secret::JwtPublicKey.env()))?;
        let service_token = secret_file(Secret::ServiceToken.env())?
            .ok_or_else(|| anyhow::anyhow!("{} must be set", Secret::ServiceToken.env()))?;
        Ok(Self {
            jwt_kid: required(env::JWT_KID)?,
            jwt_public_key: public_key.expose_secret().to_owned(),
            service_token,
            poc_internal_url: required(env::POC_INTERNAL_URL)?,
            revocation_cache: optional::<u64>("MRBILL_REVOCATION_CACHE_SECS")?
                .map_or(crate::revocation::WINDOW, Duration::from_secs)
                .min(crate::revocation::WINDOW),
        })
    }

    /// Against a given key and poc-service (tests).
    pub fn for_tests(
        jwt_kid: &str,
        jwt_public_key: &str,
        service_token: SecretString,
        poc_internal_url: &str,
    ) -> Self {
        Self {
            jwt_kid: jwt_kid.to_owned(),
            jwt_public_key: jwt_public_key.to_owned(),
            service_token,
            poc_internal_url: poc_internal_url.to_owned(),
            revocation_cache: crate::revocation::WINDOW,
        }
    }
}

/// Verifies tokens (signature, cell, expiry) and checks them with poc-service (revocation).
#[derive(Debug)]
pub struct Peer {
    pub verifier: TokenVerifier,
    pub revocation: Revocation,
}

impl Peer {
    /// For the cell `cell_id` (the tokens' audience).
    pub fn new(cell_id: &str, config: &PeerConfig) -> anyhow::Result<Self> {
        Ok(Self {
            verifier: TokenVerifier::new(
                cell_id,
                &[(config.jwt_kid.clone(), config.jwt_public_key.clone())],
            )?,
            revocation: Revocation::new(
                &config.poc_internal_url,
                config.service_token.clone(),
                config.revocation_cache,
            ),
        })
    }
}

/// What a service's state offers for [`Caller`].
pub trait Authenticates {
    fn peer(&self) -> &Peer;
}

impl<T: Authenticates> Authenticates for crate::state::Shared<T> {
    fn peer(&self) -> &Peer {
        self.0.peer()
    }
}

/// The authenticated caller of a service that does not own accounts.
#[derive(Clone, Debug)]
pub struct Caller(pub Claims);

impl<S: Authenticates + Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)?;
        let peer = state.peer();
        authenticate(token, &peer.verifier, &peer.revocation)
            .await
            .map(Caller)
    }
}
