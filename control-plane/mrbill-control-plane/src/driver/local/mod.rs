//! The local driver: each cell is a directory under `MRBILL_HOME/cells/<cell-id>` and a detached
//! supervisor process that owns the cell's Postgres cluster and services.
//!
//! Every method is idempotent: the reconciler may call it again after a crash at any point.
//!
//! **Invariant:** the control plane never owns a cell's processes; it writes files (`cell.json`,
//! `desired`), signals the supervisor, and reads `state.json`. Killing the control plane never
//! kills a cell; a restarted one adopts the running supervisors.

mod backup;
mod cell_driver;
pub mod files;
pub mod identity;
mod migrate;
mod restore;
pub mod supervisor;
mod teardown;
mod tree;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cell_model::CellSpec;
use cell_model::contract::Service;
use cell_model::local::{CellDir, Home};
use cell_model::route_feed::Endpoints;
use rustix::process::Signal;
use secrecy::{ExposeSecret, SecretString};
use service_kit::cell_secrets::CellSecrets;
use service_kit::secrets::write_secret;

use self::files::{
    CellConfig, Desired, ServiceConfig, ServicePhase, SupervisorState, pid_alive, read_json,
    signal, supervisor_alive, write_desired, write_json,
};
use self::supervisor::PG_SUPERUSER;

/// How long a step waits for the supervisor to report progress.
const STEP_TIMEOUT: Duration = Duration::from_secs(90);

/// Drives cells as local processes.
#[derive(Clone, Debug)]
pub struct LocalDriver {
    home: Home,
    bin_dir: PathBuf,
}

impl LocalDriver {
    pub fn new(home: Home, bin_dir: PathBuf) -> Self {
        Self { home, bin_dir }
    }

    /// The cell's directory on `placement`.
    pub fn cell_dir(&self, placement: &str, cell_id: &str) -> CellDir {
        self.home.cell(placement, cell_id)
    }

