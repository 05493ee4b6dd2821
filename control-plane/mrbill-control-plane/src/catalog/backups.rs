//! Backups of cells and restores from them: what was asked for, what is kept, where.
//!
//! **Invariant:** a backup is `done` only once its files are complete (the driver writes its
//! manifest last), and a backup a running restore brings back is never pruned.

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{CellRow, Op, start_op};

/// Why a backup is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupKind {
    /// By the tier's schedule (or `MRBILL_BACKUP_EVERY_SECS`).
    Scheduled,
    /// `mrbill tenant backup`.
    Manual,
    /// Taken by the tenant's delete (recorded by `forget_tenant`).
    Final,
}

impl BackupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Scheduled => "scheduled",
            BackupKind::Manual => "manual",
            BackupKind::Final => "final",
        }
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct BackupRow {
    pub id: Uuid,
    pub tenant: String,
    pub cell_id: String,
    pub placement: String,
    pub kind: String,
    pub state: String,
    pub requested_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub taken_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    pub bytes: Option<i64>,
    pub path: Option<String>,
    pub error: Option<String>,
}

impl BackupRow {
    pub fn to_wire(&self) -> wire_types::admin::Backup {
        let duration_ms = match (self.started_at, self.finished_at) {
            (Some(start), Some(end)) => Some((end - start).whole_milliseconds().max(0) as u64),
            _ => None,
        };
        wire_types::admin::Backup {
            id: self.id.to_string(),
            tenant: self.tenant.clone(),
            cell_id: self.cell_id.clone(),
            placement: self.placement.clone(),
            kind: self.kind.clone(),
            state: self.state.clone(),
            requested_at: self.requested_at,
            taken_at: self.taken_at,
            duration_ms,
            bytes: self.bytes.map(|b| b.max(0) as u64),
            path: self.path.clone(),
            error: self.error.clone(),
        }
    }
}

const COLUMNS: &str = "id, tenant, cell_id, placement, kind, state, requested_at, started_at, \
                       taken_at, finished_at, bytes, path, error";

/// Queues a backup of `cell`.
pub async fn request_backup(
    conn: &mut PgConnection,
    cell: &CellRow,
    kind: BackupKind,
) -> sqlx::Result<BackupRow> {
    sqlx::query_as(&format!(
        "INSERT INTO backups (id, tenant, cell_id, placement, kind, state)
         VALUES ($1, $2, $3, $4, $5, 'pending') RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(&cell.tenant)
    .bind(&cell.cell_id)
    .bind(&cell.placement)
    .bind(kind.as_str())
    .fetch_one(conn)
    .await
}

/// The tenant's backups, newest first.
pub async fn backups_of_tenant(
    conn: &mut PgConnection,
    slug: &str,
) -> sqlx::Result<Vec<BackupRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM backups WHERE tenant = $1 ORDER BY requested_at DESC"
    ))
    .bind(slug)
    .fetch_all(conn)
    .await
}

pub async fn backup(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<BackupRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM backups WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The newest completed backup of the tenant's cell `cell_id` taken at or before `at` (any
/// time: `None`). A slug used again by a new tenant does not reach the old one's backups.
pub async fn newest_done(
    conn: &mut PgConnection,
    slug: &str,
    cell_id: &str,
    at: Option<OffsetDateTime>,
) -> sqlx::Result<Option<BackupRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM backups
         WHERE tenant = $1 AND cell_id = $2 AND state = 'done'
           AND ($3::timestamptz IS NULL OR taken_at <= $3)
         ORDER BY taken_at DESC LIMIT 1"
    ))
    .bind(slug)
    .bind(cell_id)
    .bind(at)
    .fetch_optional(conn)
    .await
}

/// Per tenant, when its schedule last started: its newest backup asked for (any outcome: a
/// failing cell is not retried faster than its schedule), or its cell's creation.
pub async fn schedule_baselines(pool: &PgPool) -> sqlx::Result<Vec<(String, OffsetDateTime)>> {
    sqlx::query_as(
        "SELECT c.tenant, GREATEST(c.created_at, COALESCE(max(b.requested_at), c.created_at))
         FROM cells c LEFT JOIN backups b ON b.tenant = c.tenant
         GROUP BY c.tenant, c.created_at",
    )
    .fetch_all(pool)
    .await
}

