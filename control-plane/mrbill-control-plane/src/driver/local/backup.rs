//! A local cell's backup: one directory with every service's database (`pg_dump -Fc` of a
//! snapshot exported at the same moment in all three, with per-table checksums of that
//! snapshot), the object store, the secrets (the cell's identity) and `manifest.json`, which
//! is written last: present = complete.
//!
//! ```text
//! poc, dojo, media db ── BEGIN REPEATABLE READ; pg_export_snapshot() (all three, then) ──►
//!    checksums of the snapshot ─┐
//!    pg_dump --snapshot ────────┴─► <db>.dump        objects/ secrets/ ── cp -a ──► manifest.json
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, bail};
use cell_model::contract::Service;
use cell_model::local::CellDir;
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use time::OffsetDateTime;

use super::LocalDriver;
use super::files::{read_json, write_json};
use super::supervisor::PG_SUPERUSER;
use super::{read_trimmed, set_mode};
use crate::driver::Taken;

/// `manifest.json` of a backup.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub tenant: String,
    pub cell_id: String,
    /// The snapshots' transaction time: what the databases show.
    #[serde(with = "time::serde::rfc3339")]
    pub taken_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The service databases dumped (`<name>.dump`).
    pub databases: Vec<String>,
    /// Per database: every table's row count and checksum in the dumped snapshot.
    #[serde(default)]
    pub checksums: BTreeMap<String, Vec<(String, String)>>,
    pub files: Vec<String>,
    pub bytes: u64,
}

impl LocalDriver {
    /// Backs the cell up into `dest`. With `start`, a stopped cell's Postgres is started for
    /// it (a delete's last backup); without, the cell must be running (a scheduled one never
    /// starts what an operation stopped).
    pub async fn backup(
        &self,
        dir: &CellDir,
        tenant: &str,
        dest: &Path,
        start: bool,
    ) -> anyhow::Result<Taken> {
        if let Ok(done) = read_json::<Manifest>(&dest.join("manifest.json")) {
            return Ok(Taken {
                taken_at: done.taken_at,
                bytes: Some(done.bytes),
                location: dest.display().to_string(),
            });
        }
        if !dir.root().exists() {
            bail!("the cell's directory {} is gone", dir.root().display());
        }
        // What a backup stopped half way left.
        let _ = std::fs::remove_dir_all(dest);
        std::fs::create_dir_all(dest)?;
        set_mode(dest, 0o700)?;
        let mut taken_at = OffsetDateTime::now_utc();
        let mut databases = Vec::new();
        let mut checksums = BTreeMap::new();
        if dir.pg_dir().join("data/PG_VERSION").exists() {
            if start {
                self.ensure_supervisor(dir).await?;
            }
            let state = self
                .observe(dir)
                .filter(|s| s.postgres_running)
                .context("the cell's Postgres is not running")?;
            let password = read_trimmed(&dir.secrets_dir().join("pg-superuser"))?;
            let login = Login {
                port: state.postgres_port,
                password: &password,
            };
            // Every database's snapshot first: the three show one moment.
            let mut snapshots = Vec::new();
            for db in Service::ALL.map(Service::name) {
                let Some(mut conn) = login.connect(db).await? else {
                    continue; // never provisioned that far
                };
                sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut conn)
                    .await?;
                let (snapshot, at): (String, OffsetDateTime) =
                    sqlx::query_as("SELECT pg_export_snapshot(), now()")
                        .fetch_one(&mut conn)
                        .await?;
                taken_at = taken_at.min(at);
                snapshots.push((db, conn, snapshot));
            }
            // One after another (each transaction stays open, so each snapshot stays valid).
            for (db, conn, snapshot) in snapshots {
                let file = dest.join(format!("{db}.dump"));
                let sums = dump_snapshot(&login, db, conn, &snapshot, &file).await?;
                databases.push(db.to_owned());
                checksums.insert(db.to_owned(), sums);
            }
        }
        for (from, to) in [
            (dir.secrets_dir(), dest.join("secrets")),
            (dir.objects_dir(), dest.join("objects")),
        ] {
            if from.exists() {
                let status = tokio::process::Command::new("cp")
                    .arg("-a")
                    .arg(&from)
                    .arg(&to)
                    .status()
                    .await?;
                anyhow::ensure!(status.success(), "copying {}", from.display());
            }
        }
        let root = dest.to_owned();
        let bytes = tokio::task::spawn_blocking(move || size_of(&root)).await??;
        let manifest = Manifest {
            tenant: tenant.to_owned(),
            cell_id: dir.cell_id().to_owned(),
            taken_at,
            created_at: OffsetDateTime::now_utc(),
            databases,
            checksums,
            files: vec!["secrets".into(), "objects".into()],
            bytes,
        };
        write_json(&dest.join("manifest.json"), &manifest)?;
        Ok(Taken {
            taken_at,
            bytes: Some(bytes),
            location: dest.display().to_string(),
        })
    }
}

/// The cell Postgres's superuser, on loopback.
struct Login<'a> {
    port: u16,
    password: &'a str,
}

impl Login<'_> {
    /// A connection to `db`; `None` if it does not exist.
    async fn connect(&self, db: &str) -> anyhow::Result<Option<PgConnection>> {
        let options = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(PG_SUPERUSER)
            .password(self.password)
            .database(db);
        match PgConnection::connect_with(&options).await {
            Ok(conn) => Ok(Some(conn)),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => Ok(None),
            Err(e) => Err(e).with_context(|| format!("connecting to {db}")),
        }
    }

    /// `pg_dump -Fc` of `db` as of `snapshot` (its exporting transaction still open).
    async fn dump(&self, db: &str, snapshot: &str, file: &Path) -> anyhow::Result<()> {
        let out = tokio::process::Command::new(pg_cluster::bin_dir()?.join("pg_dump"))
            .args(["--format=custom", "--no-password", "--snapshot", snapshot])
            .arg("--file")
            .arg(file)
            .arg("--dbname")
            // No password on the command line (every user can read those): in the
            // environment, which only we can read.
            .arg(format!(
                "postgres://{PG_SUPERUSER}@127.0.0.1:{}/{db}",
                self.port
            ))
            .env("PGPASSWORD", self.password)
            .stdin(Stdio::null())
            .output()
            .await
            .context("running pg_dump")?;
        if !out.status.success() {
            bail!("pg_dump {db}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

/// Checksums of `db`'s snapshot and its dump, then its exporting transaction ends.
async fn dump_snapshot(
    login: &Login<'_>,
    db: &'static str,
    mut conn: PgConnection,
    snapshot: &str,
    file: &Path,
) -> anyhow::Result<Vec<(String, String)>> {
    let sums = pg_move::checksums_in(&mut conn).await?;
    login.dump(db, snapshot, file).await?;
    conn.close().await?;
    Ok(sums)
}

/// Bytes of every file under `root`.
fn size_of(root: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    Ok(total)
}
