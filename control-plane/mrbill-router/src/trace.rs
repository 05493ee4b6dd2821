//! A span per proxied request, when traces are exported (`OTEL_EXPORTER_OTLP_ENDPOINT`): a
//! server span that continues the client's `traceparent` (or starts a trace), named
//! `<METHOD> <service>` and carrying the tenant, its cell and the answer's status, and whose
//! context the cell receives as its `traceparent`. With traces off nothing is made and the
//! client's `traceparent` reaches the cell untouched.
//!
//! It runs on every request, so the request pays for little: its ids (the tracer's sampler and
//! id generator), two clock readings, a `traceparent` written straight from the ids, and a small
//! record of static names and the route's reference-counted attributes ([`RouteAttributes`]),
//! queued when the request ends. The exporter's thread makes the span of it, at the lowest CPU
//! priority ([`service_kit::telemetry::record`]).

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::BytesMut;
use cell_model::contract::Service;
use http::{HeaderValue, Method, StatusCode};
use opentelemetry::trace::{
    SamplingDecision, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue, StringValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use service_kit::telemetry::record::{Finished, Recorder};
use service_kit::telemetry::trace::{self, TRACEPARENT};

/// The recorder of request spans, started with the first traced request.
fn recorder() -> Option<&'static Recorder<RequestSpan>> {
    static RECORDER: OnceLock<Option<Recorder<RequestSpan>>> = OnceLock::new();
    RECORDER.get_or_init(Recorder::start).as_ref()
}

/// A route's span attributes, made when the table is compiled (a request's record holds them
/// by one count; its span's attributes are copies of reference-counted strings).
#[derive(Debug, Clone)]
pub(crate) struct RouteAttributes(Arc<[KeyValue; 2]>);

impl RouteAttributes {
    pub(crate) fn new(tenant: &str, cell: &str) -> Self {
        Self(Arc::new([
            KeyValue::new("mrbill.tenant", StringValue::from(Arc::<str>::from(tenant))),
            KeyValue::new("mrbill.cell", StringValue::from(Arc::<str>::from(cell))),
        ]))
    }

    /// A copy behind its own reference count (a worker's own: `targets::Worker`).
    pub(crate) fn copy(&self) -> Self {
        Self(Arc::new((*self.0).clone()))
    }
}

/// A request on its way: when it arrived and the client's trace.
pub(crate) struct Arrived {
    at: SystemTime,
    parent: Context,
}

/// A request's span until it ends: its context (handed on to the cell) and, when the trace is
/// sampled, what the exported span is made of.
pub(crate) struct RequestSpan {
    context: SpanContext,
    parent: SpanId,
    parent_is_remote: bool,
    name: &'static str,
    method: &'static str,
    route: Option<(RouteAttributes, Service)>,
    start: SystemTime,
    end: SystemTime,
    status: u16,
}

impl Arrived {
    /// If traces are exported.
    pub(crate) fn now(headers: &http::HeaderMap) -> Option<Self> {
        recorder()?;
        Some(Self {
            at: SystemTime::now(),
            parent: trace::extract(headers),
        })
    }

    /// The span's ids and sampling, as the SDK's tracer decides them (its sampler and id
    /// generator, configured from the standard variables).
    fn span(
        self,
        name: &'static str,
        method: &Method,
        route: Option<(RouteAttributes, Service)>,
    ) -> Option<RequestSpan> {
        let tracer = trace::tracer()?;
        let parent_span = self.parent.span();
        let parent = parent_span.span_context();
        let trace_id = if parent.is_valid() {
            parent.trace_id()
        } else {
            tracer.id_generator().new_trace_id()
        };
        let sampled = tracer.should_sample().should_sample(
            Some(&self.parent),
            trace_id,
            name,
            &SpanKind::Server,
            &[],
            &[],
        );
        let flags = match sampled.decision {
            SamplingDecision::RecordAndSample => parent.trace_flags().with_sampled(true),
            SamplingDecision::RecordOnly => parent.trace_flags().with_sampled(false),
            SamplingDecision::Drop => TraceFlags::default(),
        };
        let context = SpanContext::new(
            trace_id,
            tracer.id_generator().new_span_id(),
            flags,
            false,
            sampled.trace_state,
        );
        Some(RequestSpan {
            context,
            parent: parent.span_id(),
            parent_is_remote: parent.is_valid() && parent.is_remote(),
            name,
            method: method_name(method),
            route,
            start: self.at,
            end: self.at,
            status: 0,
        })
    }

    /// The span of a request routed to `service` of the route with `route`'s attributes.
    pub(crate) fn routed(
        self,
        method: &Method,
        service: Service,
        route: &RouteAttributes,
    ) -> Option<RequestSpan> {
        self.span(
            span_name(method, service),
            method,
            Some((route.clone(), service)),
        )
    }

