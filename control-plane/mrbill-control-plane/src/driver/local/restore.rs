//! The local driver's part of a restore (`restore.rs` of the control plane orders the steps):
//! a fresh cell in the cell's directory, with the backup's identity, its databases loaded from
//! the backup's dumps and checked against the checksums taken with them.
//!
//! ```text
//! fence   the cell's supervisor stops (services, then Postgres); its directory is set aside
//!         as <cell>.replaced-<restore> (kept, stopped, until the next restore or the delete)
//! target  secrets from the backup (keys, kid, service token, URL key) → initdb → supervisor
//!         → a role and a database per service; services stopped
//! copy    pg_restore of each dump as the service's role (one transaction each); objects copied
//! verify  every table's row count and checksum equal the backup's; the objects match
//! start   services run and answer ready
//! ```
//!
//! **Invariant:** every step is safe to repeat: a database with tables was restored in full
//! (one transaction), and fence sets nothing aside twice.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cell_model::local::CellDir;

use super::LocalDriver;
use super::backup::Manifest;
use super::files::{CellConfig, read_json};
use super::identity;
use super::migrate::copy_identity;
use super::supervisor::PG_SUPERUSER;
use super::tree::{manifest, sync_tree};
use crate::driver::{Restoring, Step};

impl LocalDriver {
    pub(super) async fn restore_step(&self, r: Restoring<'_>, step: Step) -> anyhow::Result<()> {
        let dir = self.cell_dir(r.placement, &r.spec.cell_id);
        let backup_dir = Path::new(r.backup);
        let backup: Manifest = read_json(&backup_dir.join("manifest.json"))
            .with_context(|| format!("the backup {} is incomplete", backup_dir.display()))?;
        anyhow::ensure!(
            backup.cell_id == r.spec.cell_id,
            "the backup is of cell {}, not {}",
            backup.cell_id,
            r.spec.cell_id
        );
        match step {
            Step::Fence => self.set_aside(&dir, &replaced(&dir, r.id)).await,
            Step::Target => {
                copy_identity(&backup_dir.join("secrets"), &dir)?;
                self.prepare(r.spec, &dir).await?;
                self.init_cluster(&dir).await?;
                self.ensure_supervisor(&dir).await?;
                self.ensure_databases(&dir).await
            }
            Step::Copy => {
                self.ensure_supervisor(&dir).await?;
                for db in &backup.databases {
                    self.load(&dir, db, &backup_dir.join(format!("{db}.dump")))
                        .await?;
                }
                let (from, to) = (backup_dir.join("objects"), dir.objects_dir());
                let uid = read_json::<CellConfig>(&dir.config())?.run_as;
                tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(&from)?;
                    sync_tree(&from, &to, true)?;
                    if let Some(uid) = uid {
                        identity::chown_tree(&to, uid)?;
                    }
                    anyhow::Ok(())
                })
                .await?
            }
            Step::Verify => {
                self.ensure_supervisor(&dir).await?;
                for db in &backup.databases {
                    let Some(expected) = backup.checksums.get(db) else {
                        tracing::warn!(db, backup = %backup_dir.display(), "the backup has no checksums of this database (taken before they were recorded)");
                        continue;
                    };
                    let got = pg_move::checksums(&self.superuser(&dir, db).await?).await?;
                    anyhow::ensure!(
                        &got == expected,
                        "{db}: the restored tables differ from the backup's in {:?}",
                        pg_move::differing(expected, &got)
                    );
                }
                let (from, to) = (backup_dir.join("objects"), dir.objects_dir());
                let (expected, got) = tokio::task::spawn_blocking(move || {
                    let expected = if from.exists() {
                        manifest(&from)?
                    } else {
                        Vec::new()
                    };
                    anyhow::Ok((expected, manifest(&to)?))
                })
                .await??;
                anyhow::ensure!(
                    expected == got,
                    "the restored objects differ from the backup's ({} vs {} files)",
                    expected.len(),
                    got.len()
                );
                Ok(())
            }
            Step::Start => self.set_services(&dir, true).await.map(drop),
            _ => bail!("the local driver has no restore step {}", step.as_str()),
        }
    }

    /// Undoing a restore before its switch:
    ///
    /// ```text
    /// unfence  the restored cell (what exists of it) stops and goes aside as
    ///          <cell>.discarded-<restore>; the copy fence set aside comes back; its supervisor
    ///          and services run
    /// discard  the discarded copy is removed
    /// ```
    pub(super) async fn unrestore_step(&self, r: Restoring<'_>, step: Step) -> anyhow::Result<()> {
        let dir = self.cell_dir(r.placement, &r.spec.cell_id);
        let (aside, discarded) = (replaced(&dir, r.id), aside_as(&dir, "discarded", r.id));
        match step {
            Step::Unfence => {
                if aside.exists() {
                    if dir.root().exists() {
                        self.stop(&dir).await?;
                        if discarded.exists() {
                            tokio::fs::remove_dir_all(&discarded).await?;
                        }
                        tokio::fs::rename(dir.root(), &discarded).await?;
                    }
                    tokio::fs::rename(&aside, dir.root())
                        .await
                        .with_context(|| format!("putting {} back", aside.display()))?;
                    tracing::info!(cell = %dir.cell_id(), "the cell as it was before the restore is back");
                }
                // Fence stopped it (or never ran): it runs again either way.
                self.ensure_supervisor(&dir).await?;
                self.set_services(&dir, true).await.map(drop)
            }
            Step::Discard => match tokio::fs::remove_dir_all(&discarded).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            },
            _ => bail!(
                "the local driver has no step {} undoing a restore",
                step.as_str()
            ),
        }
    }

    /// Stops the cell and moves its directory to `aside` (earlier replaced copies go).
    async fn set_aside(&self, dir: &CellDir, aside: &Path) -> anyhow::Result<()> {
        if !dir.root().exists() {
            return Ok(()); // destroyed, or set aside already
        }
        self.stop(dir).await?;
        for old in replaced_copies(dir)? {
            if old != aside {
                tokio::fs::remove_dir_all(&old).await?;
            }
        }
        tokio::fs::rename(dir.root(), aside)
            .await
            .with_context(|| format!("setting {} aside", dir.root().display()))?;
        tracing::info!(cell = %dir.cell_id(), aside = %aside.display(), "the replaced cell is kept, stopped");
        Ok(())
    }

    /// Restores `db` from its dump, as the service's role, unless it has tables already.
    async fn load(&self, dir: &CellDir, db: &str, dump: &Path) -> anyhow::Result<()> {
        let pool = self.superuser(dir, db).await?;
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
        )
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        if tables > 0 {
            return Ok(()); // restored in full before (one transaction)
        }
        let (port, password) = self.superuser_login(dir)?;
        let out = tokio::process::Command::new(pg_cluster::bin_dir()?.join("pg_restore"))
            .args([
                "--no-owner",
                "--no-privileges",
                "--no-publications",
                "--no-subscriptions",
                "--single-transaction",
                "--exit-on-error",
                "--no-password",
            ])
            // Everything it creates belongs to the service's role, as its own migrations would.
            .arg(format!("--role={db}"))
            .arg("--dbname")
            .arg(format!("postgres://{PG_SUPERUSER}@127.0.0.1:{port}/{db}"))
            .arg(dump)
            .env("PGPASSWORD", &password)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .context("running pg_restore")?;
        if !out.status.success() {
            bail!("pg_restore {db}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

/// Where fence sets the cell's directory aside for restore `id`.
fn replaced(dir: &CellDir, id: uuid::Uuid) -> PathBuf {
    aside_as(dir, "replaced", id)
}

/// `<cell>.<why>-<the last 12 of restore id>` beside the cell's directory.
fn aside_as(dir: &CellDir, why: &str, id: uuid::Uuid) -> PathBuf {
    let id = id.simple().to_string();
    dir.root()
        .with_file_name(format!("{}.{why}-{}", dir.cell_id(), &id[id.len() - 12..]))
}

/// The cell's directories set aside by restores (replaced, or discarded by an undone one).
pub(super) fn replaced_copies(dir: &CellDir) -> anyhow::Result<Vec<PathBuf>> {
    let prefixes = ["replaced", "discarded"].map(|why| format!("{}.{why}-", dir.cell_id()));
    let Some(parent) = dir.root().parent() else {
        return Ok(Vec::new());
    };
    let entries = match std::fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if prefixes.iter().any(|p| name.starts_with(p)) {
            out.push(entry.path());
        }
    }
    Ok(out)
}
