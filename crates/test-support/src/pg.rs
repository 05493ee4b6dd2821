//! Databases for tests: a shared cluster, one migrated template per migration set, and a new
//! database per test created from that template.

use std::sync::OnceLock;

use anyhow::Context;
use sha2::{Digest, Sha256};
use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection};

/// Env var naming the superuser URL (database `postgres`) of the run's shared cluster.
pub const SHARED_URL_ENV: &str = "MRBILL_TEST_PG_URL";

/// Superuser URL of the cluster tests use.
pub fn admin_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var(SHARED_URL_ENV) {
        Ok(url) if !url.is_empty() => url,
        _ => {
            start_private_cluster().expect("start a private Postgres cluster for this test process")
        }
    })
}

/// Starts a cluster for this process alone, with a reaper that stops and deletes it when the
/// process exits (statics are never dropped, so nothing else would).
fn start_private_cluster() -> anyhow::Result<String> {
    let root = std::env::temp_dir().join(format!(
        "mrbill-test-pg-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let password = uuid::Uuid::new_v4().simple().to_string();
    let spec = pg_cluster::ClusterSpec {
        root: root.clone(),
        port: None,
        superuser: "mrbill".into(),
        password,
        ephemeral: true,
    };
    let mut cluster = pg_cluster::PgCluster::init(&spec)?;
    cluster.start()?;
    pg_cluster::spawn_reaper(std::process::id(), &cluster.data_dir(), Some(&root))?;
    Ok(cluster.url("postgres"))
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => url.to_owned(),
    }
}

/// Name of the template for `migrator`: changes whenever any migration changes.
fn template_name(migrator: &Migrator) -> String {
    let mut h = Sha256::new();
    for m in migrator.iter() {
        h.update(m.version.to_le_bytes());
        h.update(&m.checksum);
    }
    let digest: String = h
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("tmpl_{digest}")
}

/// A fresh, migrated database for one test; returns its superuser URL.
pub async fn test_database(migrator: &Migrator) -> anyhow::Result<String> {
    let admin = admin_url();
    let mut conn = PgConnection::connect(admin)
        .await
        .context("connecting to the test cluster")?;
    let template = template_name(migrator);
    // One process builds a template; the others wait for it.
    sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
        .bind(&template)
        .execute(&mut conn)
        .await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let building = format!("{template}_build");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {building}"))
            .execute(&mut conn)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {building}"))
            .execute(&mut conn)
            .await?;
        {
            let mut db = PgConnection::connect(&with_database(admin, &building)).await?;
            migrator
                .run(&mut db)
                .await
                .context("migrating the template")?;
            db.close().await?;
        }
        // Renamed only when complete, so a crash mid-migration never leaves a broken template.
        sqlx::query(&format!("ALTER DATABASE {building} RENAME TO {template}"))
            .execute(&mut conn)
            .await?;
        sqlx::query(&format!(
            "ALTER DATABASE {template} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
        ))
        .execute(&mut conn)
        .await?;
    }
    sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
        .bind(&template)
        .execute(&mut conn)
        .await?;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
        .execute(&mut conn)
        .await
        .context("cloning the template")?;
    conn.close().await?;
    Ok(with_database(admin, &name))
}

/// A fresh, empty database (for binaries that run their own migrations); returns its URL.
pub async fn empty_database() -> anyhow::Result<String> {
    let admin = admin_url();
    let mut conn = PgConnection::connect(admin)
        .await
        .context("connecting to the test cluster")?;
    let name = format!("e_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(with_database(admin, &name))
}
