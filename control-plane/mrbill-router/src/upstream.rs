//! The exchange with a cell: where it is (a service's [`Upstream`], its request URI), the
//! client's body held to the service's limit, one retry for idempotent requests without a body,
//! and the router's own refusals.
//!
//! **Invariant:** a client's mistake never looks like an outage. A body over the service's
//! limit is answered 413 `payload_too_large` by the router itself, the way the service would,
//! and never reaches the service: a body with a declared length over the limit is refused
//! up front, and one without a length (chunked) is gathered up to the limit first (bodies are
//! small: ≤ 256 KiB). The service therefore never closes a connection the router is still
//! writing to, which used to surface as 503 "cell not reachable".
//!
//! **Invariant:** the router's own answers keep the client's connection usable. hyper closes a
//! keep-alive connection whose request body was not read; an ingress that pooled it then fails
//! the next request it sends there. So a request the router refuses (no such tenant, rate
//! limited, suspended, …) has its body read and dropped first, bounded.

use std::time::Duration;

use axum::response::IntoResponse;
use bytes::Bytes;
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, header};
use http_body::Body as _;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use service_kit::ApiError;
use wire_types::ErrorCode;

use crate::pool::Pool;

/// What the proxy answers with: the cell's response as it streams in, or the router's own.
pub type ProxyBody = Either<Incoming, axum::body::Body>;

/// What the router sends a cell: the client's body as it streams in (its length is declared
/// and within the limit), or one gathered in full (no body, or a chunked one).
pub(crate) type UpstreamBody = Either<Incoming, Full<Bytes>>;

/// A refused body is read (and dropped) before the answer, up to this much and this long, so a
/// client still sending reads the 413 instead of a reset connection (nginx's lingering close
/// does the same); past either the connection is closed after the answer.
const DISCARD_MAX: u64 = 1024 * 1024 * 1024;
const DISCARD_TIME: Duration = Duration::from_secs(10);

/// A refused request's body is read up to the largest body any service takes, for at most this
/// long; past either the connection closes after the answer.
const REFUSED_MAX: u64 = cell_model::contract::DOJO_BODY_LIMIT as u64;
const REFUSED_TIME: Duration = Duration::from_secs(1);

/// One service of a cell, parsed once per table change. Cells speak plain HTTP/1.1 inside the
/// platform: any other scheme is not an upstream.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) authority: Authority,
    /// A path the service is mounted under (usually empty).
    base_path: String,
}

impl Upstream {
    pub(crate) fn parse(url: &str) -> Option<Self> {
        let uri: Uri = url.parse().ok()?;
        let parts = uri.into_parts();
        if parts.scheme? != Scheme::HTTP {
            return None;
        }
        Some(Self {
            authority: parts.authority?,
            base_path: parts
                .path_and_query
                .map(|p| p.path().trim_end_matches('/').to_owned())
                .unwrap_or_default(),
        })
    }

    /// A copy that shares no reference count with this one (a worker's own: `targets::Worker`).
    pub(crate) fn copy(&self) -> Self {
        let own = bytes::Bytes::copy_from_slice(self.authority.as_str().as_bytes());
        Self {
            authority: Authority::from_maybe_shared(own).unwrap_or_else(|_| self.authority.clone()),
            base_path: self.base_path.clone(),
        }
    }

    /// The service's base path (the fast path writes the request target itself: `fast`).
    pub(crate) fn base_path(&self) -> &str {
        &self.base_path
    }

    /// The request's URI at the service, in origin form (`/path?query`: what HTTP/1.1 sends).
    pub(crate) fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, ApiError> {
        let mut target = String::with_capacity(
            self.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1),
        );
        target.push_str(&self.base_path);
        target.push_str(path);
        if let Some(query) = query {
            target.push('?');
            target.push_str(query);
        }
        PathAndQuery::try_from(target)
            .map(Uri::from)
            .map_err(|_| ApiError::new(ErrorCode::InvalidParameter, "unroutable path"))
    }
}

