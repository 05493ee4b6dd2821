//! The on-disk layout of `MRBILL_HOME`, shared by the control plane, its local driver, the cell
//! supervisors, the router and the CLI.
//!
//! **Invariant:** everything local lives under one state root, so two platforms with different
//! `MRBILL_HOME`s (parallel tests) never share a file, a port file or a process.

use std::path::{Path, PathBuf};

/// `MRBILL_HOME`, else `$XDG_DATA_HOME/mrbill` or `~/.local/share/mrbill`; as root
/// `/var/lib/mrbill`, because Postgres runs as an unprivileged user that must reach its files.
pub fn mrbill_home() -> PathBuf {
    if let Some(home) = std::env::var_os("MRBILL_HOME") {
        return PathBuf::from(home);
    }
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/mrbill");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".local/share")
        });
    data.join("mrbill")
}

/// The router binary a platform built in `bins` runs. The router ships built with its own
/// profile (`router` in the workspace's Cargo.toml: whole-program optimised) into
/// `target/router`, beside the release build's `target/release`; a release platform runs that
/// one when it is there and at least as new as the release build's own router (which a plain
/// `cargo build --release` also makes, and a change built only that way must not be hidden).
pub fn router_binary(bins: &Path) -> PathBuf {
    let plain = bins.join("mrbill-router");
    if bins.file_name() != Some("release".as_ref()) {
        return plain;
    }
    let Some(optimised) = bins
        .parent()
        .map(|t| t.join("router").join("mrbill-router"))
    else {
        return plain;
    };
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(&optimised), modified(&plain)) {
        (Some(o), Some(p)) if o >= p => optimised,
        (Some(_), None) => optimised,
        _ => plain,
    }
}

/// Paths under one `MRBILL_HOME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The home named by the environment (see [`mrbill_home`]).
    pub fn from_env() -> Self {
        Self::new(mrbill_home())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The control plane's own files.
    pub fn control_plane_dir(&self) -> PathBuf {
        self.root.join("control-plane")
    }

    /// Full admin access to the control plane (0600; created on its first start).
    pub fn operator_token(&self) -> PathBuf {
        self.control_plane_dir().join("operator-token")
    }

    /// Read-only access to the route feed (0600).
    pub fn router_token(&self) -> PathBuf {
        self.control_plane_dir().join("router-token")
    }

    /// `{"url": …, "pid": …}` once the control plane listens.
    pub fn control_plane_ready(&self) -> PathBuf {
        self.control_plane_dir().join("ready.json")
    }

    /// The catalog's Postgres cluster (when no external catalog URL is configured).
    pub fn catalog_dir(&self) -> PathBuf {
        self.root.join("catalog")
    }

    pub fn router_dir(&self) -> PathBuf {
        self.root.join("router")
    }

    /// The router's table, for cold starts with the control plane down.
    pub fn router_snapshot(&self) -> PathBuf {
        self.router_dir().join("routes.json")
    }

    /// `{"url": …, "pid": …}` once the router listens.
    pub fn router_ready(&self) -> PathBuf {
        self.router_dir().join("ready.json")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// One data root per placement: two placements on one machine are what two hosts would
    /// be (own Postgres clusters, own ports, own files), so a cell can move between them.
    pub fn placements_dir(&self) -> PathBuf {
        self.root.join("placements")
    }

    /// The cells of `placement` (a DNS label, checked by the control plane).
    pub fn cells_dir(&self, placement: &str) -> PathBuf {
        self.placements_dir().join(placement).join("cells")
    }

    /// A cell's directory on `placement`. During a migration one cell id has a directory on
    /// the source and one on the target placement.
    pub fn cell(&self, placement: &str, cell_id: &str) -> CellDir {
        CellDir {
            root: self.cells_dir(placement).join(cell_id),
        }
    }

    /// Every cell directory on every placement (not the stopped copies a restore set aside,
    /// `<cell>.replaced-<restore>`).
    pub fn all_cells(&self) -> Vec<CellDir> {
        let Ok(placements) = std::fs::read_dir(self.placements_dir()) else {
            return Vec::new();
        };
        placements
            .flatten()
            .filter_map(|p| std::fs::read_dir(p.path().join("cells")).ok())
            .flat_map(|cells| cells.flatten())
            .filter(|c| !c.file_name().to_string_lossy().contains(".replaced-"))
            .map(|c| CellDir::new(c.path()))
            .collect()
    }

    /// Service binaries linked (or copied) where a cell's own user can run them: the build's
    /// directory may sit in root's home, which no other user can enter.
    pub fn bin_dir(&self) -> PathBuf {
        self.root.join("bin")
    }

    /// Backups of cells: scheduled, asked for, and the last one before a delete.
    pub fn backups_dir(&self) -> PathBuf {
        self.root.join("backups")
    }
}

/// One local cell's directory, owned by its supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellDir {
    root: PathBuf,
}

