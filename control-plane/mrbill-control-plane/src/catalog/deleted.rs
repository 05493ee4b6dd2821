//! Deleted tenants: what the catalog keeps of them (`deleted_tenants`) so that a restore can
//! bring one back as it was, from the backup its delete took (a `final` backup) or an earlier one
//! of the same cell.

use cell_model::CellSpec;
use serde::Deserialize;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

/// A deleted tenant as it was when its delete finished.
#[derive(Debug, sqlx::FromRow)]
pub struct DeletedTenant {
    pub slug: String,
    pub cell_id: String,
    pub deleted_at: OffsetDateTime,
    pub tenant: Json<KeptTenant>,
}

/// The tenant's row and its cell's spec (placement, tier, sizes, identity's cell id).
#[derive(Debug, Deserialize)]
pub struct KeptTenant {
    pub display_name: String,
    pub admin_email: String,
    pub email_domains: Vec<String>,
    pub spec: CellSpec,
}

/// Removes a deleted tenant (cascading to its cell and steps); remembers it, and records the
/// backup its delete took (if any) as one of its backups. A no-op once the tenant is gone, so a
/// repeated step records nothing twice.
pub async fn forget_tenant(
    pool: &PgPool,
    slug: &str,
    cell_id: &str,
    backup_path: Option<&str>,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO deleted_tenants (slug, cell_id, backup_path, tenant)
         SELECT t.slug, c.cell_id, $3, jsonb_build_object(
                'display_name', t.display_name,
                'admin_email', t.admin_email,
                'email_domains', COALESCE((SELECT jsonb_agg(d.domain ORDER BY d.position)
                                           FROM email_domains d WHERE d.tenant = t.slug), '[]'),
                'spec', c.spec)
         FROM tenants t JOIN cells c ON c.tenant = t.slug
         WHERE t.slug = $1 AND c.cell_id = $2",
    )
    .bind(slug)
    .bind(cell_id)
    .bind(backup_path)
    .execute(&mut *tx)
    .await?;
    // Its delete took it after the route was gone and before the services stopped: the
    // tenant's last state (`taken_at` is when the delete finished, a moment later).
    sqlx::query(
        "INSERT INTO backups (id, tenant, cell_id, placement, kind, state, requested_at,
                              started_at, taken_at, finished_at, path)
         SELECT $3, c.tenant, c.cell_id, c.placement, 'final', 'done', now(), now(), now(),
                now(), $4
         FROM cells c WHERE c.tenant = $1 AND c.cell_id = $2 AND $4::text IS NOT NULL",
    )
    .bind(slug)
    .bind(cell_id)
    .bind(Uuid::now_v7())
    .bind(backup_path)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM tenants WHERE slug = $1")
        .bind(slug)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// The newest deletion of `slug` that can be restored and was not yet (locked: one restore of it
/// at a time).
pub async fn deleted_tenant(
    conn: &mut PgConnection,
    slug: &str,
) -> sqlx::Result<Option<DeletedTenant>> {
    sqlx::query_as(
        "SELECT slug, cell_id, deleted_at, tenant FROM deleted_tenants
         WHERE slug = $1 AND tenant IS NOT NULL AND restored_at IS NULL
         ORDER BY deleted_at DESC LIMIT 1 FOR UPDATE",
    )
    .bind(slug)
    .fetch_optional(conn)
    .await
}

/// Records that `deleted` was brought back.
pub async fn mark_restored(conn: &mut PgConnection, deleted: &DeletedTenant) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE deleted_tenants SET restored_at = now()
         WHERE slug = $1 AND cell_id = $2 AND deleted_at = $3",
    )
    .bind(&deleted.slug)
    .bind(&deleted.cell_id)
    .bind(deleted.deleted_at)
    .execute(conn)
    .await
    .map(drop)
}
