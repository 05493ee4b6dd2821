//! The cell's Meilisearch StatefulSet with its headless Service (Postgres is CNPG's:
//! `postgres.rs`).

use cell_model::Cell;
use serde_json::{Value, json};

use super::*;

/// A headless Service for a StatefulSet (`meilisearch`).
pub(super) fn headless(cell: &Cell, name: &str, port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name, "namespace": namespace(cell), "labels": with_service(labels(cell), name) },
        "spec": {
            "clusterIP": "None",
            "selector": { SERVICE_LABEL: name, CELL_LABEL: cell.spec.cell_id },
            "ports": [{ "name": name, "port": port, "targetPort": port, "protocol": "TCP" }],
        },
    })
}

pub(super) fn stateful_set(
    cell: &Cell,
    name: &str,
    uid: u32,
    container: Value,
    volumes: Value,
    storage_gib: u32,
) -> Value {
    let pod_labels = with_service(labels(cell), name);
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": { "name": name, "namespace": namespace(cell), "labels": pod_labels },
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": { "matchLabels": { SERVICE_LABEL: name, CELL_LABEL: cell.spec.cell_id } },
            "template": {
                "metadata": { "labels": pod_labels },
                "spec": {
                    "serviceAccountName": "cell",
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": uid,
                        "runAsGroup": uid,
                        "fsGroup": uid,
                        "seccompProfile": { "type": "RuntimeDefault" },
                    },
                    "containers": [container],
                    "volumes": volumes,
                },
            },
            "volumeClaimTemplates": [{
                "metadata": { "name": "data", "labels": with_service(labels(cell), name) },
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": { "requests": { "storage": format!("{storage_gib}Gi") } },
                },
            }],
        },
    })
}

/// What an `rds` cell had before the operator made its roles itself: a Job in the cell's
/// namespace holding the master password. Removed from cells that still have them.
pub const RDS_ROLES_JOB: &str = "rds-roles";
pub const RDS_MASTER_SECRET: &str = "rds-master";

/// Where Meilisearch sees its master key.
pub(super) const MEILISEARCH_KEY_DIR: &str = "/var/run/secrets/meilisearch";

/// The cell's Meilisearch (search engine `meilisearch`). Its master key is a mounted file that
/// the container's shell reads at start: never an env value in the pod spec.
pub(super) fn meilisearch(cell: &Cell) -> Value {
    let container = json!({
        "name": "meilisearch",
        "image": MEILISEARCH_IMAGE,
        "ports": [{ "name": "http", "containerPort": MEILISEARCH_PORT, "protocol": "TCP" }],
        "command": ["/bin/sh", "-c", format!(
            "MEILI_MASTER_KEY=\"$(cat {MEILISEARCH_KEY_DIR}/master-key)\" exec /bin/meilisearch")],
        "env": [
            { "name": "MEILI_ENV", "value": "production" },
            { "name": "MEILI_DB_PATH", "value": "/meili_data/data.ms" },
            { "name": "MEILI_NO_ANALYTICS", "value": "true" },
        ],
        "readinessProbe": { "httpGet": { "path": "/health", "port": "http" }, "periodSeconds": 5 },
        "livenessProbe": { "httpGet": { "path": "/health", "port": "http" }, "periodSeconds": 10 },
        "resources": {
            "requests": { "cpu": "100m", "memory": "256Mi" },
            "limits": { "cpu": "2", "memory": "2Gi" },
        },
        "securityContext": locked_down(),
        "volumeMounts": [
            { "name": "data", "mountPath": "/meili_data" },
            { "name": "tmp", "mountPath": "/tmp" },
            { "name": "key", "mountPath": MEILISEARCH_KEY_DIR, "readOnly": true },
        ],
    });
    let volumes = json!([
        { "name": "tmp", "emptyDir": {} },
        { "name": "key", "secret": { "secretName": MEILISEARCH_SECRET, "defaultMode": 0o440,
            "items": [{ "key": "master-key", "path": "master-key" }] } },
    ]);
    stateful_set(cell, "meilisearch", 1000, container, volumes, 10)
}
