//! Revocation checks for services that verify tokens but do not own accounts (dojo, media):
//! a token is accepted only while its `token_version` is the user's current one and the user is
//! enabled, as poc-service's internal API says, cached for at most [`Revocation::ttl`].
//!
//! **Invariant:** a revoked or disabled user is refused everywhere within [`WINDOW`] (30 s):
//! requests through the cache TTL (≤ 30 s), and long-lived connections by re-checking every
//! period with answers no older than the window minus that period ([`Revocation::check_fresh`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use wire_types::UserId;
use wire_types::auth::TokenVersion;

use crate::ApiError;
use crate::jwt::{Claims, TokenError, TokenVerifier};

/// The longest a revoked or disabled user's token is still accepted anywhere.
pub const WINDOW: Duration = Duration::from_secs(30);

/// Why a verified token is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("access token was revoked; sign in again")]
    Revoked,
    #[error("the account service is unreachable")]
    Unavailable,
}

/// poc-service's answers about users, cached.
pub struct Revocation {
    client: reqwest::Client,
    /// poc-service's internal base URL.
    base: String,
    service_token: SecretString,
    ttl: Duration,
    cache: Mutex<HashMap<UserId, (TokenVersion, Instant)>>,
}

impl std::fmt::Debug for Revocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocation")
            .field("base", &self.base)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Revocation {
    /// Checks against `poc_internal_url` (e.g. `http://127.0.0.1:7001`), caching answers for
    /// `ttl` (capped at 30 s).
    pub fn new(poc_internal_url: &str, service_token: SecretString, ttl: Duration) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            base: poc_internal_url.trim_end_matches('/').to_owned(),
            service_token,
            ttl: ttl.min(Duration::from_secs(30)),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// `Ok` while `claims` carry the user's current token version and the user is enabled.
    /// With poc-service unreachable, a recent (≤ TTL) answer still decides; otherwise
    /// [`Refused::Unavailable`].
    pub async fn check(&self, claims: &Claims) -> Result<(), Refused> {
        self.check_fresh(claims, self.ttl).await
    }

    /// Like [`Revocation::check`], trusting only answers younger than `max_age`: a connection
    /// re-checked every `period` passes `WINDOW - period`, so a revocation reaches it within
    /// [`WINDOW`] whatever the cache holds. With poc-service unreachable and no answer that
    /// fresh: [`Refused::Unavailable`] (a connection stays and is checked again next period).
    pub async fn check_fresh(&self, claims: &Claims, max_age: Duration) -> Result<(), Refused> {
        let current = match self.cached(claims.sub, max_age.min(self.ttl)) {
            Some(current) => current,
            None => self.fetch(claims.sub).await?,
        };
        if current.disabled || current.token_version != claims.token_version {
            return Err(Refused::Revoked);
        }
        Ok(())
    }

    fn cached(&self, user: UserId, max_age: Duration) -> Option<TokenVersion> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(&user)
            .filter(|(_, at)| at.elapsed() < max_age)
            .map(|(v, _)| v.clone())
    }

    async fn fetch(&self, user: UserId) -> Result<TokenVersion, Refused> {
        let request = self
            .client
            .get(format!(
                "{}/internal/v1/users/{user}/token-version",
                self.base
            ))
            .bearer_auth(self.service_token.expose_secret());
        let res = crate::telemetry::trace::propagate(request)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "token-version check failed");
                Refused::Unavailable
            })?;
        let current = match res.status() {
            s if s.is_success() => res.json::<TokenVersion>().await.map_err(|e| {
                tracing::warn!(error = %e, "token-version answer unreadable");
                Refused::Unavailable
            })?,
            // A deleted user: nothing of theirs is valid.
            http::StatusCode::NOT_FOUND => TokenVersion {
                user_id: user,
                token_version: -1,
                disabled: true,
            },
            status => {
                tracing::warn!(%status, "token-version check refused");
                return Err(Refused::Unavailable);
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 100_000 {
            cache.retain(|_, (_, at)| at.elapsed() < self.ttl);
        }
        cache.insert(user, (current.clone(), Instant::now()));
        Ok(current)
    }
}

/// Verifies a bearer or query token: signature, cell, expiry, then revocation.
pub async fn authenticate(
    token: &str,
    verifier: &TokenVerifier,
    revocation: &Revocation,
) -> Result<Claims, ApiError> {
    let claims = verifier.verify(token).map_err(|e| match e {
        TokenError::Expired => ApiError::unauthenticated("access token expired; refresh it"),
        TokenError::Invalid(_) => ApiError::unauthenticated("invalid access token"),
    })?;
    revocation.check(&claims).await.map_err(|e| match e {
        Refused::Revoked => ApiError::unauthenticated(e.to_string()),
        Refused::Unavailable => {
            ApiError::unavailable("cannot check the token right now", Duration::from_secs(2))
        }
    })?;
    Ok(claims)
}