/// The body to send upstream, or the router's own 413 when it is over `limit`.
pub(crate) async fn body(
    body: Incoming,
    headers: &HeaderMap,
    limit: usize,
) -> Result<UpstreamBody, Response<ProxyBody>> {
    if body.is_end_stream() {
        return Ok(Either::Right(Full::new(Bytes::new())));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => {
            // The rare paths' futures boxed: the request's future stays small.
            let read =
                length <= DISCARD_MAX && Box::pin(discard(body, DISCARD_MAX, DISCARD_TIME)).await;
            Err(too_large(limit, !read))
        }
        // HTTP/1 framing holds the body to its declared length.
        Some(_) => Ok(Either::Left(body)),
        None => match Box::pin(Limited::new(body, limit).collect()).await {
            Ok(collected) => Ok(Either::Right(Full::new(collected.to_bytes()))),
            // Over the limit, or the client broke off: either way nothing is forwarded.
            Err(_) => Err(too_large(limit, true)),
        },
    }
}

/// The router's own answer `error` to a request whose body is not forwarded: the body is read
/// and dropped first (bounded), and the connection closes after the answer when it was not.
pub(crate) async fn refuse(body: Incoming, error: ApiError) -> Response<ProxyBody> {
    let read = body.is_end_stream() || discard(body, REFUSED_MAX, REFUSED_TIME).await;
    let mut res = error.into_response().map(Either::Right);
    if !read {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// Reads `body` to its end, at most `max` bytes within `time`; whether it got there.
async fn discard(mut body: Incoming, max: u64, time: Duration) -> bool {
    let mut read = 0u64;
    let drain = async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                    if read > max {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        true
    };
    tokio::time::timeout(time, drain).await.unwrap_or(false)
}

/// 413 `payload_too_large` with the limit, closing the connection when the body was not read.
pub(crate) fn too_large(limit: usize, close: bool) -> Response<ProxyBody> {
    let mut res = ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large")
        .with_details(serde_json::json!({ "limit_bytes": limit }))
        .into_response()
        .map(Either::Right);
    if close {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// Sends the request. One that is idempotent and has no body (nothing of the client's is lost
/// by sending it again) is sent once more when the exchange fails, e.g. on a kept connection
/// the cell broke off while answering; the pool itself only retries requests a connection
/// closed on before any of them was written.
pub(crate) async fn send(
    pool: &Pool,
    authority: &Authority,
    parts: Parts,
    body: UpstreamBody,
    upgrade: bool,
) -> anyhow::Result<Response<Incoming>> {
    let again = (idempotent(&parts.method) && body.is_end_stream() && !upgrade).then(|| {
        let mut copy = Request::new(Either::Right(Full::new(Bytes::new())));
        *copy.method_mut() = parts.method.clone();
        *copy.uri_mut() = parts.uri.clone();
        *copy.version_mut() = parts.version;
        *copy.headers_mut() = parts.headers.clone();
        copy
    });
    let first = pool.send(authority, Request::from_parts(parts, body)).await;
    match (first, again) {
        (Err(e), Some(again)) => {
            tracing::debug!(error = %e, "idempotent request failed once; sending it again");
            pool.send(authority, again).await
        }
        (result, _) => result,
    }
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_uris_are_origin_form_with_the_services_base_path_and_the_query() {
        let plain = Upstream::parse("http://127.0.0.1:9").expect("url");
        assert_eq!(
            plain
                .uri("/v1/pocs", Some("q=a%20b"))
                .expect("uri")
                .to_string(),
            "/v1/pocs?q=a%20b"
        );
        let mounted = Upstream::parse("http://poc.cell-acme.svc:8080/api/").expect("url");
        assert_eq!(
            mounted.uri("/openapi.json", None).expect("uri").to_string(),
            "/api/openapi.json"
        );
        assert_eq!(mounted.authority, "poc.cell-acme.svc:8080");
        assert!(
            Upstream::parse("https://poc.cell-acme.svc").is_none(),
            "not plain HTTP"
        );
        assert!(Upstream::parse("not a url").is_none());
        assert!(Upstream::parse("/relative").is_none());
    }
}
