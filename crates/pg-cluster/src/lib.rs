//! A private Postgres cluster: `initdb` + `pg_ctl`, run as an unprivileged user, password (scram)
//! auth only, listening on one loopback port and no Unix socket.
//!
//! Used by the test harness (one cluster per test run), `x dev`, and the local cell driver.
//! Postgres refuses to run as root, so when we are root every file of the cluster is owned by,
//! and every Postgres process runs as, [`Owner`] (`MRBILL_PG_USER`, default `postgres`).
//!
//! **Invariant:** the cluster never accepts `trust` auth; the superuser password is only known
//! to whoever created the cluster.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, bail};

/// The unprivileged account Postgres runs as when we are root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Extra environment for Postgres's programs, e.g. an `nss_wrapper` account for a uid
    /// that has no `/etc/passwd` entry ([`Owner::unlisted`]).
    pub env: Vec<(String, String)>,
}

impl Owner {
    /// `None` when we are not root (Postgres then runs as us); otherwise the account named by
    /// `MRBILL_PG_USER` (default `postgres`, created by Debian's postgresql package).
    pub fn detect() -> anyhow::Result<Option<Owner>> {
        let euid = fs::metadata("/proc/self")
            .context("reading /proc/self")?
            .uid();
        if euid != 0 {
            return Ok(None);
        }
        let name = std::env::var("MRBILL_PG_USER").unwrap_or_else(|_| "postgres".into());
        Self::lookup(&name)?.map(Some).with_context(|| {
            format!("running as root, and Postgres refuses root: create the unprivileged user `{name}` (apt-get install postgresql does) or set MRBILL_PG_USER")
        })
    }

    /// An account for `uid` that `/etc/passwd` does not list (Postgres insists on a user name
    /// for its uid): described in `passwd`/`group` files under `dir`, which Debian's
    /// `libnss-wrapper` (preloaded) answers from. `None` when that library is not installed.
    pub fn unlisted(name: &str, uid: u32, dir: &Path) -> anyhow::Result<Option<Owner>> {
        let Some(lib) = nss_wrapper() else {
            return Ok(None);
        };
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (passwd, group) = (dir.join("passwd"), dir.join("group"));
        fs::write(
            &passwd,
            format!("{name}:x:{uid}:{uid}:{name}:/nonexistent:/usr/sbin/nologin\n"),
        )?;
        fs::write(&group, format!("{name}:x:{uid}:\n"))?;
        let env = [
            ("LD_PRELOAD", lib),
            ("NSS_WRAPPER_PASSWD", passwd),
            ("NSS_WRAPPER_GROUP", group),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.display().to_string()))
        .collect();
        Ok(Some(Owner {
            name: name.to_owned(),
            uid,
            gid: uid,
            env,
        }))
    }

    fn lookup(name: &str) -> anyhow::Result<Option<Owner>> {
        let passwd = fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
        Ok(passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 3 && f[0] == name {
                Some(Owner {
                    name: name.to_owned(),
                    uid: f[2].parse().ok()?,
                    gid: f[3].parse().ok()?,
                    env: Vec::new(),
                })
            } else {
                None
            }
        }))
    }
}

/// How to create a cluster.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Directory holding `data/`, the server log and the port file. Created if missing.
    pub root: PathBuf,
    /// Fixed port, or `None` to pick a free one (remembered across restarts).
    pub port: Option<u16>,
    pub superuser: String,
    pub password: String,
    /// Turn off fsync & co. Only for throwaway test clusters.
    pub ephemeral: bool,
}

/// A Postgres cluster on disk (running or not).
#[derive(Clone, Debug)]
pub struct PgCluster {
    root: PathBuf,
    port: u16,
    superuser: String,
    password: String,
    bin_dir: PathBuf,
    owner: Option<Owner>,
}

/// Finds the Postgres server binaries: `MRBILL_PG_BIN_DIR`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps them off `PATH`), else `PATH`.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("MRBILL_PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("initdb").exists())
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }
    let which = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .context("looking for initdb")?;
    if which.status.success() {
        let path = PathBuf::from(String::from_utf8_lossy(&which.stdout).trim());
        if let Some(dir) = path.parent() {
            return Ok(dir.to_owned());
        }
    }
    bail!(
        "Postgres server binaries not found: install postgresql (`./x setup`) or set MRBILL_PG_BIN_DIR"
    )
}

