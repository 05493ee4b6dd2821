//! Traces: OpenTelemetry spans exported over OTLP/HTTP (protobuf), off unless the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set and
//! `OTEL_SDK_DISABLED` is not `true`.
//!
//! - **Sampling** follows the standard `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`
//!   (e.g. `parentbased_traceidratio` and `0.1`); unset, every trace is kept
//!   (`parentbased_always_on`). A sampled caller's trace is always continued.
//! - **Never in a request's way**: a finished span goes into a bounded queue
//!   (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048) that one background thread exports in batches (of 128
//!   unless `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` says otherwise), at the
//!   lowest CPU priority (`SCHED_IDLE`, its HTTP client's thread too): when the CPU is short,
//!   requests win and the queue fills. A
//!   span that finds the queue full is dropped, and so is every span of a batch the collector did
//!   not take (down, slow past `OTEL_EXPORTER_OTLP_TIMEOUT`); both are counted in
//!   `mrbill_trace_spans_dropped_total{reason="queue_full"|"export_failed"}`, exported ones in
//!   `mrbill_trace_spans_exported_total`.
//! - **Collector over HTTPS**: the system's roots, plus the CA in `OTEL_EXPORTER_OTLP_CERTIFICATE`
//!   and a client certificate (`…_CLIENT_CERTIFICATE`, `…_CLIENT_KEY`) for mutual TLS; headers
//!   such as an API key in `OTEL_EXPORTER_OTLP_HEADERS` (each also as `…_TRACES_…`).
//! - **Propagation**: W3C `traceparent` / `tracestate` ([`extract`], [`inject`], [`propagate`]).
//! - **Resource**: `service.name` (the binary, unless `OTEL_SERVICE_NAME`), and a cell service's
//!   `mrbill.tenant` and `mrbill.cell` (from its cell contract), plus `OTEL_RESOURCE_ATTRIBUTES`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, Span, SpanData,
    SpanExporter, SpanProcessor,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use anyhow::Context as _;
use opentelemetry_otlp::WithHttpConfig as _;

use crate::config::TraceEnv;

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Whether this process exports traces.
pub fn enabled() -> bool {
    PROVIDER.get().is_some()
}

/// The process's tracer, for spans made without `tracing` (the router's hot path, the control
/// plane's operations); `None` when traces are off.
pub fn tracer() -> Option<&'static SdkTracer> {
    TRACER.get()
}

/// Whether `var` is one of the standard variables a process hands on to the processes it starts
/// (the exporter's, the sampler's, the batch queue's, `OTEL_SDK_DISABLED`), so they trace alike;
/// `OTEL_SERVICE_NAME` is not, each names itself.
pub fn passed_on(var: &str) -> bool {
    ["OTEL_EXPORTER_OTLP_", "OTEL_TRACES_SAMPLER", "OTEL_BSP_"]
        .iter()
        .any(|prefix| var.starts_with(prefix))
        || matches!(
            var,
            "OTEL_SDK_DISABLED" | "OTEL_RESOURCE_ATTRIBUTES" | "OTEL_PROPAGATORS"
        )
}

/// Sets up the export pipeline if configured and returns the tracer the log subscriber's
/// OpenTelemetry layer uses. Called once, by [`super::init`].
pub(super) fn install(service: &'static str, env: &TraceEnv) -> Option<SdkTracer> {
    if env.disabled || !env.endpoint {
        return None;
    }
    let setup = {
        let env = env.clone();
        std::thread::Builder::new()
            .name("trace-setup".into())
            .spawn(move || {
                lowest_priority();
                pipeline(&env)
            })
    };
    let built = match setup {
        Ok(thread) => thread
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the set-up panicked"))),
        Err(e) => Err(e.into()),
    };
    let processor = match built {
        Ok(processor) => processor,
        Err(e) => {
            // The log subscriber is not installed yet.
            eprintln!("{service}: traces not exported: {e:#}");
            return None;
        }
    };
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource(service, env))
        .build();
    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer(service);
    let _ = PROVIDER.set(provider);
    let _ = TRACER.set(tracer.clone());
    Some(tracer)
}

