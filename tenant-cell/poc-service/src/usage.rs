//! The tenant's usage as gauges on `/metrics`, read every [`INTERVAL`]: a cell is one tenant,
//! so the scrape's own `tenant` label (Prometheus's discovery) says whose.
//!
//! ```text
//! mrbill_tenant_users   accounts that may sign in (not disabled)
//! mrbill_tenant_pocs    PoCs not deleted
//! ```
//! (media-service adds `mrbill_tenant_storage_bytes` and `mrbill_tenant_video_seconds`.)

use std::time::Duration;

use sqlx::PgPool;

/// How often the counts are read.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// Keeps the gauges current until the task is dropped.
pub async fn run(pool: PgPool) {
    loop {
        if let Err(e) = refresh(&pool).await {
            tracing::warn!(error = %e, "reading the tenant's usage");
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

pub async fn refresh(pool: &PgPool) -> sqlx::Result<()> {
    let (users, pocs): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM users WHERE NOT disabled),
                (SELECT count(*) FROM pocs WHERE deleted_at IS NULL)",
    )
    .fetch_one(pool)
    .await?;
    metrics::gauge!("mrbill_tenant_users").set(users as f64);
    metrics::gauge!("mrbill_tenant_pocs").set(pocs as f64);
    Ok(())
}
