//! The cell supervisor: `mrbill-control-plane supervise --cell-dir <dir>`, one detached process per
//! local cell (its own session, a pidfile and an exclusive lock). It owns the cell's Postgres
//! cluster and its services: starts them, restarts them with backoff, writes what it sees to
//! `state.json`, and follows `desired` (`running`/`stopped`). SIGTERM stops everything and exits.
//!
//! **Invariant:** at most one supervisor per cell (the lock); a new one first kills services a
//! killed predecessor left behind, so a cell never runs two copies of a service.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use cell_model::local::CellDir;
use pg_cluster::{ClusterSpec, PgCluster};
use rustix::process::Signal;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal as unix_signal};

use cell_model::contract::{Secret, Service, env};

use super::files::{
    CellConfig, Desired, ServicePhase, ServiceState, SupervisorState, is_cell_process, pid_alive,
    read_desired, read_json, signal, try_lock, write_json,
};

/// The cluster's superuser (password in `secrets/pg-superuser`).
pub const PG_SUPERUSER: &str = "mrbill";

struct Running {
    child: Child,
    started: Instant,
}

struct Slot {
    running: Option<Running>,
    next_start: Instant,
    failures: u32,
}

/// Runs the supervisor until SIGTERM/SIGINT.
pub async fn run(dir: CellDir) -> anyhow::Result<()> {
    // Own session: the terminal's or the control plane's signals never reach the cell.
    let _ = rustix::process::setsid();
    let mut lock = None;
    for _ in 0..30 {
        lock = try_lock(&dir.lock_file())?;
        if lock.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(_lock) = lock else {
        tracing::info!("another supervisor holds the lock; exiting");
        return Ok(());
    };
    std::fs::write(dir.pid_file(), std::process::id().to_string())?;
    let mut config: CellConfig = read_json(&dir.config())?;
    kill_leftovers(&dir, &config.cell_id).await;

    let mut cluster = open_cluster(&dir, &config)?;
    let mut state = SupervisorState {
        pid: std::process::id(),
        postgres_port: cluster.port(),
        ..SupervisorState::default()
    };
    start_postgres(&mut cluster).await?;
    state.postgres_running = true;
    state.postgres_port = cluster.port();
    if config.pg_port != cluster.port() {
        config.pg_port = cluster.port();
        write_json(&dir.config(), &config)?;
    }
    write_json(&dir.state(), &state)?;
    tracing::info!(cell = %config.cell_id, pg_port = cluster.port(), "supervisor running");

    let mut term = unix_signal(SignalKind::terminate())?;
    let mut int = unix_signal(SignalKind::interrupt())?;
    let mut hup = unix_signal(SignalKind::hangup())?;
    let mut slots: BTreeMap<String, Slot> = config
        .services
        .iter()
        .map(|s| {
            (
                s.key(),
                Slot {
                    running: None,
                    next_start: Instant::now(),
                    failures: 0,
                },
            )
        })
        .collect();
    let mut last_pg_check = Instant::now();
    let mut reload = false;
    loop {
        let desired = read_desired(&dir);
        state.desired = Some(desired);
        // A postmaster that is gone (a crash, a fast or immediate shutdown) is seen from its
        // pid file (no process spawned) and restarted within half a second; `pg_ctl status`
        // every 5 s besides.
        let postmaster_gone = cell_model::local::postmaster_pid(&cluster.data_dir()).is_none();
        let due = if postmaster_gone {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        };
        if last_pg_check.elapsed() > due {
            last_pg_check = Instant::now();
            let running = cluster.is_running();
            if !running {
                tracing::warn!("postgres is down; restarting it");
                let _ = start_postgres(&mut cluster).await;
            }
            state.postgres_running = cluster.is_running();
        }
        // On SIGHUP the control plane may have added services or replicas to the cell (see
        // `LocalDriver::add_missing_services`, `scale`) or removed replicas: new instances start,
        // removed ones stop (SIGTERM: in-flight requests finish).
        if std::mem::take(&mut reload)
            && let Ok(fresh) = read_json::<CellConfig>(&dir.config())
        {
            for svc in &fresh.services {
                if let std::collections::btree_map::Entry::Vacant(slot) = slots.entry(svc.key()) {
                    tracing::info!(instance = %svc.key(), "instance added to the cell");
                    slot.insert(Slot {
                        running: None,
                        next_start: Instant::now(),
                        failures: 0,
                    });
                }
            }
            let gone: Vec<String> = slots
                .keys()
                .filter(|key| !fresh.services.iter().any(|s| s.key() == **key))
                .cloned()
                .collect();
            for key in gone {
                if let Some(slot) = slots.remove(&key)
                    && let Some(run) = slot.running
                {
                    stop_child(run.child, &key).await;
                }
                state.services.remove(&key);
                tracing::info!(instance = %key, "instance removed from the cell");
            }
            config.services = fresh.services;
        }
        for svc in config.services.clone() {
            let key = svc.key();
            let slot = slots.get_mut(&key).expect("a slot per instance");
            let entry = state.services.entry(key.clone()).or_default();
            // Reap exits.
            if let Some(run) = &mut slot.running
                && let Ok(Some(status)) = run.child.try_wait()
            {
                let was_ready = entry.phase == ServicePhase::Running;
                let lived = run.started.elapsed();
                slot.running = None;
                entry.pid = None;
                entry.public = None;
                entry.internal = None;
                if desired == Desired::Running {
                    slot.failures = if lived > Duration::from_secs(30) {
                        1
                    } else {
                        slot.failures + 1
                    };
                    let delay = Duration::from_millis(500)
                        * 2u32.saturating_pow(slot.failures.saturating_sub(1).min(6));
                    slot.next_start = Instant::now() + delay.min(Duration::from_secs(30));
                    entry.phase = ServicePhase::Backoff;
                    entry.restarts += 1;
                    tracing::warn!(service = %svc.name, %status, restart_in_ms = delay.as_millis() as u64, "service exited");
                    if !was_ready && slot.failures >= 2 {
                        // Never got ready twice in a row: its ports may be taken.
                        move_ports(&dir, &mut config, &key)?;
                    }
                } else {
                    entry.phase = ServicePhase::Stopped;
                }
            }
            match desired {
                Desired::Running => {
                    if slot.running.is_none() && Instant::now() >= slot.next_start {
                        let svc = config
                            .services
                            .iter()
                            .find(|s| s.key() == key)
                            .expect("instance in config")
                            .clone();
                        match spawn_service(&dir, &config, &svc) {
                            Ok(child) => {
                                entry.pid = child.id();
                                entry.phase = ServicePhase::Starting;
                                slot.running = Some(Running {
                                    child,
                                    started: Instant::now(),
                                });
                            }
                            Err(e) => {
                                tracing::error!(service = %svc.name, error = %format!("{e:#}"), "cannot start service");
                                slot.next_start = Instant::now() + Duration::from_secs(5);
                                entry.phase = ServicePhase::Backoff;
                            }
                        }
                    }
                    if entry.phase == ServicePhase::Starting
                        && let Ok(ready) = read_json::<serde_json::Value>(&ready_file(&dir, &key))
                    {
                        entry.phase = ServicePhase::Running;
                        entry.public = ready["public"].as_str().map(str::to_owned);
                        entry.internal = ready["internal"].as_str().map(str::to_owned);
                    }
                }
                Desired::Stopped => {
                    if let Some(run) = slot.running.take() {
                        stop_child(run.child, &svc.name).await;
                    }
                    *entry = ServiceState {
                        restarts: entry.restarts,
                        ..ServiceState::default()
                    };
                    slot.failures = 0;
                }
            }
        }
        write_state_if_changed(&dir, &state)?;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = hup.recv() => reload = true,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }

    tracing::info!("stopping the cell");
    for (name, slot) in slots {
        if let Some(run) = slot.running {
            stop_child(run.child, &name).await;
        }
    }
    let stopping = cluster.clone();
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .context("joining pg stop")??;
    let _ = std::fs::remove_file(dir.pid_file());
    let _ = std::fs::remove_file(dir.state());
    Ok(())
}

fn write_state_if_changed(dir: &CellDir, state: &SupervisorState) -> anyhow::Result<()> {
    let current: Option<SupervisorState> = read_json(&dir.state()).ok();
    if current.as_ref() != Some(state) {
        write_json(&dir.state(), state)?;
    }
    Ok(())
}

/// The cell's cluster (created by the control plane's `cluster` step; `init` is idempotent).
pub fn open_cluster(dir: &CellDir, config: &CellConfig) -> anyhow::Result<PgCluster> {
    let password = std::fs::read_to_string(dir.secrets_dir().join("pg-superuser"))
        .context("reading the cell's Postgres password")?;
    let owner = match config.pg_run_as {
        // The cell's own Postgres user (no /etc/passwd entry: nss_wrapper names it).
        Some(uid) => {
            hand_over(dir, uid)?;
            Some(
                pg_cluster::Owner::unlisted("cell-postgres", uid, &dir.root().join("nss"))?
                    .context("the cell's Postgres has its own user, but libnss-wrapper is missing (./x setup installs it)")?,
            )
        }
        None => pg_cluster::Owner::detect()?,
    };
    PgCluster::init_as(
        &ClusterSpec {
            root: dir.pg_dir(),
            port: Some(config.pg_port),
            superuser: PG_SUPERUSER.into(),
            password: password.trim().to_owned(),
            ephemeral: false,
        },
        owner,
    )
}

/// Whether the cell's postmaster runs.
pub fn postgres_runs(dir: &CellDir) -> bool {
    cell_model::local::postmaster_pid(&dir.pg_dir().join("data")).is_some()
}

/// Gives the cluster's files to `uid` when they are another user's (a cell made before its
/// Postgres had a user of its own); refused while that Postgres runs.
fn hand_over(dir: &CellDir, uid: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let data = dir.pg_dir().join("data");
    let Ok(meta) = std::fs::metadata(&data) else {
        return Ok(()); // no cluster yet: initdb makes it the owner's
    };
    if meta.uid() == uid {
        return Ok(());
    }
    anyhow::ensure!(
        !postgres_runs(dir),
        "the cell's Postgres still runs as uid {}; it moves to its own user once stopped",
        meta.uid()
    );
    tracing::info!(cell = %dir.root().display(), uid, "handing the Postgres data to the cell's own user");
    super::identity::chown_tree(&dir.pg_dir(), uid)
}

async fn start_postgres(cluster: &mut PgCluster) -> anyhow::Result<()> {
    let mut c = cluster.clone();
    let started = tokio::task::spawn_blocking(move || c.start().map(|()| c))
        .await
        .context("joining pg start")??;
    *cluster = started;
    Ok(())
}

fn ready_file(dir: &CellDir, service: &str) -> std::path::PathBuf {
    // Where the service may write: its cell's own scratch directory.
    dir.tmp_dir().join(format!("{service}.ready"))
}

/// Starts one service with exactly the settings and secrets it needs (a clean environment).
fn spawn_service(
    dir: &CellDir,
    config: &CellConfig,
    svc: &super::files::ServiceConfig,
) -> anyhow::Result<Child> {
    let service =
        Service::parse(&svc.name).with_context(|| format!("unknown cell service {}", svc.name))?;
    let key = svc.key();
    let ready = ready_file(dir, &key);
    let _ = std::fs::remove_file(&ready);
    let secrets = dir.secrets_dir();
    let kid = std::fs::read_to_string(secrets.join("jwt.kid")).context("reading jwt.kid")?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.logs_dir().join(format!("{key}.log")))?;
    let name = service.binary();
    let binary = match (
        config.run_as,
        dir.root().parent().and_then(std::path::Path::parent),
    ) {
        // The cell's own user may not be able to enter the build's directory (root's home).
        (Some(_), Some(home)) => {
            let home = cell_model::local::Home::new(home);
            super::identity::link_binaries(&home, &config.bin_dir, &[name, "media-render"])?;
            home.bin_dir().join(name)
        }
        _ => config.bin_dir.join(name),
    };
    let mut cmd = Command::new(&binary);
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(env::CELL_ID, &config.cell_id)
        .env(env::TENANT, &config.tenant)
        .env(env::HTTP_ADDR, format!("127.0.0.1:{}", svc.public_port))
        .env(
            env::INTERNAL_ADDR,
            format!("127.0.0.1:{}", svc.internal_port),
        )
        .env(env::JWT_KID, kid.trim())
        .env(env::TRUSTED_PROXIES, "127.0.0.1")
        .env(env::READY_FILE, &ready)
        .env(env::LOG_FORMAT, "json")
        // Scratch files (renders) stay in the cell, not in a /tmp every user shares.
        .env("TMPDIR", dir.tmp_dir())
        .env("HOME", dir.tmp_dir())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(false);
    // Each service gets only the secrets the contract gives it: the signing key stays with poc.
    for secret in service.secrets() {
        let file = match secret {
            // One directory holds every service's secrets: database URLs are per service.
            Secret::DatabaseUrl => format!("{}-database-url", svc.name),
            other => other.file().to_owned(),
        };
        cmd.env(secret.env(), secrets.join(file));
    }
    if service.calls_poc() {
        let poc = config
            .services
            .iter()
            .find(|s| s.name == Service::Poc.name() && s.replica <= 1)
            .context("the cell has no poc-service")?;
        cmd.env(
            env::POC_INTERNAL_URL,
            format!("http://127.0.0.1:{}", poc.internal_port),
        );
    }
    match service {
        Service::Poc => {
            // Each replica has an index of its own (a search consumer of its own).
            cmd.env(env::SEARCH_DIR, dir.search_dir().join(&key))
                .env(env::MAILBOX_DIR, dir.mailbox_dir())
                .env(env::EMAIL_DOMAINS, config.email_domains.join(","));
            // The first admin's invite: poc-service creates it at start from the token's hash.
            if let Some(b) = &config.bootstrap {
                cmd.env(env::BOOTSTRAP_ADMIN_EMAIL, &b.admin_email)
                    .env(env::BOOTSTRAP_INVITE_SHA256, &b.invite_token_sha256)
                    .env(env::BOOTSTRAP_EXPIRES_AT, &b.expires_at);
            }
        }
        Service::Dojo => {}
        Service::Media => {
            // The objects directory is shared by the replicas; each replica is an instance of
            // its own: a restart takes its own jobs back at once.
            let instance = match svc.replica {
                0 | 1 => "local".to_owned(),
                n => format!("local-{n}"),
            };
            cmd.env(env::MEDIA_DIR, dir.objects_dir())
                .env(env::MEDIA_INSTANCE, instance);
        }
    }
    if let Some(filter) = std::env::var_os("RUST_LOG") {
        cmd.env("RUST_LOG", filter);
    }
    // Where traces go and how they are sampled: the platform's own standard variables (each
    // service names itself; its tenant and cell come from its contract).
    for (key, value) in std::env::vars_os() {
        if key
            .to_str()
            .is_some_and(service_kit::telemetry::trace::passed_on)
        {
            cmd.env(key, value);
        }
    }
    if let Some(uid) = config.run_as {
        // The cell's own user, with no supplementary groups (std drops them with the uid).
        cmd.uid(uid).gid(uid);
    }
    cmd.spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

/// SIGTERM, then SIGKILL after 10 s.
async fn stop_child(mut child: Child, name: &str) {
    if let Some(pid) = child.id() {
        signal(pid, Signal::TERM);
    }
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(_) => tracing::info!(service = %name, "service stopped"),
        Err(_) => {
            tracing::warn!(service = %name, "service ignored SIGTERM; killing it");
            let _ = child.kill().await;
        }
    }
}

/// Stops services a previous supervisor of this cell left running (it was killed).
async fn kill_leftovers(dir: &CellDir, cell_id: &str) {
    let Ok(old) = read_json::<SupervisorState>(&dir.state()) else {
        return;
    };
    let pids: Vec<u32> = old
        .services
        .values()
        .filter_map(|s| s.pid)
        .filter(|pid| pid_alive(*pid) && is_cell_process(*pid, cell_id))
        .collect();
    for pid in &pids {
        tracing::warn!(pid, "stopping a service left by a previous supervisor");
        signal(*pid, Signal::TERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| pid_alive(*p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pid in pids {
        if pid_alive(pid) {
            signal(pid, Signal::KILL);
        }
    }
}

/// Picks fresh ports for a service that could not bind its own.
fn move_ports(dir: &CellDir, config: &mut CellConfig, instance: &str) -> anyhow::Result<()> {
    if let Some(svc) = config.services.iter_mut().find(|s| s.key() == instance) {
        svc.public_port = pg_cluster::free_port()?;
        svc.internal_port = pg_cluster::free_port()?;
        tracing::warn!(
            instance,
            public = svc.public_port,
            "moving the service to new ports"
        );
    }
    write_json(&dir.config(), config)
}
