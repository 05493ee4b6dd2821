//! Migration benchmark (not part of the test command); prints numbers for docs/benchmarks.md.
//!
//! For each size, a tenant holding that many PoCs (loaded in its database, then indexed) moves
//! from one placement to another while a client writes a PoC through the router every 20 ms;
//! prints the freeze (requests held), the total time, the slowest steps, and checks that every
//! acknowledged write is on the target. Budget: freeze ≤ 2 s at 10k PoCs.
//!
//! Run with release binaries:
//! `cargo build --release --bins && cargo bench -p e2e-tests --bench migrate`
//! (`MIGRATE_SIZES=1000,10000` changes the sizes, default 1000,10000,100000).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2e_tests::platform::Platform;
use e2e_tests::seed;
use serde_json::{Value, json};
use sqlx::Connection;

fn main() {
    let sizes = seed::sizes("MIGRATE_SIZES", "1000,10000,100000");
    let rt = seed::runtime();
    let platform = Platform::up_with(&[
        ("MRBILL_PLACEMENTS", "local=20,edge=20"),
        ("MRBILL_MIGRATE_GRACE_SECS", "5"),
    ]);
    println!("binaries: {}", test_support::bin_dir().display());
    let mut rows = Vec::new();
    for size in sizes {
        let slug = format!("move-{size}");
        let tenant = platform.create_tenant(&slug);
        let cell = tenant["cell"]["cell_id"].as_str().expect("cell").to_owned();
        let token = rt.block_on(platform.admin_token(&tenant));
        let loaded = Instant::now();
        rt.block_on(seed::load(&platform, &cell, size));
        rt.block_on(seed::indexed(&platform, &slug, &token));
        eprintln!(
            "{slug}: {size} PoCs loaded and indexed in {:.1} s",
            loaded.elapsed().as_secs_f64()
        );

        let stop = Arc::new(AtomicBool::new(false));
        let writer = rt.spawn(write(
            format!("{}/t/{slug}", platform.router_url()),
            token.clone(),
            stop.clone(),
        ));
        std::thread::sleep(Duration::from_secs(1));
        let started = Instant::now();
        let moved = platform
            .mrbill(&["cell", "migrate", &slug, "--to", "edge", "-o", "json"])
            .json();
        let total = started.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        let (acked, refused, slowest) = rt.block_on(writer).expect("writer");
        let on_target = rt.block_on(count_written(&platform, &cell));
        assert_eq!(moved["state"], "done", "{moved}");
        assert_eq!(
            on_target, acked,
            "every acknowledged write is on the target, once"
        );
        let freeze = moved["freeze_ms"].as_u64().expect("freeze");
        let steps: Vec<String> = moved["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter(|s| s["duration_ms"].as_u64().unwrap_or(0) >= 100)
            .map(|s| format!("{} {}", s["name"].as_str().unwrap_or("?"), s["duration_ms"]))
            .collect();
        println!(
            "{size:>7} PoCs: freeze {freeze:>5} ms, total {:>6.1} s; writer: {acked} acknowledged, {refused} refused, slowest {slowest} ms; steps ≥ 100 ms: {}",
            total.as_secs_f64(),
            steps.join(", ")
        );
        rows.push((size, freeze, total));
    }
    for (size, freeze, total) in rows {
        let budget = if size == 10_000 {
            if freeze <= 2_000 {
                "  (budget ≤ 2000 ms: met)"
            } else {
                "  (budget ≤ 2000 ms: MISSED)"
            }
        } else {
            ""
        };
        println!(
            "migrate {size:>7} PoCs: freeze {freeze} ms, total {:.1} s{budget}",
            total.as_secs_f64()
        );
    }
}

/// Creates a PoC every 20 ms until stopped: (acknowledged, refused, slowest acknowledged ms).
async fn write(base: String, token: String, stop: Arc<AtomicBool>) -> (u64, u64, u128) {
    let http = reqwest::Client::new();
    let (mut acked, mut refused, mut slowest) = (0, 0, 0);
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let body = json!({ "name": format!("written {n}"), "description": "", "language": "rust",
            "tags": ["written"], "repository_url": format!("https://github.com/bench/w-{n}") });
        let sent = Instant::now();
        let res = http
            .post(format!("{base}/v1/pocs"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await;
        match res {
            Ok(r) if r.status().as_u16() == 201 => {
                acked += 1;
                slowest = slowest.max(sent.elapsed().as_millis());
                let _: Value = r.json().await.unwrap_or(Value::Null);
            }
            _ => refused += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (acked, refused, slowest)
}

/// The writer's PoCs in the target's database.
async fn count_written(platform: &Platform, cell: &str) -> u64 {
    let dir = platform.cell_dir_on("edge", cell);
    let url = std::fs::read_to_string(dir.join("secrets/poc-database-url")).expect("url");
    let mut db = sqlx::PgConnection::connect(url.trim())
        .await
        .expect("connect");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pocs WHERE 'written' = ANY(tags)")
        .fetch_one(&mut db)
        .await
        .expect("count");
    n as u64
}
