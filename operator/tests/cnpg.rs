//! An in-cluster cell's Postgres is a CloudNativePG `Cluster` with a `Database` per service:
//! every CNPG object the operator renders, for every tier, is validated against CNPG
//! v1.30.0's own CRD schemas (`../shared/reference/cloudnative-pg-v1.30.0`, or
//! `MRBILL_CNPG_CRDS`; no cluster or CRD registry is reachable here) by `crd_schema.py` —
//! the types and formats the API server would check, and strictly: a field CNPG does not
//! know is an error, since the API server would drop it silently. Where the CRDs are absent
//! (a lone clone of the project) the schema test says it was skipped and why.
//!
//! The rest is the contract between the rendered Cluster and the generated Secrets, which the
//! kubelet's CNPG stand-in then starts for real (`tests/pods.rs`).

use std::path::PathBuf;

use cell_model::{Cell, DatabaseEngine, SearchEngine, Tier};
use cell_operator::render::desired;
use serde_json::{Value, json};
mod crds;
mod fixtures;
use crds::validate;
use fixtures::images;

fn cell(tier: Tier) -> Cell {
    fixtures::cell(tier, DatabaseEngine::InCluster, SearchEngine::Embedded)
}

fn cnpg_objects(cell: &Cell) -> Vec<Value> {
    desired(cell, &images())
        .into_iter()
        .filter(|o| {
            o["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("postgresql.cnpg.io/"))
        })
        .collect()
}

/// Where CNPG's CRDs are, if they are.
fn crds() -> Option<PathBuf> {
    let dir = std::env::var_os("MRBILL_CNPG_CRDS").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/reference/cloudnative-pg-v1.30.0")
        },
        PathBuf::from,
    );
    dir.join("postgresql.cnpg.io_clusters.yaml")
        .exists()
        .then_some(dir)
}

#[test]
fn every_cnpg_object_validates_against_cloudnative_pgs_crds() {
    let Some(dir) = crds() else {
        println!(
            "SKIPPED every_cnpg_object_validates_against_cloudnative_pgs_crds: CNPG's CRDs are \
             not at ../shared/reference/cloudnative-pg-v1.30.0 (set MRBILL_CNPG_CRDS)"
        );
        return;
    };
    for tier in [Tier::Small, Tier::Standard, Tier::Large] {
        let objects = cnpg_objects(&cell(tier));
        let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(kinds, ["Cluster", "Database", "Database", "Database"]);
        let (valid, report) = validate(&dir, &objects);
        assert!(valid, "{}: {report}", tier.as_str());
    }
    // The check itself catches what the API server would refuse or drop.
    let mut objects = cnpg_objects(&cell(Tier::Small));
    objects[0]["spec"]["instances"] = json!(0);
    objects[1]["spec"]["owner"] = json!(7);
    objects[2]["spec"]["reclaim"] = json!("retain");
    let (valid, report) = validate(&dir, &objects);
    assert!(!valid, "a broken Cluster passed: {report}");
    for expected in ["instances", "owner", "reclaim: unknown field"] {
        assert!(
            report.contains(expected),
            "{expected} not reported: {report}"
        );
    }
}

/// The provisioner's ConfigMap of a bound backups claim, as Rook's RADOS Gateway writes it.
fn backups_config_map() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": cell_operator::render::BACKUP_BUCKET },
        "data": {
            "BUCKET_NAME": "mrbill-c1-pg-5f2a",
            "BUCKET_HOST": "rook-ceph-rgw-store.rook-ceph.svc",
            "BUCKET_PORT": "80",
            "BUCKET_REGION": "us-east-1",
        },
    })
}

