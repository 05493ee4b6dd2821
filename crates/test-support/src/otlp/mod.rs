//! A real OTLP/HTTP trace receiver for tests: it accepts `POST /v1/traces` with the protobuf
//! body every OpenTelemetry SDK sends and decodes it with the protocol's generated messages, so
//! a test sees exactly what a collector would. It can also stop answering (a collector that
//! hangs) to show that exporting never holds a request up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

pub mod tls;

/// One received span with its resource's attributes.
#[derive(Clone, Debug)]
pub struct Received {
    pub resource: HashMap<String, String>,
    pub span: Span,
}

impl Received {
    /// `service.name` of the process that made it.
    pub fn service(&self) -> &str {
        self.resource.get("service.name").map_or("", String::as_str)
    }

    /// A string (or integer, as text) attribute of the span.
    pub fn attr(&self, key: &str) -> Option<String> {
        attributes(&self.span.attributes).remove(key)
    }

    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    pub fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }
}

/// Lower-case hex, as in `traceparent`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
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

#[derive(Default)]
struct Inner {
    spans: Mutex<Vec<Received>>,
    requests: Mutex<usize>,
    refused: Mutex<usize>,
    hang: AtomicBool,
    refuse: AtomicBool,
}

/// The receiver, serving until dropped, on a thread and runtime of its own: a test's runtime
/// may be blocked (waiting for `mrbill`), and the collector must answer all the same.
pub struct Collector {
    url: String,
    inner: Arc<Inner>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Collector {
    /// Listens on a free loopback port.
    pub fn start() -> Self {
        Self::serve(std::net::TcpListener::bind("127.0.0.1:0").expect("bind the collector"))
    }

    /// Serves on `listener`, bound earlier (e.g. before the process's environment is set).
    pub fn serve(listener: std::net::TcpListener) -> Self {
        Self::serve_on(listener, None)
    }

    /// Serves HTTPS on `listener` with `tls`'s server certificate, asking every client for a
    /// certificate its CA signed (mutual TLS). Connections whose handshake fails are counted
    /// ([`Collector::refused`]).
    pub fn serve_tls(listener: std::net::TcpListener, tls: &tls::Tls) -> Self {
        Self::serve_on(listener, Some(tls.acceptor()))
    }

    fn serve_on(listener: std::net::TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .route("/v1/traces", post(receive))
            .with_state(inner.clone());
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let url = format!(
            "{}://{}",
            if tls.is_some() { "https" } else { "http" },
            listener.local_addr().expect("the collector's address")
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = inner.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the collector's runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)
                    .expect("the listener in the runtime");
                let stopped = async {
                    let _ = stopped.await;
                };
                let _ = match tls {
                    None => {
                        axum::serve(listener, app)
                            .with_graceful_shutdown(stopped)
                            .await
                    }
                    Some(acceptor) => {
                        let listener = tls::Listener {
                            tcp: listener,
                            acceptor,
                            refused: Arc::new(move || {
                                *state.refused.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                            }),
                        };
                        axum::serve(listener, app)
                            .with_graceful_shutdown(stopped)
                            .await
                    }
                };
            });
        });
        Self {
            url,
            inner,
            stop: Some(stop),
        }
    }

    /// How many TLS handshakes failed (a client that did not trust the collector, or that
    /// showed no certificate).
    pub fn refused(&self) -> usize {
        *self.inner.refused.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Received> {
        self.inner
            .spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The spans of one trace (hex id).
    pub fn trace(&self, trace_id: &str) -> Vec<Received> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id() == trace_id)
            .collect()
    }

    /// How many export requests arrived.
    pub fn requests(&self) -> usize {
        *self
            .inner
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// While `refuse` holds, answers every export 503 (a collector that is overloaded).
    pub fn refuse(&self, refuse: bool) {
        self.inner.refuse.store(refuse, Ordering::SeqCst);
    }

    /// From now on, holds every export without answering (a collector that hangs).
    pub fn hang(&self) {
        self.inner.hang.store(true, Ordering::SeqCst);
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn receive(State(inner): State<Arc<Inner>>, body: Bytes) -> StatusCode {
    *inner.requests.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    if inner.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if inner.refuse.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                received.push(Received {
                    resource: resource.clone(),
                    span,
                });
            }
        }
    }
    inner
        .spans
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(received);
    StatusCode::OK
}
