//! The operator chart's ValidatingAdmissionPolicy: the cluster-wide role the operator needs
//! (cell namespaces come and go) is confined by admission to cell namespaces. Evaluated here
//! as the API server would, with a CEL interpreter (crates.io `cel`), on the chart's rendered
//! expressions. `./x test` installs helm; `MRBILL_HELM` points at it.

mod helm;

use std::collections::BTreeSet;

use helm::{find, template};
use serde_json::Value;

/// One admission request as a ValidatingAdmissionPolicy sees it, as CEL variables.
fn admission(
    user: &str,
    op: &str,
    resource: &str,
    namespace: Option<Value>,
    object: Value,
) -> Vec<(&'static str, Value)> {
    let name = object["metadata"]["name"].clone();
    let ns = namespace
        .as_ref()
        .map_or(Value::from(""), |n| n["metadata"]["name"].clone());
    let (object, old) = match op {
        "CREATE" => (object, Value::Null),
        "DELETE" => (Value::Null, object),
        _ => (object.clone(), object),
    };
    vec![
        (
            "request",
            serde_json::json!({ "operation": op, "userInfo": { "username": user },
                                "resource": { "resource": resource },
                                "namespace": ns, "name": name }),
        ),
        ("object", object),
        ("oldObject", old),
        ("namespaceObject", namespace.unwrap_or(Value::Null)),
    ]
}

