//! A restore in progress, and undoing one (`unrestore`) before its switch.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{BackupRow, CellRow, Op, start_op, steps};

/// The restore a cell runs or is undoing: its id (the restore operation's), its backup,
/// whether it brought a deleted tenant back, and the restore the cell's spec named before.
#[derive(Debug)]
pub struct OpenRestore {
    pub id: Uuid,
    pub backup: BackupRow,
    pub readmitted: bool,
    pub previous: Option<cell_model::CellRestore>,
}

/// The cell's restore that has not finished (nor been undone), if any.
pub async fn open_restore(
    conn: &mut PgConnection,
    cell_id: &str,
) -> sqlx::Result<Option<OpenRestore>> {
    type Previous = Option<sqlx::types::Json<cell_model::CellRestore>>;
    let row: Option<(Uuid, bool, Previous)> = sqlx::query_as(
        "SELECT id, readmitted, previous FROM restores WHERE cell_id = $1 AND finished_at IS NULL
         ORDER BY started_at DESC LIMIT 1",
    )
    .bind(cell_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((id, readmitted, previous)) = row else {
        return Ok(None);
    };
    let Some(backup) = super::backup_of_restore(&mut *conn, id).await? else {
        return Ok(None);
    };
    Ok(Some(OpenRestore {
        id,
        backup,
        readmitted,
        previous: previous.map(|p| p.0),
    }))
}

/// Why a restore cannot be undone.
#[derive(Debug, thiserror::Error)]
pub enum UnrestoreError {
    #[error("the tenant's cell runs no restore")]
    NoRestore,
    #[error("the restore has switched: the tenant is served by the restored cell")]
    Switched,
    #[error(
        "this restore brought a deleted tenant back: there is no earlier cell to return to \
         (delete the tenant again instead)"
    )]
    Readmitted,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Starts undoing `cell`'s restore (locked row): idempotent while it is being undone.
pub async fn begin_unrestore(
    tx: &mut PgConnection,
    cell: &CellRow,
) -> Result<OpenRestore, UnrestoreError> {
    let open = open_restore(&mut *tx, &cell.cell_id)
        .await?
        .ok_or(UnrestoreError::NoRestore)?;
    if open.readmitted {
        return Err(UnrestoreError::Readmitted);
    }
    match cell.op() {
        Some(Op::Unrestore) => return Ok(open),
        Some(Op::Restore) => {}
        _ => return Err(UnrestoreError::NoRestore),
    }
    let switched = steps(&mut *tx, &cell.cell_id, open.id)
        .await?
        .iter()
        .any(|(step, _)| step == "switch");
    if switched {
        return Err(UnrestoreError::Switched);
    }
    start_op(&mut *tx, &cell.cell_id, Op::Unrestore).await?;
    Ok(open)
}

/// The restore is undone: recorded as aborted, and the cell's spec names `after` (what the
/// driver's cell names now: the restore before it, or the one that undid it) or none.
pub async fn mark_unrestored(
    pool: &PgPool,
    cell_id: &str,
    id: Uuid,
    after: Option<&cell_model::CellRestore>,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE restores SET aborted_at = COALESCE(aborted_at, now()),
                             finished_at = COALESCE(finished_at, now())
         WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    match after {
        None => {
            sqlx::query("UPDATE cells SET spec = spec - 'restore' WHERE cell_id = $1")
                .bind(cell_id)
                .execute(&mut *tx)
                .await?;
        }
        Some(after) => {
            sqlx::query(
                "UPDATE cells SET spec = jsonb_set(spec, '{restore}', $2) WHERE cell_id = $1",
            )
            .bind(cell_id)
            .bind(sqlx::types::Json(after))
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await
}
