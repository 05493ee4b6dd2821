//! `mrbill-router`: resolves tenant → cell for the apps and proxies each request to the right
//! service of the tenant's cell. No business logic and no auth decisions: cells verify tokens.
//!
//! **Invariant:** the router sets `X-Cell-Id` and `X-Forwarded-For` itself and drops any the
//! client sent, so a cell can trust them from the router alone; `/internal/…` is never routed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cell_model::routes::{RouteState, RouteTable, Service, service_for, tenant_of};
use http::{HeaderName, HeaderValue, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use service_kit::ApiError;
use service_kit::extract::{ApiJson, ApiQuery};
use wire_types::{CELL_ID_HEADER, ErrorCode};

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
}

/// Shared state.
#[derive(Clone)]
pub struct AppState {
    table: Arc<RwLock<RouteTable>>,
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
            client,
            config: Arc::new(config),
        })
    }

    /// Replaces the table (and writes the snapshot).
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
        Ok(())
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
    let route = route.ok_or_else(|| ApiError::new(ErrorCode::TenantNotFound, "no such tenant"))?;
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
    let (base, cell_id) = {
        let table = state.table()?;
        let route = table
            .get(&tenant)
            .ok_or_else(|| ApiError::new(ErrorCode::TenantNotFound, "no such tenant"))?;
        match route.state {
            RouteState::Active => {}
            RouteState::Suspended => {
                return Err(ApiError::new(
                    ErrorCode::TenantSuspended,
                    "this tenant is suspended",
                ));
            }
            RouteState::Frozen => {
                return Err(ApiError::unavailable(
                    "this tenant is moving; retry shortly",
                    Duration::from_secs(1),
                ));
            }
        }
        let (service, _) = service_for(&rest)
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such endpoint"))?;
        let base = match service {
            Service::Poc => Some(route.services.poc.clone()),
            Service::Dojo => route.services.dojo.clone(),
            Service::Media => route.services.media.clone(),
        };
        (
            base.ok_or_else(|| {
                ApiError::unavailable(
                    "this service of the cell is not ready",
                    Duration::from_secs(1),
                )
            })?,
            route.cell_id.clone(),
        )
    };
    let (_, upstream_path) =
        service_for(&rest).ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such endpoint"))?;
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
    for name in DROPPED {
        parts.headers.remove(*name);
    }
    parts.headers.insert(
        HeaderName::from_static(CELL_ID_HEADER),
        HeaderValue::from_str(&cell_id).map_err(ApiError::internal)?,
    );
    parts.headers.insert(
        HeaderName::from_static("x-forwarded-for"),
        HeaderValue::from_str(&peer.ip().to_string()).map_err(ApiError::internal)?,
    );
    let upstream = Request::from_parts(parts, body);
    match state.client.request(upstream).await {
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
