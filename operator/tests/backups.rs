//! An in-cluster cell's Postgres backups, started for real: the cell's rendered objects, its
//! two bucket claims fulfilled by the stand-in provisioner (moto as the store), the Cluster
//! bound to its backups' bucket as the controller binds it, and the CloudNativePG stand-in
//! doing what CNPG's instance manager does with barman-cloud (`kubelet/barman.rs`): the WAL
//! archive and the base backup a `Backup` asks for (as the control plane asks) go to the
//! bucket with the claim's key. Then the cell is rendered restored to a point in time between
//! two commits, and the rendered Cluster's `bootstrap.recovery` is started: the first commit
//! is there, the second is not.

mod fixtures;
mod kubelet;

use std::time::{Duration, Instant};

use cell_model::{DatabaseEngine, SearchEngine, Tier};
use cell_operator::render::{POSTGRES_CLUSTER, database_secret, desired};
use kubelet::Kubelet;

/// The `Backup` the control plane asks for once the cell serves.
const BACKUP: &str = "backup-4d5e6f708192";

/// Waits until the archive holds more WAL segments than `before`.
async fn archived_beyond(store: &kubelet::barman::Store, before: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let store = store.clone();
        let now = tokio::task::spawn_blocking(move || store.segments().len())
            .await
            .expect("list");
        if now > before {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "no WAL segment archived after {before}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cells_postgres_archives_to_its_own_bucket_and_recovers_to_a_point_in_time() {
    let cell = fixtures::cell(
        Tier::Small,
        DatabaseEngine::InCluster,
        SearchEngine::Embedded,
    );
    let images = fixtures::images();
    let mut objects = desired(&cell, &images);
    let secrets = cell_operator::secrets::generate(&cell).expect("secrets");
    let url = secrets
        .iter()
        .find(|s| s["metadata"]["name"] == database_secret("poc"))
        .and_then(|s| s["stringData"]["url"].as_str())
        .expect("poc's database URL")
        .to_owned();
    objects.extend(secrets);
    objects.push(cell_model::base_backup("acme", &cell.spec.cell_id, BACKUP));
    let s3 = test_support::moto::Moto::start();
    let s3_url = s3.url.clone();
    let (store, bound) = (images.object_store.clone(), cell.clone());
    let kubelet = tokio::task::spawn_blocking(move || {
        let mut kubelet = Kubelet::new("cell-acme", objects);
        let buckets = kubelet.provision_buckets(&s3_url);
        assert_eq!(buckets.len(), 2, "{buckets:?}");
        kubelet.bind_backups(&bound, &store);
        kubelet.start_cnpg(POSTGRES_CLUSTER);
        kubelet
    })
    .await
    .expect("Postgres starts, archiving, with its base backup");
    let archive = kubelet
        .backup_store(POSTGRES_CLUSTER)
        .expect("the Cluster backs up");
    assert!(
        archive.destination.contains("-pg-"),
        "{archive:?}: its own bucket"
    );

    let poc = sqlx::PgPool::connect(&kubelet.localize(&url, None))
        .await
        .expect("poc");
    sqlx::raw_sql("CREATE TABLE ledger (n int PRIMARY KEY); INSERT INTO ledger VALUES (1);")
        .execute(&poc)
        .await
        .expect("the first commit");
    let target: String = sqlx::query_scalar(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    )
    .fetch_one(&poc)
    .await
    .expect("now");
    let before = archive.segments().len();
    let after_first = archived_beyond(&archive, before).await;
    sqlx::query("INSERT INTO ledger VALUES (2)")
        .execute(&poc)
        .await
        .expect("the second commit");
    archived_beyond(&archive, after_first).await;
    poc.close().await;

    // The cell as the control plane asks for its restore: the Cluster rendered anew.
    let mut restored = cell.clone();
    restored.spec.suspended = true;
    restored.spec.restore = Some(cell_model::CellRestore {
        id: "0193a5f0-7c1e-7d2a-9b3c-4d5e6f708192".into(),
        backup: BACKUP.into(),
        target_time: Some(target),
    });
    let rendered = cell_operator::render::with_backups(
        &restored,
        desired(&restored, &images),
        kubelet.workload("ConfigMap", cell_operator::render::BACKUP_BUCKET),
        &images.object_store,
    );
    let cluster = rendered
        .into_iter()
        .find(|o| o["kind"] == "Cluster")
        .expect("the recovered Cluster");
    assert_ne!(
        cluster["spec"]["backup"]["barmanObjectStore"]["serverName"],
        archive.server.as_str(),
        "the recovered cluster archives apart from the one it replaces"
    );
    let (kubelet, recovered) = tokio::task::spawn_blocking(move || {
        let recovered = kubelet.recover(&cluster);
        (kubelet, recovered)
    })
    .await
    .expect("recovered from the bucket");
    let password = cell_operator::secrets::password_of(&url).expect("password");
    let recovered_url = format!(
        "postgres://poc:{password}@127.0.0.1:{}/poc?sslmode=require",
        recovered.port()
    );
    let db = sqlx::PgPool::connect(&recovered_url)
        .await
        .expect("poc on the recovered Postgres");
    let rows: Vec<i32> = sqlx::query_scalar("SELECT n FROM ledger ORDER BY n")
        .fetch_all(&db)
        .await
        .expect("ledger");
    assert_eq!(rows, [1], "recovered to the point between the two commits");
    db.close().await;
    let _ = recovered.destroy();
    drop(kubelet);
}
