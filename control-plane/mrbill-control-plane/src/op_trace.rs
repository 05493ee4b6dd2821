//! One trace per operation, when traces are exported: the trace id is the operation's id (a
//! UUID is 128 bits, like a trace id), so every pass over it — across retries, waits and control
//! plane restarts — adds its step spans to the same trace. Each step attempt is a span (outcome
//! done, waiting or failed) whose parent is the operation's span; that span is written once the
//! operation ends, from the time in its UUIDv7 to the end. Operations are few, so every one is
//! traced whatever the sampler says about requests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    Link, SamplingDecision, SamplingResult, Span as _, SpanContext, SpanId, SpanKind, Status,
    TraceContextExt as _, TraceFlags, TraceId, TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use service_kit::telemetry::trace;
use uuid::Uuid;

use crate::catalog::Op;

/// The operation's trace id and its span's id, both from its UUID.
fn ids(op_id: Uuid) -> (TraceId, SpanId) {
    let bytes = op_id.into_bytes();
    let mut span = [0u8; 8];
    span.copy_from_slice(&bytes[8..]);
    // Never the invalid all-zero id.
    span[7] |= 1;
    (TraceId::from_bytes(bytes), SpanId::from_bytes(span))
}

/// The parent of the operation's step spans (empty when traces are off).
pub fn context(op_id: Uuid) -> Context {
    if !trace::enabled() {
        return Context::new();
    }
    let (trace_id, span_id) = ids(op_id);
    Context::new().with_remote_span_context(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ))
}

/// The operation's span as a `traceparent` (what the operation it queues links to); `None`
/// when traces are off.
pub fn traceparent(op_id: Uuid) -> Option<String> {
    trace::enabled().then(|| {
        let (trace_id, span_id) = ids(op_id);
        format!("00-{trace_id}-{span_id}-01")
    })
}

/// A step attempt's span, a child of the operation's.
pub fn step_span(op_id: Uuid, op: Op, step: &str, tenant: &str, cell: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "step",
        mrbill.op = op.as_str(),
        mrbill.step = step,
        mrbill.tenant = tenant,
        mrbill.cell = cell,
        mrbill.outcome = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    trace::adopt(&span, context(op_id));
    trace::rename(&span, || format!("{} {step}", op.as_str()));
    span
}

/// How an operation ended and what queued it.
pub struct Ended<'a> {
    pub tenant: &'a str,
    pub cell: &'a str,
    /// `done` or `superseded`.
    pub outcome: &'static str,
    /// The `traceparent` of what queued it (the API request, or the operation before it).
    pub queued_by: Option<&'a str>,
}

/// Writes the operation's span: from its start (its UUIDv7's time) to now, linked to the span
/// that queued it.
pub fn finished(op_id: Uuid, op: Op, ended: Ended<'_>) {
    let Some(tracer) = trace::tracer() else {
        return;
    };
    let Ended {
        tenant,
        cell,
        outcome,
        queued_by,
    } = ended;
    let links = queued_by
        .map(|parent| {
            trace::from_traceparent(parent)
                .span()
                .span_context()
                .clone()
        })
        .filter(SpanContext::is_valid)
        .map(Link::with_context)
        .into_iter()
        .collect();
    let (trace_id, span_id) = ids(op_id);
    let start = op_id
        .get_timestamp()
        .map(|t| {
            let (secs, nanos) = t.to_unix();
            UNIX_EPOCH + Duration::new(secs, nanos)
        })
        .unwrap_or_else(SystemTime::now);
    let mut span = tracer
        .span_builder(op.as_str())
        .with_trace_id(trace_id)
        .with_span_id(span_id)
        .with_kind(SpanKind::Internal)
        .with_start_time(start)
        .with_links(links)
        .with_sampling_result(SamplingResult {
            decision: SamplingDecision::RecordAndSample,
            attributes: Vec::new(),
            trace_state: TraceState::default(),
        })
        .with_attributes([
            KeyValue::new("mrbill.op", op.as_str()),
            KeyValue::new("mrbill.tenant", tenant.to_owned()),
            KeyValue::new("mrbill.cell", cell.to_owned()),
            KeyValue::new("mrbill.outcome", outcome),
        ])
        .start_with_context(tracer, &Context::new());
    span.set_status(Status::Ok);
    span.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operations_ids_come_from_its_uuid() {
        let op = Uuid::now_v7();
        let (trace_id, span_id) = ids(op);
        assert_eq!(trace_id.to_bytes(), op.into_bytes());
        assert_ne!(span_id, SpanId::INVALID);
        assert_eq!(ids(op), (trace_id, span_id), "the same every pass");
        assert_eq!(
            ids(Uuid::nil()).1,
            SpanId::from_bytes([0, 0, 0, 0, 0, 0, 0, 1])
        );
    }
}