    /// `secrets` step: the cell's directories, secrets (0600) and `cell.json`.
    pub async fn prepare(&self, spec: &CellSpec, dir: &CellDir) -> anyhow::Result<()> {
        let cells_dir = dir
            .root()
            .parent()
            .context("a cell directory has a parent")?;
        let placement_dir = cells_dir.parent().context("cells sit in a placement")?;
        for d in [
            self.home.root().to_owned(),
            self.home.placements_dir(),
            placement_dir.to_owned(),
            cells_dir.to_owned(),
            dir.root().to_owned(),
            dir.logs_dir(),
            dir.search_dir(),
            dir.objects_dir(),
            dir.mailbox_dir(),
            dir.tmp_dir(),
        ] {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        // Mail carries reset codes: the cell's owner only.
        set_mode(&dir.mailbox_dir(), 0o700)?;
        // Postgres (an unprivileged user) must traverse down to its own directory.
        for d in [
            self.home.root(),
            &self.home.placements_dir(),
            placement_dir,
            cells_dir,
            dir.root(),
        ] {
            set_mode(d, 0o755)?;
        }
        let secrets = dir.secrets_dir();
        std::fs::create_dir_all(&secrets)?;
        set_mode(&secrets, 0o700)?;
        CellSecrets::write_missing(&secrets)?;
        ensure_secret(
            &secrets.join("pg-superuser"),
            CellSecrets::database_password,
        )?;
        for svc in Service::ALL.map(Service::name) {
            ensure_secret(
                &secrets.join(format!("{svc}-db-password")),
                CellSecrets::database_password,
            )?;
        }
        if !dir.config().exists() {
            let config = CellConfig {
                cell_id: spec.cell_id.clone(),
                tenant: spec.tenant.clone(),
                bin_dir: self.bin_dir.clone(),
                pg_port: pg_cluster::free_port()?,
                services: Service::ALL
                    .iter()
                    .flat_map(|service| {
                        (1..=wanted(spec, *service)).map(|replica| instance(*service, replica))
                    })
                    .collect::<anyhow::Result<_>>()?,
                run_as: identity::allocate(&self.home, &spec.cell_id)?,
                pg_run_as: match pg_cluster::nss_wrapper() {
                    Some(_) => identity::allocate(&self.home, &spec.cell_id)?,
                    None => None,
                },
                email_domains: spec.email_domains.clone(),
                bootstrap: spec.bootstrap.clone(),
            };
            write_json(&dir.config(), &config)?;
        } else {
            // Cells made before cell.json had the tenant's domains, the first admin's invite
            // or the cell's own user learn them here.
            let mut config: CellConfig = read_json(&dir.config())?;
            let mut changed =
                config.email_domains != spec.email_domains || config.bootstrap != spec.bootstrap;
            config.email_domains = spec.email_domains.clone();
            config.bootstrap = spec.bootstrap.clone();
            if config.run_as.is_none() {
                config.run_as = identity::allocate(&self.home, &spec.cell_id)?;
                changed |= config.run_as.is_some();
            }
            if changed {
                write_json(&dir.config(), &config)?;
            }
        }
        self.secure(dir)?;
        if !dir.desired().exists() {
            write_desired(dir, Desired::Stopped)?;
        }
        Ok(())
    }

    /// `cluster` step: `initdb` (a no-op when the cluster exists).
    pub async fn init_cluster(&self, dir: &CellDir) -> anyhow::Result<()> {
        let dir = dir.clone();
        let config: CellConfig = read_json(&dir.config())?;
        tokio::task::spawn_blocking(move || supervisor::open_cluster(&dir, &config).map(drop))
            .await
            .context("joining initdb")?
    }

    /// `supervisor` step: a supervisor runs (started if needed) and its Postgres accepts
    /// connections.
    pub async fn ensure_supervisor(&self, dir: &CellDir) -> anyhow::Result<()> {
        self.spawn_supervisor_if_gone(dir)?;
        self.wait_for(dir, "Postgres to start", |s| s.postgres_running)
            .await
            .map(drop)
    }

    /// Starts a supervisor for `dir` unless one holds the lock; true if it started one.
    pub fn spawn_supervisor_if_gone(&self, dir: &CellDir) -> anyhow::Result<bool> {
        if supervisor_alive(dir) {
            return Ok(false);
        }
        self.adopt_identities(dir)?;
        self.adopt_build(dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.logs_dir().join("supervisor.log"))?;
        // The new supervisor reads the old state file to stop services a killed one left.
        std::process::Command::new(self.bin_dir.join("mrbill-control-plane"))
            .arg("supervise")
            .arg("--cell-dir")
            .arg(dir.root())
            .env_remove("MRBILL_CRASH_AFTER_STEP")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the cell supervisor")?;
        tracing::info!(cell = %dir.root().display(), "started a cell supervisor");
        Ok(true)
    }

    /// Points a cell at this control plane's build (`MRBILL_BIN_DIR`) while no supervisor runs
    /// it. `cell.json` records the build a cell was made with; without this a cell kept
    /// running that build's services after the platform was started from another (a demo cell
    /// made by a debug `./x dev` stayed on debug binaries once `./x dev` built release).
    fn adopt_build(&self, dir: &CellDir) -> anyhow::Result<()> {
        if !dir.config().exists() {
            return Ok(());
        }
        let mut config: CellConfig = read_json(&dir.config())?;
        if config.bin_dir == self.bin_dir {
            return Ok(());
        }
        tracing::info!(
            cell = %config.cell_id,
            from = %config.bin_dir.display(),
            to = %self.bin_dir.display(),
            "the cell runs this control plane's build now"
        );
        config.bin_dir = self.bin_dir.clone();
        write_json(&dir.config(), &config)?;
        self.secure(dir)
    }

    /// Gives a cell made before cells had OS users its own — its services' uid, and its
    /// Postgres's when libnss-wrapper is there — while no supervisor runs it: the next one
    /// starts the services as the new user and hands the Postgres data over before starting
    /// it. A cell whose Postgres still runs (a killed supervisor leaves it) keeps Postgres's
    /// identity until it has stopped.
    fn adopt_identities(&self, dir: &CellDir) -> anyhow::Result<()> {
        if !identity::running_as_root() || !dir.config().exists() {
            return Ok(());
        }
        let mut config: CellConfig = read_json(&dir.config())?;
        let mut adopted = Vec::new();
        if config.run_as.is_none() {
            config.run_as = identity::allocate(&self.home, &config.cell_id)?;
            adopted.push("services");
        }
        let postgres_runs = supervisor::postgres_runs(dir);
        if config.pg_run_as.is_none() && !postgres_runs && pg_cluster::nss_wrapper().is_some() {
            config.pg_run_as = identity::allocate(&self.home, &config.cell_id)?;
            adopted.push("postgres");
        }
        if adopted.is_empty() {
            return Ok(());
        }
        write_json(&dir.config(), &config)?;
        self.secure(dir)?;
        tracing::info!(cell = %config.cell_id, users = ?adopted, "the cell has users of its own now");
        Ok(())
    }

    /// `databases` step: one role and one database per service, reachable only by that role.
    pub async fn ensure_databases(&self, dir: &CellDir) -> anyhow::Result<()> {
        let state = self.state(dir).context("the supervisor reports no state")?;
        let secrets = dir.secrets_dir();
        let su = read_trimmed(&secrets.join("pg-superuser"))?;
        let url = pg_url(PG_SUPERUSER, &su, state.postgres_port, "postgres");
        let conn = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .context("connecting to the cell's Postgres")?;
        for svc in Service::ALL.map(Service::name) {
            let password = read_trimmed(&secrets.join(format!("{svc}-db-password")))?;
            anyhow::ensure!(
                password
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "unexpected characters in a generated password"
            );
            sqlx::raw_sql(&format!(
                "DO $$ BEGIN
                   IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{svc}') THEN
                     CREATE ROLE {svc} LOGIN PASSWORD '{password}';
                   ELSE
                     ALTER ROLE {svc} LOGIN PASSWORD '{password}';
                   END IF;
                 END $$"
            ))
            .execute(&conn)
            .await?;
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(svc)
                    .fetch_one(&conn)
                    .await?;
            if !exists {
                sqlx::raw_sql(&format!("CREATE DATABASE {svc} OWNER {svc}"))
                    .execute(&conn)
                    .await?;
            }
            // Only the owning role connects: services cannot read each other's databases.
            sqlx::raw_sql(&format!("REVOKE ALL ON DATABASE {svc} FROM PUBLIC"))
                .execute(&conn)
                .await?;
            write_secret(
                &secrets.join(format!("{svc}-database-url")),
                &pg_url(svc, &password, state.postgres_port, svc),
            )?;
        }
        conn.close().await;
        self.secure(dir)
    }

    /// The cell's files owned and guarded as `local::identity` describes (root-run only).
    fn secure(&self, dir: &CellDir) -> anyhow::Result<()> {
        let config: CellConfig = read_json(&dir.config())?;
        match config.run_as {
            Some(uid) => identity::secure(dir, uid),
            None => Ok(()),
        }
    }

    /// Gives a running cell the services it lacks (it was created before they existed): their
    /// secrets, roles and databases, ports in `cell.json`; the supervisor starts them on its
    /// next round. `false` when nothing was missing (the common, cheap case).
    pub async fn add_missing_services(
        &self,
        spec: &CellSpec,
        dir: &CellDir,
    ) -> anyhow::Result<bool> {
        let cell_id = spec.cell_id.as_str();
        let mut config: CellConfig = read_json(&dir.config())?;
        let missing: Vec<&str> = Service::ALL
            .map(Service::name)
            .into_iter()
            .filter(|svc| !config.services.iter().any(|s| s.name == *svc))
            .collect();
        if missing.is_empty() {
            return Ok(false);
        }
        tracing::info!(cell = %cell_id, services = ?missing, "adding services the cell lacks");
        self.prepare(spec, dir).await?;
        self.ensure_databases(dir).await?;
        for name in missing {
            let service = Service::parse(name).context("a contract service")?;
            config.services.push(instance(service, 1)?);
        }
        write_json(&dir.config(), &config)?;
        if let Some(pid) = cell_model::local::live_pid(&dir.pid_file()) {
            signal(pid, Signal::HUP);
        }
        Ok(true)
    }

    /// `services` step: tells the supervisor to run (or stop) the services and waits until
    /// they are ready (or stopped).
    pub async fn set_services(&self, dir: &CellDir, run: bool) -> anyhow::Result<Endpoints> {
        self.spawn_supervisor_if_gone(dir)?;
        write_desired(
            dir,
            if run {
                Desired::Running
            } else {
                Desired::Stopped
            },
        )?;
        if let Some(pid) = cell_model::local::live_pid(&dir.pid_file()) {
            signal(pid, Signal::HUP);
        }
        // The services this cell was created with (a cell made before a service existed
        // keeps running without it).
        let instances: Vec<ServiceConfig> = read_json::<CellConfig>(&dir.config())?.services;
        let services: Vec<String> = instances.iter().map(ServiceConfig::key).collect();
        let state = if run {
            self.wait_for(dir, "the services to be ready", |s| {
                s.desired == Some(Desired::Running)
                    && services.iter().all(|svc| {
                        s.services
                            .get(svc)
                            .is_some_and(|st| st.phase == ServicePhase::Running)
                    })
            })
            .await?
        } else {
            self.wait_for(dir, "the services to stop", |s| {
                s.desired == Some(Desired::Stopped)
                    && s.services
                        .values()
                        .all(|st| st.phase == ServicePhase::Stopped)
            })
            .await?
        };
        let urls = service_urls(&state);
        if run {
            for instance in &instances {
                let public = state
                    .services
                    .get(&instance.key())
                    .and_then(|s| s.public.as_ref())
                    .with_context(|| format!("{} reported no address", instance.key()))?;
                wait_ready(&format!("http://{public}")).await?;
            }
        }
        Ok(urls)
    }

    /// `services` step of a scale: the instances the spec wants beyond those the cell has, on
    /// new ports; the supervisor starts them (SIGHUP) and this waits until every one is ready.
    pub async fn scale_up(&self, spec: &CellSpec, dir: &CellDir) -> anyhow::Result<()> {
        let mut config: CellConfig = read_json(&dir.config())?;
        let mut added = Vec::new();
        for service in Service::ALL {
            let have: Vec<u32> = config
                .services
                .iter()
                .filter(|s| s.name == service.name())
                .map(|s| s.replica)
                .collect();
            for replica in 1..=wanted(spec, service) {
                if !have.contains(&replica) {
                    let new = instance(service, replica)?;
                    added.push(new.key());
                    config.services.push(new);
                }
            }
        }
        if !added.is_empty() {
            tracing::info!(cell = %spec.cell_id, instances = ?added, "adding instances");
            write_json(&dir.config(), &config)?;
        }
        self.set_services(dir, true).await.map(drop)
    }

    /// `prune` step of a scale: the instances beyond the spec's replicas leave `cell.json`; the
    /// supervisor stops them (SIGTERM: in-flight requests finish) and this waits until it has.
    pub async fn prune(&self, spec: &CellSpec, dir: &CellDir) -> anyhow::Result<()> {
        let mut config: CellConfig = read_json(&dir.config())?;
        let extra: Vec<String> = config
            .services
            .iter()
            .filter(|s| Service::parse(&s.name).is_some_and(|svc| s.replica > wanted(spec, svc)))
            .map(ServiceConfig::key)
            .collect();
        if !extra.is_empty() {
            tracing::info!(cell = %spec.cell_id, instances = ?extra, "removing instances");
            config.services.retain(|s| !extra.contains(&s.key()));
            write_json(&dir.config(), &config)?;
        }
        if let Some(pid) = cell_model::local::live_pid(&dir.pid_file()) {
            signal(pid, Signal::HUP);
        }
        self.wait_for(dir, "the removed instances to stop", |s| {
            s.services.keys().all(|key| !extra.contains(key))
        })
        .await
        .map(drop)
    }

    /// What the supervisor reports, if it is alive.
    pub fn observe(&self, dir: &CellDir) -> Option<SupervisorState> {
        supervisor_alive(dir).then(|| self.state(dir)).flatten()
    }

    fn state(&self, dir: &CellDir) -> Option<SupervisorState> {
        read_json(&dir.state()).ok()
    }

    async fn wait_for(
        &self,
        dir: &CellDir,
        what: &str,
        done: impl Fn(&SupervisorState) -> bool,
    ) -> anyhow::Result<SupervisorState> {
        let started = Instant::now();
        let deadline = started + STEP_TIMEOUT;
        let mut respawned = false;
        loop {
            if let Some(state) = self.state(dir)
                && done(&state)
                && pid_alive(state.pid)
            {
                return Ok(state);
            }
            // A supervisor just started may not hold its lock yet: give it a few seconds.
            if !respawned && started.elapsed() > Duration::from_secs(5) && !supervisor_alive(dir) {
                // Died meanwhile (or was never started): one more supervisor, then keep waiting.
                respawned = self.spawn_supervisor_if_gone(dir)?;
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out waiting for {what}; see {}",
                    dir.logs_dir().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// How many instances of `service` the cell runs: its override or the tier's default, within
/// the tier's bounds.
pub fn wanted(spec: &CellSpec, service: Service) -> u32 {
    let bounds = spec.tier.template().bounds(service);
    spec.replicas
        .get(service)
        .unwrap_or(bounds.default)
        .clamp(bounds.min, bounds.max)
}

/// A new instance of `service` on free ports.
fn instance(service: Service, replica: u32) -> anyhow::Result<ServiceConfig> {
    Ok(ServiceConfig {
        name: service.name().to_owned(),
        public_port: pg_cluster::free_port()?,
        internal_port: pg_cluster::free_port()?,
        replica,
    })
}

/// The router's view of the instances a supervisor reports running: per service the first
/// replica running (older routers use only it) and, when several run, all of them.
pub fn service_urls(state: &SupervisorState) -> Endpoints {
    let mut running: BTreeMap<Service, Vec<String>> = BTreeMap::new();
    // Keys sort `poc` before `poc-2`…: the first replica first.
    for (key, s) in &state.services {
        if s.phase != ServicePhase::Running {
            continue;
        }
        let name = key.split_once('-').map_or(key.as_str(), |(name, _)| name);
        if let (Some(service), Some(public)) = (Service::parse(name), s.public.as_ref()) {
            running
                .entry(service)
                .or_default()
                .push(format!("http://{public}"));
        }
    }
    Endpoints {
        services: running
            .iter()
            .filter_map(|(s, urls)| Some((*s, urls.first()?.clone())))
            .collect(),
        replicas: running.into_iter().collect(),
    }
}

/// Polls `<base>/readyz` until it answers 200.
async fn wait_ready(base: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        match client.get(format!("{base}/readyz")).send().await {
            Ok(res) if res.status().is_success() => return Ok(()),
            _ if Instant::now() > deadline => bail!("{base}/readyz never answered 200"),
            _ => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

fn pg_url(user: &str, password: &str, port: u16, db: &str) -> String {
    format!("postgres://{user}:{password}@127.0.0.1:{port}/{db}")
}

fn read_trimmed(path: &Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_owned())
}

/// Creates a secret (0600) unless it exists: secrets are generated once, never rotated by a retry.
fn ensure_secret(path: &Path, make: impl FnOnce() -> SecretString) -> anyhow::Result<()> {
    if !path.exists() {
        write_secret(path, make().expose_secret())?;
    }
    Ok(())
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}
