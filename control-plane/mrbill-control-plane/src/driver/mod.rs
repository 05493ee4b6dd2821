//! The seam between the reconciler and where cells run. A driver names the steps of each
//! operation and runs them; the reconciler records them, runs the two steps every driver
//! shares (the route and the catalog), and folds what the driver observes into the catalog.
//!
//! ```text
//! reconciler ──steps(op) / run(step) / migrate(step) / settle / watch──► dyn CellDriver ─┬─ local::LocalDriver  (processes + a supervisor per cell)
//!                                                                                        └─ kubernetes::KubeDriver (a `Cell` resource per cell)
//! ```
//!
//! **Invariant:** every step a driver runs is idempotent (the reconciler re-runs the first
//! unrecorded step after a crash), and nothing outside this module branches on the driver.

pub mod kubernetes;
pub mod local;

use std::collections::BTreeMap;
use std::path::Path;

use cell_model::route_feed::Endpoints;
use cell_model::{CellSpec, Condition, Phase};

use crate::catalog::Op;

/// A step not done yet because what it waits for is under way (the operator, a copy): the
/// reconciler retries it like a failure but counts it as waiting, not failed
/// (`mrbill_reconcile_step_duration_seconds{outcome="waiting"}`; only failures count towards
/// `mrbill_reconcile_step_failures_total`).
#[derive(Debug)]
pub struct Waiting(pub String);

impl std::fmt::Display for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Waiting {}

/// A [`Waiting`] error saying what the step waits for.
pub fn waiting(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Waiting(message.into()))
}

/// Whether `error` (or what it wraps) is a [`Waiting`].
pub fn is_waiting(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.is::<Waiting>())
}

/// A future the driver returns (boxed: the reconciler holds drivers as `dyn CellDriver`).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// One step of an operation, recorded in the catalog under [`Step::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Shared: the tenant's route is published, suspended or removed (the reconciler runs it).
    Route,
    /// Shared: the tenant and its cell leave the catalog (the reconciler runs it, last).
    Catalog,
    /// Local: the cell's directories, secrets and `cell.json`.
    Secrets,
    /// Local: the cell's Postgres cluster exists (`initdb`).
    Cluster,
    /// Local: a supervisor runs the cell, and its Postgres accepts connections.
    Supervisor,
    /// Local: a role and a database per service.
    Databases,
    /// Local: the services run (or are stopped) and answer `/readyz`.
    Services,
    /// Local: the databases, objects and secrets are dumped to the tenant's backup path.
    Backup,
    /// Local: the supervisor, its services and Postgres have stopped.
    Stop,
    /// Local: the cell's directory is removed.
    Files,
    /// Local: instances beyond the wanted replicas stop (after the route dropped them).
    Prune,
    /// Kubernetes: the `Cell` resource is applied (or deleted).
    Cell,
    /// Kubernetes: the operator reports the current generation ready.
    Ready,
    /// Kubernetes: the `Cell` resource is gone.
    Gone,
    /// Migration: the target cell exists with the source's identity; its services do not run.
    Target,
    /// Migration: the target's schema, replication from the source, the objects' first copy.
    Copy,
    /// Migration: the initial copy is done and the target is close behind the source.
    CatchUp,
    /// Migration, shared: the route is frozen (routers hold the tenant's requests).
    Freeze,
    /// Migration: the source's services stop (in-flight requests finish, sockets close).
    Fence,
    /// Migration: the target has everything the source wrote (data, sequences, objects,
    /// search index).
    Sync,
    /// Migration: per-table row counts and checksums, and object manifests, match.
    Verify,
    /// Migration: replication ends and the target's services run.
    Start,
    /// Migration, shared: the route points at the target and is active; the catalog follows.
    Switch,
    /// Migration, shared: the source is kept stopped for a grace period, then removed.
    Retire,
    /// Abort: the source's services run again.
    Unfence,
    /// Abort, shared: the route is active again, pointing at the source.
    Unfreeze,
    /// Abort: the target cell and the replication are gone.
    Discard,
    /// Abort, shared: the target placement's units are free again.
    Release,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Route => "route",
            Step::Catalog => "catalog",
            Step::Secrets => "secrets",
            Step::Cluster => "cluster",
            Step::Supervisor => "supervisor",
            Step::Databases => "databases",
            Step::Services => "services",
            Step::Backup => "backup",
            Step::Stop => "stop",
            Step::Files => "files",
            Step::Prune => "prune",
            Step::Cell => "cell",
            Step::Ready => "ready",
            Step::Gone => "gone",
            Step::Target => "target",
            Step::Copy => "copy",
            Step::CatchUp => "catch-up",
            Step::Freeze => "freeze",
            Step::Fence => "fence",
            Step::Sync => "sync",
            Step::Verify => "verify",
            Step::Start => "start",
            Step::Switch => "switch",
            Step::Retire => "retire",
            Step::Unfence => "unfence",
            Step::Unfreeze => "unfreeze",
            Step::Discard => "discard",
            Step::Release => "release",
        }
    }
}

