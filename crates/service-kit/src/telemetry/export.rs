//! The export half of [`super::trace`]: a bounded, counted queue in front of the SDK's batch
//! processor, an exporter that rests after a failure, the HTTP client (TLS from the standard
//! variables), all on threads at the lowest CPU priority. The pipeline is shared: the tracer
//! provider ends its spans into it, and [`super::record`] hands it the spans it recorded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use opentelemetry::Context;
use opentelemetry_otlp::WithHttpConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor,
};

use crate::config::TraceEnv;

/// The process's export pipeline, once [`processor`] has made it.
static PIPELINE: OnceLock<Arc<Gated>> = OnceLock::new();

/// The span processor the tracer provider gets, its resource set, made on a thread of its own at
/// the lowest CPU priority: the threads it starts, the batch processor's (which encodes each
/// batch) and the HTTP client's (which sends it), inherit that priority.
pub(super) fn processor(
    env: &TraceEnv,
    resource: &Resource,
) -> anyhow::Result<impl SpanProcessor + 'static> {
    let env = env.clone();
    std::thread::Builder::new()
        .name("trace-setup".into())
        .spawn(move || {
            lowest_priority();
            pipeline(&env)
        })?
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the set-up panicked")))
        .map(|mut gated| {
            // Set here, while it is not shared yet (the provider's call reaches [`Shared`]).
            gated.set_resource(resource);
            let gated = Arc::new(gated);
            let _ = PIPELINE.set(gated.clone());
            Shared(gated)
        })
}

/// Hands a span made outside the SDK to the pipeline, as the provider does with its own.
pub(super) fn submit(span: SpanData) {
    if let Some(pipeline) = PIPELINE.get() {
        pipeline.on_end(span);
    }
}

/// How many of `wanted` recorded spans the pipeline takes now ([`super::record`]): all while
/// exports succeed; none while the exporter rests after a failure; after a rest, one export's
/// worth to try the collector with, and none more until it has answered. The rest are dropped
/// (and counted, [`dropped_unsent`]) before they are made into spans.
pub(super) fn admitted(wanted: usize) -> usize {
    let Some(pipeline) = PIPELINE.get() else {
        return 0;
    };
    let mut backoff = pipeline
        .gate
        .backoff
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    backoff.admitted(Instant::now(), wanted, pipeline.gate.export_batch)
}

/// Counts `n` spans dropped because the collector failed.
pub(super) fn dropped_unsent(n: usize) {
    if n > 0
        && let Some(pipeline) = PIPELINE.get()
    {
        pipeline.gate.export_failed.increment(n as u64);
    }
}

/// The batch processor behind its gate, and its exporter.
fn pipeline(env: &TraceEnv) -> anyhow::Result<Gated> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client(env)?)
        .build()?;
    let max = env.queue.unwrap_or(2048);
    let gate = Arc::new(Gate {
        queued: AtomicUsize::new(0),
        max,
        queue_full: metrics::counter!("mrbill_trace_spans_dropped_total", "reason" => "queue_full"),
        export_failed: metrics::counter!("mrbill_trace_spans_dropped_total", "reason" => "export_failed"),
        exported: metrics::counter!("mrbill_trace_spans_exported_total"),
        backoff: Mutex::new(Backoff::default()),
        export_batch: env.export_batch.unwrap_or(512),
    });
    let config = BatchConfigBuilder::default().with_max_queue_size(max);
    let batch = BatchSpanProcessor::builder(Counted {
        inner: exporter,
        gate: gate.clone(),
    })
    .with_batch_config(config.build())
    .build();
    Ok(Gated { inner: batch, gate })
}

