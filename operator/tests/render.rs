//! Desired state per tier: snapshots (`tests/snapshots/<tier>.yaml`; regenerate with
//! `UPDATE_SNAPSHOTS=1 cargo test -p cell-operator --test render`), validated against the
//! Kubernetes 1.31 API schemas with PyPI `kubernetes-validate --strict`, and the rules the
//! operator promises.

use cell_model::{DatabaseEngine, SearchEngine, Tier};
use cell_operator::render::{Images, desired, replicas};
use serde_json::{Value, json};
mod fixtures;
use fixtures::cell;

fn images() -> Images {
    Images {
        aws_egress: vec!["10.20.0.0/16".into()],
        ..fixtures::images()
    }
}

fn yaml(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| serde_norway::to_string(o).expect("yaml"))
        .collect::<Vec<_>>()
        .join("---\n")
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} rendered"))
}

/// `service`'s workload (dojo's is a StatefulSet).
fn workload<'a>(objects: &'a [Value], service: &str) -> &'a Value {
    find(
        objects,
        cell_operator::render::workload_kind(service),
        &format!("{service}-service"),
    )
}

#[test]
fn every_tier_renders_valid_objects_matching_its_snapshot() {
    let validate = std::env::var("MRBILL_KUBERNETES_VALIDATE")
        .unwrap_or_else(|_| "kubernetes-validate".into());
    for (tier, engine, search) in [
        (
            Tier::Small,
            DatabaseEngine::InCluster,
            SearchEngine::Embedded,
        ),
        (
            Tier::Standard,
            DatabaseEngine::InCluster,
            SearchEngine::Meilisearch,
        ),
        (Tier::Large, DatabaseEngine::Rds, SearchEngine::Meilisearch),
    ] {
        let rendered = yaml(&desired(&cell(tier, engine, search), &images()));
        let relative = format!("tests/snapshots/{}.yaml", tier.as_str());
        test_support::assert_committed(&relative, &rendered, "UPDATE_SNAPSHOTS");
        let path = format!("{}/{relative}", env!("CARGO_MANIFEST_DIR"));
        let out = std::process::Command::new(&validate)
            .args(["--strict", &path])
            .output()
            .unwrap_or_else(|e| {
                panic!("{validate} not found: run ./x test (it installs it) or set MRBILL_KUBERNETES_VALIDATE: {e}")
            });
        assert!(
            out.status.success(),
            "{}: {}{}",
            tier.as_str(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_cell_is_isolated_and_sized_by_its_tier() {
    let c = cell(
        Tier::Standard,
        DatabaseEngine::InCluster,
        SearchEngine::Meilisearch,
    );
    let objects = desired(&c, &images());
    assert_eq!(
        objects[0]["kind"], "Namespace",
        "the namespace is applied first"
    );
    assert_eq!(objects[0]["metadata"]["name"], "cell-acme");
    for o in &objects[1..] {
        assert_eq!(o["metadata"]["namespace"], "cell-acme", "{o}");
        assert_eq!(o["metadata"]["labels"]["mrbill.dev/cell"], "c-acme-1234");
    }
    let deny = find(&objects, "NetworkPolicy", "default-deny");
    assert_eq!(deny["spec"]["podSelector"], serde_json::json!({}));
    assert_eq!(
        deny["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    let router = find(&objects, "NetworkPolicy", "allow-from-router");
    assert_eq!(
        router["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["mrbill.dev/router"],
        "true"
    );
    // Meilisearch and in-cluster Postgres get their paths; no AWS egress without RDS.
    find(&objects, "NetworkPolicy", "poc-to-meilisearch");
    find(&objects, "NetworkPolicy", "services-to-postgres");
    let pg = find(&objects, "Cluster", "postgres");
    assert_eq!(
        pg["spec"]["storage"]["size"],
        format!("{}Gi", Tier::Standard.template().db_storage_gib)
    );
    // CNPG's instances: each other, the CNPG operator on the status port, the API server.
    let instances = find(&objects, "NetworkPolicy", "postgres-instances");
    assert_eq!(
        instances["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "cnpg-system"
    );
    find(&objects, "StatefulSet", "meilisearch");
    // Only poc gets the signing key; each service gets its own database credentials.
    for (service, has_private) in [("poc", true), ("dojo", false), ("media", false)] {
        let d = workload(&objects, service);
        let sources =
            d["spec"]["template"]["spec"]["volumes"][2]["projected"]["sources"].to_string();
        assert_eq!(
            sources.contains("private.pem"),
            has_private,
            "{service}: {sources}"
        );
        assert!(
            sources.contains(&format!("{service}-database")),
            "{service}: {sources}"
        );
    }
    assert!(
        !objects
            .iter()
            .any(|o| o["metadata"]["name"] == "services-to-aws")
    );

    for service in cell_model::contract::Service::ALL.map(cell_model::contract::Service::name) {
        let name = format!("{service}-service");
        let d = workload(&objects, service);
        assert!(
            d["spec"].get("replicas").is_none(),
            "the HPA owns {name}'s replicas"
        );
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
            true
        );
        assert_eq!(
            pod["topologySpreadConstraints"][0]["topologyKey"],
            "topology.kubernetes.io/zone"
        );
        assert_eq!(
            pod["containers"][0]["image"],
            format!("registry.example.com/mrbill/{service}-service:1.4.2")
        );
        let hpa = find(&objects, "HorizontalPodAutoscaler", &name);
        let template = Tier::Standard.template();
        let bounds = match service {
            "poc" => template.poc,
            "dojo" => template.dojo,
            _ => template.media,
        };
        assert_eq!(hpa["spec"]["minReplicas"], bounds.default);
        assert_eq!(hpa["spec"]["maxReplicas"], bounds.max);
        find(&objects, "PodDisruptionBudget", &name);
        find(&objects, "Service", &name);
    }
}

#[test]
fn replica_overrides_move_the_autoscalers_floor_within_the_tiers_bounds() {
    let mut c = cell(
        Tier::Standard,
        DatabaseEngine::InCluster,
        SearchEngine::Embedded,
    );
    c.spec.replicas.media = Some(3);
    c.spec.replicas.poc = Some(50);
    c.spec.replicas.dojo = Some(3);
    assert_eq!(replicas(&c, "media"), (3, 4));
    assert_eq!(replicas(&c, "poc"), (6, 6), "clamped to the tier's maximum");
    assert_eq!(replicas(&c, "dojo"), (3, 4));
    let rds = cell(Tier::Large, DatabaseEngine::Rds, SearchEngine::Meilisearch);
    let objects = desired(&rds, &images());
    // AWS only where the operator is told it is (the VPC and its endpoints), on 443 and 5432.
    let aws = find(&objects, "NetworkPolicy", "services-to-aws");
    assert_eq!(
        aws["spec"]["egress"][0]["to"],
        serde_json::json!([{ "ipBlock": { "cidr": "10.20.0.0/16" } }])
    );
    let ports: Vec<u64> = aws["spec"]["egress"][0]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(|p| p["port"].as_u64())
        .collect();
    assert_eq!(ports, [443, 5432]);
    let open = desired(
        &rds,
        &Images {
            aws_egress: Vec::new(),
            mail: None,
            secrets_access: None,
            cnpg_namespace: "cnpg-system".into(),
            identity_access: None,
            ..images()
        },
    );
    assert!(
        find(&open, "NetworkPolicy", "services-to-aws")["spec"]["egress"][0]
            .get("to")
            .is_none(),
        "without settings: any address, still only on 443/5432"
    );
    assert!(
        !objects
            .iter()
            .any(|o| o["metadata"]["name"] == "services-to-postgres")
    );
}

/// A room lives in one process: dojo runs as a StatefulSet whose pods routers can name (the
/// headless Service), its autoscaler targets that StatefulSet, and the pods start in order
/// (the route lists the ready ordinals).
#[test]
fn dojo_runs_as_named_pods_the_router_can_pin_rooms_to() {
    for tier in Tier::ALL {
        let c = cell(tier, DatabaseEngine::InCluster, SearchEngine::Embedded);
        let objects = desired(&c, &images());
        let dojo = find(&objects, "StatefulSet", "dojo-service");
        assert_eq!(dojo["spec"]["serviceName"], "dojo-service-pods", "{tier:?}");
        assert_eq!(dojo["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(dojo["spec"]["updateStrategy"]["type"], "RollingUpdate");
        assert!(dojo["spec"].get("strategy").is_none(), "{tier:?}");
        assert!(
            !objects
                .iter()
                .any(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "dojo-service"),
            "{tier:?}"
        );
        let pods = find(&objects, "Service", "dojo-service-pods");
        assert_eq!(pods["spec"]["clusterIP"], "None");
        assert_eq!(pods["spec"]["publishNotReadyAddresses"], false);
        assert_eq!(
            pods["spec"]["selector"],
            dojo["spec"]["selector"]["matchLabels"]
        );
        let hpa = find(&objects, "HorizontalPodAutoscaler", "dojo-service");
        assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "StatefulSet");
        assert_eq!(
            hpa["spec"]["maxReplicas"],
            tier.template().dojo.max,
            "{tier:?}"
        );
        assert_eq!(
            cell_operator::render::pod_url(&c, "dojo", 2),
            format!(
                "http://dojo-service-2.dojo-service-pods.{}.svc:8080",
                dojo["metadata"]["namespace"].as_str().expect("ns")
            )
        );
        let poc = find(&objects, "Deployment", "poc-service");
        assert_eq!(poc["spec"]["strategy"]["type"], "RollingUpdate", "{tier:?}");
    }
}

#[test]
fn a_suspended_cell_keeps_its_objects_but_runs_no_pods() {
    let mut c = cell(
        Tier::Standard,
        DatabaseEngine::InCluster,
        SearchEngine::Embedded,
    );
    let running = desired(&c, &images());
    c.spec.suspended = true;
    let suspended = desired(&c, &images());
    for service in cell_model::contract::Service::ALL.map(cell_model::contract::Service::name) {
        let name = format!("{service}-service");
        assert!(workload(&running, service)["spec"]["replicas"].is_null());
        find(&running, "HorizontalPodAutoscaler", &name);
        assert_eq!(workload(&suspended, service)["spec"]["replicas"], 0);
        assert!(
            !suspended
                .iter()
                .any(|o| o["kind"] == "HorizontalPodAutoscaler"),
            "no autoscaler may bring a suspended cell's pods back"
        );
    }
    // Data stays: Postgres, Secrets' consumers and Services are all still there.
    find(&suspended, "Cluster", "postgres");
    find(&suspended, "Service", "poc-service");
}

#[test]
fn only_poc_service_learns_the_first_admins_invite_and_only_its_hash() {
    let mut c = cell(
        Tier::Small,
        DatabaseEngine::InCluster,
        SearchEngine::Embedded,
    );
    c.spec.bootstrap = Some(cell_model::AdminBootstrap {
        admin_email: "boss@acme.test".into(),
        invite_token_sha256: "ab".repeat(32),
        expires_at: "2026-11-29T10:00:00Z".into(),
    });
    c.spec.email_domains = vec!["acme.test".into(), "acme.io".into()];
    let objects = desired(&c, &images());
    let env = |service: &str| {
        workload(&objects, service)["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env")
            .iter()
            .filter_map(|e| Some((e["name"].as_str()?.to_owned(), e["value"].clone())))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let poc = env("poc");
    assert_eq!(poc["MRBILL_BOOTSTRAP_ADMIN_EMAIL"], "boss@acme.test");
    assert_eq!(poc["MRBILL_BOOTSTRAP_INVITE_SHA256"], "ab".repeat(32));
    assert_eq!(poc["MRBILL_BOOTSTRAP_EXPIRES_AT"], "2026-11-29T10:00:00Z");
    // Open registration admits only the tenant's domains.
    assert_eq!(poc["MRBILL_EMAIL_DOMAINS"], "acme.test,acme.io");
    for other in ["dojo", "media"] {
        assert!(
            env(other)
                .keys()
                .all(|k| !k.starts_with("MRBILL_BOOTSTRAP")),
            "{other} must not see it"
        );
    }
}

/// Secrets reach pods as files, never as env values (which the API shows to anyone who may
/// read pods, and which children and crash dumps inherit). Only keys that are not secret
/// (a key id, a host name, a port, a user name) may be env values.
#[test]
fn no_container_takes_a_secret_value_as_env() {
    const NOT_SECRET: [&str; 4] = ["kid", "host", "port", "username"];
    for tier in Tier::ALL {
        for engine in [DatabaseEngine::InCluster, DatabaseEngine::Rds] {
            for search in [SearchEngine::Embedded, SearchEngine::Meilisearch] {
                let objects = desired(&cell(tier, engine, search), &images());
                for o in &objects {
                    for c in o["spec"]["template"]["spec"]["containers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        for e in c["env"].as_array().into_iter().flatten() {
                            if let Some(r) = e["valueFrom"].get("secretKeyRef") {
                                let key = r["key"].as_str().unwrap_or_default();
                                assert!(
                                    NOT_SECRET.contains(&key),
                                    "{} {}: env {} from Secret {}/{key}",
                                    o["kind"],
                                    o["metadata"]["name"],
                                    e["name"],
                                    r["name"]
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// With the platform's mail relay configured, poc-service (and only it) gets the SMTP URL as a
/// file from the cell's `smtp` Secret and the sender as a value; without, no cell mails.
#[test]
fn only_poc_service_gets_the_mail_relay_and_only_as_a_file() {
    let c = cell(
        Tier::Small,
        DatabaseEngine::InCluster,
        SearchEngine::Embedded,
    );
    let mail = cell_operator::render::Mail {
        smtp_url: secrecy::SecretString::from("smtps://mailer:secret@smtp.example.com".to_owned()),
        from: Some("no-reply+{tenant}@mrbill.example".into()),
    };
    let with = Images {
        mail: Some(mail),
        ..images()
    };
    for (images, mails) in [(with, true), (images(), false)] {
        let objects = desired(&c, &images);
        let text = serde_json::to_string(&objects).expect("json");
        assert!(
            !text.contains("mailer:secret"),
            "the URL is never in a rendered object"
        );
        for service in cell_model::contract::Service::ALL.map(cell_model::contract::Service::name) {
            let pod = &workload(&objects, service)["spec"]["template"]["spec"];
            let env: Vec<(String, Value)> = pod["containers"][0]["env"]
                .as_array()
                .expect("env")
                .iter()
                .map(|e| {
                    (
                        e["name"].as_str().expect("name").to_owned(),
                        e["value"].clone(),
                    )
                })
                .collect();
            let value = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
            let sources = pod["volumes"]
                .as_array()
                .expect("volumes")
                .iter()
                .find(|v| v["name"] == "secrets")
                .expect("secrets volume")["projected"]["sources"]
                .as_array()
                .expect("sources")
                .clone();
            let mounted = sources.iter().any(|s| s["secret"]["name"] == "smtp");
            let poc_mails = mails && service == "poc";
            assert_eq!(mounted, poc_mails, "{service}: smtp Secret mounted");
            assert_eq!(
                value("MRBILL_SMTP_URL_FILE").is_some(),
                poc_mails,
                "{service}: MRBILL_SMTP_URL_FILE"
            );
            if poc_mails {
                assert_eq!(
                    value("MRBILL_SMTP_URL_FILE"),
                    Some(json!("/var/run/secrets/mrbill/smtp-url"))
                );
                assert_eq!(
                    value("MRBILL_MAIL_FROM"),
                    Some(json!("no-reply+acme@mrbill.example"))
                );
            }
        }
    }
}

/// Each container names each environment variable once (a second entry would silently win),
/// with every optional setting on.
#[test]
fn no_container_sets_a_variable_twice() {
    let mut c = cell(
        Tier::Large,
        DatabaseEngine::InCluster,
        SearchEngine::Meilisearch,
    );
    c.spec.email_domains = vec!["acme.test".into()];
    c.spec.bootstrap = Some(cell_model::AdminBootstrap {
        admin_email: "boss@acme.test".into(),
        invite_token_sha256: "ab".repeat(32),
        expires_at: "2026-11-29T10:00:00Z".into(),
    });
    let mail = cell_operator::render::Mail {
        smtp_url: secrecy::SecretString::from("smtps://m:s@smtp.example.com".to_owned()),
        from: Some("no-reply@mrbill.example".into()),
    };
    let objects = desired(
        &c,
        &Images {
            mail: Some(mail),
            ..images()
        },
    );
    for object in &objects {
        let spec = &object["spec"]["template"]["spec"];
        for container in spec["containers"].as_array().into_iter().flatten() {
            let mut names: Vec<&str> = container["env"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["name"].as_str())
                .collect();
            let all = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(
                names.len(),
                all,
                "{}/{}: {names:?}",
                object["kind"],
                object["metadata"]["name"]
            );
        }
    }
}

/// `mrbill cell scale --db-class/--db-storage` on an in-cluster cell: the CNPG Cluster takes
/// the class's size (as the RDS class of that name), its memory settings follow, its volume
/// grows, and the namespace's quota and limits make room for it.
#[test]
fn the_database_class_and_storage_size_the_cnpg_cluster_and_the_quota() {
    let mut c = cell(
        Tier::Standard,
        DatabaseEngine::InCluster,
        SearchEngine::Embedded,
    );
    c.spec.database.class = Some("db.m7g.2xlarge".into());
    c.spec.database.storage_gib = 250;
    let objects = desired(&c, &images());
    let spec = &find(&objects, "Cluster", "postgres")["spec"];
    assert_eq!(
        spec["resources"]["limits"],
        json!({ "cpu": "8", "memory": "32Gi" })
    );
    assert_eq!(spec["storage"]["size"], "250Gi");
    assert_eq!(spec["storage"]["resizeInUseVolumes"], true);
    assert_eq!(spec["postgresql"]["parameters"]["shared_buffers"], "8192MB");
    let hard = &find(&objects, "ResourceQuota", "cell")["spec"]["hard"];
    // The services' share (16 CPUs, 32 GiB) plus three instances of the class.
    assert_eq!(hard["limits.cpu"], "40");
    assert_eq!(hard["limits.memory"], "128Gi");
    assert_eq!(hard["requests.storage"], "770Gi");
    let max = &find(&objects, "LimitRange", "cell")["spec"]["limits"][0]["max"];
    assert_eq!(max, &json!({ "cpu": "8", "memory": "32Gi" }));
}

/// A move's source and target (schema Jobs, network paths to and from the other cluster)
/// render valid Kubernetes objects (CNPG's own are validated in `tests/cnpg.rs`).
#[test]
fn a_moves_objects_are_valid_kubernetes_objects() {
    use cell_model::{CellMigration, MigrationPhase, MigrationRole};
    let validate = std::env::var("MRBILL_KUBERNETES_VALIDATE")
        .unwrap_or_else(|_| "kubernetes-validate".into());
    for (role, phase) in [
        (MigrationRole::Source, None),
        (MigrationRole::Target, Some(MigrationPhase::Copy)),
    ] {
        let mut c = cell(
            Tier::Standard,
            DatabaseEngine::InCluster,
            SearchEngine::Embedded,
        );
        c.spec.migration = Some(CellMigration {
            role,
            id: "m-1".into(),
            fenced: true,
            source_host: Some("postgres-rw.cell-acme.svc.clusterset.local".into()),
            phase,
        });
        let objects: Vec<Value> = desired(&c, &images())
            .into_iter()
            .filter(|o| !o["apiVersion"].as_str().unwrap_or("").contains("cnpg.io"))
            .collect();
        let path = std::env::temp_dir().join(format!("move-{}-{role:?}.yaml", std::process::id()));
        std::fs::write(&path, yaml(&objects)).expect("write");
        let out = std::process::Command::new(&validate)
            .args(["--strict"])
            .arg(&path)
            .output()
            .expect("kubernetes-validate");
        let _ = std::fs::remove_file(&path);
        assert!(
            out.status.success(),
            "{role:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // A fenced source and a copying target run no service pods.
        for service in ["poc", "dojo", "media"] {
            let d = workload(&objects, service);
            assert_eq!(d["spec"]["replicas"], 0, "{role:?}");
        }
    }
}

/// An in-cluster cell's artifacts: a bucket claimed for the cell, whose key only media's pods
/// mount (as files), reached through the provisioner's coordinates and an egress to the
/// store's gateway pods alone; no pod-local media directory. An rds cell claims nothing.
#[test]
fn an_in_cluster_cell_claims_a_bucket_only_media_holds_a_key_to() {
    let c = cell(
        Tier::Standard,
        DatabaseEngine::InCluster,
        SearchEngine::Embedded,
    );
    let objects = desired(&c, &images());
    let claim = find(&objects, "ObjectBucketClaim", "media-bucket");
    assert_eq!(claim["apiVersion"], "objectbucket.io/v1alpha1");
    assert_eq!(claim["spec"]["storageClassName"], "rook-ceph-bucket");
    assert_eq!(claim["spec"]["generateBucketName"], "mrbill-c-acme-1234");
    assert_eq!(claim["spec"]["additionalConfig"]["maxSize"], "100G");
    for service in ["poc", "dojo", "media"] {
        let pod = &workload(&objects, service)["spec"]["template"]["spec"];
        let files = pod["volumes"][2]["projected"]["sources"].to_string();
        assert_eq!(
            files.contains("media-bucket"),
            service == "media",
            "{service}: {files}"
        );
        let env = pod["containers"][0]["env"].as_array().expect("env").clone();
        let named = |name: &str| env.iter().find(|e| e["name"] == name).cloned();
        assert!(
            named("MRBILL_MEDIA_DIR").is_none(),
            "{service}: artifacts never in a pod"
        );
        if service == "media" {
            assert_eq!(
                named("MRBILL_MEDIA_S3_BUCKET").expect("bucket")["valueFrom"]["configMapKeyRef"],
                json!({ "name": "media-bucket", "key": "BUCKET_NAME" })
            );
            assert_eq!(
                named("MRBILL_MEDIA_S3_ENDPOINT").expect("endpoint")["value"],
                "http://$(BUCKET_HOST):$(BUCKET_PORT)"
            );
            // The variables the endpoint expands come before it (the kubelet's rule).
            let at = |name: &str| env.iter().position(|e| e["name"] == name).expect(name);
            assert!(at("BUCKET_HOST") < at("MRBILL_MEDIA_S3_ENDPOINT"));
            assert!(at("BUCKET_PORT") < at("MRBILL_MEDIA_S3_ENDPOINT"));
            assert!(
                named("AWS_SECRET_ACCESS_KEY").is_none(),
                "the key only as a file"
            );
        }
    }
    let egress = find(&objects, "NetworkPolicy", "media-to-object-store");
    assert_eq!(
        egress["spec"]["podSelector"]["matchLabels"]["mrbill.dev/service"],
        "media"
    );
    assert_eq!(
        egress["spec"]["egress"],
        json!([{ "to": [{ "namespaceSelector": { "matchLabels": {
            "kubernetes.io/metadata.name": "rook-ceph" } } }],
            "ports": [{ "protocol": "TCP", "port": 8080 }] }])
    );
    let rds = desired(
        &cell(Tier::Large, DatabaseEngine::Rds, SearchEngine::Embedded),
        &images(),
    );
    assert!(
        rds.iter().all(|o| o["kind"] != "ObjectBucketClaim"
            && o["metadata"]["name"] != "media-to-object-store"),
        "an rds cell's bucket is its foundation's"
    );
}

/// A recovery from a kept archive names the backup by its barman id; one that stands in for a
/// last backup that could not be taken replays the archive to its end instead of stopping at
/// the backup's consistent point.
#[test]
fn a_recovery_from_a_kept_archive_names_its_backup_and_may_replay_to_the_end() {
    let mut restored = cell(
        Tier::Small,
        DatabaseEngine::InCluster,
        SearchEngine::Embedded,
    );
    restored.spec.restore = Some(cell_model::CellRestore {
        id: "0193a5f0-7c1e-7d2a-9b3c-4d5e6f708192".into(),
        backup: "final-1765000000".into(),
        target_time: None,
        deleted: true,
        abort: false,
    });
    let config = serde_json::json!({ "data": { "BUCKET_NAME": "mrbill-c-new-pg",
        "BUCKET_HOST": "rgw.rook-ceph.svc", "BUCKET_PORT": "8080" } });
    let store = cell_operator::render::ObjectStore::default();
    let bootstrap = |replay: bool| {
        let objects = cell_operator::render::from_archive(
            desired(&restored, &images()),
            &config,
            &store,
            ("postgres", "20261206T090000"),
            replay,
        );
        find(&objects, "Cluster", "postgres")["spec"]["bootstrap"].clone()
    };
    assert_eq!(
        bootstrap(false),
        serde_json::json!({ "recovery": { "source": "archive", "recoveryTarget":
            { "targetImmediate": true, "backupID": "20261206T090000" } } })
    );
    assert_eq!(
        bootstrap(true),
        serde_json::json!({ "recovery": { "source": "archive", "recoveryTarget":
            { "backupID": "20261206T090000" } } })
    );
}
