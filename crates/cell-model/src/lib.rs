//! The cell model: what a tenant's cell should be (`CellSpec`) and what it is (`CellStatus`).
//!
//! One model is shared by the control plane's catalog, both drivers, the operator's `Cell`
//! custom resource and the CLI. The kube `CustomResource` derive sits behind the `kube` feature so
//! services, the CLI and the mobile core never build kube.
//!
//! **Invariant:** a cell's identity (`cell_id`, JWT `kid`, token `aud`) moves with the tenant;
//! `placement` is a separate field, so migrating a cell changes placement, never identity.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod contract;
pub mod identity;
pub mod local;
pub mod route_feed;
mod tier;

pub use tier::{ReplicaBounds, Tier, TierTemplate};

/// Pattern every tenant slug matches: a DNS label (RFC 1123), 3–40 characters, so it can be a
/// subdomain (`<slug>.<domain>`), a Kubernetes namespace suffix and a Postgres identifier part.
pub const SLUG_PATTERN: &str = "^[a-z0-9]([a-z0-9-]{1,38}[a-z0-9])$";

/// Desired state of one tenant cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(
    feature = "kube",
    derive(kube::CustomResource),
    kube(
        group = "mrbill.dev",
        version = "v1alpha1",
        kind = "Cell",
        plural = "cells",
        shortname = "cell",
        status = "CellStatus",
        derive = "PartialEq",
        printcolumn = r#"{"name":"Tenant","type":"string","jsonPath":".spec.tenant"}"#,
        printcolumn = r#"{"name":"Tier","type":"string","jsonPath":".spec.tier"}"#,
        printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CellSpec {
    /// Stable identity of the cell (also the JWT audience). Never changes when the cell migrates.
    #[schemars(regex(pattern = r"^c-[a-z0-9-]{3,60}$"))]
    pub cell_id: String,
    /// The tenant this cell serves (a DNS label).
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9-]{1,38}[a-z0-9])$"))]
    pub tenant: String,
    /// Size template supplying defaults and bounds.
    pub tier: Tier,
    /// Version of the cell's services (rolled out in canary + waves).
    pub version: String,
    /// Per-service replica overrides, within the tier's bounds. `None` = tier default.
    #[serde(default)]
    pub replicas: ServiceReplicas,
    /// Where the cell's Postgres runs and how big it is.
    pub database: DatabaseSpec,
    /// Which search engine backs the PoC index.
    pub search: SearchEngine,
    /// Where the cell runs (a local machine name or a cluster/region). Changes on migration.
    pub placement: String,
    /// A suspended cell keeps its data but runs no services and receives no traffic.
    #[serde(default)]
    pub suspended: bool,
    /// The tenant's email domains: open registration in the cell admits only addresses there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email_domains: Vec<String>,
    /// The tenant's first admin: poc-service creates this one-time invite at start (both
    /// drivers). `None` for cells made before the control plane made every invite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<AdminBootstrap>,
    /// The move between placements this cell takes part in, as the control plane drives it
    /// on Kubernetes (absent otherwise; never recorded in the catalog's spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<CellMigration>,
    /// The backup the cell's database was last brought back from (recorded in the catalog's
    /// spec, and kept once done: on Kubernetes it names where the cell archives now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<CellRestore>,
}

/// A restore of the cell's database (`mrbill tenant restore`). On Kubernetes the operator,
/// once no service pod is left, replaces the database: an in-cluster cell's CloudNativePG
/// `Cluster` with one recovered from the `Backup` named here (archiving apart from the one
/// before it), an `rds` cell's instance with one RDS restored to the restore point named here
/// (or `target_time`); it reports [`RESTORED`], and the services run again when the control
/// plane lifts `suspended`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CellRestore {
    /// The restore's id (the catalog's operation id).
    pub id: String,
    /// Where the backup is: a CloudNativePG `Backup` in the cell's namespace (in-cluster), a
    /// restore point `rds-point-in-time:<RFC 3339 time>` (rds), a directory (local).
    pub backup: String,
    /// Replay the archived WAL up to this time (RFC 3339); absent: stop at the end of the
    /// backup (as soon as the database is consistent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_time: Option<String>,
    /// The tenant was deleted and comes back: the cell's identity, artifacts and archive are
    /// what its deletion kept (the operator's record of the deleted cell), not a namespace's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// The restore is being undone: the operator replaces nothing more for it and reports
    /// [`RESTORED`] `Aborted` (the database is still the one before it: nothing to undo) or
    /// `Replaced` (it was replaced: undoing means restoring the last backup the restore's fence
    /// took, `fence-<restore>`), or `CannotUndo`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort: bool,
}

/// The CloudNativePG `Backup` that takes a base backup of cell `cell_id`'s in-cluster Postgres
/// (Cluster `postgres` in namespace `cell-<tenant>`) into its archive: the control plane asks
/// for one per backup it takes, the operator for a deleted cell's last one. Its status names
/// the archive folder and backup id a later recovery starts from.
pub fn base_backup(tenant: &str, cell_id: &str, name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Backup",
        "metadata": {
            "name": name,
            "namespace": format!("cell-{tenant}"),
            "labels": { "mrbill.dev/tenant": tenant, "mrbill.dev/cell": cell_id },
        },
        "spec": {
            "cluster": { "name": "postgres" },
            "method": "barmanObjectStore",
        },
    })
}

