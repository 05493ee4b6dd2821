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

use cell_model::contract::Service;
use cell_model::move_conditions::{CAUGHT_UP, FENCED, IN_SYNC, PUBLISHED, REPLICATING, VERIFIED};
use cell_model::{Cell, CellStatus, MigrationPhase, MigrationRole, Phase};

use super::*;
use crate::moves::Side;
use crate::render::migration::{
    MIGRATION_SOURCE_SECRET, MOVE_PUBLICATION, SCHEMA_COPIED, role, runs_services, target_phase,
};

pub(super) async fn conditions(
    cell: &Cell,
    ctx: &Context,
    status: &mut CellStatus,
) -> Result<(), Error> {
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
        (Some(MigrationRole::Source), _) => source(cell, ctx, status).await,
        (Some(MigrationRole::Target), Some(phase)) if phase < MigrationPhase::Start => {
            target(cell, ctx, status, phase).await
        }
        _ => Ok(()),
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

async fn source(cell: &Cell, ctx: &Context, status: &mut CellStatus) -> Result<(), Error> {
    let waiting = pending(cell, ctx, "Publication", moved, applied).await?;
    report(status, PUBLISHED, &waiting, "Publishing");
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
    let subscriptions = pending(cell, ctx, "Subscription", moved, applied).await?;
    report(status, REPLICATING, &subscriptions, "Subscribing");
    if !subscriptions.is_empty() {
        return Ok(());
    }
    let mut copying = Vec::new();
    let mut failed = Vec::new();
    let mut tables = 0;
    for service in Service::ALL.map(Service::name) {
        let (source, target) = sides(cell, ctx, service).await?;
        let checked = match phase {
            MigrationPhase::Copy => ctx.moves.copying(&target, MOVE_PUBLICATION).await.map(|n| {
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

/// A service database on both sides: the target's own URL and CA, the source's the same
/// credentials at the source's host with its CA.
async fn sides(cell: &Cell, ctx: &Context, service: &str) -> Result<(Side, Side), Error> {
    let missing = |what: &str| Error::Render(format!("the move's target has no {what} yet"));
    let client = &ctx.client;
    let url = apply::secret_value(client, cell, &render::database_secret(service), "url")
        .await?
        .ok_or_else(|| missing("database URL"))?;
    let ca = apply::secret_value(client, cell, render::POSTGRES_TLS_SECRET, "ca.crt")
        .await?
        .ok_or_else(|| missing("Postgres CA"))?;
    let source_ca = apply::secret_value(client, cell, MIGRATION_SOURCE_SECRET, "ca.crt")
        .await?
        .ok_or_else(|| missing("copy of the source's CA"))?;
    let host = cell
        .spec
        .migration
        .as_ref()
        .and_then(|m| m.source_host.clone())
        .ok_or_else(|| missing("source host"))?;
    let (before, after) = url
        .split_once('@')
        .ok_or_else(|| Error::Render("a database URL without credentials".into()))?;
    let rest = after.split_once(':').map_or("", |(_, r)| r);
    let source_url = format!("{before}@{host}:{rest}");
    Ok((
        Side {
            url: source_url,
            ca: source_ca,
        },
        Side { url, ca },
    ))
}
