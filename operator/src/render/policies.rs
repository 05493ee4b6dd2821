//! The cell's fences: quota and limits from the tier, and network policies (default deny, then
//! each path a service needs).

use cell_model::{Cell, DatabaseEngine, SearchEngine, Tier};
use serde_json::{Value, json};

use super::*;

/// What the cell's in-cluster Postgres instances take together (limits): `(pods, cpu,
/// memory GiB, storage GiB)`; nothing for an RDS cell.
fn postgres_share(cell: &Cell) -> (u32, u32, u32, u32) {
    if cell.spec.database.engine != DatabaseEngine::InCluster {
        return (0, 0, 0, 0);
    }
    let n = postgres_instances(cell);
    let class = cell_db_class(cell);
    (
        n,
        n * class.cpu,
        n * class.memory_gib,
        n * cell.spec.database.storage_gib,
    )
}

/// The services' share by tier plus the database's by class and storage (search's volume
/// and headroom: 20 GiB).
pub(super) fn resource_quota(cell: &Cell) -> Value {
    let (pods, cpu, memory) = match cell.spec.tier {
        Tier::Small => (20, 4, 8),
        Tier::Standard => (50, 16, 32),
        Tier::Large => (120, 48, 96),
    };
    let (pg_pods, pg_cpu, pg_memory, pg_storage) = postgres_share(cell);
    let storage = match cell.spec.database.engine {
        DatabaseEngine::InCluster => pg_storage,
        _ => cell.spec.database.storage_gib,
    };
    json!({
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": meta(cell, "cell"),
        "spec": { "hard": {
            "pods": (pods + pg_pods).to_string(),
            "limits.cpu": (cpu + pg_cpu).to_string(),
            "limits.memory": format!("{}Gi", memory + pg_memory),
            "requests.storage": format!("{}Gi", storage + 20),
            "services.loadbalancers": "0",
            "services.nodeports": "0",
        }},
    })
}

/// Defaults for containers that set nothing; the largest container is the database's class
/// (at least 4 CPUs and 4 GiB).
pub(super) fn limit_range(cell: &Cell) -> Value {
    let (cpu, memory) = match cell.spec.database.engine {
        DatabaseEngine::InCluster => {
            let class = cell_db_class(cell);
            (class.cpu.max(4), class.memory_gib.max(4))
        }
        _ => (4, 4),
    };
    json!({
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": meta(cell, "cell"),
        "spec": { "limits": [{
            "type": "Container",
            "default": { "cpu": "500m", "memory": "256Mi" },
            "defaultRequest": { "cpu": "50m", "memory": "64Mi" },
            "max": { "cpu": cpu.to_string(), "memory": format!("{memory}Gi") },
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
            ("postgres-from-services", postgres_pods()),
            POSTGRES_PORT,
        ));
        out.extend(postgres_policies(cell, images));
        out.push(super::bucket::egress(cell, &images.object_store));
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
