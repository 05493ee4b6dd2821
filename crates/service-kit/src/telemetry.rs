//! Logging and metrics set-up shared by every binary.
//!
//! Logs: JSON lines (production) or compact text (local), filtered by `RUST_LOG` (default
//! `info`). Each request runs in a span carrying its `request_id`, so every line a handler logs
//! carries it too. Metrics: one process-wide Prometheus recorder rendered at `/metrics`; names
//! follow `<namespace>_<name>_<unit>`.

use std::str::FromStr;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Json,
    Compact,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(LogFormat::Json),
            "compact" | "text" => Ok(LogFormat::Compact),
            _ => Err(format!("unknown log format `{s}` (json or compact)")),
        }
    }
}

/// Installs the global log subscriber (once; later calls are no-ops) and the metrics recorder.
/// Logs go to stderr so stdout stays free for machine-readable output.
pub fn init(service: &'static str, format: LogFormat) {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        // A subscriber may already be set (e.g. by a test harness); that is fine.
        let _ = match format {
            LogFormat::Json => builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .try_init(),
            LogFormat::Compact => builder.compact().try_init(),
        };
        tracing::info!(service, "telemetry initialised");
    });
    metrics_handle();
}

/// The process-wide Prometheus handle, installing the recorder on first use.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
            .expect("static bucket list is non-empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Only fails if another recorder was installed first; then ours simply renders nothing.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed");
        }
        handle
    })
}
