//! The controller: one reconcile per `Cell`, driven by kube-runtime's `Controller` (a change to
//! the Cell, or to one of its Deployments, StatefulSets or CloudNativePG Clusters, queues it).
//!
//! ```text
//! paused?            → nothing is written (annotation mrbill.dev/paused=true)
//! being deleted?     → retain its database volumes → delete namespace cell-<tenant> → wait
//!                      until gone → drop finalizer
//! otherwise          → finalizer → Namespace → missing Secrets (create-only) → every other
//!                      object (server-side apply, owned by the Cell) → prune → status
//! ```
//!
//! **Invariants:** every write is idempotent (SSA under the `cell-operator` field manager), so
//! a reconcile may run any number of times, and two operators briefly overlapping during a
//! rollout write the same objects; Secrets are never overwritten; nothing is written while a
//! Cell is paused. The operator runs as a single replica (`Recreate` strategy in the chart)
//! instead of electing a leader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cell_model::{Cell, CellStatus, ConditionStatus, DatabaseEngine, Phase};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::apply::{self, FIELD_MANAGER, MANAGED_BY};
use crate::error::Error;

mod backups;
mod deletion;
mod kept;
mod migration;
mod observe;
mod rds_move;
mod rds_restore;
mod rds_return;
mod restore;
use crate::aws::{AwsClients, InstanceState, StackState};
use crate::render::{self, Images};
use deletion::{cleanup, ensure_finalizer};
use observe::*;

/// Set to `"true"` on a Cell to stop the operator from writing anything for it.
pub const PAUSED_ANNOTATION: &str = "mrbill.dev/paused";
/// Held by every Cell until its namespace is gone.
pub const FINALIZER: &str = "cells.mrbill.dev/cleanup";

/// How often a healthy cell is reconciled anyway (drift correction).
const RESYNC: Duration = Duration::from_secs(300);
/// How soon a cell that is still starting (or being deleted) is looked at again.
const WAIT: Duration = Duration::from_secs(10);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub images: Images,
    /// AWS resources of `rds` cells; `None` when the operator has no AWS settings.
    pub aws: Option<AwsClients>,
    /// The SQL checks of a move's target.
    pub moves: Arc<dyn crate::moves::MoveChecks>,
    recorder: Recorder,
    /// Consecutive failures per Cell (for the retry backoff); cleared by a success.
    failures: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("images", &self.images)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// `instance` names this operator process in Events (its pod name).
    pub fn new(
        client: Client,
        images: Images,
        aws: Option<AwsClients>,
        instance: Option<String>,
    ) -> Arc<Self> {
        Self::with_moves(
            client,
            images,
            aws,
            instance,
            Arc::new(crate::moves::PgMoves),
        )
    }

    /// [`Context::new`] with the move checks given (tests script them).
    pub fn with_moves(
        client: Client,
        images: Images,
        aws: Option<AwsClients>,
        instance: Option<String>,
        moves: Arc<dyn crate::moves::MoveChecks>,
    ) -> Arc<Self> {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            images,
            aws,
            moves,
            failures: Mutex::default(),
        })
    }

    fn failures(&self, cell: &str, failed: bool) -> u32 {
        let Ok(mut map) = self.failures.lock() else {
            return 0;
        };
        if failed {
            let n = map.entry(cell.to_owned()).or_default();
            *n = n.saturating_add(1);
            *n
        } else {
            map.remove(cell);
            0
        }
    }
}

/// Runs the controller until SIGTERM/SIGINT.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let children =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
    // CNPG's Clusters: a cell's Postgres becoming ready (or not) is seen at once.
    let (postgres, _) = apply::resource("Cluster").expect("Cluster is a managed kind");
    Controller::new(Api::<Cell>::all(client.clone()), watcher::Config::default())
        .watches(
            Api::<Deployment>::all(client.clone()),
            children.clone(),
            |d| owning_cells(&d),
        )
        .watches(
            Api::<StatefulSet>::all(client.clone()),
            children.clone(),
            |s| owning_cells(&s),
        )
        .watches_with(
            Api::<DynamicObject>::all_with(client, &postgres),
            postgres.clone(),
            children,
            |c| owning_cells(&c),
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile did not complete");
            }
        })
        .await;
}

