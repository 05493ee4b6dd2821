//! Desired state: a `Cell` → the Kubernetes objects of its cell, as plain JSON objects ready for
//! server-side apply. Pure (no API calls), so every tier's output is snapshot-tested and
//! validated against the Kubernetes schemas.
//!
//! Rendered so far: the namespace (labelled tenant / cell / tier), network policies (default
//! deny; ingress only from the router's namespace; DNS; services → their database; poc →
//! Meilisearch; media → poc's internal port; egress to HTTPS endpoints when the cell uses
//! AWS), a ResourceQuota and LimitRange from the tier, a ServiceAccount, and per service a
//! Deployment (dojo: a StatefulSet with a headless Service naming each pod, so routers pin a
//! dojo's sockets to one pod) with zone spread, probes, requests/limits, non-root read-only
//! containers, a Service, a PodDisruptionBudget and a HorizontalPodAutoscaler (min/max from the
//! tier and overrides; the workload leaves `replicas` to it) with exactly its own secret files;
//! the Postgres
//! (`in-cluster`: a CloudNativePG `Cluster` and a `Database` per service) and the Meilisearch
//! StatefulSet with its headless Service; an in-cluster cell's bucket for media's artifacts
//! (an `ObjectBucketClaim`, `bucket.rs`). The secrets themselves are created once by the
//! controller (names and keys below), never rendered.

use cell_model::contract::Service;
use cell_model::{Cell, DatabaseEngine, SearchEngine, Tier};
use serde_json::{Value, json};

pub mod backups;
mod bucket;
pub mod migration;
mod monitoring;
mod policies;
mod postgres;
mod stateful;
mod workloads;

pub use backups::{
    ARCHIVE_SOURCE, BACKUP_BUCKET, final_backup, from_archive, server_name, short_id, with_backups,
};
pub use bucket::{MEDIA_BUCKET, ObjectStore};
use policies::*;
use postgres::*;
pub use postgres::{
    CNPG_CLUSTER_LABEL, POSTGRES_CLUSTER, POSTGRES_HBA, POSTGRES_IMAGE, POSTGRES_RW_SERVICE,
    RESTORE_ANNOTATION, database_resource, postgres_instances, role_secret,
};
use stateful::*;
pub use stateful::{RDS_MASTER_SECRET, RDS_ROLES_JOB};
use workloads::*;
pub use workloads::{pod_url, pods_service, workload_kind};

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
pub const POSTGRES_PORT: u16 = 5432;
const MEILISEARCH_PORT: u16 = 7700;

/// Operator-wide settings that shape every cell.
#[derive(Clone, Debug)]
pub struct Images {
    /// Cell service images are `<registry>/<service>-service:<cell version>`.
    pub registry: String,
    /// The pod network the router's pods come from (`MRBILL_TRUSTED_PROXIES`: only they may
    /// set `X-Forwarded-For`).
    pub trusted_proxies: String,
    /// Where an `rds` cell's pods may reach AWS (CIDRs: the VPC with its RDS subnets and
    /// interface endpoints for S3/KMS/STS/Secrets Manager), on 443 and 5432 only. Empty: any
    /// address on those ports (the security groups narrow it on the AWS side).
    pub aws_egress: Vec<String>,
    /// How cells send mail (password-reset and confirmation codes); `None`: they send none.
    pub mail: Option<Mail>,
    /// How the operator reaches Secrets: only inside cell namespaces, through a RoleBinding it
    /// makes in each (the chart holds no cluster-wide Secret grant). `None`: its own role
    /// reaches them (development, tests without RBAC).
    pub secrets_access: Option<SecretsAccess>,
    /// The namespace of the CloudNativePG operator (its calls to the instances' status port
    /// are let in).
    pub cnpg_namespace: String,
    /// The control plane's access to a cell's identity Secrets (to copy them when the cell
    /// moves to another cluster): a RoleBinding of `cluster_role` (Secrets: get by name,
    /// create) to the control plane's service account in each cell namespace. `None`: none.
    pub identity_access: Option<SecretsAccess>,
    /// Export a move source's Postgres (`postgres-rw`) to the clusterset with a Multi-Cluster
    /// Services `ServiceExport`, so a target in another cluster reaches it at
    /// `postgres-rw.<ns>.svc.clusterset.local` (the control plane's default source host).
    pub service_export: bool,
    /// Where in-cluster cells' artifacts go: a bucket claimed per cell (`bucket.rs`).
    pub object_store: ObjectStore,
    /// The Prometheus that scrapes the cells: each cell gets a `PodMonitor` of its services
    /// and lets that Prometheus's pods in to their `/metrics` (`monitoring.rs`). `None`: no
    /// PodMonitor (the Prometheus Operator's CRDs need not exist).
    pub monitoring: Option<Monitoring>,
    /// Where the cells' services send traces: the standard OpenTelemetry variables they get
    /// and the collector they may reach (`monitoring.rs`). `None`: no traces.
    pub tracing: Option<Tracing>,
}