/// The condition a restored cell reports (for the spec's current generation): its database
/// is the one recovered for `spec.restore.id`, and it accepts connections.
pub const RESTORED: &str = "Restored";

/// A cell's part in a move between placements (Kubernetes): the source publishes its
/// databases (CloudNativePG `Publication`s) and, once fenced, runs no services; the target
/// copies the schema, subscribes, and is brought through `phase` step by step, its services
/// stopped until `start`. Both cells have the same identity (the control plane copies it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CellMigration {
    pub role: MigrationRole,
    /// The migration's id (the catalog's), for events and messages.
    pub id: String,
    /// Source: its services are stopped (nothing writes to it any more).
    #[serde(default)]
    pub fenced: bool,
    /// Target: the source's Postgres as this cluster reaches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_host: Option<String>,
    /// Target: how far the operator takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MigrationPhase>,
}

/// The conditions a move's cells report (the operator sets them, the control plane waits for
/// them, each for the spec's current generation).
pub mod move_conditions {
    /// Source: every service database is published.
    pub const PUBLISHED: &str = "Published";
    /// Source: no service pod is left.
    pub const FENCED: &str = "Fenced";
    /// Target: the source's schema is in every service database.
    pub const SCHEMA_COPIED: &str = "SchemaCopied";
    /// Target: every subscription exists.
    pub const REPLICATING: &str = "Replicating";
    /// Target: every table has had its initial copy.
    pub const CAUGHT_UP: &str = "CaughtUp";
    /// Target: every row of the fenced source is here; sequences copied.
    pub const IN_SYNC: &str = "InSync";
    /// Target: compared table by table once more.
    pub const VERIFIED: &str = "Verified";
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationRole {
    Source,
    Target,
}

/// A target's progress, each implying the ones before it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationPhase {
    /// Identity in place, Postgres and databases up, no services (condition `DatabaseReady`).
    Provision,
    /// The source's schema copied, subscriptions streaming (`Replicating`, then `CaughtUp`).
    Copy,
    /// The fenced source's rows all here, sequences copied (`InSync`).
    Sync,
    /// Compared once more, table by table (`Verified`).
    Verify,
    /// Subscriptions gone, services running (`Ready`).
    Start,
}

/// The one-time invite of a tenant's first admin, as the cell needs it: the email it is bound
/// to and the SHA-256 of the token — the token itself stays with the control plane, so the
/// `Cell` resource (readable by cluster operators) holds nothing that grants access.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminBootstrap {
    pub admin_email: String,
    /// Lower-case hex SHA-256 of the invite token.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub invite_token_sha256: String,
    /// RFC 3339; the invite is refused after it.
    pub expires_at: String,
}

/// Replica overrides per service; each is bounded by the tier (see [`TierTemplate`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceReplicas {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 20))]
    pub poc: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 20))]
    pub dojo: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 20))]
    pub media: Option<u32>,
}

impl ServiceReplicas {
    /// The override for `service`, if any (fields, not a map: the CRD schema names each).
    pub fn get(&self, service: contract::Service) -> Option<u32> {
        match service {
            contract::Service::Poc => self.poc,
            contract::Service::Dojo => self.dojo,
            contract::Service::Media => self.media,
        }
    }
}

/// The cell's database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseSpec {
    pub engine: DatabaseEngine,
    /// Instance class, named as RDS names them (`db.m7g.large`); an in-cluster instance gets
    /// the same vCPUs and memory. One of the tier's classes; tier default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Allocated storage in GiB.
    #[schemars(range(min = 1, max = 16384))]
    pub storage_gib: u32,
    /// A standby in a second availability zone (RDS Multi-AZ; in-cluster: a second CNPG
    /// instance spread by zone).
    #[serde(default)]
    pub multi_az: bool,
}

/// Where a cell's Postgres runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DatabaseEngine {
    /// A dedicated cluster started by the local driver (`initdb` + `pg_ctl`).
    Local,
    /// A CloudNativePG `Cluster` in the cell's namespace.
    InCluster,
    /// A Multi-AZ RDS instance created by the operator.
    Rds,
}

/// Search engine behind the PoC service's `SearchIndex` port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SearchEngine {
    /// tantivy, in the PoC service's process.
    Embedded,
    /// A Meilisearch server per cell.
    Meilisearch,
}

/// Observed state of a cell.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CellStatus {
    #[serde(default)]
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub endpoints: Endpoints,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// An `rds` cell's last restore point the control plane asked for (annotation
    /// `mrbill.dev/restore-point`), once RDS can restore the instance to it (its latest
    /// restorable time reached it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_point: Option<String>,
    /// An in-cluster cell's newest completed base backup (a CloudNativePG `Backup`) whose
    /// artifacts are kept with it: the media bucket copied (never deleting) into the backups'
    /// bucket, so a restore brings back an artifact deleted after the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects_backed_up: Option<String>,
}

