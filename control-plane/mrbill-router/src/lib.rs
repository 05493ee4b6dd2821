//! `mrbill-router`: resolves tenant → cell for the apps and proxies each request to the right
//! service of the tenant's cell. No business logic and no auth decisions: cells verify tokens.
//!
//! **Invariant:** the router sets `X-Cell-Id` and `X-Forwarded-For` itself and drops any the
//! client sent, so a cell can trust them from the router alone; `/internal/…` is never routed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cell_model::routes::{RouteEntry, RouteState, RouteTable, Service, service_for, tenant_of};
use http::{HeaderName, HeaderValue, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use service_kit::ApiError;
use service_kit::extract::{ApiJson, ApiQuery};
use tokio::sync::Notify;
use wire_types::{CELL_ID_HEADER, ErrorCode};

pub mod feed;

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
    /// Sustained requests per second each tenant may send (token-bucket refill rate).
    pub tenant_rate: f64,
    /// Burst each tenant may send above the rate.
    pub tenant_burst: f64,
    /// How long a request to a frozen route waits for it to become active again.
    pub freeze_wait: Duration,
}

impl Config {
    /// Defaults for everything but the address and URLs.
    pub fn new(addr: SocketAddr, domain: &str, public_url: &str) -> Self {
        Self {
            addr,
            domain: domain.to_owned(),
            public_url: public_url.to_owned(),
            snapshot: None,
            tenant_rate: 500.0,
            tenant_burst: 1000.0,
            freeze_wait: Duration::from_secs(2),
        }
    }
}

/// A token bucket per tenant: one tenant's burst never slows another.
#[derive(Debug, Default)]
struct Limiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Limiter {
    /// `Ok` to go ahead, or how long until a token is available.
    fn check(&self, tenant: &str, rate: f64, burst: f64) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Look up before inserting: no allocation per request once the tenant is known.
        if !buckets.contains_key(tenant) {
            buckets.insert(tenant.to_owned(), (burst, now));
        }
        let Some((tokens, at)) = buckets.get_mut(tenant) else {
            return Ok(());
        };
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / rate))
        }
    }
}

/// Shared state.
#[derive(Clone)]
pub struct AppState {
    table: Arc<RwLock<RouteTable>>,
    /// Woken on every table change (requests to frozen routes wait on it).
    changed: Arc<Notify>,
    limiter: Arc<Limiter>,
    client: Client<HttpConnector, Body>,
    config: Arc<Config>,
}

impl AppState {
    /// A router whose table starts from the snapshot file, if there is one.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let table = match &config.snapshot {
            Some(path) if path.exists() => serde_json::from_slice(&std::fs::read(path)?)?,
            _ => RouteTable::default(),
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self {
            table: Arc::new(RwLock::new(table)),
            changed: Arc::new(Notify::new()),
            limiter: Arc::new(Limiter::default()),
            client,
            config: Arc::new(config),
        })
    }

    /// Replaces the table, writes the snapshot and wakes requests waiting on frozen routes.
    pub fn set_table(&self, table: RouteTable) -> anyhow::Result<()> {
        if let Some(path) = &self.config.snapshot {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, serde_json::to_vec(&table)?)?;
            std::fs::rename(&tmp, path)?;
        }
        *self
            .table
            .write()
            .map_err(|_| anyhow::anyhow!("route table poisoned"))? = table;
        self.changed.notify_waiters();
        Ok(())
    }

    /// Applies one feed event to the table (and the snapshot).
    pub fn apply(&self, event: cell_model::routes::RouteEvent) -> anyhow::Result<()> {
        let mut table = self
            .table
            .read()
            .map_err(|_| anyhow::anyhow!("route table poisoned"))?
            .clone();
        table.apply(event);
        self.set_table(table)
    }

    /// The feed revision the table is at.
    pub fn revision(&self) -> u64 {
        self.table.read().map(|t| t.revision).unwrap_or(0)
    }

    fn table(&self) -> Result<std::sync::RwLockReadGuard<'_, RouteTable>, ApiError> {
        self.table
            .read()
            .map_err(|_| ApiError::internal(anyhow::anyhow!("route table poisoned")))
    }
}

/// The router's HTTP app: `/v1/resolve`, `/healthz`, and the proxy for everything else.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/resolve", get(resolve))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(proxy)
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveQuery {
    pub tenant: Option<String>,
    pub email: Option<String>,
}

/// Where an app finds its tenant.
#[derive(Debug, Serialize, Deserialize)]
pub struct Resolved {
    pub tenant: String,
    pub cell: String,
    /// Always through the router, never a service address.
    pub endpoint: String,
    pub status: RouteState,
}

