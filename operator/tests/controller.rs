//! Scenario tests of the controller against `kube_fake::FakeApi`, an in-memory API server (no
//! Kubernetes cluster can run on the test machines): create, readiness, idempotency, scale,
//! suspend, switching search engines, delete, API errors and pause.

mod fixtures;
use std::sync::Arc;
use std::time::Duration;

use cell_model::{ConditionStatus, Phase, SearchEngine};
use cell_operator::controller::{
    Context, FINALIZER, PAUSED_ANNOTATION, error_policy, reconcile, retry_delay,
};
use cell_operator::render::{Images, desired};
use http::Method;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use fixtures::scenario::*;

fn path_of(object: &Value) -> String {
    let kind = object["kind"].as_str().expect("kind");
    let (_, _, plural, namespaced) = cell_operator::apply::KINDS
        .iter()
        .find(|k| k.1 == kind)
        .expect("a managed kind");
    let api_version = object["apiVersion"].as_str().expect("apiVersion");
    let prefix = if api_version.contains('/') {
        format!("apis/{api_version}")
    } else {
        format!("api/{api_version}")
    };
    let name = object["metadata"]["name"].as_str().expect("name");
    if *namespaced {
        format!("{prefix}/namespaces/{NS}/{plural}/{name}")
    } else {
        format!("{prefix}/{plural}/{name}")
    }
}

