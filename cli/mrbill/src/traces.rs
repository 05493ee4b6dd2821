//! Local traces (`mrbill up --with-traces`, which `./x dev` uses). The keeper runs `mrbill traces
//! collect`: an OTLP/HTTP receiver (the protobuf every OpenTelemetry SDK sends) that appends each
//! span as one JSON line to `MRBILL_HOME/traces/spans.jsonl`. The control plane and the router
//! the keeper starts get `OTEL_EXPORTER_OTLP_ENDPOINT` for it, and the control plane hands it on
//! to every cell's services; `mrbill traces` lists the recent traces, `mrbill traces show <id>`
//! draws one as a tree.
//!
//! ```text
//! MRBILL_HOME/traces/  addr        where it listens (MRBILL_TRACES_ADDR, default 127.0.0.1:4318,
//!                                  else a free port; remembered)
//!                      spans.jsonl one span per line; at 64 MiB it becomes spans.1.jsonl (the
//!                                  one before is dropped), so at most ~128 MiB are kept
//!                      ready
//! ```

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use cell_model::local::{Home, pid_alive};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message as _;
use serde::{Deserialize, Serialize};

use crate::client::read_ready;

/// The standard OTLP/HTTP port.
const DEFAULT_ADDR: &str = "127.0.0.1:4318";
/// Size at which `spans.jsonl` is rotated.
const ROTATE_AT: u64 = 64 << 20;

pub fn dir(home: &Home) -> PathBuf {
    home.root().join("traces")
}

pub fn ready(home: &Home) -> PathBuf {
    dir(home).join("ready")
}

fn spans_file(home: &Home) -> PathBuf {
    dir(home).join("spans.jsonl")
}

/// Where the collector listens: the running one's address, else the remembered one if free,
/// else `MRBILL_TRACES_ADDR` (default 4318) if free, else a free port. Chosen before anything
/// starts, so the control plane and the router know it from their first span.
pub fn choose_addr(home: &Home) -> anyhow::Result<SocketAddr> {
    let dir = dir(home);
    std::fs::create_dir_all(&dir)?;
    if let Some(running) = read_ready(&ready(home)).filter(|r| pid_alive(r.pid)) {
        return running
            .url
            .trim_start_matches("http://")
            .parse()
            .context("the trace collector's ready file");
    }
    let asked = std::env::var("MRBILL_TRACES_ADDR").unwrap_or_else(|_| DEFAULT_ADDR.into());
    let asked: SocketAddr = asked
        .parse()
        .with_context(|| format!("MRBILL_TRACES_ADDR: `{asked}` is not an address"))?;
    crate::prometheus::remembered_addr(&dir.join("addr"), Some(asked))
}

/// The variables the control plane and the router get when traces are collected locally:
/// the endpoint, and exports every second rather than every five.
pub fn exporter_env(home: &Home) -> Vec<(&'static str, String)> {
    match std::fs::read_to_string(dir(home).join("addr")) {
        Ok(addr) => vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{}", addr.trim()),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "1000".into()),
        ],
        Err(_) => Vec::new(),
    }
}

/// Starts the collector for the keeper (its child: this binary, `traces collect`).
pub fn start(home: &Home) -> anyhow::Result<Child> {
    let binary = std::env::current_exe().context("this executable")?;
    crate::local::spawn(home, &binary, "traces", &["traces", "collect"], &[])
        .map_err(|f| anyhow::anyhow!("{}", f.message))
}