/// Once the backups' claim is bound, the Cluster archives WAL and takes base backups into
/// that bucket with the claim's key, on the tier's schedule and retention: valid for CNPG.
#[test]
fn a_cells_backups_go_to_its_own_bucket_on_the_tiers_schedule_and_validate() {
    for tier in [Tier::Small, Tier::Standard, Tier::Large] {
        let cell = cell(tier);
        let objects = cell_operator::render::with_backups(
            &cell,
            desired(&cell, &images()),
            &backups_config_map(),
            &images().object_store,
        );
        let cluster = objects
            .iter()
            .find(|o| o["kind"] == "Cluster")
            .expect("a Cluster");
        let store = &cluster["spec"]["backup"]["barmanObjectStore"];
        assert_eq!(store["destinationPath"], "s3://mrbill-c1-pg-5f2a/");
        assert_eq!(
            store["endpointURL"],
            "http://rook-ceph-rgw-store.rook-ceph.svc:80"
        );
        assert_eq!(
            store["s3Credentials"]["accessKeyId"],
            json!({ "name": "postgres-backups", "key": "AWS_ACCESS_KEY_ID" })
        );
        let days = tier.template().backup_retention_days;
        assert_eq!(
            cluster["spec"]["backup"]["retentionPolicy"],
            format!("{days}d")
        );
        assert_eq!(store["serverName"], "postgres");
        assert!(
            !objects.iter().any(|o| o["kind"] == "ScheduledBackup"),
            "base backups are the control plane's Backups"
        );
        // media's pods never get the backups' key.
        let media = objects
            .iter()
            .find(|o| o["metadata"]["name"] == "media-service" && o["kind"] == "Deployment")
            .expect("media");
        assert!(!media.to_string().contains("postgres-backups"));
        let Some(dir) = crds() else {
            println!("SKIPPED the schema part: CNPG's CRDs are not at hand");
            continue;
        };
        let cnpg: Vec<Value> = objects
            .into_iter()
            .chain([cell_operator::render::final_backup(
                &cell,
                "final-1764990000",
            )])
            .filter(|o| {
                o["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("postgresql.cnpg.io/"))
            })
            .collect();
        let (valid, report) = validate(&dir, &cnpg);
        assert!(valid, "{}: {report}", tier.as_str());
    }
    // Without the bucket's coordinates nothing changes.
    let cell = cell(Tier::Small);
    let plain = desired(&cell, &images());
    let unbound = cell_operator::render::with_backups(
        &cell,
        plain.clone(),
        &json!({ "data": {} }),
        &images().object_store,
    );
    assert_eq!(plain, unbound);
}

/// A restored cell's Cluster (recovered from a `Backup`, to a time or to the backup's end,
/// archiving into its own folder) and the `Backup` the control plane asks for validate.
#[test]
fn a_restored_cluster_and_a_requested_backup_validate() {
    let mut restored = cell(Tier::Standard);
    for target_time in [Some("2026-12-06T09:30:00Z".to_owned()), None] {
        restored.spec.restore = Some(cell_model::CellRestore {
            id: "0193a5f0-7c1e-7d2a-9b3c-4d5e6f708192".into(),
            backup: "backup-1a2b3c4d5e6f".into(),
            target_time,
            deleted: false,
            abort: false,
        });
        let objects = cell_operator::render::with_backups(
            &restored,
            desired(&restored, &images()),
            &backups_config_map(),
            &images().object_store,
        );
        let mut cnpg: Vec<Value> = objects
            .into_iter()
            .filter(|o| {
                o["apiVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("cnpg.io")
            })
            .collect();
        let cluster = cnpg
            .iter()
            .find(|o| o["kind"] == "Cluster")
            .expect("Cluster");
        assert!(cluster["spec"]["bootstrap"]["initdb"].is_null());
        assert_eq!(
            cluster["spec"]["bootstrap"]["recovery"]["backup"]["name"],
            "backup-1a2b3c4d5e6f"
        );
        assert_eq!(
            cluster["spec"]["backup"]["barmanObjectStore"]["serverName"],
            "postgres-4d5e6f708192"
        );
        cnpg.push(cell_model::base_backup(
            "acme",
            "c-acme-1234",
            "backup-1a2b3c4d5e6f",
        ));
        let Some(dir) = crds() else {
            println!("SKIPPED the schema part: CNPG's CRDs are not at hand");
            return;
        };
        let (valid, report) = validate(&dir, &cnpg);
        assert!(valid, "{report}");
    }
}

/// The Cluster's roles and TLS name the Secrets the operator generates, in the shapes CNPG
/// reads: basic-auth role Secrets (username = role, the password of the service's database
/// URL, which names the primary's Service), a `kubernetes.io/tls` server certificate.
#[test]
fn the_cluster_uses_the_generated_secrets_as_cnpg_reads_them() {
    let cell = cell(Tier::Standard);
    let objects = desired(&cell, &images());
    let secrets = cell_operator::secrets::generate(&cell).expect("secrets");
    let secret = |name: &str| {
        secrets
            .iter()
            .find(|s| s["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("Secret {name} generated"))
    };
    let cluster = objects
        .iter()
        .find(|o| o["kind"] == "Cluster")
        .expect("a Cluster");
    let spec = &cluster["spec"];
    assert_eq!(spec["enableSuperuserAccess"], false);
    assert_eq!(spec["instances"], 3, "the standard tier is multi-AZ");
    // An acknowledged write is on two instances; failover keeps every one of them.
    assert_eq!(
        spec["postgresql"]["synchronous"],
        serde_json::json!({ "method": "any", "number": 1, "dataDurability": "required",
            "failoverQuorum": true })
    );
    for key in ["serverTLSSecret", "serverCASecret"] {
        let tls = secret(spec["certificates"][key].as_str().expect("a Secret"));
        assert_eq!(tls["type"], "kubernetes.io/tls");
        assert!(tls["stringData"]["ca.crt"].is_string());
    }
    let roles = spec["managed"]["roles"].as_array().expect("managed roles");
    assert_eq!(roles.len(), 3);
    for role in roles {
        let name = role["name"].as_str().expect("role name");
        let credentials = secret(role["passwordSecret"]["name"].as_str().expect("Secret"));
        assert_eq!(credentials["type"], "kubernetes.io/basic-auth");
        assert_eq!(credentials["stringData"]["username"], name);
        let url = secret(&format!("{name}-database"))["stringData"]["url"]
            .as_str()
            .expect("url");
        assert_eq!(
            cell_operator::secrets::password_of(url),
            credentials["stringData"]["password"].as_str(),
            "{name}: one password for the URL and the role"
        );
        assert!(
            url.contains(&format!("@postgres-rw.cell-acme.svc:5432/{name}")),
            "{url}"
        );
        let database = objects
            .iter()
            .find(|o| o["kind"] == "Database" && o["spec"]["name"] == name)
            .expect("a Database per service");
        assert_eq!(database["spec"]["owner"], name);
        assert_eq!(database["spec"]["databaseReclaimPolicy"], "retain");
    }
    // Each role only to its own database, over TLS; nothing else before CNPG's default rule.
    assert_eq!(
        spec["postgresql"]["pg_hba"],
        json!([
            "hostssl sameuser all all scram-sha-256",
            "host all all all reject"
        ])
    );
    assert!(
        !secrets.iter().any(|s| s["metadata"]["name"] == "postgres"),
        "no superuser password is generated"
    );
}

fn moving(role: cell_model::MigrationRole, phase: Option<cell_model::MigrationPhase>) -> Cell {
    let mut c = cell(Tier::Standard);
    c.spec.migration = Some(cell_model::CellMigration {
        role,
        id: "m-1".into(),
        fenced: false,
        source_host: Some("postgres-rw.cell-acme.svc.clusterset.local".into()),
        phase,
    });
    c
}

fn schema_copied(c: &mut Cell) {
    c.status = Some(cell_model::CellStatus {
        conditions: vec![cell_model::Condition {
            type_: "SchemaCopied".into(),
            status: cell_model::ConditionStatus::True,
            reason: "SchemaCopied".into(),
            message: String::new(),
            last_transition_time: None,
        }],
        ..Default::default()
    });
}

/// A move's source publishes every service database to a replication role of its own; the
/// target copies the schema with a Job per service, then (once they succeeded) subscribes to
/// the source as an external cluster; all of it valid CNPG, and gone once the target starts.
#[test]
fn a_moves_source_publishes_and_its_target_subscribes_in_valid_cnpg_objects() {
    use cell_model::{MigrationPhase, MigrationRole};
    let source = desired(&moving(MigrationRole::Source, None), &images());
    let kinds = |objects: &[Value], kind: &str| -> Vec<String> {
        objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .map(|o| {
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        kinds(&source, "Publication"),
        ["move-poc", "move-dojo", "move-media"]
    );
    // Exported to the clusterset (MCS) where the operator is told to, for targets elsewhere.
    assert!(
        kinds(&source, "ServiceExport").is_empty(),
        "not unless told to"
    );
    let exporting = cell_operator::render::Images {
        service_export: true,
        ..images()
    };
    let exported = desired(&moving(MigrationRole::Source, None), &exporting);
    assert_eq!(kinds(&exported, "ServiceExport"), ["postgres-rw"]);
    let after = desired(&cell(Tier::Standard), &exporting);
    assert!(
        kinds(&after, "ServiceExport").is_empty(),
        "only while it is a source"
    );
    let cluster = source
        .iter()
        .find(|o| o["kind"] == "Cluster")
        .expect("Cluster");
    let migrator = cluster["spec"]["managed"]["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .find(|r| r["name"] == "migrator")
        .expect("a replication role");
    assert_eq!(migrator["replication"], true);
    assert_eq!(migrator["inRoles"], json!(["poc", "dojo", "media"]));
    assert_eq!(
        cluster["spec"]["postgresql"]["pg_hba"][0], "hostssl all migrator all scram-sha-256",
        "the migrator's rule comes before `sameuser`"
    );
    // The source keeps serving until fenced.
    assert!(!kinds(&source, "HorizontalPodAutoscaler").is_empty());

    let mut copying = moving(MigrationRole::Target, Some(MigrationPhase::Copy));
    let before = desired(&copying, &images());
    assert_eq!(
        kinds(&before, "Job"),
        ["schema-poc", "schema-dojo", "schema-media"]
    );
    assert!(
        kinds(&before, "Subscription").is_empty(),
        "no subscription before the schema"
    );
    assert!(
        kinds(&before, "HorizontalPodAutoscaler").is_empty(),
        "no services yet"
    );
    schema_copied(&mut copying);
    let target = desired(&copying, &images());
    assert_eq!(
        kinds(&target, "Subscription"),
        ["move-poc", "move-dojo", "move-media"]
    );
    let slots: std::collections::BTreeSet<&str> = target
        .iter()
        .filter(|o| o["kind"] == "Subscription")
        .filter_map(|o| o["spec"]["parameters"]["slot_name"].as_str())
        .collect();
    assert_eq!(
        slots.len(),
        3,
        "one replication slot per database on the source cluster: {slots:?}"
    );
    let external = &target
        .iter()
        .find(|o| o["kind"] == "Cluster")
        .expect("Cluster")["spec"]["externalClusters"][0];
    assert_eq!(external["connectionParameters"]["sslmode"], "verify-full");
    assert_eq!(external["sslRootCert"]["name"], "migration-source");

    let started = desired(
        &moving(MigrationRole::Target, Some(MigrationPhase::Start)),
        &images(),
    );
    assert!(kinds(&started, "Subscription").is_empty() && kinds(&started, "Job").is_empty());
    assert_eq!(kinds(&started, "HorizontalPodAutoscaler").len(), 3);

    let Some(dir) = crds() else {
        println!("SKIPPED the CNPG schema part: CNPG's CRDs are not there (MRBILL_CNPG_CRDS)");
        return;
    };
    for objects in [source, target] {
        let cnpg: Vec<Value> = objects
            .into_iter()
            .filter(|o| {
                o["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("postgresql.cnpg.io/"))
            })
            .collect();
        let (valid, report) = validate(&dir, &cnpg);
        assert!(valid, "{report}");
    }
}
