//! Desired state: a `Cell` → the Kubernetes objects of its cell, as plain JSON objects ready for
//! server-side apply. Pure (no API calls), so every tier's output is snapshot-tested and
//! validated against the Kubernetes schemas.
//!
//! Rendered so far: the namespace (labelled tenant / cell / tier), network policies (default
//! deny; ingress only from the router's namespace; DNS; services → their database; poc →
//! Meilisearch; media → poc's internal port; egress to HTTPS endpoints when the cell uses
//! AWS), a ResourceQuota and LimitRange from the tier, a ServiceAccount, and per service a
//! Deployment (zone spread, probes, requests/limits, non-root read-only containers), a Service,
//! a PodDisruptionBudget and a HorizontalPodAutoscaler (min/max from the tier and overrides; the
//! Deployment leaves `replicas` to it). Still to come: secrets, the Meilisearch and Postgres
//! StatefulSets.

use cell_model::{Cell, DatabaseEngine, ReplicaBounds, SearchEngine, Tier, TierTemplate};
use serde_json::{Value, json};

/// Labels every object of a cell carries.
pub const TENANT_LABEL: &str = "mrbill.dev/tenant";
pub const CELL_LABEL: &str = "mrbill.dev/cell";
pub const TIER_LABEL: &str = "mrbill.dev/tier";
pub const SERVICE_LABEL: &str = "mrbill.dev/service";
/// The namespace label that marks the router's namespace (the only ingress source).
pub const ROUTER_NAMESPACE_LABEL: &str = "mrbill.dev/router";

/// Container ports of every cell service.
pub const PUBLIC_PORT: u16 = 8080;
pub const INTERNAL_PORT: u16 = 8081;
const POSTGRES_PORT: u16 = 5432;
const MEILISEARCH_PORT: u16 = 7700;

/// Where images come from: `<registry>/<service>-service:<cell version>`.
#[derive(Clone, Debug)]
pub struct Images {
    pub registry: String,
}

/// The namespace of a cell: `cell-<tenant>`.
pub fn namespace(cell: &Cell) -> String {
    format!("cell-{}", cell.spec.tenant)
}

const SERVICES: [&str; 3] = ["poc", "dojo", "media"];

/// CPU/memory per pod of a service in a tier: (request cpu, request memory, limit cpu, limit memory).
fn resources(
    tier: Tier,
    service: &str,
) -> (&'static str, &'static str, &'static str, &'static str) {
    match (tier, service) {
        (Tier::Small, "media") => ("100m", "128Mi", "1", "512Mi"),
        (Tier::Small, _) => ("50m", "64Mi", "500m", "256Mi"),
        (Tier::Standard, "media") => ("250m", "256Mi", "2", "1Gi"),
        (Tier::Standard, _) => ("100m", "128Mi", "1", "512Mi"),
        (Tier::Large, "media") => ("500m", "512Mi", "2", "2Gi"),
        (Tier::Large, _) => ("250m", "256Mi", "2", "1Gi"),
    }
}

fn bounds(template: &TierTemplate, service: &str) -> ReplicaBounds {
    match service {
        "poc" => template.poc,
        "dojo" => template.dojo,
        _ => template.media,
    }
}

/// `(min, max)` replicas: an override pins the minimum (within the tier's bounds), the tier
/// gives the maximum.
pub fn replicas(cell: &Cell, service: &str) -> (u32, u32) {
    let b = bounds(&cell.spec.tier.template(), service);
    let wanted = match service {
        "poc" => cell.spec.replicas.poc,
        "dojo" => cell.spec.replicas.dojo,
        _ => cell.spec.replicas.media,
    };
    let min = wanted.unwrap_or(b.default).clamp(b.min, b.max);
    (min, b.max.max(min))
}

fn labels(cell: &Cell) -> Value {
    json!({
        TENANT_LABEL: cell.spec.tenant,
        CELL_LABEL: cell.spec.cell_id,
        TIER_LABEL: cell.spec.tier.as_str(),
        "app.kubernetes.io/managed-by": "cell-operator",
        "app.kubernetes.io/part-of": "mrbill",
    })
}

fn meta(cell: &Cell, name: &str) -> Value {
    json!({ "name": name, "namespace": namespace(cell), "labels": labels(cell) })
}

fn with_service(mut v: Value, service: &str) -> Value {
    v[SERVICE_LABEL] = json!(service);
    v["app.kubernetes.io/name"] = json!(format!("{service}-service"));
    v
}

