//! The local driver's part of a migration (`migrate.rs` orders the steps): a target cell on
//! another placement's data root with the source's identity, fed by Postgres logical
//! replication (one publication per service database on the source, one subscription on the
//! target), and the cell's files (objects, search index) copied beside it.
//!
//! ```text
//! source cell (placement A)                      target cell (placement B, same cell id)
//!  Postgres ─ publication mrbill_move ──slot mrbill_move_<svc>──► subscription ─ Postgres
//!  objects/, search/ ───────────── copied (again after fence) ──► objects/, search/
//!  secrets (keys, tokens, URL key) ─ copied before anything ────► secrets (same identity)
//! ```
//!
//! **Invariant:** the source is only read until fence stops its services; every step checks
//! what exists before it creates, so it is safe to repeat, and discard removes everything the
//! target added (the subscription, the source's slots and publication, the target cell).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cell_model::contract::Service;
use cell_model::local::CellDir;
use service_kit::cell_secrets::CellSecrets;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::files::{CellConfig, read_json};
use super::supervisor::PG_SUPERUSER;
use super::tree::{manifest, sync_tree};
use super::{LocalDriver, identity, read_trimmed};
use crate::driver::{Move, Step};

/// The source's publication (one per service database).
const PUBLICATION: &str = "mrbill_move";
/// How long the initial copy and the final catch-up may take.
const COPY_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

impl LocalDriver {
    pub(super) async fn migrate_step(&self, mv: Move<'_>, step: Step) -> anyhow::Result<()> {
        let source = self.cell_dir(mv.source, &mv.spec.cell_id);
        let target = self.cell_dir(mv.target, &mv.spec.cell_id);
        match step {
            Step::Target => {
                copy_identity(&source.secrets_dir(), &target)?;
                self.prepare(mv.spec, &target).await?;
                self.init_cluster(&target).await?;
                self.ensure_supervisor(&target).await?;
                self.ensure_databases(&target).await
            }
            Step::Copy => {
                self.ensure_supervisor(&source).await?;
                self.ensure_supervisor(&target).await?;
                for service in Service::ALL {
                    self.replicate(&source, &target, service).await?;
                }
                self.copy_files(&source, &target, false).await
            }
            Step::CatchUp => {
                for service in Service::ALL {
                    self.wait_initial_copy(&target, service).await?;
                }
                self.copy_files(&source, &target, false).await
            }
            Step::Fence => self.set_services(&source, false).await.map(drop),
            Step::Sync => {
                // Inside the freeze: the three databases and the files at once.
                let deadline = Instant::now() + SYNC_TIMEOUT;
                let (source, target) = (&source, &target);
                let databases = Service::ALL.map(|service| async move {
                    let db = service.name();
                    let src = self.superuser(source, db).await?;
                    let dst = self.superuser(target, db).await?;
                    wait_in_sync(&src, &dst, db, deadline).await?;
                    pg_move::copy_sequences(&src, &dst).await
                });
                let files = async {
                    self.copy_files(source, target, true).await?;
                    self.copy_search_index(source, target).await
                };
                let (databases, files) =
                    tokio::join!(futures_util::future::try_join_all(databases), files);
                databases.map(drop).and(files)
            }
            Step::Verify => self.verify(&source, &target).await,
            Step::Start => {
                for service in Service::ALL {
                    self.end_replication(&source, &target, service).await?;
                }
                self.set_services(&target, true).await.map(drop)
            }
            Step::Unfence => self.set_services(&source, true).await.map(drop),
            Step::Discard => {
                if target.root().exists() {
                    if target.pg_dir().join("data/PG_VERSION").exists() {
                        self.ensure_supervisor(&source).await?;
                        self.ensure_supervisor(&target).await?;
                        for service in Service::ALL {
                            self.end_replication(&source, &target, service).await?;
                        }
                    }
                    self.stop(&target).await?;
                    self.remove(&target).await?;
                }
                Ok(())
            }
            _ => bail!("the local driver has no migration step {}", step.as_str()),
        }
    }

