//! A span per proxied request, when traces are exported (`OTEL_EXPORTER_OTLP_ENDPOINT`): a
//! server span that continues the client's `traceparent` (or starts a trace), named
//! `<METHOD> <service>` and carrying the tenant, its cell and the answer's status, and whose
//! context the cell receives as its `traceparent`. With traces off nothing is made and the
//! client's `traceparent` reaches the cell untouched.
//!
//! It runs on every request, so it is made once, when the request is routed (timed from its
//! arrival), from parts made ahead: static names, the tenant's and cell's attributes compiled
//! with the route ([`RouteAttributes`]), the `traceparent` written straight from the span's ids.

use std::sync::Arc;
use std::time::SystemTime;

use cell_model::contract::Service;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use opentelemetry::trace::{Span as _, SpanBuilder, SpanKind, Status, Tracer as _};
use opentelemetry::{Context, KeyValue, StringValue};
use service_kit::telemetry::trace;

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// A route's span attributes, made when the table is compiled (reference-counted strings).
#[derive(Debug, Clone)]
pub(crate) struct RouteAttributes([KeyValue; 2]);

impl RouteAttributes {
    pub(crate) fn new(tenant: &str, cell: &str) -> Self {
        Self([
            KeyValue::new("mrbill.tenant", StringValue::from(Arc::<str>::from(tenant))),
            KeyValue::new("mrbill.cell", StringValue::from(Arc::<str>::from(cell))),
        ])
    }
}

/// A request on its way: when it arrived and the client's trace.
pub(crate) struct Arrived {
    at: SystemTime,
    parent: Context,
}

/// A routed request's span.
pub(crate) struct RequestSpan(opentelemetry_sdk::trace::Span);

impl Arrived {
    /// If traces are exported.
    pub(crate) fn now(headers: &http::HeaderMap) -> Option<Self> {
        trace::tracer()?;
        Some(Self {
            at: SystemTime::now(),
            parent: trace::extract(headers),
        })
    }

    fn span(
        self,
        name: &'static str,
        method: &Method,
        attributes: Vec<KeyValue>,
    ) -> Option<RequestSpan> {
        let tracer = trace::tracer()?;
        let mut attributes = attributes;
        attributes.push(KeyValue::new("http.request.method", method_name(method)));
        let builder = SpanBuilder::from_name(name)
            .with_kind(SpanKind::Server)
            .with_start_time(self.at)
            .with_attributes(attributes);
        Some(RequestSpan(
            tracer.build_with_context(builder, &self.parent),
        ))
    }

    /// The span of a request routed to `service` of the route with `route`'s attributes.
    pub(crate) fn routed(
        self,
        method: &Method,
        service: Service,
        route: &RouteAttributes,
    ) -> Option<RequestSpan> {
        // Room for the method and, at the end, the status: the span keeps this vector, so
        // neither addition reallocates it.
        let mut attributes = Vec::with_capacity(5);
        attributes.extend([
            route.0[0].clone(),
            route.0[1].clone(),
            KeyValue::new("mrbill.service", service.name()),
        ]);
        self.span(span_name(method, service), method, attributes)
    }

    /// Ends the span of a request refused before it was routed (no such tenant, limited).
    pub(crate) fn refused(self, method: &Method, status: StatusCode) {
        if let Some(span) = self.span(method_name(method), method, Vec::with_capacity(2)) {
            span.end(status);
        }
    }
}

impl RequestSpan {
    /// Hands this span's context on to the cell: `traceparent` written from its ids (the
    /// client's `tracestate`, if any, goes on as it came).
    pub(crate) fn inject(&self, headers: &mut http::HeaderMap) {
        let ids = self.0.span_context();
        let value = traceparent(
            ids.trace_id().to_bytes(),
            ids.span_id().to_bytes(),
            ids.trace_flags().to_u8(),
        );
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            headers.insert(TRACEPARENT.clone(), value);
        }
    }

    /// Ends the span with the answer's status (5xx: an error).
    pub(crate) fn end(mut self, status: StatusCode) {
        self.0.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
        if status.is_server_error() {
            self.0.set_status(Status::error(status.as_str().to_owned()));
        }
        self.0.end();
    }
}

/// `00-<trace id>-<span id>-<flags>` in lower-case hex, written without the formatting
/// machinery (it runs on every traced request).
fn traceparent(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> [u8; 55] {
    fn hex(out: &mut [u8], bytes: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0x0f)];
        }
    }
    let mut value = [b'-'; 55];
    value[..2].copy_from_slice(b"00");
    hex(&mut value[3..35], &trace_id);
    hex(&mut value[36..52], &span_id);
    hex(&mut value[53..55], &[flags]);
    value
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "HTTP",
    }
}

/// `<METHOD> <service>`, without allocating.
fn span_name(method: &Method, service: Service) -> &'static str {
    macro_rules! names {
        ($($m:ident => $s:literal),* $(,)?) => {
            match (method_name(method), service) {
                $(
                    ($s, Service::Poc) => concat!($s, " poc"),
                    ($s, Service::Dojo) => concat!($s, " dojo"),
                    ($s, Service::Media) => concat!($s, " media"),
                )*
                (_, Service::Poc) => "HTTP poc",
                (_, Service::Dojo) => "HTTP dojo",
                (_, Service::Media) => "HTTP media",
            }
        };
    }
    names!(GET => "GET", POST => "POST", PUT => "PUT", PATCH => "PATCH", DELETE => "DELETE",
        HEAD => "HEAD", OPTIONS => "OPTIONS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_version_ids_and_flags_in_lower_hex() {
        let trace_id = [
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
            0x47, 0x36,
        ];
        let span_id = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
        assert_eq!(
            &traceparent(trace_id, span_id, 1),
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn span_names_are_method_and_service() {
        assert_eq!(span_name(&Method::POST, Service::Media), "POST media");
        assert_eq!(span_name(&Method::GET, Service::Poc), "GET poc");
        assert_eq!(
            span_name(
                &Method::from_bytes(b"PROPFIND").expect("method"),
                Service::Dojo
            ),
            "HTTP dojo"
        );
    }
}
