//! An in-cluster cell's Postgres backups: CloudNativePG's base backups and WAL archive
//! (barman-cloud) into a bucket of the platform's object store claimed for them alone
//! (`ObjectBucketClaim` `postgres-backups`), whose key only CNPG's instances use: media's
//! key reaches its artifacts bucket, never the backups.
//!
//! ```text
//! claim postgres-backups (bound) ─► its ConfigMap (BUCKET_NAME, BUCKET_HOST, BUCKET_PORT)
//!    └► Cluster.spec.backup.barmanObjectStore: s3://<bucket>/<server>/ at the store, the
//!       claim's Secret as s3Credentials; WAL archived continuously (gzip), kept for the tier's
//!       retention (7 / 14 / 35 days): point-in-time recovery within that window
//! base backups: CNPG `Backup`s the control plane asks for (the tier's schedule, `mrbill
//!    tenant backup`) and the deletion's last one
//! ```
//!
//! `<server>` is `postgres` until the cell's first restore, then `postgres-<restore>`: a
//! recovered cluster archives apart from the one it replaced (CNPG refuses to archive into a
//! folder that holds another cluster's WAL), whose backups stay where a later restore finds
//! them (each `Backup`'s status names its folder).
//!
//! Until the claim is bound the Cluster runs without archiving and `BackupsReady` says why;
//! the backup section is added by the controller once the provisioner's ConfigMap exists
//! ([`with_backups`]), so the Cluster never names a bucket that does not exist yet.

use cell_model::Cell;
use serde_json::{Value, json};

use super::*;

/// The claim, and the ConfigMap and Secret its provisioner makes.
pub const BACKUP_BUCKET: &str = "postgres-backups";

/// The folder of the bucket the cell's Cluster archives into (barman's server name).
pub fn server_name(cell: &Cell) -> String {
    match &cell.spec.restore {
        None => POSTGRES_CLUSTER.to_owned(),
        Some(r) => format!("{POSTGRES_CLUSTER}-{}", short_id(&r.id)),
    }
}

/// A restore id's last 12 characters (UUIDs: the random part), lower-case alphanumerics.
pub fn short_id(id: &str) -> String {
    cell_model::short_id(id)
}

/// The backups' bucket: room for the retention window's base backups and WAL (three times
/// the database's storage).
pub(super) fn claim(cell: &Cell, store: &ObjectStore) -> Value {
    json!({
        "apiVersion": "objectbucket.io/v1alpha1",
        "kind": "ObjectBucketClaim",
        "metadata": meta(cell, BACKUP_BUCKET),
        "spec": {
            "generateBucketName": format!("mrbill-{}-pg", cell.spec.cell_id),
            "storageClassName": store.backup_bucket_class.as_ref().unwrap_or(&store.bucket_class),
            "additionalConfig": { "maxSize": format!("{}G", cell.spec.database.storage_gib * 3) },
        },
    })
}

/// The rendered objects with the Cluster archiving to the bound claim `config_map` describes
/// (the provisioner's ConfigMap of [`BACKUP_BUCKET`]); unchanged if the ConfigMap lacks the
/// bucket's coordinates.
pub fn with_backups(
    cell: &Cell,
    mut desired: Vec<Value>,
    config_map: &Value,
    store: &ObjectStore,
) -> Vec<Value> {
    let Some(mut archive) = archive(config_map, store, &server_name(cell)) else {
        return desired;
    };
    archive["data"] = json!({ "compression": "gzip", "jobs": 2 });
    let backup = json!({
        "barmanObjectStore": archive,
        "retentionPolicy": format!("{}d", cell.spec.tier.template().backup_retention_days),
    });
    let Some(cluster) = desired
        .iter_mut()
        .find(|o| o["kind"] == "Cluster" && o["metadata"]["name"] == POSTGRES_CLUSTER)
    else {
        return desired;
    };
    cluster["spec"]["backup"] = backup;
    desired
}

/// The external cluster a returning deleted cell recovers from: its kept archive, copied into
/// the cell's new backups bucket.
pub const ARCHIVE_SOURCE: &str = "archive";

/// The rendered objects with the Cluster recovering from the archive copied into the bucket
/// `config_map` describes (a deleted cell's return: its `Backup`s went with its namespace), the
/// restore's backup found by its barman folder and id (`server_name`, `backup_id`) — and with
/// `replay`, the archive replayed to its end from it rather than stopping where it is
/// consistent; unchanged if the ConfigMap lacks the bucket's coordinates or the Cluster does
/// not recover.
pub fn from_archive(
    mut desired: Vec<Value>,
    config_map: &Value,
    store: &ObjectStore,
    (server_name, backup_id): (&str, &str),
    replay: bool,
) -> Vec<Value> {
    let Some(archive) = archive(config_map, store, server_name) else {
        return desired;
    };
    let Some(cluster) = desired
        .iter_mut()
        .find(|o| o["kind"] == "Cluster" && o["metadata"]["name"] == POSTGRES_CLUSTER)
    else {
        return desired;
    };
    let recovery = &mut cluster["spec"]["bootstrap"]["recovery"];
    if recovery.is_null() {
        return desired;
    }
    let mut target = recovery["recoveryTarget"].clone();
    target["backupID"] = json!(backup_id);
    if replay && let Some(target) = target.as_object_mut() {
        target.remove("targetImmediate");
    }
    *recovery = json!({ "source": ARCHIVE_SOURCE, "recoveryTarget": target });
    cluster["spec"]["externalClusters"] =
        json!([{ "name": ARCHIVE_SOURCE, "barmanObjectStore": archive }]);
    desired
}

/// The `barmanObjectStore` of folder `server_name` in the bucket the backups' claim's
/// ConfigMap describes (its key from the claim's Secret, WAL gzipped); `None` if the
/// ConfigMap lacks the bucket's coordinates.
fn archive(config_map: &Value, store: &ObjectStore, server_name: &str) -> Option<Value> {
    let data = &config_map["data"];
    let bucket = data["BUCKET_NAME"].as_str()?;
    let (host, port) = (data["BUCKET_HOST"].as_str()?, data["BUCKET_PORT"].as_str()?);
    let scheme = if store.tls { "https" } else { "http" };
    let key = |name: &str| json!({ "name": BACKUP_BUCKET, "key": name });
    Some(json!({
        "destinationPath": format!("s3://{bucket}/"),
        "serverName": server_name,
        "endpointURL": format!("{scheme}://{host}:{port}"),
        "s3Credentials": {
            "accessKeyId": key("AWS_ACCESS_KEY_ID"),
            "secretAccessKey": key("AWS_SECRET_ACCESS_KEY"),
        },
        "wal": { "compression": "gzip", "maxParallel": 2 },
    }))
}

/// A last base backup before the cell is deleted (a CNPG `Backup`, named by the deletion).
pub fn final_backup(cell: &Cell, name: &str) -> Value {
    let mut backup = cell_model::base_backup(&cell.spec.tenant, &cell.spec.cell_id, name);
    backup["metadata"] = meta(cell, name);
    backup
}

/// The Cluster's instances reach the store's gateway pods (WAL and base backups go there).
pub(super) fn egress(store: &ObjectStore) -> Value {
    let ports: Vec<Value> = store
        .ports
        .iter()
        .map(|port| json!({ "protocol": "TCP", "port": port }))
        .collect();
    json!({
        "to": [{ "namespaceSelector": { "matchLabels": {
            "kubernetes.io/metadata.name": store.namespace } } }],
        "ports": ports,
    })
}
