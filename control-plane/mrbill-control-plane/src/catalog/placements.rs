//! Placements: where cells run, their region, capacity and cordon.

use sqlx::{PgConnection, PgPool};
use wire_types::admin::Placement;

use super::AdmitError;

pub async fn placements(pool: &PgPool) -> sqlx::Result<Vec<Placement>> {
    let rows: Vec<PlacementRow> = sqlx::query_as(&format!(
        "{PLACEMENT_SELECT} GROUP BY p.name ORDER BY p.name"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(PlacementRow::into_wire).collect())
}

/// One placement, if it exists.
pub async fn placement(conn: &mut PgConnection, name: &str) -> sqlx::Result<Option<Placement>> {
    let row: Option<PlacementRow> = sqlx::query_as(&format!(
        "{PLACEMENT_SELECT} WHERE p.name = $1 GROUP BY p.name"
    ))
    .bind(name)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(PlacementRow::into_wire))
}

const PLACEMENT_SELECT: &str = "SELECT p.name, p.region, p.capacity, p.cordoned,
        COALESCE(SUM(c.units), 0)::bigint AS used, COUNT(c.cell_id)::bigint AS cells
     FROM placements p
     LEFT JOIN cells c ON c.placement = p.name OR c.target_placement = p.name";

#[derive(sqlx::FromRow)]
struct PlacementRow {
    name: String,
    region: String,
    capacity: i32,
    cordoned: bool,
    used: i64,
    cells: i64,
}

impl PlacementRow {
    fn into_wire(self) -> Placement {
        Placement {
            name: self.name,
            region: self.region,
            capacity: self.capacity.max(0) as u32,
            used: u32::try_from(self.used.max(0)).unwrap_or(u32::MAX),
            cordoned: self.cordoned,
            cells: u32::try_from(self.cells.max(0)).unwrap_or(u32::MAX),
        }
    }
}

/// Why a placement change was refused.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error("no placement `{0}`")]
    NotFound(String),
    #[error("a placement `{0}` exists")]
    Exists(String),
    #[error("placement `{name}` still has {cells} cells")]
    InUse { name: String, cells: i64 },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Adds a placement (uncordoned).
pub async fn add_placement(
    pool: &PgPool,
    name: &str,
    region: &str,
    capacity: u32,
) -> Result<(), PlacementError> {
    let inserted = sqlx::query(
        "INSERT INTO placements (name, region, capacity) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(region)
    .bind(i32::try_from(capacity).unwrap_or(i32::MAX))
    .execute(pool)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(PlacementError::Exists(name.to_owned()));
    }
    Ok(())
}

/// Removes a placement that holds no cell (the row lock keeps admissions out meanwhile).
pub async fn remove_placement(pool: &PgPool, name: &str) -> Result<(), PlacementError> {
    let mut tx = pool.begin().await?;
    let found: Option<String> =
        sqlx::query_scalar("SELECT name FROM placements WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    if found.is_none() {
        return Err(PlacementError::NotFound(name.to_owned()));
    }
    // Cells on it, moving to it, or stopped there after a migration until their grace ends.
    let cells: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM cells WHERE placement = $1 OR target_placement = $1)
              + (SELECT COUNT(*) FROM retired_cells WHERE placement = $1)",
    )
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    if cells > 0 {
        return Err(PlacementError::InUse {
            name: name.to_owned(),
            cells,
        });
    }
    sqlx::query("DELETE FROM placements WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Cordons (no new cells) or uncordons a placement.
pub async fn set_cordoned(pool: &PgPool, name: &str, cordoned: bool) -> Result<(), PlacementError> {
    let done = sqlx::query("UPDATE placements SET cordoned = $2 WHERE name = $1")
        .bind(name)
        .bind(cordoned)
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(PlacementError::NotFound(name.to_owned()));
    }
    Ok(())
}

/// The uncordoned placement of `region` with the most free units, if one has `units` free.
/// `Err(UnknownRegion)` when the region has no uncordoned placement at all.
pub async fn placement_in_region(
    conn: &mut PgConnection,
    region: &str,
    units: i32,
) -> Result<String, AdmitError> {
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT p.name, p.capacity, COALESCE(SUM(c.units), 0)::bigint
         FROM placements p
         LEFT JOIN cells c ON c.placement = p.name OR c.target_placement = p.name
         WHERE p.region = $1 AND NOT p.cordoned
         GROUP BY p.name ORDER BY p.capacity - COALESCE(SUM(c.units), 0) DESC, p.name",
    )
    .bind(region)
    .fetch_all(&mut *conn)
    .await?;
    let Some((name, capacity, used)) = rows.into_iter().next() else {
        return Err(AdmitError::UnknownRegion);
    };
    if used + i64::from(units) > i64::from(capacity) {
        return Err(AdmitError::Capacity {
            placement: name,
            capacity,
            used,
            free: (i64::from(capacity) - used).max(0),
            units,
        });
    }
    Ok(name)
}

/// Makes the configured placements exist with their capacity.
pub async fn ensure_placements(pool: &PgPool, placements: &[(String, u32)]) -> sqlx::Result<()> {
    for (name, capacity) in placements {
        sqlx::query(
            "INSERT INTO placements (name, capacity) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET capacity = EXCLUDED.capacity",
        )
        .bind(name)
        .bind(i32::try_from(*capacity).unwrap_or(i32::MAX))
        .execute(pool)
        .await?;
    }
    Ok(())
}
