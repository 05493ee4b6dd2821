//! `mrbill-router`: resolves tenant → cell for the apps and proxies each request to the right
//! service of the tenant's cell. No business logic and no auth decisions: cells verify tokens.
//!
//! **Invariant:** the router sets `X-Cell-Id` itself and drops any the client sent; it keeps a
//! client's `X-Forwarded-For` only from a configured trusted proxy (the ingress) and appends its
//! own peer, so a cell names the real client by trusting the router alone; `/internal/…` is
//! never routed.
//!
//! **Invariant:** no client can spend another client's rate: every request first takes from its
//! client's share, then from its tenant's budget (`limit`); `/v1/resolve` has a share per client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use cell_model::route_feed::{RouteState, RouteTable};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;
use service_kit::ApiError;
use service_kit::extract::{ApiJson, ApiQuery};
use tokio::sync::Notify;
use wire_types::ErrorCode;
use wire_types::routing::TenantStatus;

mod fast;
pub mod feed;
mod limit;
pub mod metrics;
mod peer;
mod pool;
mod proxy;
pub mod request;
mod rewind;
mod server;
mod targets;
mod trace;
mod tunnel;
mod upstream;

pub use ipnet::IpNet;
use limit::ClientBuckets;
pub use limit::Rate;
pub use server::serve;
use targets::Targets;
pub use upstream::ProxyBody;

/// Router settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SocketAddr,
    /// Wildcard domain of tenant hosts (`<slug>.<domain>`).
    pub domain: String,
    /// Public base URL of the router, used to build tenant endpoints in `resolve`.
    pub public_url: String,
    /// Where the routing table is kept for cold starts.
    pub snapshot: Option<PathBuf>,
    /// Proxies whose `X-Forwarded-For` is believed (the ingress controller's pods); anyone
    /// else is the client itself.
    pub trusted_proxies: Vec<IpNet>,
    /// Each tenant's budget (token bucket: requests per second and burst).
    pub tenant_limit: Rate,
    /// Each client's share inside its tenant's budget.
    pub client_limit: Rate,
    /// Each client's `/v1/resolve` budget.
    pub resolve_limit: Rate,
    /// How long a request to a frozen route waits for it to become active again (a migration's
    /// cut-over: about a second at 10k PoCs, more for bigger cells; then 503 + `Retry-After`).
    pub freeze_wait: Duration,
    /// Threads serving connections, each with its own event loop and upstream connection
    /// pool (default: one per core).
    pub workers: usize,
    /// How long a client may take to send a request's head, from when the router starts
    /// waiting for it (an idle keep-alive connection too); past it the connection is closed
    /// (slowloris). Default 30 s.
    pub head_timeout: Duration,
    /// Whether plain requests take the fast path (`fast`; default on). Off, every request goes
    /// through hyper, as every unusual one does anyway.
    pub fast_path: bool,
}

impl Config {
    /// Defaults for everything but the address and URLs.
    pub fn new(addr: SocketAddr, domain: &str, public_url: &str) -> Self {
        Self {
            addr,
            domain: domain.to_owned(),
            public_url: public_url.to_owned(),
            snapshot: None,
            trusted_proxies: Vec::new(),
            tenant_limit: Rate::new(500.0, 1000.0),
            client_limit: Rate::new(125.0, 250.0),
            resolve_limit: Rate::new(5.0, 20.0),
            freeze_wait: Duration::from_secs(5),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            head_timeout: Duration::from_secs(30),
            fast_path: true,
        }
    }
}

/// The routing table as the feed delivers it (for `resolve` and snapshots) and compiled for
/// the proxy.
#[derive(Debug, Default)]
struct Routes {
    table: RouteTable,
    targets: Targets,
}

