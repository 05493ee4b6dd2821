//! Database calls as child spans. sqlx reports every statement it finishes as a `sqlx::query`
//! event with its text and duration; this layer turns each one that happens inside a traced span
//! into a client span of that span, named `<OPERATION> <table>` (`SELECT pocs`), timed from the
//! event's `elapsed`. Statements are parameterised, so no value reaches the span; the text is
//! not exported at all, only the name.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry_sdk::trace::SdkTracer;
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The target sqlx logs its statements under.
pub(super) const TARGET: &str = "sqlx::query";

/// Installed whether or not traces are exported (its filter then wants nothing): a layer in an
/// `Option` is never told its dispatcher, which this one needs.
pub(super) struct DbSpans {
    tracer: Option<SdkTracer>,
    dispatch: OnceLock<tracing::dispatcher::WeakDispatch>,
}

impl DbSpans {
    pub(super) fn new(tracer: Option<SdkTracer>) -> Self {
        Self {
            tracer,
            dispatch: OnceLock::new(),
        }
    }

    /// sqlx's statement events (and its `enabled!` check before it makes one, whose metadata is
    /// neither an event nor a span), and the spans the trace layer exports: a filtered layer's
    /// context only finds the spans its own filter lets in.
    pub(super) fn wants(meta: &Metadata<'_>) -> bool {
        if meta.is_span() {
            *meta.level() <= tracing::Level::INFO
        } else {
            meta.target() == TARGET
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for DbSpans
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(tracer) = &self.tracer else {
            return;
        };
        let Some(span) = ctx.event_span(event) else {
            return; // a statement outside any request, job or step (a sweep): not traced
        };
        let Some(dispatch) = self.dispatch.get().and_then(|d| d.upgrade()) else {
            return;
        };
        let Some(parent) =
            tracing_opentelemetry::get_otel_context(&mut span.extensions_mut(), &dispatch)
        else {
            return;
        };
        if !parent.span().span_context().is_sampled() {
            return;
        }
        let mut statement = Statement::default();
        event.record(&mut statement);
        let end = SystemTime::now();
        let start = end
            .checked_sub(Duration::from_secs_f64(statement.elapsed.max(0.0)))
            .unwrap_or(end);
        let name = statement.name();
        let mut db = tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .with_attributes([
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.response.returned_rows", statement.rows),
            ])
            .start_with_context(tracer, &parent);
        db.end_with_timestamp(end);
    }
}

/// What one `sqlx::query` event says.
#[derive(Default)]
struct Statement {
    /// The full text when longer than the summary, else empty.
    text: String,
    summary: String,
    elapsed: f64,
    rows: i64,
}

impl Statement {
    /// `<OPERATION> <table>` in OpenTelemetry's style, from the statement's text.
    fn name(&self) -> String {
        let sql = if self.text.trim().is_empty() {
            &self.summary
        } else {
            &self.text
        };
        query_name(sql)
    }
}

impl Visit for Statement {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_owned(),
            "db.statement" => self.text = value.to_owned(),
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed = value;
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "rows_returned" {
            self.rows = i64::try_from(value).unwrap_or(i64::MAX);
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

/// `SELECT … FROM pocs …` → `SELECT pocs`; `INSERT INTO media_jobs …` → `INSERT media_jobs`;
/// a statement without a recognisable table keeps its operation only.
pub(super) fn query_name(sql: &str) -> String {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let operation = words
        .first()
        .map(|w| w.trim_start_matches('(').to_ascii_uppercase())
        .unwrap_or_else(|| "QUERY".into());
    let table = words
        .windows(2)
        .find(|pair| {
            ["FROM", "INTO", "UPDATE", "JOIN"]
                .iter()
                .any(|k| pair[0].eq_ignore_ascii_case(k))
                && !pair[1].starts_with('(')
        })
        .map(|pair| {
            pair[1]
                .trim_matches(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
                .to_owned()
        })
        .filter(|t| !t.is_empty());
    match table {
        Some(table) => format!("{operation} {table}"),
        None => operation,
    }
}

#[cfg(test)]
mod tests {
    use super::query_name;

    #[test]
    fn statements_are_named_by_operation_and_table() {
        assert_eq!(
            query_name("SELECT id, title FROM pocs WHERE id = $1"),
            "SELECT pocs"
        );
        assert_eq!(
            query_name("\n\ninsert into media_jobs (id) values ($1)\n"),
            "INSERT media_jobs"
        );
        assert_eq!(
            query_name("UPDATE media_jobs SET state = 'done'"),
            "UPDATE media_jobs"
        );
        assert_eq!(
            query_name("WITH due AS (SELECT id FROM media_jobs) UPDATE x"),
            "WITH media_jobs"
        );
        assert_eq!(query_name("SELECT 1"), "SELECT");
        assert_eq!(query_name(""), "QUERY");
    }
}
