//! A deleted `rds` cell's record and its tenant's return through the operator
//! (`controller/kept.rs`, `controller/rds_return.rs`): the final snapshot, the identity and the
//! retained bucket recorded; the return's new foundation, the snapshot copied under its key,
//! the instance restored from it and its master password reset, the artifacts copied back.
//!
//! Fakes, because none of these can run here: moto plays AWS (stacks, instances, snapshots,
//! buckets; its CloudFormation makes no Secrets Manager secret, so the test makes the new
//! foundation's), the cluster's API is a `kube_fake::FakeApi`, and a real TLS-only Postgres
//! stands in for the instance (`rds/`): the test plays RDS's part of a master password reset.

use std::time::{Duration, Instant};

use cell_model::{Cell, CellRestore, ConditionStatus};
use cell_operator::aws::MASTER_RESET_TAG;
use serde_json::json;

mod fixtures;
mod rds;
mod rds_setup;
use rds_setup::{CELLS, INSTANCE, NAME, Setup, spec};

const RECORDS: &str = "api/v1/namespaces/mrbill-system/secrets";
const SECRETS: &str = "api/v1/namespaces/cell-acme/secrets";
const FINAL: &str = "final-1796000000";

/// The signing key's private PEM, as the FakeApi holds the Secret (`stringData` or `data`).
fn pem(secret: &serde_json::Value) -> String {
    use base64::Engine as _;
    if let Some(text) = secret["stringData"]["private.pem"].as_str() {
        return text.to_owned();
    }
    let data = secret["data"]["private.pem"].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64");
    String::from_utf8(bytes).expect("utf-8")
}

/// The control plane's delete: the last backup named on the Cell, the Cell deleted; the
/// operator reconciles until its finalizer lets it go, then the namespace's objects go.
async fn delete(s: &Setup, last: &str) {
    s.api.update(CELLS, NAME, |cell| {
        cell["metadata"]["annotations"] = json!({ "mrbill.dev/final-backup": last })
    });
    s.api.delete(CELLS, NAME);
    for _ in 0..20 {
        if s.api.get(CELLS, NAME).is_none() {
            break;
        }
        s.reconcile().await;
    }
    assert!(s.api.get(CELLS, NAME).is_none(), "deleted");
    for (key, _) in s.api.snapshot() {
        if key.contains("/namespaces/cell-acme/") {
            let (collection, name) = key.rsplit_once('/').expect("collection/name");
            s.api.delete(collection, name);
        }
    }
}

/// Entry `key` of the deleted cell's record, as JSON.
fn record(s: &Setup, key: &str) -> serde_json::Value {
    let record = s
        .api
        .get(RECORDS, &format!("kept-{NAME}"))
        .expect("the record");
    let text = record["stringData"][key].as_str().expect(key);
    serde_json::from_str(text).expect("json")
}

/// The control plane's restore of the deleted tenant: a Cell again, suspended, returning from
/// `backup`; and the new foundation's master credentials, generated (moto's CloudFormation
/// makes no Secrets Manager secret: the test plays that part of the stack). Returns the
/// restore's id and the generated password.
async fn return_from(s: &Setup, backup: &str) -> (String, String) {
    let id = uuid::Uuid::now_v7().to_string();
    let mut cell = serde_json::to_value(Cell::new(NAME, spec())).expect("json");
    cell["apiVersion"] = json!("mrbill.dev/v1alpha1");
    cell["kind"] = json!("Cell");
    cell["metadata"]["generation"] = json!(1);
    cell["spec"]["suspended"] = json!(true);
    let restore = CellRestore {
        id: id.clone(),
        backup: backup.into(),
        target_time: None,
        deleted: true,
        abort: false,
    };
    cell["spec"]["restore"] = serde_json::to_value(&restore).expect("json");
    s.api.insert(CELLS, cell);
    let generated = uuid::Uuid::new_v4().simple().to_string();
    let secrets = aws_sdk_secretsmanager::Client::new(&s.sdk);
    let name = format!("mrbill/{NAME}/database");
    let value = json!({ "username": rds::MASTER, "password": generated }).to_string();
    if secrets
        .create_secret()
        .name(&name)
        .secret_string(&value)
        .send()
        .await
        .is_err()
    {
        secrets
            .put_secret_value()
            .secret_id(&name)
            .secret_string(&value)
            .send()
            .await
            .expect("the new foundation's secret");
    }
    (id, generated)
}

/// The copy of the final snapshot restore `id` makes.
fn copy_of(id: &str) -> String {
    format!("{INSTANCE}-return-{}", &id.replace('-', "")[20..])
}

/// An artifact in `bucket`.
async fn put(s: &Setup, bucket: &str, key: &str) {
    rds::s3(&s.moto, "us-east-1")
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(b"%PDF".to_vec().into())
        .send()
        .await
        .expect("an artifact");
}

async fn has(s: &Setup, bucket: &str, key: &str) -> bool {
    rds::s3(&s.moto, "us-east-1")
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .is_ok()
}

