//! The local driver's delete steps: dump the cell (`backup`), stop everything it runs
//! (`stop`), remove its directory (`files`).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cell_model::contract::Service;
use cell_model::local::CellDir;
use rustix::process::Signal;

use super::LocalDriver;
use super::files::{
    SupervisorState, is_cell_process, pid_alive, read_json, signal, supervisor_alive, write_json,
};
use super::supervisor::PG_SUPERUSER;
use super::{read_trimmed, set_mode};

impl LocalDriver {
    /// `backup` step: the databases (`pg_dump -Fc`), the object store and the secrets, into
    /// `dest`, finished by `manifest.json` (present = complete).
    pub async fn backup(&self, dir: &CellDir, tenant: &str, dest: &Path) -> anyhow::Result<()> {
        if dest.join("manifest.json").exists() {
            return Ok(());
        }
        let cell_id = dir.cell_id();
        if !dir.root().exists() {
            bail!("the cell's directory {} is gone", dir.root().display());
        }
        std::fs::create_dir_all(dest)?;
        set_mode(dest, 0o700)?;
        let mut databases = Vec::new();
        if dir.pg_dir().join("data/PG_VERSION").exists() {
            self.ensure_supervisor(dir).await?;
            let state = self.state(dir).context("the supervisor reports no state")?;
            let su = read_trimmed(&dir.secrets_dir().join("pg-superuser"))?;
            for svc in Service::ALL.map(Service::name) {
                let file = dest.join(format!("{svc}.dump"));
                let out = tokio::process::Command::new(pg_cluster::bin_dir()?.join("pg_dump"))
                    .args(["--format=custom", "--no-password", "--file"])
                    .arg(&file)
                    .arg("--dbname")
                    // No password on the command line (every user can read those): in the
                    // environment, which only we can read.
                    .arg(format!(
                        "postgres://{PG_SUPERUSER}@127.0.0.1:{}/{svc}",
                        state.postgres_port
                    ))
                    .env("PGPASSWORD", &su)
                    .stdin(Stdio::null())
                    .output()
                    .await
                    .context("running pg_dump")?;
                if !out.status.success() {
                    let err = String::from_utf8_lossy(&out.stderr);
                    if err.contains("does not exist") {
                        continue; // never provisioned that far
                    }
                    bail!("pg_dump {svc}: {err}");
                }
                databases.push(svc);
            }
        }
        for (from, to) in [
            (dir.secrets_dir(), dest.join("secrets")),
            (dir.objects_dir(), dest.join("objects")),
        ] {
            if from.exists() {
                let _ = std::fs::remove_dir_all(&to);
                let status = tokio::process::Command::new("cp")
                    .arg("-a")
                    .arg(&from)
                    .arg(&to)
                    .status()
                    .await?;
                anyhow::ensure!(status.success(), "copying {}", from.display());
            }
        }
        write_json(
            &dest.join("manifest.json"),
            &serde_json::json!({
                "tenant": tenant,
                "cell_id": cell_id,
                "created_at": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?,
                "databases": databases,
                "files": ["secrets", "objects"],
            }),
        )?;
        Ok(())
    }

    /// Stops the cell's supervisor (and with it the services and Postgres), and anything a
    /// killed supervisor left behind.
    pub async fn stop(&self, dir: &CellDir) -> anyhow::Result<()> {
        let cell_id = dir.cell_id();
        if !dir.root().exists() {
            return Ok(());
        }
        stop_supervisor(dir).await?;
        // Leftovers of a supervisor that died by SIGKILL.
        if let Ok(state) = read_json::<SupervisorState>(&dir.state()) {
            for pid in state.services.values().filter_map(|s| s.pid) {
                if pid_alive(pid) && is_cell_process(pid, cell_id) {
                    signal(pid, Signal::KILL);
                }
            }
        }
        if let Some(pid) = cell_model::local::postmaster_pid(&dir.pg_dir().join("data")) {
            signal(pid, Signal::INT);
            let deadline = Instant::now() + Duration::from_secs(30);
            while pid_alive(pid) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Removes the cell's directory.
    pub async fn remove(&self, dir: &CellDir) -> anyhow::Result<()> {
        match tokio::fs::remove_dir_all(dir.root()).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", dir.root().display())),
        }
    }
}

/// SIGTERM to the supervisor, then wait for its lock to be released.
pub async fn stop_supervisor(dir: &CellDir) -> anyhow::Result<()> {
    if !supervisor_alive(dir) {
        return Ok(());
    }
    if let Some(pid) = cell_model::local::live_pid(&dir.pid_file()) {
        signal(pid, Signal::TERM);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while supervisor_alive(dir) {
        if Instant::now() > deadline {
            bail!("the supervisor of {} did not stop", dir.root().display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
