//! The local driver's delete steps after the backup (`backup.rs`): stop everything the cell
//! runs (`stop`), remove its directory (`files`).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cell_model::local::CellDir;
use rustix::process::Signal;

use super::LocalDriver;
use super::files::{
    SupervisorState, is_cell_process, pid_alive, read_json, signal, supervisor_alive,
};

impl LocalDriver {
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

    /// Removes the cell's directory, and the copies restores set aside.
    pub async fn remove(&self, dir: &CellDir) -> anyhow::Result<()> {
        for old in super::restore::replaced_copies(dir)? {
            tokio::fs::remove_dir_all(&old).await?;
        }
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
