//! What a deleted in-cluster cell leaves and its tenant's return, with the controller against
//! `kube_fake::FakeApi` (no Kubernetes cluster can run here; CloudNativePG's and the bucket
//! provisioner's reports are played by the test) and the buckets in a real S3-compatible server
//! (moto: no Rook or NooBaa runs here). The returning Cluster's recovery from the copied
//! archive is started for real in `backups.rs`.

mod fixtures;
mod rds;

use base64::Engine as _;
use cell_model::{CellRestore, ConditionStatus, SearchEngine};
use fixtures::scenario::*;
use serde_json::{Value, json};
use test_support::moto::Moto;

const RESTORE: &str = "0193a5f0-7c1e-7d2a-9b3c-4d5e6f708192";
const FINAL: &str = "final-7d2a9b3c";
const RECORDS: &str = "api/v1/namespaces/mrbill-system/secrets";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// What a provisioner does for the cell's claim `claim` once its bucket exists: the bucket in
/// moto, a ConfigMap with its coordinates and a Secret with its key.
fn bind(s: &Scenario, moto: &Moto, claim: &str, bucket: &str) {
    bind_in(s, moto, NS, claim, bucket);
}

fn bind_in(s: &Scenario, moto: &Moto, ns: &str, claim: &str, bucket: &str) {
    let status = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .arg(format!("{}/{bucket}", moto.url))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "200",
        "bucket {bucket}"
    );
    let port = moto.url.rsplit(':').next().expect("port");
    let claims = format!("apis/objectbucket.io/v1alpha1/namespaces/{ns}/objectbucketclaims");
    if s.api.get(&claims, claim).is_some() {
        s.api.update(&claims, claim, |o| {
            o["status"] = json!({ "phase": "Bound" })
        });
    }
    s.api.insert(
        &format!("api/v1/namespaces/{ns}/configmaps"),
        json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": claim, "namespace": ns },
            "data": { "BUCKET_NAME": bucket, "BUCKET_HOST": "127.0.0.1", "BUCKET_PORT": port,
                      "BUCKET_REGION": "us-east-1" } }),
    );
    s.api.insert(
        &format!("api/v1/namespaces/{ns}/secrets"),
        json!({ "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": claim, "namespace": ns },
            "data": { "AWS_ACCESS_KEY_ID": b64(&format!("{bucket}-key")),
                      "AWS_SECRET_ACCESS_KEY": b64("secret") } }),
    );
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(key.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {bucket}/{key}: {e:?}"));
}

/// The keys of `bucket` under `prefix`, without it.
async fn keys_under(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    keys(s3, bucket)
        .await
        .into_iter()
        .filter_map(|k| k.strip_prefix(prefix).map(str::to_owned))
        .collect()
}

/// What a provisioner does with a released claim's bucket (Rook, class `Delete`).
async fn delete_bucket(s3: &aws_sdk_s3::Client, bucket: &str) {
    for key in keys(s3, bucket).await {
        s3.delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .expect("delete");
    }
    s3.delete_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("delete bucket");
}

async fn keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("list");
    let mut keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    keys.sort();
    keys
}

/// A Secret's value as the FakeApi holds it (`data`, base64, or `stringData`).
fn value(secret: &Value, key: &str) -> String {
    if let Some(v) = secret["stringData"][key].as_str() {
        return v.to_owned();
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret["data"][key].as_str().unwrap_or_default())
        .expect("base64");
    String::from_utf8(bytes).expect("utf-8")
}

/// Every object of the cell's namespace goes with it.
fn namespace_gone(s: &Scenario) {
    for (key, _) in s.api.snapshot() {
        if key.contains(&format!("/namespaces/{NS}/")) {
            let (collection, name) = key.rsplit_once('/').expect("collection/name");
            s.api.delete(collection, name);
        }
    }
}