/// The exporter's HTTP client: the export's timeout, and for a collector behind TLS the CA its
/// certificate is checked against (besides the system's roots) and the client certificate for
/// mutual TLS, all from the standard variables.
fn client(env: &TraceEnv) -> anyhow::Result<reqwest::blocking::Client> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let mut builder = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_millis(env.timeout_ms.unwrap_or(10_000)));
    if let Some(path) = &env.certificate {
        let certificates = reqwest::Certificate::from_pem_bundle(&read(path)?)
            .with_context(|| format!("the collector's CA {}", path.display()))?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    match (&env.client_certificate, &env.client_key) {
        (Some(certificate), Some(key)) => {
            let mut pem = read(certificate)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .context("the client certificate and key for the collector")?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        _ => anyhow::bail!(
            "a client certificate for the collector needs both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY"
        ),
    }
    Ok(builder.build()?)
}

/// The spans waiting for export, bounded.
#[derive(Debug)]
struct Gate {
    queued: AtomicUsize,
    max: usize,
    queue_full: metrics::Counter,
    export_failed: metrics::Counter,
    exported: metrics::Counter,
    /// The exporter's rest after a failure.
    backoff: Mutex<Backoff>,
    /// The most spans one export sends.
    export_batch: usize,
}

/// Fields of the request spans that are for the log lines only: the raw path (it holds ids; the
/// span has the route template), the request id, the ids of the span itself, the method twice.
/// They never leave the process.
const LOG_ONLY: &[&str] = &["path", "request_id", "trace_id", "span_id", "method"];

/// The batch processor behind a counted bound: it holds at most what [`Gate`] admits, so no span
/// is dropped without being counted (the SDK's own drops are only logged).
#[derive(Debug)]
struct Gated {
    inner: BatchSpanProcessor,
    gate: Arc<Gate>,
}

impl SpanProcessor for Gated {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        span.attributes
            .retain(|kv| !LOG_ONLY.contains(&kv.key.as_str()));
        if self.gate.queued.fetch_add(1, Ordering::Relaxed) >= self.gate.max {
            self.gate.queued.fetch_sub(1, Ordering::Relaxed);
            self.gate.queue_full.increment(1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The provider's handle on the shared pipeline.
#[derive(Debug)]
struct Shared(Arc<Gated>);

impl SpanProcessor for Shared {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    /// The resource was set before the pipeline was shared ([`processor`]).
    fn set_resource(&mut self, _resource: &Resource) {}
}

/// The OTLP exporter, releasing the gate as batches leave the queue and counting the outcome,
/// and resting after a failure (the gate's [`Backoff`]).
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    gate: Arc<Gate>,
}

/// After a failed export the batches of the next second are dropped (counted) unsent and
/// unencoded; the rest doubles with every failure in a row, up to 30 s, and ends with the first
/// export that succeeds. A collector that is down or refusing then costs next to nothing.
#[derive(Debug, Default)]
struct Backoff {
    until: Option<Instant>,
    failures: u32,
    /// After a rest: recorded spans were let through to try the collector again.
    trying: bool,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const LONGEST: Duration = Duration::from_secs(30);

    fn resting(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }

    /// See [`admitted`].
    fn admitted(&mut self, now: Instant, wanted: usize, batch: usize) -> usize {
        if self.failures == 0 {
            wanted
        } else if self.resting(now) || self.trying {
            0
        } else {
            self.trying = true;
            wanted.min(batch)
        }
    }

    fn failed(&mut self, now: Instant) {
        self.trying = false;
        let rest = Self::FIRST
            .saturating_mul(1 << self.failures.min(5))
            .min(Self::LONGEST);
        self.failures = self.failures.saturating_add(1);
        self.until = Some(now + rest);
    }

    fn succeeded(&mut self) {
        *self = Self::default();
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let n = batch.len();
        self.gate.queued.fetch_sub(n, Ordering::Relaxed);
        let resting = self
            .gate
            .backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .resting(Instant::now());
        let sent = (!resting).then(|| self.inner.export(batch));
        async move {
            let result = match sent {
                Some(sent) => sent.await,
                None => Err(OTelSdkError::InternalFailure(
                    "the collector failed a moment ago: batch dropped".into(),
                )),
            };
            let mut backoff = self.gate.backoff.lock().unwrap_or_else(|p| p.into_inner());
            match &result {
                Ok(()) => {
                    self.gate.exported.increment(n as u64);
                    backoff.succeeded();
                }
                Err(_) => {
                    self.gate.export_failed.increment(n as u64);
                    if !resting {
                        backoff.failed(Instant::now());
                    }
                }
            }
            result
        }
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Puts the calling thread, and the threads it starts from now on, at the lowest CPU priority:
/// `SCHED_IDLE`, which runs only on a core nothing else wants, else nice 19.
#[allow(unsafe_code)]
pub(super) fn lowest_priority() {
    let idle = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler(2)` on the calling thread (id 0) with a valid, initialised
    // parameter it only reads; it touches no memory of this process.
    let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle) };
    if set != 0 {
        let _ = rustix::process::setpriority_process(None, 19);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_after_a_failure_doubles_up_to_thirty_seconds_and_ends_with_a_success() {
        let start = Instant::now();
        let mut backoff = Backoff::default();
        assert!(!backoff.resting(start));
        let rests: Vec<u64> = (0..8)
            .map(|_| {
                backoff.failed(start);
                (backoff.until.expect("resting") - start).as_secs()
            })
            .collect();
        assert_eq!(rests, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert!(backoff.resting(start + Duration::from_secs(29)));
        backoff.succeeded();
        assert!(!backoff.resting(start));
        backoff.failed(start);
        assert!(
            !backoff.resting(start + Duration::from_secs(1)),
            "one second again"
        );
    }

    #[test]
    fn after_a_rest_one_export_tries_the_collector_and_nothing_more_until_it_answers() {
        let start = Instant::now();
        let mut backoff = Backoff::default();
        assert_eq!(backoff.admitted(start, 2048, 512), 2048, "no failure yet");
        backoff.failed(start);
        assert_eq!(backoff.admitted(start, 2048, 512), 0, "resting");
        let later = start + Duration::from_secs(1);
        assert_eq!(backoff.admitted(later, 2048, 512), 512, "the trial");
        assert_eq!(backoff.admitted(later, 2048, 512), 0, "until it answers");
        backoff.failed(later);
        let after = later + Duration::from_secs(2);
        assert_eq!(backoff.admitted(after, 100, 512), 100, "the next trial");
        backoff.succeeded();
        assert_eq!(backoff.admitted(after, 2048, 512), 2048, "all again");
    }
}