    /// A superuser connection to `db` of the cell's Postgres.
    pub(super) async fn superuser(&self, dir: &CellDir, db: &str) -> anyhow::Result<PgPool> {
        let (port, password) = self.superuser_login(dir)?;
        let options = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(port)
            .username(PG_SUPERUSER)
            .password(&password)
            .database(db);
        PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to {db} of {}", dir.root().display()))
    }

    pub(super) fn superuser_login(&self, dir: &CellDir) -> anyhow::Result<(u16, String)> {
        let state = self
            .observe(dir)
            .with_context(|| format!("no supervisor runs {}", dir.root().display()))?;
        let password = read_trimmed(&dir.secrets_dir().join("pg-superuser"))?;
        Ok((state.postgres_port, password))
    }

    /// The target's schema (once), the source's publication, the target's subscription.
    async fn replicate(
        &self,
        source: &CellDir,
        target: &CellDir,
        service: Service,
    ) -> anyhow::Result<()> {
        let db = service.name();
        let src = self.superuser(source, db).await?;
        pg_move::publish(&src, PUBLICATION).await?;
        let dst = self.superuser(target, db).await?;
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
        )
        .fetch_one(&dst)
        .await?;
        if tables == 0 {
            self.copy_schema(source, target, db).await?;
        }
        let (port, password) = self.superuser_login(source)?;
        let port = port.to_string();
        let conninfo = pg_move::conninfo(&[
            ("host", "127.0.0.1"),
            ("port", &port),
            ("dbname", db),
            ("user", PG_SUPERUSER),
            ("password", &password),
        ]);
        pg_move::subscribe(&dst, &subscription(service), &conninfo, PUBLICATION)
            .await
            .context("creating the subscription")?;
        Ok(())
    }

    /// `pg_dump --schema-only` of the source restored into the target, owned by the service's
    /// role (as if its own migrations had made it), in one transaction.
    async fn copy_schema(
        &self,
        source: &CellDir,
        target: &CellDir,
        db: &str,
    ) -> anyhow::Result<()> {
        let (src_port, src_password) = self.superuser_login(source)?;
        let (dst_port, dst_password) = self.superuser_login(target)?;
        let bin = pg_cluster::bin_dir()?;
        let dump = tokio::process::Command::new(bin.join("pg_dump"))
            .args([
                "--schema-only",
                "--no-owner",
                "--no-privileges",
                "--no-publications",
            ])
            .args(["--no-subscriptions", "--no-password", "--dbname"])
            .arg(format!(
                "postgres://{PG_SUPERUSER}@127.0.0.1:{src_port}/{db}"
            ))
            .env("PGPASSWORD", &src_password)
            .output()
            .await
            .context("running pg_dump")?;
        if !dump.status.success() {
            bail!(
                "pg_dump --schema-only {db}: {}",
                String::from_utf8_lossy(&dump.stderr)
            );
        }
        let mut restore = tokio::process::Command::new(bin.join("psql"))
            .args([
                "--no-psqlrc",
                "--quiet",
                "--single-transaction",
                "--set=ON_ERROR_STOP=1",
            ])
            .args(["--no-password", "--dbname"])
            .arg(format!(
                "postgres://{PG_SUPERUSER}@127.0.0.1:{dst_port}/{db}"
            ))
            .env("PGPASSWORD", &dst_password)
            // Everything it creates belongs to the service's role.
            .env("PGOPTIONS", format!("-c role={db}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("running psql")?;
        let mut stdin = restore.stdin.take().context("psql's stdin")?;
        tokio::io::AsyncWriteExt::write_all(&mut stdin, &dump.stdout).await?;
        drop(stdin);
        let out = restore.wait_with_output().await?;
        if !out.status.success() {
            bail!(
                "restoring the schema of {db}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Waits until every table of the subscription has had its initial copy.
    async fn wait_initial_copy(&self, target: &CellDir, service: Service) -> anyhow::Result<()> {
        let dst = self.superuser(target, service.name()).await?;
        let deadline = Instant::now() + COPY_TIMEOUT;
        loop {
            let pending = pg_move::copying(&dst, &subscription(service)).await?;
            if pending == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} tables of {} still copying", pending, service.name());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Row counts and checksums of every table, and the object stores' manifests, match.
    async fn verify(&self, source: &CellDir, target: &CellDir) -> anyhow::Result<()> {
        let databases = Service::ALL.map(|service| async move {
            let db = service.name();
            let src = self.superuser(source, db).await?;
            let dst = self.superuser(target, db).await?;
            let (expected, got) =
                tokio::try_join!(pg_move::checksums(&src), pg_move::checksums(&dst))?;
            anyhow::ensure!(
                expected == got,
                "{db}: the target's tables differ from the source's: {expected:?} vs {got:?}"
            );
            anyhow::Ok(())
        });
        futures_util::future::try_join_all(databases).await?;
        let (src, dst) = (source.objects_dir(), target.objects_dir());
        let (expected, got) =
            tokio::task::spawn_blocking(move || anyhow::Ok((manifest(&src)?, manifest(&dst)?)))
                .await??;
        anyhow::ensure!(
            expected == got,
            "the target's objects differ from the source's ({} vs {} files)",
            expected.len(),
            got.len()
        );
        Ok(())
    }

    /// Drops the subscription (target), the slot and the publication (source).
    async fn end_replication(
        &self,
        source: &CellDir,
        target: &CellDir,
        service: Service,
    ) -> anyhow::Result<()> {
        let db = service.name();
        let name = subscription(service);
        let dst = self.superuser(target, db).await?;
        pg_move::unsubscribe(&dst, &name).await?;
        let src = self.superuser(source, db).await?;
        pg_move::drop_slot(&src, &name, Duration::from_secs(30)).await?;
        pg_move::unpublish(&src, PUBLICATION).await
    }

    /// Copies the object store (new and changed files; with `exact`, also removes what the
    /// source no longer has), owned by the target cell's user.
    async fn copy_files(
        &self,
        source: &CellDir,
        target: &CellDir,
        exact: bool,
    ) -> anyhow::Result<()> {
        let (from, to) = (source.objects_dir(), target.objects_dir());
        let uid = read_json::<CellConfig>(&target.config())?.run_as;
        tokio::task::spawn_blocking(move || {
            sync_tree(&from, &to, exact)?;
            if let Some(uid) = uid {
                identity::chown_tree(&to, uid)?;
            }
            anyhow::Ok(())
        })
        .await?
    }

    /// The search index as the stopped source left it (consistent with its outbox, which
    /// replicated): the target's poc-service drains the rest instead of rebuilding it all.
    async fn copy_search_index(&self, source: &CellDir, target: &CellDir) -> anyhow::Result<()> {
        let (from, to) = (source.search_dir(), target.search_dir());
        let uid = read_json::<CellConfig>(&target.config())?.run_as;
        tokio::task::spawn_blocking(move || {
            sync_tree(&from, &to, true)?;
            if let Some(uid) = uid {
                identity::chown_tree(&to, uid)?;
            }
            anyhow::Ok(())
        })
        .await?
    }
}

fn subscription(service: Service) -> String {
    format!("mrbill_move_{}", service.name())
}

/// The cell's identity: the same keys, key id, service token and URL-signing key, so tokens
/// and signed links issued by the source stay valid on the target.
pub(super) fn copy_identity(from: &std::path::Path, target: &CellDir) -> anyhow::Result<()> {
    let to = target.secrets_dir();
    std::fs::create_dir_all(&to)?;
    super::set_mode(&to, 0o700)?;
    for name in CellSecrets::FILES {
        let dest = to.join(name);
        if !dest.exists() {
            let secret = std::fs::read(from.join(name))
                .with_context(|| format!("reading the source's {name}"))?;
            service_kit::secrets::write_secret(&dest, &String::from_utf8(secret)?)?;
        }
    }
    Ok(())
}

/// Waits until the target holds exactly what the (fenced) source holds.
async fn wait_in_sync(
    src: &PgPool,
    dst: &PgPool,
    db: &str,
    deadline: Instant,
) -> anyhow::Result<()> {
    let expected = pg_move::checksums(src).await?;
    loop {
        let got = pg_move::checksums(dst).await?;
        if got == expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            let behind = pg_move::differing(&expected, &got);
            bail!("{db} on the target still differs from the source in {behind:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
