//! What the router benches share: the backend, the proxies under test (each its own process,
//! optionally under a tool such as callgrind) and wrk.

// Each bench uses part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::routing::get;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One wrk run.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub p50: f64,
    pub p99: f64,
    pub rps: f64,
    /// Requests answered in the run.
    pub requests: f64,
}

/// Runs wrk against `url` for `secs`, flat out or (with `pace`, a wrk script that waits
/// between requests) at a steady moderate rate.
pub fn wrk(url: &str, connections: u32, secs: u64, pace: Option<&Path>) -> Sample {
    let mut args = vec![
        "-t2".to_owned(),
        format!("-c{connections}"),
        format!("-d{secs}s"),
        "--latency".into(),
    ];
    if let Some(script) = pace {
        args.extend(["-s".into(), script.display().to_string()]);
    }
    let out = Command::new("wrk")
        .args(&args)
        .arg(url)
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "{url} answered errors under load:\n{text}"
    );
    let ms = |v: &str| -> f64 {
        let v = v.trim();
        let (num, unit) = v.split_at(v.find(|c: char| c.is_alphabetic()).unwrap_or(v.len()));
        let n: f64 = num.parse().unwrap_or(f64::NAN);
        match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            _ => f64::NAN,
        }
    };
    let pct = |p: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(p))
            .and_then(|l| l.split_whitespace().nth(1))
            .map_or(f64::NAN, ms)
    };
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    Sample {
        p50: pct("50%"),
        p99: pct("99%"),
        rps,
        requests,
    }
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A child process stopped on drop (TERM: nginx stops its workers too).
pub struct Stopped(pub Child, &'static str);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args([&format!("-{}", self.1), &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

pub fn wait_for_port(port: u16, wait: Duration) {
    for _ in 0..wait.as_millis() / 50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}

pub fn start_router(
    bin: &Path,
    dir: &Path,
    workers: u32,
    backend_port: u16,
    env: &[(&str, String)],
    wrap: &[&str],
) -> (Stopped, u16) {
    let port = free_port();
    let snapshot = dir.join(format!("routes-{workers}-{port}.json"));
    let table = serde_json::json!({ "revision": 1, "routes": { "acme": {
        "tenant": "acme", "cell_id": "c-acme", "generation": 1, "state": "active",
        "services": { "poc": format!("http://127.0.0.1:{backend_port}") } } } });
    std::fs::write(&snapshot, table.to_string()).expect("snapshot");
    let child = wrapped(wrap, &cell_model::local::router_binary(bin))
        .env("MRBILL_ROUTER_ADDR", format!("127.0.0.1:{port}"))
        .env("MRBILL_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("MRBILL_ROUTER_SNAPSHOT", &snapshot)
        .env("MRBILL_ROUTER_WORKERS", workers.to_string())
        .env("MRBILL_TENANT_RATE", "100000000")
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mrbill-router (cargo build --release -p mrbill-router)");
    (Stopped(child, "TERM"), port)
}

/// nginx as the router's peer: the same route, and the same headers set on the way to the cell
/// (the cell's id, the client's address and the path prefix its links need).
pub fn start_nginx(dir: &Path, workers: u32, backend_port: u16, wrap: &[&str]) -> (Stopped, u16) {
    let port = free_port();
    let conf = dir.join(format!("nginx-{workers}-{port}.conf"));
    // Under a tool that follows one process, nginx serves from that process (its workers'
    // code, without the fork).
    let master = if wrap.is_empty() { "on" } else { "off" };
    let text = format!(
        "master_process {master}; worker_processes {workers}; daemon off;
         pid {dir}/nginx-{workers}-{port}.pid;
         error_log {dir}/error.log crit;
         events {{ worker_connections 1024; }}
         http {{ access_log off;
           upstream cell {{ server 127.0.0.1:{backend_port}; keepalive 64; }}
           server {{ listen 127.0.0.1:{port};
             location /t/acme/ {{ proxy_pass http://cell/; proxy_http_version 1.1;
               proxy_set_header Connection \"\";
               proxy_set_header X-Cell-Id c-acme; proxy_set_header X-Forwarded-For $remote_addr;
               proxy_set_header X-Forwarded-Prefix /t/acme; }} }} }}",
        dir = dir.display()
    );
    std::fs::write(&conf, text).expect("nginx conf");
    let child = wrapped(wrap, Path::new("nginx"))
        .args(["-c", &conf.display().to_string()])
        .args(["-e", &dir.join("error.log").display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx (apt-get install nginx-light)");
    (Stopped(child, "TERM"), port)
}

/// `program`, or `wrap` (a tool and its arguments) running it.
fn wrapped(wrap: &[&str], program: &Path) -> Command {
    match wrap.split_first() {
        None => Command::new(program),
        Some((tool, args)) => {
            let mut cmd = Command::new(tool);
            cmd.args(args).arg(program);
            cmd
        }
    }
}

/// The runtime the backend and the collector run on (one thread: the proxies and wrk need the
/// rest of the machine).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The backend every path ends at: answers `ok` to any GET. Returns its port.
pub fn backend(rt: &tokio::runtime::Runtime) -> u16 {
    let port = free_port();
    rt.spawn(async move {
        let app = Router::new().fallback(get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind backend");
        axum::serve(listener, app).await
    });
    port
}

/// An OTLP collector that takes every export and drops it. Returns its port.
pub fn collector(rt: &tokio::runtime::Runtime) -> u16 {
    let port = free_port();
    rt.spawn(async move {
        let app = Router::new().route(
            "/v1/traces",
            axum::routing::post(|_: axum::body::Bytes| async { "" }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind collector");
        axum::serve(listener, app).await
    });
    port
}

/// The traced router's variables: every request traced, exported to `collector` (a port),
/// its counters on `metrics`.
pub fn traced(collector: u16, metrics: u16) -> Vec<(&'static str, String)> {
    vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{collector}"),
        ),
        ("OTEL_TRACES_SAMPLER", "always_on".to_owned()),
        ("MRBILL_ROUTER_METRICS_ADDR", format!("127.0.0.1:{metrics}")),
    ]
}

/// Where the router is (`MRBILL_BIN_DIR`, else the bench's own target directory, whose router
/// build as it ships `cell_model::local::router_binary` finds beside it).
pub fn bin_dir() -> PathBuf {
    std::env::var("MRBILL_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::current_exe()
                .expect("exe")
                .parent()
                .and_then(|d| d.parent())
                .expect("target dir")
                .to_owned()
        })
}

/// 64 connections, each waiting 1–25 ms (random, so they do not move in step) after every
/// answer: ≈ 5,000 requests/s in all, far below saturation, so the latencies are the proxies'
/// own rather than queueing. Returns the wrk script's path.
pub fn pace_script(dir: &Path) -> PathBuf {
    let pace = dir.join("pace.lua");
    std::fs::write(
        &pace,
        "function delay()\n  return math.random(1, 25)\nend\n",
    )
    .expect("pace script");
    pace
}

/// The router's `/metrics` on its metrics listener.
pub fn scrape(port: u16) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics listener");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .expect("request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("answer");
    text
}

/// One counter's value in a Prometheus text exposition (`series` ends with a space).
pub fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}
