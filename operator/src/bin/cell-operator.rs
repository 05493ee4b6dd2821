//! `cell-operator`: reconciles every `Cell` in the cluster it runs in (in-cluster service
//! account, or the current kubeconfig context outside a cluster) and serves `/healthz`,
//! `/readyz` and `/metrics` for Prometheus.
//!
//! Settings (environment):
//! - `MRBILL_OPERATOR_REGISTRY` (required): where cell images are, `<registry>/<service>-service:<version>`.
//! - `MRBILL_OPERATOR_TRUSTED_PROXIES` (required): the router pods' network (CIDRs), passed to cells.
//! - `MRBILL_OPERATOR_AWS_EGRESS_CIDRS`: where rds cells' pods may reach AWS on 443/5432 (the
//!   VPC, its endpoints); unset: any address on those ports.
//! - `MRBILL_OPERATOR_SMTP_URL_FILE`: a file with the platform's SMTP URL (`smtps://user:pass@host`);
//!   each cell's poc-service sends its mail (reset and confirmation codes) through it.
//!   `MRBILL_OPERATOR_MAIL_FROM`: the sender, `{tenant}` replaced by the cell's tenant.
//! - `MRBILL_OPERATOR_SECRETS_ROLE`, `MRBILL_OPERATOR_SERVICE_ACCOUNT`, `MRBILL_OPERATOR_NAMESPACE`
//!   (all or none; the chart sets them; the namespace also keeps what deleted cells leave —
//!   records and the `kept-cells` bucket's claim — default `mrbill-system`): the ClusterRole granting Secrets that the operator binds
//!   to its own service account in each cell namespace — its only way to Secrets. Unset: its
//!   own role must reach Secrets.
//! - `MRBILL_OPERATOR_SERVICE_EXPORT` (`true`/`false`, default false): export a move source's
//!   Postgres to the clusterset (Multi-Cluster Services `ServiceExport` of `postgres-rw`).
//! - The object store of in-cluster cells' artifacts (a bucket claimed per cell):
//!   `MRBILL_OPERATOR_BUCKET_CLASS` (the `ObjectBucketClaim` class, default `rook-ceph-bucket`),
//!   `MRBILL_OPERATOR_BACKUP_BUCKET_CLASS` (the Postgres backups' class, default the same),
//!   `MRBILL_OPERATOR_OBJECT_STORE_TLS` (default false), `MRBILL_OPERATOR_OBJECT_STORE_NAMESPACE`
//!   (its gateway pods' namespace, default `rook-ceph`) and `MRBILL_OPERATOR_OBJECT_STORE_PORTS`
//!   (their container ports, comma-separated, default `8080`); `MRBILL_OPERATOR_OBJECT_STORE_EXTERNAL_ENDPOINT`
//!   (how other clusters reach the store: a move's target reads the source's bucket there).
//! - `MRBILL_OPERATOR_METRICS_ADDR` (default `0.0.0.0:8080`): health and metrics listener.
//! - `POD_NAME` (optional): names this instance in Events.
//! - For `rds` cells (all or none): `MRBILL_OPERATOR_AWS_VPC_ID`, `MRBILL_OPERATOR_AWS_SUBNET_IDS`
//!   (comma-separated, ≥ 2 zones), `MRBILL_OPERATOR_AWS_CLUSTER_SECURITY_GROUP_ID`,
//!   `MRBILL_OPERATOR_AWS_OIDC_PROVIDER_ARN`, `MRBILL_OPERATOR_AWS_OIDC_PROVIDER_HOST`; credentials
//!   and region from the standard AWS chain (IRSA), `AWS_ENDPOINT_URL` to override the endpoint.
//! - `MRBILL_LOG_FORMAT` (`json` | `compact`), `RUST_LOG`.

use std::net::SocketAddr;

use axum::routing::get;
use cell_operator::aws::{AwsClients, AwsSettings};
use cell_operator::controller::{self, Context};
use cell_operator::render::{Images, ObjectStore};
use service_kit::config::{optional, required};
use service_kit::http::healthz;
use service_kit::telemetry::{self, LogFormat};

