//! `mrbill up | down | status`: the platform's processes on this machine, all under one
//! `MRBILL_HOME`. The keeper, the control plane, the router and (asked for) Prometheus run
//! detached (their own process groups, logs in `MRBILL_HOME/logs`), the keeper restarting the
//! others when they crash;
//! cells run under their own supervisors, started by the control plane.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
pub use cell_model::local::pid_alive;
use cell_model::local::{CellDir, Home, live_pid, postmaster_pid};
use rustix::process::{Pid, Signal};

use crate::client::{CliResult, Failure, Ready, exit, read_ready};
use crate::keeper::{self, Part};

fn signal(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Where the platform binaries are: `MRBILL_BIN_DIR`, else next to this executable.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MRBILL_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    Ok(std::env::current_exe()?
        .parent()
        .context("the executable has a directory")?
        .to_owned())
}

/// What `up` reports.
#[derive(Debug, serde::Serialize)]
pub struct Platform {
    pub home: String,
    pub control_plane: String,
    pub router: String,
    /// The local Prometheus, when asked for (`--with-prometheus`).
    pub prometheus: Option<String>,
    /// The local trace collector, when asked for (`--with-traces`).
    pub traces: Option<String>,
    pub started: Vec<&'static str>,
}

/// Starts whatever is not running: the keeper (`keeper.rs`), which starts the control plane
/// (which starts its catalog Postgres and adopts or restarts the cells) and the router and
/// keeps them running. Idempotent.
pub fn up(
    home: &Home,
    router_addr: SocketAddr,
    with_prometheus: bool,
    with_traces: bool,
) -> CliResult<Platform> {
    for dir in [home.root().to_owned(), home.logs_dir(), home.router_dir()] {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Postgres runs as an unprivileged user and must traverse the home.
    set_mode(home.root(), 0o755)?;
    let alive = |part: Part| read_ready(&part.ready(home)).filter(|r| pid_alive(r.pid));
    // A Prometheus that runs is kept on, asked for or not.
    let with_prometheus = with_prometheus || alive(Part::Prometheus).is_some();
    let with_traces = with_traces || alive(Part::Traces).is_some();
    if with_traces {
        // Known before anything starts: the control plane and the router send to it.
        crate::traces::choose_addr(home)?;
    }
    let parts = Part::kept(with_prometheus, with_traces);
    let was: Vec<bool> = parts.iter().map(|part| alive(*part).is_some()).collect();
    let public_url = match alive(Part::Router) {
        Some(r) => r.url,
        None => format!("http://{}", choose_router_addr(home, router_addr)?),
    };
    if was.contains(&false) || keeper::running(home).is_none() {
        // A keeper that let a component go (it was stopped on purpose) makes way for one that
        // adopts what runs and starts the rest.
        if let Some(pid) = keeper::running(home) {
            signal(pid, Signal::TERM);
            wait_gone(pid, Duration::from_secs(5), || signal(pid, Signal::KILL));
        }
        let keeper = std::env::current_exe().context("this executable")?;
        let mut args = vec!["keep", "--public-url", &public_url];
        if with_prometheus {
            args.push("--with-prometheus");
        }
        if with_traces {
            args.push("--with-traces");
        }
        let mut child = spawn(home, &keeper, "keeper", &args, &[])?;
        // Reaped here, should it stop before `up` returns; otherwise it outlives this process.
        std::thread::spawn(move || child.wait());
    }
    let mut started = Vec::new();
    let mut urls = std::collections::HashMap::new();
    for (part, was_alive) in parts.into_iter().zip(was) {
        urls.insert(part, wait_ready(&part.ready(home), home, part.name())?.url);
        if !was_alive {
            started.push(part.name());
        }
    }
    let prometheus = urls.get(&Part::Prometheus).cloned();
    if let Some(url) = &prometheus
        && !crate::prometheus::wait_serving(url, Duration::from_secs(60))
    {
        return Err(Failure::new(
            "start_timeout",
            format!("Prometheus at {url} did not get ready within 60 s"),
            exit::TIMEOUT,
        )
        .hint(format!(
            "see {}",
            home.logs_dir().join("prometheus.log").display()
        )));
    }
    let url = |part| urls.get(&part).cloned().unwrap_or_default();
    Ok(Platform {
        home: home.root().display().to_string(),
        control_plane: url(Part::ControlPlane),
        router: url(Part::Router),
        prometheus,
        traces: urls.get(&Part::Traces).cloned(),
        started,
    })
}

/// Starts `part` for the keeper (its child): the router serves at `public_url` and follows the
/// control plane wherever that listens; with `traces`, both export to the local collector.
pub fn start(home: &Home, part: Part, public_url: &str, traces: bool) -> anyhow::Result<Child> {
    let bins = bin_dir()?;
    let traced = if traces {
        crate::traces::exporter_env(home)
    } else {
        Vec::new()
    };
    let child = match part {
        Part::ControlPlane => spawn(
            home,
            &bins.join("mrbill-control-plane"),
            part.name(),
            &[],
            &[
                vec![
                    ("MRBILL_PUBLIC_URL", public_url.to_owned()),
                    // Cheap, and ready for a Prometheus started later.
                    (
                        "MRBILL_PROMETHEUS_TARGETS",
                        crate::prometheus::targets(home).display().to_string(),
                    ),
                ],
                traced,
            ]
            .concat(),
        ),
        Part::Prometheus => return crate::prometheus::start(home),
        Part::Traces => return crate::traces::start(home),
        Part::Router => {
            let control_plane = read_ready(&home.control_plane_ready())
                .filter(|r| pid_alive(r.pid))
                .map(|r| r.url)
                .context("the control plane is not listening yet")?;
            let metrics = crate::prometheus::router_metrics_addr(home)?;
            // Where a running Prometheus finds both now.
            crate::prometheus::write_platform_targets(home, &control_plane)?;
            spawn(
                home,
                &cell_model::local::router_binary(&bins),
                part.name(),
                &[],
                &[
                    (
                        "MRBILL_ROUTER_ADDR",
                        public_url.trim_start_matches("http://").to_owned(),
                    ),
                    ("MRBILL_PUBLIC_URL", public_url.to_owned()),
                    (
                        "MRBILL_ROUTER_SNAPSHOT",
                        home.router_snapshot().display().to_string(),
                    ),
                    ("MRBILL_CONTROL_PLANE_URL", control_plane),
                    (
                        "MRBILL_ROUTER_TOKEN_FILE",
                        home.router_token().display().to_string(),
                    ),
                    (
                        "MRBILL_READY_FILE",
                        home.router_ready().display().to_string(),
                    ),
                    ("MRBILL_ROUTER_METRICS_ADDR", metrics.to_string()),
                ]
                .into_iter()
                .chain(traced)
                .collect::<Vec<_>>(),
            )
        }
    };
    child.map_err(|f| anyhow::anyhow!("{}", f.message))
}

/// The router's address: the one used before (so endpoints stay the same), else the requested
/// one, else a free port when the requested port is 0 or the default is taken.
fn choose_router_addr(home: &Home, requested: SocketAddr) -> CliResult<SocketAddr> {
    let remembered = home.router_dir().join("addr");
    let previous: Option<SocketAddr> = std::fs::read_to_string(&remembered)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let candidates = previous.into_iter().chain([requested]);
    let mut chosen = None;
    for addr in candidates {
        if addr.port() != 0 && TcpListener::bind(addr).is_ok() {
            chosen = Some(addr);
            break;
        }
    }
    let addr = match chosen {
        Some(addr) => addr,
        None => TcpListener::bind(SocketAddr::new(requested.ip(), 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| {
                Failure::new(
                    "no_port",
                    format!("no free port on {}: {e}", requested.ip()),
                    exit::ERROR,
                )
            })?,
    };
    std::fs::write(&remembered, addr.to_string()).context("remembering the router address")?;
    Ok(addr)
}

/// Starts `binary args` detached from this terminal (its own process group), its output
/// appended to `logs/<name>.log`.
pub(crate) fn spawn(
    home: &Home,
    binary: &Path,
    name: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> CliResult<Child> {
    use std::os::unix::process::CommandExt;
    let log_path = home.logs_dir().join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .env("MRBILL_HOME", home.root())
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("log file")?)
        .stderr(log)
        // Its own process group: Ctrl-C in this terminal does not reach it.
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().map_err(|e| {
        Failure::new(
            "spawn_failed",
            format!("cannot start {}: {e}", binary.display()),
            exit::ERROR,
        )
        .hint("build the binaries (`cargo build`) or set MRBILL_BIN_DIR")
    })
}

fn wait_ready(path: &Path, home: &Home, name: &str) -> CliResult<Ready> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(ready) = read_ready(path).filter(|r| pid_alive(r.pid)) {
            return Ok(ready);
        }
        if Instant::now() > deadline {
            return Err(Failure::new(
                "start_timeout",
                format!("{name} did not start within 90 s"),
                exit::TIMEOUT,
            )
            .hint(format!(
                "see {}",
                home.logs_dir().join(format!("{name}.log")).display()
            )));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// What `down` stopped.
#[derive(Debug, serde::Serialize)]
pub struct Stopped {
    pub stopped: Vec<String>,
}

/// Stops the router and the control plane, then (unless `keep_cells`) every cell's supervisor
/// and the catalog's Postgres. Idempotent.
pub fn down(home: &Home, keep_cells: bool) -> CliResult<Stopped> {
    let mut stopped = Vec::new();
    // The keeper first, or it would start again what this stops.
    if let Some(pid) = keeper::running(home) {
        signal(pid, Signal::TERM);
        wait_gone(pid, Duration::from_secs(5), || signal(pid, Signal::KILL));
        stopped.push("keeper".to_owned());
    }
    let _ = std::fs::remove_file(keeper::pid_file(home));
    for (name, ready) in [
        ("prometheus", crate::prometheus::ready(home)),
        ("router", home.router_ready()),
        ("control-plane", home.control_plane_ready()),
        // Last: it takes the others' final spans.
        ("traces", crate::traces::ready(home)),
    ] {
        if let Some(r) = read_ready(&ready).filter(|r| pid_alive(r.pid)) {
            signal(r.pid, Signal::TERM);
            wait_gone(r.pid, Duration::from_secs(30), || {
                signal(r.pid, Signal::KILL)
            });
            stopped.push(name.to_owned());
        }
        let _ = std::fs::remove_file(&ready);
    }
    if keep_cells {
        return Ok(Stopped { stopped });
    }
    {
        let cells: Vec<CellDir> = home.all_cells();
        let pids: Vec<(String, u32)> = cells
            .iter()
            .filter_map(|c| {
                let pid = live_pid(&c.pid_file())?;
                Some((c.root().file_name()?.to_string_lossy().into_owned(), pid))
            })
            .collect();
        // Signal all, then wait: cells stop in parallel.
        for (_, pid) in &pids {
            signal(*pid, Signal::TERM);
        }
        for (cell, pid) in pids {
            wait_gone(pid, Duration::from_secs(60), || signal(pid, Signal::KILL));
            stopped.push(format!("cell {cell}"));
        }
        for cell in &cells {
            if stop_postmaster(&cell.pg_dir().join("data")) {
                stopped.push(format!("postgres of {}", cell.root().display()));
            }
        }
    }
    if stop_postmaster(&home.catalog_dir().join("data")) {
        stopped.push("catalog postgres".into());
    }
    Ok(Stopped { stopped })
}

/// Fast shutdown of the postmaster of `data` if it runs; whether it did.
fn stop_postmaster(data: &Path) -> bool {
    let Some(pid) = postmaster_pid(data) else {
        return false;
    };
    signal(pid, Signal::INT);
    wait_gone(pid, Duration::from_secs(30), || signal(pid, Signal::QUIT));
    true
}

fn wait_gone(pid: u32, patience: Duration, force: impl Fn()) {
    let deadline = Instant::now() + patience;
    while pid_alive(pid) {
        if Instant::now() > deadline {
            force();
            std::thread::sleep(Duration::from_millis(200));
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Processes of the local platform, for `status`.
#[derive(Debug, serde::Serialize)]
pub struct Processes {
    pub home: String,
    /// The keeper's pid.
    pub keeper: Option<u32>,
    pub control_plane: Option<String>,
    pub router: Option<String>,
    pub prometheus: Option<String>,
    pub traces: Option<String>,
    pub catalog_postgres: bool,
    pub cell_supervisors: usize,
}

pub fn processes(home: &Home) -> Processes {
    let live = |p: PathBuf| {
        read_ready(&p)
            .filter(|r| pid_alive(r.pid))
            .map(|r| format!("{} (pid {})", r.url, r.pid))
    };
    let supervisors = home
        .all_cells()
        .iter()
        .filter(|c| live_pid(&c.pid_file()).is_some())
        .count();
    Processes {
        home: home.root().display().to_string(),
        keeper: keeper::running(home),
        control_plane: live(home.control_plane_ready()),
        router: live(home.router_ready()),
        prometheus: live(crate::prometheus::ready(home)),
        traces: live(crate::traces::ready(home)),
        catalog_postgres: postmaster_pid(&home.catalog_dir().join("data")).is_some(),
        cell_supervisors: supervisors,
    }
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// One message of a local cell's mailbox.
#[derive(Debug, serde::Serialize)]
pub struct Mail {
    pub file: String,
    pub to: String,
    pub subject: String,
    /// The whole message as sent (headers and body).
    pub message: String,
}

/// The messages in a cell's mailbox directory, oldest first (file names start with the time).
pub fn mailbox(dir: &Path) -> CliResult<Vec<Mail>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", dir.display()).into()),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    let mut mail = Vec::new();
    for path in files {
        let message = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let header = |name: &str| {
            message
                .lines()
                .take_while(|l| !l.is_empty())
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        mail.push(Mail {
            file: path.display().to_string(),
            to: header("To:"),
            subject: header("Subject:"),
            message: message.replace("\r\n", "\n"),
        });
    }
    Ok(mail)
}
