//! The cell's in-cluster Postgres (database engine `in-cluster`) as a **CloudNativePG**
//! `Cluster` with one `Database` per service: CNPG runs the instances, their failover and
//! (with the migration and backup work built on it) the replication primitives; the operator
//! only declares what the cell needs.
//!
//! - Roles: each service's role is a managed role whose password is the cell's
//!   `<service>-role` Secret (`kubernetes.io/basic-auth`, the same password as the service's
//!   database URL); `poc` is the bootstrap owner, `dojo` and `media` are added after it.
//! - Databases: `Database` resources, each owned by its service's role, kept on deletion.
//! - Who connects: TLS with a password only, and each role only to the database of its own
//!   name (`hostssl sameuser`); everything else is rejected before CNPG's default rule.
//! - TLS: the cell's own CA and server certificate (`crate::tls`, Secret `postgres-tls`) for
//!   the names of the Cluster's `-rw`/`-ro`/`-r` Services; the services verify them
//!   (`verify-full`). No superuser login exists (`enableSuperuserAccess: false`).
//!
//! Every object rendered here is validated against CNPG v1.30.0's CRD schemas
//! (`tests/cnpg.rs`), and started by the test kubelet's CNPG stand-in (`tests/pods.rs`).

use cell_model::Cell;
use cell_model::contract::Service;
use serde_json::{Value, json};

use super::*;

/// The Cluster's name; CNPG names its Services `<name>-rw` (primary), `-ro`, `-r`.
pub const POSTGRES_CLUSTER: &str = "postgres";
/// The Service every database URL names: the primary.
pub const POSTGRES_RW_SERVICE: &str = "postgres-rw";
/// Pinned CNPG operand image (PostgreSQL 16, as the local driver's clusters).
pub const POSTGRES_IMAGE: &str = "ghcr.io/cloudnative-pg/postgresql:16.4";
/// The label CNPG puts on every pod of a Cluster.
pub const CNPG_CLUSTER_LABEL: &str = "cnpg.io/cluster";
/// The port of CNPG's instance manager (status, probes), which the CNPG operator calls.
pub const CNPG_STATUS_PORT: u16 = 8000;
/// On the Cluster: the restore (`spec.restore.id`) it was recovered for.
pub const RESTORE_ANNOTATION: &str = "mrbill.dev/restore";

/// `<service>-role`: the managed role's credentials (`username`, `password`).
pub fn role_secret(service: &str) -> String {
    cell_model::identity::role(service)
}

/// The `Database` resource of a service.
pub fn database_resource(service: &str) -> String {
    format!("postgres-{service}")
}

/// Client rules after CNPG's fixed ones (local peer, replication by certificate) and before
/// its default: TLS + scram, and a role reaches only the database of its own name.
pub const POSTGRES_HBA: [&str; 2] = [
    "hostssl sameuser all all scram-sha-256",
    "host all all all reject",
];

/// How many instances: three (a primary and two standbys, each preferably in a zone of its
/// own) where the tier promises multi-AZ, else one. With the quorum commit below, one
/// instance or zone may go without writes stopping or an acknowledged one being lost.
pub fn postgres_instances(cell: &Cell) -> u32 {
    if cell.spec.database.multi_az { 3 } else { 1 }
}

/// What a database class (the tier's `db_classes`, named as RDS names them) means for an
/// in-cluster instance: its vCPUs and memory, the same as the RDS class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbClass {
    pub cpu: u32,
    pub memory_gib: u32,
}

/// The size of class `name`; `None` for a class no tier offers.
pub fn db_class(name: &str) -> Option<DbClass> {
    let (cpu, memory_gib) = match name {
        "db.t4g.small" => (2, 2),
        "db.t4g.medium" => (2, 4),
        "db.m7g.large" => (2, 8),
        "db.m7g.xlarge" => (4, 16),
        "db.m7g.2xlarge" => (8, 32),
        "db.r7g.xlarge" => (4, 32),
        "db.r7g.2xlarge" => (8, 64),
        "db.r7g.4xlarge" => (16, 128),
        _ => return None,
    };
    Some(DbClass { cpu, memory_gib })
}

/// The cell's database class: its override, or the tier's default (an unknown name — which
/// the control plane never records — falls back to the default too).
pub fn cell_db_class(cell: &Cell) -> DbClass {
    let default = cell.spec.tier.template().db_class;
    cell.spec
        .database
        .class
        .as_deref()
        .and_then(db_class)
        .or_else(|| db_class(default))
        .expect("every tier's default class has a size")
}