/// Once the last base backup is done, the deletion copies the cell's archive and artifacts
/// into the platform's kept bucket and records the cell's identity and where each base backup
/// is; its own buckets may then go. A restore of the deleted tenant makes a namespace whose
/// identity Secrets are the old ones (never generated), copies the kept archive and artifacts
/// into its new buckets, and recovers the Cluster from the copied archive by the backup's
/// barman id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_cell_is_recorded_and_its_tenant_returns_with_its_identity_and_buckets() {
    let moto = Moto::start();
    let s3 = rds::s3(&moto, "us-east-1");
    let s = Scenario::new(SearchEngine::Embedded);
    bind_in(
        &s,
        &moto,
        "mrbill-system",
        "kept-cells",
        "mrbill-kept-cells-1",
    );
    s.reconcile().await.expect("create");
    bind(&s, &moto, "postgres-backups", "mrbill-c-acme-1234-pg-old");
    bind(&s, &moto, "media-bucket", "mrbill-c-acme-1234-old");
    put(
        &s3,
        "mrbill-c-acme-1234-pg-old",
        "postgres/base/20261206T090000/data.tar.gz",
    )
    .await;
    put(
        &s3,
        "mrbill-c-acme-1234-pg-old",
        "postgres/wals/0000000100000000/000000010000000000000003.gz",
    )
    .await;
    put(&s3, "mrbill-c-acme-1234-old", "reports/r1.pdf").await;
    s.become_ready();
    s.reconcile().await.expect("ready");
    let secrets = format!("api/v1/namespaces/{NS}/secrets");
    let jwt = s
        .api
        .get(&secrets, "cell-jwt")
        .expect("the cell's signing key");
    let private = value(&jwt, "private.pem");
    let role = s.api.get(&secrets, "poc-role").expect("poc's role");
    s.completed_backup(
        "backup-4d5e6f708192",
        "20261206T090000",
        "2026-12-06T09:00:00Z",
    );

    // The control plane names the last base backup, then deletes the Cell.
    s.edit(|cell| cell["metadata"]["annotations"] = json!({ "mrbill.dev/final-backup": FINAL }));
    s.api.delete(CELLS, NAME);
    s.reconcile().await.expect("the last backup is asked for");
    assert!(
        s.api.get(RECORDS, &format!("kept-{NAME}")).is_none(),
        "not before the last backup"
    );
    s.api.update(&cnpg("backups"), FINAL, |o| {
        o["status"] = json!({ "phase": "completed", "serverName": "postgres",
                              "backupId": "20261206T100000" })
    });
    s.reconcile()
        .await
        .expect("recorded, the namespace deleted");
    let record = s
        .api
        .get(RECORDS, &format!("kept-{NAME}"))
        .expect("the record");
    let identity: Value = serde_json::from_str(&value(&record, "identity.json")).expect("json");
    assert_eq!(
        identity["cell-jwt"]["data"]["private.pem"],
        private.as_str()
    );
    assert_eq!(identity["poc-role"]["type"], role["type"]);
    assert!(
        identity.get("postgres-tls").is_none(),
        "only the identity: {identity}"
    );
    let backups: Value = serde_json::from_str(&value(&record, "backups.json")).expect("json");
    assert_eq!(
        backups,
        json!({
            "backup-4d5e6f708192": { "serverName": "postgres", "backupId": "20261206T090000",
                "stoppedAt": "2026-12-06T09:00:00Z" },
            FINAL: { "serverName": "postgres", "backupId": "20261206T100000" },
        })
    );
    assert_eq!(
        keys_under(&s3, "mrbill-kept-cells-1", "c-acme-1234/archive/").await,
        keys(&s3, "mrbill-c-acme-1234-pg-old").await,
        "the archive kept"
    );
    assert_eq!(
        keys_under(&s3, "mrbill-kept-cells-1", "c-acme-1234/media/").await,
        ["reports/r1.pdf"],
        "the artifacts kept"
    );
    let archived = keys(&s3, "mrbill-c-acme-1234-pg-old").await;
    namespace_gone(&s);
    delete_bucket(&s3, "mrbill-c-acme-1234-pg-old").await;
    delete_bucket(&s3, "mrbill-c-acme-1234-old").await;
    s.reconcile().await.expect("the finalizer goes");

    // The tenant restored: a Cell again, suspended, restoring the deleted cell's last backup.
    let mut cell = serde_json::to_value(cell_model::Cell::new(NAME, spec(SearchEngine::Embedded)))
        .expect("json");
    cell["apiVersion"] = json!("mrbill.dev/v1alpha1");
    cell["kind"] = json!("Cell");
    cell["spec"]["suspended"] = json!(true);
    let restore = CellRestore {
        id: RESTORE.into(),
        backup: FINAL.into(),
        target_time: None,
        deleted: true,
        abort: false,
    };
    cell["spec"]["restore"] = serde_json::to_value(&restore).expect("json");
    s.api.delete(CELLS, NAME);
    s.api.insert(CELLS, cell);
    s.reconcile().await.expect("the namespace again");
    let again = s
        .api
        .get(&secrets, "cell-jwt")
        .expect("the signing key back");
    assert_eq!(
        value(&again, "private.pem"),
        private,
        "the old key: old tokens verify"
    );
    assert_eq!(
        value(&s.api.get(&secrets, "poc-role").expect("role"), "password"),
        value(&role, "password")
    );
    assert_eq!(
        s.condition("Restored"),
        (ConditionStatus::False, "Retrieving".into())
    );
    assert!(
        s.api.get(&cnpg("clusters"), "postgres").is_none(),
        "no Cluster before the copy"
    );

    bind(&s, &moto, "postgres-backups", "mrbill-c-acme-1234-pg-new");
    bind(&s, &moto, "media-bucket", "mrbill-c-acme-1234-new");
    s.reconcile().await.expect("copied back");
    assert_eq!(
        keys(&s3, "mrbill-c-acme-1234-pg-new").await,
        archived,
        "the archive copied back"
    );
    assert_eq!(
        keys(&s3, "mrbill-c-acme-1234-new").await,
        ["reports/r1.pdf"]
    );
    s.reconcile().await.expect("recovering");
    let cluster = s
        .api
        .get(&cnpg("clusters"), "postgres")
        .expect("the recovered Cluster");
    assert_eq!(
        cluster["spec"]["bootstrap"],
        json!({ "recovery": { "source": "archive",
            "recoveryTarget": { "targetImmediate": true, "backupID": "20261206T100000" } } })
    );
    let source = &cluster["spec"]["externalClusters"][0];
    assert_eq!(source["name"], "archive");
    assert_eq!(
        source["barmanObjectStore"]["destinationPath"],
        "s3://mrbill-c-acme-1234-pg-new/"
    );
    assert_eq!(source["barmanObjectStore"]["serverName"], "postgres");
    assert_eq!(
        cluster["spec"]["backup"]["barmanObjectStore"]["serverName"], "postgres-4d5e6f708192",
        "the returned cell archives apart from what it came from"
    );
    s.postgres_instance_ready();
    s.databases_applied();
    s.reconcile().await.expect("recovered");
    assert_eq!(
        s.condition("Restored"),
        (ConditionStatus::True, "Recovered".into())
    );
}

