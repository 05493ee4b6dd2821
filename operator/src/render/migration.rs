//! A cell's part in a move between placements (`spec.migration`), on CloudNativePG's
//! primitives. The control plane drives both cells (`control-plane/…/driver/kubernetes.rs`);
//! here is what each side renders:
//!
//! ```text
//! source  managed role `migrator` (login, replication, member of the services' roles; the
//!         `migrator-role` Secret, which also carries the cell's Postgres CA) · its client
//!         rule before the cell's own · a Publication `mrbill_move` FOR ALL TABLES per service
//!         database · ingress to Postgres on 5432 from other clusters · fenced: no service pods
//! target  no service pods until `start` · copy…verify: the source as an external cluster
//!         (`migration-source`: the migrator's password and the source's CA, copied by the
//!         control plane), a Job per service copying the source's schema (pg_dump
//!         --schema-only as the migrator → psql as the service's role, in one transaction,
//!         skipped when the schema is there), and once every Job succeeded
//!         (`SchemaCopied`) a Subscription per service database · start: subscriptions gone
//!         (dropped with their resources), services run
//! ```
//!
//! An `rds` cell has no CNPG: its operator makes the migrator, publications and subscriptions
//! itself as the instance's master (`crate::roles::replication`); what is rendered for it is
//! the schema Jobs (TLS required, not verified, as its services reach RDS) and their network
//! path to the source.

use cell_model::{Cell, DatabaseEngine, MigrationPhase, MigrationRole};
use serde_json::{Value, json};

use super::*;

/// The migration's publication and subscription name in every service database.
pub const MOVE_PUBLICATION: &str = "mrbill_move";
/// The replication role on the source.
pub const MIGRATOR_ROLE: &str = "migrator";
/// On the source: the migrator's credentials (`username`, `password`) and the source's
/// Postgres CA (`ca.crt`). Generated once by the operator.
pub const MIGRATOR_SECRET: &str = cell_model::identity::MIGRATOR;
/// On the target: a copy of the source's [`MIGRATOR_SECRET`] (the control plane copies it).
pub const MIGRATION_SOURCE_SECRET: &str = cell_model::identity::MIGRATION_SOURCE;
/// The external cluster the target's subscriptions and schema Jobs connect to.
pub const SOURCE_CLUSTER: &str = "source";
/// A target's condition: every schema Job succeeded (the Subscriptions may be made).
pub const SCHEMA_COPIED: &str = cell_model::move_conditions::SCHEMA_COPIED;
/// Where the schema Job sees the source's credentials and CA.
const SOURCE_DIR: &str = "/var/run/secrets/migration-source";

/// The cell's side of a move, if it is in one.
pub fn role(cell: &Cell) -> Option<MigrationRole> {
    cell.spec.migration.as_ref().map(|m| m.role)
}

fn in_cluster(cell: &Cell) -> bool {
    cell.spec.database.engine == DatabaseEngine::InCluster
}

/// The target's phase, if the cell is a migration's target.
pub fn target_phase(cell: &Cell) -> Option<MigrationPhase> {
    let migration = cell.spec.migration.as_ref()?;
    (migration.role == MigrationRole::Target)
        .then(|| migration.phase.unwrap_or(MigrationPhase::Provision))
}

/// Whether the cell's services run: not suspended, not a fenced source, not a target before
/// `start`.
pub fn runs_services(cell: &Cell) -> bool {
    let held = match &cell.spec.migration {
        Some(m) if m.role == MigrationRole::Source => m.fenced,
        Some(_) => target_phase(cell) < Some(MigrationPhase::Start),
        None => false,
    };
    !cell.spec.suspended && !held
}

/// Whether the target replicates (copy … verify) and so has the source as an external cluster.
fn replicates(cell: &Cell) -> bool {
    role(cell) == Some(MigrationRole::Target)
        && matches!(
            target_phase(cell),
            Some(MigrationPhase::Copy | MigrationPhase::Sync | MigrationPhase::Verify)
        )
}

fn schema_copied(cell: &Cell) -> bool {
    cell.status
        .as_ref()
        .and_then(|s| s.condition(SCHEMA_COPIED))
        .is_some_and(|c| c.status == cell_model::ConditionStatus::True)
}

