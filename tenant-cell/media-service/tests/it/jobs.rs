//! The job queue: per-user limits, cancel, retries while poc-service is away, a dead worker's
//! job taken over, the cell's concurrency limit.

use std::time::Duration;

use serde_json::json;

use crate::harness::Cell;

async fn state_of(cell: &Cell, id: &str) -> (String, i32, Option<String>) {
    sqlx::query_as("SELECT state, attempts, error_code FROM media_jobs WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&cell.pool)
        .await
        .expect("job row")
}

async fn wait_for(
    cell: &Cell,
    id: &str,
    what: &str,
    done: impl Fn(&(String, i32, Option<String>)) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = state_of(cell, id).await;
        if done(&s) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn per_user_limits_answer_429_with_retry_after_and_cancel_works() {
    let cell = Cell::start_with(|c| {
        c.jobs.workers = 0;
        c.jobs.user_active = 2;
    })
    .await;
    let admin = cell.poc.admin().await;
    let ada = cell.poc.member(&admin, "ada@acme.test").await;
    let user = cell.as_user(&ada);
    let first = user
        .post("/v1/reports", &json!({ "format": "csv" }))
        .await
        .assert_status(202)
        .clone();
    user.post("/v1/reports", &json!({ "format": "json" }))
        .await
        .assert_status(202);
    let third = user.post("/v1/reports", &json!({ "format": "pdf" })).await;
    third.assert_error(429, "rate_limited");
    assert_eq!(third.headers["retry-after"], "30");
    // Another user is not affected.
    cell.as_user(&admin)
        .post("/v1/reports", &json!({ "format": "csv" }))
        .await
        .assert_status(202);

    let path = format!("/v1/reports/{}", first["id"].as_str().expect("id"));
    let cancelled = user
        .post(&format!("{path}/cancel"), &json!({}))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(cancelled["state"], "cancelled");
    assert!(cancelled["finished_at"].is_string());
    // Cancelling again is harmless; a cancelled job frees a place.
    user.post(&format!("{path}/cancel"), &json!({}))
        .await
        .assert_status(200);
    user.post("/v1/reports", &json!({ "format": "pdf" }))
        .await
        .assert_status(202);
}

#[tokio::test]
async fn jobs_wait_for_poc_service_and_never_complete_with_missing_data() {
    let mut cell = Cell::start_with(|c| c.jobs.workers = 0).await;
    let admin = cell.poc.admin().await;
    for name in ["One", "Two", "Three"] {
        cell.poc.create_poc(&admin, name, json!({})).await;
    }
    let job = cell
        .as_user(&admin)
        .post("/v1/reports", &json!({ "format": "csv" }))
        .await
        .assert_status(202)
        .clone();
    let id = job["id"].as_str().expect("id").to_owned();

    // A worker that cannot reach poc-service retries with backoff.
    cell.stop_media().await;
    let dead = format!("http://127.0.0.1:{}", {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port()
    });
    cell.start_media(|c| {
        c.peer.poc_internal_url = dead.clone();
        c.jobs.workers = 1;
    })
    .await;
    wait_for(
        &cell,
        &id,
        "two failed attempts",
        |(state, attempts, error)| {
            state == "pending" && *attempts >= 2 && error.as_deref() == Some("poc_unavailable")
        },
    )
    .await;

    // Once poc-service answers, the job completes with every row.
    cell.stop_media().await;
    cell.start_media(|c| c.jobs.workers = 1).await;
    let done = cell.finished(&admin, &format!("/v1/reports/{id}")).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert!(
        done["error"].is_null(),
        "a completed job shows no error: {done}"
    );
    let (_, body, _) = cell
        .fetch(done["download"]["url"].as_str().expect("url"))
        .await;
    let rows = csv::Reader::from_reader(body.as_slice()).records().count();
    assert_eq!(rows, 3);

    let metrics = reqwest::get(format!("{}/metrics", cell.media_url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "media_job_failures_total{kind=\"report\",code=\"poc_unavailable\"}",
        "media_jobs_completed_total{kind=\"report\"}",
        "media_job_seconds",
        "media_jobs{state=\"pending\"}",
    ] {
        assert!(metrics.contains(name), "/metrics has {name}:\n{metrics}");
    }
}

#[tokio::test]
async fn a_dead_workers_job_is_taken_over_and_a_crash_loop_ends_in_failure() {
    let mut cell = Cell::start_with(|c| {
        c.jobs.workers = 0;
        c.jobs.max_attempts = 3;
    })
    .await;
    let admin = cell.poc.admin().await;
    cell.poc.create_poc(&admin, "Survivor", json!({})).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let job = cell
            .as_user(&admin)
            .post("/v1/reports", &json!({ "format": "json" }))
            .await
            .assert_status(202)
            .clone();
        ids.push(job["id"].as_str().expect("id").to_owned());
    }
    // Both claimed by a worker that then vanished: leases run out in a second. The second
    // has already killed its worker three times.
    sqlx::query(
        "UPDATE media_jobs SET state = 'processing', lease_owner = 'gone/1/0',
                lease_token = gen_random_uuid(), lease_until = now() + interval '1 second',
                attempts = CASE WHEN id = $2::uuid THEN 3 ELSE 1 END
          WHERE id IN ($1::uuid, $2::uuid)",
    )
    .bind(&ids[0])
    .bind(&ids[1])
    .execute(&cell.pool)
    .await
    .expect("claim as a dead worker");
    cell.start_media(|c| c.jobs.workers = 1).await;
    let done = cell
        .finished(&admin, &format!("/v1/reports/{}", ids[0]))
        .await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["attempts"], 2, "taken over after the lease expired");
    let failed = cell
        .finished(&admin, &format!("/v1/reports/{}", ids[1]))
        .await;
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["error"]["code"], "worker_lost");
}

