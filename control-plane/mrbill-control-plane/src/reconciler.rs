//! The reconciler: drives each cell through its operation's idempotent, recorded steps, and
//! watches running cells (restarting dead supervisors, following moved ports; on Kubernetes,
//! following the operator's status). The local driver's steps (the kubernetes driver's are in
//! `kubernetes.rs`):
//!
//! ```text
//! provision: secrets → cluster → supervisor → databases → admin → services → route   ⇒ Ready
//! suspend:   route (suspended) → services (stopped)                                   ⇒ Suspended
//! resume:    services (running) → route (active)                                      ⇒ Ready
//! delete:    route (removed) → backup → stop → files → catalog                        ⇒ gone
//! ```
//!
//! **Invariant:** a step is recorded only after its effects are complete, and every step is
//! safe to repeat; a control plane killed anywhere resumes at the first unrecorded step and
//! converges to the same single cell.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cell_model::routes::{RouteState, ServiceUrls};
use cell_model::{CellStatus, Condition, ConditionStatus, Phase};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Ctx;
use crate::catalog::{self, CellRow, Op};
use crate::kubernetes::KubeDriver;
use crate::local::service_urls;

impl Op {
    /// The steps of this operation under the local (`kubernetes == false`) or the kubernetes
    /// driver (see `kubernetes.rs`), in order.
    pub fn steps(self, kubernetes: bool) -> &'static [&'static str] {
        match (self, kubernetes) {
            (Op::Provision, false) => &[
                "secrets",
                "cluster",
                "supervisor",
                "databases",
                "admin",
                "services",
                "route",
            ],
            (Op::Provision, true) => &["cell", "ready", "route"],
            (Op::Suspend, false) => &["route", "services"],
            (Op::Suspend, true) => &["route", "cell"],
            (Op::Resume, false) => &["services", "route"],
            (Op::Resume, true) => &["cell", "ready", "route"],
            (Op::Delete, false) => &["route", "backup", "stop", "files", "catalog"],
            (Op::Delete, true) => &["route", "cell", "gone", "catalog"],
        }
    }
}

/// Runs forever: wakes on `ctx.wake` or every `health_interval`.
pub async fn run(ctx: Arc<Ctx>) {
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        if let Err(e) = pass(&ctx, &in_flight).await {
            tracing::warn!(error = %format!("{e:#}"), "reconcile pass failed");
        }
        tokio::select! {
            () = ctx.wake.notified() => {}
            () = tokio::time::sleep(ctx.config.health_interval) => {}
        }
    }
}