/// The batch processor and its exporter. Made on a thread at the lowest CPU priority: the
/// threads they start, the processor's (which encodes each batch) and the HTTP client's (which
/// sends it), inherit that priority.
fn pipeline(env: &TraceEnv) -> anyhow::Result<Gated> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client(env)?)
        .build()?;
    let max = env.queue.unwrap_or(2048);
    let gate = Arc::new(Gate {
        queued: AtomicUsize::new(0),
        max,
        queue_full: metrics::counter!("mrbill_trace_spans_dropped_total", "reason" => "queue_full"),
        export_failed: metrics::counter!("mrbill_trace_spans_dropped_total", "reason" => "export_failed"),
        exported: metrics::counter!("mrbill_trace_spans_exported_total"),
    });
    let mut config = BatchConfigBuilder::default().with_max_queue_size(max);
    if !env.batch_size_set {
        // Small batches: the exporter encodes one in a fraction of a millisecond, never holding
        // a core long when it does run.
        config = config.with_max_export_batch_size(128);
    }
    let batch = BatchSpanProcessor::builder(Counted {
        inner: exporter,
        gate: gate.clone(),
    })
    .with_batch_config(config.build())
    .build();
    Ok(Gated { inner: batch, gate })
}

/// The exporter's HTTP client: the export's timeout, and for a collector behind TLS the CA its
/// certificate is checked against (besides the system's roots) and the client certificate for
/// mutual TLS, all from the standard variables.
fn client(env: &TraceEnv) -> anyhow::Result<reqwest::blocking::Client> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let mut builder = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_millis(env.timeout_ms.unwrap_or(10_000)));
    if let Some(path) = &env.certificate {
        let certificates = reqwest::Certificate::from_pem_bundle(&read(path)?)
            .with_context(|| format!("the collector's CA {}", path.display()))?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    match (&env.client_certificate, &env.client_key) {
        (Some(certificate), Some(key)) => {
            let mut pem = read(certificate)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .context("the client certificate and key for the collector")?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        _ => anyhow::bail!(
            "a client certificate for the collector needs both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY"
        ),
    }
    Ok(builder.build()?)
}

fn resource(service: &'static str, env: &TraceEnv) -> Resource {
    let mut builder = Resource::builder();
    if !env.service_name_set {
        builder = builder.with_service_name(service);
    }
    for (key, value) in [("mrbill.tenant", &env.tenant), ("mrbill.cell", &env.cell)] {
        if let Some(value) = value {
            builder = builder.with_attribute(KeyValue::new(key, value.clone()));
        }
    }
    builder.build()
}

/// Exports what is queued and stops the exporter (at the end of `main`; bounded by the
/// exporter's timeout).
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5))
    {
        tracing::warn!(error = %e, "traces not all exported at shutdown");
    }
}

/// The spans waiting for export, bounded.
#[derive(Debug)]
struct Gate {
    queued: AtomicUsize,
    max: usize,
    queue_full: metrics::Counter,
    export_failed: metrics::Counter,
    exported: metrics::Counter,
}

/// Fields of the request spans that are for the log lines only: the raw path (it holds ids; the
/// span has the route template), the request id, the ids of the span itself, the method twice.
/// They never leave the process.
const LOG_ONLY: &[&str] = &["path", "request_id", "trace_id", "span_id", "method"];

/// The batch processor behind a counted bound: it holds at most what [`Gate`] admits, so no span
/// is dropped without being counted (the SDK's own drops are only logged).
#[derive(Debug)]
struct Gated {
    inner: BatchSpanProcessor,
    gate: Arc<Gate>,
}

