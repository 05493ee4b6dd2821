//! A span per proxied request, when traces are exported (`OTEL_EXPORTER_OTLP_ENDPOINT`): a
//! server span that continues the client's `traceparent` (or starts a trace), named
//! `<METHOD> <service>` and carrying the tenant, its cell and the answer's status, and whose
//! context the cell receives as its `traceparent`. Made with the OpenTelemetry API directly, not
//! through `tracing`, to keep the proxy path lean; with traces off nothing is made and the
//! client's `traceparent` reaches the cell untouched.

use cell_model::contract::Service;
use http::{HeaderValue, StatusCode};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use service_kit::telemetry::trace;

/// One request's span and the context the cell continues.
pub(crate) struct RequestTrace {
    cx: Context,
}

impl RequestTrace {
    /// The span of a request, if traces are exported.
    pub(crate) fn start(parts: &http::request::Parts) -> Option<Self> {
        let tracer = trace::tracer()?;
        let parent = trace::extract(&parts.headers);
        let method = parts.method.as_str().to_owned();
        let span = tracer
            .span_builder(method.clone())
            .with_kind(SpanKind::Server)
            .with_attributes([KeyValue::new("http.request.method", method)])
            .start_with_context(tracer, &parent);
        Some(Self {
            cx: parent.with_span(span),
        })
    }

    /// The request's tenant and service, once known.
    pub(crate) fn routed(&self, method: &http::Method, tenant: &str, service: Service) {
        let span = self.cx.span();
        span.update_name(format!("{method} {}", service.name()));
        span.set_attribute(KeyValue::new("mrbill.tenant", tenant.to_owned()));
        span.set_attribute(KeyValue::new("mrbill.service", service.name()));
    }

    /// The cell serving it.
    pub(crate) fn cell(&self, cell: &HeaderValue) {
        if let Ok(cell) = cell.to_str() {
            self.cx
                .span()
                .set_attribute(KeyValue::new("mrbill.cell", cell.to_owned()));
        }
    }

    /// Hands this span's context on to the cell (`traceparent`, `tracestate`).
    pub(crate) fn inject(&self, headers: &mut http::HeaderMap) {
        trace::inject(&self.cx, headers);
    }

    /// Ends the span with the answer's status (5xx: an error).
    pub(crate) fn end(self, status: StatusCode) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
        if status.is_server_error() {
            span.set_status(Status::error(status.as_str().to_owned()));
        }
        span.end();
    }
}
