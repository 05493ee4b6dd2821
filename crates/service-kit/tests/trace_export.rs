//! The trace export against a real OTLP/HTTP receiver (`test_support::otlp`, which decodes the
//! protobuf): spans arrive with their parents and resource, those of `tracing` and those a
//! [`Recorder`] took alike; a collector that hangs or is down never holds the code that makes
//! spans, and every span it loses is counted. Each test sets
//! the process's environment and installs the global pipeline, so each runs in a process of its
//! own (nextest's default).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use service_kit::telemetry::record::{Finished, Recorder};
use service_kit::telemetry::{self, LogFormat, trace};
use test_support::otlp::{Collector, hex};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The value of the counter `name` with `labels` (as rendered, e.g. `reason="queue_full"`).
fn counter(name: &str, labels: &str) -> u64 {
    let rendered = telemetry::metrics_handle().render();
    let series = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    rendered
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Sets the standard variables and installs the pipeline. Called first in each test, before
/// the test starts any thread: nextest runs each test in a process of its own.
#[allow(unsafe_code)]
fn install(endpoint: &str, extra: &[(&str, &str)]) {
    let mut vars = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("MRBILL_TENANT", "acme"),
        ("MRBILL_CELL_ID", "cell-acme"),
    ];
    vars.extend_from_slice(extra);
    for (k, v) in vars {
        // SAFETY: no other thread of this process exists yet to read the environment.
        unsafe { std::env::set_var(k, v) };
    }
    telemetry::init("trace-export-test", LogFormat::Compact);
    assert!(trace::enabled());
}

/// A loopback listener for the collector and its URL, bound before any thread starts.
fn listener() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, url)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn spans_reach_the_collector_with_their_parents_and_resource() {
    let (listener, url) = listener();
    install(&url, &[]);
    runtime().block_on(async {
        let collector = Collector::serve(listener);
        let (trace_id, outer_id) = {
            let outer = tracing::info_span!("outer", otel.name = "GET /v1/things/{id}");
            let cx = outer.context();
            let ids = opentelemetry::trace::TraceContextExt::span(&cx)
                .span_context()
                .clone();
            outer.in_scope(|| {
                let inner = tracing::info_span!("inner");
                inner.in_scope(|| tracing::warn!("something to see"));
                // What sqlx reports of each statement it finishes.
                assert!(tracing::enabled!(target: "sqlx::query", tracing::Level::DEBUG));
                tracing::debug!(
                    target: "sqlx::query",
                    summary = "select id, name from",
                    db.statement = "\n\nSELECT id, name FROM pocs WHERE id = $1\n",
                    rows_affected = 0u64,
                    rows_returned = 1u64,
                    elapsed_secs = 0.002,
                );
                // Debug spans stay in the logs.
                tracing::debug_span!("detail").in_scope(|| {});
            });
            (ids.trace_id().to_string(), ids.span_id().to_string())
        };
        // A caller's traceparent is read.
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01",
            ),
        );
        let caller = trace::extract(&headers);
        assert_eq!(
            opentelemetry::trace::TraceContextExt::span(&caller)
                .span_context()
                .trace_id()
                .to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        // A stored traceparent continues the trace (media's jobs).
        let parent = format!("00-{trace_id}-{outer_id}-01");
        let job = tracing::info_span!(
            "job",
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty
        );
        trace::adopt(&job, trace::from_traceparent(&parent));
        drop(job);

        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while collector.trace(&trace_id).len() < 4 {
            assert!(
                std::time::Instant::now() < deadline,
                "spans never arrived: {:?}",
                collector.spans()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let spans = collector.trace(&trace_id);
        let named = |name: &str| {
            spans
                .iter()
                .find(|s| s.span.name == name)
                .unwrap_or_else(|| panic!("no span {name}: {spans:?}"))
        };
        let outer = named("GET /v1/things/{id}");
        assert_eq!(outer.span_id(), outer_id);
        assert!(outer.span.parent_span_id.is_empty(), "a root");
        assert_eq!(outer.service(), "trace-export-test");
        assert_eq!(
            outer.resource.get("mrbill.tenant").map(String::as_str),
            Some("acme")
        );
        assert_eq!(
            outer.resource.get("mrbill.cell").map(String::as_str),
            Some("cell-acme")
        );
        let inner = named("inner");
        assert_eq!(inner.parent_id(), outer_id);
        assert!(
            inner
                .span
                .events
                .iter()
                .any(|e| e.name == "something to see"),
            "warnings are events of their span"
        );
        assert_eq!(named("job").parent_id(), outer_id);
        let db = named("SELECT pocs");
        assert_eq!(db.parent_id(), outer_id);
        assert_eq!(db.attr("db.system.name").as_deref(), Some("postgresql"));
        assert_eq!(db.attr("db.response.returned_rows").as_deref(), Some("1"));
        let took = db.span.end_time_unix_nano - db.span.start_time_unix_nano;
        assert!((1_900_000..2_100_000).contains(&took), "{took} ns");
        assert!(
            spans.iter().all(|s| s.span.name != "detail"),
            "debug spans are not exported"
        );
        assert_eq!(hex(&outer.span.trace_id), trace_id);
        // Counted once the exporter, on idle CPU only, has the collector's answer.
        until_counted("mrbill_trace_spans_exported_total", "", 3);
    });
}

#[test]
fn a_collector_that_hangs_holds_nothing_up_and_what_it_costs_is_counted() {
    let (listener, url) = listener();
    install(
        &url,
        &[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "60000"),
        ],
    );
    let collector = Collector::serve(listener);
    collector.hang();
    // A thousand spans end while the export of the first batch hangs: none waits for it.
    for i in 0..1000 {
        tracing::info_span!("request", n = i).in_scope(|| {});
    }
    let full = counter("mrbill_trace_spans_dropped_total", "reason=\"queue_full\"");
    assert!(
        full >= 1000 - 16,
        "only {full} of 1000 spans counted as dropped"
    );
    assert!(collector.requests() <= 1, "one export at a time");
}

