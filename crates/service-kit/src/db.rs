//! Postgres pool and embedded migrations. Each service owns its own database and role, and
//! `sqlx::migrate!` keeps one ledger per database, so services never share one.

use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// A service's pool on its own database (`common.database_url`), migrated: waits up to 30 s
/// for the database, 10 connections.
pub async fn connect(
    common: &crate::config::CommonConfig,
    migrator: &Migrator,
) -> anyhow::Result<PgPool> {
    connect_and_migrate(&common.database_url, migrator, 10, Duration::from_secs(30)).await
}

/// Connects, retrying for up to `wait` while the database starts (e.g. right after `pg_ctl
/// start`), then runs `migrator`.
pub async fn connect_and_migrate(
    url: &SecretString,
    migrator: &Migrator,
    max_connections: u32,
    wait: Duration,
) -> anyhow::Result<PgPool> {
    // Verified TLS (`sslmode=verify-ca|verify-full`) builds its rustls config with the
    // process's default crypto provider; when feature unification compiles in two (ring and
    // aws-lc-rs), neither is the default and the first verified connection panics.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options: PgConnectOptions = url
        .expose_secret()
        .parse()
        .context("parsing the database URL")?;
    let pool_options = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300));
    let deadline = tokio::time::Instant::now() + wait;
    let pool = loop {
        match pool_options.clone().connect_with(options.clone()).await {
            Ok(pool) => break pool,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).context("connecting to the database"),
        }
    };
    migrator.run(&pool).await.context("running migrations")?;
    Ok(pool)
}