impl SpanProcessor for Gated {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        span.attributes
            .retain(|kv| !LOG_ONLY.contains(&kv.key.as_str()));
        if self.gate.queued.fetch_add(1, Ordering::Relaxed) >= self.gate.max {
            self.gate.queued.fetch_sub(1, Ordering::Relaxed);
            self.gate.queue_full.increment(1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, releasing the gate as batches leave the queue and counting the outcome.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    gate: Arc<Gate>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let n = batch.len();
        self.gate.queued.fetch_sub(n, Ordering::Relaxed);
        let sent = self.inner.export(batch);
        async move {
            let result = sent.await;
            match &result {
                Ok(()) => self.gate.exported.increment(n as u64),
                Err(_) => self.gate.export_failed.increment(n as u64),
            }
            result
        }
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Puts the calling thread, and the threads it starts from now on, at the lowest CPU priority:
/// `SCHED_IDLE`, which runs only on a core nothing else wants, else nice 19.
#[allow(unsafe_code)]
fn lowest_priority() {
    let idle = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler(2)` on the calling thread (id 0) with a valid, initialised
    // parameter it only reads; it touches no memory of this process.
    let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle) };
    if set != 0 {
        let _ = rustix::process::setpriority_process(None, 19);
    }
}

struct HeaderReader<'a>(&'a http::HeaderMap);

impl Extractor for HeaderReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderWriter<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderWriter<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The caller's trace context from `traceparent` / `tracestate` (empty when absent, invalid or
/// tracing is off).
pub fn extract(headers: &http::HeaderMap) -> Context {
    if !headers.contains_key("traceparent") {
        return Context::new(); // most requests: no global lookup
    }
    global::get_text_map_propagator(|p| p.extract(&HeaderReader(headers)))
}

/// Writes `cx` as `traceparent` / `tracestate` (nothing when it holds no valid span).
pub fn inject(cx: &Context, headers: &mut http::HeaderMap) {
    global::get_text_map_propagator(|p| p.inject_context(cx, &mut HeaderWriter(headers)));
}

/// The current span's context as `traceparent` / `tracestate` headers (none when tracing is
/// off).
fn current_headers() -> Option<http::HeaderMap> {
    if !enabled() {
        return None;
    }
    let mut headers = http::HeaderMap::new();
    inject(&tracing::Span::current().context(), &mut headers);
    Some(headers)
}

/// `request` carrying the current span's context, so the callee's spans join its trace.
pub fn propagate(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match current_headers() {
        Some(headers) => request.headers(headers),
        None => request,
    }
}

/// The current span's `traceparent`, to store with work done later (a media job).
pub fn current_traceparent() -> Option<String> {
    current_headers()?
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The context a stored [`current_traceparent`] names.
pub fn from_traceparent(traceparent: &str) -> Context {
    let mut headers = http::HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_str(traceparent) {
        headers.insert("traceparent", value);
    }
    extract(&headers)
}

/// Renames `span`'s trace span (already started, which `otel.name` no longer changes), e.g. once
/// the request's route is known. Nothing when tracing is off.
pub fn rename(span: &tracing::Span, name: impl FnOnce() -> String) {
    if enabled() {
        span.context().span().update_name(name());
    }
}

/// Sets an attribute on `span`'s trace span (not a log field). Nothing when tracing is off.
pub fn attribute(span: &tracing::Span, key: &'static str, value: impl Into<opentelemetry::Value>) {
    if enabled() {
        span.set_attribute(key, value);
    }
}

/// Marks `span`'s trace span as failed. Nothing when tracing is off.
pub fn failed(span: &tracing::Span) {
    if enabled() {
        span.set_status(opentelemetry::trace::Status::error(""));
    }
}

/// Makes `span` a child of `parent` and writes its `trace_id` / `span_id` fields (which the
/// span must declare, as `tracing::field::Empty`), so its log lines join its trace. Nothing
/// when tracing is off.
pub fn adopt(span: &tracing::Span, parent: Context) {
    if !enabled() {
        return;
    }
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let cx = span.context();
    let ids = cx.span().span_context().clone();
    if ids.is_valid() {
        span.record("trace_id", tracing::field::display(ids.trace_id()));
        span.record("span_id", tracing::field::display(ids.span_id()));
    }
}