/// What a step works on: the cell's desired state, the placement it runs on (during a
/// migration, the source's or the target's), and where a deleted tenant's backup goes.
#[derive(Clone, Copy, Debug)]
pub struct Work<'a> {
    pub spec: &'a CellSpec,
    pub placement: &'a str,
    pub backup: Option<&'a Path>,
}

impl<'a> Work<'a> {
    pub fn new(spec: &'a CellSpec, placement: &'a str) -> Self {
        Self {
            spec,
            placement,
            backup: None,
        }
    }
}

/// What a driver sees of a cell, folded into the catalog's status by the reconciler.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// Replaces the recorded conditions of the same types.
    pub conditions: Vec<Condition>,
    /// Where each service answers (for `cell show`); `None`: leave as recorded.
    pub services: Option<BTreeMap<String, String>>,
    /// The phase, when the driver knows it; `None`: leave as recorded.
    pub phase: Option<Phase>,
    /// The route's service URLs, when the cell serves (the reconciler publishes them).
    pub serving: Option<Endpoints>,
}

/// A migration's cell and its two placements.
#[derive(Clone, Copy, Debug)]
pub struct Move<'a> {
    pub spec: &'a CellSpec,
    pub source: &'a str,
    pub target: &'a str,
}

/// A restore's cell, where it runs, the backup it brings back (its [`Taken::location`]),
/// the time to replay it to (drivers with [`CellDriver::point_in_time`]) and the restore's id.
#[derive(Clone, Copy, Debug)]
pub struct Restoring<'a> {
    pub spec: &'a CellSpec,
    pub placement: &'a str,
    pub backup: &'a str,
    pub to_time: Option<time::OffsetDateTime>,
    pub id: uuid::Uuid,
    /// The restore the cell's spec named before this one (an undo puts it back).
    pub previous: Option<&'a cell_model::CellRestore>,
}

/// A complete backup: the moment its databases show, its size (where the driver knows it),
/// and where it is (a directory, a CloudNativePG `Backup`'s name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    pub taken_at: time::OffsetDateTime,
    pub bytes: Option<u64>,
    pub location: String,
}

/// A condition as drivers report it, stamped now.
pub fn condition(type_: &str, ok: bool, reason: &str) -> Condition {
    use time::format_description::well_known::Rfc3339;
    Condition {
        type_: type_.to_owned(),
        status: if ok {
            cell_model::ConditionStatus::True
        } else {
            cell_model::ConditionStatus::False
        },
        reason: reason.to_owned(),
        message: String::new(),
        last_transition_time: time::OffsetDateTime::now_utc().format(&Rfc3339).ok(),
    }
}

