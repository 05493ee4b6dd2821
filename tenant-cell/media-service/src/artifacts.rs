//! Artifacts in object storage and their signed download links.
//!
//! Keys are `tenants/<tenant>/<kind>s/<job id>/<file>`, built only from the tenant slug, a UUID
//! and fixed file names, so no request can name another path. Links are
//! `/v1/media/files/<job id>/<file>?expires=<unix s>&sig=<HMAC-SHA256>`; the signature covers the
//! cell, the job, the file and the expiry, with the cell's URL-signing key.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::Storage;
use crate::store::Kind;

/// Files a job may produce.
pub const FILE_NAMES: [&str; 5] = [
    "report.pdf",
    "report.csv",
    "report.json",
    "video.mp4",
    "thumbnail.jpg",
];

/// Why a link was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkError {
    Invalid,
    Expired,
}

pub struct Artifacts {
    store: Arc<dyn ObjectStore>,
    tenant: String,
    cell: String,
    key: SecretString,
    ttl: Duration,
}

impl std::fmt::Debug for Artifacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifacts")
            .field("store", &self.store.to_string())
            .finish_non_exhaustive()
    }
}

impl Artifacts {
    pub fn new(
        storage: &Storage,
        tenant: &str,
        cell: &str,
        key: SecretString,
        ttl: Duration,
    ) -> anyhow::Result<Self> {
        let store: Arc<dyn ObjectStore> = match storage {
            Storage::Dir(dir) => {
                std::fs::create_dir_all(dir)?;
                Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir)?)
            }
            Storage::S3 {
                bucket,
                endpoint,
                static_credentials,
            } => {
                let mut builder =
                    object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(endpoint) = endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                if let Some(c) = static_credentials {
                    builder = builder
                        .with_region(&c.region)
                        .with_access_key_id(&c.access_key_id)
                        .with_secret_access_key(c.secret_access_key.expose_secret());
                }
                Arc::new(builder.build()?)
            }
        };
        Ok(Self {
            store,
            tenant: tenant.to_owned(),
            cell: cell.to_owned(),
            key,
            ttl,
        })
    }

    /// The object key of one of a job's files.
    pub fn key(&self, kind: Kind, job: Uuid, file: &str) -> String {
        format!("tenants/{}/{}s/{job}/{file}", self.tenant, kind.as_str())
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.store
            .put(&Path::parse(key)?, PutPayload::from(Bytes::from(bytes)))
            .await?;
        Ok(())
    }

    /// The object's size and a stream of its bytes; `None` if it does not exist.
    pub async fn get(
        &self,
        key: &str,
    ) -> anyhow::Result<
        Option<(
            u64,
            futures_util::stream::BoxStream<'static, object_store::Result<Bytes>>,
        )>,
    > {
        match self.store.get(&Path::parse(key)?).await {
            Ok(got) => Ok(Some((got.meta.size, got.into_stream()))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an object; one that is already gone is fine.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self.store.delete(&Path::parse(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn signature(&self, job: Uuid, file: &str, expires: i64) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(format!("{}\n{job}\n{file}\n{expires}", self.cell).as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// A link to a job's file valid for the configured time, relative to the endpoint (with
    /// `prefix`, e.g. `/t/acme`, when the client reached the cell by path).
    pub fn link(&self, prefix: &str, job: Uuid, file: &str) -> (String, OffsetDateTime) {
        let expires_at = OffsetDateTime::now_utc() + self.ttl;
        // Whole seconds, rounded up, so the link never expires before `expires_at`.
        let expires = expires_at.unix_timestamp() + 1;
        let sig = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            self.signature(job, file, expires),
        );
        (
            format!("{prefix}/v1/media/files/{job}/{file}?expires={expires}&sig={sig}"),
            expires_at,
        )
    }

    /// Checks a link's signature (in constant time), then its expiry.
    pub fn verify(&self, job: Uuid, file: &str, expires: i64, sig: &str) -> Result<(), LinkError> {
        let given = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig)
            .map_err(|_| LinkError::Invalid)?;
        let expected = self.signature(job, file, expires);
        if !bool::from(given.ct_eq(&expected)) {
            return Err(LinkError::Invalid);
        }
        if OffsetDateTime::now_utc().unix_timestamp() > expires {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifacts(key: &str, ttl: Duration) -> Artifacts {
        let dir = std::env::temp_dir().join(format!("media-artifacts-{}", Uuid::new_v4()));
        Artifacts::new(
            &Storage::Dir(dir),
            "acme",
            "cell-acme",
            SecretString::from(key),
            ttl,
        )
        .expect("artifacts")
    }

    fn parts(url: &str) -> (i64, String) {
        let query = url.split_once('?').expect("query").1;
        let mut expires = 0;
        let mut sig = String::new();
        for pair in query.split('&') {
            match pair.split_once('=').expect("pair") {
                ("expires", v) => expires = v.parse().expect("expires"),
                ("sig", v) => sig = v.to_owned(),
                _ => {}
            }
        }
        (expires, sig)
    }

    #[test]
    fn links_verify_only_for_their_job_file_and_key() {
        let a = artifacts("key-one", Duration::from_secs(60));
        let job = Uuid::new_v4();
        let (url, _) = a.link("/t/acme", job, "video.mp4");
        assert!(url.starts_with(&format!("/t/acme/v1/media/files/{job}/video.mp4?")));
        let (expires, sig) = parts(&url);
        assert_eq!(a.verify(job, "video.mp4", expires, &sig), Ok(()));
        assert_eq!(
            a.verify(job, "thumbnail.jpg", expires, &sig),
            Err(LinkError::Invalid)
        );
        assert_eq!(
            a.verify(Uuid::new_v4(), "video.mp4", expires, &sig),
            Err(LinkError::Invalid)
        );
        assert_eq!(
            a.verify(job, "video.mp4", expires + 3600, &sig),
            Err(LinkError::Invalid),
            "a stretched expiry breaks the signature"
        );
        assert_eq!(
            a.verify(job, "video.mp4", expires, "not base64!"),
            Err(LinkError::Invalid)
        );
        let other = artifacts("key-two", Duration::from_secs(60));
        assert_eq!(
            other.verify(job, "video.mp4", expires, &sig),
            Err(LinkError::Invalid)
        );
    }

    #[test]
    fn expired_links_are_refused() {
        let a = artifacts("key", Duration::from_secs(60));
        let job = Uuid::new_v4();
        let past = OffsetDateTime::now_utc().unix_timestamp() - 5;
        let sig = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            a.signature(job, "report.pdf", past),
        );
        assert_eq!(
            a.verify(job, "report.pdf", past, &sig),
            Err(LinkError::Expired)
        );
    }
}
