//! Traces: OpenTelemetry spans exported over OTLP/HTTP (protobuf), off unless the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set and
//! `OTEL_SDK_DISABLED` is not `true`.
//!
//! - **Sampling** follows the standard `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`
//!   (e.g. `parentbased_traceidratio` and `0.1`); unset, every trace is kept
//!   (`parentbased_always_on`). A sampled caller's trace is always continued.
//! - **Never in a request's way**: a finished span goes into a bounded queue
//!   (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048) that one background thread exports in batches
//!   (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, 512) at the lowest CPU priority (`SCHED_IDLE`, its HTTP
//!   client's thread too): when the CPU is short, requests win and the queue fills. What is
//!   lost is counted in `mrbill_trace_spans_dropped_total{reason=…}` (exported spans in
//!   `mrbill_trace_spans_exported_total`): `queue_full`, a span that found the queue full;
//!   `export_failed`, a batch the collector did not take (down, refusing, slow past
//!   `OTEL_EXPORTER_OTLP_TIMEOUT`), and after such a failure the batches of the next second
//!   (doubling up to 30 s while it keeps failing), dropped unencoded and unsent.
//! - **Collector over HTTPS**: the system's roots, plus the CA in `OTEL_EXPORTER_OTLP_CERTIFICATE`
//!   and a client certificate (`…_CLIENT_CERTIFICATE`, `…_CLIENT_KEY`) for mutual TLS; headers
//!   such as an API key in `OTEL_EXPORTER_OTLP_HEADERS` (each also as `…_TRACES_…`).
//! - **Propagation**: W3C `traceparent` / `tracestate` ([`extract`], [`inject`], [`propagate`]).
//! - **Resource**: `service.name` (the binary, unless `OTEL_SERVICE_NAME`), and a cell service's
//!   `mrbill.tenant` and `mrbill.cell` (from its cell contract), plus `OTEL_RESOURCE_ATTRIBUTES`.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::config::TraceEnv;

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The W3C `traceparent` header's name, made once.
pub static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Whether this process exports traces.
pub fn enabled() -> bool {
    PROVIDER.get().is_some()
}

/// The process's tracer, for spans made without `tracing` (the control plane's operations; its
/// sampler and id generator for the spans of a [`super::record::Recorder`]); `None` when traces
/// are off.
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
    let resource = resource(service, env);
    let processor = match super::export::processor(env, &resource) {
        Ok(processor) => processor,
        Err(e) => {
            // The log subscriber is not installed yet.
            eprintln!("{service}: traces not exported: {e:#}");
            return None;
        }
    };
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build();
    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer(service);
    super::record::configure(service, env);
    let _ = PROVIDER.set(provider);
    let _ = TRACER.set(tracer.clone());
    Some(tracer)
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
    super::record::stop_all();
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5))
    {
        tracing::warn!(error = %e, "traces not all exported at shutdown");
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
    if !headers.contains_key(&TRACEPARENT) {
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
