//! Several poc-service replicas on one database, each with an embedded index of its own (how a
//! cell scales poc, locally and on Kubernetes): every index gets every change, through any
//! replica; a replica that was down catches up where it stopped; a new one rebuilds, without
//! missing a write made while it registers.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Session, TestApp, poc};

/// Searches `api` as `admin` until `query` matches `total` PoCs; returns how long it took.
async fn found(
    api: &test_support::ApiClient,
    admin: &Session,
    query: &str,
    total: u64,
) -> Duration {
    let client = api.with_token(&admin.access);
    let started = Instant::now();
    loop {
        let page: Value = client.get_ok(&format!("/v1/pocs{query}")).await;
        if page["total"].as_u64() == Some(total) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{query} on {}: {page}",
            api.base
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn live_pocs(app: &TestApp) -> u64 {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pocs WHERE deleted_at IS NULL")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    n as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_finds_what_any_replica_wrote() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let dirs = tempfile::tempdir().expect("dirs");
    let b = app.replica(&dirs.path().join("b")).await;
    let c = app.replica(&dirs.path().join("c")).await;
    let replicas = [&app.api, &b.api, &c.api];
    let mut slowest = Duration::ZERO;
    for (i, writer) in replicas.iter().enumerate() {
        let name = format!("written through replica {i}");
        writer
            .with_token(&admin.access)
            .post("/v1/pocs", &poc(&name, "rust", &["replicas"]))
            .await
            .assert_status(201);
        for reader in replicas {
            let q = format!("?q=%22{}%22", name.replace(' ', "+"));
            slowest = slowest.max(found(reader, &admin, &q, 1).await);
        }
    }
    assert!(
        slowest < Duration::from_secs(1),
        "indexer lag {slowest:?} (budget 1 s)"
    );
    for reader in replicas {
        found(reader, &admin, "?tags=replicas", 3).await;
    }

    // B goes away; its changes wait for it. Back with the same directory, it is the same
    // consumer and catches up from its rows.
    let consumer = std::fs::read_to_string(dirs.path().join("b/consumer-id")).expect("id");
    b.stop().await;
    for i in 0..5 {
        let name = format!("while b was down {i}");
        admin.create_poc(&poc(&name, "go", &["replicas"])).await;
    }
    let waiting: i64 =
        sqlx::query_scalar("SELECT count(*) FROM search_changes WHERE consumer = $1")
            .bind(consumer.trim())
            .fetch_one(&app.pool)
            .await
            .expect("rows");
    assert_eq!(waiting, 5, "B's changes wait for it");
    let b = app.replica(&dirs.path().join("b")).await;
    found(&b.api, &admin, "?tags=replicas", 8).await;
    let again = std::fs::read_to_string(dirs.path().join("b/consumer-id")).expect("id");
    assert_eq!(again, consumer, "the same consumer");

    // A new replica registers while writers write: it misses none of their PoCs.
    let writers: Vec<_> = [&app.api, &c.api]
        .into_iter()
        .enumerate()
        .map(|(w, api)| {
            let client = api.with_token(&admin.access);
            tokio::spawn(async move {
                for i in 0..40 {
                    let name = format!("concurrent {w} {i}");
                    client
                        .post("/v1/pocs", &poc(&name, "rust", &["replicas"]))
                        .await
                        .assert_status(201);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let d = app.replica(&dirs.path().join("d")).await;
    for w in writers {
        w.await.expect("writer");
    }
    let total = live_pocs(&app).await;
    assert_eq!(total, 88);
    for reader in [&app.api, &b.api, &c.api, &d.api] {
        found(reader, &admin, "", total).await;
    }
    // Every consumer drains its changes (a rebuilt index may have had some already).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<(String, i64)> =
            sqlx::query_as("SELECT consumer, count(*) FROM search_changes GROUP BY consumer")
                .fetch_all(&app.pool)
                .await
                .expect("rows");
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "changes never drained: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let consumers: i64 = sqlx::query_scalar("SELECT count(*) FROM search_consumers")
        .fetch_one(&app.pool)
        .await
        .expect("consumers");
    assert_eq!(consumers, 4, "A, B (once), C and D");
    b.stop().await;
    c.stop().await;
    d.stop().await;
}