/// What the migration adds to the Cluster's spec.
pub(super) fn adjust_cluster(cell: &Cell, spec: &mut Value) {
    if !in_cluster(cell) {
        return;
    }
    match role(cell) {
        Some(MigrationRole::Source) => {
            let mut roles = spec["managed"]["roles"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            roles.push(json!({
                "name": MIGRATOR_ROLE,
                "ensure": "present",
                "login": true,
                "replication": true,
                "inRoles": services(),
                "passwordSecret": { "name": MIGRATOR_SECRET },
            }));
            spec["managed"]["roles"] = json!(roles);
            let mut hba = vec![json!(format!(
                "hostssl all {MIGRATOR_ROLE} all scram-sha-256"
            ))];
            hba.extend(
                spec["postgresql"]["pg_hba"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
            spec["postgresql"]["pg_hba"] = json!(hba);
        }
        Some(MigrationRole::Target) if replicates(cell) => {
            let host = source_host(cell);
            spec["externalClusters"] = json!([{
                "name": SOURCE_CLUSTER,
                "connectionParameters": {
                    "host": host, "port": "5432", "user": MIGRATOR_ROLE,
                    "dbname": "postgres", "sslmode": "verify-full",
                },
                "password": { "name": MIGRATION_SOURCE_SECRET, "key": "password" },
                "sslRootCert": { "name": MIGRATION_SOURCE_SECRET, "key": "ca.crt" },
            }]);
        }
        _ => {}
    }
}

/// The replication slot on the source of one service database's subscription (the default,
/// the subscription's name, would be the same for every database of the cluster).
pub fn slot(service: &str) -> String {
    format!("{MOVE_PUBLICATION}_{service}")
}

fn source_host(cell: &Cell) -> String {
    cell.spec
        .migration
        .as_ref()
        .and_then(|m| m.source_host.clone())
        .unwrap_or_default()
}

/// The migration's own objects (Publications, schema Jobs, Subscriptions, network paths).
pub(super) fn objects(cell: &Cell, images: &Images) -> Vec<Value> {
    let tcp = json!([{ "protocol": "TCP", "port": POSTGRES_PORT }]);
    match role(cell) {
        Some(MigrationRole::Source) if in_cluster(cell) => {
            let mut out: Vec<Value> = services()
                .iter()
                .map(|service| {
                    json!({
                        "apiVersion": "postgresql.cnpg.io/v1",
                        "kind": "Publication",
                        "metadata": meta(cell, &format!("move-{service}")),
                        "spec": {
                            "cluster": { "name": POSTGRES_CLUSTER },
                            "dbname": service,
                            "name": MOVE_PUBLICATION,
                            "target": { "allTables": true },
                            "publicationReclaimPolicy": "delete",
                        },
                    })
                })
                .collect();
            // The target's cluster connects from outside this one.
            out.push(policy(
                cell,
                "postgres-from-migration",
                json!({
                    "podSelector": postgres_pods(),
                    "policyTypes": ["Ingress"],
                    "ingress": [{ "ports": tcp }],
                }),
            ));
            // Reached by name from other clusters (MCS API), for as long as it is a source.
            if images.service_export {
                out.push(json!({
                    "apiVersion": "multicluster.x-k8s.io/v1alpha1",
                    "kind": "ServiceExport",
                    "metadata": meta(cell, "postgres-rw"),
                }));
            }
            out
        }
        Some(MigrationRole::Target) if replicates(cell) => {
            let mut out = vec![policy(
                cell,
                "migration-to-source",
                json!({
                    "podSelector": { "matchExpressions": [{ "key": "mrbill.dev/migration", "operator": "Exists" }] },
                    "policyTypes": ["Egress"],
                    "egress": [{ "ports": tcp }],
                }),
            )];
            if in_cluster(cell) {
                out.push(policy(
                    cell,
                    "postgres-to-source",
                    json!({
                        "podSelector": postgres_pods(),
                        "policyTypes": ["Egress"],
                        "egress": [{ "ports": tcp }],
                    }),
                ));
            }
            for service in services() {
                out.push(schema_job(cell, service));
                if in_cluster(cell) && schema_copied(cell) {
                    out.push(json!({
                        "apiVersion": "postgresql.cnpg.io/v1",
                        "kind": "Subscription",
                        "metadata": meta(cell, &format!("move-{service}")),
                        "spec": {
                            "cluster": { "name": POSTGRES_CLUSTER },
                            "dbname": service,
                            "name": MOVE_PUBLICATION,
                            "publicationName": MOVE_PUBLICATION,
                            "publicationDBName": service,
                            "externalClusterName": SOURCE_CLUSTER,
                            // Slots are per source cluster, not per database: one name each.
                            "parameters": { "slot_name": slot(service) },
                            "subscriptionReclaimPolicy": "delete",
                        },
                    }));
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

/// The shell of a schema Job: skip when the schema is there, else the source's schema
/// (no owners, no grants, not the move's own publication) restored as the service's role, all or nothing; the source verified
/// by its CA and its cross-cluster name (see `crate::tls`).
const SCHEMA_SCRIPT: &str = r#"set -eu
target="$(cat /var/run/secrets/mrbill/database-url)"
if [ "$(psql -tAX "$target" -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")" != 0 ]; then
  echo "the schema is already here"; exit 0
fi
PGPASSWORD="$(cat $SOURCE_DIR/password)" pg_dump --schema-only --no-owner --no-privileges --no-publications --no-subscriptions "$SOURCE_URL" \
  | psql -v ON_ERROR_STOP=1 -X --single-transaction -q "$target"
"#;

pub(super) fn schema_job(cell: &Cell, service: &str) -> Value {
    let mut pod_labels = labels(cell);
    pod_labels["mrbill.dev/migration"] = json!("schema");
    pod_labels[SERVICE_LABEL] = json!(format!("{service}-schema"));
    let mut files = vec![secret_item(
        &database_secret(service),
        "url",
        "database-url",
    )];
    let mut source_files = vec![json!({ "key": "password", "path": "password" })];
    let host = format!(
        "{MIGRATOR_ROLE}@{}:{POSTGRES_PORT}/{service}",
        source_host(cell)
    );
    let mut env = vec![];
    if in_cluster(cell) {
        // Both sides verified: each by its own CA, the source also by its cross-cluster name.
        files.push(secret_item(
            POSTGRES_TLS_SECRET,
            "ca.crt",
            "postgres-ca.crt",
        ));
        source_files.push(json!({ "key": "ca.crt", "path": "ca.crt" }));
        env.extend([
            json!({ "name": "SOURCE_URL", "value": format!(
                "postgresql://{host}?sslmode=verify-full&sslrootcert={SOURCE_DIR}/ca.crt"
            ) }),
            json!({ "name": "PGSSLMODE", "value": "verify-full" }),
            json!({ "name": "PGSSLROOTCERT", "value": format!("{SECRETS_DIR}/postgres-ca.crt") }),
        ]);
    } else {
        env.extend([
            json!({ "name": "SOURCE_URL", "value": format!("postgresql://{host}?sslmode=require") }),
            json!({ "name": "PGSSLMODE", "value": "require" }),
        ]);
    }
    let files = json!(files);
    let source = json!([{ "secret": { "name": MIGRATION_SOURCE_SECRET, "items": source_files } }]);
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(cell, &format!("schema-{service}")),
        "spec": {
            "backoffLimit": 20,
            "template": {
                "metadata": { "labels": pod_labels },
                "spec": {
                    "restartPolicy": "OnFailure",
                    "serviceAccountName": "cell",
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "securityContext": {
                        "runAsNonRoot": true, "runAsUser": 26, "runAsGroup": 26, "fsGroup": 26,
                        "seccompProfile": { "type": "RuntimeDefault" },
                    },
                    "containers": [{
                        "name": "schema",
                        "image": POSTGRES_IMAGE,
                        "command": ["/bin/sh", "-c", SCHEMA_SCRIPT.replace("$SOURCE_DIR", SOURCE_DIR)],
                        "env": env,
                        "resources": {
                            "requests": { "cpu": "50m", "memory": "64Mi" },
                            "limits": { "cpu": "500m", "memory": "256Mi" },
                        },
                        "securityContext": locked_down(),
                        "volumeMounts": [
                            { "name": "secrets", "mountPath": SECRETS_DIR, "readOnly": true },
                            { "name": "source", "mountPath": SOURCE_DIR, "readOnly": true },
                            { "name": "tmp", "mountPath": "/tmp" },
                        ],
                    }],
                    "volumes": [
                        { "name": "secrets", "projected": { "defaultMode": 0o440, "sources": files } },
                        { "name": "source", "projected": { "defaultMode": 0o440, "sources": source } },
                        { "name": "tmp", "emptyDir": {} },
                    ],
                },
            },
        },
    })
}
