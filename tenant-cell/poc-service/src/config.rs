//! poc-service settings: the shared [`CommonConfig`] plus accounts settings.

use cell_model::contract::{Secret, env as var};
use std::time::Duration;

use secrecy::SecretString;
use service_kit::config::{CommonConfig, optional, required, secret_file};
use service_kit::jwt::KeyPair;

use crate::domain::PasswordPolicy;

/// Failed-login throttling.
#[derive(Clone, Copy, Debug)]
pub struct ThrottleConfig {
    /// Failed logins for one account within `window` before it is blocked.
    pub account_max_failures: u32,
    /// Failed logins from one client IP within `window` before it is blocked.
    pub ip_max_failures: u32,
    pub window: Duration,
    /// How long a blocked key stays blocked.
    pub block_for: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            account_max_failures: 5,
            ip_max_failures: 50,
            window: Duration::from_secs(15 * 60),
            block_for: Duration::from_secs(5 * 60),
        }
    }
}

/// Which engine holds the PoC search index.
#[derive(Clone, Debug)]
pub enum SearchConfig {
    /// tantivy in this process; `dir: None` keeps the index in memory (rebuilt at start).
    Embedded { dir: Option<std::path::PathBuf> },
    /// A Meilisearch server (clusters).
    Meilisearch {
        url: String,
        api_key: Option<SecretString>,
        index: String,
    },
}

/// Everything poc-service needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub common: CommonConfig,
    /// `kid` of the cell's signing key.
    pub jwt_kid: String,
    /// The cell's Ed25519 private key (PKCS#8 PEM). Only poc-service has it.
    pub jwt_private_key: SecretString,
    /// Shared secret of the cell's internal API.
    pub service_token: SecretString,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// A refresh token reused within this window (concurrent refreshes from one device) gets a
    /// sibling instead of revoking its family.
    pub refresh_grace: Duration,
    pub throttle: ThrottleConfig,
    pub password_policy: PasswordPolicy,
    /// Standalone development mode: the first registrant becomes admin.
    pub dev_mode: bool,
    pub search: SearchConfig,
    /// The first admin's invite this cell must hold (clusters: the operator passes it from the
    /// Cell's `spec.bootstrap`): `MRBILL_BOOTSTRAP_ADMIN_EMAIL`, `MRBILL_BOOTSTRAP_INVITE_SHA256`,
    /// `MRBILL_BOOTSTRAP_EXPIRES_AT` (RFC 3339), all three or none.
    pub bootstrap: Option<BootstrapConfig>,
    /// Where mail to users goes: SMTP (`MRBILL_SMTP_URL_FILE`, e.g. `smtps://user:pass@host`),
    /// a mailbox directory (`MRBILL_MAILBOX_DIR`, local cells), or nowhere; from
    /// `MRBILL_MAIL_FROM` (default `no-reply@<tenant>.mrbill.invalid`).
    pub mail: crate::mail::MailConfig,
    /// The tenant's email domains (`MRBILL_EMAIL_DOMAINS`, comma-separated, lower-case): open
    /// registration admits only addresses there (none: nobody registers without an invite).
    pub email_domains: Vec<String>,
}

/// See [`Config::bootstrap`].
#[derive(Clone, Debug)]
pub struct BootstrapConfig {
    pub admin_email: String,
    /// Hex SHA-256 of the invite token (the token itself never reaches the cell's config).
    pub invite_token_sha256: String,
    pub expires_at: time::OffsetDateTime,
}

impl BootstrapConfig {
    fn from_env() -> anyhow::Result<Option<Self>> {
        let email: Option<String> = optional(var::BOOTSTRAP_ADMIN_EMAIL)?;
        let hash: Option<String> = optional(var::BOOTSTRAP_INVITE_SHA256)?;
        let expires: Option<String> = optional(var::BOOTSTRAP_EXPIRES_AT)?;
        match (email, hash, expires) {
            (None, None, None) => Ok(None),
            (Some(admin_email), Some(hash), Some(expires)) => {
                anyhow::ensure!(
                    hash.len() == 64
                        && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                    "MRBILL_BOOTSTRAP_INVITE_SHA256 must be 64 lower-case hex digits"
                );
                let expires_at = time::OffsetDateTime::parse(
                    &expires,
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|e| anyhow::anyhow!("MRBILL_BOOTSTRAP_EXPIRES_AT: {e}"))?;
                Ok(Some(Self {
                    admin_email,
                    invite_token_sha256: hash,
                    expires_at,
                }))
            }
            _ => anyhow::bail!(
                "MRBILL_BOOTSTRAP_ADMIN_EMAIL, MRBILL_BOOTSTRAP_INVITE_SHA256 and MRBILL_BOOTSTRAP_EXPIRES_AT go together"
            ),
        }
    }
}