/// Whether the policy lets `request` through: its match conditions select it and every
/// validation holds (or the policy does not apply to it).
fn admitted(policy: &Value, request: &[(&str, Value)]) -> bool {
    let mut context = cel::Context::default();
    for (name, value) in request {
        context
            .add_variable(*name, value.clone())
            .expect("variable");
    }
    let holds = |expression: &Value| {
        let source = expression["expression"].as_str().expect("expression");
        let program = cel::Program::compile(source).expect("the expression compiles");
        match program.execute(&context) {
            Ok(cel::Value::Bool(b)) => b,
            other => panic!("{source}: {other:?}"),
        }
    };
    let spec = &policy["spec"];
    let applies = spec["matchConditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .all(holds);
    !applies
        || spec["validations"]
            .as_array()
            .expect("validations")
            .iter()
            .all(holds)
}

/// Scope, not only kinds: every kind the operator may write is under the admission policy,
/// and the policy, evaluated as the API server would (CEL), lets the operator's service
/// account write only in cell namespaces, only cell namespaces themselves, and only volumes
/// of cell claims — and leaves everyone else alone.
#[test]
fn the_operators_writes_are_confined_to_cell_namespaces() {
    let (_, objects) = template("cell-operator", &[]);
    let policy = find(&objects, "ValidatingAdmissionPolicy")[0];
    let binding = find(&objects, "ValidatingAdmissionPolicyBinding")[0];
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(
        binding["spec"]["validationActions"],
        serde_json::json!(["Deny"])
    );
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    let mut confined: BTreeSet<(String, String)> = BTreeSet::new();
    for rule in policy["spec"]["matchConstraints"]["resourceRules"]
        .as_array()
        .expect("rules")
    {
        let ops = rule["operations"].as_array().expect("operations");
        assert!(
            ["CREATE", "UPDATE", "DELETE"]
                .iter()
                .all(|o| ops.contains(&Value::from(*o)))
        );
        for group in rule["apiGroups"].as_array().expect("groups") {
            for resource in rule["resources"].as_array().expect("resources") {
                confined.insert((
                    group.as_str().expect("g").into(),
                    resource.as_str().expect("r").into(),
                ));
            }
        }
    }
    let rules = find(&objects, "ClusterRole")
        .iter()
        .flat_map(|role| role["rules"].as_array().expect("rules").clone())
        .collect::<Vec<_>>();
    for rule in &rules {
        let writes =
            rule["verbs"].as_array().expect("verbs").iter().any(|v| {
                ["create", "patch", "update", "delete"].contains(&v.as_str().expect("verb"))
            });
        for group in rule["apiGroups"].as_array().expect("groups") {
            for resource in rule["resources"].as_array().expect("resources") {
                let (g, r) = (group.as_str().expect("g"), resource.as_str().expect("r"));
                // The operator's own resource and its Events are not objects of a cell.
                let own = g == "mrbill.dev" || r == "events";
                assert!(
                    !writes || own || confined.contains(&(g.into(), r.into())),
                    "{g}/{r} is writable but not confined"
                );
            }
        }
    }

    let operator = "system:serviceaccount:mrbill:rel-cell-operator";
    let cell_ns = serde_json::json!({ "metadata": { "name": "cell-acme",
        "labels": { "app.kubernetes.io/managed-by": "cell-operator" } } });
    let foreign = |name: &str| serde_json::json!({ "metadata": { "name": name, "labels": {} } });
    let deployment = serde_json::json!({ "metadata": { "name": "poc-service" } });
    let volume = |ns: &str| serde_json::json!({ "metadata": { "name": "pv-1" }, "spec": { "claimRef": { "namespace": ns } } });
    let binding = |role: &str, account: &str| {
        serde_json::json!({ "metadata": { "name": "cell-operator-secrets" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
            "subjects": [{ "kind": "ServiceAccount", "name": account, "namespace": "mrbill" }] })
    };
    let cases = [
        (
            "a Deployment in a cell namespace",
            operator,
            "CREATE",
            "deployments",
            Some(cell_ns.clone()),
            deployment.clone(),
            true,
        ),
        (
            "a Secret deleted in a cell namespace",
            operator,
            "DELETE",
            "secrets",
            Some(cell_ns.clone()),
            deployment.clone(),
            true,
        ),
        (
            "a Deployment in kube-system",
            operator,
            "CREATE",
            "deployments",
            Some(foreign("kube-system")),
            deployment.clone(),
            false,
        ),
        (
            "a deleted cell's record in the operator's namespace",
            operator,
            "CREATE",
            "secrets",
            Some(foreign("mrbill")),
            serde_json::json!({ "metadata": { "name": "kept-c-acme-1234" } }),
            true,
        ),
        (
            "another Secret in the operator's namespace",
            operator,
            "CREATE",
            "secrets",
            Some(foreign("mrbill")),
            serde_json::json!({ "metadata": { "name": "rel-cell-operator-token" } }),
            false,
        ),
        (
            "a deleted cell's record deleted",
            operator,
            "DELETE",
            "secrets",
            Some(foreign("mrbill")),
            serde_json::json!({ "metadata": { "name": "kept-c-acme-1234" } }),
            false,
        ),
        (
            "a record in another namespace",
            operator,
            "CREATE",
            "secrets",
            Some(foreign("kube-system")),
            serde_json::json!({ "metadata": { "name": "kept-c-acme-1234" } }),
            false,
        ),
        (
            "a Secret deleted in the platform's namespace",
            operator,
            "DELETE",
            "secrets",
            Some(foreign("mrbill")),
            deployment.clone(),
            false,
        ),
        (
            "an unlabelled cell-* namespace",
            operator,
            "UPDATE",
            "configmaps",
            Some(foreign("cell-squat")),
            deployment.clone(),
            false,
        ),
        (
            "a cell namespace",
            operator,
            "CREATE",
            "namespaces",
            None,
            cell_ns.clone(),
            true,
        ),
        (
            "a cell namespace deleted",
            operator,
            "DELETE",
            "namespaces",
            None,
            cell_ns.clone(),
            true,
        ),
        (
            "kube-system relabelled",
            operator,
            "UPDATE",
            "namespaces",
            None,
            foreign("kube-system"),
            false,
        ),
        (
            "another namespace deleted",
            operator,
            "DELETE",
            "namespaces",
            None,
            foreign("monitoring"),
            false,
        ),
        (
            "a cell claim's volume retained",
            operator,
            "UPDATE",
            "persistentvolumes",
            None,
            volume("cell-acme"),
            true,
        ),
        (
            "another claim's volume",
            operator,
            "UPDATE",
            "persistentvolumes",
            None,
            volume("monitoring"),
            false,
        ),
        (
            "its Secret access in a cell namespace",
            operator,
            "CREATE",
            "rolebindings",
            Some(cell_ns.clone()),
            binding("rel-cell-operator-cell-secrets", "rel-cell-operator"),
            true,
        ),
        (
            "its Secret access in the platform's namespace",
            operator,
            "CREATE",
            "rolebindings",
            Some(foreign("mrbill")),
            binding("rel-cell-operator-cell-secrets", "rel-cell-operator"),
            false,
        ),
        (
            "cluster-admin bound in a cell namespace",
            operator,
            "CREATE",
            "rolebindings",
            Some(cell_ns.clone()),
            binding("cluster-admin", "rel-cell-operator"),
            false,
        ),
        (
            "its Secret access handed to another account",
            operator,
            "UPDATE",
            "rolebindings",
            Some(cell_ns.clone()),
            binding("rel-cell-operator-cell-secrets", "intruder"),
            false,
        ),
        (
            "its Secret access removed",
            operator,
            "DELETE",
            "rolebindings",
            Some(cell_ns.clone()),
            binding("rel-cell-operator-cell-secrets", "rel-cell-operator"),
            true,
        ),
        (
            "anyone else in kube-system",
            "system:serviceaccount:kube-system:deployer",
            "CREATE",
            "deployments",
            Some(foreign("kube-system")),
            deployment.clone(),
            true,
        ),
    ];
    for (what, user, op, resource, namespace, object, allowed) in cases {
        let request = admission(user, op, resource, namespace, object);
        assert_eq!(admitted(policy, &request), allowed, "{what}");
    }
}

/// With `controlPlane.serviceAccount` set, the operator may also bind the cell-identity role
/// (a moving cell's identity Secrets by name) in cell namespaces — to that account only; without
/// it, never.
#[test]
fn the_control_planes_identity_access_is_bound_only_to_it_and_only_when_asked() {
    let operator = "system:serviceaccount:mrbill:rel-cell-operator";
    let cell_ns = serde_json::json!({ "metadata": { "name": "cell-acme",
        "labels": { "app.kubernetes.io/managed-by": "cell-operator" } } });
    let binding = |role: &str, ns: &str, account: &str| {
        serde_json::json!({ "metadata": { "name": "control-plane-identity" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
            "subjects": [{ "kind": "ServiceAccount", "name": account, "namespace": ns }] })
    };
    let identity = "rel-cell-operator-cell-identity";
    let policy_of = |set: &[&str]| {
        let (_, objects) = template("cell-operator", set);
        find(&objects, "ValidatingAdmissionPolicy")[0].clone()
    };
    let off = policy_of(&[]);
    let on = policy_of(&["controlPlane.serviceAccount=platform/rel-mrbill-control-plane"]);
    let create = |object: Value| {
        admission(
            operator,
            "CREATE",
            "rolebindings",
            Some(cell_ns.clone()),
            object,
        )
    };
    let to_control_plane = binding(identity, "platform", "rel-mrbill-control-plane");
    assert!(
        !admitted(&off, &create(to_control_plane.clone())),
        "not asked for"
    );
    assert!(admitted(&on, &create(to_control_plane)));
    assert!(!admitted(
        &on,
        &create(binding(identity, "platform", "intruder"))
    ));
    assert!(!admitted(
        &on,
        &create(binding(identity, "other", "rel-mrbill-control-plane"))
    ));
    assert!(
        !admitted(
            &on,
            &create(binding(
                "rel-cell-operator-cell-secrets",
                "platform",
                "rel-mrbill-control-plane"
            ))
        ),
        "the operator's own Secret access stays its own"
    );
    assert!(admitted(
        &on,
        &create(binding(
            "rel-cell-operator-cell-secrets",
            "mrbill",
            "rel-cell-operator"
        ))
    ));
}
