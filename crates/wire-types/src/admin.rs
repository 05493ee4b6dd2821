//! The control plane's admin API (`mrbill-control-plane`, used by the `mrbill` CLI).
//!
//! Tenants are what Mr. Bill sells; each has exactly one cell. Creating, suspending, resuming and
//! deleting a tenant answer `202 Accepted` at once: the reconciler does the work in recorded
//! steps, visible in [`Operation`] while it runs.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// `POST /v1/tenants`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// DNS label, 3–40 characters: `[a-z0-9]([a-z0-9-]*[a-z0-9])`.
    pub slug: String,
    pub display_name: String,
    /// The tenant's first admin; gets a one-time invite during provisioning.
    pub admin_email: String,
    /// Domains whose addresses resolve to this tenant; unique across tenants, no public webmail.
    #[serde(default)]
    pub email_domains: Vec<String>,
    /// `small` (default), `standard` or `large`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Where the cell runs; the control plane's default placement when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    /// The region the tenant's data must stay in: the cell goes to an uncordoned placement of
    /// that region with room for it (the one with the most free units). Not with `placement`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// Lifecycle of a tenant as Mr. Bill sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantState {
    Active,
    Suspended,
    Deleting,
}

impl TenantState {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantState::Active => "active",
            TenantState::Suspended => "suspended",
            TenantState::Deleting => "deleting",
        }
    }
}

/// A tenant and a summary of its cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub slug: String,
    pub display_name: String,
    pub admin_email: String,
    pub email_domains: Vec<String>,
    pub tier: String,
    pub state: TenantState,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub cell: Cell,
    /// The one-time invite for the first admin, once provisioning created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_invite: Option<AdminInvite>,
    /// Where the backup taken before deletion is (or will be) written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_path: Option<String>,
}

/// The bootstrap invite printed by `poc-service bootstrap-admin`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminInvite {
    pub email: String,
    pub invite_token: String,
    pub expires_at: String,
}

/// `GET /v1/tenants`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantList {
    pub tenants: Vec<Tenant>,
}

/// A cell: desired spec, observed status, the operation in progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub cell_id: String,
    pub tenant: String,
    pub placement: String,
    /// Bumped on every spec change.
    pub generation: i64,
    pub spec: cell_model::CellSpec,
    pub status: cell_model::CellStatus,
    /// The operation the reconciler is running, or the last one it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// Processes and ports of a local cell (local driver only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<serde_json::Value>,
}

/// `GET /v1/cells`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellList {
    pub cells: Vec<Cell>,
}

/// One reconciler operation (`provision`, `suspend`, `resume`, `delete`) and its steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub name: String,
    /// Every step of the operation in order; `done` ones carry their duration.
    pub steps: Vec<Step>,
    pub finished: bool,
    /// The last error, while the reconciler retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One recorded, idempotent step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// `GET /v1/tiers`: the templates tenants choose from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TierList {
    pub tiers: Vec<serde_json::Value>,
    /// Capacity units per placement and how many are used.
    pub placements: Vec<Placement>,
}

/// A placement: where cells run, in which region, and its capacity in units (small = 1,
/// standard = 2, large = 4). A cordoned placement keeps its cells and admits no new ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub name: String,
    #[serde(default)]
    pub region: String,
    pub capacity: u32,
    pub used: u32,
    #[serde(default)]
    pub cordoned: bool,
    /// Cells placed there.
    #[serde(default)]
    pub cells: u32,
}

/// `GET /v1/placements`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementList {
    pub placements: Vec<Placement>,
}

/// `POST /v1/placements`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePlacement {
    /// A DNS label (3–40 of a-z, 0-9, '-').
    pub name: String,
    /// A region label such as `sa-east-1` (1–32 of a-z, 0-9, '-').
    pub region: String,
    /// Capacity in units, 0–10000.
    pub capacity: u32,
}

/// `POST /v1/tenants/{slug}/migrate`: move the tenant's cell to another placement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateTenant {
    /// The placement to move to.
    pub to: String,
    /// Only check that the migration can start, and show its plan.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /v1/tenants/{slug}/scale`: replicas per service and the database's class and
/// storage, each within the tier's bounds (`GET /v1/tiers`); whatever is left out stays.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleTenant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poc: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dojo: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<u32>,
    /// One of the tier's database classes (`db_classes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_class: Option<String>,
    /// GiB, from the current size (storage only grows) up to the tier's `db_storage_max_gib`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_storage_gib: Option<u32>,
}

/// What a migration request will do (`dry_run`) or has started (`id`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationPlan {
    pub tenant: String,
    pub cell_id: String,
    pub from: String,
    pub to: String,
    /// Capacity units the cell holds on the target (and keeps on the source until the switch).
    pub units: u32,
    pub steps: Vec<String>,
    pub dry_run: bool,
    /// The migration's id, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// One migration of a tenant's cell, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    pub id: String,
    pub cell_id: String,
    pub from: String,
    pub to: String,
    /// `running`, `switched` (the route points at the target), `done`, `aborting`, `aborted`.
    pub state: String,
    /// Every step in order; done ones carry their duration.
    pub steps: Vec<Step>,
    /// How long the tenant's requests were held (freeze to switch), once switched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_ms: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub finished_at: Option<OffsetDateTime>,
}

/// `GET /v1/tenants/{slug}/migrations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationList {
    pub migrations: Vec<Migration>,
}

/// One backup of a tenant's cell: every service's database (each a snapshot exported at the
/// same moment, with per-table checksums of it), the cell's objects and its identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    pub id: String,
    pub tenant: String,
    pub cell_id: String,
    pub placement: String,
    /// `scheduled` (by the tier's schedule), `manual` (`mrbill tenant backup`), `final` (taken
    /// by the tenant's delete).
    pub kind: String,
    /// `pending` → `running` → `done` | `failed`.
    pub state: String,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    /// The moment the backup's databases show; what `--to-time` compares.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub taken_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Where it is kept (a directory of the local platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/tenants/{slug}/backups`: newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupList {
    pub backups: Vec<Backup>,
}

/// `POST /v1/tenants/{slug}/restore`: bring the cell back to a backup, in a fresh cell with
/// the same identity. Without either field: the newest completed backup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreTenant {
    /// A backup's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// RFC 3339: the moment to bring back (replayed to exactly it where the driver replays an
    /// archive; otherwise the newest completed backup taken at or before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_time: Option<String>,
}

/// A restore that has started: the backup it brings back and the steps it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePlan {
    pub tenant: String,
    pub cell_id: String,
    pub backup: Backup,
    pub steps: Vec<String>,
}

crate::wire!(
    MigrationPlan,
    Migration,
    MigrationList,
    Tenant,
    TenantList,
    Cell,
    CellList,
    TierList,
    Placement,
    PlacementList,
    Backup,
    BackupList,
    RestorePlan
);
