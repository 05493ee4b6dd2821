//! An in-cluster cell's Postgres backups: CloudNativePG's base backups and WAL archive
//! (barman-cloud) into a bucket of the platform's object store claimed for them alone
//! (`ObjectBucketClaim` `postgres-backups`), whose key only CNPG's instances use: media's
//! key reaches its artifacts bucket, never the backups.
//!
//! ```text
//! claim postgres-backups (bound) ─► its ConfigMap (BUCKET_NAME, BUCKET_HOST, BUCKET_PORT)
//!    └► Cluster.spec.backup.barmanObjectStore: s3://<bucket>/ at the store, the claim's Secret
//!       as s3Credentials; WAL archived continuously (gzip), base backups by a ScheduledBackup
//!       on the tier's schedule (small daily, standard every 6 h, large hourly), kept for the
//!       tier's retention (7 / 14 / 35 days): point-in-time recovery within that window
//! ```
//!
//! Until the claim is bound the Cluster runs without archiving and `BackupsReady` says why;
//! the backup section is added by the controller once the provisioner's ConfigMap exists
//! ([`with_backups`]), so the Cluster never names a bucket that does not exist yet.

use cell_model::{Cell, Tier};
use serde_json::{Value, json};

use super::*;

/// The claim, and the ConfigMap and Secret its provisioner makes.
pub const BACKUP_BUCKET: &str = "postgres-backups";
/// The ScheduledBackup of the Cluster's base backups.
pub const SCHEDULED_BACKUP: &str = "postgres-base";

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

/// CNPG's cron (seconds first) for the tier's `backup_every_hours`.
pub fn schedule(tier: Tier) -> String {
    match tier.template().backup_every_hours {
        24 => "0 0 2 * * *".to_owned(),
        1 => "0 0 * * * *".to_owned(),
        hours => format!("0 0 */{hours} * * *"),
    }
}

/// The rendered objects with the Cluster archiving to the bound claim `config_map` describes
/// (the provisioner's ConfigMap of [`BACKUP_BUCKET`]) and its ScheduledBackup; unchanged if
/// the ConfigMap lacks the bucket's coordinates.
pub fn with_backups(
    cell: &Cell,
    mut desired: Vec<Value>,
    config_map: &Value,
    store: &ObjectStore,
) -> Vec<Value> {
    let data = &config_map["data"];
    let (Some(bucket), Some(host), Some(port)) = (
        data["BUCKET_NAME"].as_str(),
        data["BUCKET_HOST"].as_str(),
        data["BUCKET_PORT"].as_str(),
    ) else {
        return desired;
    };
    let scheme = if store.tls { "https" } else { "http" };
    let key = |name: &str| json!({ "name": BACKUP_BUCKET, "key": name });
    let backup = json!({
        "barmanObjectStore": {
            "destinationPath": format!("s3://{bucket}/"),
            "endpointURL": format!("{scheme}://{host}:{port}"),
            "s3Credentials": {
                "accessKeyId": key("AWS_ACCESS_KEY_ID"),
                "secretAccessKey": key("AWS_SECRET_ACCESS_KEY"),
            },
            "wal": { "compression": "gzip", "maxParallel": 2 },
            "data": { "compression": "gzip", "jobs": 2 },
        },
        "retentionPolicy": format!("{}d", cell.spec.tier.template().backup_retention_days),
    });
    let Some(cluster) = desired
        .iter_mut()
        .find(|o| o["kind"] == "Cluster" && o["metadata"]["name"] == POSTGRES_CLUSTER)
    else {
        return desired;
    };
    cluster["spec"]["backup"] = backup;
    desired.push(json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "ScheduledBackup",
        "metadata": meta(cell, SCHEDULED_BACKUP),
        "spec": {
            "schedule": schedule(cell.spec.tier),
            "cluster": { "name": POSTGRES_CLUSTER },
            "method": "barmanObjectStore",
            // The first base backup at once: point-in-time recovery needs one to start from.
            "immediate": true,
            "backupOwnerReference": "self",
        },
    }));
    desired
}

/// A last base backup before the cell is deleted (a CNPG `Backup`, named by the deletion).
pub fn final_backup(cell: &Cell, name: &str) -> Value {
    json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Backup",
        "metadata": meta(cell, name),
        "spec": {
            "cluster": { "name": POSTGRES_CLUSTER },
            "method": "barmanObjectStore",
        },
    })
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
