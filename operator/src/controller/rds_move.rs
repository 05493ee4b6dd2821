//! An `rds` cell's part in a move, made here rather than by CloudNativePG: in its available
//! instance as the master (`crate::roles::replication`), and for its artifacts in its bucket
//! (`crate::aws::Objects`). What it did reaches the conditions through [`RdsMove`]
//! (`migration.rs` reports them).
//!
//! ```text
//! source            migrator + publications                         → Published
//! target copy       subscriptions · objects copied from the source   → Replicating, CaughtUp
//!        sync       objects copied again, exactly (source fenced)    → InSync
//!        verify     both buckets hold the same keys and sizes        → Verified
//! no longer either  subscriptions, or publications + slots + migrator dropped; conditions go
//! ```

use cell_model::contract::Service;
use cell_model::move_conditions::{PUBLISHED, REPLICATING};
use cell_model::{Cell, MigrationPhase, MigrationRole};
use kube::ResourceExt;

use super::Context;
use crate::apply;
use crate::aws::{AwsClients, Bucket};
use crate::error::Error;
use crate::render;
use crate::render::migration::{
    MIGRATION_SOURCE_SECRET, MIGRATOR_ROLE, MIGRATOR_SECRET, SCHEMA_COPIED, role, target_phase,
};
use crate::roles::{MasterCredentials, Replication, Role, Server};

/// What [`rds`] did for an `rds` cell's move on this pass.
#[derive(Debug)]
pub(super) enum RdsMove {
    /// The source's migrator and publications (or why not yet).
    Published(Result<(), String>),
    /// The target's subscriptions, and its copy of the source's objects (how many the
    /// source holds), or why not yet.
    Subscribed {
        database: Result<(), String>,
        objects: Result<usize, String>,
    },
    /// The move's part of this instance removed: its conditions go.
    Ended,
}

/// The cell's instance, as its operator reaches it, and its bucket.
pub(super) struct Instance<'a> {
    pub aws: &'a AwsClients,
    pub server: &'a Server,
    pub master: &'a MasterCredentials,
    pub bucket: Option<&'a Bucket>,
}

/// The source publishes, a target whose schema Jobs succeeded subscribes and copies the
/// source's objects, and a cell that did either and is past it removes what it made.
/// `None`: nothing to do (or not yet).
pub(super) async fn rds(
    cell: &Cell,
    ctx: &Context,
    instance: Instance<'_>,
) -> Result<Option<RdsMove>, Error> {
    let Instance {
        aws,
        server,
        master,
        bucket,
    } = instance;
    let admin = aws.admin.as_ref();
    let databases = Service::ALL.map(Service::name);
    let value = |secret: &'static str, key: &'static str| async move {
        apply::secret_value(&ctx.client, cell, secret, key).await
    };
    let migrator = |secret: &'static str| async move {
        value(secret, "password")
            .await?
            .map(|p| Role {
                name: MIGRATOR_ROLE.to_owned(),
                password: p.into(),
            })
            .ok_or_else(|| Error::Render(format!("no password in Secret {secret} yet")))
    };
    let had = |type_: &str| {
        cell.status
            .as_ref()
            .is_some_and(|s| s.condition(type_).is_some())
    };
    let why = |e: anyhow::Error| format!("{e:#}");
    match (role(cell), target_phase(cell)) {
        (Some(MigrationRole::Source), _) => {
            let migrator = migrator(MIGRATOR_SECRET).await?;
            let step = Replication::Publish {
                migrator: &migrator,
            };
            let done = admin.replicate(server, master, &databases, step).await;
            Ok(Some(RdsMove::Published(done.map_err(why))))
        }
        (Some(MigrationRole::Target), Some(phase))
            if (MigrationPhase::Copy..MigrationPhase::Start).contains(&phase) =>
        {
            if !super::migration::condition_true(cell, SCHEMA_COPIED) {
                return Ok(None);
            }
            let migrator = migrator(MIGRATION_SOURCE_SECRET).await?;
            let source = Server {
                host: super::migration::source_host(cell)?,
                port: render::POSTGRES_PORT,
            };
            let step = Replication::Subscribe {
                source: &source,
                migrator: &migrator,
            };
            let database = admin.replicate(server, master, &databases, step).await;
            let from =
                crate::buckets::from_secret(&ctx.client, cell, MIGRATION_SOURCE_SECRET).await?;
            let objects = match (from, bucket) {
                (Some(from), Some(to)) => {
                    crate::buckets::copy(&aws.objects, &from, to, phase).await
                }
                (None, _) => Err("the source's migrator Secret names no bucket".to_owned()),
                (_, None) => Err("this cell's bucket is not there yet".to_owned()),
            };
            Ok(Some(RdsMove::Subscribed {
                database: database.map_err(why),
                objects,
            }))
        }
        (Some(MigrationRole::Target), _) if !had(REPLICATING) => Ok(None),
        _ => {
            let step = match (had(PUBLISHED), had(REPLICATING)) {
                (true, _) => Replication::Unpublish,
                (false, true) => Replication::Unsubscribe,
                (false, false) => return Ok(None),
            };
            match admin.replicate(server, master, &databases, step).await {
                Ok(()) => Ok(Some(RdsMove::Ended)),
                Err(e) => {
                    // Kept for the next pass (the conditions say there is something to end).
                    tracing::warn!(cell = %cell.name_any(), error = %why(e), "ending the move's replication");
                    Ok(None)
                }
            }
        }
    }
}