fn object_store() -> anyhow::Result<ObjectStore> {
    let d = ObjectStore::default();
    let ports = match optional::<String>("MRBILL_OPERATOR_OBJECT_STORE_PORTS")? {
        Some(raw) => raw
            .split(',')
            .map(|p| p.trim().parse::<u16>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("MRBILL_OPERATOR_OBJECT_STORE_PORTS: {e}"))?,
        None => d.ports,
    };
    Ok(ObjectStore {
        bucket_class: optional("MRBILL_OPERATOR_BUCKET_CLASS")?.unwrap_or(d.bucket_class),
        backup_bucket_class: optional::<String>("MRBILL_OPERATOR_BACKUP_BUCKET_CLASS")?
            .filter(|c| !c.is_empty()),
        tls: optional("MRBILL_OPERATOR_OBJECT_STORE_TLS")?.unwrap_or(d.tls),
        namespace: optional("MRBILL_OPERATOR_OBJECT_STORE_NAMESPACE")?.unwrap_or(d.namespace),
        ports,
        external_endpoint: optional::<String>("MRBILL_OPERATOR_OBJECT_STORE_EXTERNAL_ENDPOINT")?
            .filter(|e| !e.is_empty()),
        kept_namespace: optional("MRBILL_OPERATOR_NAMESPACE")?.unwrap_or(d.kept_namespace),
    })
}

fn main() -> anyhow::Result<()> {
    // kube's TLS: ring, chosen explicitly (another provider may be compiled in).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let images = Images {
        registry: required("MRBILL_OPERATOR_REGISTRY")?,
        trusted_proxies: required("MRBILL_OPERATOR_TRUSTED_PROXIES")?,
        aws_egress: service_kit::config::ip_nets("MRBILL_OPERATOR_AWS_EGRESS_CIDRS")?
            .iter()
            .map(ToString::to_string)
            .collect(),
        mail: match service_kit::config::secret_file("MRBILL_OPERATOR_SMTP_URL_FILE")? {
            Some(smtp_url) => Some(cell_operator::render::Mail {
                smtp_url,
                from: optional("MRBILL_OPERATOR_MAIL_FROM")?,
            }),
            None => None,
        },
        secrets_access: match optional::<String>("MRBILL_OPERATOR_SECRETS_ROLE")? {
            Some(cluster_role) => Some(cell_operator::render::SecretsAccess {
                cluster_role,
                service_account: required("MRBILL_OPERATOR_SERVICE_ACCOUNT")?,
                namespace: required("MRBILL_OPERATOR_NAMESPACE")?,
            }),
            None => None,
        },
        cnpg_namespace: optional("MRBILL_OPERATOR_CNPG_NAMESPACE")?
            .unwrap_or_else(|| "cnpg-system".to_owned()),
        identity_access: match optional::<String>("MRBILL_OPERATOR_CONTROL_PLANE_ACCOUNT")? {
            Some(account) => {
                let (namespace, service_account) = account.split_once('/').ok_or_else(|| {
                    anyhow::anyhow!("MRBILL_OPERATOR_CONTROL_PLANE_ACCOUNT: namespace/name")
                })?;
                Some(cell_operator::render::SecretsAccess {
                    cluster_role: required("MRBILL_OPERATOR_IDENTITY_ROLE")?,
                    service_account: service_account.to_owned(),
                    namespace: namespace.to_owned(),
                })
            }
            None => None,
        },
        service_export: optional::<bool>("MRBILL_OPERATOR_SERVICE_EXPORT")?.unwrap_or(false),
        monitoring: match optional::<String>("MRBILL_OPERATOR_MONITORING_NAMESPACE")? {
            Some(namespace) => Some(cell_operator::render::Monitoring {
                namespace,
                pod_labels: labels(
                    &optional::<String>("MRBILL_OPERATOR_MONITORING_POD_LABELS")?
                        .unwrap_or_else(|| "app.kubernetes.io/name=prometheus".into()),
                )?,
                labels: labels(
                    &optional::<String>("MRBILL_OPERATOR_MONITORING_LABELS")?.unwrap_or_default(),
                )?,
                interval: optional("MRBILL_OPERATOR_MONITORING_INTERVAL")?
                    .unwrap_or_else(|| "30s".into()),
            }),
            None => None,
        },
        object_store: object_store()?,
        tracing: tracing()?,
    };
    let metrics_addr: SocketAddr =
        optional("MRBILL_OPERATOR_METRICS_ADDR")?.unwrap_or(([0, 0, 0, 0], 8080).into());
    let log_format: LogFormat = optional("MRBILL_LOG_FORMAT")?.unwrap_or_default();
    telemetry::init("cell-operator", log_format);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let client = kube::Client::try_default().await?;
            let listener = tokio::net::TcpListener::bind(metrics_addr).await?;
            tracing::info!(%metrics_addr, registry = %images.registry, "cell-operator starting");
            // Liveness is the process answering; readiness adds nothing the controller could
            // lose (it retries the API server on its own).
            let ops = axum::Router::new()
                .route("/healthz", get(healthz))
                .route("/readyz", get(healthz))
                .route(
                    "/metrics",
                    get(|| async { telemetry::metrics_handle().render() }),
                );
            let server = tokio::spawn(async move { axum::serve(listener, ops).await });
            let aws = match aws_settings()? {
                Some(settings) => {
                    let sdk =
                        aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                    Some(AwsClients::new(&sdk, settings))
                }
                None => None,
            };
            let ctx = Context::new(client, images, aws, optional("POD_NAME")?);
            controller::run(ctx).await;
            server.abort();
            tracing::info!("cell-operator stopped");
            anyhow::Ok(())
        })?;
    telemetry::shutdown();
    Ok(())
}