/// Takes the oldest pending backup (`running` from here).
pub async fn claim_backup(pool: &PgPool) -> sqlx::Result<Option<BackupRow>> {
    sqlx::query_as(&format!(
        "UPDATE backups SET state = 'running', started_at = now()
         WHERE id = (SELECT id FROM backups WHERE state = 'pending'
                     ORDER BY requested_at LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING {COLUMNS}"
    ))
    .fetch_optional(pool)
    .await
}

/// Backups a stopped control plane left running go back to the queue (taken again from the
/// start: the driver removes what a half-written one left).
pub async fn requeue_running(pool: &PgPool) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE backups SET state = 'pending', started_at = NULL WHERE state = 'running'",
    )
    .execute(pool)
    .await?
    .rows_affected())
}

pub async fn finish_backup(
    pool: &PgPool,
    id: Uuid,
    taken: &crate::driver::Taken,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE backups SET state = 'done', finished_at = now(), path = $2, taken_at = $3,
                bytes = $4, error = NULL
         WHERE id = $1",
    )
    .bind(id)
    .bind(&taken.location)
    .bind(taken.taken_at)
    .bind(taken.bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)))
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn fail_backup(pool: &PgPool, id: Uuid, error: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE backups SET state = 'failed', finished_at = now(), error = $2, path = NULL
         WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Backups past their tenant's retention: completed ones older than `retention_days` of the
/// cell's tier except the newest `keep` of the tenant, and failed ones older than a day —
/// never one a running restore brings back. Tenants without a cell keep theirs.
pub async fn expired(pool: &PgPool, keep: i64) -> sqlx::Result<Vec<BackupRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM (
            SELECT b.*, row_number() OVER (PARTITION BY b.tenant ORDER BY b.taken_at DESC) AS newest,
                   (c.spec->>'tier') AS tier
            FROM backups b JOIN cells c ON c.tenant = b.tenant
            WHERE b.state IN ('done', 'failed')) b
         WHERE NOT EXISTS (SELECT 1 FROM restores r WHERE r.backup_id = b.id AND r.finished_at IS NULL)
           AND ((b.state = 'failed' AND b.requested_at < now() - interval '1 day')
             OR (b.state = 'done' AND b.newest > $1
                 AND b.taken_at < now() - make_interval(days => CASE b.tier
                     WHEN 'large' THEN $2 WHEN 'standard' THEN $3 ELSE $4 END)))"
    ))
    .bind(keep)
    .bind(retention(cell_model::Tier::Large))
    .bind(retention(cell_model::Tier::Standard))
    .bind(retention(cell_model::Tier::Small))
    .fetch_all(pool)
    .await
}

fn retention(tier: cell_model::Tier) -> i32 {
    tier.template().backup_retention_days as i32
}

pub async fn forget_backup(pool: &PgPool, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM backups WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Starts the restore operation of `cell` from `backup` (replayed to `to_time` where the driver
/// replays archives; `readmitted`: the cell is a deleted tenant's, admitted again), recording
/// it in the cell's spec (`restore`: the driver and, on Kubernetes, the operator act on it;
/// kept once done). Returns the operation's id, which names the restore.
pub async fn begin_restore(
    conn: &mut PgConnection,
    cell: &CellRow,
    backup: &BackupRow,
    to_time: Option<OffsetDateTime>,
    readmitted: bool,
) -> sqlx::Result<Uuid> {
    use time::format_description::well_known::Rfc3339;
    let id = start_op(&mut *conn, &cell.cell_id, Op::Restore).await?;
    sqlx::query(
        "INSERT INTO restores (id, cell_id, tenant, backup_id, placement, to_time, readmitted, \
                               previous) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(&cell.cell_id)
    .bind(&cell.tenant)
    .bind(backup.id)
    .bind(&cell.placement)
    .bind(to_time)
    .bind(readmitted)
    .bind(cell.spec.0.restore.as_ref().map(sqlx::types::Json))
    .execute(&mut *conn)
    .await?;
    let restore = cell_model::CellRestore {
        id: id.to_string(),
        backup: backup.path.clone().unwrap_or_default(),
        target_time: to_time.and_then(|t| t.format(&Rfc3339).ok()),
        deleted: readmitted,
        abort: false,
    };
    sqlx::query("UPDATE cells SET spec = jsonb_set(spec, '{restore}', $2) WHERE cell_id = $1")
        .bind(&cell.cell_id)
        .bind(sqlx::types::Json(restore))
        .execute(conn)
        .await?;
    Ok(id)
}

/// The backup restore `id` brings back.
pub async fn backup_of_restore(
    conn: &mut PgConnection,
    id: Uuid,
) -> sqlx::Result<Option<BackupRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM backups WHERE id = (SELECT backup_id FROM restores WHERE id = $1)"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn finish_restore(pool: &PgPool, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE restores SET finished_at = COALESCE(finished_at, now()) WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}