/// A restore of a deleted cell the operator has no record of makes no identity of its own
/// (tokens issued before would never verify) and says why; a deletion without the kept bucket
/// goes on (the record only) and warns that nothing else is kept.
#[tokio::test]
async fn without_a_record_a_returning_cell_gets_no_new_identity() {
    let s = Scenario::new(SearchEngine::Embedded);
    s.reconcile().await.expect("create");
    s.become_ready();
    s.reconcile().await.expect("ready");
    s.api.delete(CELLS, NAME);
    s.reconcile().await.expect("deleted: no archive to back up");
    assert!(
        s.events().iter().any(|e| e.contains("NothingKept")),
        "{:?}",
        s.events()
    );
    assert!(s.api.get(RECORDS, &format!("kept-{NAME}")).is_some());
    namespace_gone(&s);
    s.reconcile().await.expect("gone");
    s.api.delete(CELLS, NAME);
    s.api.delete(RECORDS, &format!("kept-{NAME}"));
    let mut cell = serde_json::to_value(cell_model::Cell::new(NAME, spec(SearchEngine::Embedded)))
        .expect("json");
    cell["apiVersion"] = json!("mrbill.dev/v1alpha1");
    cell["kind"] = json!("Cell");
    s.api.insert(CELLS, cell);
    let restore = CellRestore {
        id: RESTORE.into(),
        backup: FINAL.into(),
        target_time: None,
        deleted: true,
        abort: false,
    };
    s.restoring(&restore);
    s.reconcile().await.expect("waits");
    let secrets = format!("api/v1/namespaces/{NS}/secrets");
    assert!(
        s.api.get(&secrets, "cell-jwt").is_none(),
        "no generated identity"
    );
    assert_eq!(
        s.condition("Restored"),
        (ConditionStatus::False, "Failed".into()),
        "terminal: the record is written before a deleted cell's namespace goes"
    );
    assert!(s.api.get(&cnpg("clusters"), "postgres").is_none());
}