#[tokio::test]
async fn create_applies_every_child_owned_by_the_cell_then_reports_ready() {
    let s = Scenario::new(SearchEngine::Meilisearch);
    let action = s.reconcile().await.expect("first reconcile");
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(10)),
        "not ready yet: look again soon"
    );

    let cell = s.cell().expect("cell");
    assert!(
        cell.metadata
            .finalizers
            .as_ref()
            .expect("finalizers")
            .contains(&FINALIZER.to_owned())
    );
    let uid = cell.metadata.uid.clone().expect("uid");

    // Every rendered object exists, controlled by the Cell, written by server-side apply under
    // the operator's field manager.
    let log = s.api.log();
    for object in desired(&cell, &fixtures::images()) {
        let path = path_of(&object);
        let stored = s
            .api
            .snapshot()
            .get(&path)
            .cloned()
            .unwrap_or_else(|| panic!("{path} applied"));
        let owner = &stored["metadata"]["ownerReferences"][0];
        assert_eq!(
            (
                owner["kind"].as_str(),
                owner["uid"].as_str(),
                owner["controller"].as_bool()
            ),
            (Some("Cell"), Some(uid.as_str()), Some(true)),
            "{path}"
        );
        let write = log
            .iter()
            .find(|l| l.method == Method::PATCH && l.path == format!("/{path}"))
            .unwrap_or_else(|| panic!("{path} patched"));
        assert!(
            write.content_type.starts_with("application/apply-patch"),
            "{path}: {}",
            write.content_type
        );
        assert!(
            write.query.contains("fieldManager=cell-operator")
                && write.query.contains("force=true"),
            "{}",
            write.query
        );
    }
    // The namespace is applied before anything that lives in it.
    let first_patch = log
        .iter()
        .find(|l| l.method == Method::PATCH && !l.path.contains("/cells/"))
        .expect("a patch");
    assert_eq!(first_patch.path, format!("/api/v1/namespaces/{NS}"));

    // Secrets are created (POST), never applied, owned by the Cell too.
    let secrets = s.api.objects(&format!("api/v1/namespaces/{NS}/secrets"));
    let names: Vec<&str> = secrets
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names.len(),
        cell_operator::secrets::names(&cell).len(),
        "{names:?}"
    );
    assert!(
        log.iter()
            .all(|l| !(l.method == Method::PATCH && l.path.contains("/secrets/")))
    );
    assert!(
        secrets
            .iter()
            .all(|o| o["metadata"]["ownerReferences"][0]["uid"] == uid.as_str())
    );

    // Status: provisioning, with the reasons.
    assert_eq!(s.phase(), Phase::Provisioning);
    assert_eq!(
        s.condition("DatabaseReady"),
        (ConditionStatus::False, "PostgresStarting".into())
    );
    assert_eq!(
        s.condition("SearchReady"),
        (ConditionStatus::False, "MeilisearchStarting".into())
    );
    assert_eq!(
        s.condition("ServicesReady"),
        (ConditionStatus::False, "Starting".into())
    );
    assert_eq!(
        s.condition("Ready"),
        (ConditionStatus::False, "Provisioning".into())
    );
    let status_write = log
        .iter()
        .find(|l| l.path.ends_with("/status"))
        .expect("status written");
    assert!(
        status_write
            .content_type
            .starts_with("application/apply-patch")
    );
    assert!(s.events().contains(&"SecretsGenerated".to_owned()));

    // CNPG's primary is up, its Databases not yet made: still not ready, and why.
    s.postgres_instance_ready();
    s.reconcile().await.expect("reconcile");
    assert_eq!(
        s.condition("DatabaseReady"),
        (ConditionStatus::False, "DatabasesPending".into())
    );
    s.become_ready();
    let action = s.reconcile().await.expect("second reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    assert_eq!(s.phase(), Phase::Ready);
    for c in ["DatabaseReady", "SearchReady", "ServicesReady", "Ready"] {
        assert_eq!(s.condition(c).0, ConditionStatus::True, "{c}");
    }
    let status = s.cell().and_then(|c| c.status).expect("status");
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        status.endpoints.services["poc"],
        "http://poc-service.cell-acme.svc:8080"
    );
    assert!(
        status.endpoints.replicas.is_empty(),
        "one dojo pod: the Service is enough"
    );
    assert!(s.events().contains(&"CellReady".to_owned()));

    // Two of three dojo pods ready, the middle one crashed: the route names each ready one
    // (routers pin a dojo's sockets to one), not the crashed one.
    let sets = format!("apis/apps/v1/namespaces/{NS}/statefulsets");
    s.api.update(&sets, "dojo-service", |o| {
        o["status"] = json!({ "readyReplicas": 2, "replicas": 3 })
    });
    let pods = format!("api/v1/namespaces/{NS}/pods");
    let pod = |name: &str, service: &str, cell: &str, ready: bool| {
        json!({ "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "namespace": NS,
                "labels": { "mrbill.dev/service": service, "mrbill.dev/cell": cell } },
            "status": { "conditions": [
                { "type": "Ready", "status": if ready { "True" } else { "False" } } ] } })
    };
    for (name, service, cell, ready) in [
        ("dojo-service-0", "dojo", "c-acme-1234", true),
        ("dojo-service-1", "dojo", "c-acme-1234", false),
        ("dojo-service-2", "dojo", "c-acme-1234", true),
        ("poc-service-7", "poc", "c-acme-1234", true),
        ("dojo-service-3", "dojo", "c-other-1", true),
    ] {
        s.api.insert(&pods, pod(name, service, cell, ready));
    }
    s.reconcile().await.expect("reconcile");
    let status = s.cell().and_then(|c| c.status).expect("status");
    assert_eq!(
        status.endpoints.replicas["dojo"],
        [
            "http://dojo-service-0.dojo-service-pods.cell-acme.svc:8080",
            "http://dojo-service-2.dojo-service-pods.cell-acme.svc:8080",
        ],
        "the ready pods"
    );
}

#[tokio::test]
async fn reconciling_again_changes_nothing_and_never_rotates_a_secret() {
    let s = Scenario::new(SearchEngine::Meilisearch);
    s.reconcile().await.expect("create");
    s.become_ready();
    s.reconcile().await.expect("ready");
    let before = s.children();
    let cell_before = s.api.get(CELLS, NAME).expect("cell");
    s.api.clear_log();
    s.reconcile().await.expect("again");
    let after = s.children();
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (path, object) in &before {
        let mut a = after[path].clone();
        let mut b = object.clone();
        a["metadata"]["resourceVersion"] = json!(null);
        b["metadata"]["resourceVersion"] = json!(null);
        assert_eq!(a, b, "{path} changed on a no-op reconcile");
    }
    let log = s.api.log();
    assert!(
        log.iter()
            .all(|l| l.method != Method::POST || l.path.contains("/events")),
        "nothing created twice"
    );
    assert!(
        !log.iter().any(|l| l.path.ends_with("/status")),
        "an unchanged status is not rewritten"
    );
    assert_eq!(
        s.api.get(CELLS, NAME).expect("cell")["status"],
        cell_before["status"]
    );

    // A Secret deleted by hand comes back with fresh values; the others stay untouched.
    let secrets = format!("api/v1/namespaces/{NS}/secrets");
    let jwt = s.api.get(&secrets, "cell-jwt").expect("jwt");
    let token_before = s.api.get(&secrets, "cell-service-token").expect("token");
    s.api.delete(&secrets, "cell-service-token");
    s.reconcile().await.expect("repair");
    assert_eq!(
        s.api.get(&secrets, "cell-jwt").expect("jwt"),
        jwt,
        "the key pair is never regenerated"
    );
    let token_after = s
        .api
        .get(&secrets, "cell-service-token")
        .expect("recreated");
    assert_ne!(
        token_after["stringData"]["token"],
        token_before["stringData"]["token"]
    );
}

