//! The router's request spans against a real OTLP/HTTP receiver (`test_support::otlp`, which
//! decodes the protobuf), made by its recorder off the request path: one server span per
//! request, whose context is the `traceparent` the cell receives; the client's trace continued;
//! the standard sampler obeyed; refused and failed requests recorded with their status. Each test
//! sets the process's environment and installs the global pipeline before any thread starts, so
//! each runs in a process of its own (nextest's default).

mod common;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use cell_model::route_feed::RouteState;
use common::{route, router};
use service_kit::telemetry::{self, LogFormat, trace};
use test_support::otlp::{Collector, Received};

/// Sets the standard variables and installs the pipeline, before any thread exists.
#[allow(unsafe_code)]
fn install(extra: &[(&str, &str)]) -> Collector {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let mut vars = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ];
    vars.extend_from_slice(extra);
    for (k, v) in vars {
        // SAFETY: no other thread of this process exists yet to read the environment.
        unsafe { std::env::set_var(k, v) };
    }
    telemetry::init("mrbill-router", LogFormat::Compact);
    assert!(trace::enabled());
    Collector::serve(listener)
}

/// A cell that answers with the `traceparent` it received; `…/fail` answers 500.
async fn cell() -> String {
    let app = Router::new().fallback(|req: Request| async move {
        let traceparent = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let status = if req.uri().path().ends_with("/fail") {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        };
        (status, traceparent)
    });
    common::serve(app).await
}

/// Sends a GET to `path` (with `traceparent` when given); the status and what the cell received.
async fn get(base: &str, path: &str, traceparent: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(value) = traceparent {
        req = req.header("traceparent", value);
    }
    let res = req.send().await.expect("request");
    (res.status().as_u16(), res.text().await.expect("body"))
}

/// `(trace id, span id, flags)` of a `traceparent`.
fn parts(traceparent: &str) -> (String, String, String) {
    let fields: Vec<_> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent:?}");
    assert_eq!(fields[0], "00");
    (fields[1].into(), fields[2].into(), fields[3].into())
}

fn only<'a>(spans: &'a [Received], trace_id: &str) -> &'a Received {
    let found: Vec<_> = spans.iter().filter(|s| s.trace_id() == trace_id).collect();
    assert_eq!(found.len(), 1, "one span in trace {trace_id}: {spans:?}");
    found[0]
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const UNSAMPLED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

#[test]
fn each_request_is_one_server_span_and_the_cell_receives_its_context() {
    let collector = install(&[]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (started, continued, failed, unsampled) = runtime.block_on(async {
        let cell = cell().await;
        let (api, _) = router(vec![route("acme", RouteState::Active, &cell)], None).await;
        let (status, started) = get(&api.base, "/t/acme/v1/pocs", None).await;
        assert_eq!(status, 200);
        let client = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
        let (_, continued) = get(&api.base, "/t/acme/v1/pocs", Some(&client)).await;
        let (status, failed) = get(&api.base, "/t/acme/v1/pocs/fail", None).await;
        assert_eq!(status, 500);
        let (status, _) = get(&api.base, "/t/nobody/v1/pocs", None).await;
        assert_eq!(status, 404);
        let client = format!("00-{UNSAMPLED_TRACE}-{CLIENT_SPAN}-00");
        let (_, unsampled) = get(&api.base, "/t/acme/v1/pocs", Some(&client)).await;
        (started, continued, failed, unsampled)
    });
    // Shutting down hands on what the recorder holds and exports it.
    telemetry::shutdown();
    drop(runtime);
    let spans = collector.spans();

    // A trace started at the router: the cell's parent is the router's span.
    let (trace_id, span_id, flags) = parts(&started);
    assert_eq!(flags, "01");
    let span = only(&spans, &trace_id);
    assert_eq!(span.span_id(), span_id);
    assert_eq!(span.span.name, "GET poc");
    assert!(span.span.parent_span_id.is_empty(), "a root");
    assert_eq!(span.service(), "mrbill-router");
    for (key, value) in [
        ("mrbill.tenant", "acme"),
        ("mrbill.cell", "c-acme"),
        ("mrbill.service", "poc"),
        ("http.request.method", "GET"),
        ("http.response.status_code", "200"),
    ] {
        assert_eq!(span.attr(key).as_deref(), Some(value), "{key}: {span:?}");
    }
    // 2 = SPAN_KIND_SERVER.
    assert_eq!(span.span.kind, 2);
    assert!(span.span.end_time_unix_nano >= span.span.start_time_unix_nano);

    // The client's trace continued: the router's span is its child, the cell the router's.
    let (trace_id, span_id, flags) = parts(&continued);
    assert_eq!((trace_id.as_str(), flags.as_str()), (CLIENT_TRACE, "01"));
    let span = only(&spans, CLIENT_TRACE);
    assert_eq!(span.parent_id(), CLIENT_SPAN);
    assert_eq!(span.span_id(), span_id);
    assert_ne!(span_id, CLIENT_SPAN);

    // The cell's 500 is an error span.
    let span = only(&spans, &parts(&failed).0);
    assert_eq!(
        span.attr("http.response.status_code").as_deref(),
        Some("500")
    );
    // 2 = STATUS_CODE_ERROR.
    assert_eq!(span.span.status.as_ref().map(|s| s.code), Some(2));

    // A request refused before it was routed: its method alone, no tenant.
    let refused: Vec<_> = spans.iter().filter(|s| s.span.name == "GET").collect();
    assert_eq!(refused.len(), 1, "{spans:?}");
    assert_eq!(
        refused[0].attr("http.response.status_code").as_deref(),
        Some("404")
    );
    assert_eq!(refused[0].attr("mrbill.tenant"), None);

    // A client that did not sample its trace: passed on unsampled, and not exported.
    let (trace_id, _, flags) = parts(&unsampled);
    assert_eq!((trace_id.as_str(), flags.as_str()), (UNSAMPLED_TRACE, "00"));
    assert!(spans.iter().all(|s| s.trace_id() != UNSAMPLED_TRACE));
    assert_eq!(spans.len(), 4, "{spans:?}");
}

#[test]
fn the_standard_sampler_decides_which_new_traces_are_kept() {
    // No new trace is kept; a caller's sampled trace still is.
    let collector = install(&[
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0"),
    ]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (dropped, kept) = runtime.block_on(async {
        let cell = cell().await;
        let (api, _) = router(vec![route("acme", RouteState::Active, &cell)], None).await;
        let (_, dropped) = get(&api.base, "/t/acme/v1/pocs", None).await;
        let client = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
        let (_, kept) = get(&api.base, "/t/acme/v1/pocs", Some(&client)).await;
        (dropped, kept)
    });
    telemetry::shutdown();
    drop(runtime);
    let spans = collector.spans();
    let (dropped_trace, _, flags) = parts(&dropped);
    assert_eq!(flags, "00", "the cell is told the trace is not sampled");
    assert!(spans.iter().all(|s| s.trace_id() != dropped_trace));
    assert_eq!(parts(&kept).2, "01");
    assert_eq!(only(&spans, CLIENT_TRACE).parent_id(), CLIENT_SPAN);
    assert_eq!(spans.len(), 1, "{spans:?}");
}
