//! The catalog's state as gauges on the control plane's `/metrics`, read every
//! [`INTERVAL`]: what fleet dashboards and capacity alerts need, with bounded labels only
//! (placement names, phases and operations; never a tenant).
//!
//! ```text
//! mrbill_placement_capacity_units{placement}   mrbill_placement_used_units{placement}
//! mrbill_placement_cordoned{placement}         mrbill_placement_cells{placement}
//! mrbill_cells{phase}                          mrbill_cell_operations{op}
//! ```
//! The reconciler adds `mrbill_reconcile_step_duration_seconds{op, step, outcome}` and
//! `mrbill_reconcile_step_failures_total{op, step}` as its steps run.

use std::sync::Arc;
use std::time::Duration;

use crate::{Ctx, catalog};

/// How often the gauges are read from the catalog.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Phases and operations a gauge is written for even at zero (a series that vanishes would
/// read as "no data", not 0).
const PHASES: [&str; 7] = [
    "Pending",
    "Provisioning",
    "Ready",
    "Migrating",
    "Suspended",
    "Degraded",
    "Deleting",
];

/// Keeps the gauges current until the control plane stops.
pub async fn run(ctx: Arc<Ctx>) {
    loop {
        if let Err(e) = refresh(&ctx).await {
            tracing::warn!(error = %format!("{e:#}"), "reading the catalog's gauges");
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Reads the catalog once into the gauges.
pub async fn refresh(ctx: &Ctx) -> anyhow::Result<()> {
    for p in catalog::placements(&ctx.pool).await? {
        let placement = p.name.clone();
        metrics::gauge!("mrbill_placement_capacity_units", "placement" => placement.clone())
            .set(f64::from(p.capacity));
        metrics::gauge!("mrbill_placement_used_units", "placement" => placement.clone())
            .set(f64::from(p.used));
        metrics::gauge!("mrbill_placement_cordoned", "placement" => placement.clone())
            .set(if p.cordoned { 1.0 } else { 0.0 });
        metrics::gauge!("mrbill_placement_cells", "placement" => placement).set(f64::from(p.cells));
    }
    let phases: Vec<(String, i64)> = sqlx::query_as(
        "SELECT coalesce(status->>'phase', 'Pending'), count(*) FROM cells GROUP BY 1",
    )
    .fetch_all(&ctx.pool)
    .await?;
    for phase in PHASES {
        let n = phases
            .iter()
            .find(|(p, _)| p == phase)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("mrbill_cells", "phase" => phase).set(n as f64);
    }
    let ops: Vec<(String, i64)> =
        sqlx::query_as("SELECT op, count(*) FROM cells WHERE op IS NOT NULL GROUP BY op")
            .fetch_all(&ctx.pool)
            .await?;
    for op in catalog::Op::ALL {
        let n = ops
            .iter()
            .find(|(o, _)| o == op.as_str())
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("mrbill_cell_operations", "op" => op.as_str()).set(n as f64);
    }
    Ok(())
}
