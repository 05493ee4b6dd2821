//! The catalog: SQL over the control plane's own database. Tenants, cells (desired spec,
//! observed status, the operation in progress), recorded steps and the router feed's table.
//!
//! **Invariant:** admission (capacity, slug, email domains) happens in one transaction that holds
//! the placement row's lock, so concurrent onboardings never over-commit a placement.

use cell_model::route_feed::RouteEntry;
use cell_model::{CellSpec, CellStatus};
use service_kit::telemetry::trace;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::admin::TenantState;

use crate::op_trace;

mod admission;
mod backups;
mod deleted;
mod migrations;
mod placements;
mod restores;
pub use admission::*;
pub use backups::*;
pub use deleted::*;
pub use migrations::*;
pub use placements::*;
pub use restores::*;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// What the reconciler is doing to a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Provision,
    Suspend,
    Resume,
    Delete,
    /// Moves the cell to another placement (`migrate.rs`).
    Migrate,
    /// Stops a migration before its switch and leaves the cell where it was.
    Abort,
    /// Runs the number of replicas the spec asks for.
    Scale,
    /// Brings the cell back to a backup, in a fresh cell with the same identity.
    Restore,
    /// Undoes a restore before its switch: the cell as it was serves again.
    Unrestore,
}

impl Op {
    /// Every operation.
    pub const ALL: [Op; 9] = [
        Op::Provision,
        Op::Suspend,
        Op::Resume,
        Op::Delete,
        Op::Migrate,
        Op::Abort,
        Op::Scale,
        Op::Restore,
        Op::Unrestore,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Provision => "provision",
            Op::Suspend => "suspend",
            Op::Resume => "resume",
            Op::Delete => "delete",
            Op::Migrate => "migrate",
            Op::Abort => "abort",
            Op::Scale => "scale",
            Op::Restore => "restore",
            Op::Unrestore => "unrestore",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == s)
    }

    /// Whether the cell serves once this operation is done (all but suspend and delete).
    pub fn serves(self) -> bool {
        !matches!(self, Op::Suspend | Op::Delete)
    }

    /// The operation to run after this one, if the desired state (`suspended`) moved on
    /// while it ran.
    pub fn then(self, suspended: bool) -> Option<Op> {
        match (self, suspended) {
            (op, true) if op.serves() => Some(Op::Suspend),
            (Op::Suspend, false) => Some(Op::Resume),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TenantRow {
    pub slug: String,
    pub display_name: String,
    pub admin_email: String,
    pub tier: String,
    pub state: String,
    pub backup_path: Option<String>,
    pub created_at: OffsetDateTime,
    /// The first admin's invite (kubernetes driver; the local driver keeps it in the cell).
    pub admin_invite: Option<sqlx::types::Json<wire_types::admin::AdminInvite>>,
}

impl TenantRow {
    pub fn state(&self) -> TenantState {
        match self.state.as_str() {
            "suspended" => TenantState::Suspended,
            "deleting" => TenantState::Deleting,
            _ => TenantState::Active,
        }
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CellRow {
    pub cell_id: String,
    pub tenant: String,
    pub placement: String,
    /// Where the cell moves to while a migration runs.
    pub target_placement: Option<String>,
    pub spec: Json<CellSpec>,
    pub generation: i64,
    pub status: Json<CellStatus>,
    pub op: Option<String>,
    pub op_id: Option<Uuid>,
    /// The `traceparent` of what queued the current operation (`op_trace`).
    pub op_traceparent: Option<String>,
    pub last_op: Option<String>,
    pub last_op_id: Option<Uuid>,
    pub last_error: Option<String>,
}

impl CellRow {
    pub fn op(&self) -> Option<Op> {
        self.op.as_deref().and_then(Op::parse)
    }
}

const TENANT_COLUMNS: &str =
    "slug, display_name, admin_email, tier, state, backup_path, created_at, admin_invite";
const CELL_COLUMNS: &str = "cell_id, tenant, placement, target_placement, spec, generation, status, op, op_id, op_traceparent, last_op, last_op_id, last_error";

pub async fn tenants(conn: &mut PgConnection) -> sqlx::Result<Vec<TenantRow>> {
    sqlx::query_as(&format!(
        "SELECT {TENANT_COLUMNS} FROM tenants ORDER BY slug"
    ))
    .fetch_all(conn)
    .await
}

pub async fn tenant(conn: &mut PgConnection, slug: &str) -> sqlx::Result<Option<TenantRow>> {
    sqlx::query_as(&format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE slug = $1"
    ))
    .bind(slug)
    .fetch_optional(conn)
    .await
}

/// Locks the tenant's row for a state change.
pub async fn tenant_for_update(
    conn: &mut PgConnection,
    slug: &str,
) -> sqlx::Result<Option<TenantRow>> {
    sqlx::query_as(&format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE slug = $1 FOR UPDATE"
    ))
    .bind(slug)
    .fetch_optional(conn)
    .await
}

pub async fn email_domains(conn: &mut PgConnection, slug: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT domain FROM email_domains WHERE tenant = $1 ORDER BY position")
        .bind(slug)
        .fetch_all(conn)
        .await
}

pub async fn cells(pool: &PgPool) -> sqlx::Result<Vec<CellRow>> {
    sqlx::query_as(&format!("SELECT {CELL_COLUMNS} FROM cells ORDER BY tenant"))
        .fetch_all(pool)
        .await
}

pub async fn cell(conn: &mut PgConnection, cell_id: &str) -> sqlx::Result<Option<CellRow>> {
    sqlx::query_as(&format!(
        "SELECT {CELL_COLUMNS} FROM cells WHERE cell_id = $1"
    ))
    .bind(cell_id)
    .fetch_optional(conn)
    .await
}

pub async fn cell_of_tenant(conn: &mut PgConnection, slug: &str) -> sqlx::Result<Option<CellRow>> {
    sqlx::query_as(&format!(
        "SELECT {CELL_COLUMNS} FROM cells WHERE tenant = $1"
    ))
    .bind(slug)
    .fetch_optional(conn)
    .await
}

/// Locks the tenant's cell for a change of its desired state (serialized with
/// [`finish_op`], which decides the next operation from it).
pub async fn cell_of_tenant_for_update(
    conn: &mut PgConnection,
    slug: &str,
) -> sqlx::Result<Option<CellRow>> {
    sqlx::query_as(&format!(
        "SELECT {CELL_COLUMNS} FROM cells WHERE tenant = $1 FOR UPDATE"
    ))
    .bind(slug)
    .fetch_optional(conn)
    .await
}

/// Locks `slug`'s tenant and its cell, in that order, for an operation on them (a migration,
/// a restore): `None` when there is no such tenant. The caller checks the state it needs.
pub async fn lock_tenant_and_cell(
    conn: &mut PgConnection,
    slug: &str,
) -> sqlx::Result<Option<(TenantRow, CellRow)>> {
    let Some(tenant) = tenant_for_update(&mut *conn, slug).await? else {
        return Ok(None);
    };
    Ok(cell_of_tenant_for_update(conn, slug)
        .await?
        .map(|cell| (tenant, cell)))
}

/// Ids of cells with an operation to run.
pub async fn cells_with_work(pool: &PgPool) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT cell_id FROM cells WHERE op IS NOT NULL ORDER BY created_at")
        .fetch_all(pool)
        .await
}

/// Steps recorded for one operation instance, in completion order, with their durations.
pub async fn steps(
    conn: &mut PgConnection,
    cell_id: &str,
    op_id: Uuid,
) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT step, duration_ms FROM cell_steps WHERE cell_id = $1 AND op_id = $2 ORDER BY finished_at",
    )
    .bind(cell_id)
    .bind(op_id)
    .fetch_all(conn)
    .await
}