/// Set by the control plane on an `rds` cell's `Cell` to take a backup: the moment (RFC 3339,
/// whole seconds) the operator confirms in `status.restorePoint` once RDS's automated backups
/// (snapshots + transaction logs, kept the tier's days) can restore the instance to it.
pub const RESTORE_POINT_ANNOTATION: &str = "mrbill.dev/restore-point";

/// A restore id's last 12 characters (UUIDs: the random part), lower-case alphanumerics: what
/// names its archive folder (`postgres-<short>`) and its fence's last backup.
pub fn short_id(id: &str) -> String {
    let clean: Vec<char> = id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    clean[clean.len().saturating_sub(12)..].iter().collect()
}

/// The last base backup restore `id`'s fence takes (in-cluster): the database as it was
/// before the restore, which undoing it restores.
pub fn fence_backup(id: &str) -> String {
    format!("fence-{}", short_id(id))
}

/// Set by the control plane on a `Cell` before deleting it: the name of the last base backup
/// the operator's finalizer takes (absent: `final-<deletion time>`), so the catalog records
/// the backup a restore of the deleted tenant starts from.
pub const FINAL_BACKUP_ANNOTATION: &str = "mrbill.dev/final-backup";

/// Where an `rds` cell's backup is: a moment in its instance's automated backups.
pub fn restore_point_location(moment: &str) -> String {
    format!("{RESTORE_POINT_PREFIX}{moment}")
}

/// The moment a backup's location names, when it is an `rds` cell's restore point.
pub fn restore_point_of(location: &str) -> Option<&str> {
    location.strip_prefix(RESTORE_POINT_PREFIX)
}

const RESTORE_POINT_PREFIX: &str = "rds-point-in-time:";

/// Lifecycle phase of a cell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    #[default]
    Pending,
    Provisioning,
    Ready,
    Migrating,
    Suspended,
    Degraded,
    Deleting,
}

/// A Kubernetes-style condition (`type`, `status`, `reason`, `message`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// e.g. `DatabaseReady`, `SearchReady`, `ServicesReady`, `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// Machine-readable CamelCase reason.
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// RFC 3339 timestamp of the last status change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// Tri-state condition status, as in Kubernetes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// Where a cell can be reached.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// The tenant's public endpoint, always through the router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<String>,
    /// Service name → base URL inside the cell (for the router only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, String>,
    /// Service name → the URL of each ready pod, for services whose requests are pinned to one
    /// pod (dojo: a room lives in one process).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replicas: BTreeMap<String, Vec<String>>,
}

impl CellStatus {
    /// Sets (or replaces) a condition, keeping `lastTransitionTime` when the status is unchanged.
    pub fn set_condition(&mut self, mut condition: Condition) {
        match self
            .conditions
            .iter_mut()
            .find(|c| c.type_ == condition.type_)
        {
            Some(existing) => {
                if existing.status == condition.status {
                    condition.last_transition_time = existing.last_transition_time.take();
                }
                *existing = condition;
            }
            None => self.conditions.push(condition),
        }
    }

    /// The condition of the given type, if any.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// Whether `s` is a valid tenant slug (see [`SLUG_PATTERN`]).
pub fn is_valid_slug(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=40).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_rules_match_the_dns_label_pattern() {
        for ok in ["acme", "a-1", "globex-corp", "abc"] {
            assert!(is_valid_slug(ok), "{ok}");
        }
        for bad in [
            "",
            "ab",
            "-acme",
            "acme-",
            "Acme",
            "ac_me",
            "a.b",
            &"a".repeat(41),
        ] {
            assert!(!is_valid_slug(bad), "{bad}");
        }
    }

    #[test]
    fn spec_rejects_unknown_fields() {
        let json = serde_json::json!({
            "cellId": "c-acme-1", "tenant": "acme", "tier": "small", "version": "0.1.0",
            "database": {"engine": "local", "storageGib": 1}, "search": "embedded",
            "placement": "local", "surprise": true
        });
        let err = serde_json::from_value::<CellSpec>(json).expect_err("unknown field accepted");
        assert!(err.to_string().contains("surprise"));
    }

    #[test]
    fn set_condition_keeps_transition_time_when_status_is_unchanged() {
        let mut status = CellStatus::default();
        let cond = |s, t: &str| Condition {
            type_: "Ready".into(),
            status: s,
            reason: "R".into(),
            message: String::new(),
            last_transition_time: Some(t.into()),
        };
        status.set_condition(cond(ConditionStatus::False, "t1"));
        status.set_condition(cond(ConditionStatus::False, "t2"));
        assert_eq!(status.conditions.len(), 1);
        assert_eq!(
            status.conditions[0].last_transition_time.as_deref(),
            Some("t1")
        );
        status.set_condition(cond(ConditionStatus::True, "t3"));
        assert_eq!(
            status.conditions[0].last_transition_time.as_deref(),
            Some("t3")
        );
    }
}
