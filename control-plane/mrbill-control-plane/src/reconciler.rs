//! The reconciler: drives each cell through its operation's recorded steps (named by the
//! cell's driver, see `driver/`), and watches idle cells through the driver (restarting dead
//! supervisors, following moved ports or the operator's status).
//!
//! **Invariant:** a step is recorded only after its effects are complete, and every step is
//! safe to repeat; a control plane killed anywhere resumes at the first unrecorded step and
//! converges to the same single cell. A newer operation (a delete during provisioning) takes
//! over between two steps.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cell_model::route_feed::RouteState;
use cell_model::{CellStatus, Phase};
use tokio::task::JoinSet;

use crate::Ctx;
use crate::catalog::{self, CellRow, Op};
use crate::driver::{BoxFuture, Observation, Step, Work};
use crate::{migrate, op_trace};
use tracing::Instrument as _;

/// Runs forever: wakes on `ctx.wake` or every `health_interval`. Each cell with work gets a
/// task of its own, owned here: dropping this future (the control plane stopping) stops them.
pub async fn run(ctx: Arc<Ctx>) {
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut tasks = JoinSet::new();
    loop {
        if let Err(e) = pass(&ctx, &in_flight, &mut tasks).await {
            tracing::warn!(error = %format!("{e:#}"), "reconcile pass failed");
        }
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            () = ctx.wake.notified() => {}
            () = tokio::time::sleep(ctx.config.health_interval) => {}
        }
    }
}

async fn pass(
    ctx: &Arc<Ctx>,
    in_flight: &Arc<Mutex<HashSet<String>>>,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    for cell_id in catalog::cells_with_work(&ctx.pool).await? {
        let fresh = in_flight
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(cell_id.clone());
        if fresh {
            let ctx = ctx.clone();
            let in_flight = in_flight.clone();
            tasks.spawn(async move {
                run_ops(&ctx, &cell_id).await;
                if let Ok(mut set) = in_flight.lock() {
                    set.remove(&cell_id);
                }
                ctx.wake.notify_one();
            });
        }
    }
    for cell in catalog::cells(&ctx.pool).await? {
        if cell.op.is_none() {
            watch(ctx, &cell).await?;
        }
    }
    // Migration sources past their grace period: one task at a time, beside the cells'.
    let retiring = "retired cells".to_owned();
    if !catalog::due_retirements(&ctx.pool).await?.is_empty()
        && in_flight
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(retiring.clone())
    {
        let ctx = ctx.clone();
        let in_flight = in_flight.clone();
        tasks.spawn(async move {
            if let Err(e) = migrate::retire_due(&ctx).await {
                tracing::warn!(error = %format!("{e:#}"), "retiring a migration source failed; retrying");
            }
            if let Ok(mut set) = in_flight.lock() {
                set.remove(&retiring);
            }
        });
    }
    Ok(())
}

