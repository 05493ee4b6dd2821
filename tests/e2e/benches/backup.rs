//! Backup and restore benchmark (not part of the test command); prints numbers for
//! docs/benchmarks.md.
//!
//! For each size, a tenant holding that many PoCs (loaded in its database, then indexed) is
//! backed up (`mrbill tenant backup`: the three databases' snapshot, checksums, dumps,
//! objects), then restored from that backup (`mrbill tenant restore --from`). Prints the
//! backup's time and size, the restore's time from request to serving (the tenant's requests
//! are held or refused for all of it: the RTO once the restore is asked for), its slowest
//! steps, and how long until search has every PoC again.
//!
//! Run with release binaries:
//! `cargo build --release --bins && cargo bench -p e2e-tests --bench backup`
//! (`BACKUP_SIZES=1000,10000` changes the sizes, default 10000,100000).

use std::time::{Duration, Instant};

use e2e_tests::platform::Platform;
use e2e_tests::seed;

fn main() {
    let sizes = seed::sizes("BACKUP_SIZES", "10000,100000");
    let rt = seed::runtime();
    let platform = Platform::up();
    println!("binaries: {}", test_support::bin_dir().display());
    for size in sizes {
        let slug = format!("backup-{size}");
        let tenant = platform.create_tenant(&slug);
        let cell = tenant["cell"]["cell_id"].as_str().expect("cell").to_owned();
        let token = rt.block_on(platform.admin_token(&tenant));
        rt.block_on(seed::load(&platform, &cell, size));
        rt.block_on(seed::indexed(&platform, &slug, &token));

        let started = Instant::now();
        let backup = platform
            .mrbill(&["tenant", "backup", &slug, "-o", "json"])
            .json();
        let backup_took = started.elapsed();
        assert_eq!(backup["state"], "done", "{backup}");
        let id = backup["id"].as_str().expect("id");

        let started = Instant::now();
        let restored = platform.mrbill(&["tenant", "restore", &slug, "--from", id, "--yes"]);
        let restore_took = started.elapsed();
        assert_eq!(restored.code, 0, "{}", restored.stderr);
        let tenant = platform.tenant(&slug);
        let steps: Vec<String> = tenant["cell"]["operation"]["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter(|s| s["duration_ms"].as_u64().unwrap_or(0) >= 100)
            .map(|s| format!("{} {}", s["name"].as_str().unwrap_or("?"), s["duration_ms"]))
            .collect();
        let searchable = Instant::now();
        rt.block_on(seed::indexed(&platform, &slug, &token));
        let searchable = searchable.elapsed();
        let count = rt.block_on(async {
            let mut db = seed::poc_db(&platform, &cell).await;
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pocs")
                .fetch_one(&mut db)
                .await
                .expect("count")
        });
        assert_eq!(count as u64, size, "every PoC restored");
        println!(
            "{size:>7} PoCs: backup {:>5.1} s ({:.1} MiB, {} ms in the control plane); restore {:>5.1} s to serving, search complete {:.1} s later; steps ≥ 100 ms: {}",
            backup_took.as_secs_f64(),
            backup["bytes"].as_u64().unwrap_or(0) as f64 / (1 << 20) as f64,
            backup["duration_ms"],
            restore_took.as_secs_f64(),
            searchable.as_secs_f64(),
            steps.join(", ")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