/// Shared state; cloning is one reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What every worker thread reads: the routes, the change signal and the settings.
pub struct Shared {
    routes: RwLock<Routes>,
    /// The table's version, one up on every change (each worker keeps its own copy of the
    /// compiled routes and takes it again when this moves: `targets::Worker`).
    version: AtomicU64,
    /// Woken on every table change (requests to frozen routes wait on it).
    changed: Notify,
    /// Per-client `/v1/resolve` buckets (shared by the workers; resolve is rare).
    resolve_clients: Mutex<ClientBuckets>,
    config: Config,
    /// The router's own counters (`metrics`).
    stats: metrics::RouterStats,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// A router whose table starts from the snapshot file, if there is one.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let table: RouteTable = match &config.snapshot {
            Some(path) if path.exists() => serde_json::from_slice(&std::fs::read(path)?)?,
            _ => RouteTable::default(),
        };
        let targets = Targets::compile(&table, &Targets::default(), &config);
        Ok(Self(Arc::new(Shared {
            routes: RwLock::new(Routes { table, targets }),
            version: AtomicU64::new(1),
            changed: Notify::new(),
            resolve_clients: Mutex::default(),
            config,
            stats: metrics::RouterStats::default(),
        })))
    }

    /// Replaces the table, writes the snapshot and wakes requests waiting on frozen routes.
    pub fn set_table(&self, table: RouteTable) -> anyhow::Result<()> {
        if let Some(path) = &self.config.snapshot {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, serde_json::to_vec(&table)?)?;
            std::fs::rename(&tmp, path)?;
        }
        {
            let mut routes = self
                .routes
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let targets = Targets::compile(&table, &routes.targets, &self.config);
            *routes = Routes { table, targets };
            self.version.fetch_add(1, Ordering::Release);
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// Applies one feed event to the table (and the snapshot).
    pub fn apply(&self, event: cell_model::route_feed::RouteEvent) -> anyhow::Result<()> {
        let mut table = self.routes().table.clone();
        table.apply(event);
        self.set_table(table)
    }

    /// Every routed tenant's counters, the number of routes and the feed revision.
    fn stats_snapshot(&self) -> (Vec<(String, Arc<metrics::TenantStats>)>, usize, u64) {
        let routes = self.routes();
        let mut tenants = routes.targets.stats();
        tenants.sort_by(|a, b| a.0.cmp(&b.0));
        (tenants, routes.table.routes.len(), routes.table.revision)
    }

    /// The route feed sent a line (an event or a keep-alive) just now.
    pub fn feed_seen(&self) {
        self.stats.feed_seen_now();
    }

    /// The feed revision the table is at.
    pub fn revision(&self) -> u64 {
        self.routes().table.revision
    }

    /// `Ok` when `client` may resolve now, else how long until it may.
    fn admit_resolve(&self, client: std::net::IpAddr) -> Result<(), Duration> {
        self.resolve_clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .admit(client, self.config.resolve_limit, Instant::now())
    }

    /// The table's version (see [`Shared::version`]).
    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn routes(&self) -> std::sync::RwLockReadGuard<'_, Routes> {
        self.routes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An HTTP/1 client with keep-alive connections, for the route feed (the proxy's connections to
/// the cells are each worker's own: `pool`).
pub(crate) fn http_client<B>() -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// The router's own API: `/v1/resolve` and `/healthz`.
pub(crate) fn api(state: AppState) -> Router {
    Router::new()
        .route("/v1/resolve", get(resolve))
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn_with_state(
            cell_model::contract::BODY_LIMIT,
            service_kit::http::read_body_first,
        ))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveQuery {
    pub tenant: Option<String>,
    pub email: Option<String>,
}

async fn resolve(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ResolveQuery>,
) -> Result<ApiJson<wire_types::routing::Resolved>, ApiError> {
    let routes = state.routes();
    let table = &routes.table;
    let route = match (&q.tenant, &q.email) {
        (Some(tenant), None) => table.get(&tenant.to_ascii_lowercase()),
        (None, Some(email)) => table.tenant_for_email(email),
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                "give exactly one of `tenant` or `email`",
            ));
        }
    };
    let route = route.ok_or_else(tenant_not_found)?;
    Ok(ApiJson(wire_types::routing::Resolved {
        tenant: route.tenant.clone(),
        cell: route.cell_id.clone(),
        endpoint: format!(
            "{}/t/{}",
            state.config.public_url.trim_end_matches('/'),
            route.tenant
        ),
        status: match route.state {
            RouteState::Active => TenantStatus::Active,
            RouteState::Frozen => TenantStatus::Frozen,
            RouteState::Suspended => TenantStatus::Suspended,
        },
    }))
}

fn tenant_not_found() -> ApiError {
    ApiError::new(ErrorCode::TenantNotFound, "no such tenant")
}