/// Runs the cell's operations until it has none left.
async fn run_ops(ctx: &Ctx, cell_id: &str) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match run_current_op(ctx, cell_id).await {
            Ok(true) => backoff = Duration::from_millis(500),
            Ok(false) => return,
            Err(e) => {
                let message = format!("{e:#}");
                tracing::warn!(cell = %cell_id, error = %message, retry_in_ms = backoff.as_millis() as u64, "step failed; retrying");
                let _ = catalog::set_error(&ctx.pool, cell_id, &message).await;
                back_off(ctx, cell_id, backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Waits `backoff` before a failed step is retried, or less once the cell's operation is
/// replaced (an abort or a delete need not wait for the retry of what they replace).
async fn back_off(ctx: &Ctx, cell_id: &str, backoff: Duration) {
    let op_id = current_op_id(ctx, cell_id).await;
    let until = Instant::now() + backoff;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(Duration::from_millis(250))).await;
        if current_op_id(ctx, cell_id).await != op_id {
            return;
        }
    }
}

async fn current_op_id(ctx: &Ctx, cell_id: &str) -> Option<uuid::Uuid> {
    let mut conn = ctx.pool.acquire().await.ok()?;
    catalog::cell(&mut conn, cell_id).await.ok()??.op_id
}

/// How `cell`'s operation ended, for its trace span.
fn ended<'a>(cell: &'a catalog::CellRow, outcome: &'static str) -> op_trace::Ended<'a> {
    op_trace::Ended {
        tenant: &cell.tenant,
        cell: &cell.cell_id,
        outcome,
        queued_by: cell.op_traceparent.as_deref(),
    }
}

/// Runs the current operation's remaining steps. `Ok(true)`: look again (finished or replaced);
/// `Ok(false)`: nothing to do.
fn run_current_op<'a>(ctx: &'a Ctx, cell_id: &'a str) -> BoxFuture<'a, anyhow::Result<bool>> {
    // Boxed as `dyn Future + Send`: pins the lifetimes the spawned task's Send check needs.
    Box::pin(async move {
        let mut conn = ctx.pool.acquire().await?;
        let Some(cell) = catalog::cell(&mut conn, cell_id).await? else {
            return Ok(false);
        };
        let (Some(op), Some(op_id)) = (cell.op(), cell.op_id) else {
            return Ok(false);
        };
        let done: HashSet<String> = catalog::steps(&mut conn, cell_id, op_id)
            .await?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let backup: Option<PathBuf> = catalog::tenant(&mut conn, &cell.tenant)
            .await?
            .and_then(|t| t.backup_path)
            .map(PathBuf::from);
        drop(conn);
        if done.is_empty() {
            tracing::info!(cell = %cell_id, op = op.as_str(), "operation started");
        }
        for &step in migrate::op_steps(ctx.driver.as_ref(), op) {
            if done.contains(step.as_str()) {
                continue;
            }
            let started = Instant::now();
            let span = op_trace::step_span(op_id, op, step.as_str(), &cell.tenant, cell_id);
            let ran = run_step(ctx, &cell, op, step, backup.as_deref())
                .instrument(span.clone())
                .await;
            let outcome = match &ran {
                Ok(()) => "done",
                Err(e) if crate::driver::is_waiting(e) => "waiting",
                Err(_) => "failed",
            };
            span.record("mrbill.outcome", outcome);
            if outcome == "failed" {
                service_kit::telemetry::trace::failed(&span);
            }
            drop(span);
            let (op_name, step_name) = (op.as_str(), step.as_str());
            metrics::histogram!("mrbill_reconcile_step_duration_seconds", "op" => op_name,
                "step" => step_name, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
            if outcome == "failed" {
                metrics::counter!("mrbill_reconcile_step_failures_total", "op" => op_name,
                    "step" => step_name)
                .increment(1);
            }
            ran?;
            if let Some(crash) = &ctx.config.crash_after_step
                && (crash == step.as_str()
                    || *crash == format!("{}:{}", op.as_str(), step.as_str()))
            {
                tracing::error!(
                    step = step.as_str(),
                    "crash injection: exiting after the step, before recording it"
                );
                // The answer to the request that queued the operation goes out first (a quick
                // step, e.g. delete's route, can finish before it is written): the injected
                // crash is between the step and its record, not inside a response.
                tokio::time::sleep(Duration::from_millis(200)).await;
                std::process::exit(86);
            }
            if step == Step::Catalog {
                op_trace::finished(op_id, op, ended(&cell, "done"));
                return Ok(true); // the cell and its records are gone
            }
            let ms = started.elapsed().as_millis() as i64;
            catalog::record_step(&ctx.pool, cell_id, op_id, step.as_str(), ms).await?;
            tracing::info!(cell = %cell_id, op = op.as_str(), step = step.as_str(), duration_ms = ms, "step done");
            // A newer operation (e.g. a delete during provisioning) takes over between steps.
            let paused = ctx.config.pause_after_step.as_deref()
                == Some(&format!("{}:{}", op.as_str(), step.as_str()));
            loop {
                let mut conn = ctx.pool.acquire().await?;
                let current = catalog::cell(&mut conn, cell_id)
                    .await?
                    .and_then(|c| c.op_id);
                if current != Some(op_id) {
                    op_trace::finished(op_id, op, ended(&cell, "superseded"));
                    return Ok(true);
                }
                if !paused {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let serving = op.serves();
        let mut status = cell.status.0.clone();
        // A migration moved the cell (placement, spec, generation): settle it as it is now.
        let cell = match op {
            Op::Migrate => {
                let mut conn = ctx.pool.acquire().await?;
                catalog::cell(&mut conn, cell_id).await?.unwrap_or(cell)
            }
            _ => cell,
        };
        fold(
            &mut status,
            ctx.driver
                .settle(Work::new(&cell.spec.0, &cell.placement), serving)
                .await?,
        );
        status.phase = if serving {
            Phase::Ready
        } else {
            Phase::Suspended
        };
        status.observed_generation = Some(cell.generation);
        status.endpoints.public = Some(ctx.config.endpoint(&cell.tenant));
        if catalog::finish_op(&ctx.pool, cell_id, op, op_id, &status).await? {
            op_trace::finished(op_id, op, ended(&cell, "done"));
        }
        tracing::info!(cell = %cell_id, op = op.as_str(), phase = ?status.phase, "operation finished");
        Ok(true)
    })
}

/// Runs one step: the route and the catalog here (every driver shares them), the rest in the
/// driver.
fn run_step<'a>(
    ctx: &'a Ctx,
    cell: &'a CellRow,
    op: Op,
    step: Step,
    backup: Option<&'a Path>,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let tenant = cell.tenant.as_str();
        let spec = &cell.spec.0;
        let placement = cell.placement.as_str();
        match (step, op) {
            (_, Op::Migrate | Op::Abort) => migrate::run_step(ctx, cell, op, step).await,
            (_, Op::Restore | Op::Unrestore) => crate::backups::run_step(ctx, cell, op, step).await,
            (Step::Route, Op::Suspend) => Ok(ctx
                .hub
                .update(&ctx.pool, tenant, |route| {
                    route.state = RouteState::Suspended
                })
                .await?),
            (Step::Route, Op::Delete) => Ok(ctx.hub.remove(&ctx.pool, tenant).await?),
            (Step::Route, Op::Provision | Op::Resume | Op::Scale) => {
                let urls = ctx.driver.service_urls(Work::new(spec, placement)).await?;
                let mut dropped = false;
                ctx.hub
                    .update(&ctx.pool, tenant, |route| {
                        let before = route_urls(route);
                        urls.apply_to(route);
                        dropped = !before.is_subset(&route_urls(route));
                        if op == Op::Resume {
                            route.state = RouteState::Active;
                        }
                    })
                    .await?;
                // Instances that left the route stop in the next step: first let every router
                // take the new route and finish what it already sent them.
                if dropped && op == Op::Scale {
                    tokio::time::sleep(ctx.config.route_drain).await;
                }
                Ok(())
            }
            (Step::Catalog, _) => {
                let backup = backup.map(|p| p.display().to_string());
                catalog::forget_tenant(&ctx.pool, tenant, &cell.cell_id, backup.as_deref()).await?;
                Ok(())
            }
            _ => {
                let work = Work {
                    spec,
                    placement,
                    backup,
                };
                ctx.driver.run(work, op, step).await
            }
        }
    })
}

/// Watches an idle cell through its driver; the catalog's status and the route follow.
async fn watch(ctx: &Ctx, cell: &CellRow) -> anyhow::Result<()> {
    let phase = cell.status.0.phase;
    if !matches!(phase, Phase::Ready | Phase::Degraded | Phase::Suspended) {
        return Ok(());
    }
    let work = Work::new(&cell.spec.0, &cell.placement);
    let Some(observed) = ctx.driver.watch(work, phase).await? else {
        return Ok(());
    };
    let serving = observed.serving.clone();
    let mut status = cell.status.0.clone();
    fold(&mut status, observed);
    status.endpoints.public = Some(ctx.config.endpoint(&cell.tenant));
    if status != cell.status.0 {
        catalog::set_status(&ctx.pool, &cell.cell_id, &status).await?;
    }
    if let Some(urls) = serving {
        ctx.hub
            .update(&ctx.pool, &cell.tenant, |route| urls.apply_to(route))
            .await?;
    }
    Ok(())
}

/// Every service URL a route sends requests to.
fn route_urls(route: &cell_model::route_feed::RouteEntry) -> std::collections::BTreeSet<String> {
    let replicas = route
        .replicas
        .iter()
        .flat_map(|(_, urls)| urls.iter().cloned());
    route
        .services
        .iter()
        .map(|(_, url)| url.to_owned())
        .chain(replicas)
        .collect()
}

/// Folds what a driver observed into a recorded status.
fn fold(status: &mut CellStatus, observed: Observation) {
    for condition in observed.conditions {
        status.set_condition(condition);
    }
    if let Some(services) = observed.services {
        status.endpoints.services = services;
    }
    if let Some(phase) = observed.phase {
        status.phase = phase;
    }
}