/// A deleted rds cell leaves a record (its identity, the final snapshot by the deletion's
/// backup name, its retained bucket) and its master secret goes at once; its tenant's return
/// makes a new foundation, gets the identity back (never generated), copies the retained
/// bucket's artifacts into the new one and the snapshot under the new key, has RDS restore the
/// instance from it under the cell's name, resets its master password to the new
/// foundation's, and is recovered.
#[tokio::test]
async fn a_deleted_rds_cell_comes_back_from_its_final_snapshot_with_its_identity_and_artifacts() {
    let s = Setup::new().await;
    s.until("DatabaseReady").await;
    let private = pem(&s.api.get(SECRETS, "cell-jwt").expect("the signing key"));
    let old_bucket = s.output("BucketName").await.expect("the bucket");
    let report = "tenants/acme/reports/r1.pdf";
    put(&s, &old_bucket, report).await;

    delete(&s, FINAL).await;
    let snapshot = format!("{INSTANCE}-{FINAL}");
    assert!(s.snapshot_exists(&snapshot).await, "the final snapshot");
    assert_eq!(s.instance(INSTANCE).await, None, "the instance went");
    assert_eq!(
        s.master_password().await,
        None,
        "no recovery window holds the name"
    );
    assert_eq!(
        record(&s, "backups.json"),
        json!({ FINAL: { "snapshot": snapshot } })
    );
    assert_eq!(
        record(&s, "buckets.json"),
        json!([{ "name": old_bucket, "region": "us-east-1" }])
    );
    assert_eq!(
        record(&s, "identity.json")["cell-jwt"]["data"]["private.pem"],
        private.as_str(),
        "the signing key kept"
    );

    let (id, generated) = return_from(&s, FINAL).await;
    let mut reasons: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        s.reconcile().await;
        let (ok, why) = s
            .condition("Restored")
            .unwrap_or((ConditionStatus::False, String::new()));
        if ok == ConditionStatus::True {
            break;
        }
        let reason = why.split(':').next().unwrap_or_default().to_owned();
        if !reason.is_empty() && reasons.last() != Some(&reason) {
            reasons.push(reason);
        }
        // What RDS does with the new master password (moto keeps it; the stand-in is real).
        if why.contains("resetting the master password") {
            s.instance.set_master_password(&generated).await;
        }
        assert!(Instant::now() < deadline, "never recovered: {reasons:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        reasons.first().map(String::as_str),
        Some("Retrieving"),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r == "Replacing"), "{reasons:?}");
    assert_eq!(
        pem(&s.api.get(SECRETS, "cell-jwt").expect("the signing key")),
        private,
        "the old key: old tokens verify"
    );
    assert_eq!(s.instance(INSTANCE).await, Some(Some(id.clone())));
    assert!(
        !s.has_tag(INSTANCE, MASTER_RESET_TAG).await,
        "the password reset"
    );
    assert!(!s.snapshot_exists(&copy_of(&id)).await, "the copy deleted");
    assert!(
        s.snapshot_exists(&snapshot).await,
        "the final snapshot kept"
    );
    let new_bucket = s.output("BucketName").await.expect("a new bucket");
    assert_ne!(new_bucket, old_bucket);
    assert!(
        has(&s, &new_bucket, report).await,
        "the artifact copied back"
    );
    let (_, why) = s.condition("Restored").expect("Restored");
    assert!(why.contains("final snapshot"), "{why}");
    assert_eq!(
        s.condition("DatabaseReady").map(|c| c.0),
        Some(ConditionStatus::True)
    );
}

/// A return deleted before its instance was made (the way to undo one) has nothing to
/// snapshot: the record maps the new deletion's backup to the snapshot the return came from,
/// keeps both lives' buckets, and the return's copy goes; a return from it comes back. A
/// return whose record names no snapshot says `Failed` (waiting cannot help).
#[tokio::test]
async fn a_return_deleted_midway_leaves_what_it_came_from() {
    let s = Setup::new().await;
    s.until("DatabaseReady").await;
    let old_bucket = s.output("BucketName").await.expect("the bucket");
    let report = "tenants/acme/reports/r1.pdf";
    put(&s, &old_bucket, report).await;
    delete(&s, FINAL).await;
    let snapshot = format!("{INSTANCE}-{FINAL}");

    let (id, _) = return_from(&s, FINAL).await;
    s.reconcile().await;
    let (_, why) = s.condition("Restored").expect("Restored");
    assert!(why.starts_with("Retrieving"), "{why}");
    assert!(s.snapshot_exists(&copy_of(&id)).await, "the copy started");
    assert_eq!(s.instance(INSTANCE).await, None, "no instance yet");
    let between = s
        .output("BucketName")
        .await
        .expect("the second life's bucket");

    let again = "final-1796000100";
    delete(&s, again).await;
    assert_eq!(
        record(&s, "backups.json")[again],
        json!({ "snapshot": snapshot }),
        "the snapshot the return came from stands for the second deletion"
    );
    assert_eq!(
        record(&s, "buckets.json"),
        json!([{ "name": old_bucket, "region": "us-east-1" },
               { "name": between, "region": "us-east-1" }])
    );
    assert!(!s.snapshot_exists(&copy_of(&id)).await, "the copy deleted");

    // Nothing recorded under a backup name: Failed, not waiting.
    let (_, _) = return_from(&s, "final-1").await;
    s.reconcile().await;
    let (_, why) = s.condition("Restored").expect("Restored");
    assert!(why.starts_with("Failed"), "{why}");
    delete(&s, "final-1796000200").await;

    let (id, generated) = return_from(&s, again).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.condition("Restored").map(|c| c.0) != Some(ConditionStatus::True) {
        s.reconcile().await;
        let why = s.condition("Restored").map(|c| c.1).unwrap_or_default();
        if why.contains("resetting the master password") {
            s.instance.set_master_password(&generated).await;
        }
        assert!(Instant::now() < deadline, "never recovered: {why}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.instance(INSTANCE).await, Some(Some(id)));
    let bucket = s.output("BucketName").await.expect("a bucket");
    assert!(
        has(&s, &bucket, report).await,
        "the first life's artifact back"
    );
}