#[test]
fn a_collector_that_is_down_loses_spans_that_are_counted() {
    let (closed, url) = listener();
    drop(closed);
    install(&url, &[]);
    for i in 0..100 {
        tracing::info_span!("request", n = i).in_scope(|| {});
    }
    // Shutting down exports what is queued: the collector refuses it.
    telemetry::shutdown();
    let failed = counter(
        "mrbill_trace_spans_dropped_total",
        "reason=\"export_failed\"",
    );
    let full = counter("mrbill_trace_spans_dropped_total", "reason=\"queue_full\"");
    assert_eq!(failed + full, 100, "every span lost is counted");
    assert_eq!(counter("mrbill_trace_spans_exported_total", ""), 0);
}

/// A loopback listener for an HTTPS collector, its URL, and a test CA's files in a directory of
/// this test's own.
fn tls_listener(name: &str) -> (std::net::TcpListener, String, test_support::otlp::tls::Tls) {
    let (listener, url) = listener();
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let url = url.replacen("http://", "https://", 1);
    (listener, url, test_support::otlp::tls::Tls::new(&dir))
}

/// Waits until the counter `name{labels}` reaches `at_least`.
fn until_counted(name: &str, labels: &str, at_least: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = counter(name, labels);
        if n >= at_least {
            return n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name}{{{labels}}} stayed at {n}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_collector_over_https_with_mutual_tls_gets_the_spans() {
    let (listener, url, tls) = tls_listener("otlp-mtls");
    let (ca, cert, key) = (
        tls.ca.display().to_string(),
        tls.client_certificate.display().to_string(),
        tls.client_key.display().to_string(),
    );
    install(
        &url,
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", &ca),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &cert),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &key),
        ],
    );
    let collector = Collector::serve_tls(listener, &tls);
    for i in 0..10 {
        tracing::info_span!("request", n = i).in_scope(|| {});
    }
    until_counted("mrbill_trace_spans_exported_total", "", 10);
    assert_eq!(collector.spans().len(), 10);
    assert_eq!(collector.refused(), 0);
}

#[test]
fn a_collector_whose_certificate_is_not_trusted_gets_nothing_and_the_loss_is_counted() {
    let (listener, url, tls) = tls_listener("otlp-untrusted");
    // The client's certificate, but not the collector's CA: the system's roots do not know it.
    let (cert, key) = (
        tls.client_certificate.display().to_string(),
        tls.client_key.display().to_string(),
    );
    install(
        &url,
        &[
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &cert),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &key),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
        ],
    );
    let collector = Collector::serve_tls(listener, &tls);
    for i in 0..10 {
        tracing::info_span!("request", n = i).in_scope(|| {});
    }
    until_counted(
        "mrbill_trace_spans_dropped_total",
        "reason=\"export_failed\"",
        10,
    );
    assert!(collector.refused() >= 1, "the handshake was refused");
    assert_eq!(collector.requests(), 0);
    assert_eq!(counter("mrbill_trace_spans_exported_total", ""), 0);
}

