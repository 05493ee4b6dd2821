//! Admission of a new tenant and its cell: capacity, slug and email domains checked in one
//! transaction holding the placement row's lock.

use sqlx::PgConnection;

use super::*;
use crate::domain::NewTenant;

/// Why an onboarding was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error("a tenant with this slug exists")]
    SlugTaken,
    #[error("email domains belong to another tenant: {0:?}")]
    DomainsTaken(Vec<String>),
    #[error("placement {placement} has {free} free units, the tier needs {units}")]
    Capacity {
        placement: String,
        capacity: i32,
        used: i64,
        free: i64,
        units: i32,
    },
    #[error("unknown placement")]
    UnknownPlacement,
    #[error("placement {0} is cordoned")]
    Cordoned(String),
    #[error("no uncordoned placement in this region")]
    UnknownRegion,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Admits a new tenant and its cell (to be provisioned) inside `tx`.
pub async fn admit(
    tx: &mut PgConnection,
    tenant: &NewTenant,
    spec: &CellSpec,
) -> Result<(), AdmitError> {
    let units = tenant.tier.units() as i32;
    // The placement row lock serializes admissions to one placement.
    let row: Option<(i32, bool)> =
        sqlx::query_as("SELECT capacity, cordoned FROM placements WHERE name = $1 FOR UPDATE")
            .bind(&tenant.placement)
            .fetch_optional(&mut *tx)
            .await?;
    let (capacity, cordoned) = row.ok_or(AdmitError::UnknownPlacement)?;
    if cordoned {
        return Err(AdmitError::Cordoned(tenant.placement.clone()));
    }
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE slug = $1)")
        .bind(&tenant.slug)
        .fetch_one(&mut *tx)
        .await?;
    if exists {
        return Err(AdmitError::SlugTaken);
    }
    let taken: Vec<String> =
        sqlx::query_scalar("SELECT domain FROM email_domains WHERE domain = ANY($1) ORDER BY 1")
            .bind(&tenant.email_domains)
            .fetch_all(&mut *tx)
            .await?;
    if !taken.is_empty() {
        return Err(AdmitError::DomainsTaken(taken));
    }
    let used: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(units), 0)::bigint FROM cells
         WHERE placement = $1 OR target_placement = $1",
    )
    .bind(&tenant.placement)
    .fetch_one(&mut *tx)
    .await?;
    if used + i64::from(units) > i64::from(capacity) {
        return Err(AdmitError::Capacity {
            placement: tenant.placement.clone(),
            capacity,
            used,
            free: (i64::from(capacity) - used).max(0),
            units,
        });
    }
    let inserted = sqlx::query(
        "INSERT INTO tenants (slug, display_name, admin_email, tier, state)
         VALUES ($1, $2, $3, $4, 'active')",
    )
    .bind(&tenant.slug)
    .bind(&tenant.display_name)
    .bind(&tenant.admin_email)
    .bind(tenant.tier.as_str())
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(AdmitError::SlugTaken);
        }
        other => other?,
    };
    for (i, domain) in tenant.email_domains.iter().enumerate() {
        let inserted =
            sqlx::query("INSERT INTO email_domains (domain, tenant, position) VALUES ($1, $2, $3)")
                .bind(domain)
                .bind(&tenant.slug)
                .bind(i as i32)
                .execute(&mut *tx)
                .await;
        match inserted {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(AdmitError::DomainsTaken(vec![domain.clone()]));
            }
            other => other?,
        };
    }
    let op_id = Uuid::now_v7();
    let status = CellStatus {
        phase: cell_model::Phase::Provisioning,
        ..CellStatus::default()
    };
    sqlx::query(
        "INSERT INTO cells (cell_id, tenant, placement, units, spec, status, op, op_id,
                            op_traceparent)
         VALUES ($1, $2, $3, $4, $5, $6, 'provision', $7, $8)",
    )
    .bind(&spec.cell_id)
    .bind(&tenant.slug)
    .bind(&tenant.placement)
    .bind(units)
    .bind(Json(spec))
    .bind(Json(&status))
    .bind(op_id)
    .bind(super::queued_by(op_id))
    .execute(&mut *tx)
    .await?;
    Ok(())
}
