//! The router's metrics, served on their own listener (`MRBILL_ROUTER_METRICS_ADDR`), never on
//! the public one: the per-tenant series name every tenant, which no app may list.
//!
//! The proxy path pays one relaxed atomic add per request (no registry lookup, no label built,
//! no reference count taken): each tenant's counters live in its compiled route, carried across
//! table changes like its rate limiter, and `/metrics` renders them in Prometheus's text format. Only tenants the route
//! table knows get a series; requests for any other name are one unlabelled counter, so no
//! client can grow the label set.
//!
//! ```text
//! mrbill_router_requests_total{tenant, code="2xx"…"5xx"}   answers to a tenant's requests
//! mrbill_router_rate_limited_total{tenant}                  of those, 429s from its budget
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

/// One tenant's counters.
#[derive(Debug, Default)]
pub(crate) struct TenantStats {
    /// Answers by status class, 1xx … 5xx.
    by_class: [AtomicU64; 5],
    limited: AtomicU64,
}

impl TenantStats {
    pub(crate) fn answered(&self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn limited(&self) {
        self.limited.fetch_add(1, Ordering::Relaxed);
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
        for (i, count) in stats.by_class.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
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
            stats.limited.load(Ordering::Relaxed)
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
