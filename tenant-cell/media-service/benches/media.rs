//! media-service budgets: `./x bench media` (or `cargo bench -p media-service --bench media`).
//!
//! poc-service and media-service (release builds) run in this process on a private Postgres
//! cluster, with real ffmpeg. Measured through the HTTP API, from the request to the job's
//! `completed` (what a user waits for):
//! - the yearly video of 50 PoCs (budget ≤ 20 s), `MEDIA_BENCH_RUNS` times (default 3);
//! - a PDF report of 1,000 PoCs (budget ≤ 1 s), the job and the rendering alone;
//! - `GET /v1/reports/dashboard` over 100,000 PoCs (p50/p99 of 50 sequential requests), for an
//!   admin (sees everything) and a member (visibility filter).

use std::time::{Duration, Instant};

use poc_service::test_util::{PocCell, User};
use serde_json::json;
use sqlx::PgPool;
use test_support::ApiClient;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Inserts `n` PoCs of `owner` straight into poc-service's table (the search trigger off: the
/// index is not what is measured), spread over the last `months` months.
async fn bulk_pocs(pool: &PgPool, owner: &str, n: i64, months: i32, tag: &str) {
    sqlx::query("ALTER TABLE pocs DISABLE TRIGGER pocs_enqueue_search")
        .execute(pool)
        .await
        .expect("trigger off");
    sqlx::query(
        "INSERT INTO pocs (id, owner_id, name, description, repository_url, language, tags,
                           visibility, created_at, updated_at)
         SELECT gen_random_uuid(), $1::uuid, 'PoC ' || i, 'bench',
                'https://github.com/bench/poc-' || i,
                (ARRAY['rust','go','python','typescript','kotlin','java','swift','elixir'])[1 + i % 8],
                ARRAY[$3, 'tag-' || (i % 40), 'area-' || (i % 7)],
                CASE WHEN i % 5 = 0 THEN 'private' ELSE 'tenant' END,
                now() - make_interval(days => (i % ($4 * 30))::int),
                now()
           FROM generate_series(1, $2) AS i",
    )
    .bind(owner)
    .bind(n)
    .bind(tag)
    .bind(months.max(1))
    .execute(pool)
    .await
    .expect("bulk insert");
    sqlx::query("ALTER TABLE pocs ENABLE TRIGGER pocs_enqueue_search")
        .execute(pool)
        .await
        .expect("trigger on");
}

async fn until_done(media: &ApiClient, path: &str) -> serde_json::Value {
    loop {
        let job = media.get(path).await.assert_status(200).clone();
        match job["state"].as_str() {
            Some("completed") => return job,
            Some("failed" | "cancelled") => panic!("{path} did not complete: {job}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Seconds from the request to `completed`.
async fn job_secs(media: &ApiClient, path: &str, body: serde_json::Value) -> f64 {
    let start = Instant::now();
    let res = media.post(path, &body).await;
    let id = res.assert_status(202)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    until_done(media, &format!("{path}/{id}")).await;
    start.elapsed().as_secs_f64()
}

fn main() {
    let runs: usize = std::env::var("MEDIA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let poc = PocCell::start("bench", |_| {}).await;
        let url = test_support::test_database(&media_service::MIGRATOR)
            .await
            .expect("media database");
        let dir = std::env::temp_dir().join(format!("media-bench-{}", std::process::id()));
        let mut config =
            media_service::Config::for_tests(poc.common(&url), poc.peer(), dir.clone());
        config.jobs.user_per_minute = 1000;
        config.render_program = env!("CARGO_BIN_EXE_media-render").into();
        let app = media_service::App::build_with_pool(config, PgPool::connect(&url).await.expect("pool"))
            .await
            .expect("media builds");
        let media = ApiClient::new(format!("http://{}", app.public_addr()));
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        let admin = poc.admin().await;
        let alice: User = poc.member(&admin, "alice@acme.test").await;
        let bob: User = poc.member(&admin, "bob@acme.test").await;
        let year = time::OffsetDateTime::now_utc().year();

        println!("media-service benchmarks (release, poc + media in one process, 2 cores shared with ffmpeg)");
        // Yearly video, 50 PoCs (this year's: spread over the last 0 months = today).
        bulk_pocs(&poc.pool, &alice.id, 50, 0, "video").await;
        let as_alice = media.with_token(&alice.token);
        let mut secs = Vec::new();
        for _ in 0..runs {
            secs.push(job_secs(&as_alice, "/v1/videos", json!({ "year": year })).await);
        }
        secs.sort_by(f64::total_cmp);
        println!(
            "yearly video, 50 PoCs (106 s of 1280x720 H.264): {} runs, median {:.2} s, min {:.2} s, max {:.2} s (budget 20 s: {})",
            runs,
            percentile(&secs, 0.5),
            secs[0],
            secs[secs.len() - 1],
            if percentile(&secs, 0.5) <= 20.0 { "met" } else { "missed" }
        );

        // PDF report, 1,000 PoCs.
        bulk_pocs(&poc.pool, &bob.id, 1000, 11, "report").await;
        let as_bob = media.with_token(&bob.token);
        let body = json!({ "format": "pdf", "tags": ["report"], "group_by": "tag" });
        job_secs(&as_bob, "/v1/reports", body.clone()).await; // warm-up (fonts, caches)
        let mut secs = Vec::new();
        for _ in 0..runs.max(3) {
            secs.push(job_secs(&as_bob, "/v1/reports", body.clone()).await);
        }
        secs.sort_by(f64::total_cmp);
        let page = as_bob
            .get("/v1/reports/dashboard?tags=report")
            .await
            .assert_status(200)
            .clone();
        println!(
            "PDF report, {} PoCs: job (request → completed) median {:.3} s, min {:.3} s, max {:.3} s (budget 1 s: {})",
            page["total"],
            percentile(&secs, 0.5),
            secs[0],
            secs[secs.len() - 1],
            if percentile(&secs, 0.5) <= 1.0 { "met" } else { "missed" }
        );
        let last = as_bob.get("/v1/reports?limit=1").await.assert_status(200).clone();
        println!("  file: {} bytes", last["items"][0]["download"]["bytes"]);

        // Dashboard over 100k PoCs.
        bulk_pocs(&poc.pool, &admin.id, 100_000 - 1050, 36, "bulk").await;
        sqlx::query("ANALYZE pocs").execute(&poc.pool).await.expect("analyze");
        for (who, user) in [("admin", &admin), ("member", &alice)] {
            let client = media.with_token(&user.token);
            client.get("/v1/reports/dashboard").await.assert_status(200);
            let mut ms = Vec::new();
            let mut total = serde_json::Value::Null;
            for _ in 0..50 {
                let start = Instant::now();
                let res = client.get("/v1/reports/dashboard").await;
                ms.push(start.elapsed().as_secs_f64() * 1000.0);
                total = res.assert_status(200)["total"].clone();
            }
            ms.sort_by(f64::total_cmp);
            println!(
                "dashboard over 100k PoCs as {who} (sees {total}): p50 {:.1} ms, p99 {:.1} ms",
                percentile(&ms, 0.5),
                percentile(&ms, 0.99)
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}
