//! The HTTP stack every service shares: health, readiness, metrics, request ids, tracing,
//! body limits (every body read before routing), JSON 404/405, panic → 500, and the cell guard.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, HttpBody as _};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, header};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use sqlx::PgPool;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use wire_types::ErrorCode;

use crate::ApiError;
use crate::auth::{ServiceToken, require_service_token};
use crate::cell::{CellGuard, guard};
use crate::telemetry::trace;

/// Whether the service should receive traffic: started, database reachable, not draining.
#[derive(Clone, Debug)]
pub struct Readiness {
    draining: Arc<AtomicBool>,
    pool: Option<PgPool>,
}

impl Readiness {
    pub fn new(pool: Option<PgPool>) -> Self {
        Self {
            draining: Arc::new(AtomicBool::new(false)),
            pool,
        }
    }

    /// Marks the service as shutting down: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    async fn check(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::SeqCst) {
            return Err("shutting down");
        }
        if let Some(pool) = &self.pool {
            let ping = sqlx::query("SELECT 1").execute(pool);
            match tokio::time::timeout(Duration::from_secs(2), ping).await {
                Ok(Ok(_)) => {}
                _ => return Err("database unreachable"),
            }
        }
        Ok(())
    }
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive", body = Object)))]
pub async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: started, database reachable, not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "Ready for traffic", body = Object),
    (status = 503, description = "Not ready (starting, draining or database down)",
        headers(("Retry-After" = u64, description = "Seconds to wait")), body = wire_types::ErrorBody),
))]
pub async fn readyz(State(readiness): State<Readiness>) -> Response {
    match readiness.check().await {
        Ok(()) => axum::Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(why) => ApiError::unavailable(why, Duration::from_secs(1)).into_response(),
    }
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        crate::telemetry::metrics_handle().render(),
    )
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this endpoint",
    )
}

/// Counts requests and records latency per matched route (never the raw path, which would
/// explode label cardinality and could leak ids).
async fn track_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let span = tracing::Span::current();
    span.record("http.route", route.as_str());
    trace::rename(&span, || format!("{method} {route}"));
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("mrbill_http_requests_total", &labels).increment(1);
    metrics::histogram!("mrbill_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

/// Reads the whole request body (up to `limit`) before routing, so every answer — including a
/// 401, 404, 405 or 415 given without looking at the body — leaves the connection clean for the
/// next request. hyper closes a keep-alive connection whose request body was not read to its
/// end; a proxy that pooled it (the router, an ingress) then fails the next request it sends
/// there, which its client sees as 503. Bodies are small (≤ 256 KiB), so holding one is cheap.
pub async fn read_body_first(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    match Limited::new(body, limit).collect().await {
        Ok(read) => {
            let body = Body::from(read.to_bytes());
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) if e.is::<LengthLimitError>() => {
            // The rest of the body is not read: the connection closes after this answer.
            let mut res = ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large")
                .with_details(serde_json::json!({ "limit_bytes": limit }))
                .into_response();
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            res
        }
        Err(_) => {
            ApiError::new(ErrorCode::InvalidJson, "could not read the request body").into_response()
        }
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal(anyhow::anyhow!("handler panicked")).into_response()
}

/// Settings of the shared HTTP stack.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub body_limit: usize,
    pub guard: CellGuard,
    pub readiness: Readiness,
}

/// Wraps a service's public routes with the shared endpoints and middleware.
pub fn public_router(routes: Router, config: HttpConfig) -> Router {
    // Install the recorder before the first request is counted.
    crate::telemetry::metrics_handle();
    let ops = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(config.readiness);
    routes
        .route_layer(middleware::from_fn(track_metrics))
        .merge(ops)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(config.guard, guard))
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(middleware::from_fn_with_state(
            config.body_limit,
            read_body_first,
        ))
        .pipe(with_common_layers)
}

/// Wraps an API that is not a cell service (the control plane): the shared endpoints, JSON
/// 404/405, body limit, request ids and tracing, but no cell guard.
pub fn admin_router(routes: Router, readiness: Readiness, body_limit: usize) -> Router {
    crate::telemetry::metrics_handle();
    let ops = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(readiness);
    routes
        .route_layer(middleware::from_fn(track_metrics))
        .merge(ops)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(body_limit, read_body_first))
        .pipe(with_common_layers)
}

/// Wraps a service's internal routes: service-token auth, JSON errors, request ids.
pub fn internal_router(routes: Router, token: ServiceToken, body_limit: usize) -> Router {
    routes
        .route_layer(middleware::from_fn(track_metrics))
        .route_layer(middleware::from_fn_with_state(token, require_service_token))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(body_limit, read_body_first))
        .pipe(with_common_layers)
}

/// Request id (set if absent, echoed back), a tracing span per request (continuing the caller's
/// trace), panic → 500.
fn with_common_layers(router: Router) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span)
                    .on_request(())
                    .on_response(log_response)
                    .on_failure(()),
            )
            .layer(CatchPanicLayer::custom(panic_response)),
    )
}

/// The request's span: (except for probes and scrapes) a server span named `<METHOD> <route template>` once routed (see
/// [`track_metrics`]), a child of the caller's `traceparent`. Only the path is logged: query
/// strings may carry tokens; the exported span has the route template only, never ids.
fn request_span(req: &Request) -> tracing::Span {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    let method = req.method().as_str();
    if matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        // Probes and scrapes, every few seconds: logged, never traced.
        return tracing::debug_span!("probe", path = %req.uri().path(), request_id = %request_id);
    }
    let span = tracing::info_span!(
        "request",
        method = %method,
        path = %req.uri().path(),
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        otel.kind = "server",
        http.route = tracing::field::Empty,
    );
    if trace::enabled() {
        // Off, nothing of the caller's context is read: every request passes here.
        trace::adopt(&span, trace::extract(req.headers()));
    }
    trace::rename(&span, || method.to_owned());
    trace::attribute(&span, "http.request.method", method.to_owned());
    span
}

fn log_response<B>(res: &http::Response<B>, latency: Duration, span: &tracing::Span) {
    let status = res.status();
    trace::attribute(
        span,
        "http.response.status_code",
        i64::from(status.as_u16()),
    );
    if status.is_server_error() {
        trace::failed(span);
    }
    tracing::info!(
        status = status.as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "response"
    );
}

/// `value.pipe(f)` = `f(value)`, to keep builder chains readable.
trait Pipe: Sized {
    fn pipe<R>(self, f: impl FnOnce(Self) -> R) -> R {
        f(self)
    }
}

impl<T> Pipe for T {}
