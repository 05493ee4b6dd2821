//! A cell's artifacts bucket as its operator reaches it, and a move's copy of it.
//!
//! An `rds` cell's bucket is its foundation's, in AWS S3 (the operator's AWS credentials). An
//! in-cluster cell's is claimed (`render::MEDIA_BUCKET`): the provisioner's ConfigMap says
//! where it is, its Secret holds the bucket's key. A move's source puts its bucket's
//! coordinates and key into its migrator Secret (the control plane copies it to the target's
//! cluster as `migration-source`), so the target's operator can read it — at the store's
//! address for other clusters when the platform gives one (`ObjectStore::external_endpoint`).
//!
//! ```text
//! target copy   source bucket ──► own bucket (what is missing, smaller, or older)   CaughtUp
//!        sync   again, exactly (the source is fenced: deletes what it no longer has)   InSync
//!        verify both hold the same keys and sizes                                     Verified
//! ```

use cell_model::{Cell, MigrationPhase};
use serde_json::{Value, json};

use crate::apply;
use crate::aws::{Bucket, Objects, Store};
use crate::error::Error;
use crate::render::{MEDIA_BUCKET, ObjectStore};

/// Keys of a migrator Secret naming the source's bucket.
const BUCKET: &str = "bucket";
const REGION: &str = "region";
const ENDPOINT: &str = "bucket-endpoint";
const ACCESS_KEY_ID: &str = "bucket-access-key-id";
const SECRET_ACCESS_KEY: &str = "bucket-secret-access-key";

/// An in-cluster cell's claimed bucket, once its provisioner bound the claim (`None` before),
/// at the address this operator reaches it (`external`: the one other clusters use).
pub async fn claimed(
    client: &kube::Client,
    cell: &Cell,
    store: &ObjectStore,
    external: bool,
) -> Result<Option<Bucket>, Error> {
    claimed_as(client, cell, store, MEDIA_BUCKET, external).await
}

/// The bucket of the cell's claim `claim` (the artifacts' or the Postgres backups'), once
/// bound (see [`claimed`]).
pub async fn claimed_as(
    client: &kube::Client,
    cell: &Cell,
    store: &ObjectStore,
    claim: &str,
    external: bool,
) -> Result<Option<Bucket>, Error> {
    let Some(coordinates) = apply::get(client, cell, "ConfigMap", claim).await? else {
        return Ok(None);
    };
    let key = |k: &'static str| apply::secret_value(client, cell, claim, k);
    let (Some(access_key_id), Some(secret_access_key)) = (
        key("AWS_ACCESS_KEY_ID").await?,
        key("AWS_SECRET_ACCESS_KEY").await?,
    ) else {
        return Ok(None);
    };
    let key = (access_key_id, secret_access_key);
    Ok(of_claim(&coordinates["data"], key, store, external))
}

/// The bucket a bound claim's ConfigMap `data` and Secret key describe (`None`: incomplete).
pub fn of_claim(
    data: &Value,
    (access_key_id, secret_access_key): (String, String),
    store: &ObjectStore,
    external: bool,
) -> Option<Bucket> {
    let field = |key: &str| data[key].as_str().unwrap_or_default().to_owned();
    let (name, host, port) = (
        field("BUCKET_NAME"),
        field("BUCKET_HOST"),
        field("BUCKET_PORT"),
    );
    if name.is_empty() || host.is_empty() {
        return None;
    }
    let scheme = if store.tls { "https" } else { "http" };
    let endpoint = match (&store.external_endpoint, external) {
        (Some(external), true) => external.clone(),
        _ if port.is_empty() => format!("{scheme}://{host}"),
        _ => format!("{scheme}://{host}:{port}"),
    };
    Some(Bucket {
        name,
        region: Some(field("BUCKET_REGION"))
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "us-east-1".to_owned()),
        store: Some(Store {
            endpoint,
            access_key_id,
            secret_access_key,
        }),
    })
}

/// The migrator Secret's keys naming `bucket` (and its key, for a store's).
pub fn secret_data(bucket: &Bucket) -> Value {
    let mut data = json!({ BUCKET: bucket.name, REGION: bucket.region });
    if let Some(store) = &bucket.store {
        data[ENDPOINT] = json!(store.endpoint);
        data[ACCESS_KEY_ID] = json!(store.access_key_id);
        data[SECRET_ACCESS_KEY] = json!(store.secret_access_key);
    }
    data
}

/// The source's bucket as the target's copy of the migrator Secret (`secret`) names it.
pub async fn from_secret(
    client: &kube::Client,
    cell: &Cell,
    secret: &str,
) -> Result<Option<Bucket>, Error> {
    let value = |key: &'static str| apply::secret_value(client, cell, secret, key);
    let (Some(name), Some(region)) = (value(BUCKET).await?, value(REGION).await?) else {
        return Ok(None);
    };
    let store = match (
        value(ENDPOINT).await?,
        value(ACCESS_KEY_ID).await?,
        value(SECRET_ACCESS_KEY).await?,
    ) {
        (Some(endpoint), Some(access_key_id), Some(secret_access_key)) => Some(Store {
            endpoint,
            access_key_id,
            secret_access_key,
        }),
        _ => None,
    };
    Ok(Some(Bucket {
        name,
        region,
        store,
    }))
}

/// The target's copy of the source's objects in `phase`: copied (exactly, once the source is
/// fenced), or compared. How many objects the source holds, or why not.
pub async fn copy(
    objects: &Objects,
    from: &Bucket,
    to: &Bucket,
    phase: MigrationPhase,
) -> Result<usize, String> {
    let done = match phase {
        MigrationPhase::Verify => match objects.differing(from, to).await {
            Ok(keys) if keys.is_empty() => return Ok(0),
            Ok(keys) => return Err(format!("the buckets differ in {keys:?}")),
            Err(e) => Err(e),
        },
        _ => {
            let exact = phase >= MigrationPhase::Sync;
            objects.sync(from, to, exact).await
        }
    };
    done.map_err(|e| e.to_string())
}

/// An in-cluster target's copy of its source's bucket in `phase` (see [`copy`]).
pub async fn copy_in_cluster(
    client: &kube::Client,
    cell: &Cell,
    store: &ObjectStore,
    phase: MigrationPhase,
) -> Result<Result<usize, String>, Error> {
    let secret = crate::render::migration::MIGRATION_SOURCE_SECRET;
    let Some(from) = from_secret(client, cell, secret).await? else {
        return Ok(Err(format!("Secret {secret} names no bucket")));
    };
    let Some(to) = claimed(client, cell, store, false).await? else {
        return Ok(Err(format!(
            "this cell's bucket is not there yet (ObjectBucketClaim {MEDIA_BUCKET})"
        )));
    };
    Ok(copy(&Objects::default(), &from, &to, phase).await)
}