impl CellDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cell's id: the directory's name.
    pub fn cell_id(&self) -> &str {
        self.root
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    }

    /// What the supervisor runs (written by the control plane).
    pub fn config(&self) -> PathBuf {
        self.root.join("cell.json")
    }

    /// `running` or `stopped`: whether the supervisor should run the services.
    pub fn desired(&self) -> PathBuf {
        self.root.join("desired")
    }

    /// What the supervisor observes (written by the supervisor, atomically).
    pub fn state(&self) -> PathBuf {
        self.root.join("state.json")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.root.join("supervisor.pid")
    }

    /// Held (`flock`) by the live supervisor for its whole life.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("supervisor.lock")
    }

    pub fn pg_dir(&self) -> PathBuf {
        self.root.join("pg")
    }

    /// 0700 directory of 0600 secret files.
    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    pub fn search_dir(&self) -> PathBuf {
        self.root.join("search")
    }

    /// Mail the cell's services send (password-reset codes), one `.eml` file each; local cells
    /// have no mail server, `mrbill tenant mail` shows them.
    /// The cell's own temporary directory (`TMPDIR` of its services: renders work here).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn mailbox_dir(&self) -> PathBuf {
        self.root.join("mailbox")
    }

    /// The cell's object store (a local directory).
    pub fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// The pid in a pidfile (first line), if the process is alive.
pub fn live_pid(pidfile: &Path) -> Option<u32> {
    std::fs::read_to_string(pidfile)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
        .filter(|pid| pid_alive(*pid))
}

/// The running postmaster of the Postgres data directory `data`, if any.
pub fn postmaster_pid(data: &Path) -> Option<u32> {
    live_pid(&data.join("postmaster.pid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_platform_runs_the_optimised_router_unless_the_release_one_is_newer() {
        let target = std::env::temp_dir().join(format!("cell-model-bins-{}", std::process::id()));
        let (release, router, debug) = (
            target.join("release"),
            target.join("router"),
            target.join("debug"),
        );
        for dir in [&release, &router, &debug] {
            std::fs::create_dir_all(dir).expect("dir");
        }
        let touch = |p: PathBuf, secs: u64| {
            let file = std::fs::File::create(&p).expect("file");
            file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                .expect("mtime");
            p
        };
        let plain = touch(release.join("mrbill-router"), 100);
        assert_eq!(router_binary(&release), plain, "no optimised build yet");
        let optimised = touch(router.join("mrbill-router"), 200);
        assert_eq!(router_binary(&release), optimised);
        touch(release.join("mrbill-router"), 300);
        assert_eq!(router_binary(&release), plain, "a newer release build wins");
        touch(debug.join("mrbill-router"), 400);
        assert_eq!(
            router_binary(&debug),
            debug.join("mrbill-router"),
            "tests run their own build"
        );
        std::fs::remove_dir_all(&target).ok();
    }

    #[test]
    fn liveness_follows_proc() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX));
        let dir = std::env::temp_dir().join(format!("cell-model-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        std::fs::write(
            dir.join("postmaster.pid"),
            format!("{}\n/data\n", std::process::id()),
        )
        .expect("write");
        assert_eq!(postmaster_pid(&dir), Some(std::process::id()));
        std::fs::write(dir.join("postmaster.pid"), "not a pid").expect("write");
        assert_eq!(postmaster_pid(&dir), None);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