/// The AWS settings, when the operator manages `rds` cells.
fn aws_settings() -> anyhow::Result<Option<AwsSettings>> {
    let Some(vpc_id) = optional::<String>("MRBILL_OPERATOR_AWS_VPC_ID")? else {
        return Ok(None);
    };
    let subnet_ids: Vec<String> = required::<String>("MRBILL_OPERATOR_AWS_SUBNET_IDS")?
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    anyhow::ensure!(
        subnet_ids.len() >= 2,
        "MRBILL_OPERATOR_AWS_SUBNET_IDS: at least two subnets (two availability zones)"
    );
    Ok(Some(AwsSettings {
        vpc_id,
        subnet_ids,
        cluster_security_group_id: required("MRBILL_OPERATOR_AWS_CLUSTER_SECURITY_GROUP_ID")?,
        oidc_provider_arn: required("MRBILL_OPERATOR_AWS_OIDC_PROVIDER_ARN")?,
        oidc_provider_host: required("MRBILL_OPERATOR_AWS_OIDC_PROVIDER_HOST")?,
    }))
}

/// `key=value,key=value` as labels.
/// The operator's own standard OpenTelemetry variables, handed on to every cell service, and
/// the collector's pods the cells may reach (`MRBILL_OPERATOR_TRACING_NAMESPACE`, required with
/// an endpoint; `…_POD_LABELS`). No endpoint: no traces.
fn tracing() -> anyhow::Result<Option<cell_operator::render::Tracing>> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| telemetry::trace::passed_on(k))
        .collect();
    let endpoint = [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .find_map(|k| env.iter().find(|(key, v)| key == k && !v.is_empty()))
    .map(|(_, v)| v.clone());
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    let uri: axum::http::Uri = endpoint
        .parse()
        .map_err(|e| anyhow::anyhow!("OTEL_EXPORTER_OTLP_ENDPOINT {endpoint}: {e}"))?;
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    Ok(Some(cell_operator::render::Tracing {
        env,
        namespace: required("MRBILL_OPERATOR_TRACING_NAMESPACE")?,
        pod_labels: labels(
            &optional::<String>("MRBILL_OPERATOR_TRACING_POD_LABELS")?
                .unwrap_or_else(|| "app.kubernetes.io/name=opentelemetry-collector".into()),
        )?,
        port,
    }))
}

fn labels(text: &str) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("`{pair}` is not key=value"))?;
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}
