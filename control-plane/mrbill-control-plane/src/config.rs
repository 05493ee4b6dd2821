//! Control plane settings, read once from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cell_model::local::Home;
use cell_model::{DatabaseEngine, SearchEngine};
use secrecy::SecretString;
use service_kit::config::{optional, secret_file};
use service_kit::telemetry::LogFormat;

/// Where cells run (`MRBILL_DRIVER`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Driver {
    /// Processes on this machine, one Postgres cluster per cell (`local`, the default).
    #[default]
    Local,
    /// `Cell` resources in the current Kubernetes cluster, made real by the operator (`kubernetes`).
    Kubernetes,
}

impl std::str::FromStr for Driver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "local" => Ok(Driver::Local),
            "kubernetes" => Ok(Driver::Kubernetes),
            _ => Err(format!("unknown driver `{s}` (local or kubernetes)")),
        }
    }
}

/// Everything the control plane needs to know at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// The state root (`MRBILL_HOME`): tokens, catalog cluster, cells, backups.
    pub home: Home,
    /// Admin API + route feed listener (`MRBILL_CONTROL_PLANE_ADDR`). Without it: the address
    /// used last time (routers follow a fixed URL), else a free loopback port.
    pub addr: Option<SocketAddr>,
    /// The router's public URL; tenant endpoints are `<public_url>/t/<slug>` (`MRBILL_PUBLIC_URL`).
    pub public_url: String,
    /// An external catalog database (`MRBILL_CATALOG_URL_FILE` / `MRBILL_CATALOG_URL`); without
    /// one the control plane runs its own cluster under `MRBILL_HOME/catalog`.
    pub catalog_url: Option<SecretString>,
    /// Placements and their capacity in units (`MRBILL_PLACEMENTS=local=20,edge=4`); the first
    /// is the default.
    pub placements: Vec<(String, u32)>,
    /// Where `poc-service` & co. are (`MRBILL_BIN_DIR`, default: next to this executable).
    pub bin_dir: PathBuf,
    /// Test switch: exit right after this step's effects, before it is recorded.
    pub crash_after_step: Option<String>,
    /// Test switch: after recording this step (`op:step`), wait for another operation.
    pub pause_after_step: Option<String>,
    /// How often the reconciler checks every cell's health.
    pub health_interval: Duration,
    pub log_format: LogFormat,
    /// Where cells run (`MRBILL_DRIVER=local|kubernetes`).
    pub driver: Driver,
    /// Kubernetes cells: their database engine (`MRBILL_CELL_DATABASE=in-cluster|rds`, default
    /// `in-cluster`), search engine (`MRBILL_CELL_SEARCH=meilisearch|embedded`, default
    /// `meilisearch`) and service version (`MRBILL_CELL_VERSION`, default this build's).
    pub cell_database: DatabaseEngine,
    pub cell_search: SearchEngine,
    pub cell_version: String,
    /// Token files provided from outside (a Kubernetes Secret) instead of generated under
    /// `MRBILL_HOME` (`MRBILL_OPERATOR_TOKEN_FILE`, `MRBILL_ROUTER_TOKEN_FILE`).
    pub operator_token_file: Option<PathBuf>,
    pub router_token_file: Option<PathBuf>,
    /// How long a migration's source is kept, stopped, after the switch before it is backed
    /// up and removed (`MRBILL_MIGRATE_GRACE_SECS`, default 600).
    pub migrate_grace: Duration,
    /// How long a scale that takes replicas out of the route waits before stopping them, so
    /// every router has the new route and what it sent them finishes
    /// (`MRBILL_ROUTE_DRAIN_MS`, default 1000; Kubernetes pods wait in a preStop sleep instead).
    pub route_drain: Duration,
    /// How often every cell is backed up, instead of its tier's `backup_every_hours`
    /// (`MRBILL_BACKUP_EVERY_SECS`; 0 turns scheduled backups off).
    pub backup_every: Option<Duration>,
    /// Where the cells' services are listed for Prometheus's file-based discovery
    /// (`MRBILL_PROMETHEUS_TARGETS`; `targets.rs`); unset: nowhere.
    pub prometheus_targets: Option<PathBuf>,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let catalog_url = match secret_file("MRBILL_CATALOG_URL_FILE")? {
            Some(url) => Some(url),
            None => optional::<String>("MRBILL_CATALOG_URL")?.map(SecretString::from),
        };
        let placements = parse_placements(
            &optional::<String>("MRBILL_PLACEMENTS")?.unwrap_or_else(|| "local=20".into()),
        )?;
        Ok(Self {
            home: Home::from_env(),
            addr: optional("MRBILL_CONTROL_PLANE_ADDR")?,
            public_url: optional("MRBILL_PUBLIC_URL")?
                .unwrap_or_else(|| "http://127.0.0.1:8080".into()),
            catalog_url,
            placements,
            bin_dir: match optional::<PathBuf>("MRBILL_BIN_DIR")? {
                Some(dir) => dir,
                None => std::env::current_exe()
                    .context("locating this executable")?
                    .parent()
                    .context("the executable has a directory")?
                    .to_owned(),
            },
            crash_after_step: optional("MRBILL_CRASH_AFTER_STEP")?,
            pause_after_step: None,
            health_interval: Duration::from_millis(
                optional("MRBILL_HEALTH_INTERVAL_MS")?.unwrap_or(1000),
            ),
            log_format: optional("MRBILL_LOG_FORMAT")?.unwrap_or_default(),
            driver: optional("MRBILL_DRIVER")?.unwrap_or_default(),
            cell_database: match optional::<String>("MRBILL_CELL_DATABASE")?.as_deref() {
                None | Some("in-cluster") => DatabaseEngine::InCluster,
                Some("rds") => DatabaseEngine::Rds,
                Some(other) => {
                    anyhow::bail!("MRBILL_CELL_DATABASE: `{other}` is not in-cluster or rds")
                }
            },
            cell_search: match optional::<String>("MRBILL_CELL_SEARCH")?.as_deref() {
                None | Some("meilisearch") => SearchEngine::Meilisearch,
                Some("embedded") => SearchEngine::Embedded,
                Some(other) => {
                    anyhow::bail!("MRBILL_CELL_SEARCH: `{other}` is not meilisearch or embedded")
                }
            },
            cell_version: optional("MRBILL_CELL_VERSION")?
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
            operator_token_file: optional("MRBILL_OPERATOR_TOKEN_FILE")?,
            router_token_file: optional("MRBILL_ROUTER_TOKEN_FILE")?,
            migrate_grace: Duration::from_secs(
                optional("MRBILL_MIGRATE_GRACE_SECS")?
                    .unwrap_or(crate::migrate::DEFAULT_GRACE.as_secs()),
            ),
            route_drain: Duration::from_millis(optional("MRBILL_ROUTE_DRAIN_MS")?.unwrap_or(1000)),
            backup_every: optional("MRBILL_BACKUP_EVERY_SECS")?.map(Duration::from_secs),
            prometheus_targets: optional("MRBILL_PROMETHEUS_TARGETS")?,
        })
    }

    /// Database and search engine of a new cell under the configured driver.
    pub fn cell_engines(&self) -> (DatabaseEngine, SearchEngine) {
        match self.driver {
            Driver::Local => (DatabaseEngine::Local, SearchEngine::Embedded),
            Driver::Kubernetes => (self.cell_database, self.cell_search),
        }
    }

    /// The tenant's public endpoint, always through the router.
    pub fn endpoint(&self, slug: &str) -> String {
        format!("{}/t/{slug}", self.public_url.trim_end_matches('/'))
    }
}

