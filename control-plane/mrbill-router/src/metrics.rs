//! The router's metrics, served on their own listener (`MRBILL_ROUTER_METRICS_ADDR`), never on
//! the public one: the per-tenant series name every tenant, which no app may list.
//!
//! The proxy path pays one relaxed atomic add per request, to its worker's own counters (no
//! registry lookup, no label built, no reference count taken): each tenant's counters live in
//! its compiled route, carried across table changes like its rate limiter, and `/metrics` sums
//! the workers' and renders them in Prometheus's text format. Only tenants the route table
//! knows get a series; requests for any other name are one unlabelled counter, so no client can
//! grow the label set.
//!
//! ```text
//! mrbill_router_requests_total{tenant, code="2xx"…"5xx"}   answers to a tenant's requests
//! mrbill_router_rate_limited_total{tenant}                  of those, 429s from its budget
//! mrbill_router_fast_path_requests_total{tenant}            of those, the fast path's (`fast`)
//! mrbill_router_unknown_tenant_requests_total               requests naming no known tenant
//! mrbill_router_routes                                      routes in the table
//! mrbill_router_route_feed_revision                         the table's feed revision
//! mrbill_router_route_feed_last_seen_timestamp_seconds      the feed's last line (keep-alives: 15 s)
//! ```

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use http::{StatusCode, header};

use crate::AppState;

/// One tenant's counters, a set per worker: a worker adds only to its own set, on a cache line
/// of its own, so two workers never write the same line (a shared counter bounces between the
/// cores on every request); `/metrics` sums the sets.
#[derive(Debug)]
pub(crate) struct TenantStats(Box<[WorkerCounts]>);

#[derive(Debug, Default)]
#[repr(align(128))]
struct WorkerCounts {
    /// Answers by status class, 1xx … 5xx.
    by_class: [AtomicU64; 5],
    limited: AtomicU64,
    /// Answers the fast path gave (the rest went through hyper).
    fast: AtomicU64,
}

impl TenantStats {
    /// Counters for a router with `workers` workers.
    pub(crate) fn new(workers: usize) -> Self {
        Self(
            (0..workers.max(1))
                .map(|_| WorkerCounts::default())
                .collect(),
        )
    }

    fn of(&self, worker: usize) -> &WorkerCounts {
        &self.0[worker % self.0.len()]
    }

    pub(crate) fn answered(&self, worker: usize, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.of(worker).by_class[class].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn limited(&self, worker: usize) {
        self.of(worker).limited.fetch_add(1, Ordering::Relaxed);
    }

    /// An answer to a request the fast path took.
    pub(crate) fn answered_fast(&self, worker: usize, status: StatusCode) {
        self.answered(worker, status);
        self.of(worker).fast.fetch_add(1, Ordering::Relaxed);
    }

    /// One counter summed over the workers.
    fn total(&self, counter: impl Fn(&WorkerCounts) -> &AtomicU64) -> u64 {
        self.0
            .iter()
            .map(|w| counter(w).load(Ordering::Relaxed))
            .sum()
    }

    /// Answers of status class `class` (0: 1xx … 4: 5xx), all workers.
    fn answers(&self, class: usize) -> u64 {
        self.total(|w| &w.by_class[class])
    }
}

/// The router's own counters.
#[derive(Debug, Default)]
pub(crate) struct RouterStats {
    pub(crate) unknown_tenant: AtomicU64,
    /// Unix seconds of the feed's last line.
    pub(crate) feed_seen: AtomicU64,
}

impl RouterStats {
    pub(crate) fn feed_seen_now(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.feed_seen.store(now, Ordering::Relaxed);
    }
}

/// `/metrics` (and nothing else) for the metrics listener.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(state)
}

async fn render(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text(&state),
    )
}

/// The exposition text.
pub(crate) fn text(state: &AppState) -> String {
    let (tenants, routes, revision) = state.stats_snapshot();
    let mut out = String::new();
    out.push_str("# HELP mrbill_router_requests_total Answers to requests for a tenant's cell, by status class.\n# TYPE mrbill_router_requests_total counter\n");
    for (tenant, stats) in &tenants {
        for i in 0..5 {
            let count = stats.answers(i);
            if count > 0 {
                let _ = writeln!(
                    out,
                    "mrbill_router_requests_total{{tenant=\"{tenant}\",code=\"{}xx\"}} {count}",
                    i + 1
                );
            }
        }
    }
    out.push_str("# HELP mrbill_router_rate_limited_total Requests refused with 429 by the tenant's or its client's budget.\n# TYPE mrbill_router_rate_limited_total counter\n");
    for (tenant, stats) in &tenants {
        let _ = writeln!(
            out,
            "mrbill_router_rate_limited_total{{tenant=\"{tenant}\"}} {}",
            stats.total(|w| &w.limited)
        );
    }
    out.push_str("# HELP mrbill_router_fast_path_requests_total Of a tenant's answers, those the router's fast path gave (the rest went through hyper).\n# TYPE mrbill_router_fast_path_requests_total counter\n");
    for (tenant, stats) in &tenants {
        let _ = writeln!(
            out,
            "mrbill_router_fast_path_requests_total{{tenant=\"{tenant}\"}} {}",
            stats.total(|w| &w.fast)
        );
    }
    let router = &state.stats;
    let _ = write!(
        out,
        "# HELP mrbill_router_unknown_tenant_requests_total Requests naming no tenant the route table knows.\n\
         # TYPE mrbill_router_unknown_tenant_requests_total counter\n\
         mrbill_router_unknown_tenant_requests_total {}\n\
         # HELP mrbill_router_routes Routes in the table.\n# TYPE mrbill_router_routes gauge\n\
         mrbill_router_routes {routes}\n\
         # HELP mrbill_router_route_feed_revision The route table's feed revision.\n\
         # TYPE mrbill_router_route_feed_revision gauge\n\
         mrbill_router_route_feed_revision {revision}\n\
         # HELP mrbill_router_route_feed_last_seen_timestamp_seconds When the route feed last sent a line (0: never).\n\
         # TYPE mrbill_router_route_feed_last_seen_timestamp_seconds gauge\n\
         mrbill_router_route_feed_last_seen_timestamp_seconds {}\n",
        router.unknown_tenant.load(Ordering::Relaxed),
        router.feed_seen.load(Ordering::Relaxed),
    );
    // What the process-wide recorder holds: the trace export's counters.
    out.push_str(&service_kit::telemetry::metrics_handle().render());
    out
}
