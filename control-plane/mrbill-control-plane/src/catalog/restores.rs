//! A restore in progress, and undoing one (`unrestore`) before its switch.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{BackupRow, CellRow, Op, start_op, steps};

/// The restore a cell runs or is undoing: its id (the restore operation's), its backup, and
/// whether it brought a deleted tenant back.
#[derive(Debug)]
pub struct OpenRestore {
    pub id: Uuid,
    pub backup: BackupRow,
    pub readmitted: bool,
}

/// The cell's restore that has not finished (nor been undone), if any.
pub async fn open_restore(
    conn: &mut PgConnection,
    cell_id: &str,
) -> sqlx::Result<Option<OpenRestore>> {
    let row: Option<(Uuid, bool)> = sqlx::query_as(
        "SELECT id, readmitted FROM restores WHERE cell_id = $1 AND finished_at IS NULL
         ORDER BY started_at DESC LIMIT 1",
    )
    .bind(cell_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((id, readmitted)) = row else {
        return Ok(None);
    };
    let Some(backup) = super::backup_of_restore(&mut *conn, id).await? else {
        return Ok(None);
    };
    Ok(Some(OpenRestore {
        id,
        backup,
        readmitted,
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

/// The restore is undone: recorded as aborted, and gone from the cell's spec.
pub async fn mark_unrestored(pool: &PgPool, cell_id: &str, id: Uuid) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE restores SET aborted_at = COALESCE(aborted_at, now()),
                             finished_at = COALESCE(finished_at, now())
         WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE cells SET spec = spec - 'restore' WHERE cell_id = $1")
        .bind(cell_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}