/// A stand-in for ffmpeg that renders nothing for a long time, and the pattern that finds its
/// process (`sleep 60.<unique digits>`).
fn slow_ffmpeg() -> (std::path::PathBuf, String) {
    let path = std::env::temp_dir().join(format!("slow-ffmpeg-{}", uuid::Uuid::new_v4()));
    let pattern = format!(
        "sleep 60.{}",
        uuid::Uuid::new_v4().as_u128() % 1_000_000_007
    );
    std::fs::write(&path, format!("#!/bin/sh\nexec {pattern}\n")).expect("script");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&path)
        .status()
        .expect("chmod");
    (path, pattern)
}

#[tokio::test]
async fn the_cells_concurrency_limit_holds_and_cancelling_stops_the_render() {
    let (ffmpeg, pattern) = slow_ffmpeg();
    let cell = Cell::start_with(|c| {
        c.jobs.workers = 2;
        c.jobs.tenant_concurrency = 1;
        c.ffmpeg.program = ffmpeg.clone();
    })
    .await;
    let admin = cell.poc.admin().await;
    cell.poc.create_poc(&admin, "Slow", json!({})).await;
    let year = time::OffsetDateTime::now_utc().year();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let job = cell
            .as_user(&admin)
            .post("/v1/videos", &json!({ "year": year }))
            .await
            .assert_status(202)
            .clone();
        ids.push(job["id"].as_str().expect("id").to_owned());
    }
    wait_for(&cell, &ids[0], "the first rendering", |(s, _, _)| {
        s == "processing"
    })
    .await;
    // The second worker is idle and polling: for a while, it never takes the second job.
    for _ in 0..16 {
        let processing: i64 =
            sqlx::query_scalar("SELECT count(*) FROM media_jobs WHERE state = 'processing'")
                .fetch_one(&cell.pool)
                .await
                .expect("count");
        assert_eq!(processing, 1, "one job at a time in this cell");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state_of(&cell, &ids[1]).await.0, "pending");

    // Cancelling stops the render (its ffmpeg is killed) and the next job starts.
    let path = format!("/v1/videos/{}", ids[0]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let video = cell
            .as_user(&admin)
            .get(&path)
            .await
            .assert_status(200)
            .clone();
        if video["progress"].as_u64().unwrap_or(0) >= 30 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "progress is reported: {video}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = renders(&pattern);
    assert_eq!(first.len(), 1, "the first job's render runs: {first:?}");
    cell.as_user(&admin)
        .post(&format!("{path}/cancel"), &json!({}))
        .await
        .assert_status(200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while alive(first[0]) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cancelled job's ffmpeg ({}) still runs",
            first[0]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for(&cell, &ids[1], "the second job to start", |(s, _, _)| {
        s == "processing"
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let second = loop {
        let now = renders(&pattern);
        if !now.is_empty() || tokio::time::Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        second.len(),
        1,
        "only the second job's render runs: {second:?}"
    );
    assert_ne!(second[0], first[0]);
    assert_eq!(state_of(&cell, &ids[0]).await.0, "cancelled");
    cell.as_user(&admin)
        .delete(&format!("/v1/videos/{}", ids[1]))
        .await
        .assert_status(204);
    assert!(cell.stored_files().is_empty());
}

/// The pids of the renders running `pattern` now.
fn renders(pattern: &str) -> Vec<u32> {
    let out = std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|pid| alive(*pid))
        .collect()
}

/// Whether `pid` runs (a zombie waiting to be reaped does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Objects written for a job that will never complete (its row gone: deleted, or its claim lost
/// mid-write) are tracked in `media_orphans` and removed by the sweeper; a completed job's
/// objects are no longer tracked and stay.
#[tokio::test]
async fn the_sweeper_removes_orphaned_objects_and_keeps_completed_ones() {
    let cell = Cell::start_with(|c| c.jobs.poll = Duration::from_millis(100)).await;
    let admin = cell.poc.admin().await;
    cell.poc.create_poc(&admin, "Kept", json!({})).await;
    cell.completed_report(&admin, json!({ "format": "csv" }))
        .await;
    let kept = cell.stored_files();
    assert_eq!(kept.len(), 1, "the report's file: {kept:?}");

    // A file written for a job that no longer exists, tracked as it was written.
    let key = format!("tenants/media/reports/{}/report.csv", uuid::Uuid::now_v7());
    let orphan = cell.dir.join(&key);
    std::fs::create_dir_all(orphan.parent().expect("dir")).expect("dir");
    std::fs::write(&orphan, "half written").expect("orphan");
    sqlx::query("INSERT INTO media_orphans (key, job_id) VALUES ($1, $2)")
        .bind(&key)
        .bind(uuid::Uuid::now_v7())
        .execute(&cell.pool)
        .await
        .expect("track");

    // The sweeper removes the file, then forgets its row (in that order, so nothing is left
    // untracked): both are waited for.
    let tracked = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM media_orphans")
            .fetch_one(&cell.pool)
            .await
            .expect("count")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while orphan.exists() || tracked().await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sweeper never removed {key} ({} on disk) and forgot it",
            if orphan.exists() {
                "still"
            } else {
                "no longer"
            }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        cell.stored_files(),
        kept,
        "the completed report's file stays"
    );
}

/// A job claimed just as the service began to stop (e.g. right after another worker handed it
/// back at a fence) goes back untouched: pending, its attempt not counted — so stopping never
/// spends a job's attempts — and only by the claim that holds it.
#[tokio::test]
async fn a_claim_given_back_unworked_does_not_count_as_an_attempt() {
    use media_service::store;
    let cell = Cell::start_with(|c| c.jobs.workers = 0).await;
    let admin = cell.poc.admin().await;
    let job = cell
        .as_user(&admin)
        .post("/v1/reports", &json!({ "format": "json" }))
        .await
        .assert_status(202)
        .clone();
    let id = job["id"].as_str().expect("id");
    let lease = Duration::from_secs(60);
    let claim = |pool| async move {
        store::claim(pool, "stopping/1/0", lease, 4, 3)
            .await
            .expect("claim")
            .expect("a due job")
    };
    let first = claim(&cell.pool).await;
    assert_eq!(state_of(&cell, id).await, ("processing".into(), 1, None));
    store::unclaim(&cell.pool, &first).await.expect("unclaim");
    assert_eq!(state_of(&cell, id).await, ("pending".into(), 0, None));
    // A stale claim gives nothing back: the job stays with its current holder.
    let second = claim(&cell.pool).await;
    store::unclaim(&cell.pool, &first).await.expect("unclaim");
    assert_eq!(state_of(&cell, id).await, ("processing".into(), 1, None));
    store::unclaim(&cell.pool, &second).await.expect("unclaim");
    assert_eq!(state_of(&cell, id).await.0, "pending");
}
