//! Platform benchmarks (not part of the test command); prints numbers for docs/benchmarks.md.
//!
//! 1. Onboarding: from `mrbill tenant create` to the first authenticated API call through the
//!    router (create + wait for Ready, register the admin with the invite, log in, `GET
//!    /v1/users/me`). Budget ≤ 3 s.
//! 2. Idle memory per cell: RSS of the cell's services (excluding Postgres) and of its
//!    supervisor, after the cells have been idle. Budget ≤ 60 MB for the services.
//!
//! Run with release binaries:
//! `cargo build --release --bins && cargo bench -p e2e-tests --bench platform`
//! (`ONBOARD_RUNS=n` changes the number of tenants, default 5).

use std::time::{Duration, Instant};

use e2e_tests::platform::{Platform, cell_services, processes_with};
use test_support::rss_kib;

fn main() {
    let runs: usize = std::env::var("ONBOARD_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let platform = Platform::up();
    println!("binaries: {}", test_support::bin_dir().display());
    let mut ready_ms = Vec::new();
    let mut total_ms = Vec::new();
    let mut cells = Vec::new();
    for i in 0..runs {
        let slug = format!("bench-{i}");
        let started = Instant::now();
        let tenant = platform.create_tenant(&slug);
        let ready = started.elapsed();
        let token = rt.block_on(platform.admin_token(&tenant));
        rt.block_on(platform.api(&slug).with_token(&token).get("/v1/users/me"))
            .assert_status(200);
        let total = started.elapsed();
        println!(
            "onboarding {slug}: ready {:>5.0} ms, first authenticated call {:>5.0} ms",
            ms(ready),
            ms(total)
        );
        ready_ms.push(ms(ready));
        total_ms.push(ms(total));
        cells.push(tenant["cell"]["cell_id"].as_str().expect("cell").to_owned());
    }
    println!(
        "onboarding (n={runs}): ready p50 {:.0} ms max {:.0} ms; first authenticated call p50 {:.0} ms max {:.0} ms (budget 3000 ms)",
        median(&mut ready_ms),
        ready_ms.iter().cloned().fold(0.0, f64::max),
        median(&mut total_ms),
        total_ms.iter().cloned().fold(0.0, f64::max),
    );

    // Give every cell a little traffic, then let it idle.
    for (i, _) in cells.iter().enumerate() {
        let _ = rt.block_on(platform.api(&format!("bench-{i}")).get("/v1/pocs"));
    }
    std::thread::sleep(Duration::from_secs(15));
    for cell in &cells {
        let services: u64 = cell_services(cell).iter().map(|p| rss_kib(*p)).sum();
        let dir = platform.cell_dir(cell).display().to_string();
        let supervisor: u64 = processes_with(&["supervise", &dir])
            .iter()
            .map(|p| rss_kib(*p))
            .sum();
        let postgres: u64 = processes_with(&["postgres", &format!("{dir}/pg/data")])
            .iter()
            .map(|p| rss_kib(*p))
            .sum();
        println!(
            "idle RSS {cell}: services {:.1} MB, supervisor {:.1} MB (budget 60 MB for services); postmaster alone {:.1} MB",
            mib(services),
            mib(supervisor),
            mib(postgres)
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