/// One span as stored: ids in hex, times in Unix nanoseconds, the resource's service, tenant
/// and cell, and the span's own attributes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SpanRecord {
    pub trace_id: String,
    pub span_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent_id: String,
    pub name: String,
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<String>,
    pub start_ns: u64,
    pub end_ns: u64,
    #[serde(default)]
    pub error: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl SpanRecord {
    pub fn duration_ms(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e6
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => s.clone(),
                Value::IntValue(i) => i.to_string(),
                Value::BoolValue(b) => b.to_string(),
                Value::DoubleValue(d) => d.to_string(),
                _ => return None,
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}

/// The spans of one export, as stored.
fn records(request: ExportTraceServiceRequest) -> Vec<SpanRecord> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                let mut attrs = attributes(&span.attributes);
                let tenant = resource
                    .get("mrbill.tenant")
                    .cloned()
                    .or_else(|| attrs.remove("mrbill.tenant"));
                let cell = resource
                    .get("mrbill.cell")
                    .cloned()
                    .or_else(|| attrs.remove("mrbill.cell"));
                out.push(SpanRecord {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_id: hex(&span.parent_span_id),
                    name: span.name,
                    service: resource.get("service.name").cloned().unwrap_or_default(),
                    tenant,
                    cell,
                    start_ns: span.start_time_unix_nano,
                    end_ns: span.end_time_unix_nano,
                    error: span
                        .status
                        .is_some_and(|s| s.code == StatusCode::Error as i32),
                    attributes: attrs,
                });
            }
        }
    }
    out
}

/// Appends to `spans.jsonl`, rotating it at [`ROTATE_AT`].
struct Store {
    path: PathBuf,
}

impl Store {
    fn append(&self, spans: &[SpanRecord]) -> anyhow::Result<()> {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= ROTATE_AT) {
            std::fs::rename(&self.path, self.path.with_extension("1.jsonl"))?;
        }
        let mut lines = Vec::new();
        for span in spans {
            serde_json::to_writer(&mut lines, span)?;
            lines.push(b'\n');
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&lines)?;
        Ok(())
    }
}

/// `mrbill traces collect`: serves `POST /v1/traces` until stopped (SIGTERM, SIGINT).
pub fn collect(home: &Home) -> anyhow::Result<()> {
    let addr = choose_addr(home)?;
    let store = Arc::new(Mutex::new(Store {
        path: spans_file(home),
    }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let ready =
            serde_json::json!({ "url": format!("http://{addr}"), "pid": std::process::id() });
        let aside = self::ready(home).with_extension("tmp");
        std::fs::write(&aside, ready.to_string())?;
        std::fs::rename(&aside, self::ready(home))?;
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(receive))
            // Exports are batches of up to 512 spans; 16 MiB is far above any of them.
            .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
            .with_state(store);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("a SIGTERM handler");
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            })
            .await?;
        let _ = std::fs::remove_file(self::ready(home));
        anyhow::Ok(())
    })
}