async fn resolve(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ResolveQuery>,
) -> Result<ApiJson<Resolved>, ApiError> {
    let table = state.table()?;
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
    Ok(ApiJson(Resolved {
        tenant: route.tenant.clone(),
        cell: route.cell_id.clone(),
        endpoint: format!(
            "{}/t/{}",
            state.config.public_url.trim_end_matches('/'),
            route.tenant
        ),
        status: route.state,
    }))
}

fn tenant_not_found() -> ApiError {
    ApiError::new(ErrorCode::TenantNotFound, "no such tenant")
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the ones only the router may set.
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-forwarded-for",
    CELL_ID_HEADER,
];

fn is_websocket_upgrade(headers: &http::HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

/// The upstream base URL and cell id for `route`, or `None` while it is frozen.
fn target(route: &RouteEntry, service: Service) -> Result<Option<(String, String)>, ApiError> {
    match route.state {
        RouteState::Suspended => Err(ApiError::new(
            ErrorCode::TenantSuspended,
            "this tenant is suspended",
        )),
        RouteState::Frozen => Ok(None),
        RouteState::Active => {
            let base = match service {
                Service::Poc => route.services.poc.clone(),
                Service::Dojo => route.services.dojo.clone(),
                Service::Media => route.services.media.clone(),
            };
            let base = base.ok_or_else(|| {
                ApiError::unavailable(
                    "this service of the cell is not ready",
                    Duration::from_secs(1),
                )
            })?;
            Ok(Some((base, route.cell_id.clone())))
        }
    }
}

async fn proxy(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Result<Response, ApiError> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let (tenant, rest) = tenant_of(host, req.uri().path(), &state.config.domain)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no tenant in this request"))?;
    let (service, upstream_path) =
        service_for(&rest).ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such endpoint"))?;
    if state.table()?.get(&tenant).is_none() {
        return Err(tenant_not_found());
    }
    if let Err(wait) =
        state
            .limiter
            .check(&tenant, state.config.tenant_rate, state.config.tenant_burst)
    {
        return Err(ApiError::rate_limited(wait));
    }
    // A frozen route (migration cut-over) holds the request, bounded, until it is active again.
    let deadline = tokio::time::Instant::now() + state.config.freeze_wait;
    let (base, cell_id) = loop {
        // Registered before reading the table, so a change in between is not missed.
        let changed = state.changed.notified();
        let found = {
            let table = state.table()?;
            target(table.get(&tenant).ok_or_else(tenant_not_found)?, service)?
        };
        if let Some(found) = found {
            break found;
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return Err(ApiError::unavailable(
                "this tenant is moving; retry shortly",
                Duration::from_secs(1),
            ));
        }
    };
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let uri: Uri = format!("{}{upstream_path}{query}", base.trim_end_matches('/'))
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::InvalidParameter, "unroutable path"))?;

    let (mut parts, body) = req.into_parts();
    parts.uri = uri;
    // A WebSocket handshake keeps its `Connection: upgrade` / `Upgrade: websocket` headers;
    // once the cell answers 101 the two connections are spliced together.
    let upgrade = is_websocket_upgrade(&parts.headers)
        .then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
        .flatten();
    let kept = upgrade.as_ref().map(|_| {
        (
            parts.headers.get(header::CONNECTION).cloned(),
            parts.headers.get(header::UPGRADE).cloned(),
        )
    });
    for name in DROPPED {
        parts.headers.remove(*name);
    }
    if let Some((Some(connection), Some(protocol))) = kept {
        parts.headers.insert(header::CONNECTION, connection);
        parts.headers.insert(header::UPGRADE, protocol);
    }
    parts.headers.insert(
        HeaderName::from_static(CELL_ID_HEADER),
        HeaderValue::from_str(&cell_id).map_err(ApiError::internal)?,
    );
    parts.headers.insert(
        HeaderName::from_static("x-forwarded-for"),
        HeaderValue::from_str(&peer.ip().to_string()).map_err(ApiError::internal)?,
    );
    match state.client.request(Request::from_parts(parts, body)).await {
        Ok(mut res) if res.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
            let Some(client_side) = upgrade else {
                return Err(ApiError::unavailable(
                    "the cell switched protocols unasked",
                    Duration::from_secs(1),
                ));
            };
            let cell_side = hyper::upgrade::on(&mut res);
            tokio::spawn(async move {
                match tokio::try_join!(client_side, cell_side) {
                    Ok((client, cell)) => {
                        let (mut client, mut cell) = (TokioIo::new(client), TokioIo::new(cell));
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut cell).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "websocket upgrade failed"),
                }
            });
            Ok(res.map(|_| Body::empty()).into_response())
        }
        Ok(res) => Ok(res.map(Body::new).into_response()),
        Err(e) => {
            tracing::warn!(tenant = %tenant, error = %e, "cell unreachable");
            Err(ApiError::unavailable(
                "the tenant's cell is not reachable",
                Duration::from_secs(1),
            ))
        }
    }
}