#[tokio::test]
async fn scaling_a_service_changes_only_its_autoscaler() {
    let s = Scenario::new(SearchEngine::Meilisearch);
    s.reconcile().await.expect("create");
    s.become_ready();
    s.reconcile().await.expect("ready");
    let before = s.children();
    s.edit(|cell| cell["spec"]["replicas"]["poc"] = json!(4));
    s.reconcile().await.expect("scale");
    let after = s.children();
    let changed: Vec<&String> = after
        .iter()
        .filter(|(path, object)| {
            let mut a = (*object).clone();
            let mut b = before.get(*path).cloned().unwrap_or_default();
            a["metadata"]["resourceVersion"] = json!(null);
            b["metadata"]["resourceVersion"] = json!(null);
            a != b
        })
        .map(|(path, _)| path)
        .collect();
    let hpa = format!("apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/poc-service");
    assert_eq!(changed, [&hpa]);
    assert_eq!(after[&hpa]["spec"]["minReplicas"], 4);
    let deployment = &after[&format!("apis/apps/v1/namespaces/{NS}/deployments/poc-service")];
    assert!(
        deployment["spec"]["replicas"].is_null(),
        "the autoscaler owns replicas"
    );
    assert_eq!(
        s.cell()
            .and_then(|c| c.status)
            .and_then(|s| s.observed_generation),
        Some(2)
    );
}

#[tokio::test]
async fn suspending_scales_to_zero_and_resuming_brings_the_autoscalers_back() {
    let s = Scenario::new(SearchEngine::Embedded);
    s.reconcile().await.expect("create");
    s.become_ready();
    s.reconcile().await.expect("ready");
    let hpas = format!("apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers");
    assert_eq!(s.api.objects(&hpas).len(), 3);

    s.edit(|cell| cell["spec"]["suspended"] = json!(true));
    s.reconcile().await.expect("suspend");
    assert!(s.api.objects(&hpas).is_empty(), "autoscalers pruned");
    for d in s
        .api
        .objects(&format!("apis/apps/v1/namespaces/{NS}/deployments"))
    {
        assert_eq!(d["spec"]["replicas"], 0);
    }
    let dojo = s
        .api
        .get(
            &format!("apis/apps/v1/namespaces/{NS}/statefulsets"),
            "dojo-service",
        )
        .expect("dojo's StatefulSet");
    assert_eq!(dojo["spec"]["replicas"], 0);
    assert_eq!(s.phase(), Phase::Suspended);
    assert_eq!(
        s.condition("Ready"),
        (ConditionStatus::False, "Suspended".into())
    );
    assert!(s.events().contains(&"CellSuspended".to_owned()));
    // Data stays.
    assert!(s.api.get(&cnpg("clusters"), "postgres").is_some());

    s.edit(|cell| cell["spec"]["suspended"] = json!(false));
    s.reconcile().await.expect("resume");
    assert_eq!(s.api.objects(&hpas).len(), 3);
    assert_eq!(
        s.phase(),
        Phase::Ready,
        "pods still report ready in the fake"
    );
}

/// A cell still on the Postgres StatefulSet from before CloudNativePG is left alone (pruning
/// it and starting an empty Cluster would lose the service of its data), and says why.
#[tokio::test]
async fn a_cell_on_the_old_postgres_statefulset_is_left_untouched() {
    let s = Scenario::new(SearchEngine::Embedded);
    let sts = format!("apis/apps/v1/namespaces/{NS}/statefulsets");
    s.api.insert(
        &sts,
        json!({ "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": { "name": "postgres", "namespace": NS,
                "labels": { "mrbill.dev/cell": NAME, "app.kubernetes.io/managed-by": "cell-operator" } },
            "spec": { "replicas": 1 } }),
    );
    s.reconcile().await.expect("reconcile");
    assert_eq!(
        s.condition("Reconciled"),
        (ConditionStatus::False, "LegacyPostgres".into())
    );
    assert!(s.api.get(&sts, "postgres").is_some(), "not pruned");
    assert!(
        s.api.get(&cnpg("clusters"), "postgres").is_none(),
        "no empty Cluster"
    );
    assert!(s.events().contains(&"LegacyPostgres".to_owned()));
}