async fn receive(
    axum::extract::State(store): axum::extract::State<Arc<Mutex<Store>>>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return axum::http::StatusCode::BAD_REQUEST;
    };
    let spans = records(request);
    let stored = store
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .append(&spans);
    match stored {
        Ok(()) => axum::http::StatusCode::OK,
        Err(e) => {
            eprintln!("storing {} spans failed: {e:#}", spans.len());
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// Every stored span, oldest file first.
pub fn load(home: &Home) -> Vec<SpanRecord> {
    let path = spans_file(home);
    [path.with_extension("1.jsonl"), path]
        .iter()
        .filter_map(|p| std::fs::File::open(p).ok())
        .flat_map(|f| std::io::BufReader::new(f).lines().map_while(Result::ok))
        .filter_map(|line| serde_json::from_str(&line).ok())
        .collect()
}

/// One trace in the list: its root (or earliest) span, its extent, its spans and errors.
#[derive(Debug, Serialize)]
pub struct TraceSummary {
    pub trace_id: String,
    pub root: String,
    pub service: String,
    pub tenant: Option<String>,
    pub start_ns: u64,
    pub duration_ms: f64,
    pub spans: usize,
    pub errors: usize,
}

/// The newest `limit` traces (of `tenant`, if given), newest first.
pub fn summaries(spans: &[SpanRecord], tenant: Option<&str>, limit: usize) -> Vec<TraceSummary> {
    let mut traces: HashMap<&str, Vec<&SpanRecord>> = HashMap::new();
    for span in spans {
        traces.entry(&span.trace_id).or_default().push(span);
    }
    let mut out: Vec<TraceSummary> = traces
        .into_iter()
        .filter(|(_, spans)| {
            tenant.is_none_or(|t| spans.iter().any(|s| s.tenant.as_deref() == Some(t)))
        })
        .map(|(id, spans)| {
            let ids: std::collections::HashSet<&str> =
                spans.iter().map(|s| s.span_id.as_str()).collect();
            let root = spans
                .iter()
                .filter(|s| s.parent_id.is_empty() || !ids.contains(s.parent_id.as_str()))
                .min_by_key(|s| s.start_ns)
                .or_else(|| spans.iter().min_by_key(|s| s.start_ns))
                .expect("a trace has a span");
            let start = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
            let end = spans.iter().map(|s| s.end_ns).max().unwrap_or(start);
            TraceSummary {
                trace_id: id.to_owned(),
                root: root.name.clone(),
                service: root.service.clone(),
                tenant: spans.iter().find_map(|s| s.tenant.clone()),
                start_ns: start,
                duration_ms: end.saturating_sub(start) as f64 / 1e6,
                spans: spans.len(),
                errors: spans.iter().filter(|s| s.error).count(),
            }
        })
        .collect();
    out.sort_by_key(|t| std::cmp::Reverse(t.start_ns));
    out.truncate(limit);
    out
}

/// The spans of `trace_id` (a prefix of at least 8 characters will do) in tree order, each
/// with its depth.
pub fn tree(spans: &[SpanRecord], trace_id: &str) -> Vec<(usize, SpanRecord)> {
    let mine: Vec<&SpanRecord> = spans
        .iter()
        .filter(|s| trace_id.len() >= 8 && s.trace_id.starts_with(trace_id))
        .collect();
    let ids: std::collections::HashSet<&str> = mine.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: HashMap<&str, Vec<&SpanRecord>> = HashMap::new();
    let mut roots = Vec::new();
    for span in &mine {
        if span.parent_id.is_empty() || !ids.contains(span.parent_id.as_str()) {
            roots.push(*span);
        } else {
            children.entry(&span.parent_id).or_default().push(span);
        }
    }
    roots.sort_by_key(|s| s.start_ns);
    for list in children.values_mut() {
        list.sort_by_key(|s| s.start_ns);
    }
    let mut out = Vec::new();
    let mut stack: Vec<(usize, &SpanRecord)> = roots.into_iter().rev().map(|s| (0, s)).collect();
    while let Some((depth, span)) = stack.pop() {
        out.push((depth, span.clone()));
        if let Some(kids) = children.get(span.span_id.as_str()) {
            stack.extend(kids.iter().rev().map(|k| (depth + 1, *k)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: &str, name: &str, start: u64, end: u64) -> SpanRecord {
        SpanRecord {
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            span_id: id.into(),
            parent_id: parent.into(),
            name: name.into(),
            service: "svc".into(),
            tenant: Some("acme".into()),
            cell: None,
            start_ns: start,
            end_ns: end,
            error: name == "bad",
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn a_trace_is_drawn_parents_first_and_summed_up_by_its_root() {
        let spans = vec![
            span("c", "b", "render", 30, 40),
            span("a", "", "POST media", 0, 100),
            span("b", "a", "job", 20, 90),
            span("d", "a", "bad", 10, 15),
        ];
        let drawn: Vec<(usize, String)> = tree(&spans, "0af76519")
            .into_iter()
            .map(|(d, s)| (d, s.name))
            .collect();
        assert_eq!(
            drawn,
            [
                (0, "POST media".to_owned()),
                (1, "bad".to_owned()),
                (1, "job".to_owned()),
                (2, "render".to_owned())
            ]
        );
        assert!(tree(&spans, "0af7").is_empty(), "too short a prefix");
        let listed = summaries(&spans, Some("acme"), 10);
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].root.as_str(), listed[0].spans, listed[0].errors),
            ("POST media", 4, 1)
        );
        assert!(summaries(&spans, Some("globex"), 10).is_empty());
    }
}