/// A free loopback TCP port (racy by nature: it is free now; `start` retries on a clash).
///
/// Picked below the kernel's ephemeral range (32768–60999 here), which outgoing connections
/// draw their local ports from: a port handed out from inside that range can be taken by any
/// connection (an HTTP client's, a pool's) before the server meant for it binds. Each process
/// draws from its own window of that space (by pid), in order from a per-process start, so
/// processes running side by side (test binaries) rarely meet either.
pub fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const BASE: u32 = 20_000;
    const WINDOWS: u32 = 48;
    const WIDTH: u32 = 250;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let pid = std::process::id();
    let window = BASE + (pid % WINDOWS) * WIDTH;
    // A start inside the window that differs between processes sharing it.
    let start = (pid / WINDOWS).wrapping_mul(97) % WIDTH;
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..WIDTH {
        let port = window + NEXT.fetch_add(1, Ordering::Relaxed) % WIDTH;
        let port = u16::try_from(port).expect("below 32768");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    // Every port of the window is taken: let the kernel choose.
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// Debian's `libnss-wrapper`, if installed.
pub fn nss_wrapper() -> Option<PathBuf> {
    let lib = "libnss_wrapper.so";
    fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join(lib))
        .chain([PathBuf::from("/usr/lib").join(lib)])
        .find(|p| p.exists())
}

impl PgCluster {
    /// Opens the cluster at `spec.root`, running `initdb` first if it does not exist yet.
    /// Idempotent: a half-initialised data dir (no `PG_VERSION`) is wiped and redone.
    pub fn init(spec: &ClusterSpec) -> anyhow::Result<Self> {
        Self::init_as(spec, Owner::detect()?)
    }

