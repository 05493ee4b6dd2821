//! An in-cluster cell's Postgres backups, started for real: the cell's rendered objects, its
//! two bucket claims fulfilled by the stand-in provisioner (moto as the store), the Cluster
//! bound to its backups' bucket as the controller binds it, and the CloudNativePG stand-in
//! doing what CNPG's instance manager does with barman-cloud (`kubelet/barman.rs`): the WAL
//! archive and the base backup a `Backup` asks for (as the control plane asks) go to the
//! bucket with the claim's key. Then the cell is rendered restored to a point in time between
//! two commits, and the rendered Cluster's `bootstrap.recovery` is started: the first commit
//! is there, the second is not; and restored to a moment after the last commit, which the
//! fence's mark lets the replay reach.

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
    let target = now(&poc).await;
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
        deleted: false,
        abort: false,
    });
    let cluster = recovered_cluster(&restored, &images, &kubelet);
    assert_ne!(
        cluster["spec"]["backup"]["barmanObjectStore"]["serverName"],
        archive.server.as_str(),
        "the recovered cluster archives apart from the one it replaces"
    );
    let (kubelet, recovered) = recover(kubelet, cluster).await;
    let password = cell_operator::secrets::password_of(&url).expect("password");
    assert_eq!(
        ledger(password, &recovered).await,
        [1],
        "recovered to the point between the two commits"
    );
    let _ = recovered.destroy();

    // A moment after the last commit (nothing was written since): the replay stops at the
    // commit the fence marks (as the controller makes it, `MoveChecks::mark`) with everything
    // before. Without a commit after its target Postgres ends recovery short of it and refuses
    // to start ("recovery ended before configured recovery target was reached"); this
    // stand-in's own catalog commits happen to follow here too, so that failure is not shown.
    let poc = kubelet.localize(&url, None);
    let side = cell_operator::moves::Side {
        url: poc.clone(),
        ca: None,
    };
    let db = sqlx::PgPool::connect(&poc).await.expect("poc");
    let latest = now(&db).await;
    db.close().await;
    let before = archive.segments().len();
    use cell_operator::moves::MoveChecks as _;
    cell_operator::moves::PgMoves
        .mark(&side)
        .await
        .expect("the fence mark");
    archived_beyond(&archive, before).await;
    restored.spec.restore = Some(cell_model::CellRestore {
        id: "0193a5f0-7c1e-7d2a-9b3c-000000000002".into(),
        backup: BACKUP.into(),
        target_time: Some(latest.clone()),
        deleted: false,
        abort: false,
    });
    let cluster = recovered_cluster(&restored, &images, &kubelet);
    let (kubelet, recovered) = recover(kubelet, cluster).await;
    assert_eq!(
        ledger(password, &recovered).await,
        [1, 2],
        "everything until the moment"
    );
    let _ = recovered.destroy();

    // The tenant deleted and restored: its namespace (and the Backups in it) went, its kept
    // archive is copied into the new cell's backups bucket (as `controller/kept.rs` does), and
    // the Cluster recovers from that copy by the backup's barman folder and id.
    let mut kubelet = kubelet;
    let backup = kubelet.workload("Backup", BACKUP)["status"].clone();
    let old = archive
        .destination
        .trim_start_matches("s3://")
        .trim_end_matches('/');
    let new = format!("{old}-returned");
    let status = kubelet::probe::http_put(&format!("{}/{new}", s3.url)).expect("PUT bucket");
    assert_eq!(status, 200, "the new cell's backups bucket");
    let bucket = |name: &str| cell_operator::aws::Bucket {
        name: name.to_owned(),
        region: "us-east-1".into(),
        store: Some(cell_operator::aws::Store {
            endpoint: s3.url.clone(),
            access_key_id: "kept".into(),
            secret_access_key: "kept".into(),
        }),
    };
    let copied = cell_operator::aws::Objects::default()
        .sync(&bucket(old), &bucket(&new), false)
        .await
        .expect("the kept archive copied");
    assert!(copied > 0, "base backups and WAL copied");
    kubelet.rebind_backups_bucket(&new);
    restored.spec.restore = Some(cell_model::CellRestore {
        id: "0193a5f0-7c1e-7d2a-9b3c-000000000003".into(),
        backup: BACKUP.into(),
        target_time: Some(latest),
        deleted: true,
        abort: false,
    });
    let cluster = cell_operator::render::from_archive(
        vec![recovered_cluster(&restored, &images, &kubelet)],
        kubelet.workload("ConfigMap", cell_operator::render::BACKUP_BUCKET),
        &images.object_store,
        (
            backup["serverName"].as_str().expect("serverName"),
            backup["backupId"].as_str().expect("backupId"),
        ),
        false,
    )
    .remove(0);
    let source = &cluster["spec"]["externalClusters"][0]["barmanObjectStore"];
    assert_eq!(source["destinationPath"], format!("s3://{new}/"));
    let (kubelet, recovered) = recover(kubelet, cluster).await;
    assert_eq!(
        ledger(password, &recovered).await,
        [1, 2],
        "the returning cell's database, from the copied archive"
    );
    let _ = recovered.destroy();
    drop(kubelet);
}

/// The database's clock now, as a recovery target (`recovery_target_time`).
async fn now(db: &sqlx::PgPool) -> String {
    sqlx::query_scalar(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    )
    .fetch_one(db)
    .await
    .expect("now")
}

/// The Cluster the operator renders for `restored` (its restore), bound to the backups' bucket.
fn recovered_cluster(
    restored: &cell_model::Cell,
    images: &cell_operator::render::Images,
    kubelet: &Kubelet,
) -> serde_json::Value {
    cell_operator::render::with_backups(
        restored,
        desired(restored, images),
        kubelet.workload("ConfigMap", cell_operator::render::BACKUP_BUCKET),
        &images.object_store,
    )
    .into_iter()
    .find(|o| o["kind"] == "Cluster")
    .expect("the recovered Cluster")
}

/// Starts `cluster`'s recovery from the bucket (blocking work off the runtime).
async fn recover(kubelet: Kubelet, cluster: serde_json::Value) -> (Kubelet, pg_cluster::PgCluster) {
    tokio::task::spawn_blocking(move || {
        let recovered = kubelet.recover(&cluster);
        (kubelet, recovered)
    })
    .await
    .expect("recovered from the bucket")
}

/// The ledger's rows in a recovered Postgres, read as poc.
async fn ledger(password: &str, recovered: &pg_cluster::PgCluster) -> Vec<i32> {
    let url = format!(
        "postgres://poc:{password}@127.0.0.1:{}/poc?sslmode=require",
        recovered.port()
    );
    let db = sqlx::PgPool::connect(&url)
        .await
        .expect("poc on the recovered Postgres");
    let rows = sqlx::query_scalar("SELECT n FROM ledger ORDER BY n")
        .fetch_all(&db)
        .await
        .expect("ledger");
    db.close().await;
    rows
}
