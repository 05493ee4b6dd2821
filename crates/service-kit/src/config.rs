//! Typed configuration from the environment. This is the only module that reads env vars.
//!
//! Secrets are never passed in env values: the env names a file (`*_FILE`), read once at start-up
//! into a [`SecretString`]. Tests build configs in code instead of through env.

use cell_model::contract::{Secret, env as var};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, bail};
use ipnet::IpNet;
use secrecy::SecretString;

use crate::telemetry::LogFormat;

/// Reads `name`, parsing it with `FromStr`. Missing or empty → `None`.
pub fn optional<T>(name: &str) -> anyhow::Result<Option<T>>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}")),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => bail!("{name}: {e}"),
    }
}

/// What of the standard OpenTelemetry variables this platform reads itself (the SDK reads the
/// rest: the endpoint's details, headers, sampler), and a cell's identity for the trace resource
/// (`telemetry::trace`). Each `OTEL_EXPORTER_OTLP_TRACES_*` variable wins over its
/// `OTEL_EXPORTER_OTLP_*` fallback.
#[derive(Clone, Debug, Default)]
pub struct TraceEnv {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set.
    pub endpoint: bool,
    /// `OTEL_SDK_DISABLED=true`.
    pub disabled: bool,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`.
    pub queue: Option<usize>,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: the most spans one export sends (the SDK reads it too;
    /// 512).
    pub export_batch: Option<usize>,
    /// `OTEL_BSP_SCHEDULE_DELAY`: how long a finished span may wait before its batch is
    /// exported, in milliseconds (the SDK reads it too; 5 000).
    pub schedule_delay_ms: Option<u64>,
    /// `OTEL_SERVICE_NAME` is set (the SDK reads it).
    pub service_name_set: bool,
    pub tenant: Option<String>,
    pub cell: Option<String>,
    /// `…_TIMEOUT`: how long one export may take, in milliseconds (10 000).
    pub timeout_ms: Option<u64>,
    /// `…_CERTIFICATE`: a PEM file of the CA the collector's certificate is checked against
    /// (besides the system's roots).
    pub certificate: Option<PathBuf>,
    /// `…_CLIENT_CERTIFICATE` and `…_CLIENT_KEY`: PEM files this process presents to a collector
    /// that asks for mutual TLS.
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl TraceEnv {
    /// Fails on a value that does not parse (the caller then exports nothing and says why).
    pub fn read() -> anyhow::Result<Self> {
        let set = |key: &str| std::env::var(key).is_ok_and(|v| !v.trim().is_empty());
        Ok(Self {
            endpoint: set("OTEL_EXPORTER_OTLP_ENDPOINT")
                || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            disabled: std::env::var("OTEL_SDK_DISABLED")
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true")),
            queue: optional::<usize>("OTEL_BSP_MAX_QUEUE_SIZE")?.filter(|n| *n > 0),
            export_batch: optional::<usize>("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")?.filter(|n| *n > 0),
            schedule_delay_ms: optional("OTEL_BSP_SCHEDULE_DELAY")?,
            service_name_set: set("OTEL_SERVICE_NAME"),
            tenant: optional(var::TENANT).ok().flatten(),
            cell: optional(var::CELL_ID).ok().flatten(),
            timeout_ms: otlp("TIMEOUT")?,
            certificate: otlp("CERTIFICATE")?,
            client_certificate: otlp("CLIENT_CERTIFICATE")?,
            client_key: otlp("CLIENT_KEY")?,
        })
    }
}

/// `OTEL_EXPORTER_OTLP_TRACES_<name>`, else `OTEL_EXPORTER_OTLP_<name>`.
fn otlp<T>(name: &str) -> anyhow::Result<Option<T>>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match optional(&format!("OTEL_EXPORTER_OTLP_TRACES_{name}"))? {
        Some(value) => Ok(Some(value)),
        None => optional(&format!("OTEL_EXPORTER_OTLP_{name}")),
    }
}

/// Reads a required variable.
pub fn required<T>(name: &str) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    optional(name)?.with_context(|| format!("{name} must be set"))
}

/// Reads a secret from the file named by `name` (e.g. `MRBILL_SERVICE_TOKEN_FILE`).
pub fn secret_file(name: &str) -> anyhow::Result<Option<SecretString>> {
    let Some(path) = optional::<PathBuf>(name)? else {
        return Ok(None);
    };
    crate::secrets::read_secret(&path)
        .map(Some)
        .with_context(|| format!("{name}={}", path.display()))
}

/// A comma-separated list of IPs or CIDRs.
pub fn ip_nets(name: &str) -> anyhow::Result<Vec<IpNet>> {
    let Some(raw) = optional::<String>(name)? else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| anyhow::anyhow!("{name}: `{s}` is not an IP address or CIDR"))
        })
        .collect()
}

/// Settings every cell service has.
#[derive(Clone, Debug)]
pub struct CommonConfig {
    /// Public listener (reached through the router). Port 0 picks a free port.
    pub http_addr: SocketAddr,
    /// Internal listener (`/internal/...`), never forwarded by the router.
    pub internal_addr: SocketAddr,
    /// This cell's id: JWT audience and the expected `X-Cell-Id`.
    pub cell_id: String,
    /// The tenant slug this cell serves.
    pub tenant: String,
    pub database_url: SecretString,
    /// Peers whose `X-Forwarded-For` is trusted (the router).
    pub trusted_proxies: Vec<IpNet>,
    pub log_format: LogFormat,
    /// Largest accepted request body in bytes.
    pub body_limit: usize,
    /// Where to write `{"public": addr, "internal": addr}` once both listeners are bound.
    pub ready_file: Option<PathBuf>,
}

impl CommonConfig {
    /// Reads the `MRBILL_*` variables shared by all services.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            http_addr: optional(var::HTTP_ADDR)?
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
            internal_addr: optional(var::INTERNAL_ADDR)?
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
            cell_id: required(var::CELL_ID)?,
            tenant: required(var::TENANT)?,
            database_url: match secret_file(Secret::DatabaseUrl.env())? {
                Some(url) => url,
                None => SecretString::from(required::<String>("MRBILL_DATABASE_URL")?),
            },
            trusted_proxies: ip_nets(var::TRUSTED_PROXIES)?,
            log_format: optional(var::LOG_FORMAT)?.unwrap_or_default(),
            body_limit: optional("MRBILL_BODY_LIMIT_BYTES")?
                .unwrap_or(cell_model::contract::BODY_LIMIT),
            ready_file: optional(var::READY_FILE)?,
        })
    }

    /// A config for tests: loopback, port 0, compact logs.
    pub fn for_tests(cell_id: &str, tenant: &str, database_url: &str) -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            internal_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            cell_id: cell_id.to_owned(),
            tenant: tenant.to_owned(),
            database_url: SecretString::from(database_url.to_owned()),
            trusted_proxies: vec![IpNet::from(std::net::IpAddr::from([127, 0, 0, 1]))],
            log_format: LogFormat::Compact,
            body_limit: cell_model::contract::BODY_LIMIT,
            ready_file: None,
        }
    }
}
