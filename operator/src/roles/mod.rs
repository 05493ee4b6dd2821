//! Each service's role and database in an `rds` cell's instance, made by the operator itself as
//! the instance's master user over TLS. The master password never leaves the operator: no
//! Secret, Job or pod in the cell's namespace holds it (a compromised cell service holds only
//! its own role's password).
//!
//! Idempotent, and it converges: a role that exists gets the password of its Secret again (so
//! deleting a service's database Secret rolls its password), a database that exists is kept.
//! Works as RDS's master (`CREATEROLE`, `CREATEDB`, not a superuser) on Postgres 15 and 16.
//!
//! A move's replication between two `rds` cells' instances is made the same way, as each
//! instance's master ([`replication`]).

pub mod replication;
pub use replication::Replication;

use std::future::Future;
use std::pin::Pin;

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

/// The master credentials an instance is created with (from the foundation's secret).
#[derive(Clone)]
pub struct MasterCredentials {
    pub username: String,
    pub password: secrecy::SecretString,
}

impl std::fmt::Debug for MasterCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Where the instance listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    pub port: u16,
}

/// A service's role (also its database's name) and the password its Secret holds.
#[derive(Debug)]
pub struct Role {
    pub name: String,
    pub password: SecretString,
}

/// What [`DatabaseAdmin::ensure_roles`] returns.
pub type Done<'a> = Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + 'a>>;

/// What [`DatabaseAdmin::replicate`] returns.
pub type Replicated<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// Makes the services' roles and databases in an instance, and a move's replication.
pub trait DatabaseAdmin: Send + Sync {
    fn ensure_roles<'a>(
        &'a self,
        server: &'a Server,
        master: &'a MasterCredentials,
        roles: &'a [Role],
    ) -> Done<'a>;

    /// One side's part of a move, in each of `databases`.
    fn replicate<'a>(
        &'a self,
        server: &'a Server,
        master: &'a MasterCredentials,
        databases: &'a [&'a str],
        step: Replication<'a>,
    ) -> Replicated<'a>;
}

/// The real one: a direct connection to the instance, TLS required (as RDS requires it).
#[derive(Clone, Copy, Debug, Default)]
pub struct Postgres;

impl DatabaseAdmin for Postgres {
    fn ensure_roles<'a>(
        &'a self,
        server: &'a Server,
        master: &'a MasterCredentials,
        roles: &'a [Role],
    ) -> Done<'a> {
        Box::pin(ensure(server, master, roles))
    }

    fn replicate<'a>(
        &'a self,
        server: &'a Server,
        master: &'a MasterCredentials,
        databases: &'a [&'a str],
        step: Replication<'a>,
    ) -> Replicated<'a> {
        Box::pin(replication::run(server, master, databases, step))
    }
}

/// One connection to `database` as the master, TLS required (as RDS requires it); a pool
/// only because its futures are `Send` where a borrowed connection's are not.
async fn connect(
    server: &Server,
    master: &MasterCredentials,
    database: &str,
) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::new()
        .host(&server.host)
        .port(server.port)
        .username(&master.username)
        .password(master.password.expose_secret())
        .database(database)
        .ssl_mode(PgSslMode::Require)
        .application_name("mrbill-operator");
    PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
}

async fn ensure(
    server: &Server,
    master: &MasterCredentials,
    roles: &[Role],
) -> Result<(), sqlx::Error> {
    let db = connect(server, master, "postgres").await?;
    for role in roles {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(&role.name)
                .fetch_one(&db)
                .await?;
        let verb = if exists { "ALTER" } else { "CREATE" };
        // Identifiers and the password are quoted by the server (`format`'s %I and %L):
        // utility statements take no bind parameters.
        let statement = format!("{verb} ROLE %I WITH LOGIN PASSWORD %L");
        run_formatted(&db, &statement, &role.name, role.password.expose_secret()).await?;
        // As a non-superuser (RDS's master), owning a database for a role needs membership
        // in it.
        run_formatted(&db, "GRANT %I TO CURRENT_USER", &role.name, "").await?;
        let database: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&role.name)
                .fetch_one(&db)
                .await?;
        if !database {
            let create = "CREATE DATABASE %1$I OWNER %1$I";
            run_formatted(&db, create, &role.name, "").await?;
        }
        let revoke = "REVOKE ALL ON DATABASE %I FROM PUBLIC";
        run_formatted(&db, revoke, &role.name, "").await?;
    }
    db.close().await;
    Ok(())
}

/// Runs `format(template, a, b)` as built by the server.
pub(crate) async fn run_formatted(
    db: &PgPool,
    template: &str,
    a: &str,
    b: &str,
) -> Result<(), sqlx::Error> {
    let sql: String = sqlx::query_scalar("SELECT format($1, $2::text, $3::text)")
        .bind(template)
        .bind(a)
        .bind(b)
        .fetch_one(db)
        .await?;
    sqlx::raw_sql(&sql).execute(db).await?;
    Ok(())
}
