//! A tenant with many PoCs, for the benchmarks: loaded straight into its database, then
//! indexed by its own poc-service.

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