/// The Cells owning `object` (cluster-scoped: the child's namespace is not theirs).
fn owning_cells<K: Resource>(object: &K) -> Vec<ObjectRef<Cell>> {
    object
        .owner_references()
        .iter()
        .filter(|o| o.kind == "Cell" && o.api_version == Cell::api_version(&()))
        .map(|o| ObjectRef::new(&o.name))
        .collect()
}

/// One reconcile of one Cell; records metrics, and on failure a condition and an Event.
pub async fn reconcile(cell: Arc<Cell>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    if is_paused(&cell) {
        tracing::info!(cell = %cell.name_any(), "paused; nothing written");
        metrics::counter!("cell_operator_reconciles_total", "result" => "paused").increment(1);
        return Ok(Action::await_change());
    }
    let result = if cell.meta().deletion_timestamp.is_some() {
        cleanup(&cell, &ctx).await
    } else {
        converge(&cell, &ctx).await
    };
    metrics::histogram!("cell_operator_reconcile_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => {
            metrics::counter!("cell_operator_reconciles_total", "result" => "ok").increment(1);
            ctx.failures(&cell.name_any(), false);
        }
        Err(e) => {
            metrics::counter!("cell_operator_reconciles_total", "result" => "error").increment(1);
            metrics::counter!("cell_operator_reconcile_failures_total", "reason" => e.reason())
                .increment(1);
            tracing::warn!(cell = %cell.name_any(), reason = %e.reason(), error = %e, "reconcile failed");
            report_failure(&cell, &ctx, e).await;
        }
    }
    result
}

/// Retries a failed Cell with exponential backoff: 2 s, 4 s, … up to 5 minutes.
pub fn error_policy(cell: Arc<Cell>, _error: &Error, ctx: Arc<Context>) -> Action {
    let n = ctx.failures(&cell.name_any(), true);
    Action::requeue(retry_delay(n))
}

/// The delay before retry number `n` (1-based).
pub fn retry_delay(n: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(n.min(9)).min(300))
}

