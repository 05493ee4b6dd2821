//! Logging, metrics and trace set-up shared by every binary.
//!
//! Logs: JSON lines (production) or compact text (local), filtered by `RUST_LOG` (default
//! `info`). Each request runs in a span carrying its `request_id` (and, when traces are
//! exported, its `trace_id` and `span_id`), so every line a handler logs carries them too.
//! Traces: [`trace`]. Metrics: one process-wide Prometheus recorder rendered at `/metrics`; names
//! follow `<namespace>_<name>_<unit>`.

use std::str::FromStr;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

mod db;
mod export;
pub mod record;
pub mod trace;

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

/// Installs the global log subscriber (once; later calls are no-ops), the trace export when
/// configured ([`trace`]) and the metrics recorder. Logs go to stderr so stdout stays free for
/// machine-readable output.
pub fn init(service: &'static str, format: LogFormat) {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        // The recorder first: the trace pipeline registers its counters.
        metrics_handle();
        let filter =
            || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let tracer = match crate::config::TraceEnv::read() {
            Ok(env) => trace::install(service, &env),
            Err(e) => {
                // The log subscriber is not installed yet.
                eprintln!("{service}: traces not exported: {e:#}");
                None
            }
        };
        // Spans at info and above become trace spans, and so do warnings and errors (as events of
        // their span); debug detail stays in the logs.
        let otel = tracer.clone().map(|tracer| {
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_level(false)
                .with_tracked_inactivity(false)
                .with_filter(filter_fn(|meta| {
                    if meta.is_span() {
                        *meta.level() <= Level::INFO
                    } else {
                        *meta.level() <= Level::WARN && meta.target() != db::TARGET
                    }
                }))
        });
        let traced = tracer.is_some();
        let db = db::DbSpans::new(tracer)
            .with_filter(filter_fn(move |meta| traced && db::DbSpans::wants(meta)));
        let logs = match format {
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(std::io::stderr)
                .with_filter(filter())
                .boxed(),
            LogFormat::Compact => tracing_subscriber::fmt::layer()
                .compact()
                .with_writer(std::io::stderr)
                .with_filter(filter())
                .boxed(),
        };
        // A list rather than optional layers: an absent `Option` layer declares an interest in
        // every callsite, which makes each disabled `debug!`/`trace!` in a dependency's hot path
        // (hyper's connection pool: four per proxied request) dispatch its event to be
        // filtered, instead of being skipped where it is. The database layer stays outside the
        // list, which does not tell its layers their dispatcher.
        let mut layers = Vec::from_iter(otel.map(Layer::boxed));
        layers.push(logs);
        // A subscriber may already be set (e.g. by a test harness); that is fine.
        let _ = tracing_subscriber::registry()
            .with(db)
            .with(layers)
            .try_init();
        tracing::info!(service, traces = trace::enabled(), "telemetry initialised");
    });
}

/// Flushes what must leave the process before it ends (queued trace spans).
pub fn shutdown() {
    trace::shutdown();
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
