//! The files a control plane and a cell supervisor share in the cell's directory, and the
//! process helpers (locks, pids, signals) both sides use.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;
use cell_model::local::CellDir;
pub use cell_model::local::pid_alive;
use rustix::fs::FlockOperation;
use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};

/// `cell.json`: what the supervisor runs. Written by the control plane; ports may be moved by
/// the supervisor when one is taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellConfig {
    pub cell_id: String,
    pub tenant: String,
    /// Where the service binaries are.
    pub bin_dir: PathBuf,
    pub pg_port: u16,
    pub services: Vec<ServiceConfig>,
    /// The uid the cell's services run as (root-run platforms; see `local::identity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<u32>,
    /// The uid the cell's Postgres runs as: its own, apart from its services' (root-run
    /// platforms with Debian's `libnss-wrapper`; else the platform's Postgres user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_run_as: Option<u32>,
    /// The tenant's email domains (open registration admits only addresses there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email_domains: Vec<String>,
    /// The first admin's invite (its token's hash): poc-service creates it at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<cell_model::AdminBootstrap>,
}

/// One running instance of a service (a service scaled to three runs three).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceConfig {
    /// The service (`poc`, `dojo`, `media`).
    pub name: String,
    pub public_port: u16,
    pub internal_port: u16,
    /// 1-based; the first replica keeps the service's plain name everywhere.
    #[serde(default = "first_replica", skip_serializing_if = "is_first_replica")]
    pub replica: u32,
}

fn first_replica() -> u32 {
    1
}

fn is_first_replica(replica: &u32) -> bool {
    *replica <= 1
}

impl ServiceConfig {
    /// The instance's name: its ready file, log, state entry, search directory (`poc`, `poc-2`).
    pub fn key(&self) -> String {
        if self.replica <= 1 {
            self.name.clone()
        } else {
            format!("{}-{}", self.name, self.replica)
        }
    }
}

/// Whether the supervisor should run the cell's services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    Running,
    Stopped,
}

/// `state.json`: what the supervisor observes, rewritten atomically on every change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorState {
    pub pid: u32,
    pub desired: Option<Desired>,
    pub postgres_port: u16,
    pub postgres_running: bool,
    pub services: BTreeMap<String, ServiceState>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceState {
    pub phase: ServicePhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// `host:port` of the public listener, once ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal: Option<String>,
    pub restarts: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServicePhase {
    #[default]
    Stopped,
    Starting,
    Running,
    /// Exited; waiting before the next start.
    Backoff,
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// Writes JSON through a temporary file and a rename, so readers never see half a file.
/// Writes `value` as JSON atomically, readable by its owner only (the cell's files are the
/// control plane's and supervisor's business, not its services' or other cells').
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&serde_json::to_vec_pretty(value)?))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

pub fn read_desired(dir: &CellDir) -> Desired {
    match std::fs::read_to_string(dir.desired())
        .as_deref()
        .map(str::trim)
    {
        Ok("running") => Desired::Running,
        _ => Desired::Stopped,
    }
}

pub fn write_desired(dir: &CellDir, desired: Desired) -> anyhow::Result<()> {
    let text = match desired {
        Desired::Running => "running",
        Desired::Stopped => "stopped",
    };
    let tmp = dir.desired().with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.desired())?;
    Ok(())
}

/// Takes the cell's supervisor lock if nobody holds it; the lock lives as long as the file.
pub fn try_lock(path: &Path) -> anyhow::Result<Option<File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

/// Whether a live supervisor holds the cell's lock.
pub fn supervisor_alive(dir: &CellDir) -> bool {
    if !dir.lock_file().exists() {
        return false;
    }
    // Taking the lock for an instant is the only reliable test; a supervisor starting at that
    // moment retries its own lock for a while.
    matches!(try_lock(&dir.lock_file()), Ok(None))
}

pub fn signal(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Whether process `pid` was started for cell `cell_id` (its environment says so): a pid from an
/// old state file may since belong to someone else.
pub fn is_cell_process(pid: u32, cell_id: &str) -> bool {
    let needle = format!("MRBILL_CELL_ID={cell_id}");
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
}