fn is_paused(cell: &Cell) -> bool {
    cell.annotations()
        .get(PAUSED_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// Where an `rds` cell's AWS resources are.
enum Aws {
    NotConfigured,
    /// The stack, and the instance once the stack is ready.
    Foundation(StackState, Option<InstanceState>),
}

async fn converge(cell: &Cell, ctx: &Context) -> Result<Action, Error> {
    ensure_finalizer(cell, ctx).await?;
    // A cell whose Postgres is the StatefulSet from before CloudNativePG: converging would
    // prune it and start an empty Cluster, so nothing is touched until its data is moved.
    if cell.spec.database.engine == DatabaseEngine::InCluster
        && apply::get(&ctx.client, cell, "StatefulSet", "postgres")
            .await?
            .is_some()
    {
        let mut status = cell.status.clone().unwrap_or_default();
        let message = "its Postgres is the StatefulSet from before CloudNativePG: dump its                        databases and restore them into a new cell; nothing is changed meanwhile";
        set(&mut status, "Reconciled", false, "LegacyPostgres", message);
        if Some(&status) != cell.status.as_ref() {
            write_status(cell, ctx, &status).await?;
            publish(ctx, cell, EventType::Warning, "LegacyPostgres", message).await;
        }
        return Ok(Action::requeue(RESYNC));
    }
    // A restore replacing the database holds the Cluster (neither applied nor pruned) while
    // everything else converges: a suspended cell's services stop first.
    let mut replacing = restore::replacing(ctx, cell).await?;
    let mut rds_secrets = None;
    let mut point = rds_restore::Point::Settled;
    // An rds cell's artifacts bucket (its stack's), once the stack is ready.
    let mut bucket = None;
    let aws = match (&cell.spec.database.engine, &ctx.aws) {
        (DatabaseEngine::Rds, None) => Some(Aws::NotConfigured),
        (DatabaseEngine::Rds, Some(aws)) => {
            let stack = aws.foundation.ensure(cell).await?;
            let instance = match &stack {
                StackState::Ready(outputs) => {
                    bucket = outputs.get("BucketName").map(|name| crate::aws::Bucket {
                        name: name.clone(),
                        region: aws.region.clone(),
                        store: None,
                    });
                    // An rds cell's restore replaces its instance; until it exists, nothing
                    // makes one or writes to it.
                    replacing = rds_restore::replacing(ctx, cell, aws, outputs).await?;
                    if replacing.is_some() {
                        None
                    } else {
                        let master = aws.master_credentials(cell).await?;
                        let instance = aws.rds.ensure(cell, outputs, &master).await?;
                        if let InstanceState::Available { address, port, .. } = &instance {
                            rds_secrets = Some((address.clone(), *port, master));
                            point = rds_restore::restore_point(aws, cell).await?;
                        }
                        Some(instance)
                    }
                }
                _ => None,
            };
            Some(Aws::Foundation(stack, instance))
        }
        _ => None,
    };
    if let Some(Aws::Foundation(StackState::Failed { status, reason }, _)) = &aws {
        // Recorded, then retried with backoff (the failed stack was cleared for a new attempt).
        let mut status_now = cell.status.clone().unwrap_or_default();
        let message = format!("{status}: {reason}");
        set(
            &mut status_now,
            "DatabaseReady",
            false,
            "FoundationFailed",
            &message,
        );
        write_status(cell, ctx, &status_now).await?;
        return Err(Error::Aws {
            action: format!("creating the AWS foundation of {}", cell.name_any()),
            code: "FoundationFailed".into(),
            message,
        });
    }
    let mut desired = render::desired(cell, &ctx.images);
    if let Some(Aws::Foundation(StackState::Ready(outputs), _)) = &aws {
        desired = render::with_foundation(cell, desired, outputs);
    }
    let desired = backups::with_backups(ctx, cell, desired).await?;
    let (first, rest) = desired.split_at(render::before_secrets(&desired));
    if first.is_empty() {
        return Err(Error::Render("no namespace rendered".into()));
    }
    for object in first {
        apply::apply(&ctx.client, cell, object.clone()).await?;
    }
    // A move's target waits for its source's identity (the control plane copies it).
    if render::migration::target_phase(cell).is_some() {
        let missing = apply::missing_identity(&ctx.client, cell).await?;
        if !missing.is_empty() {
            let mut status = cell.status.clone().unwrap_or_default();
            status.observed_generation = cell.meta().generation;
            status.phase = Phase::Migrating;
            let message = format!("waiting for the source's {}", missing.join(", "));
            set(&mut status, "Ready", false, "IdentityPending", &message);
            if Some(&status) != cell.status.as_ref() {
                write_status(cell, ctx, &status).await?;
            }
            return Ok(Action::requeue(WAIT));
        }
    }
    // A deleted cell's return gets its identity back from its record, never a new one.
    let mut created = Vec::new();
    if restore::returning(cell) {
        match kept::identity(ctx, cell).await? {
            Ok(kept) => created.extend(kept),
            Err(why) => {
                let mut status = cell.status.clone().unwrap_or_default();
                status.observed_generation = cell.meta().generation;
                // Terminal: the record is written before a deleted cell's namespace goes.
                set(&mut status, cell_model::RESTORED, false, "Failed", &why);
                if Some(&status) != cell.status.as_ref() {
                    write_status(cell, ctx, &status).await?;
                }
                return Ok(Action::requeue(WAIT));
            }
        }
    }
    created.extend(apply::create_missing_secrets(&ctx.client, cell).await?);
    if render::migration::role(cell) == Some(cell_model::MigrationRole::Source) {
        let instance = rds_secrets
            .as_ref()
            .zip(bucket.as_ref())
            .map(|((host, _, _), bucket)| (host.as_str(), bucket));
        if cell.spec.database.engine == DatabaseEngine::InCluster || instance.is_some() {
            let store = &ctx.images.object_store;
            let secret = apply::create_missing_migrator_secret(&ctx.client, cell, instance, store);
            created.extend(secret.await?);
        }
    }
    if let Some(mail) = &ctx.images.mail {
        created.extend(apply::create_missing_smtp_secret(&ctx.client, cell, mail).await?);
    }
    let mut roles = None;
    if let (Some((host, port, master)), Some(aws)) = (&rds_secrets, &ctx.aws) {
        let fresh = apply::create_missing_rds_secrets(&ctx.client, cell, host, *port).await?;
        let instance = (host.as_str(), *port);
        roles = Some(rds_roles(cell, ctx, aws, instance, master, !fresh.is_empty()).await?);
        created.extend(fresh);
    }
    let mut moving = None;
    if let (Some((host, port, master)), Some(aws), Some(Ok(()))) = (&rds_secrets, &ctx.aws, &roles)
    {
        let server = crate::roles::Server {
            host: host.clone(),
            port: u16::try_from(*port).unwrap_or(render::POSTGRES_PORT),
        };
        let instance = rds_move::Instance {
            aws,
            server: &server,
            master,
            bucket: bucket.as_ref(),
        };
        moving = rds_move::rds(cell, ctx, instance).await?;
    }
    if !created.is_empty() {
        tracing::info!(cell = %cell.name_any(), secrets = ?created, "secrets generated");
        publish(
            ctx,
            cell,
            EventType::Normal,
            "SecretsGenerated",
            &format!("created {}", created.join(", ")),
        )
        .await;
    }
    for object in rest {
        if replacing.is_some() && object["kind"] == "Cluster" {
            continue;
        }
        apply::apply(&ctx.client, cell, object.clone()).await?;
    }
    let pruned = apply::prune(&ctx.client, cell, &desired).await?;
    if !pruned.is_empty() {
        tracing::info!(cell = %cell.name_any(), objects = ?pruned, "pruned");
    }

    let previous = cell.status.clone().unwrap_or_default();
    let mut status = observe(cell, ctx, &previous, aws.as_ref(), roles, moving).await?;
    if replacing.is_none() {
        backups::keep_objects(ctx, cell, &mut status).await?;
    }
    if let Some((reason, message)) = &replacing {
        set(&mut status, cell_model::RESTORED, false, reason, message);
        let before = previous
            .condition(cell_model::RESTORED)
            .map(|c| c.reason.as_str());
        if *reason == "Failed" && before != Some("Failed") {
            publish(ctx, cell, EventType::Warning, "RestoreFailed", message).await;
        }
    } else {
        rds_restore::observe(cell, &mut status);
    }
    if let rds_restore::Point::Restorable(moment) = &point {
        status.restore_point = Some(moment.clone());
    }
    let ready = status.phase == Phase::Ready;
    if let Some(event) = transition(&previous, &status) {
        publish(ctx, cell, event.0, event.1, event.2).await;
    }
    if status != previous {
        write_status(cell, ctx, &status).await?;
    }
    // A move's target in sync or verify holds the tenant's requests: look again at once.
    let urgent = matches!(
        render::migration::target_phase(cell),
        Some(cell_model::MigrationPhase::Sync | cell_model::MigrationPhase::Verify)
    );
    Ok(Action::requeue(if replacing.is_some() {
        // Nothing watched says when the old volumes (or instance) are gone.
        Duration::from_secs(2)
    } else if point == rds_restore::Point::Pending {
        // RDS ships an instance's transaction logs every 5 minutes.
        Duration::from_secs(30)
    } else if ready || cell.spec.suspended {
        RESYNC
    } else if urgent {
        Duration::from_millis(200)
    } else {
        WAIT
    }))
}

async fn write_status(cell: &Cell, ctx: &Context, status: &CellStatus) -> Result<(), Error> {
    let body = json!({
        "apiVersion": Cell::api_version(&()),
        "kind": Cell::kind(&()),
        "status": status,
    });
    Api::<Cell>::all(ctx.client.clone())
        .patch_status(
            &cell.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|source| {
            Error::kube(
                format!("writing the status of Cell {}", cell.name_any()),
                source,
            )
        })?;
    Ok(())
}

/// Best effort: a failure condition on the Cell and a Warning Event (the API server may be the
/// thing that is failing).
async fn report_failure(cell: &Cell, ctx: &Context, error: &Error) {
    publish(
        ctx,
        cell,
        EventType::Warning,
        "ReconcileFailed",
        &error.to_string(),
    )
    .await;
    if cell.meta().deletion_timestamp.is_some() && cell.status.is_none() {
        return;
    }
    let mut status = cell.status.clone().unwrap_or_default();
    set(
        &mut status,
        "Reconciled",
        false,
        &error.reason(),
        &error.to_string(),
    );
    if status
        .condition("Ready")
        .is_none_or(|c| c.status != ConditionStatus::True)
    {
        set(
            &mut status,
            "Ready",
            false,
            "ReconcileFailed",
            &error.to_string(),
        );
    }
    if let Err(e) = write_status(cell, ctx, &status).await {
        tracing::warn!(cell = %cell.name_any(), error = %e, "could not record the failure");
    }
}

async fn publish(ctx: &Context, cell: &Cell, type_: EventType, reason: &str, note: &str) {
    let reference: ObjectReference = cell.object_ref(&());
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        tracing::warn!(cell = %cell.name_any(), error = %e, "could not publish an event");
    }
}