/// What CNPG makes for the cell's Cluster carries the Cluster's inherited labels; the
/// operator's pruning must never take those for stale objects of its own.
#[tokio::test]
async fn cnpgs_own_objects_survive_pruning() {
    let s = Scenario::new(SearchEngine::Embedded);
    s.reconcile().await.expect("create");
    let cluster = s.api.get(&cnpg("clusters"), "postgres").expect("a Cluster");
    let inherited = cluster["spec"]["inheritedMetadata"]["labels"].clone();
    assert!(
        inherited.get("app.kubernetes.io/managed-by").is_none(),
        "{inherited}"
    );
    let services = format!("api/v1/namespaces/{NS}/services");
    for name in ["postgres-rw", "postgres-ro", "postgres-r"] {
        s.api.insert(
            &services,
            json!({ "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": name, "namespace": NS, "labels": inherited },
                "spec": { "ports": [{ "port": 5432 }] } }),
        );
    }
    s.become_ready();
    s.reconcile().await.expect("again");
    for name in ["postgres-rw", "postgres-ro", "postgres-r"] {
        assert!(s.api.get(&services, name).is_some(), "{name} was pruned");
    }
}

#[tokio::test]
async fn switching_to_the_embedded_engine_prunes_meilisearch_but_keeps_everything_else() {
    let s = Scenario::new(SearchEngine::Meilisearch);
    s.reconcile().await.expect("create");
    let sts = format!("apis/apps/v1/namespaces/{NS}/statefulsets");
    assert!(s.api.get(&sts, "meilisearch").is_some());
    let before: Vec<String> = s.children().into_keys().collect();
    s.edit(|cell| cell["spec"]["search"] = json!("embedded"));
    s.reconcile().await.expect("switch");
    let after: Vec<String> = s.children().into_keys().collect();
    let gone: Vec<&String> = before.iter().filter(|p| !after.contains(p)).collect();
    assert_eq!(
        gone,
        [
            &format!("api/v1/namespaces/{NS}/services/meilisearch"),
            &format!("apis/apps/v1/namespaces/{NS}/statefulsets/meilisearch"),
            &format!(
                "apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/meilisearch-from-poc"
            ),
            &format!(
                "apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/poc-to-meilisearch"
            ),
        ]
    );
    // The master key Secret is not deleted (Secrets are never pruned).
    assert!(
        s.api
            .get(&format!("api/v1/namespaces/{NS}/secrets"), "meilisearch")
            .is_some()
    );
}