pub async fn record_step(
    pool: &PgPool,
    cell_id: &str,
    op_id: Uuid,
    step: &str,
    duration_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO cell_steps (cell_id, op_id, step, duration_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(cell_id)
    .bind(op_id)
    .bind(step)
    .bind(duration_ms)
    .execute(pool)
    .await?;
    sqlx::query("UPDATE cells SET last_error = NULL WHERE cell_id = $1")
        .bind(cell_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Starts operation `op` on a cell (replacing any in progress); returns its instance id.
pub async fn start_op(conn: &mut PgConnection, cell_id: &str, op: Op) -> sqlx::Result<Uuid> {
    let op_id = Uuid::now_v7();
    record_op(conn, cell_id, op, op_id, queued_by(op_id)).await?;
    Ok(op_id)
}

/// What an operation starting now keeps of the request that queues it (the current span): its
/// trace context, which the operation's trace links to. The request's span names the operation
/// in turn (its id is the operation's trace id).
pub(crate) fn queued_by(op_id: Uuid) -> Option<String> {
    trace::attribute(
        &tracing::Span::current(),
        "mrbill.operation_id",
        op_id.to_string(),
    );
    trace::current_traceparent()
}

/// Makes `op_id` the cell's current operation, queued by `queued_by` (a `traceparent`).
async fn record_op(
    conn: &mut PgConnection,
    cell_id: &str,
    op: Op,
    op_id: Uuid,
    queued_by: Option<String>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE cells SET op = $2, op_id = $3, op_traceparent = $4, last_error = NULL,
                updated_at = now() WHERE cell_id = $1",
    )
    .bind(cell_id)
    .bind(op.as_str())
    .bind(op_id)
    .bind(queued_by)
    .execute(conn)
    .await
    .map(drop)
}

/// Ends operation `op` (if `op_id` is still the current one) and sets the cell's status; then
/// starts the next operation if the desired state moved on meanwhile (read under the row's
/// lock, so a concurrent state change either sees this operation finished or is seen here).
/// Returns whether it was current.
pub async fn finish_op(
    pool: &PgPool,
    cell_id: &str,
    op: Op,
    op_id: Uuid,
    status: &CellStatus,
) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let current: Option<(Option<Uuid>, Option<bool>)> = sqlx::query_as(
        "SELECT op_id, (spec->>'suspended')::boolean FROM cells WHERE cell_id = $1 FOR UPDATE",
    )
    .bind(cell_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((Some(current), suspended)) = current else {
        return Ok(false);
    };
    if current != op_id {
        return Ok(false);
    }
    let next = op.then(suspended.unwrap_or(false));
    sqlx::query(
        "UPDATE cells SET last_op = op, last_op_id = op_id, op = NULL, op_id = NULL,
                op_traceparent = NULL, status = $2, updated_at = now() WHERE cell_id = $1",
    )
    .bind(cell_id)
    .bind(Json(status))
    .execute(&mut *tx)
    .await?;
    if let Some(next) = next {
        // Queued by the operation that just ended.
        let queued_by = op_trace::traceparent(op_id);
        record_op(&mut tx, cell_id, next, Uuid::now_v7(), queued_by).await?;
    }
    tx.commit().await?;
    Ok(true)
}

pub async fn set_error(pool: &PgPool, cell_id: &str, error: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE cells SET last_error = $2 WHERE cell_id = $1")
        .bind(cell_id)
        .bind(error)
        .execute(pool)
        .await
        .map(drop)
}

pub async fn set_status(
    conn: impl sqlx::PgExecutor<'_>,
    cell_id: &str,
    status: &CellStatus,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE cells SET status = $2, updated_at = now() WHERE cell_id = $1")
        .bind(cell_id)
        .bind(Json(status))
        .execute(conn)
        .await
        .map(drop)
}

/// Sets the tenant's state and the cell's `suspended` flag (a spec change: generation + 1).
pub async fn set_tenant_state(
    conn: &mut PgConnection,
    slug: &str,
    state: TenantState,
    backup_path: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE tenants SET state = $2, backup_path = COALESCE($3, backup_path), updated_at = now()
         WHERE slug = $1",
    )
    .bind(slug)
    .bind(state.as_str())
    .bind(backup_path)
    .execute(&mut *conn)
    .await?;
    if state != TenantState::Deleting {
        sqlx::query(
            "UPDATE cells SET spec = jsonb_set(spec, '{suspended}', to_jsonb($2::boolean)),
                    generation = generation + 1, updated_at = now()
             WHERE tenant = $1 AND (spec->>'suspended')::boolean IS DISTINCT FROM $2",
        )
        .bind(slug)
        .bind(state == TenantState::Suspended)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Replaces a cell's desired spec (a new generation).
pub async fn set_spec(conn: &mut PgConnection, cell_id: &str, spec: &CellSpec) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE cells SET spec = $2, generation = generation + 1, updated_at = now()
         WHERE cell_id = $1",
    )
    .bind(cell_id)
    .bind(Json(spec))
    .execute(conn)
    .await?;
    Ok(())
}

/// Keeps the first admin's invite (clusters: the token whose hash is in the Cell's spec).
pub async fn set_admin_invite(
    conn: &mut PgConnection,
    slug: &str,
    invite: &wire_types::admin::AdminInvite,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE tenants SET admin_invite = $2 WHERE slug = $1")
        .bind(slug)
        .bind(sqlx::types::Json(invite))
        .execute(conn)
        .await?;
    Ok(())
}

/// Forgets the first admin's invite once it has expired: its token is worth nothing then, and
/// a secret nobody needs is one less to leak.
pub async fn drop_expired_admin_invite(conn: &mut PgConnection, slug: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE tenants SET admin_invite = NULL
         WHERE slug = $1 AND (admin_invite ->> 'expires_at')::timestamptz <= now()",
    )
    .bind(slug)
    .execute(conn)
    .await?;
    Ok(())
}

