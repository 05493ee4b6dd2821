//! A move between two `rds` cells, made by each side's operator as its instance's master
//! (no CloudNativePG runs there to do it), with the SQL the local driver runs (`pg_move`):
//!
//! ```text
//! source  Publish      role `migrator` (login, replication, member of the services' roles,
//!                      the password of the cell's `migrator-role` Secret) · publication
//!                      `mrbill_move` in every service database
//!         Unpublish    role dropped, its sessions ended, the slots `mrbill_move_<db>` and the
//!                      publications dropped (an aborted or finished move leaves nothing behind)
//! target  Subscribe    subscription `mrbill_move_<db>` in every service database, to the
//!                      source as the migrator over TLS (`sslmode=require`, as the services
//!                      reach RDS), slot `mrbill_move_<db>` there, rows copied first
//!         Unsubscribe  subscriptions dropped without reaching the source (its `Unpublish`
//!                      drops the slots)
//! ```
//!
//! RDS's master is not a superuser but a member of `rds_superuser`, which may create
//! subscriptions and grant `rds_replication`, and owns the services' tables through its
//! membership in their roles (so publications list the tables instead of `FOR ALL TABLES`,
//! which needs a superuser). A plain Postgres has no `rds_replication`: there the migrator gets
//! the `REPLICATION` attribute, and only a superuser may subscribe.

use anyhow::Context;
use secrecy::ExposeSecret;
use std::time::Duration;

use super::{MasterCredentials, Role, Server, connect, run_formatted};
use crate::render::migration::{MIGRATOR_ROLE, MOVE_PUBLICATION, slot};

/// One side's part of a move.
#[derive(Debug)]
pub enum Replication<'a> {
    /// The source: the migrator `role` and the publications.
    Publish { migrator: &'a Role },
    /// The source after its move (finished or aborted).
    Unpublish,
    /// The target: a subscription per database to `source`, as `migrator`.
    Subscribe {
        source: &'a Server,
        migrator: &'a Role,
    },
    /// The target once it starts (or is given up).
    Unsubscribe,
}

pub(super) async fn run(
    server: &Server,
    master: &MasterCredentials,
    databases: &[&str],
    step: Replication<'_>,
) -> anyhow::Result<()> {
    let at = format!("{}:{}", server.host, server.port);
    match step {
        Replication::Publish { migrator } => publish(server, master, databases, migrator)
            .await
            .with_context(|| format!("{at}: publishing")),
        Replication::Unpublish => unpublish(server, master, databases)
            .await
            .with_context(|| format!("{at}: removing the move's publications")),
        Replication::Subscribe { source, migrator } => {
            for database in databases {
                let db = connect(server, master, database).await?;
                let port = source.port.to_string();
                let conninfo = pg_move::conninfo(&[
                    ("host", &source.host),
                    ("port", &port),
                    ("dbname", database),
                    ("user", &migrator.name),
                    ("password", migrator.password.expose_secret()),
                    ("sslmode", "require"),
                ]);
                pg_move::subscribe(&db, &slot(database), &conninfo, MOVE_PUBLICATION)
                    .await
                    .with_context(|| format!("{at}: subscribing {database}"))?;
                db.close().await;
            }
            Ok(())
        }
        Replication::Unsubscribe => {
            for database in databases {
                let db = connect(server, master, database).await?;
                pg_move::unsubscribe(&db, &slot(database))
                    .await
                    .with_context(|| format!("{at}: unsubscribing {database}"))?;
                db.close().await;
            }
            Ok(())
        }
    }
}

async fn publish(
    server: &Server,
    master: &MasterCredentials,
    databases: &[&str],
    migrator: &Role,
) -> anyhow::Result<()> {
    let db = connect(server, master, "postgres").await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(&migrator.name)
            .fetch_one(&db)
            .await?;
    let verb = if exists { "ALTER" } else { "CREATE" };
    let statement = format!("{verb} ROLE %I WITH LOGIN PASSWORD %L");
    let password = migrator.password.expose_secret();
    run_formatted(&db, &statement, &migrator.name, password).await?;
    let rds: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication')",
    )
    .fetch_one(&db)
    .await?;
    match rds {
        true => run_formatted(&db, "GRANT rds_replication TO %I", &migrator.name, "").await?,
        false => run_formatted(&db, "ALTER ROLE %I REPLICATION", &migrator.name, "").await?,
    }
    // Reads every table of the services (their initial copy, and the move's checks).
    for database in databases {
        run_formatted(&db, "GRANT %I TO %I", database, &migrator.name).await?;
    }
    db.close().await;
    for database in databases {
        let db = connect(server, master, database).await?;
        pg_move::publish(&db, MOVE_PUBLICATION)
            .await
            .with_context(|| format!("in {database}"))?;
        db.close().await;
    }
    Ok(())
}

async fn unpublish(
    server: &Server,
    master: &MasterCredentials,
    databases: &[&str],
) -> anyhow::Result<()> {
    let db = connect(server, master, "postgres").await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(MIGRATOR_ROLE)
            .fetch_one(&db)
            .await?;
    if exists {
        // No new session as the migrator, then none left: a subscriber's holds its slot.
        run_formatted(&db, "ALTER ROLE %I NOLOGIN", MIGRATOR_ROLE, "").await?;
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
            .bind(MIGRATOR_ROLE)
            .execute(&db)
            .await?;
    }
    for database in databases {
        pg_move::drop_slot(&db, &slot(database), Duration::from_secs(10)).await?;
    }
    run_formatted(&db, "DROP ROLE IF EXISTS %I", MIGRATOR_ROLE, "").await?;
    db.close().await;
    for database in databases {
        let db = connect(server, master, database).await?;
        pg_move::unpublish(&db, MOVE_PUBLICATION).await?;
        db.close().await;
    }
    Ok(())
}