/// Every object of the cell, in apply order (namespace first).
pub fn desired(cell: &Cell, images: &Images) -> Vec<Value> {
    let mut out = vec![
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": namespace(cell), "labels": labels(cell) },
        }),
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(cell, "cell"),
            "automountServiceAccountToken": false,
        }),
        resource_quota(cell),
        limit_range(cell),
    ];
    out.extend(network_policies(cell));
    for service in SERVICES {
        out.push(deployment(cell, images, service));
        out.push(k8s_service(cell, service));
        out.push(pdb(cell, service));
        out.push(hpa(cell, service));
    }
    out
}

fn resource_quota(cell: &Cell) -> Value {
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

fn limit_range(cell: &Cell) -> Value {
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

fn policy(cell: &Cell, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(cell, name),
        "spec": spec,
    })
}

fn service_pods(service: &str) -> Value {
    json!({ "matchLabels": { SERVICE_LABEL: service } })
}

fn network_policies(cell: &Cell) -> Vec<Value> {
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
                "podSelector": { "matchExpressions": [
                    { "key": SERVICE_LABEL, "operator": "In", "values": SERVICES },
                ]},
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": [{ "namespaceSelector": { "matchLabels": { ROUTER_NAMESPACE_LABEL: "true" } } }],
                    "ports": [{ "protocol": "TCP", "port": PUBLIC_PORT }],
                }],
            }),
        ),
        policy(
            cell,
            "poc-internal-from-services",
            json!({
                "podSelector": service_pods("poc"),
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": [{ "podSelector": { "matchExpressions": [
                        { "key": SERVICE_LABEL, "operator": "In", "values": ["dojo", "media"] },
                    ]}}],
                    "ports": [{ "protocol": "TCP", "port": INTERNAL_PORT }],
                }],
            }),
        ),
        policy(
            cell,
            "services-to-internal-poc",
            json!({
                "podSelector": { "matchExpressions": [
                    { "key": SERVICE_LABEL, "operator": "In", "values": ["dojo", "media"] },
                ]},
                "policyTypes": ["Egress"],
                "egress": [{
                    "to": [{ "podSelector": service_pods("poc") }],
                    "ports": [{ "protocol": "TCP", "port": INTERNAL_PORT }],
                }],
            }),
        ),
    ];
    if cell.spec.database.engine == DatabaseEngine::InCluster {
        out.push(policy(
            cell,
            "services-to-postgres",
            json!({
                "podSelector": { "matchExpressions": [
                    { "key": SERVICE_LABEL, "operator": "In", "values": SERVICES },
                ]},
                "policyTypes": ["Egress"],
                "egress": [{
                    "to": [{ "podSelector": service_pods("postgres") }],
                    "ports": [{ "protocol": "TCP", "port": POSTGRES_PORT }],
                }],
            }),
        ));
        out.push(policy(
            cell,
            "postgres-from-services",
            json!({
                "podSelector": service_pods("postgres"),
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": [{ "podSelector": { "matchExpressions": [
                        { "key": SERVICE_LABEL, "operator": "In", "values": SERVICES },
                    ]}}],
                    "ports": [{ "protocol": "TCP", "port": POSTGRES_PORT }],
                }],
            }),
        ));
    }
    if cell.spec.search == SearchEngine::Meilisearch {
        out.push(policy(
            cell,
            "poc-to-meilisearch",
            json!({
                "podSelector": service_pods("poc"),
                "policyTypes": ["Egress"],
                "egress": [{
                    "to": [{ "podSelector": service_pods("meilisearch") }],
                    "ports": [{ "protocol": "TCP", "port": MEILISEARCH_PORT }],
                }],
            }),
        ));
        out.push(policy(
            cell,
            "meilisearch-from-poc",
            json!({
                "podSelector": service_pods("meilisearch"),
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": [{ "podSelector": service_pods("poc") }],
                    "ports": [{ "protocol": "TCP", "port": MEILISEARCH_PORT }],
                }],
            }),
        ));
    }
    if cell.spec.database.engine == DatabaseEngine::Rds {
        // RDS in the cell's subnets and AWS APIs (S3, KMS, Secrets Manager) over HTTPS; the
        // security groups narrow it further on the AWS side.
        out.push(policy(
            cell,
            "services-to-aws",
            json!({
                "podSelector": { "matchExpressions": [
                    { "key": SERVICE_LABEL, "operator": "In", "values": SERVICES },
                ]},
                "policyTypes": ["Egress"],
                "egress": [{ "ports": [
                    { "protocol": "TCP", "port": 443 }, { "protocol": "TCP", "port": POSTGRES_PORT },
                ]}],
            }),
        ));
    }
    out
}