    /// Ends the span of a request refused before it was routed (no such tenant, limited).
    pub(crate) fn refused(self, method: &Method, status: StatusCode) {
        if let Some(span) = self.span(method_name(method), method, None) {
            span.end(status);
        }
    }
}

impl RequestSpan {
    /// Hands this span's context on to the cell: `traceparent` written from its ids (the
    /// client's `tracestate`, if any, goes on as it came).
    pub(crate) fn inject(&self, headers: &mut http::HeaderMap) {
        headers.insert(TRACEPARENT.clone(), header_value(&self.traceparent()));
    }

    /// This span's `traceparent` (the fast path writes it into the cell's head itself).
    pub(crate) fn traceparent(&self) -> [u8; 55] {
        let ids = &self.context;
        traceparent(
            ids.trace_id().to_bytes(),
            ids.span_id().to_bytes(),
            ids.trace_flags().to_u8(),
        )
    }

    /// Ends the span with the answer's status (5xx: an error) and queues it for export if its
    /// trace is sampled.
    pub(crate) fn end(mut self, status: StatusCode) {
        if !self.context.is_sampled() {
            return;
        }
        if let Some(recorder) = recorder() {
            self.end = SystemTime::now();
            self.status = status.as_u16();
            recorder.record(self);
        }
    }
}

impl Finished for RequestSpan {
    fn into_span(self, scope: InstrumentationScope) -> SpanData {
        let mut attributes = Vec::with_capacity(5);
        if let Some((route, service)) = &self.route {
            attributes.extend(route.0.iter().cloned());
            attributes.push(KeyValue::new("mrbill.service", service.name()));
        }
        attributes.push(KeyValue::new("http.request.method", self.method));
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(self.status),
        ));
        let status = match StatusCode::from_u16(self.status) {
            Ok(code) if code.is_server_error() => Status::error(code.as_str().to_owned()),
            _ => Status::Unset,
        };
        SpanData {
            span_context: self.context,
            parent_span_id: self.parent,
            parent_span_is_remote: self.parent_is_remote,
            span_kind: SpanKind::Server,
            name: Cow::Borrowed(self.name),
            start_time: self.start,
            end_time: self.end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: scope,
        }
    }
}

/// A `traceparent` as a header value, in shared bytes cut from a larger buffer of this
/// thread's: the header is copied when the request is kept for a retry, and shared bytes are
/// copied by a count rather than an allocation (one allocation per ~70 requests).
#[allow(unsafe_code)]
fn header_value(traceparent: &[u8; 55]) -> HeaderValue {
    thread_local! {
        static SLAB: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    }
    let bytes = SLAB.with_borrow_mut(|slab| {
        if slab.capacity() < traceparent.len() {
            *slab = BytesMut::with_capacity(4096);
        }
        slab.extend_from_slice(traceparent);
        slab.split().freeze()
    });
    // SAFETY: a `traceparent` written by [`traceparent`] holds only `0`–`9`, `a`–`f` and `-`,
    // all visible ASCII, which is all a header value must be (the checked constructor would
    // check each of the 55 bytes on every request to find that; a test checks it accepts them,
    // and debug builds check every value).
    unsafe { HeaderValue::from_maybe_shared_unchecked(bytes) }
}

/// `00-<trace id>-<span id>-<flags>` in lower-case hex, written without the formatting
/// machinery (it runs on every traced request).
fn traceparent(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> [u8; 55] {
    /// Each byte's two hex digits.
    const HEX: [[u8; 2]; 256] = {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut table = [[0; 2]; 256];
        let mut byte = 0;
        while byte < 256 {
            table[byte] = [DIGITS[byte >> 4], DIGITS[byte & 0x0f]];
            byte += 1;
        }
        table
    };
    fn hex(out: &mut [u8], bytes: &[u8]) {
        for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
            pair.copy_from_slice(&HEX[usize::from(*byte)]);
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
    fn every_traceparent_is_a_valid_header_value() {
        for byte in 0..=255 {
            let value = traceparent([byte; 16], [byte; 8], byte);
            let checked = HeaderValue::from_bytes(&value).expect("a valid header value");
            assert_eq!(header_value(&value), checked);
        }
        let values: Vec<_> = (0..200)
            .map(|n| header_value(&traceparent([n; 16], [n; 8], 1)))
            .collect();
        for (n, value) in (0..200).zip(&values) {
            assert_eq!(
                value.as_bytes(),
                &traceparent([n; 16], [n; 8], 1),
                "cut from a shared buffer, each keeps its own bytes"
            );
        }
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