    /// [`PgCluster::init`] with Postgres running as `owner` (`None`: as we are).
    pub fn init_as(spec: &ClusterSpec, owner: Option<Owner>) -> anyhow::Result<Self> {
        let bin_dir = bin_dir()?;
        fs::create_dir_all(&spec.root)
            .with_context(|| format!("creating {}", spec.root.display()))?;
        let port_file = spec.root.join("port");
        let port = match (
            spec.port,
            fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.trim().parse().ok()),
        ) {
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => free_port()?,
        };
        let cluster = Self {
            root: spec.root.clone(),
            port,
            superuser: spec.superuser.clone(),
            password: spec.password.clone(),
            bin_dir,
            owner,
        };
        cluster.chown(&spec.root)?;
        // The cluster's files (its log, its port) are Postgres's and ours alone.
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&spec.root, fs::Permissions::from_mode(0o700))
                .with_context(|| format!("chmod {}", spec.root.display()))?;
        }
        if !cluster.data_dir().join("PG_VERSION").exists() {
            cluster.initdb()?;
        }
        cluster.write_conf(spec.ephemeral)?;
        fs::write(&port_file, port.to_string())?;
        Ok(cluster)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn superuser(&self) -> &str {
        &self.superuser
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn log_file(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// Turns every network rule of `pg_hba.conf` into a `hostssl` one: only TLS connections
    /// over the network (the server must have TLS on). Takes effect at the next start or reload.
    pub fn require_tls(&self) -> anyhow::Result<()> {
        let hba = self.data_dir().join("pg_hba.conf");
        let rules: String = fs::read_to_string(&hba)?
            .lines()
            .map(|l| match l.strip_prefix("host ") {
                Some(rest) => format!("hostssl {rest}\n"),
                None => format!("{l}\n"),
            })
            .collect();
        anyhow::ensure!(
            rules.contains("hostssl"),
            "no network rule in {}",
            hba.display()
        );
        fs::write(&hba, rules)?;
        Ok(())
    }

    /// `postgres://` URL for `user`/`password` on database `db`.
    pub fn url_for(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{db}",
            enc(user),
            enc(password),
            self.port
        )
    }

    /// Superuser URL on database `db`.
    pub fn url(&self, db: &str) -> String {
        self.url_for(&self.superuser, &self.password, db)
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let data = self.data_dir();
        if data.exists() {
            fs::remove_dir_all(&data)
                .with_context(|| format!("removing half-initialised {}", data.display()))?;
        }
        let pwfile = self.root.join(".pwfile");
        {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&pwfile)?;
            f.write_all(self.password.as_bytes())?;
        }
        self.chown(&pwfile)?;
        let out = self.run(
            self.cmd("initdb")
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    &self.superuser,
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ])
                .arg(format!("--pwfile={}", pwfile.display())),
        );
        let _ = fs::remove_file(&pwfile);
        out.context("initdb")?;
        Ok(())
    }

    /// Our settings live in `mrbill.conf`, included from `postgresql.conf`, so a restart on a new
    /// port only rewrites that file.
    fn write_conf(&self, ephemeral: bool) -> anyhow::Result<()> {
        let data = self.data_dir();
        let mut conf = format!(
            "# Written by mrbill; changes are overwritten.\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = ''\nmax_connections = 200\nshared_buffers = 32MB\n\
             # A cell moves to another placement by logical replication (`mrbill cell migrate`).\n\
             # One walsender and slot per service database and table being copied, workers to \
             apply and copy them at once, retried quickly.\n\
             wal_level = logical\nmax_wal_senders = 32\nmax_replication_slots = 32\n\
             max_worker_processes = 32\nmax_logical_replication_workers = 24\n\
             max_sync_workers_per_subscription = 4\nwal_retrieve_retry_interval = 100ms\n",
            self.port
        );
        if ephemeral {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let path = data.join("mrbill.conf");
        fs::write(&path, conf)?;
        self.chown(&path)?;
        let main = data.join("postgresql.conf");
        let text = fs::read_to_string(&main)?;
        if !text.contains("include_if_exists = 'mrbill.conf'") {
            fs::OpenOptions::new()
                .append(true)
                .open(&main)?
                .write_all(b"\ninclude_if_exists = 'mrbill.conf'\n")?;
        }
        Ok(())
    }

    /// Starts the server and waits until it accepts connections. A no-op if it already runs.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let mut last = None;
        for attempt in 0..5 {
            if attempt > 0 {
                // The remembered port may have been taken meanwhile: move to a free one.
                self.port = free_port()?;
                fs::write(self.root.join("port"), self.port.to_string())?;
                self.write_conf(self.conf_is_ephemeral())?;
            }
            let log = self.log_file();
            let result = self.run(
                self.cmd("pg_ctl")
                    .arg("-D")
                    .arg(self.data_dir())
                    .arg("-l")
                    .arg(&log)
                    .args(["-w", "-t", "60", "start"]),
            );
            match result {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let tail = fs::read_to_string(&log).unwrap_or_default();
                    let port_clash = tail
                        .lines()
                        .rev()
                        .take(20)
                        .any(|l| l.contains("Address already in use"));
                    last =
                        Some(e.context(tail.lines().rev().take(5).collect::<Vec<_>>().join(" | ")));
                    if !port_clash {
                        break;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("pg_ctl start failed")))
    }

    fn conf_is_ephemeral(&self) -> bool {
        fs::read_to_string(self.data_dir().join("mrbill.conf"))
            .is_ok_and(|c| c.contains("fsync = off"))
    }

    /// Whether a postmaster is running on this data dir.
    pub fn is_running(&self) -> bool {
        self.cmd("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Stops the server (fast mode: rolls back open transactions, checkpoints, exits).
    pub fn stop(&self) -> anyhow::Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        self.run(
            self.cmd("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "fast", "-w", "-t", "60", "stop"]),
        )
        .map(drop)
    }

    /// Stops the server and deletes the cluster's directory.
    pub fn destroy(self) -> anyhow::Result<()> {
        self.stop()?;
        fs::remove_dir_all(&self.root).with_context(|| format!("removing {}", self.root.display()))
    }

    fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.env("LC_ALL", "C")
            .env_remove("PGPASSWORD")
            .current_dir(&self.root)
            .stdin(Stdio::null());
        if let Some(owner) = &self.owner {
            cmd.uid(owner.uid).gid(owner.gid);
            // Not root's: libpq in the server (a subscription's connection) looks for client
            // certificates under $HOME and fails where it may not look.
            cmd.env("HOME", &self.root);
            cmd.envs(owner.env.iter().map(|(k, v)| (k, v)));
        }
        cmd
    }

    fn run(&self, cmd: &mut Command) -> anyhow::Result<Output> {
        let out = cmd
            .output()
            .with_context(|| format!("running {:?}", cmd.get_program()))?;
        if !out.status.success() {
            bail!(
                "{:?} failed ({}): {}{}",
                cmd.get_program(),
                out.status,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(out)
    }

    /// Gives `path` to the owner (when we are root), so Postgres can use it.
    fn chown(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(owner) = &self.owner {
            std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
                .with_context(|| format!("chown {} to {}", path.display(), owner.name))?;
        }
        Ok(())
    }
}

/// Spawns a detached watcher (its own process group) that, once process `pid` is gone, stops
/// the postmaster of `data_dir` and removes `remove` if given — so an interrupted test run or
/// `x dev` never leaves Postgres behind. Signals the postmaster directly: `pg_ctl` refuses to
/// run as root, and the watcher may be root.
pub fn spawn_reaper(pid: u32, data_dir: &Path, remove: Option<&Path>) -> anyhow::Result<()> {
    let rm = remove
        .map(|p| format!("rm -rf '{}'", p.display()))
        .unwrap_or_default();
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
         [ -f '{data}/postmaster.pid' ] && kill -INT $(head -1 '{data}/postmaster.pid') 2>/dev/null; \
         for i in $(seq 1 100); do [ -f '{data}/postmaster.pid' ] || break; sleep 0.1; done; {rm}",
        data = data_dir.display()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("spawning the cluster reaper")?;
    Ok(())
}

/// Percent-encodes a URL userinfo component.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_components_are_percent_encoded() {
        assert_eq!(enc("a b@c:d/e"), "a%20b%40c%3Ad%2Fe");
        assert_eq!(enc("plain-_.~9"), "plain-_.~9");
    }

    #[test]
    fn passwd_lookup_finds_root() {
        let root = Owner::lookup("root")
            .expect("readable")
            .expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(
            Owner::lookup("no-such-user-here")
                .expect("readable")
                .is_none()
        );
    }
}
