//! Per service: the workload (with exactly its own secret files and settings from the cell
//! contract), Service, PodDisruptionBudget and HorizontalPodAutoscaler.
//!
//! poc and media run as Deployments. dojo runs as a StatefulSet behind a headless Service: a
//! dojo's room lives in one pod, so routers address each pod by its stable name
//! (`dojo-service-0.dojo-service-pods.<ns>.svc`) and pin every socket of one dojo to one of
//! them; the Cell's status lists those names for the route (see `controller::observe`).

use cell_model::contract::{Secret, Service, env};
use cell_model::{Cell, DatabaseEngine, SearchEngine};
use serde_json::{Value, json};

use super::*;

/// How long a stopping pod keeps serving before SIGTERM: endpoint removal reaches kube-proxy
/// and the ingress in a few seconds; a route without the pod reaches the routers through the
/// operator's status and the control plane's watch.
const PRE_STOP_SECS: u32 = 10;

/// The kind of `service`'s workload: a StatefulSet for dojo (pods routers can name), else a
/// Deployment.
pub fn workload_kind(service: &str) -> &'static str {
    if service == "dojo" {
        "StatefulSet"
    } else {
        "Deployment"
    }
}

/// The headless Service naming each pod of `service` (dojo's).
pub fn pods_service(service: &str) -> String {
    format!("{service}-service-pods")
}

/// The URL of pod `ordinal` of `service`'s StatefulSet, as routers reach it.
pub fn pod_url(cell: &Cell, service: &str, ordinal: u32) -> String {
    format!(
        "http://{service}-service-{ordinal}.{}.{}.svc:{PUBLIC_PORT}",
        pods_service(service),
        namespace(cell)
    )
}

pub(super) fn deployment(cell: &Cell, images: &Images, service: &str) -> Value {
    let mut deployment = running_deployment(cell, images, service);
    if !migration::runs_services(cell) {
        deployment["spec"]["replicas"] = json!(0);
    }
    deployment
}

pub(super) fn running_deployment(cell: &Cell, images: &Images, service: &str) -> Value {
    let mut workload = pod_workload(cell, images, service);
    if workload_kind(service) == "StatefulSet" {
        workload["kind"] = json!("StatefulSet");
        let spec = &mut workload["spec"];
        if let Some(spec) = spec.as_object_mut() {
            spec.remove("strategy");
        }
        // Pods start one after another and stop from the highest ordinal, so the ready pods
        // are (nearly always) ordinals 0..readyReplicas — what the route lists. A rolling
        // update replaces one pod at a time: its rooms move to the others and come back.
        spec["serviceName"] = json!(pods_service(service));
        spec["podManagementPolicy"] = json!("OrderedReady");
        spec["updateStrategy"] = json!({ "type": "RollingUpdate" });
    }
    workload
}

fn pod_workload(cell: &Cell, images: &Images, service: &str) -> Value {
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
        // No `replicas` while running: the HorizontalPodAutoscaler owns it.
        "spec": {
            "selector": { "matchLabels": { SERVICE_LABEL: service, CELL_LABEL: cell.spec.cell_id } },
            "strategy": strategy(),
            "template": {
                "metadata": { "labels": pod_labels },
                "spec": {
                    "terminationGracePeriodSeconds": PRE_STOP_SECS + 30,
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
                        "env": env(cell, images, service),
                        "readinessProbe": probe("/readyz", 5),
                        "livenessProbe": probe("/healthz", 10),
                        // A pod on its way out stays up while Services, the ingress and the
                        // routers' routes drop it, and only then gets SIGTERM (in-flight
                        // requests finish; dojo's sockets close with 1012).
                        "lifecycle": { "preStop": { "sleep": { "seconds": PRE_STOP_SECS } } },
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
                        "volumeMounts": [
                            { "name": "tmp", "mountPath": "/tmp" },
                            { "name": "data", "mountPath": "/var/lib/mrbill" },
                            { "name": "secrets", "mountPath": SECRETS_DIR, "readOnly": true },
                        ],
                    }],
                    "volumes": [
                        { "name": "tmp", "emptyDir": { "sizeLimit": if service == "media" { "2Gi" } else { "64Mi" } } },
                        { "name": "data", "emptyDir": { "sizeLimit": "4Gi" } },
                        { "name": "secrets", "projected": { "defaultMode": 0o440, "sources": secret_files(cell, images, service) } },
                    ],
                },
            },
        },
    })
}

