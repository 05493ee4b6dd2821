//! The cell contract: the services a cell runs and what each is owed — the public paths it
//! serves, the secret files it gets (and the variables naming them), the settings every
//! service reads, its request body limit. The local supervisor, the operator's render, the
//! services' config readers, the router and the CLI all read this table: adding a service
//! is a row here plus the service itself.

use serde::{Deserialize, Serialize};

/// A cell service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// Accounts, tokens, PoCs and search; the only holder of the token signing key.
    Poc,
    /// Live dojos: rooms, documents, chat, calls.
    Dojo,
    /// Reports and yearly videos.
    Media,
}

/// The largest request body a cell service accepts (bytes), unless it needs more.
pub const BODY_LIMIT: usize = 64 * 1024;
/// dojo-service's: a dojo's initial code (≤ 50,000 characters, up to 4 bytes each) must fit.
pub const DOJO_BODY_LIMIT: usize = 256 * 1024;

impl Service {
    /// Every service, in start order (dojo and media check tokens with poc, and media reads
    /// PoCs from it).
    pub const ALL: [Service; 3] = [Service::Poc, Service::Dojo, Service::Media];

    pub fn name(self) -> &'static str {
        match self {
            Service::Poc => "poc",
            Service::Dojo => "dojo",
            Service::Media => "media",
        }
    }

    pub fn parse(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Its binary, its Kubernetes Deployment and Service.
    pub fn binary(self) -> &'static str {
        match self {
            Service::Poc => "poc-service",
            Service::Dojo => "dojo-service",
            Service::Media => "media-service",
        }
    }

    /// The public path prefixes it serves (a prefix matches itself and what follows a `/` or
    /// `?`). `/internal/…` is never public; `/<name>/openapi.json` is its document.
    pub fn path_prefixes(self) -> &'static [&'static str] {
        match self {
            Service::Poc => &[
                "/v1/auth",
                "/v1/users",
                "/v1/invites",
                "/v1/pocs",
                "/v1/settings",
                "/v1/admin",
            ],
            Service::Dojo => &["/v1/dojos"],
            Service::Media => &["/v1/reports", "/v1/videos", "/v1/media"],
        }
    }

    /// The largest request body it accepts: the service answers 413 past it, and the router
    /// refuses such bodies itself the same way (so a client's oversized upload never meets a
    /// connection the service has already closed).
    pub fn body_limit(self) -> usize {
        match self {
            Service::Dojo => DOJO_BODY_LIMIT,
            Service::Poc | Service::Media => BODY_LIMIT,
        }
    }

    /// The secret files it gets, and nothing else: the signing key only to poc.
    pub fn secrets(self) -> &'static [Secret] {
        match self {
            Service::Poc => &[
                Secret::DatabaseUrl,
                Secret::ServiceToken,
                Secret::JwtPrivateKey,
            ],
            Service::Dojo => &[
                Secret::DatabaseUrl,
                Secret::ServiceToken,
                Secret::JwtPublicKey,
            ],
            Service::Media => &[
                Secret::DatabaseUrl,
                Secret::ServiceToken,
                Secret::JwtPublicKey,
                Secret::MediaUrlKey,
            ],
        }
    }

    /// Whether it calls poc-service's internal API (token versions, PoCs): it gets
    /// [`env::POC_INTERNAL_URL`].
    pub fn calls_poc(self) -> bool {
        self != Service::Poc
    }
}

/// A secret file a service reads: the variable naming its path, and its file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secret {
    /// The service's own database URL (its own role and database).
    DatabaseUrl,
    /// The token services present to each other's internal APIs.
    ServiceToken,
    /// The token signing key (PEM).
    JwtPrivateKey,
    /// The token verification key (PEM).
    JwtPublicKey,
    /// The key signing media links.
    MediaUrlKey,
}

impl Secret {
    pub fn env(self) -> &'static str {
        match self {
            Secret::DatabaseUrl => "MRBILL_DATABASE_URL_FILE",
            Secret::ServiceToken => "MRBILL_SERVICE_TOKEN_FILE",
            Secret::JwtPrivateKey => "MRBILL_JWT_PRIVATE_KEY_FILE",
            Secret::JwtPublicKey => "MRBILL_JWT_PUBLIC_KEY_FILE",
            Secret::MediaUrlKey => "MRBILL_MEDIA_URL_KEY_FILE",
        }
    }

    /// Its file name in the service's secrets directory.
    pub fn file(self) -> &'static str {
        match self {
            Secret::DatabaseUrl => "database-url",
            Secret::ServiceToken => "service-token",
            Secret::JwtPrivateKey => "jwt-private.pem",
            Secret::JwtPublicKey => "jwt-public.pem",
            Secret::MediaUrlKey => "media-url-key",
        }
    }
}