pub(super) fn postgres_cluster(cell: &Cell) -> Value {
    let class = cell_db_class(cell);
    let services = services();
    let owner = services[0];
    let roles: Vec<Value> = services
        .iter()
        .map(|service| {
            json!({
                "name": service,
                "ensure": "present",
                "login": true,
                "inherit": true,
                "passwordSecret": { "name": role_secret(service) },
            })
        })
        .collect();
    // CNPG's own objects (pods, claims, Services) carry the cell's labels — never the
    // operator's `managed-by`, or pruning would take CNPG's Services for stale ones of ours.
    let inherited = json!({
        TENANT_LABEL: cell.spec.tenant,
        CELL_LABEL: cell.spec.cell_id,
        TIER_LABEL: cell.spec.tier.as_str(),
        SERVICE_LABEL: "postgres",
    });
    let mut spec = json!({
        "instances": postgres_instances(cell),
        "imageName": POSTGRES_IMAGE,
        "enableSuperuserAccess": false,
        "inheritedMetadata": { "labels": inherited },
        "bootstrap": { "initdb": {
            "database": owner,
            "owner": owner,
            "secret": { "name": role_secret(owner) },
            "dataChecksums": true,
        }},
        "managed": { "roles": roles },
        "postgresql": {
            "pg_hba": POSTGRES_HBA,
            // Sized by the class, as RDS sizes its parameter group.
            "parameters": {
                "max_connections": "200",
                "shared_buffers": format!("{}MB", class.memory_gib * 1024 / 4),
                "effective_cache_size": format!("{}MB", class.memory_gib * 1024 * 3 / 4),
            },
        },
        "certificates": {
            "serverTLSSecret": POSTGRES_TLS_SECRET,
            "serverCASecret": POSTGRES_TLS_SECRET,
        },
        "storage": {
            "size": format!("{}Gi", cell.spec.database.storage_gib),
            "resizeInUseVolumes": true,
        },
        "resources": {
            "requests": { "cpu": format!("{}m", class.cpu * 250), "memory": format!("{}Gi", class.memory_gib) },
            "limits": { "cpu": class.cpu.to_string(), "memory": format!("{}Gi", class.memory_gib) },
        },
        "enablePDB": true,
    });
    if cell.spec.database.multi_az {
        // A commit returns once one standby has it too (ANY 1 of the two): an acknowledged
        // write is in two zones. `required` blocks writes rather than acknowledge one that a
        // single zone holds; failover promotes only a standby the quorum says has every
        // acknowledged commit.
        spec["postgresql"]["synchronous"] = json!({
            "method": "any",
            "number": 1,
            "dataDurability": "required",
            "failoverQuorum": true,
        });
        spec["affinity"] = json!({
            "enablePodAntiAffinity": true,
            "topologyKey": "topology.kubernetes.io/zone",
            "podAntiAffinityType": "preferred",
        });
    }
    migration::adjust_cluster(cell, &mut spec);
    let mut metadata = meta(cell, POSTGRES_CLUSTER);
    if let Some(restore) = &cell.spec.restore {
        spec["bootstrap"] = recovery(restore);
        metadata["annotations"] = json!({ RESTORE_ANNOTATION: restore.id });
    }
    json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": metadata,
        "spec": spec,
    })
}

/// A Cluster recovered from the `Backup` the restore names: to its time, or only as far as
/// the backup's end (the first consistent moment). The roles and their passwords come back
/// with the data; the managed roles set them to the cell's Secrets again.
fn recovery(restore: &cell_model::CellRestore) -> Value {
    let target = match &restore.target_time {
        Some(time) => json!({ "targetTime": time }),
        None => json!({ "targetImmediate": true }),
    };
    json!({ "recovery": {
        "backup": { "name": restore.backup },
        "recoveryTarget": target,
    }})
}

/// One `Database` per service, owned by its role; the data stays if the resource goes.
pub(super) fn postgres_databases(cell: &Cell) -> Vec<Value> {
    Service::ALL
        .map(Service::name)
        .into_iter()
        .map(|service| {
            json!({
                "apiVersion": "postgresql.cnpg.io/v1",
                "kind": "Database",
                "metadata": meta(cell, &database_resource(service)),
                "spec": {
                    "cluster": { "name": POSTGRES_CLUSTER },
                    "name": service,
                    "owner": service,
                    "ensure": "present",
                    "databaseReclaimPolicy": "retain",
                },
            })
        })
        .collect()
}

/// The Cluster's pods.
pub(super) fn postgres_pods() -> Value {
    json!({ "matchLabels": { CNPG_CLUSTER_LABEL: POSTGRES_CLUSTER } })
}

/// What a CNPG instance needs besides its clients: the other instances (replication,
/// status), the CNPG operator (status on the instance manager's port), and the API server
/// (the instance manager watches its Cluster).
pub(super) fn postgres_policies(cell: &Cell, images: &Images) -> Vec<Value> {
    let tcp = |port: u16| json!({ "protocol": "TCP", "port": port });
    vec![policy(
        cell,
        "postgres-instances",
        json!({
            "podSelector": postgres_pods(),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                { "from": [{ "podSelector": postgres_pods() }],
                  "ports": [tcp(POSTGRES_PORT), tcp(CNPG_STATUS_PORT)] },
                { "from": [{ "namespaceSelector": { "matchLabels": {
                    "kubernetes.io/metadata.name": images.cnpg_namespace } } }],
                  "ports": [tcp(CNPG_STATUS_PORT)] },
            ],
            "egress": [
                { "to": [{ "podSelector": postgres_pods() }],
                  "ports": [tcp(POSTGRES_PORT), tcp(CNPG_STATUS_PORT)] },
                { "ports": [tcp(443), tcp(6443)] },
                super::backups::egress(&images.object_store),
            ],
        }),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_a_tier_offers_has_a_size() {
        for tier in [
            cell_model::Tier::Small,
            cell_model::Tier::Standard,
            cell_model::Tier::Large,
        ] {
            for class in tier.template().db_classes {
                assert!(db_class(class).is_some(), "{class}");
            }
        }
    }
}
