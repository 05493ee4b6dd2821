//! Router vs nginx, side by side in one run: `cargo bench -p mrbill-router --bench proxy`
//! (needs Debian's `wrk` and `nginx`: `apt-get install wrk nginx-light`; build the router first
//! with `cargo build --release -p mrbill-router`).
//!
//! A small GET against one backend, three ways: direct, through `mrbill-router` (the release
//! binary, its own process) and through nginx (keep-alive upstream). wrk: 2 threads, 64
//! keep-alive connections, 10 s each, everything on the same 2 cores. Prints p50/p99 and
//! requests/s, and the added latency of each proxy over the direct path.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::routing::get;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Runs wrk and returns (p50 ms, p99 ms, requests/s).
fn wrk(url: &str) -> (f64, f64, f64) {
    let out = Command::new("wrk")
        .args(["-t2", "-c64", "-d10s", "--latency", url])
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let ms = |v: &str| -> f64 {
        let (num, unit) = v.trim().split_at(
            v.trim()
                .find(|c: char| c.is_alphabetic())
                .unwrap_or(v.len()),
        );
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
    (pct("50%"), pct("99%"), rps)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let dir = std::env::temp_dir().join(format!("router-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let backend_port = free_port();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.spawn(async move {
        let app = Router::new().fallback(get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", backend_port))
            .await
            .expect("bind backend");
        axum::serve(listener, app).await
    });

    // mrbill-router with a one-tenant table.
    let router_port = free_port();
    let snapshot = dir.join("routes.json");
    let table = serde_json::json!({ "revision": 1, "routes": { "acme": {
        "tenant": "acme", "cell_id": "c-acme", "generation": 1, "state": "active",
        "services": { "poc": format!("http://127.0.0.1:{backend_port}") } } } });
    std::fs::write(&snapshot, table.to_string()).expect("snapshot");
    let bin = std::env::var("MRBILL_BIN_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::current_exe()
                .expect("exe")
                .parent()
                .and_then(|d| d.parent())
                .expect("target dir")
                .to_owned()
        });
    let _router = Killed(
        Command::new(bin.join("mrbill-router"))
            .env("MRBILL_ROUTER_ADDR", format!("127.0.0.1:{router_port}"))
            .env(
                "MRBILL_PUBLIC_URL",
                format!("http://127.0.0.1:{router_port}"),
            )
            .env("MRBILL_ROUTER_SNAPSHOT", &snapshot)
            .env("MRBILL_TENANT_RATE", "100000000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mrbill-router (cargo build --release -p mrbill-router)"),
    );

    // nginx with a keep-alive upstream, the usual production shape.
    let nginx_port = free_port();
    let conf = format!(
        "worker_processes 1; daemon off; pid {dir}/nginx.pid; error_log {dir}/error.log crit;
         events {{ worker_connections 1024; }}
         http {{ access_log off;
           upstream cell {{ server 127.0.0.1:{backend_port}; keepalive 64; }}
           server {{ listen 127.0.0.1:{nginx_port};
             location /t/acme/ {{ proxy_pass http://cell/; proxy_http_version 1.1; proxy_set_header Connection \"\";
               proxy_set_header X-Cell-Id c-acme; proxy_set_header X-Forwarded-For $remote_addr; }} }} }}",
        dir = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).expect("nginx conf");
    let _nginx = Killed(
        Command::new("nginx")
            .args([
                "-c",
                &dir.join("nginx.conf").display().to_string(),
                "-e",
                &dir.join("error.log").display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx (apt-get install nginx-light)"),
    );
    std::thread::sleep(Duration::from_millis(500));

    let direct = wrk(&format!("http://127.0.0.1:{backend_port}/v1/pocs"));
    let router = wrk(&format!("http://127.0.0.1:{router_port}/t/acme/v1/pocs"));
    let nginx = wrk(&format!("http://127.0.0.1:{nginx_port}/t/acme/v1/pocs"));
    println!(
        "{:<14} {:>9} {:>9} {:>12} {:>16}",
        "path", "p50 ms", "p99 ms", "requests/s", "added p99 ms"
    );
    for (label, (p50, p99, rps)) in [
        ("direct", direct),
        ("mrbill-router", router),
        ("nginx", nginx),
    ] {
        println!(
            "{label:<14} {p50:>9.3} {p99:>9.3} {rps:>12.0} {:>16.3}",
            p99 - direct.1
        );
    }
    println!("router / nginx throughput: {:.2}×", router.2 / nginx.2);
    std::fs::remove_dir_all(dir).ok();
}
