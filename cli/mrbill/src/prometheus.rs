//! The local Prometheus (`mrbill up --with-prometheus`, which `./x dev` uses): Debian's
//! `prometheus` (or `MRBILL_PROMETHEUS`), kept running by the keeper like the control plane
//! and the router. It scrapes every cell's services from the file the control plane keeps
//! current (file-based discovery: a cell is scraped once its route is active, dropped when it
//! goes), the control plane and the router (on its loopback metrics listener), and evaluates the platform's rules — the chart's file,
//! built into this binary, so local and Kubernetes alert alike.
//!
//! ```text
//! MRBILL_HOME/prometheus/  prometheus.yml  written at each start (jobs `cells`, `control-plane`, `router`)
//!                          rules.yml       charts/mrbill/files/prometheus-rules.yml
//!                          cells.json      the control plane's (MRBILL_PROMETHEUS_TARGETS)
//!                          control-plane.json, router.json   rewritten when the router starts
//!                          data/  addr  ready
//! ```

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Child;

use anyhow::Context;
use cell_model::local::{Home, pid_alive};

use crate::client::read_ready;

/// The platform's rules, as the chart ships them.
pub const RULES: &str = include_str!("../../../charts/mrbill/files/prometheus-rules.yml");

/// Where Prometheus listens unless that is taken (then any free port, remembered).
const DEFAULT_ADDR: &str = "127.0.0.1:9090";

pub fn dir(home: &Home) -> PathBuf {
    home.root().join("prometheus")
}

/// The file the control plane lists the cells' services in.
pub fn targets(home: &Home) -> PathBuf {
    dir(home).join("cells.json")
}

pub fn ready(home: &Home) -> PathBuf {
    dir(home).join("ready")
}

/// Where the router serves its metrics (loopback only; never its public listener): the port
/// used before, else a free one, remembered so a restarted router keeps its scrape target.
pub fn router_metrics_addr(home: &Home) -> anyhow::Result<SocketAddr> {
    remembered_addr(&home.router_dir().join("metrics-addr"), None)
}

/// Starts Prometheus for the keeper (its child) and says where it listens in its ready file.
pub fn start(home: &Home) -> anyhow::Result<Child> {
    let control_plane = read_ready(&home.control_plane_ready())
        .filter(|r| pid_alive(r.pid))
        .map(|r| r.url)
        .context("the control plane is not listening yet")?;
    let dir = dir(home);
    std::fs::create_dir_all(dir.join("data"))?;
    std::fs::write(dir.join("rules.yml"), RULES)?;
    // The control plane's file, until it writes one (never over one it wrote).
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(targets(home))
    {
        Ok(mut file) => std::io::Write::write_all(&mut file, b"[]")?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }
    write_platform_targets(home, &control_plane)?;
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, configuration(&dir))?;
    let addr = choose_addr(&dir)?;
    let binary = std::env::var_os("MRBILL_PROMETHEUS")
        .map_or_else(|| PathBuf::from("prometheus"), PathBuf::from);
    let args = [
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        "--storage.tsdb.retention.time=7d".to_owned(),
        format!("--web.listen-address={addr}"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = crate::local::spawn(home, &binary, "prometheus", &args, &[])
        .map_err(|f| anyhow::anyhow!("{} (Debian: apt-get install prometheus)", f.message))?;
    let ready = serde_json::json!({ "url": format!("http://{addr}"), "pid": child.id() });
    let aside = self::ready(home).with_extension("tmp");
    std::fs::write(&aside, ready.to_string())?;
    std::fs::rename(&aside, self::ready(home))?;
    Ok(child)
}

/// The scrape configuration: the cells from the control plane's file, the control plane and
/// the router (its metrics listener) from files this CLI rewrites whenever it starts them (a
/// restarted one may listen elsewhere).
fn configuration(dir: &Path) -> String {
    let job = |name: &str| {
        format!(
            "  - job_name: {name}\n    file_sd_configs:\n      - files: [{}]\n",
            dir.join(format!("{name}.json")).display()
        )
    };
    format!(
        "# Written by `mrbill up --with-prometheus` at each start; edits are lost.\n\
         global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n{cells}{control_plane}{router}",
        rules = dir.join("rules.yml").display(),
        cells = job("cells"),
        control_plane = job("control-plane"),
        router = job("router"),
    )
}

/// Where Prometheus finds the control plane (`control_plane`, its URL) and the router's metrics
/// listener: one file each (written aside, then renamed).
pub fn write_platform_targets(home: &Home, control_plane: &str) -> anyhow::Result<()> {
    let dir = dir(home);
    std::fs::create_dir_all(&dir)?;
    let router = std::fs::read_to_string(home.router_dir().join("metrics-addr")).ok();
    let files = [
        (
            "control-plane.json",
            Some(host_port(control_plane).to_owned()),
        ),
        ("router.json", router.map(|r| r.trim().to_owned())),
    ];
    for (file, target) in files {
        let groups = match target {
            Some(target) => serde_json::json!([{ "targets": [target] }]),
            None => serde_json::json!([]),
        };
        let aside = dir.join(format!("{file}.tmp"));
        std::fs::write(&aside, groups.to_string())?;
        std::fs::rename(&aside, dir.join(file))?;
    }
    Ok(())
}

/// `host:port` of a base URL.
fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// Prometheus's address: the one used before, else the asked-for one
/// (`MRBILL_PROMETHEUS_ADDR`, default 127.0.0.1:9090; port 0: any).
fn choose_addr(dir: &Path) -> anyhow::Result<SocketAddr> {
    let asked = std::env::var("MRBILL_PROMETHEUS_ADDR").unwrap_or_else(|_| DEFAULT_ADDR.into());
    let asked: SocketAddr = asked
        .parse()
        .with_context(|| format!("MRBILL_PROMETHEUS_ADDR: `{asked}` is not an address"))?;
    remembered_addr(&dir.join("addr"), Some(asked))
}

/// The address remembered in `file` if it is free, else `asked` if free, else a free loopback
/// port; whichever, remembered in `file`.
pub(crate) fn remembered_addr(
    file: &Path,
    asked: Option<SocketAddr>,
) -> anyhow::Result<SocketAddr> {
    let previous: Option<SocketAddr> = std::fs::read_to_string(file)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let free = previous
        .into_iter()
        .chain(asked)
        .filter(|addr| addr.port() != 0)
        .find(|addr| TcpListener::bind(addr).is_ok());
    let addr = match free {
        Some(addr) => addr,
        None => TcpListener::bind("127.0.0.1:0")?.local_addr()?,
    };
    std::fs::write(file, addr.to_string())?;
    Ok(addr)
}

/// Waits until Prometheus at `url` says it is ready (it loads its data first); whether it did.
pub fn wait_serving(url: &str, patience: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + patience;
    let client = reqwest::blocking::Client::new();
    while std::time::Instant::now() < deadline {
        let ready = client.get(format!("{url}/-/ready")).send();
        if ready.is_ok_and(|r| r.status().is_success()) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_scrapes_the_control_planes_file_and_loads_the_rules() {
        let text = configuration(Path::new("/home/p"));
        for expected in [
            "rule_files:\n  - /home/p/rules.yml\n",
            "job_name: cells\n    file_sd_configs:\n      - files: [/home/p/cells.json]\n",
            "job_name: control-plane\n    file_sd_configs:\n      - files: [/home/p/control-plane.json]\n",
            "job_name: router\n    file_sd_configs:\n      - files: [/home/p/router.json]\n",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
        assert!(RULES.contains("alert: CellServiceDown"));
    }
}