/// The headless Service that gives each dojo pod its DNS name (ready pods only).
pub(super) fn pods_headless(cell: &Cell, service: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": pods_service(service),
            "namespace": namespace(cell),
            "labels": with_service(labels(cell), service),
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": false,
            "selector": { SERVICE_LABEL: service, CELL_LABEL: cell.spec.cell_id },
            "ports": [{ "name": "public", "port": PUBLIC_PORT, "targetPort": "public", "protocol": "TCP" }],
        },
    })
}

pub(super) fn k8s_service(cell: &Cell, service: &str) -> Value {
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

/// Rolling updates that never dip below the wanted replicas (dojo's StatefulSet has its own).
pub(super) fn strategy() -> Value {
    json!({ "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 0, "maxSurge": 1 } })
}

pub(super) fn pdb(cell: &Cell, service: &str) -> Value {
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

pub(super) fn hpa(cell: &Cell, service: &str) -> Value {
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
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": workload_kind(service), "name": format!("{service}-service") },
            "minReplicas": min,
            "maxReplicas": max,
            "metrics": [{
                "type": "Resource",
                "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 70 } },
            }],
        },
    })
}

pub(super) fn secret_item(secret: &str, key: &str, path: &str) -> Value {
    json!({ "secret": { "name": secret, "items": [{ "key": key, "path": path }] } })
}

/// Where each contract secret comes from: (Secret, key).
pub(super) fn secret_source(secret: Secret, service: &str) -> (String, &'static str) {
    match secret {
        Secret::DatabaseUrl => (database_secret(service), "url"),
        Secret::ServiceToken => (SERVICE_TOKEN_SECRET.to_owned(), "token"),
        Secret::JwtPrivateKey => (JWT_SECRET.to_owned(), "private.pem"),
        Secret::JwtPublicKey => (JWT_SECRET.to_owned(), "public.pem"),
        Secret::MediaUrlKey => (MEDIA_URL_KEY_SECRET.to_owned(), "key"),
    }
}

/// The contract's secret files of a service (and nothing else: the signing key only to poc),
/// plus what this cell's options add (Postgres CA, SMTP, Meilisearch).
pub(super) fn secret_files(cell: &Cell, images: &Images, service: &str) -> Vec<Value> {
    let contract = Service::parse(service).map_or(&[][..], Service::secrets);
    let mut files: Vec<Value> = contract
        .iter()
        .map(|secret| {
            let (name, key) = secret_source(*secret, service);
            secret_item(&name, key, secret.file())
        })
        .collect();
    if cell.spec.database.engine == DatabaseEngine::InCluster {
        files.push(secret_item(
            POSTGRES_TLS_SECRET,
            "ca.crt",
            "postgres-ca.crt",
        ));
    }
    if service == Service::Media.name() && cell.spec.database.engine == DatabaseEngine::InCluster {
        files.extend(super::bucket::media_files());
    }
    if service == Service::Poc.name() {
        if images.mail.is_some() {
            files.push(secret_item(SMTP_SECRET, "url", "smtp-url"));
        }
        if cell.spec.search == SearchEngine::Meilisearch {
            files.push(secret_item(
                MEILISEARCH_SECRET,
                "master-key",
                "meilisearch-key",
            ));
        }
    }
    files
}

pub(super) fn env(cell: &Cell, images: &Images, service: &str) -> Vec<Value> {
    let file =
        |name: &str, path: &str| json!({ "name": name, "value": format!("{SECRETS_DIR}/{path}") });
    let value = |name: &str, value: String| json!({ "name": name, "value": value });
    let contract = Service::parse(service);
    let mut env = vec![
        value(env::CELL_ID, cell.spec.cell_id.clone()),
        value(env::TENANT, cell.spec.tenant.clone()),
        value(env::HTTP_ADDR, format!("0.0.0.0:{PUBLIC_PORT}")),
        value(env::INTERNAL_ADDR, format!("0.0.0.0:{INTERNAL_PORT}")),
        value(env::LOG_FORMAT, "json".into()),
        value(env::TRUSTED_PROXIES, images.trusted_proxies.clone()),
        json!({ "name": env::JWT_KID, "valueFrom": { "secretKeyRef": { "name": JWT_SECRET, "key": "kid" } } }),
    ];
    for secret in contract.map_or(&[][..], Service::secrets) {
        env.push(file(secret.env(), secret.file()));
    }
    if let Some(tracing) = &images.tracing {
        env.extend(tracing.env.iter().map(|(k, v)| value(k, v.clone())));
    }
    if contract.is_some_and(Service::calls_poc) {
        env.push(value(
            env::POC_INTERNAL_URL,
            format!("http://{}:{INTERNAL_PORT}", Service::Poc.binary()),
        ));
    }
    if cell.spec.database.engine == DatabaseEngine::InCluster {
        // libpq's own variables (sqlx reads them too): TLS, the server's certificate checked
        // against the cell's Postgres CA and the Service's name, for every database URL —
        // those of cells made before TLS included.
        env.push(value("PGSSLMODE", "verify-full".into()));
        env.push(file("PGSSLROOTCERT", "postgres-ca.crt"));
    }
    match contract {
        Some(Service::Poc) => {
            // The first admin's invite: poc-service creates it at start from the token's hash.
            if let Some(b) = &cell.spec.bootstrap {
                env.push(value(env::BOOTSTRAP_ADMIN_EMAIL, b.admin_email.clone()));
                env.push(value(
                    env::BOOTSTRAP_INVITE_SHA256,
                    b.invite_token_sha256.clone(),
                ));
                env.push(value(env::BOOTSTRAP_EXPIRES_AT, b.expires_at.clone()));
            }
            if let Some(mail) = &images.mail {
                env.push(file(env::SMTP_URL_FILE, "smtp-url"));
                if let Some(from) = &mail.from {
                    env.push(value(
                        env::MAIL_FROM,
                        from.replace("{tenant}", &cell.spec.tenant),
                    ));
                }
            }
            if !cell.spec.email_domains.is_empty() {
                env.push(value(env::EMAIL_DOMAINS, cell.spec.email_domains.join(",")));
            }
            if cell.spec.search == SearchEngine::Meilisearch {
                env.push(value(env::SEARCH_ENGINE, "meilisearch".into()));
                env.push(value(
                    env::MEILISEARCH_URL,
                    format!("http://meilisearch:{MEILISEARCH_PORT}"),
                ));
                env.push(file(env::MEILISEARCH_KEY_FILE, "meilisearch-key"));
                if let Some(restore) = &cell.spec.restore {
                    // A fresh index: the restored database's consumer rebuilds it in full.
                    let index = format!("pocs-{}", super::short_id(&restore.id));
                    env.push(value(env::MEILISEARCH_INDEX, index));
                }
            } else {
                env.push(value(env::SEARCH_DIR, "/var/lib/mrbill/search".into()));
            }
        }
        Some(Service::Media) => {
            if cell.spec.database.engine == DatabaseEngine::Rds {
                // The cell's bucket from its AWS foundation (IRSA credentials on the pod).
                env.push(
                    json!({ "name": env::MEDIA_S3_BUCKET, "valueFrom": { "configMapKeyRef": {
                    "name": AWS_FOUNDATION_CONFIG_MAP, "key": "bucket" } } }),
                );
            } else {
                // The bucket claimed from the platform's object store (`bucket.rs`).
                env.extend(super::bucket::media_env(&images.object_store));
            }
        }
        Some(Service::Dojo) | None => {}
    }
    env
}