/// The trace collector the cells export to.
#[derive(Clone, Debug, Default)]
pub struct Tracing {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, the sampler's and the batch queue's variables: every cell
    /// service gets them as they are.
    pub env: Vec<(String, String)>,
    /// The collector's namespace and pod labels, and its OTLP/HTTP port: the only egress the
    /// cells' services get for it.
    pub namespace: String,
    pub pod_labels: std::collections::BTreeMap<String, String>,
    pub port: u16,
}

/// Who scrapes the cells, and how the PodMonitors are found.
#[derive(Clone, Debug, Default)]
pub struct Monitoring {
    /// The Prometheus's namespace.
    pub namespace: String,
    /// Labels of its pods: only they are let in to the services' port.
    pub pod_labels: std::collections::BTreeMap<String, String>,
    /// Labels on each PodMonitor (what the Prometheus's `podMonitorSelector` matches).
    pub labels: std::collections::BTreeMap<String, String>,
    /// The scrape interval.
    pub interval: String,
}

/// The operator's Secret access in a cell namespace: a RoleBinding of `cluster_role` (Secrets:
/// get, list, create, delete) to the operator's service account.
#[derive(Clone, Debug)]
pub struct SecretsAccess {
    pub cluster_role: String,
    pub service_account: String,
    pub namespace: String,
}

/// The RoleBinding that lets the operator at Secrets in a cell's namespace.
pub const SECRETS_ACCESS_BINDING: &str = "cell-operator-secrets";
/// The RoleBinding that lets the control plane copy a cell's identity between clusters.
pub const IDENTITY_ACCESS_BINDING: &str = "control-plane-identity";

/// The platform's mail relay, as every cell's poc-service gets it: the SMTP URL as a file from
/// the cell's [`SMTP_SECRET`], the sender as `MRBILL_MAIL_FROM`.
#[derive(Clone, Debug)]
pub struct Mail {
    /// `smtps://user:password@host` (or `smtp://…?tls=required`).
    pub smtp_url: secrecy::SecretString,
    /// The sender; `{tenant}` is replaced by the cell's tenant. `None`: poc-service's default.
    pub from: Option<String>,
}

/// Pinned image of the search engine (Postgres's is [`POSTGRES_IMAGE`]).
pub const MEILISEARCH_IMAGE: &str = "getmeili/meilisearch:v1.11.3";

/// Secrets the controller creates once per cell (never re-generated by a reconcile): name →
/// keys. Services see them as files under [`SECRETS_DIR`].
pub const JWT_SECRET: &str = cell_model::identity::JWT; // private.pem, public.pem, kid
pub const SERVICE_TOKEN_SECRET: &str = cell_model::identity::SERVICE_TOKEN; // token
pub const MEDIA_URL_KEY_SECRET: &str = cell_model::identity::MEDIA_URL_KEY; // key
pub const MEILISEARCH_SECRET: &str = "meilisearch"; // master-key
/// In-cluster Postgres's TLS (`crate::tls`, `kubernetes.io/tls`): `ca.crt` (to the services and
/// as CNPG's server CA), `tls.crt`, `tls.key` (CNPG's server certificate).
pub const POSTGRES_TLS_SECRET: &str = "postgres-tls";
/// The platform's SMTP URL (`url`), copied into each cell when the operator has one.
pub const SMTP_SECRET: &str = "smtp";
/// `<service>-database` holds `url` for each service's own database and role (in-cluster: the
/// role's password is also in [`role_secret`], which CNPG reads).
pub fn database_secret(service: &str) -> String {
    cell_model::identity::database(service)
}
pub const SECRETS_DIR: &str = "/var/run/secrets/mrbill";

/// The namespace of a cell: `cell-<tenant>`.
pub fn namespace(cell: &Cell) -> String {
    format!("cell-{}", cell.spec.tenant)
}

