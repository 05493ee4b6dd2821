//! Distributed traces through the real platform, exported to a real OTLP/HTTP receiver
//! (`test_support::otlp`, decoding the protobuf the SDK sends). One report requested through
//! the router, with the client's own `traceparent`, makes one trace: the router's span, media's
//! request, its database statement, poc's internal API checking the token, the job the request
//! queued (its `traceparent` stored with it), poc's internal API serving the PoCs to the job,
//! and the render — each with the right parent. Media's log lines carry the trace id. The
//! tenant's provisioning is a trace of its own: one span per step under the operation's span.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e_tests::platform::Platform;
use serde_json::json;
use test_support::otlp::{Collector, Received, hex};

/// Waits until `check` holds for the collector's spans (exports are batched every 200 ms).
async fn eventually(collector: &Collector, what: &str, check: impl Fn(&[Received]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if check(&collector.spans()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; spans: {:#?}",
            collector
                .spans()
                .iter()
                .map(|s| format!(
                    "{} {} {} {}",
                    s.service(),
                    s.span.name,
                    s.trace_id(),
                    s.parent_id()
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The user id poc's internal API was asked about (from poc's log: the raw path is logged).
fn check_user_id(platform: &Platform, cell: &str) -> String {
    let log =
        std::fs::read_to_string(platform.cell_dir(cell).join("logs/poc.log")).expect("poc log");
    log.lines()
        .find_map(|l| {
            let at = l.find("/internal/v1/users/")? + "/internal/v1/users/".len();
            l.get(at..at + 36).map(str::to_owned)
        })
        .expect("poc logged the token-version check's path")
}

fn find<'a>(spans: &'a [Received], service: &str, name: &str) -> Option<&'a Received> {
    spans
        .iter()
        .find(|s| s.service() == service && s.span.name == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_report_is_one_trace_across_router_media_poc_and_the_render() {
    let collector = Collector::start();
    let platform = Platform::up_with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ]);
    let acme = platform.create_tenant("acme");
    let cell = acme["cell"]["cell_id"]
        .as_str()
        .expect("cell id")
        .to_owned();
    let token = platform.admin_token(&acme).await;
    let api = platform.api("acme").with_token(&token);
    for i in 0..3 {
        api.post(
            "/v1/pocs",
            &json!({
                "name": format!("PoC {i}"), "language": "rust", "tags": ["traced"],
                "repository_url": format!("https://github.com/acme/traced-{i}"),
            }),
        )
        .await
        .assert_status(201);
    }

    // The client starts the trace.
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let client_span = "00f067aa0ba902b7";
    let traced = api.with_header("traceparent", &format!("00-{trace_id}-{client_span}-01"));
    let queued = traced
        .post("/v1/reports", &json!({ "format": "csv" }))
        .await;
    queued.assert_status(202);
    let location = queued.headers["location"].to_str().expect("location");
    let path = location.trim_start_matches("/t/acme").to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = api.get(&path).await.assert_status(200).clone();
        if job["state"] == "completed" {
            break;
        }
        assert!(job["state"] != "failed", "{job}");
        assert!(
            Instant::now() < deadline,
            "the report never completed: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let wanted = [
        ("mrbill-router", "POST media"),
        ("media-service", "POST /v1/reports"),
        ("media-service", "INSERT media_jobs"),
        ("poc-service", "GET /internal/v1/users/{id}/token-version"),
        ("media-service", "report job"),
        ("poc-service", "GET /internal/v1/pocs"),
        ("media-service", "render report"),
    ];
    eventually(&collector, "the report's trace", |spans| {
        let trace: Vec<Received> = spans
            .iter()
            .filter(|s| s.trace_id() == trace_id)
            .cloned()
            .collect();
        wanted
            .iter()
            .all(|(service, name)| find(&trace, service, name).is_some())
    })
    .await;
    let trace = collector.trace(&trace_id);
    let span = |service: &str, name: &str| {
        find(&trace, service, name)
            .unwrap_or_else(|| panic!("no {service} span {name}"))
            .clone()
    };
    let router = span("mrbill-router", "POST media");
    assert_eq!(
        router.parent_id(),
        client_span,
        "the client's span is the router's parent"
    );
    assert_eq!(router.attr("mrbill.tenant").as_deref(), Some("acme"));
    assert_eq!(router.attr("mrbill.cell").as_deref(), Some(cell.as_str()));
    assert_eq!(
        router.attr("http.response.status_code").as_deref(),
        Some("202")
    );

    let request = span("media-service", "POST /v1/reports");
    assert_eq!(request.parent_id(), router.span_id());
    assert_eq!(
        request.resource.get("mrbill.tenant").map(String::as_str),
        Some("acme")
    );
    assert_eq!(request.resource.get("mrbill.cell"), Some(&cell));
    assert_eq!(request.attr("http.route").as_deref(), Some("/v1/reports"));
    assert_eq!(
        request.attr("http.response.status_code").as_deref(),
        Some("202")
    );
    assert_eq!(
        span("media-service", "INSERT media_jobs").parent_id(),
        request.span_id()
    );
    let check = span("poc-service", "GET /internal/v1/users/{id}/token-version");
    assert_eq!(check.parent_id(), request.span_id());

    let job = span("media-service", "report job");
    assert_eq!(
        job.parent_id(),
        request.span_id(),
        "the job joins the request that queued it"
    );
    assert_eq!(
        span("poc-service", "GET /internal/v1/pocs").parent_id(),
        job.span_id()
    );
    assert_eq!(
        span("media-service", "render report").parent_id(),
        job.span_id()
    );
    // Spans name routes, never ids: no span holds the job's or the user's id, or the raw path.
    let job_id = path.rsplit('/').next().expect("job id");
    let user_id = check_user_id(&platform, &cell);
    for s in &trace {
        let text = format!("{} {:?}", s.span.name, s.span.attributes);
        assert!(
            !text.contains(job_id) && !text.contains(&user_id),
            "an id in {text}"
        );
        assert!(
            s.attr("path").is_none() && s.attr("request_id").is_none(),
            "{text}"
        );
    }

    // The router counts what it exported, on its metrics listener.
    let metrics_addr = std::fs::read_to_string(platform.home.join("router/metrics-addr"))
        .expect("the router's metrics address");
    // Counted once the exporter, on idle CPU only, has the collector's answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = reqwest::get(format!("http://{}/metrics", metrics_addr.trim()))
            .await
            .expect("the router's metrics")
            .text()
            .await
            .expect("text");
        let exported = metrics
            .lines()
            .find_map(|l| l.strip_prefix("mrbill_trace_spans_exported_total "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if exported.is_some_and(|n| n >= 1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Media's log lines of that request and that job carry the trace id.
    let logs = platform.cell_dir(&cell).join("logs");
    let media_log: String = std::fs::read_dir(&logs)
        .expect("the cell's logs")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("media"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    let joined: Vec<&str> = media_log
        .lines()
        .filter(|l| l.contains(&format!("\"trace_id\":\"{trace_id}\"")))
        .collect();
    assert!(
        joined
            .iter()
            .any(|l| l.contains("\"message\":\"response\""))
            && joined.iter().any(|l| l.contains("job completed")),
        "log lines with the trace id: {joined:#?}"
    );

    // The provisioning: one trace, the operation's span over a span per step.
    eventually(&collector, "the provisioning's trace", |spans| {
        spans.iter().any(|s| {
            s.service() == "mrbill-control-plane"
                && s.span.name == "provision"
                && s.attr("mrbill.tenant").as_deref() == Some("acme")
        })
    })
    .await;
    let spans = collector.spans();
    let op = spans
        .iter()
        .find(|s| s.span.name == "provision" && s.attr("mrbill.tenant").as_deref() == Some("acme"))
        .expect("the operation's span");
    assert!(op.span.parent_span_id.is_empty(), "an operation is a root");
    // … linked to the request that queued it, whose span names the operation.
    let request = spans
        .iter()
        .find(|s| {
            s.service() == "mrbill-control-plane"
                && s.span.name == "POST /v1/tenants"
                && s.attr("mrbill.operation_id").map(|id| id.replace('-', ""))
                    == Some(op.trace_id())
        })
        .unwrap_or_else(|| panic!("no request span names the operation: {spans:#?}"));
    assert!(
        op.span
            .links
            .iter()
            .any(|l| hex(&l.trace_id) == request.trace_id() && hex(&l.span_id) == request.span_id()),
        "the operation links to its request: {:?}",
        op.span.links
    );
    let steps: HashMap<String, &Received> = spans
        .iter()
        .filter(|s| s.trace_id() == op.trace_id() && s.span.span_id != op.span.span_id)
        .filter(|s| s.service() == "mrbill-control-plane" && s.span.name.starts_with("provision "))
        .map(|s| (s.span.name.clone(), s))
        .collect();
    for step in [
        "provision databases",
        "provision services",
        "provision route",
    ] {
        let s = steps
            .get(step)
            .unwrap_or_else(|| panic!("no step span {step}: {:?}", steps.keys()));
        assert_eq!(s.parent_id(), op.span_id(), "{step}");
        assert_eq!(s.attr("mrbill.outcome").as_deref(), Some("done"), "{step}");
        assert!(s.span.start_time_unix_nano >= op.span.start_time_unix_nano);
        assert!(s.span.end_time_unix_nano <= op.span.end_time_unix_nano);
    }
}

/// What a newcomer gets from `./x dev`: `mrbill up --with-traces` runs the local collector, the
/// platform's processes export to it, and `mrbill traces` lists a tenant's traces and draws one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mrbill_traces_lists_a_tenants_traces_and_draws_one() {
    let platform =
        Platform::up_with_flags(&["--with-traces"], &[("MRBILL_TRACES_ADDR", "127.0.0.1:0")]);
    let status = platform.mrbill(&["status", "-o", "json"]).json();
    assert!(
        status["processes"]["traces"].as_str().is_some(),
        "{status:#}"
    );
    let acme = platform.create_tenant("acme");
    let token = platform.admin_token(&acme).await;
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let api = platform
        .api("acme")
        .with_token(&token)
        .with_header("traceparent", &format!("00-{trace_id}-00f067aa0ba902b7-01"));
    api.get("/v1/pocs").await.assert_status(200);

    // Exports leave every second locally.
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = platform
            .mrbill(&["traces", "--tenant", "acme", "-o", "json"])
            .json();
        let spans = listed
            .as_array()
            .and_then(|l| l.iter().find(|t| t["trace_id"] == trace_id.as_str()))
            .and_then(|t| t["spans"].as_u64())
            .unwrap_or(0);
        // The router's span, poc's request and its statements.
        if spans >= 3 {
            break listed;
        }
        assert!(Instant::now() < deadline, "never listed: {listed:#}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        listed
            .as_array()
            .expect("a list")
            .iter()
            .all(|t| t["tenant"] == "acme"),
        "{listed:#}"
    );
    let drawn = platform.mrbill(&["traces", "show", &trace_id[..12]]);
    assert_eq!(drawn.code, 0, "{}", drawn.stderr);
    let lines: Vec<&str> = drawn.stdout.lines().collect();
    let row = |name: &str| {
        lines
            .iter()
            .position(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no {name} in\n{}", drawn.stdout))
    };
    let (router, request, statement) = (row("GET poc"), row("GET /v1/pocs"), row("SELECT"));
    assert!(router < request && request < statement, "{}", drawn.stdout);
    let at = |line: usize, name: &str| lines[line].find(name).expect("the name");
    assert_eq!(
        at(request, "GET /v1/pocs"),
        at(router, "GET poc") + 2,
        "indented under the router's:\n{}",
        drawn.stdout
    );
    assert!(lines[router].contains("[acme]"), "{}", drawn.stdout);

    let down = platform.mrbill(&["down", "-o", "json"]).json();
    assert!(
        down["stopped"]
            .as_array()
            .expect("stopped")
            .iter()
            .any(|s| s == "traces"),
        "{down:#}"
    );
}
