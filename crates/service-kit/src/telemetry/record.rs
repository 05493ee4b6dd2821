//! Spans recorded off the SDK's per-span machinery, for a process's hottest path (the router's
//! requests).
//!
//! The caller keeps a small record of each span in its own types (ids from the tracer's
//! generator and sampler, times, static names, reference-counted attributes) and, when the span
//! ends, hands the record to a [`Recorder`]: one push into a bounded lock-free queue. A thread at
//! the lowest CPU priority turns records into the SDK's `SpanData` and gives them to the export
//! pipeline, the same one the tracer provider ends its spans into. So on the request path:
//! - a span costs its record and the push, nothing of the SDK's span building, attribute
//!   vectors or processors;
//! - a full queue drops the record, counted as `mrbill_trace_spans_dropped_total{reason=
//!   "queue_full"}` (`OTEL_BSP_MAX_QUEUE_SIZE` records, 2048 by default);
//! - a collector that is down costs nothing more: while the exporter rests after a failed
//!   export, the thread drops records without making spans of them (counted as
//!   `export_failed`), and after the rest it makes one export's worth to try the collector
//!   with, the rest dropped until the collector has answered.
//!
//! The thread wakes when a batch's worth is queued (512) or every `OTEL_BSP_SCHEDULE_DELAY`; a
//! span then waits in the batch processor up to that delay again. [`super::shutdown`] hands on
//! what is queued before the pipeline's last export.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::trace::SpanData;

use crate::config::TraceEnv;

/// A finished span as its maker recorded it.
pub trait Finished: Send + 'static {
    /// The span to export, from `scope` (the process's tracer's).
    fn into_span(self, scope: InstrumentationScope) -> SpanData;
}

/// How this process records: set by [`configure`] when traces are exported.
struct Settings {
    scope: InstrumentationScope,
    capacity: usize,
    delay: Duration,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// What [`super::shutdown`] runs first: each recorder's last drain.
static STOPS: Mutex<Vec<Box<dyn FnOnce() + Send>>> = Mutex::new(Vec::new());

/// How many records wake the thread, and how many it hands on between two looks at the
/// exporter's rest (the batch processor's default export batch).
const BATCH: usize = 512;

/// Called by the trace set-up once the pipeline exists.
pub(super) fn configure(service: &'static str, env: &TraceEnv) {
    let _ = SETTINGS.set(Settings {
        scope: InstrumentationScope::builder(service).build(),
        capacity: env.queue.unwrap_or(2048),
        delay: Duration::from_millis(env.schedule_delay_ms.unwrap_or(5000).max(1)),
    });
}

/// Hands on every recorder's queued spans and stops its thread.
pub(super) fn stop_all() {
    let stops = std::mem::take(&mut *STOPS.lock().unwrap_or_else(|p| p.into_inner()));
    for stop in stops {
        stop();
    }
}

/// A queue of finished spans of one kind, and the thread that exports them.
pub struct Recorder<R> {
    shared: Arc<Shared<R>>,
}

struct Shared<R> {
    queue: ArrayQueue<R>,
    thread: OnceLock<Thread>,
    stopping: AtomicBool,
    queue_full: metrics::Counter,
}

impl<R: Finished> Recorder<R> {
    /// A recorder whose spans join the process's export; `None` when traces are off (or its
    /// thread could not start, which is logged).
    pub fn start() -> Option<Self> {
        let settings = SETTINGS.get()?;
        let shared = Arc::new(Shared {
            queue: ArrayQueue::new(settings.capacity),
            thread: OnceLock::new(),
            stopping: AtomicBool::new(false),
            queue_full: metrics::counter!("mrbill_trace_spans_dropped_total", "reason" => "queue_full"),
        });
        let worker = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("trace-record".into())
            .spawn(move || {
                super::export::lowest_priority();
                loop {
                    std::thread::park_timeout(settings.delay);
                    let stopping = worker.stopping.load(Ordering::Acquire);
                    worker.drain(&settings.scope);
                    if stopping {
                        return;
                    }
                }
            });
        let handle = match spawned {
            Ok(handle) => handle,
            Err(e) => {
                tracing::warn!(error = %e, "trace recorder not started: its spans are not exported");
                return None;
            }
        };
        let _ = shared.thread.set(handle.thread().clone());
        let stopped = shared.clone();
        STOPS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(move || {
                stopped.stopping.store(true, Ordering::Release);
                handle.thread().unpark();
                let _ = handle.join();
            }));
        Some(Self { shared })
    }

    /// Queues a finished span; never waits. A full queue drops it (counted).
    pub fn record(&self, span: R) {
        let shared = &self.shared;
        if shared.queue.push(span).is_err() {
            shared.queue_full.increment(1);
        } else if shared.queue.len() >= BATCH
            && let Some(thread) = shared.thread.get()
        {
            thread.unpark();
        }
    }
}

impl<R: Finished> Shared<R> {
    /// Hands everything queued to the pipeline, or what it admits while the collector is
    /// failing, dropping the rest unmade.
    fn drain(&self, scope: &InstrumentationScope) {
        // Asked only with a record in hand: after a rest, what it admits is the collector's
        // trial, which must be sent.
        while let Some(first) = self.queue.pop() {
            let admitted = super::export::admitted(BATCH);
            let mut next = Some(first);
            let mut taken = 0;
            while let Some(record) = next {
                if taken < admitted {
                    super::export::submit(record.into_span(scope.clone()));
                }
                taken += 1;
                next = if taken < BATCH {
                    self.queue.pop()
                } else {
                    None
                };
            }
            super::export::dropped_unsent(taken.saturating_sub(admitted));
            if taken < BATCH {
                return;
            }
        }
    }
}
