//! An in-cluster cell's artifacts (reports, videos) live in a bucket of the platform's object
//! store, never in a pod: every media replica reads what any other wrote, and a pod that goes
//! takes nothing with it.
//!
//! The bucket is claimed with an `ObjectBucketClaim` (objectbucket.io/v1alpha1, the claim that
//! Rook-Ceph's RADOS Gateway, NooBaa/ODF and other provisioners fulfil) of the operator's
//! bucket class. The provisioner makes the bucket and, named like the claim in the cell's
//! namespace, a ConfigMap with its coordinates (`BUCKET_HOST`, `BUCKET_PORT`, `BUCKET_NAME`,
//! `BUCKET_REGION`) and a Secret with a key for that bucket alone (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`): one cell's pods hold no key to another's bucket. media-service
//! takes the coordinates as env and the key as files; until the claim is bound its pods wait
//! (the Secret and ConfigMap they mount do not exist yet) and `ObjectStoreReady` says why.
//!
//! An `rds` cell's bucket is its AWS foundation's (S3, SSE-KMS), reached with IRSA.

use cell_model::contract::env;
use cell_model::{Cell, Tier};
use serde_json::{Value, json};

use super::*;

/// The claim, and the ConfigMap and Secret its provisioner makes.
pub const MEDIA_BUCKET: &str = "media-bucket";

/// The platform's S3-compatible object store for in-cluster cells.
#[derive(Clone, Debug)]
pub struct ObjectStore {
    /// The claims' `storageClassName` (Rook-Ceph's examples: `rook-ceph-bucket`).
    pub bucket_class: String,
    /// The class of the Postgres backups' claims, if not `bucket_class`: one whose
    /// `reclaimPolicy` is `Retain` keeps a deleted cell's backups (its bucket outlives the claim).
    pub backup_bucket_class: Option<String>,
    /// Whether the store's endpoint speaks HTTPS.
    pub tls: bool,
    /// The namespace of the store's gateway pods and their container ports: where media pods
    /// may open connections (a NetworkPolicy sees pod ports, not Service ports).
    pub namespace: String,
    pub ports: Vec<u16>,
    /// How other clusters reach this store (`https://host[:port]`): a move's target reads the
    /// source's bucket there. `None`: at the claim's own `BUCKET_HOST:BUCKET_PORT` (clusters
    /// that share one store, or a store exported to the clusterset).
    pub external_endpoint: Option<String>,
    /// Where what deleted cells leave is kept (the operator's own namespace, which no cell
    /// reaches): their records, and the kept bucket's claim (`controller/kept.rs`).
    pub kept_namespace: String,
}

impl Default for ObjectStore {
    /// Rook-Ceph's object store as its examples deploy it.
    fn default() -> Self {
        Self {
            bucket_class: "rook-ceph-bucket".into(),
            backup_bucket_class: None,
            tls: false,
            namespace: "rook-ceph".into(),
            ports: vec![8080],
            external_endpoint: None,
            kept_namespace: "mrbill-system".into(),
        }
    }
}

/// What a tier's bucket may hold (Rook applies `maxSize` as the bucket owner's quota).
fn quota(tier: Tier) -> &'static str {
    match tier {
        Tier::Small => "20G",
        Tier::Standard => "100G",
        Tier::Large => "500G",
    }
}

pub(super) fn claim(cell: &Cell, store: &ObjectStore) -> Value {
    json!({
        "apiVersion": "objectbucket.io/v1alpha1",
        "kind": "ObjectBucketClaim",
        "metadata": meta(cell, MEDIA_BUCKET),
        "spec": {
            // Bucket names are global to a store: the provisioner adds a random suffix.
            "generateBucketName": format!("mrbill-{}", cell.spec.cell_id),
            "storageClassName": store.bucket_class,
            "additionalConfig": { "maxSize": quota(cell.spec.tier) },
        },
    })
}

/// media-service's settings for the claimed bucket (its key comes as files, see
/// [`media_files`]). `$(VAR)` is expanded by the kubelet from the variables before it.
pub(super) fn media_env(store: &ObjectStore) -> Vec<Value> {
    let coordinate = |name: &str, key: &str| json!({ "name": name, "valueFrom": { "configMapKeyRef": { "name": MEDIA_BUCKET, "key": key } } });
    let scheme = if store.tls { "https" } else { "http" };
    vec![
        coordinate("BUCKET_HOST", "BUCKET_HOST"),
        coordinate("BUCKET_PORT", "BUCKET_PORT"),
        coordinate(env::MEDIA_S3_BUCKET, "BUCKET_NAME"),
        coordinate(env::MEDIA_S3_REGION, "BUCKET_REGION"),
        json!({ "name": env::MEDIA_S3_ENDPOINT, "value": format!("{scheme}://$(BUCKET_HOST):$(BUCKET_PORT)") }),
        json!({ "name": env::MEDIA_S3_ACCESS_KEY_ID_FILE, "value": format!("{SECRETS_DIR}/{ACCESS_KEY_ID_FILE}") }),
        json!({ "name": env::MEDIA_S3_SECRET_ACCESS_KEY_FILE, "value": format!("{SECRETS_DIR}/{SECRET_ACCESS_KEY_FILE}") }),
    ]
}

const ACCESS_KEY_ID_FILE: &str = "s3-access-key-id";
const SECRET_ACCESS_KEY_FILE: &str = "s3-secret-access-key";

/// The bucket's key as secret files of media's pods.
pub(super) fn media_files() -> Vec<Value> {
    vec![
        secret_item(MEDIA_BUCKET, "AWS_ACCESS_KEY_ID", ACCESS_KEY_ID_FILE),
        secret_item(
            MEDIA_BUCKET,
            "AWS_SECRET_ACCESS_KEY",
            SECRET_ACCESS_KEY_FILE,
        ),
    ]
}

/// media's pods reach the store's gateway pods, and nothing else of it.
pub(super) fn egress(cell: &Cell, store: &ObjectStore) -> Value {
    let ports: Vec<Value> = store
        .ports
        .iter()
        .map(|port| json!({ "protocol": "TCP", "port": port }))
        .collect();
    policy(
        cell,
        "media-to-object-store",
        json!({
            "podSelector": service_pods("media"),
            "policyTypes": ["Egress"],
            "egress": [{
                "to": [{ "namespaceSelector": { "matchLabels": {
                    "kubernetes.io/metadata.name": store.namespace } } }],
                "ports": ports,
            }],
        }),
    )
}
