//! A cell's part in a move, as conditions the control plane waits on (each for the spec's
//! current generation, like every condition here):
//!
//! ```text
//! source  Published     every Publication applied by CNPG
//!         Fenced        (fenced) no pod of any service left
//! target  SchemaCopied  every schema Job succeeded (then the Subscriptions are rendered)
//!         Replicating   every Subscription applied by CNPG
//!         CaughtUp      no table of any subscription still in its initial copy
//!         InSync        (phase sync) every table equal to the fenced source's; sequences copied
//!         Verified      (phase verify) compared once more
//! ```
//!
//! While a migration holds a cell's services (a fenced source, a target before `start`) its
//! phase is `Migrating` and `Ready` is false with reason `Migrating`.
//!
//! A target's artifacts: the source's bucket copied into its own (`crate::buckets`), part of
//! `CaughtUp`, `InSync` and `Verified`.
//!
//! An `rds` cell's publications, subscriptions and objects are made by `rds_move` (this
//! operator, as the instance's master and with S3) instead of CNPG; `Published`,
//! `Replicating` and the checks report what it did. Once the cell is no longer the move's
//! source (or a target before `start`), `rds_move` removes its part and the move's conditions
//! go with it.

use cell_model::contract::Service;
use cell_model::move_conditions::{CAUGHT_UP, FENCED, IN_SYNC, PUBLISHED, REPLICATING, VERIFIED};
use cell_model::{Cell, CellStatus, MigrationPhase, MigrationRole, Phase};

use super::rds_move::RdsMove;
use super::*;
use crate::moves::Side;
use crate::render::migration::{
    MIGRATION_SOURCE_SECRET, MIGRATOR_ROLE, MOVE_PUBLICATION, SCHEMA_COPIED, role, runs_services,
    slot, target_phase,
};

/// The conditions of a move, which [`RdsMove::Ended`] removes.
const MOVE_CONDITIONS: [&str; 7] = [
    PUBLISHED,
    FENCED,
    SCHEMA_COPIED,
    REPLICATING,
    CAUGHT_UP,
    IN_SYNC,
    VERIFIED,
];

pub(super) fn condition_true(cell: &Cell, type_: &str) -> bool {
    cell.status
        .as_ref()
        .and_then(|s| s.condition(type_))
        .is_some_and(|c| c.status == cell_model::ConditionStatus::True)
}

pub(super) fn source_host(cell: &Cell) -> Result<String, Error> {
    cell.spec
        .migration
        .as_ref()
        .and_then(|m| m.source_host.clone())
        .ok_or_else(|| Error::Render("the move's target has no source host yet".into()))
}

pub(super) async fn conditions(
    cell: &Cell,
    ctx: &Context,
    status: &mut CellStatus,
    rds: Option<RdsMove>,
) -> Result<(), Error> {
    if let Some(RdsMove::Ended) = rds {
        status
            .conditions
            .retain(|c| !MOVE_CONDITIONS.contains(&c.type_.as_str()));
    }
    if !cell.spec.suspended && !runs_services(cell) {
        status.phase = Phase::Migrating;
        set(
            status,
            "ServicesReady",
            false,
            "MigrationHold",
            "no pods while the move needs none",
        );
        let why = match role(cell) {
            Some(MigrationRole::Source) => "fenced: the tenant moves to another placement",
            _ => "the move's target: services start at its `start` step",
        };
        set(status, "Ready", false, "Migrating", why);
    }
    match (role(cell), target_phase(cell)) {
        (Some(MigrationRole::Source), _) => source(cell, ctx, status, rds).await,
        (Some(MigrationRole::Target), Some(phase)) if phase < MigrationPhase::Start => {
            target(cell, ctx, status, phase, rds).await
        }
        _ => Ok(()),
    }
}

fn rds_engine(cell: &Cell) -> bool {
    cell.spec.database.engine == cell_model::DatabaseEngine::Rds
}

/// What `rds_move` did, as a condition (nothing done on this pass: the condition stays).
fn report_rds(status: &mut CellStatus, type_: &str, done: Option<Result<(), String>>, doing: &str) {
    match done {
        Some(Ok(())) => set(status, type_, true, type_, ""),
        Some(Err(why)) => set(status, type_, false, doing, &why),
        None => {}
    }
}

/// Of the objects of `kind` named `name(service)` for every service, those not yet as `done`
/// says.
async fn pending(
    cell: &Cell,
    ctx: &Context,
    kind: &str,
    name: impl Fn(&str) -> String,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for service in Service::ALL.map(Service::name) {
        let name = name(service);
        let object = apply::get(&ctx.client, cell, kind, &name).await?;
        if !object.as_ref().is_some_and(&done) {
            out.push(name);
        }
    }
    Ok(out)
}

fn report(status: &mut CellStatus, type_: &str, waiting: &[String], doing: &str) {
    match waiting.is_empty() {
        true => set(status, type_, true, type_, ""),
        false => set(
            status,
            type_,
            false,
            doing,
            &format!("waiting for {}", waiting.join(", ")),
        ),
    }
}

fn moved(service: &str) -> String {
    format!("move-{service}")
}

fn applied(o: &serde_json::Value) -> bool {
    o["status"]["applied"] == true
}

