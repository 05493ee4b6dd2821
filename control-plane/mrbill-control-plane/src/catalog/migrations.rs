//! Migrations between placements: the request (admission to the target placement), the
//! history row each one keeps, and the source cells retired after their grace period.
//!
//! **Invariant:** while a migration runs the cell holds units on both placements
//! (`cells.target_placement`); the switch moves `cells.placement` to the target in the same
//! transaction that ends the freeze's clock, and the source becomes a `retired_cells` row.

use cell_model::CellSpec;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::admin::TenantState;

use super::{CellRow, Op, start_op};

/// Where a migration is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrationState {
    Running,
    /// The route points at the target: the migration can only go forward.
    Switched,
    Done,
    Aborting,
    Aborted,
}

impl MigrationState {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationState::Running => "running",
            MigrationState::Switched => "switched",
            MigrationState::Done => "done",
            MigrationState::Aborting => "aborting",
            MigrationState::Aborted => "aborted",
        }
    }

    fn parse(s: &str) -> MigrationState {
        match s {
            "switched" => MigrationState::Switched,
            "done" => MigrationState::Done,
            "aborting" => MigrationState::Aborting,
            "aborted" => MigrationState::Aborted,
            _ => MigrationState::Running,
        }
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MigrationRow {
    pub id: Uuid,
    pub cell_id: String,
    pub tenant: String,
    pub source: String,
    pub target: String,
    pub state: String,
    pub frozen_at: Option<OffsetDateTime>,
    pub freeze_ms: Option<i64>,
    pub started_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

impl MigrationRow {
    pub fn state(&self) -> MigrationState {
        MigrationState::parse(&self.state)
    }
}

/// Why a migration (or its abort) was refused; nothing was started.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("no placement `{0}`")]
    UnknownPlacement(String),
    #[error("the cell already runs on `{0}`")]
    SamePlacement(String),
    #[error("placement {0} is cordoned")]
    Cordoned(String),
    #[error(
        "`{placement}` is in region {region} too: an rds cell's instance and stack are named by \
         its cell id per region, so its target must be in another region"
    )]
    SameRegion { placement: String, region: String },
    #[error("placement {placement} has {free} free units, the cell needs {units}")]
    Capacity {
        placement: String,
        capacity: i32,
        used: i64,
        free: i64,
        units: i32,
    },
    #[error("the tenant is {}", .0.as_str())]
    NotActive(TenantState),
    #[error("operation `{}` is in progress", .0.as_str())]
    Busy(Op),
    #[error("no migration is running")]
    NoMigration,
    #[error("the route already points at the target: the migration can only finish")]
    Switched,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The checks of a migration of `cell` to `target`, under the target placement's lock (which
/// serializes admissions to it). `Ok` carries the units the target must hold.
pub async fn check_migration(
    tx: &mut PgConnection,
    cell: &CellRow,
    target: &str,
) -> Result<i32, MigrateError> {
    if let Some(op) = cell.op() {
        return Err(MigrateError::Busy(op));
    }
    if cell.placement == target {
        return Err(MigrateError::SamePlacement(target.to_owned()));
    }
    let row: Option<(i32, bool, String)> = sqlx::query_as(
        "SELECT capacity, cordoned, region FROM placements WHERE name = $1 FOR UPDATE",
    )
    .bind(target)
    .fetch_optional(&mut *tx)
    .await?;
    let (capacity, cordoned, region) =
        row.ok_or_else(|| MigrateError::UnknownPlacement(target.into()))?;
    if cordoned {
        return Err(MigrateError::Cordoned(target.to_owned()));
    }
    if cell.spec.database.engine == cell_model::DatabaseEngine::Rds {
        let source: Option<String> =
            sqlx::query_scalar("SELECT region FROM placements WHERE name = $1")
                .bind(&cell.placement)
                .fetch_optional(&mut *tx)
                .await?;
        if source.as_deref() == Some(region.as_str()) {
            return Err(MigrateError::SameRegion {
                placement: target.to_owned(),
                region,
            });
        }
    }
    let units: i32 = sqlx::query_scalar("SELECT units FROM cells WHERE cell_id = $1")
        .bind(&cell.cell_id)
        .fetch_one(&mut *tx)
        .await?;
    let used: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(units), 0)::bigint FROM cells
         WHERE placement = $1 OR target_placement = $1",
    )
    .bind(target)
    .fetch_one(&mut *tx)
    .await?;
    if used + i64::from(units) > i64::from(capacity) {
        return Err(MigrateError::Capacity {
            placement: target.to_owned(),
            capacity,
            used,
            free: (i64::from(capacity) - used).max(0),
            units,
        });
    }
    Ok(units)
}

/// Starts migrating `cell` to `target` (checked by [`check_migration`] in the same
/// transaction); returns the migration's id (= the operation's).
pub async fn begin_migration(
    tx: &mut PgConnection,
    cell: &CellRow,
    target: &str,
) -> sqlx::Result<Uuid> {
    sqlx::query("UPDATE cells SET target_placement = $2 WHERE cell_id = $1")
        .bind(&cell.cell_id)
        .bind(target)
        .execute(&mut *tx)
        .await?;
    let id = start_op(&mut *tx, &cell.cell_id, Op::Migrate).await?;
    sqlx::query(
        "INSERT INTO migrations (id, cell_id, tenant, source, target, state)
         VALUES ($1, $2, $3, $4, $5, 'running')",
    )
    .bind(id)
    .bind(&cell.cell_id)
    .bind(&cell.tenant)
    .bind(&cell.placement)
    .bind(target)
    .execute(&mut *tx)
    .await?;
    Ok(id)
}

const MIGRATION_COLUMNS: &str =
    "id, cell_id, tenant, source, target, state, frozen_at, freeze_ms, started_at, finished_at";