/// A completed base backup keeps the cell's artifacts with it (the media bucket copied into
/// the backups' bucket, never deleting; `status.objectsBackedUp` names it), and a restore
/// copies them back before the database is replaced: a report deleted after the backup is
/// there again for the restored rows that name it, one written after stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_keeps_the_artifacts_and_a_restore_brings_back_one_deleted_since() {
    let moto = Moto::start();
    let s3 = rds::s3(&moto, "us-east-1");
    let s = Scenario::new(SearchEngine::Embedded);
    s.reconcile().await.expect("create");
    bind(&s, &moto, "postgres-backups", "mrbill-c-acme-1234-pg");
    bind(&s, &moto, "media-bucket", "mrbill-c-acme-1234");
    put(&s3, "mrbill-c-acme-1234", "reports/r1.pdf").await;
    s.become_ready();
    s.reconcile().await.expect("ready");
    let kept = |s: &Scenario| {
        s.cell()
            .and_then(|c| c.status)
            .and_then(|s| s.objects_backed_up)
    };
    assert_eq!(kept(&s), None, "no backup yet");
    s.completed_backup(
        "backup-4d5e6f708192",
        "20261206T090000",
        "2026-12-06T09:00:00Z",
    );
    s.reconcile().await.expect("kept with the backup");
    assert_eq!(kept(&s).as_deref(), Some("backup-4d5e6f708192"));
    assert_eq!(
        keys_under(&s3, "mrbill-c-acme-1234-pg", "media/").await,
        ["reports/r1.pdf"]
    );

    // media deletes the report; another is written.
    s3.delete_object()
        .bucket("mrbill-c-acme-1234")
        .key("reports/r1.pdf")
        .send()
        .await
        .expect("delete");
    put(&s3, "mrbill-c-acme-1234", "reports/r2.pdf").await;

    let restore = CellRestore {
        id: RESTORE.into(),
        backup: "backup-4d5e6f708192".into(),
        target_time: None,
        deleted: false,
        abort: false,
    };
    s.restoring(&restore);
    s.service_pods(0);
    s.api.update(&cnpg("clusters"), "postgres", |o| {
        o["status"]["readyInstances"] = json!(1)
    });
    s.reconcile()
        .await
        .expect("fenced: the last base backup asked for");
    s.api.update(&cnpg("backups"), "fence-4d5e6f708192", |o| {
        o["status"] = json!({ "phase": "completed", "serverName": "postgres",
                              "backupId": "20261206T100000", "stoppedAt": "2026-12-06T10:00:00Z" })
    });
    s.reconcile().await.expect("archived: the Cluster goes");
    assert!(s.api.get(&cnpg("clusters"), "postgres").is_none());
    assert_eq!(
        keys(&s3, "mrbill-c-acme-1234").await,
        ["reports/r1.pdf", "reports/r2.pdf"],
        "the deleted report is back before the database is replaced; the later one stays"
    );
}