/// The settings services read, by variable. Secret files are named by [`Secret::env`].
pub mod env {
    // Every service.
    pub const CELL_ID: &str = "MRBILL_CELL_ID";
    pub const TENANT: &str = "MRBILL_TENANT";
    pub const HTTP_ADDR: &str = "MRBILL_HTTP_ADDR";
    pub const INTERNAL_ADDR: &str = "MRBILL_INTERNAL_ADDR";
    /// The signing key's id (not secret: it is in every token's header).
    pub const JWT_KID: &str = "MRBILL_JWT_KID";
    pub const TRUSTED_PROXIES: &str = "MRBILL_TRUSTED_PROXIES";
    pub const READY_FILE: &str = "MRBILL_READY_FILE";
    pub const LOG_FORMAT: &str = "MRBILL_LOG_FORMAT";
    // Services that call poc ([`super::Service::calls_poc`]).
    pub const POC_INTERNAL_URL: &str = "MRBILL_POC_INTERNAL_URL";
    // poc-service.
    pub const SEARCH_DIR: &str = "MRBILL_SEARCH_DIR";
    pub const SEARCH_ENGINE: &str = "MRBILL_SEARCH_ENGINE";
    pub const MEILISEARCH_URL: &str = "MRBILL_MEILISEARCH_URL";
    pub const MEILISEARCH_KEY_FILE: &str = "MRBILL_MEILISEARCH_KEY_FILE";
    /// The Meilisearch index (default `pocs`; a restored cell's is new, so it is rebuilt).
    pub const MEILISEARCH_INDEX: &str = "MRBILL_MEILISEARCH_INDEX";
    pub const MAILBOX_DIR: &str = "MRBILL_MAILBOX_DIR";
    pub const SMTP_URL_FILE: &str = "MRBILL_SMTP_URL_FILE";
    pub const MAIL_FROM: &str = "MRBILL_MAIL_FROM";
    pub const EMAIL_DOMAINS: &str = "MRBILL_EMAIL_DOMAINS";
    pub const BOOTSTRAP_ADMIN_EMAIL: &str = "MRBILL_BOOTSTRAP_ADMIN_EMAIL";
    pub const BOOTSTRAP_INVITE_SHA256: &str = "MRBILL_BOOTSTRAP_INVITE_SHA256";
    pub const BOOTSTRAP_EXPIRES_AT: &str = "MRBILL_BOOTSTRAP_EXPIRES_AT";
    // media-service.
    pub const MEDIA_DIR: &str = "MRBILL_MEDIA_DIR";
    pub const MEDIA_S3_BUCKET: &str = "MRBILL_MEDIA_S3_BUCKET";
    /// An S3-compatible store's URL (unset: AWS S3).
    pub const MEDIA_S3_ENDPOINT: &str = "MRBILL_MEDIA_S3_ENDPOINT";
    /// The bucket's region (unset: the AWS environment's, else `us-east-1`).
    pub const MEDIA_S3_REGION: &str = "MRBILL_MEDIA_S3_REGION";
    /// Files with the bucket's own access key (both or neither; unset: the AWS provider chain).
    pub const MEDIA_S3_ACCESS_KEY_ID_FILE: &str = "MRBILL_MEDIA_S3_ACCESS_KEY_ID_FILE";
    pub const MEDIA_S3_SECRET_ACCESS_KEY_FILE: &str = "MRBILL_MEDIA_S3_SECRET_ACCESS_KEY_FILE";
    pub const MEDIA_INSTANCE: &str = "MRBILL_MEDIA_INSTANCE";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_prefixes_belong_to_one_service() {
        for service in Service::ALL {
            assert_eq!(Service::parse(service.name()), Some(service));
            assert_eq!(service.binary(), format!("{}-service", service.name()));
        }
        let mut prefixes: Vec<&str> = Service::ALL
            .iter()
            .flat_map(|s| s.path_prefixes().iter().copied())
            .collect();
        let all = prefixes.len();
        prefixes.sort_unstable();
        prefixes.dedup();
        assert_eq!(prefixes.len(), all, "a prefix names two services");
    }

    #[test]
    fn only_poc_gets_the_signing_key() {
        for service in Service::ALL {
            assert_eq!(
                service.secrets().contains(&Secret::JwtPrivateKey),
                service == Service::Poc
            );
            assert!(service.secrets().contains(&Secret::DatabaseUrl));
        }
    }
}