async fn source(
    cell: &Cell,
    ctx: &Context,
    status: &mut CellStatus,
    rds: Option<RdsMove>,
) -> Result<(), Error> {
    if rds_engine(cell) {
        let done = match rds {
            Some(RdsMove::Published(done)) => Some(done),
            _ => None,
        };
        report_rds(status, PUBLISHED, done, "Publishing");
    } else {
        let waiting = pending(cell, ctx, "Publication", moved, applied).await?;
        report(status, PUBLISHED, &waiting, "Publishing");
    }
    if cell.spec.migration.as_ref().is_some_and(|m| m.fenced) {
        let mut running = Vec::new();
        for service in Service::ALL.map(Service::name) {
            let name = format!("{service}-service");
            let kind = crate::render::workload_kind(service);
            let workload = apply::get(&ctx.client, cell, kind, &name).await?;
            if workload.is_none_or(|w| w["status"]["replicas"].as_i64().unwrap_or(0) != 0) {
                running.push(name);
            }
        }
        report(status, FENCED, &running, "Stopping");
    }
    Ok(())
}

async fn target(
    cell: &Cell,
    ctx: &Context,
    status: &mut CellStatus,
    phase: MigrationPhase,
    rds: Option<RdsMove>,
) -> Result<(), Error> {
    if phase < MigrationPhase::Copy {
        return Ok(());
    }
    let schema = |s: &str| format!("schema-{s}");
    let jobs = pending(cell, ctx, "Job", schema, |j| {
        j["status"]["succeeded"].as_i64().unwrap_or(0) > 0
    })
    .await?;
    report(status, SCHEMA_COPIED, &jobs, "CopyingSchema");
    if !jobs.is_empty() {
        return Ok(());
    }
    // The target's copy of the source's objects: part of every check that follows.
    let mut objects = None;
    if rds_engine(cell) {
        let done = match rds {
            Some(RdsMove::Subscribed {
                database,
                objects: copied,
            }) => {
                objects = Some(copied);
                Some(database)
            }
            _ => None,
        };
        report_rds(status, REPLICATING, done, "Subscribing");
        if !status
            .condition(REPLICATING)
            .is_some_and(|c| c.status == cell_model::ConditionStatus::True)
        {
            return Ok(());
        }
    } else {
        let subscriptions = pending(cell, ctx, "Subscription", moved, applied).await?;
        report(status, REPLICATING, &subscriptions, "Subscribing");
        if !subscriptions.is_empty() {
            return Ok(());
        }
        let store = &ctx.images.object_store;
        let copied = crate::buckets::copy_in_cluster(&ctx.client, cell, store, phase).await?;
        objects = Some(copied);
    }
    let mut copying = Vec::new();
    let mut failed = Vec::new();
    let mut tables = 0;
    for service in Service::ALL.map(Service::name) {
        let (source, target) = sides(cell, ctx, service).await?;
        let subscription = match rds_engine(cell) {
            true => slot(service),
            false => MOVE_PUBLICATION.to_owned(),
        };
        let checked = match phase {
            MigrationPhase::Copy => ctx.moves.copying(&target, &subscription).await.map(|n| {
                if n > 0 {
                    copying.push(format!("{service} ({n} tables)"));
                }
                0
            }),
            MigrationPhase::Sync => ctx.moves.sync(&source, &target).await,
            _ => ctx.moves.verify(&source, &target).await,
        };
        match checked {
            Ok(n) => tables += n,
            Err(why) => failed.push(format!("{service}: {why}")),
        }
    }
    match objects {
        Some(Err(why)) => failed.push(format!("objects: {why}")),
        None => failed.push("objects: not copied on this pass".to_owned()),
        _ => {}
    }
    let (type_, doing) = match phase {
        MigrationPhase::Copy => (CAUGHT_UP, "Copying"),
        MigrationPhase::Sync => (IN_SYNC, "Syncing"),
        _ => (VERIFIED, "Verifying"),
    };
    copying.extend(failed);
    match copying.is_empty() {
        true => set(status, type_, true, type_, &format!("{tables} tables")),
        false => set(status, type_, false, doing, &copying.join("; ")),
    }
    Ok(())
}

/// A service database on both sides: the target's own URL, and the source's at its host —
/// in-cluster with the same credentials (the identity holds them) and each side's CA, on RDS
/// as the migrator (each instance has its own passwords), TLS required as the services do.
async fn sides(cell: &Cell, ctx: &Context, service: &str) -> Result<(Side, Side), Error> {
    let missing = |what: &str| Error::Render(format!("the move's target has no {what} yet"));
    let client = &ctx.client;
    let url = apply::secret_value(client, cell, &render::database_secret(service), "url")
        .await?
        .ok_or_else(|| missing("database URL"))?;
    let host = source_host(cell)?;
    let (before, after) = url
        .split_once('@')
        .ok_or_else(|| Error::Render("a database URL without credentials".into()))?;
    if rds_engine(cell) {
        let password = apply::secret_value(client, cell, MIGRATION_SOURCE_SECRET, "password")
            .await?
            .ok_or_else(|| missing("copy of the source's migrator password"))?;
        let source_url = format!(
            "postgres://{MIGRATOR_ROLE}:{password}@{host}:{}/{service}?sslmode=require",
            render::POSTGRES_PORT
        );
        let source = Side {
            url: source_url,
            ca: None,
        };
        return Ok((source, Side { url, ca: None }));
    }
    let ca = apply::secret_value(client, cell, render::POSTGRES_TLS_SECRET, "ca.crt")
        .await?
        .ok_or_else(|| missing("Postgres CA"))?;
    let source_ca = apply::secret_value(client, cell, MIGRATION_SOURCE_SECRET, "ca.crt")
        .await?
        .ok_or_else(|| missing("copy of the source's CA"))?;
    let rest = after.split_once(':').map_or("", |(_, r)| r);
    let source_url = format!("{before}@{host}:{rest}");
    Ok((
        Side {
            url: source_url,
            ca: Some(source_ca),
        },
        Side { url, ca: Some(ca) },
    ))
}