/// The cell's services by name (the cell contract's list).
fn services() -> [&'static str; Service::ALL.len()] {
    Service::ALL.map(Service::name)
}

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

/// `(min, max)` replicas: an override pins the minimum (within the tier's bounds), the tier
/// gives the maximum.
pub fn replicas(cell: &Cell, service: &str) -> (u32, u32) {
    let Some(service) = Service::parse(service) else {
        return (0, 0);
    };
    let b = cell.spec.tier.template().bounds(service);
    let min = cell
        .spec
        .replicas
        .get(service)
        .unwrap_or(b.default)
        .clamp(b.min, b.max);
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

/// How many of `desired`'s first objects must exist before the cell's Secrets are touched:
/// the namespace, and the operator's Secret access there when it has one.
pub fn before_secrets(desired: &[Value]) -> usize {
    desired
        .iter()
        .take_while(|o| o["kind"] == "Namespace" || o["kind"] == "RoleBinding")
        .count()
}

/// Every object of the cell, in apply order (namespace first).
pub fn desired(cell: &Cell, images: &Images) -> Vec<Value> {
    let mut out = vec![json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": namespace(cell), "labels": labels(cell) },
    })];
    // Right after the namespace: the operator's way to its Secrets and the control plane's to
    // the identity (see [`before_secrets`]).
    for (name, access) in [
        (SECRETS_ACCESS_BINDING, &images.secrets_access),
        (IDENTITY_ACCESS_BINDING, &images.identity_access),
    ] {
        if let Some(access) = access {
            out.push(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": meta(cell, name),
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": access.cluster_role },
                "subjects": [{ "kind": "ServiceAccount", "name": access.service_account, "namespace": access.namespace }],
            }));
        }
    }
    out.extend([
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(cell, "cell"),
            "automountServiceAccountToken": false,
        }),
        resource_quota(cell),
        limit_range(cell),
    ]);
    out.extend(network_policies(cell, images));
    out.extend(monitoring::objects(cell, images));
    if cell.spec.database.engine == DatabaseEngine::InCluster {
        out.push(postgres_cluster(cell));
        out.extend(postgres_databases(cell));
        out.push(bucket::claim(cell, &images.object_store));
        out.push(backups::claim(cell, &images.object_store));
    }
    out.extend(migration::objects(cell, images));
    if cell.spec.search == SearchEngine::Meilisearch {
        out.push(meilisearch(cell));
        out.push(headless(cell, "meilisearch", MEILISEARCH_PORT));
    }
    for service in services() {
        out.push(deployment(cell, images, service));
        out.push(k8s_service(cell, service));
        if workload_kind(service) == "StatefulSet" {
            out.push(pods_headless(cell, service));
        }
        out.push(pdb(cell, service));
        // A suspended cell (a fenced migration source, a target before `start`) keeps its
        // data and objects but runs no pods: no autoscaler (its floor cannot be 0), and the
        // Deployment pins `replicas: 0` until it runs again.
        if migration::runs_services(cell) {
            out.push(hpa(cell, service));
        }
    }
    out
}

fn locked_down() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": { "drop": ["ALL"] },
    })
}

/// Outputs of an `rds` cell's AWS foundation the pods use (`bucket`, `key-arn`).
pub const AWS_FOUNDATION_CONFIG_MAP: &str = "aws-foundation";

/// Adds what an `rds` cell's pods need from its foundation stack's outputs: the
/// [`AWS_FOUNDATION_CONFIG_MAP`] and the IRSA role on the cell's ServiceAccount.
pub fn with_foundation(
    cell: &Cell,
    mut objects: Vec<Value>,
    outputs: &std::collections::BTreeMap<String, String>,
) -> Vec<Value> {
    if let Some(role) = outputs.get("IrsaRoleArn")
        && let Some(sa) = objects
            .iter_mut()
            .find(|o| o["kind"] == "ServiceAccount" && o["metadata"]["name"] == "cell")
    {
        sa["metadata"]["annotations"] = json!({ "eks.amazonaws.com/role-arn": role });
    }
    let output = |key: &str| outputs.get(key).cloned().unwrap_or_default();
    objects.push(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(cell, AWS_FOUNDATION_CONFIG_MAP),
        "data": { "bucket": output("BucketName"), "key-arn": output("KeyArn") },
    }));
    objects
}