#[tokio::test]
async fn delete_waits_for_the_namespace_then_releases_the_finalizer() {
    let s = Scenario::new(SearchEngine::Embedded);
    s.reconcile().await.expect("create");
    // The claim of CNPG's first instance (labelled from the Cluster's inheritedMetadata),
    // bound to a volume that would be deleted with it.
    let pvcs = format!("api/v1/namespaces/{NS}/persistentvolumeclaims");
    s.api.insert(
        &pvcs,
        json!({ "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": { "name": "postgres-1", "namespace": NS,
                "labels": { "mrbill.dev/cell": NAME, "mrbill.dev/service": "postgres" } },
            "spec": { "volumeName": "pv-123" } }),
    );
    s.api.insert(
        "api/v1/persistentvolumes",
        json!({ "apiVersion": "v1", "kind": "PersistentVolume", "metadata": { "name": "pv-123" },
            "spec": { "persistentVolumeReclaimPolicy": "Delete" } }),
    );
    s.api.delete(CELLS, NAME);
    let cell = s.cell().expect("held by the finalizer");
    assert!(cell.metadata.deletion_timestamp.is_some());

    // First pass: namespace deletion requested; it is still terminating, so the finalizer stays.
    let action = s.reconcile().await.expect("cleanup");
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    assert_eq!(s.phase(), Phase::Deleting);
    assert!(s.cell().is_some());
    assert!(
        s.api
            .log()
            .iter()
            .any(|l| l.method == Method::DELETE && l.path == format!("/api/v1/namespaces/{NS}"))
    );
    assert!(s.events().contains(&"Deleting".to_owned()));

    // While it terminates the finalizer holds the Cell; once it is gone, the finalizer goes
    // and the Cell with it.
    let mut passes = 1;
    while s.cell().is_some() && passes < 5 {
        let cell = s.cell().expect("cell");
        assert!(
            cell.metadata
                .finalizers
                .expect("held")
                .contains(&FINALIZER.to_owned())
        );
        s.reconcile().await.expect("cleanup");
        passes += 1;
    }
    assert!(s.cell().is_none(), "the Cell is gone");
    // The data outlives the cell: the volume was switched to Retain, labelled, before the
    // namespace deletion was asked for.
    let pv = s
        .api
        .get("api/v1/persistentvolumes", "pv-123")
        .expect("the volume stays");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(pv["metadata"]["labels"]["mrbill.dev/cell"], NAME);
    assert_eq!(
        pv["metadata"]["labels"]["mrbill.dev/retained-from"],
        "postgres-1"
    );
    let log = s.api.log();
    let retained = log
        .iter()
        .position(|l| l.method == Method::PATCH && l.path.ends_with("/persistentvolumes/pv-123"));
    let deleted = log
        .iter()
        .position(|l| l.method == Method::DELETE && l.path == format!("/api/v1/namespaces/{NS}"));
    assert!(
        retained.expect("retained") < deleted.expect("deleted"),
        "retain first"
    );
    assert!(
        s.children().keys().all(|k| !k.contains(NS)),
        "{:?}",
        s.children().keys()
    );
}

