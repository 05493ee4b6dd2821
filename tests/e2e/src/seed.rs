//! What tests and benchmarks put into a tenant: many PoCs (loaded straight into its database,
//! then indexed by its own poc-service), a dojo with an acknowledged edit; the benches' sizes
//! and runtime.

use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::platform::Platform;

/// `size` PoCs written straight into the cell's database (the indexer picks them up).
pub async fn load(platform: &Platform, cell: &str, size: u64) {
    let mut db = poc_db(platform, cell).await;
    let owner: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users LIMIT 1")
        .fetch_one(&mut db)
        .await
        .expect("the admin");
    sqlx::query(
        "INSERT INTO pocs (id, owner_id, name, description, repository_url, language, tags, visibility)
         SELECT gen_random_uuid(), $1, 'poc ' || i, 'loaded for a benchmark',
                'https://github.com/bench/poc-' || i, 'rust', ARRAY['bench'], 'tenant'
         FROM generate_series(1, $2::bigint) i",
    )
    .bind(owner)
    .bind(size as i64)
    .execute(&mut db)
    .await
    .expect("load");
}

pub async fn poc_db(platform: &Platform, cell: &str) -> sqlx::PgConnection {
    let dir = platform.cell_dir_on("local", cell);
    let url = std::fs::read_to_string(dir.join("secrets/poc-database-url")).expect("url");
    sqlx::PgConnection::connect(url.trim())
        .await
        .expect("connect")
}

/// Waits until the search index has every loaded PoC.
pub async fn indexed(platform: &Platform, slug: &str, token: &str) {
    let api = platform.api(slug).with_token(token);
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let status = api.get("/v1/admin/search").await;
        if status.status == 200 && status.body["pending"] == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "indexing: {}", status.text);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The tenant sizes a bench loads: the comma-separated counts in `var`, else `default`.
pub fn sizes(var: &str, default: &str) -> Vec<u64> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// The runtime a bench drives the platform from (two workers, as the machine has two cores).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A dojo of tenant `slug` whose text begins with `code`, acknowledged by the dojo service
/// (persisted): its live URL (token included) and the socket that wrote it.
pub async fn dojo_with_edit(
    platform: &Platform,
    slug: &str,
    token: &str,
    name: &str,
    code: &str,
) -> (String, test_support::live::Live) {
    let api = platform.api(slug).with_token(token);
    let dojo = api
        .post(
            "/v1/dojos",
            &serde_json::json!({ "name": name, "language": "rust", "initial_code": "" }),
        )
        .await
        .assert_status(201)["id"]
        .as_str()
        .expect("dojo")
        .to_owned();
    let ws = platform.router_url().replacen("http", "ws", 1);
    let live_url = format!("{ws}/t/{slug}/v1/dojos/{dojo}/live?token={token}&acks=true");
    let mut live = test_support::live::Live::connect(&live_url, None).await;
    live.until("the welcome", |l| !l.got.room.is_empty()).await;
    live.insert(0, code).await;
    live.until("the edit acknowledged", |l| {
        l.got.acks.iter().any(|a| a["updates"] == 1)
    })
    .await;
    (live_url, live)
}