async fn pass(ctx: &Arc<Ctx>, in_flight: &Arc<Mutex<HashSet<String>>>) -> anyhow::Result<()> {
    for cell_id in catalog::cells_with_work(&ctx.pool).await? {
        let fresh = in_flight
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(cell_id.clone());
        if fresh {
            let ctx = ctx.clone();
            let in_flight = in_flight.clone();
            tokio::spawn(async move {
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
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
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
        drop(conn);
        if done.is_empty() {
            tracing::info!(cell = %cell_id, op = op.as_str(), "operation started");
        }
        for step in op.steps(ctx.kube.is_some()) {
            if done.contains(*step) {
                continue;
            }
            let started = Instant::now();
            run_step(ctx, &cell, op, step).await?;
            if let Some(crash) = &ctx.config.crash_after_step
                && (crash == step || *crash == format!("{}:{step}", op.as_str()))
            {
                tracing::error!(
                    step,
                    "crash injection: exiting after the step, before recording it"
                );
                std::process::exit(86);
            }
            if op == Op::Delete && *step == "catalog" {
                return Ok(true); // the cell and its records are gone
            }
            let ms = started.elapsed().as_millis() as i64;
            catalog::record_step(&ctx.pool, cell_id, op_id, step, ms).await?;
            tracing::info!(cell = %cell_id, op = op.as_str(), step, duration_ms = ms, "step done");
            // A newer operation (e.g. a delete during provisioning) takes over between steps.
            let mut conn = ctx.pool.acquire().await?;
            let current = catalog::cell(&mut conn, cell_id)
                .await?
                .and_then(|c| c.op_id);
            if current != Some(op_id) {
                return Ok(true);
            }
        }
        let mut status = cell.status.0.clone();
        if let Some(kube) = &ctx.kube
            && let Some(reported) = kube.get(cell_id).await?.and_then(|c| c.status)
        {
            status.conditions = reported.conditions;
            status.endpoints.services = reported.endpoints.services;
        }
        let next = finish_status(ctx, &cell, op, &mut status);
        catalog::finish_op(&ctx.pool, cell_id, op_id, &status, next).await?;
        tracing::info!(cell = %cell_id, op = op.as_str(), phase = ?status.phase, "operation finished");
        Ok(true)
    })
}

/// The status an operation ends in, and the operation to run next if the desired state moved
/// while this one ran.
fn finish_status(ctx: &Ctx, cell: &CellRow, op: Op, status: &mut CellStatus) -> Option<Op> {
    let suspended = cell.spec.0.suspended;
    let ready = match op {
        Op::Provision | Op::Resume => true,
        Op::Suspend | Op::Delete => false,
    };
    status.phase = if ready {
        Phase::Ready
    } else {
        Phase::Suspended
    };
    status.observed_generation = Some(cell.generation);
    status.endpoints.public = Some(ctx.config.endpoint(&cell.tenant));
    // The kubernetes driver's conditions are the operator's (copied by the caller).
    if ctx.kube.is_none() {
        local_conditions(ctx, cell, status, ready);
    }
    match (op, suspended) {
        (Op::Provision | Op::Resume, true) => Some(Op::Suspend),
        (Op::Suspend, false) => Some(Op::Resume),
        _ => None,
    }
}

fn local_conditions(ctx: &Ctx, cell: &CellRow, status: &mut CellStatus, ready: bool) {
    if let Some(state) = ctx.driver.observe(&cell.cell_id) {
        status.endpoints.services = urls_map(&state);
    }
    set(status, "DatabaseReady", true, "PostgresRunning", "");
    set(
        status,
        "ServicesReady",
        ready,
        if ready { "Running" } else { "Suspended" },
        "",
    );
    set(
        status,
        "Ready",
        ready,
        if ready { "Serving" } else { "Suspended" },
        "",
    );
}

fn run_step<'a>(
    ctx: &'a Ctx,
    cell: &'a CellRow,
    op: Op,
    step: &'a str,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let id = cell.cell_id.as_str();
        let tenant = cell.tenant.as_str();
        // Steps both drivers share: the route and the catalog.
        match (op, step) {
            (Op::Suspend, "route") => {
                return Ok(ctx
                    .hub
                    .update(&ctx.pool, tenant, |route| {
                        route.state = RouteState::Suspended
                    })
                    .await?);
            }
            (Op::Delete, "route") => return Ok(ctx.hub.remove(&ctx.pool, tenant).await?),
            (Op::Delete, "catalog") => {
                let dest = match ctx.kube {
                    Some(_) => None,
                    None => Some(backup_path(ctx, tenant).await?),
                };
                catalog::forget_tenant(&ctx.pool, tenant, id, dest.as_deref()).await?;
                return Ok(());
            }
            _ => {}
        }
        if let Some(kube) = &ctx.kube {
            return kube_step(ctx, kube, cell, op, step).await;
        }
        let driver = &ctx.driver;
        match (op, step) {
            (Op::Provision, "secrets") => {
                driver.prepare(id, tenant, &cell.spec.0.email_domains).await
            }
            (Op::Provision, "cluster") => driver.init_cluster(id).await,
            (Op::Provision, "supervisor") => driver.ensure_supervisor(id).await,
            (Op::Provision, "databases") => driver.ensure_databases(id).await,
            (Op::Provision, "admin") => {
                let mut conn = ctx.pool.acquire().await?;
                let row = catalog::tenant(&mut conn, tenant)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("tenant {tenant} is gone"))?;
                driver.bootstrap_admin(id, &row.admin_email).await
            }
            (Op::Provision | Op::Resume, "services") => {
                driver.set_services(id, true).await.map(drop)
            }
            (Op::Provision | Op::Resume, "route") => {
                let urls = driver
                    .observe(id)
                    .map(|s| service_urls(&s))
                    .ok_or_else(|| anyhow::anyhow!("the cell's supervisor is not running"))?;
                anyhow::ensure!(urls.poc.is_some(), "poc-service is not running");
                ctx.hub
                    .update(&ctx.pool, tenant, |route| {
                        route.services = urls;
                        if op == Op::Resume {
                            route.state = RouteState::Active;
                        }
                    })
                    .await?;
                Ok(())
            }
            (Op::Suspend, "services") => driver.set_services(id, false).await.map(drop),
            (Op::Delete, "backup") => {
                let dest = backup_path(ctx, tenant).await?;
                driver.backup(id, tenant, std::path::Path::new(&dest)).await
            }
            (Op::Delete, "stop") => driver.stop(id).await,
            (Op::Delete, "files") => driver.remove(id).await,
            _ => anyhow::bail!("unknown step {step} of {}", op.as_str()),
        }
    })
}

/// A step under the kubernetes driver: the `Cell` resource stands for the whole cell.
async fn kube_step(
    ctx: &Ctx,
    kube: &KubeDriver,
    cell: &CellRow,
    op: Op,
    step: &str,
) -> anyhow::Result<()> {
    let id = cell.cell_id.as_str();
    match (op, step) {
        (Op::Provision | Op::Resume, "cell") => kube.apply(&cell.spec.0, false).await,
        (Op::Suspend, "cell") => kube.apply(&cell.spec.0, true).await,
        (Op::Provision | Op::Resume, "ready") => kube.ready(id).await.map(drop),
        (Op::Provision | Op::Resume, "route") => {
            let urls = kube_urls(&kube.ready(id).await?);
            ctx.hub
                .update(&ctx.pool, &cell.tenant, |route| {
                    route.services = urls;
                    if op == Op::Resume {
                        route.state = RouteState::Active;
                    }
                })
                .await?;
            Ok(())
        }
        (Op::Delete, "cell") => kube.delete(id).await,
        (Op::Delete, "gone") => kube.gone(id).await,
        _ => anyhow::bail!("unknown step {step} of {}", op.as_str()),
    }
}