/// Bumps the feed revision (serializing route writers on the `meta` row).
pub async fn bump_revision(conn: &mut PgConnection) -> sqlx::Result<u64> {
    let rev: i64 = sqlx::query_scalar(
        "UPDATE meta SET route_revision = route_revision + 1 RETURNING route_revision",
    )
    .fetch_one(conn)
    .await?;
    Ok(rev as u64)
}

pub async fn put_route(
    conn: &mut PgConnection,
    entry: &RouteEntry,
    revision: u64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO routes (tenant, entry, revision) VALUES ($1, $2, $3)
         ON CONFLICT (tenant) DO UPDATE SET entry = EXCLUDED.entry, revision = EXCLUDED.revision",
    )
    .bind(&entry.tenant)
    .bind(Json(entry))
    .bind(revision as i64)
    .execute(conn)
    .await
    .map(drop)
}

/// Deletes a route; whether there was one.
pub async fn delete_route(conn: &mut PgConnection, tenant: &str) -> sqlx::Result<bool> {
    Ok(sqlx::query("DELETE FROM routes WHERE tenant = $1")
        .bind(tenant)
        .execute(conn)
        .await?
        .rows_affected()
        > 0)
}

pub async fn route(conn: &mut PgConnection, tenant: &str) -> sqlx::Result<Option<RouteEntry>> {
    let row: Option<Json<RouteEntry>> =
        sqlx::query_scalar("SELECT entry FROM routes WHERE tenant = $1")
            .bind(tenant)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|j| j.0))
}

/// The whole table at the current revision (read in one snapshot).
pub async fn route_snapshot(pool: &PgPool) -> sqlx::Result<(u64, Vec<RouteEntry>)> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    let rev: i64 = sqlx::query_scalar("SELECT route_revision FROM meta")
        .fetch_one(&mut *tx)
        .await?;
    let routes: Vec<Json<RouteEntry>> =
        sqlx::query_scalar("SELECT entry FROM routes ORDER BY tenant")
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok((rev as u64, routes.into_iter().map(|j| j.0).collect()))
}
