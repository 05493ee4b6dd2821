//! The cell's fences: quota and limits from the tier, and network policies (default deny, then
//! each path a service needs).

use cell_model::{Cell, DatabaseEngine, SearchEngine, Tier};
use serde_json::{Value, json};

use super::*;

pub(super) fn resource_quota(cell: &Cell) -> Value {
    let (pods, cpu, memory) = match cell.spec.tier {
        Tier::Small => (20, "4", "8Gi"),
        Tier::Standard => (50, "16", "32Gi"),
        Tier::Large => (120, "48", "96Gi"),
    };
    json!({
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": meta(cell, "cell"),
        "spec": { "hard": {
            "pods": pods.to_string(),
            "limits.cpu": cpu,
            "limits.memory": memory,
            "requests.storage": format!("{}Gi", cell.spec.database.storage_gib + 20),
            "services.loadbalancers": "0",
            "services.nodeports": "0",
        }},
    })
}

pub(super) fn limit_range(cell: &Cell) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": meta(cell, "cell"),
        "spec": { "limits": [{
            "type": "Container",
            "default": { "cpu": "500m", "memory": "256Mi" },
            "defaultRequest": { "cpu": "50m", "memory": "64Mi" },
            "max": { "cpu": "4", "memory": "4Gi" },
        }]},
    })
}

pub(super) fn policy(cell: &Cell, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(cell, name),
        "spec": spec,
    })
}

/// Pods of any of `services`.
pub(super) fn services_in(services: &[&str]) -> Value {
    json!({ "matchExpressions": [{ "key": SERVICE_LABEL, "operator": "In", "values": services }] })
}

pub(super) fn service_pods(service: &str) -> Value {
    json!({ "matchLabels": { SERVICE_LABEL: service } })
}

/// `[egress policy of the clients, ingress policy of the server]` for TCP `port`; each side is
/// `(policy name, pod selector)`.
pub(super) fn path(
    cell: &Cell,
    clients: (&str, Value),
    server: (&str, Value),
    port: u16,
) -> [Value; 2] {
    let ports = json!([{ "protocol": "TCP", "port": port }]);
    [
        policy(
            cell,
            clients.0,
            json!({
                "podSelector": clients.1,
                "policyTypes": ["Egress"],
                "egress": [{ "to": [{ "podSelector": server.1 }], "ports": ports }],
            }),
        ),
        policy(
            cell,
            server.0,
            json!({
                "podSelector": server.1,
                "policyTypes": ["Ingress"],
                "ingress": [{ "from": [{ "podSelector": clients.1 }], "ports": ports }],
            }),
        ),
    ]
}

pub(super) fn network_policies(cell: &Cell, images: &Images) -> Vec<Value> {
    let mut out = vec![
        policy(
            cell,
            "default-deny",
            json!({ "podSelector": {}, "policyTypes": ["Ingress", "Egress"] }),
        ),
        policy(
            cell,
            "allow-dns",
            json!({
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{ "ports": [
                    { "protocol": "UDP", "port": 53 }, { "protocol": "TCP", "port": 53 },
                ]}],
            }),
        ),
        policy(
            cell,
            "allow-from-router",
            json!({
                "podSelector": services_in(&services()),
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": [{ "namespaceSelector": { "matchLabels": { ROUTER_NAMESPACE_LABEL: "true" } } }],
                    "ports": [{ "protocol": "TCP", "port": PUBLIC_PORT }],
                }],
            }),
        ),
    ];
    // Traffic inside the cell needs both ends opened: egress from the clients, ingress at the
    // server.
    let [egress, ingress] = path(
        cell,
        ("services-to-internal-poc", services_in(&["dojo", "media"])),
        ("poc-internal-from-services", service_pods("poc")),
        INTERNAL_PORT,
    );
    out.extend([ingress, egress]);
    if cell.spec.database.engine == DatabaseEngine::InCluster {
        out.extend(path(
            cell,
            ("services-to-postgres", services_in(&services())),
            ("postgres-from-services", service_pods("postgres")),
            POSTGRES_PORT,
        ));
    }
    if cell.spec.search == SearchEngine::Meilisearch {
        out.extend(path(
            cell,
            ("poc-to-meilisearch", service_pods("poc")),
            ("meilisearch-from-poc", service_pods("meilisearch")),
            MEILISEARCH_PORT,
        ));
    }
    if cell.spec.database.engine == DatabaseEngine::Rds {
        // RDS in the cell's subnets and AWS APIs (S3, KMS, Secrets Manager) over HTTPS, to the
        // configured networks only; the security groups narrow it further on the AWS side.
        let mut rule = json!({ "ports": [
            { "protocol": "TCP", "port": 443 }, { "protocol": "TCP", "port": POSTGRES_PORT },
        ]});
        if !images.aws_egress.is_empty() {
            rule["to"] = images
                .aws_egress
                .iter()
                .map(|cidr| json!({ "ipBlock": { "cidr": cidr } }))
                .collect();
        }
        out.push(policy(
            cell,
            "services-to-aws",
            json!({
                "podSelector": services_in(&services()),
                "policyTypes": ["Egress"],
                "egress": [rule],
            }),
        ));
    }
    out
}
