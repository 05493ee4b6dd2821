//! A cell's delete, failures and pause; what it is given from outside its namespace.

use super::*;

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
        marks: s.marks.clone(),
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