/// The cell's latest migration.
pub async fn migration_of_cell(
    conn: &mut PgConnection,
    cell_id: &str,
) -> sqlx::Result<Option<MigrationRow>> {
    sqlx::query_as(&format!(
        "SELECT {MIGRATION_COLUMNS} FROM migrations WHERE cell_id = $1
         ORDER BY started_at DESC, id DESC LIMIT 1"
    ))
    .bind(cell_id)
    .fetch_optional(conn)
    .await
}

/// The tenant's migrations, newest first.
pub async fn migrations_of_tenant(
    conn: &mut PgConnection,
    tenant: &str,
) -> sqlx::Result<Vec<MigrationRow>> {
    sqlx::query_as(&format!(
        "SELECT {MIGRATION_COLUMNS} FROM migrations WHERE tenant = $1
         ORDER BY started_at DESC, id DESC"
    ))
    .bind(tenant)
    .fetch_all(conn)
    .await
}

/// The freeze began (kept from the first attempt when the step runs again).
pub async fn mark_frozen(pool: &PgPool, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE migrations SET frozen_at = COALESCE(frozen_at, now()) WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// The cell now runs on the target: `cells.placement` moves and the freeze's length is kept.
pub async fn mark_switched(pool: &PgPool, id: Uuid) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT cell_id, target, state FROM migrations WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((cell_id, target, state)) = row else {
        return Ok(());
    };
    if MigrationState::parse(&state) != MigrationState::Running {
        return Ok(());
    }
    sqlx::query(
        // The target's database was made fresh and copied, not restored: its spec carries no
        // restore (on Kubernetes, one would make the operator replace its database).
        "UPDATE cells SET placement = $2, target_placement = NULL,
                spec = jsonb_set(spec, '{placement}', to_jsonb($2::text)) - 'restore',
                generation = generation + 1, updated_at = now()
         WHERE cell_id = $1",
    )
    .bind(&cell_id)
    .bind(&target)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE migrations SET state = 'switched',
            freeze_ms = (EXTRACT(EPOCH FROM (clock_timestamp() - frozen_at)) * 1000)::bigint
         WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// The source is kept stopped until `retire_after`, then backed up to `backup` and removed.
pub async fn retire_source(
    pool: &PgPool,
    migration: &MigrationRow,
    spec: &CellSpec,
    retire_after: OffsetDateTime,
    backup: Option<&str>,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO retired_cells (cell_id, placement, tenant, spec, backup_path, retire_after)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(&migration.cell_id)
    .bind(&migration.source)
    .bind(&migration.tenant)
    .bind(Json(spec))
    .bind(backup)
    .bind(retire_after)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE migrations SET state = 'done', finished_at = COALESCE(finished_at, now())
         WHERE id = $1",
    )
    .bind(migration.id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Turns the running migration of `cell` into an abort; refused once switched.
pub async fn begin_abort(tx: &mut PgConnection, cell: &CellRow) -> Result<Uuid, MigrateError> {
    let migration = migration_of_cell(&mut *tx, &cell.cell_id)
        .await?
        .ok_or(MigrateError::NoMigration)?;
    match migration.state() {
        MigrationState::Running => {}
        MigrationState::Aborting => return Ok(migration.id),
        MigrationState::Switched => return Err(MigrateError::Switched),
        MigrationState::Done | MigrationState::Aborted => return Err(MigrateError::NoMigration),
    }
    sqlx::query("UPDATE migrations SET state = 'aborting' WHERE id = $1")
        .bind(migration.id)
        .execute(&mut *tx)
        .await?;
    start_op(&mut *tx, &cell.cell_id, Op::Abort).await?;
    Ok(migration.id)
}

/// The abort is complete: the target's units are free again.
pub async fn mark_aborted(pool: &PgPool, migration: &MigrationRow) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE cells SET target_placement = NULL WHERE cell_id = $1")
        .bind(&migration.cell_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE migrations SET state = 'aborted', finished_at = COALESCE(finished_at, now())
         WHERE id = $1",
    )
    .bind(migration.id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// A migration's source cell waiting for removal.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RetiredCell {
    pub cell_id: String,
    pub placement: String,
    pub tenant: String,
    pub spec: Json<CellSpec>,
    pub backup_path: Option<String>,
    pub retire_after: OffsetDateTime,
}

const RETIRED_COLUMNS: &str = "cell_id, placement, tenant, spec, backup_path, retire_after";

/// Retired cells whose grace period has ended (except one a migration back to its placement
/// removes itself).
pub async fn due_retirements(pool: &PgPool) -> sqlx::Result<Vec<RetiredCell>> {
    sqlx::query_as(&format!(
        "SELECT {RETIRED_COLUMNS} FROM retired_cells r
         WHERE retire_after <= now()
           AND NOT EXISTS (SELECT 1 FROM cells c
                           WHERE c.cell_id = r.cell_id AND c.target_placement = r.placement)
         ORDER BY retire_after"
    ))
    .fetch_all(pool)
    .await
}

/// The copy `cell_id` left on `placement` when it moved away, if it is still there.
pub async fn retired_cell(
    pool: &PgPool,
    cell_id: &str,
    placement: &str,
) -> sqlx::Result<Option<RetiredCell>> {
    sqlx::query_as(&format!(
        "SELECT {RETIRED_COLUMNS} FROM retired_cells WHERE cell_id = $1 AND placement = $2"
    ))
    .bind(cell_id)
    .bind(placement)
    .fetch_optional(pool)
    .await
}

pub async fn forget_retired(pool: &PgPool, cell_id: &str, placement: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM retired_cells WHERE cell_id = $1 AND placement = $2")
        .bind(cell_id)
        .bind(placement)
        .execute(pool)
        .await?;
    Ok(())
}