/// The scheduling policy of each of this process's threads, by name (`/proc`).
fn thread_policies() -> Vec<(String, u32)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let path = task.expect("a task").path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue;
        };
        // Fields after the command's closing parenthesis start at the third; the policy is
        // the 41st.
        let after = &stat[stat.rfind(')').expect("stat") + 2..];
        let policy = after
            .split_whitespace()
            .nth(41 - 3)
            .and_then(|p| p.parse().ok())
            .expect("the policy field");
        threads.push((name.trim().to_owned(), policy));
    }
    threads
}

#[test]
fn the_exporters_threads_run_only_on_idle_cpu_and_nothing_else_does() {
    let (listener, url) = listener();
    install(&url, &[]);
    let _collector = Collector::serve(listener);
    // A new thread carries its creator's name until it has set its own: wait for the batch
    // processor's (made by `trace-setup`) to be named.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut threads = thread_policies();
    while threads.iter().any(|(n, _)| n == "trace-setup")
        || !threads.iter().any(|(n, _)| n.starts_with("OpenTelemetry"))
    {
        assert!(std::time::Instant::now() < deadline, "{threads:?}");
        std::thread::sleep(Duration::from_millis(10));
        threads = thread_policies();
    }
    let idle = |name: &str| {
        threads
            .iter()
            .filter(|(n, _)| n.starts_with(name))
            .all(|(_, policy)| *policy == libc_sched_idle())
            && threads.iter().any(|(n, _)| n.starts_with(name))
    };
    // The batch processor's thread (which encodes) and the HTTP client's (which sends).
    assert!(idle("OpenTelemetry"), "{threads:?}");
    assert!(idle("reqwest-interna"), "{threads:?}");
    let main = threads.first().expect("the main thread");
    assert_eq!(main.1, 0, "the rest stay SCHED_OTHER: {threads:?}");
    assert!(
        threads
            .iter()
            .filter(|(_, policy)| *policy != 0)
            .all(|(n, _)| n.starts_with("OpenTelemetry") || n.starts_with("reqwest-interna")),
        "{threads:?}"
    );
}

/// `SCHED_IDLE` (linux/sched.h).
fn libc_sched_idle() -> u32 {
    5
}

#[test]
fn after_a_failed_export_the_collector_rests_and_is_used_again_when_it_recovers() {
    let (listener, url) = listener();
    install(&url, &[("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10")]);
    let collector = Collector::serve(listener);
    collector.refuse(true);
    // Five batches: the first is refused, the four after it dropped without being sent.
    for i in 0..50 {
        tracing::info_span!("request", n = i).in_scope(|| {});
    }
    until_counted(
        "mrbill_trace_spans_dropped_total",
        "reason=\"export_failed\"",
        50,
    );
    assert_eq!(collector.requests(), 1, "one attempt, then a rest");
    // Recovered, and the second of rest over: the next spans go out.
    collector.refuse(false);
    std::thread::sleep(Duration::from_millis(1100));
    for i in 0..10 {
        tracing::info_span!("request", n = i).in_scope(|| {});
    }
    until_counted("mrbill_trace_spans_exported_total", "", 10);
    assert_eq!(collector.spans().len(), 10);
}

/// How many [`Recorded`] spans the recorder's thread has made into `SpanData`.
static MADE: AtomicUsize = AtomicUsize::new(0);

/// A span as a hot path records it: its ids, times and a number.
struct Recorded {
    trace_id: TraceId,
    span_id: SpanId,
    parent: SpanId,
    at: SystemTime,
    n: i64,
}

impl Recorded {
    fn new(trace_id: TraceId, parent: SpanId, n: i64) -> Self {
        let ids = trace::tracer().expect("traces on").id_generator();
        Self {
            trace_id,
            span_id: ids.new_span_id(),
            parent,
            at: SystemTime::now(),
            n,
        }
    }
}