impl Config {
    /// Reads `MRBILL_*` env vars. Secrets come from files: `MRBILL_JWT_PRIVATE_KEY_FILE`,
    /// `MRBILL_SERVICE_TOKEN_FILE`. In dev mode missing secrets are generated for this run.
    pub fn from_env() -> anyhow::Result<Self> {
        let common = CommonConfig::from_env()?;
        let dev_mode = optional::<bool>("MRBILL_DEV_MODE")?.unwrap_or(false);
        let key = secret_file(Secret::JwtPrivateKey.env())?;
        let token = secret_file(Secret::ServiceToken.env())?;
        let (jwt_kid, jwt_private_key) = match key {
            Some(key) => (required(var::JWT_KID)?, key),
            None if dev_mode => {
                let kp = KeyPair::generate()?;
                (kp.kid, kp.private_pem)
            }
            None => {
                anyhow::bail!("MRBILL_JWT_PRIVATE_KEY_FILE must be set (or MRBILL_DEV_MODE=true)")
            }
        };
        let service_token = match token {
            Some(t) => t,
            None if dev_mode => SecretString::from(service_kit::secrets::random_token(32)),
            None => {
                anyhow::bail!("MRBILL_SERVICE_TOKEN_FILE must be set (or MRBILL_DEV_MODE=true)")
            }
        };
        let secs = |name: &str, default: u64| -> anyhow::Result<Duration> {
            Ok(Duration::from_secs(
                optional::<u64>(name)?.unwrap_or(default),
            ))
        };
        let defaults = ThrottleConfig::default();
        let mail = mail_from_env(&common.tenant)?;
        Ok(Self {
            common,
            jwt_kid,
            jwt_private_key,
            service_token,
            access_ttl: secs("MRBILL_ACCESS_TTL_SECS", 300)?,
            refresh_ttl: secs("MRBILL_REFRESH_TTL_SECS", 30 * 24 * 3600)?,
            refresh_grace: secs("MRBILL_REFRESH_GRACE_SECS", 10)?,
            throttle: ThrottleConfig {
                account_max_failures: optional("MRBILL_LOGIN_ACCOUNT_MAX_FAILURES")?
                    .unwrap_or(defaults.account_max_failures),
                ip_max_failures: optional("MRBILL_LOGIN_IP_MAX_FAILURES")?
                    .unwrap_or(defaults.ip_max_failures),
                window: secs("MRBILL_LOGIN_WINDOW_SECS", defaults.window.as_secs())?,
                block_for: secs("MRBILL_LOGIN_BLOCK_SECS", defaults.block_for.as_secs())?,
            },
            password_policy: PasswordPolicy::default(),
            dev_mode,
            search: match optional::<String>(var::SEARCH_ENGINE)?.as_deref() {
                None | Some("embedded") => SearchConfig::Embedded {
                    dir: optional(var::SEARCH_DIR)?,
                },
                Some("meilisearch") => SearchConfig::Meilisearch {
                    url: required(var::MEILISEARCH_URL)?,
                    api_key: secret_file(var::MEILISEARCH_KEY_FILE)?,
                    index: optional(var::MEILISEARCH_INDEX)?.unwrap_or_else(|| "pocs".into()),
                },
                Some(other) => anyhow::bail!(
                    "MRBILL_SEARCH_ENGINE={other:?}: expected embedded or meilisearch"
                ),
            },
            bootstrap: BootstrapConfig::from_env()?,
            mail,
            email_domains: optional::<String>(var::EMAIL_DOMAINS)?
                .unwrap_or_default()
                .split(',')
                .map(|d| d.trim().to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .collect(),
        })
    }

    /// A config for tests: fresh keys and service token, loopback port 0.
    pub fn for_tests(cell_id: &str, tenant: &str, database_url: &str) -> anyhow::Result<Self> {
        let kp = KeyPair::generate()?;
        Ok(Self {
            common: CommonConfig::for_tests(cell_id, tenant, database_url),
            jwt_kid: kp.kid,
            jwt_private_key: kp.private_pem,
            service_token: SecretString::from(service_kit::secrets::random_token(32)),
            access_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            refresh_grace: Duration::from_secs(10),
            throttle: ThrottleConfig::default(),
            password_policy: PasswordPolicy::default(),
            dev_mode: false,
            search: SearchConfig::Embedded { dir: None },
            bootstrap: None,
            mail: crate::mail::MailConfig::None,
            email_domains: vec![format!("{tenant}.test")],
        })
    }
}

fn mail_from_env(tenant: &str) -> anyhow::Result<crate::mail::MailConfig> {
    let from = optional::<String>(var::MAIL_FROM)?
        .unwrap_or_else(|| format!("no-reply@{tenant}.mrbill.invalid"));
    Ok(
        match (
            secret_file(var::SMTP_URL_FILE)?,
            optional(var::MAILBOX_DIR)?,
        ) {
            (Some(url), _) => crate::mail::MailConfig::Smtp { url, from },
            (None, Some(dir)) => crate::mail::MailConfig::Mailbox { dir, from },
            (None, None) => crate::mail::MailConfig::None,
        },
    )
}