/// Where cells run. See the module doc for the contract.
pub trait CellDriver: Send + Sync + std::fmt::Debug + 'static {
    /// The steps of `op`, in order (the shared [`Step::Route`] and [`Step::Catalog`] included).
    fn steps(&self, op: Op) -> &'static [Step];

    /// Runs one of this driver's steps of `op`. Safe to repeat.
    fn run<'a>(&'a self, work: Work<'a>, op: Op, step: Step) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Where the cell's services answer once it serves; an error says what it still waits for.
    fn service_urls<'a>(&'a self, work: Work<'a>) -> BoxFuture<'a, anyhow::Result<Endpoints>>;

    /// What the cell looks like once an operation has brought it to `serving` (or stopped it).
    fn settle<'a>(
        &'a self,
        work: Work<'a>,
        serving: bool,
    ) -> BoxFuture<'a, anyhow::Result<Observation>>;

    /// A health check of an idle cell in `phase`: repairs what the driver repairs (a dead
    /// supervisor, a resource deleted behind the control plane's back) and reports what runs.
    /// `None`: nothing to report this time.
    fn watch<'a>(
        &'a self,
        work: Work<'a>,
        phase: Phase,
    ) -> BoxFuture<'a, anyhow::Result<Option<Observation>>>;

    /// Where a tenant's cell is dumped before it is deleted; `None`: this driver keeps none.
    fn backup_destination(&self, tenant: &str, cell_id: &str) -> Option<std::path::PathBuf>;

    /// Whether this driver moves cells between placements ([`CellDriver::migrate`]).
    fn migrates(&self) -> bool {
        false
    }

    /// Runs one of the driver's steps of a migration (`migrate.rs` orders them: target →
    /// copy → catch-up → fence → sync → verify → start; an abort runs unfence → discard).
    /// Safe to repeat; the source keeps serving until fence, and is untouched by an abort.
    fn migrate<'a>(&'a self, mv: Move<'a>, step: Step) -> BoxFuture<'a, anyhow::Result<()>> {
        let _ = (mv, step);
        Box::pin(async { anyhow::bail!("this driver does not move cells between placements") })
    }

    /// Whether this driver takes backups of running cells and restores them
    /// ([`CellDriver::back_up`], [`CellDriver::restore`]).
    fn backs_up(&self) -> bool {
        false
    }

    /// Whether a deleted tenant whose cell was `spec` comes back from the cell's backup at
    /// `location` through [`CellDriver::restore`] (it outlived the cell).
    fn restores_deleted(&self, spec: &cell_model::CellSpec, location: &str) -> bool {
        let _ = (spec, location);
        false
    }

    /// Backs up a running cell as backup `id` (every service's database as one moment; on the
    /// local driver with its checksums, objects and identity too). Safe to repeat; reads the
    /// cell, never starts or stops it.
    fn back_up<'a>(
        &'a self,
        work: Work<'a>,
        id: uuid::Uuid,
    ) -> BoxFuture<'a, anyhow::Result<Taken>> {
        let _ = (work, id);
        Box::pin(async { anyhow::bail!("this driver takes no backups") })
    }

    /// Removes the backup at `location` (of `tenant`'s cell in `placement`); gone already is
    /// fine.
    fn forget_backup<'a>(
        &'a self,
        tenant: &'a str,
        placement: &'a str,
        location: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        let _ = (tenant, placement);
        Box::pin(async move {
            match tokio::fs::remove_dir_all(location).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            }
        })
    }

    /// Whether a restore replays the cell's archive to any time (`to_time`), rather than
    /// bringing back the newest backup at or before it.
    fn point_in_time(&self) -> bool {
        false
    }

    /// Runs one of the driver's steps of a restore (`restore.rs` orders them: fence → target
    /// → copy → verify → start). Safe to repeat.
    fn restore<'a>(&'a self, r: Restoring<'a>, step: Step) -> BoxFuture<'a, anyhow::Result<()>> {
        let _ = (r, step);
        Box::pin(async { anyhow::bail!("this driver does not restore backups") })
    }

    /// Whether a restore can be undone before its switch ([`CellDriver::unrestore`]): the
    /// cell as it was is kept until then.
    fn unrestores(&self) -> bool {
        false
    }

    /// Runs one of the driver's steps undoing a restore (`backups.rs` orders them: unfence →
    /// discard). Safe to repeat.
    fn unrestore<'a>(&'a self, r: Restoring<'a>, step: Step) -> BoxFuture<'a, anyhow::Result<()>> {
        let _ = (r, step);
        Box::pin(async { anyhow::bail!("this driver does not undo restores") })
    }

    /// Once a restore is undone: the restore the cell's spec names now (the catalog records
    /// it), `None` for none. The local driver's cell names none; a Kubernetes cell names the
    /// restore before, or the one that undid it.
    fn undone_restore<'a>(
        &'a self,
        r: Restoring<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Option<cell_model::CellRestore>>> {
        let _ = r;
        Box::pin(async { Ok(None) })
    }

    /// Driver-specific detail for `cell show` (the local supervisor's state).
    fn details(&self, placement: &str, cell_id: &str) -> Option<serde_json::Value>;
}

#[cfg(test)]
mod waiting_tests {
    use super::*;

    #[test]
    fn a_wait_is_told_apart_from_a_failure_through_context() {
        use anyhow::Context as _;
        let wait: anyhow::Result<()> = Err(waiting("waiting for the operator"));
        let wrapped = wait.context("restore step fence").expect_err("an error");
        assert!(is_waiting(&wrapped));
        assert!(!is_waiting(&anyhow::anyhow!(
            "restoring Cell c: Failed (gone)"
        )));
    }
}