impl Finished for Recorded {
    fn into_span(self, scope: InstrumentationScope) -> SpanData {
        MADE.fetch_add(1, Ordering::Relaxed);
        let context = SpanContext::new(
            self.trace_id,
            self.span_id,
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        );
        SpanData {
            span_context: context,
            parent_span_id: self.parent,
            parent_span_is_remote: true,
            span_kind: SpanKind::Server,
            name: "recorded".into(),
            start_time: self.at,
            end_time: self.at + Duration::from_millis(3),
            attributes: vec![KeyValue::new("n", self.n)],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: opentelemetry::trace::Status::Unset,
            instrumentation_scope: scope,
        }
    }
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn trace_and_parent() -> (TraceId, SpanId) {
    (
        TraceId::from_hex(TRACE).expect("trace id"),
        SpanId::from_hex(PARENT).expect("span id"),
    )
}

#[test]
fn recorded_spans_are_exported_by_an_idle_thread_with_their_ids_scope_and_resource() {
    let (listener, url) = listener();
    install(&url, &[]);
    let collector = Collector::serve(listener);
    let recorder = Recorder::<Recorded>::start().expect("traces are on");
    let (trace_id, parent) = trace_and_parent();
    for n in 0..5 {
        recorder.record(Recorded::new(trace_id, parent, n));
    }
    // The recorder's thread names itself and lowers its priority as it starts.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !thread_policies()
        .iter()
        .any(|(name, policy)| name == "trace-record" && *policy == libc_sched_idle())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            thread_policies()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Shutting down hands on what the recorder holds before the last export.
    telemetry::shutdown();
    let spans = collector.trace(TRACE);
    assert_eq!(spans.len(), 5, "{spans:?}");
    let mut numbers: Vec<_> = spans.iter().filter_map(|s| s.attr("n")).collect();
    numbers.sort();
    assert_eq!(numbers, ["0", "1", "2", "3", "4"]);
    for span in &spans {
        assert_eq!(span.span.name, "recorded");
        assert_eq!(span.parent_id(), PARENT);
        assert_eq!(span.service(), "trace-export-test");
        assert_eq!(
            span.resource.get("mrbill.tenant").map(String::as_str),
            Some("acme")
        );
        let took = span.span.end_time_unix_nano - span.span.start_time_unix_nano;
        assert_eq!(took, 3_000_000);
    }
    assert_eq!(counter("mrbill_trace_spans_exported_total", ""), 5);
}

#[test]
fn a_recorder_never_waits_for_a_collector_that_hangs_and_every_span_is_accounted_for() {
    let (listener, url) = listener();
    install(
        &url,
        &[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
        ],
    );
    let collector = Collector::serve(listener);
    collector.hang();
    let recorder = Recorder::<Recorded>::start().expect("traces are on");
    let (trace_id, parent) = trace_and_parent();
    for n in 0..10_000 {
        recorder.record(Recorded::new(trace_id, parent, n));
    }
    let full = counter("mrbill_trace_spans_dropped_total", "reason=\"queue_full\"");
    assert!(
        full >= 10_000 - 64,
        "only {full} of 10,000 spans dropped at once"
    );
    telemetry::shutdown();
    let failed = counter(
        "mrbill_trace_spans_dropped_total",
        "reason=\"export_failed\"",
    );
    let full = counter("mrbill_trace_spans_dropped_total", "reason=\"queue_full\"");
    let exported = counter("mrbill_trace_spans_exported_total", "");
    assert_eq!(
        exported + failed + full,
        10_000,
        "exported {exported}, failed {failed}, queue full {full}"
    );
}

#[test]
fn while_the_exporter_rests_recorded_spans_are_dropped_before_they_are_made() {
    let (listener, url) = listener();
    install(&url, &[("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10")]);
    let collector = Collector::serve(listener);
    collector.refuse(true);
    let recorder = Recorder::<Recorded>::start().expect("traces are on");
    let (trace_id, parent) = trace_and_parent();
    for n in 0..10 {
        recorder.record(Recorded::new(trace_id, parent, n));
    }
    until_counted(
        "mrbill_trace_spans_dropped_total",
        "reason=\"export_failed\"",
        10,
    );
    assert_eq!(MADE.load(Ordering::Relaxed), 10);
    // The collector failed: for a second the exporter rests, and what is recorded meanwhile
    // is dropped (counted) without being made into spans or encoded.
    for n in 0..500 {
        recorder.record(Recorded::new(trace_id, parent, n));
    }
    until_counted(
        "mrbill_trace_spans_dropped_total",
        "reason=\"export_failed\"",
        510,
    );
    assert_eq!(MADE.load(Ordering::Relaxed), 10, "none made while resting");
    assert_eq!(collector.requests(), 1);
    // The rest over, one export's worth tries the collector (still refusing); the others are
    // dropped unmade until it has answered.
    std::thread::sleep(Duration::from_millis(1100));
    for n in 0..500 {
        recorder.record(Recorded::new(trace_id, parent, n));
    }
    until_counted(
        "mrbill_trace_spans_dropped_total",
        "reason=\"export_failed\"",
        1010,
    );
    assert_eq!(MADE.load(Ordering::Relaxed), 20, "one batch of 10 made");
    assert_eq!(collector.requests(), 2);
}