/// `name=units[,name=units…]`.
pub fn parse_placements(s: &str) -> anyhow::Result<Vec<(String, u32)>> {
    let placements: Vec<(String, u32)> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, units) = p
                .split_once('=')
                .with_context(|| format!("MRBILL_PLACEMENTS: `{p}` is not name=units"))?;
            let units = units
                .trim()
                .parse()
                .with_context(|| format!("MRBILL_PLACEMENTS: `{units}` is not a number"))?;
            let name = name.trim();
            // A placement names a data root (local) or a cluster: a DNS label.
            anyhow::ensure!(
                cell_model::is_valid_slug(name),
                "MRBILL_PLACEMENTS: `{name}` is not a DNS label (3–40 of a-z, 0-9, '-')"
            );
            Ok((name.to_owned(), units))
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(
        !placements.is_empty(),
        "MRBILL_PLACEMENTS names no placement"
    );
    Ok(placements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_parse_with_the_first_as_default() {
        let p = parse_placements("local=20, edge = 4").expect("valid");
        assert_eq!(p, vec![("local".into(), 20), ("edge".into(), 4)]);
        assert!(parse_placements("local").is_err());
        assert!(parse_placements("local=x").is_err());
        assert!(parse_placements("").is_err());
        assert!(
            parse_placements("../x=1").is_err(),
            "a name is a path component"
        );
    }
}