fn deployment(cell: &Cell, images: &Images, service: &str) -> Value {
    let (req_cpu, req_mem, lim_cpu, lim_mem) = resources(cell.spec.tier, service);
    let pod_labels = with_service(labels(cell), service);
    let probe = |path: &str, period: u32| {
        json!({
            "httpGet": { "path": path, "port": "public" },
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        })
    };
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": format!("{service}-service"),
            "namespace": namespace(cell),
            "labels": pod_labels,
        },
        // No `replicas`: the HorizontalPodAutoscaler owns it.
        "spec": {
            "selector": { "matchLabels": { SERVICE_LABEL: service, CELL_LABEL: cell.spec.cell_id } },
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 0, "maxSurge": 1 } },
            "template": {
                "metadata": { "labels": pod_labels },
                "spec": {
                    "serviceAccountName": "cell",
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": { "type": "RuntimeDefault" },
                    },
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "topology.kubernetes.io/zone",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": { "matchLabels": { SERVICE_LABEL: service, CELL_LABEL: cell.spec.cell_id } },
                        },
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": { "matchLabels": { SERVICE_LABEL: service, CELL_LABEL: cell.spec.cell_id } },
                        },
                    ],
                    "containers": [{
                        "name": service,
                        "image": format!("{}/{service}-service:{}", images.registry, cell.spec.version),
                        "args": ["serve"],
                        "ports": [
                            { "name": "public", "containerPort": PUBLIC_PORT, "protocol": "TCP" },
                            { "name": "internal", "containerPort": INTERNAL_PORT, "protocol": "TCP" },
                        ],
                        "env": [
                            { "name": "MRBILL_CELL_ID", "value": cell.spec.cell_id },
                            { "name": "MRBILL_TENANT", "value": cell.spec.tenant },
                            { "name": "MRBILL_HTTP_ADDR", "value": format!("0.0.0.0:{PUBLIC_PORT}") },
                            { "name": "MRBILL_INTERNAL_ADDR", "value": format!("0.0.0.0:{INTERNAL_PORT}") },
                            { "name": "MRBILL_LOG_FORMAT", "value": "json" },
                        ],
                        "readinessProbe": probe("/readyz", 5),
                        "livenessProbe": probe("/healthz", 10),
                        "startupProbe": { "httpGet": { "path": "/healthz", "port": "public" }, "periodSeconds": 2, "failureThreshold": 30 },
                        "resources": {
                            "requests": { "cpu": req_cpu, "memory": req_mem },
                            "limits": { "cpu": lim_cpu, "memory": lim_mem },
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": { "drop": ["ALL"] },
                        },
                        "volumeMounts": [{ "name": "tmp", "mountPath": "/tmp" }],
                    }],
                    "volumes": [{ "name": "tmp", "emptyDir": { "sizeLimit": if service == "media" { "2Gi" } else { "64Mi" } } }],
                },
            },
        },
    })
}

fn k8s_service(cell: &Cell, service: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": format!("{service}-service"),
            "namespace": namespace(cell),
            "labels": with_service(labels(cell), service),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": { SERVICE_LABEL: service, CELL_LABEL: cell.spec.cell_id },
            "ports": [
                { "name": "public", "port": PUBLIC_PORT, "targetPort": "public", "protocol": "TCP" },
                { "name": "internal", "port": INTERNAL_PORT, "targetPort": "internal", "protocol": "TCP" },
            ],
        },
    })
}

fn pdb(cell: &Cell, service: &str) -> Value {
    let (min, _) = replicas(cell, service);
    // One pod may always go (drains must not block); with a single replica nothing is promised.
    let budget = if min > 1 {
        json!({ "maxUnavailable": 1 })
    } else {
        json!({ "maxUnavailable": "100%" })
    };
    let mut spec = budget;
    spec["selector"] =
        json!({ "matchLabels": { SERVICE_LABEL: service, CELL_LABEL: cell.spec.cell_id } });
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": format!("{service}-service"),
            "namespace": namespace(cell),
            "labels": with_service(labels(cell), service),
        },
        "spec": spec,
    })
}

fn hpa(cell: &Cell, service: &str) -> Value {
    let (min, max) = replicas(cell, service);
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": format!("{service}-service"),
            "namespace": namespace(cell),
            "labels": with_service(labels(cell), service),
        },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": format!("{service}-service") },
            "minReplicas": min,
            "maxReplicas": max,
            "metrics": [{
                "type": "Resource",
                "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 70 } },
            }],
        },
    })
}