/// The route's service URLs from a Cell's status (cluster DNS names the operator reports).
fn kube_urls(status: &CellStatus) -> ServiceUrls {
    let url = |service: &str| status.endpoints.services.get(service).cloned();
    ServiceUrls {
        poc: url("poc"),
        dojo: url("dojo"),
        media: url("media"),
    }
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

async fn backup_path(ctx: &Ctx, tenant: &str) -> anyhow::Result<String> {
    let mut conn = ctx.pool.acquire().await?;
    catalog::tenant(&mut conn, tenant)
        .await?
        .and_then(|t| t.backup_path)
        .ok_or_else(|| anyhow::anyhow!("tenant {tenant} has no backup path"))
}

/// Watches an idle cell: a dead supervisor is restarted (the cell's data and processes are
/// adopted as they are), moved ports update the route, and the status follows what runs.
async fn watch(ctx: &Ctx, cell: &CellRow) -> anyhow::Result<()> {
    let phase = cell.status.0.phase;
    if !matches!(phase, Phase::Ready | Phase::Degraded | Phase::Suspended) {
        return Ok(());
    }
    if let Some(kube) = &ctx.kube {
        return watch_kube(ctx, kube, cell).await;
    }
    let dir = ctx.driver.cell_dir(&cell.cell_id);
    let Some(state) = ctx.driver.observe(&cell.cell_id) else {
        tracing::warn!(cell = %cell.cell_id, "cell supervisor is gone; starting a new one");
        ctx.driver.spawn_supervisor_if_gone(&dir)?;
        return Ok(());
    };
    if phase == Phase::Suspended {
        return Ok(());
    }
    ctx.driver
        .add_missing_services(&cell.cell_id, &cell.tenant)
        .await?;
    let urls = service_urls(&state);
    let mut status = cell.status.0.clone();
    let serving = urls.poc.is_some();
    status.phase = if serving {
        Phase::Ready
    } else {
        Phase::Degraded
    };
    status.endpoints.services = urls_map(&state);
    status.endpoints.public = Some(ctx.config.endpoint(&cell.tenant));
    set(
        &mut status,
        "ServicesReady",
        serving,
        if serving { "Running" } else { "Restarting" },
        "",
    );
    set(
        &mut status,
        "Ready",
        serving,
        if serving { "Serving" } else { "Restarting" },
        "",
    );
    if status != cell.status.0 {
        catalog::set_status(&ctx.pool, &cell.cell_id, &status).await?;
    }
    if serving {
        ctx.hub
            .update(&ctx.pool, &cell.tenant, |route| route.services = urls)
            .await?;
    }
    Ok(())
}

/// Kubernetes: the catalog follows what the operator reports; a `Cell` deleted behind the
/// control plane's back is applied again (the catalog is the source of truth).
async fn watch_kube(ctx: &Ctx, kube: &KubeDriver, cell: &CellRow) -> anyhow::Result<()> {
    let Some(resource) = kube.get(&cell.cell_id).await? else {
        tracing::warn!(cell = %cell.cell_id, "the Cell resource is missing; applying it again");
        return kube.apply(&cell.spec.0, cell.spec.0.suspended).await;
    };
    let Some(reported) = resource.status else {
        return Ok(());
    };
    let mut status = cell.status.0.clone();
    status.conditions = reported.conditions.clone();
    status.endpoints.services = reported.endpoints.services.clone();
    if matches!(
        reported.phase,
        Phase::Ready | Phase::Degraded | Phase::Suspended
    ) {
        status.phase = reported.phase;
    }
    if status != cell.status.0 {
        catalog::set_status(&ctx.pool, &cell.cell_id, &status).await?;
    }
    if reported.phase == Phase::Ready {
        let urls = kube_urls(&reported);
        ctx.hub
            .update(&ctx.pool, &cell.tenant, |route| route.services = urls)
            .await?;
    }
    Ok(())
}

fn urls_map(
    state: &crate::local::files::SupervisorState,
) -> std::collections::BTreeMap<String, String> {
    state
        .services
        .iter()
        .filter_map(|(name, s)| Some((name.clone(), format!("http://{}", s.public.as_ref()?))))
        .collect()
}

fn set(status: &mut CellStatus, type_: &str, ok: bool, reason: &str, message: &str) {
    status.set_condition(Condition {
        type_: type_.to_owned(),
        status: if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: OffsetDateTime::now_utc().format(&Rfc3339).ok(),
    });
}