#[tokio::test]
async fn an_api_error_becomes_a_failure_condition_an_event_and_a_backed_off_retry() {
    service_kit::telemetry::metrics_handle(); // the recorder the binary installs at start
    let s = Scenario::new(SearchEngine::Embedded);
    s.api.fail(Method::PATCH, "/deployments/", 403, "Forbidden");
    let cell = Arc::new(s.cell().expect("cell"));
    let err = reconcile(cell.clone(), s.ctx.clone())
        .await
        .expect_err("the apply is refused");
    assert_eq!(err.reason(), "Forbidden");
    assert!(
        err.to_string().contains("applying Deployment cell-acme/"),
        "{err}"
    );
    assert_eq!(
        s.condition("Reconciled"),
        (ConditionStatus::False, "Forbidden".into())
    );
    assert_eq!(
        s.condition("Ready"),
        (ConditionStatus::False, "ReconcileFailed".into())
    );
    assert!(s.events().contains(&"ReconcileFailed".to_owned()));
    // Backoff grows per consecutive failure and is bounded.
    assert_eq!(
        error_policy(cell.clone(), &err, s.ctx.clone()),
        Action::requeue(retry_delay(1))
    );
    assert_eq!(
        error_policy(cell.clone(), &err, s.ctx.clone()),
        Action::requeue(retry_delay(2))
    );
    assert!(retry_delay(2) > retry_delay(1));
    assert_eq!(retry_delay(40), Duration::from_secs(300));
    let metrics = service_kit::telemetry::metrics_handle().render();
    assert!(
        metrics.contains("cell_operator_reconcile_failures_total{reason=\"Forbidden\"}"),
        "{metrics}"
    );

    // Once the API accepts the writes, the cell converges and the failure clears.
    s.api.clear_faults();
    s.reconcile().await.expect("recovered");
    assert_eq!(
        s.condition("Reconciled"),
        (ConditionStatus::True, "Applied".into())
    );
    assert_eq!(
        error_policy(cell, &err, s.ctx.clone()),
        Action::requeue(retry_delay(1)),
        "the backoff restarts"
    );
    let metrics = service_kit::telemetry::metrics_handle().render();
    assert!(
        metrics.contains("cell_operator_reconciles_total{result=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cell_operator_reconcile_duration_seconds"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_paused_cell_gets_no_writes_at_all() {
    let s = Scenario::new(SearchEngine::Embedded);
    s.api.update(CELLS, NAME, |c| {
        c["metadata"]["annotations"] = json!({ PAUSED_ANNOTATION: "true" })
    });
    s.api.clear_log();
    let action = s.reconcile().await.expect("paused");
    assert_eq!(action, Action::await_change());
    assert!(
        s.api.log().iter().all(|l| !l.is_write()),
        "{:?}",
        s.api.log()
    );
    assert!(s.children().is_empty());
    // Also while being deleted: the finalizer stays until the pause is lifted.
    s.api.update(CELLS, NAME, |c| {
        c["metadata"]["finalizers"] = json!([FINALIZER])
    });
    s.api.delete(CELLS, NAME);
    s.reconcile().await.expect("paused");
    assert!(s.api.log().iter().all(|l| !l.is_write()));
    assert!(s.cell().is_some());
}

/// The platform's mail relay reaches each cell as its own `smtp` Secret, created once like
/// every Secret; deleting it (to roll out a new URL) brings it back with the current one.
#[tokio::test]
async fn the_mail_relay_is_copied_into_the_cell_once() {
    let relay = |url: &str| Images {
        mail: Some(cell_operator::render::Mail {
            smtp_url: secrecy::SecretString::from(url.to_owned()),
            from: None,
        }),
        ..fixtures::images()
    };
    let s = Scenario::with_images(
        SearchEngine::Embedded,
        relay("smtps://a:one@smtp.example.com"),
    );
    s.reconcile().await.expect("create");
    let secrets = format!("api/v1/namespaces/{NS}/secrets");
    let smtp = s.api.get(&secrets, "smtp").expect("the smtp Secret");
    assert_eq!(smtp["stringData"]["url"], "smtps://a:one@smtp.example.com");
    s.reconcile().await.expect("again");
    assert_eq!(
        s.api.get(&secrets, "smtp").expect("kept"),
        smtp,
        "never rewritten"
    );
    s.api.delete(&secrets, "smtp");
    // The operator restarted with a new relay.
    let ctx = Context::new(
        s.api.client(),
        relay("smtps://a:two@smtp.example.com"),
        None,
        Some("test".into()),
    );
    let later = Scenario {
        api: s.api.clone(),
        ctx,
    };
    later.reconcile().await.expect("repair");
    let url = &later.api.get(&secrets, "smtp").expect("recreated")["stringData"]["url"];
    assert_eq!(url, "smtps://a:two@smtp.example.com");
}

/// With the chart's settings the operator reaches Secrets only through a RoleBinding it makes
/// in the cell's namespace: made right after the namespace and before any Secret is read or
/// written (on a cluster, RBAC refuses those calls until it exists), binding exactly the
/// cell-secrets role to the operator itself. Without the settings there is none.
#[tokio::test]
async fn secrets_are_reached_through_a_binding_made_before_them() {
    let access = cell_operator::render::SecretsAccess {
        cluster_role: "rel-cell-operator-cell-secrets".into(),
        service_account: "rel-cell-operator".into(),
        namespace: "mrbill".into(),
    };
    let s = Scenario::with_images(
        SearchEngine::Embedded,
        Images {
            secrets_access: Some(access),
            cnpg_namespace: "cnpg-system".into(),
            identity_access: None,
            ..fixtures::images()
        },
    );
    s.api.clear_log();
    s.reconcile().await.expect("reconcile");
    let log = s.api.log();
    let bindings = format!("apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings");
    let binding_written = log
        .iter()
        .position(|l| l.is_write() && l.path.starts_with(&format!("/{bindings}")))
        .expect("the binding is written");
    let first_secret_call = log
        .iter()
        .position(|l| l.path.contains("/secrets"))
        .expect("Secrets are made");
    assert!(
        binding_written < first_secret_call,
        "the binding comes first: {:?}",
        log.iter().map(|l| (&l.method, &l.path)).collect::<Vec<_>>()
    );
    let binding = s
        .api
        .get(&bindings, "cell-operator-secrets")
        .expect("the binding");
    assert_eq!(
        binding["roleRef"],
        json!({ "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                "name": "rel-cell-operator-cell-secrets" })
    );
    assert_eq!(
        binding["subjects"],
        json!([{ "kind": "ServiceAccount", "name": "rel-cell-operator", "namespace": "mrbill" }])
    );

    let bare = Scenario::new(SearchEngine::Embedded);
    bare.reconcile().await.expect("reconcile");
    assert!(
        bare.api.objects(&bindings).is_empty(),
        "no settings, no binding"
    );
}