/// What the backups' `media/` folder keeps of an artifact media deleted stays while a kept
/// backup may name it, and goes once every completed backup ended after it was seen missing;
/// an artifact still in the media bucket is never pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_no_kept_backup_names_is_pruned_from_the_backups() {
    let moto = Moto::start();
    let s3 = rds::s3(&moto, "us-east-1");
    let s = Scenario::new(SearchEngine::Embedded);
    s.reconcile().await.expect("create");
    bind(&s, &moto, "postgres-backups", "mrbill-c-acme-1234-pg");
    bind(&s, &moto, "media-bucket", "mrbill-c-acme-1234");
    put(&s3, "mrbill-c-acme-1234", "reports/r1.pdf").await;
    put(&s3, "mrbill-c-acme-1234", "reports/r2.pdf").await;
    s.become_ready();
    s.reconcile().await.expect("ready");
    s.completed_backup(
        "backup-000000000001",
        "20200106T090000",
        "2020-01-06T09:00:00Z",
    );
    s.reconcile().await.expect("kept with the first backup");
    let both = ["reports/r1.pdf", "reports/r2.pdf"];
    assert_eq!(
        keys_under(&s3, "mrbill-c-acme-1234-pg", "media/").await,
        both
    );

    // media deletes r1; the next backup notes it missing, but the first may still name it.
    s3.delete_object()
        .bucket("mrbill-c-acme-1234")
        .key("reports/r1.pdf")
        .send()
        .await
        .expect("delete");
    s.completed_backup(
        "backup-000000000002",
        "20200106T100000",
        "2020-01-06T10:00:00Z",
    );
    s.reconcile().await.expect("kept with the second backup");
    assert_eq!(
        keys_under(&s3, "mrbill-c-acme-1234-pg", "media/").await,
        both,
        "kept while a backup from before it went may be restored"
    );

    // The backups from before expire; the only one left ended after r1 was seen missing.
    for name in ["backup-000000000001", "backup-000000000002"] {
        s.api.delete(&cnpg("backups"), name);
    }
    s.completed_backup(
        "backup-000000000003",
        "20991206T090000",
        "2099-12-06T09:00:00Z",
    );
    s.reconcile().await.expect("kept with the third backup");
    assert_eq!(
        keys_under(&s3, "mrbill-c-acme-1234-pg", "media/").await,
        ["reports/r2.pdf"],
        "r1 pruned, r2 (still in media) kept"
    );
}

/// A deletion waits while the kept bucket's claim is not bound (the cell's data would go with
/// its namespace otherwise), and a last backup it could not take is recorded as the newest one
/// the cell has, replayed to the archive's end (the catalog names the last backup either way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_waits_for_the_kept_bucket_and_records_a_stand_in_for_a_failed_last_backup() {
    let moto = Moto::start();
    let s = Scenario::new(SearchEngine::Embedded);
    s.api.insert(
        "apis/objectbucket.io/v1alpha1/namespaces/mrbill-system/objectbucketclaims",
        json!({ "apiVersion": "objectbucket.io/v1alpha1", "kind": "ObjectBucketClaim",
            "metadata": { "name": "kept-cells", "namespace": "mrbill-system" } }),
    );
    s.reconcile().await.expect("create");
    bind(&s, &moto, "postgres-backups", "mrbill-c-acme-1234-pg");
    bind(&s, &moto, "media-bucket", "mrbill-c-acme-1234");
    s.become_ready();
    s.reconcile().await.expect("ready");
    s.completed_backup(
        "backup-4d5e6f708192",
        "20261206T090000",
        "2026-12-06T09:00:00Z",
    );
    s.edit(|cell| cell["metadata"]["annotations"] = json!({ "mrbill.dev/final-backup": FINAL }));
    s.api.delete(CELLS, NAME);
    s.reconcile().await.expect("the last backup asked for");
    s.api.update(&cnpg("backups"), FINAL, |o| {
        o["status"] = json!({ "phase": "failed", "error": "no space left" })
    });
    let namespace_deleted = |s: &Scenario| {
        s.api.log().iter().any(|l| {
            l.method == http::Method::DELETE && l.path == format!("/api/v1/namespaces/{NS}")
        })
    };
    s.reconcile().await.expect("waits for the kept bucket");
    assert!(!namespace_deleted(&s), "nothing goes before it is kept");
    assert!(
        s.events().iter().any(|e| e == "KeepFailed"),
        "{:?}",
        s.events()
    );
    assert!(s.api.get(RECORDS, &format!("kept-{NAME}")).is_none());

    bind_in(
        &s,
        &moto,
        "mrbill-system",
        "kept-cells",
        "mrbill-kept-cells-2",
    );
    s.reconcile().await.expect("kept");
    assert!(namespace_deleted(&s));
    let record = s
        .api
        .get(RECORDS, &format!("kept-{NAME}"))
        .expect("the record");
    let backups: Value = serde_json::from_str(&value(&record, "backups.json")).expect("json");
    assert_eq!(
        backups[FINAL],
        json!({ "serverName": "postgres", "backupId": "20261206T090000", "replay": true,
            "stoppedAt": "2026-12-06T09:00:00Z" }),
        "the newest base backup stands in, replayed to the archive's end"
    );
}
