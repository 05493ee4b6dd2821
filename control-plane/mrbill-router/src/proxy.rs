//! The proxy path: every request that is not the router's own API.
//!
//! It runs on every request, so it is kept lean: the routing table is compiled once per change
//! (`targets`: parsed upstream authorities, ready header values, one rate limiter per tenant)
//! and copied by each worker, and a request costs one lookup in its worker's copy, one URI and
//! the header values the router sets.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::response::IntoResponse;
use cell_model::contract::Service;
use cell_model::route_feed::RouteState;

use crate::request::{service_for, tenant_of};
use http::uri::Authority;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use service_kit::ApiError;
use wire_types::{CELL_ID_HEADER, ErrorCode};

use crate::peer::Client;
use crate::targets::{Target, Worker, dojo_of};
use crate::trace::{Arrived, RequestSpan};
use crate::upstream::{self, ProxyBody};
use crate::{AppState, tenant_not_found};

/// The headers the router sets, named once (a name made with `from_static` at run time is
/// looked up among the standard ones on every request).
static X_CELL_ID: HeaderName = HeaderName::from_static(CELL_ID_HEADER);
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the ones only the router may set.
pub(crate) static DROPPED: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static(CELL_ID_HEADER),
];

/// Removes the [`DROPPED`] headers. A request carries a few headers and rarely one of these, so
/// its names are compared first and only the ones present are removed (each removal hashes).
fn drop_hop_by_hop(headers: &mut http::HeaderMap) {
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|name| DROPPED.contains(name))
        .cloned()
        .collect();
    for name in present {
        headers.remove(name);
    }
}

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

/// Proxies one request to its tenant's cell; errors become the router's own JSON answers.
pub(crate) async fn handle(
    worker: &Worker,
    client: &Client,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let arrived = Arrived::now(&parts.headers);
    let destination = match destination(worker, client.ip, &parts).await {
        Ok(destination) => destination,
        Err(e) => {
            // Boxed, as are the other rare paths' futures: the request's future stays small,
            // and moving it costs less.
            let res = Box::pin(upstream::refuse(body, e)).await;
            if let Some(arrived) = arrived {
                arrived.refused(&parts.method, res.status());
            }
            return res;
        }
    };
    let (target, service, upstream, prefix, room) = destination;
    let span = arrived.and_then(|a| a.routed(&parts.method, service, &target.trace));
    let res = match forward(
        worker,
        client,
        (parts, body, span.as_ref()),
        (&target, service, upstream, prefix, room),
    )
    .await
    {
        Ok(res) => res,
        Err(e) => e.into_response().map(Either::Right),
    };
    target.stats.answered(worker.index, res.status());
    if let Some(span) = span {
        span.end(res.status());
    }
    res
}

/// Where a request goes: the tenant's route, the service, the replica's authority and the URI
/// there, the path prefix, and for a dojo's requests the room it is pinned by.
type Destination = (
    Arc<Target>,
    Service,
    (Authority, Uri),
    Option<HeaderValue>,
    Option<Room>,
);

/// A dojo's room as routed: the tenant, the dojo and the replica chosen for it.
pub(crate) struct Room {
    tenant: String,
    dojo: String,
    replica: Authority,
}

impl Room {
    /// Resolves once the current route sends this room to another replica (the replica set
    /// changed), or no longer routes the tenant.
    async fn moved(&self, state: &AppState) {
        let path = format!("/v1/dojos/{}", self.dojo);
        loop {
            // Registered before reading the table, so a change in between is seen.
            let changed = state.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let here = state.target(&self.tenant).is_some_and(|t| {
                t.upstream(Service::Dojo, &path)
                    .is_some_and(|u| u.authority == self.replica)
            });
            if !here {
                return;
            }
            changed.await;
        }
    }
}

async fn forward(
    worker: &Worker,
    client: &Client,
    (mut parts, body, span): (http::request::Parts, Incoming, Option<&RequestSpan>),
    (target, service, (authority, uri), prefix, room): (
        &Target,
        Service,
        (Authority, Uri),
        Option<HeaderValue>,
        Option<Room>,
    ),
) -> Result<Response<ProxyBody>, ApiError> {
    let limit = service.body_limit();
    let body = match upstream::body(body, &parts.headers, limit).await {
        Ok(body) => body,
        Err(refused) => return Ok(refused),
    };
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
    drop_hop_by_hop(&mut parts.headers);
    // Room for what the router adds, in one step (each insert past the capacity regrows).
    parts.headers.reserve(4);
    if let Some((Some(connection), Some(protocol))) = kept {
        parts.headers.insert(header::CONNECTION, connection);
        parts.headers.insert(header::UPGRADE, protocol);
    }
    parts
        .headers
        .insert(X_CELL_ID.clone(), target.cell_id.clone());
    parts
        .headers
        .insert(X_FORWARDED_FOR.clone(), client.forwarded_for.clone());
    if let Some(prefix) = prefix {
        parts.headers.insert(X_FORWARDED_PREFIX.clone(), prefix);
    }
    if let Some(span) = span {
        span.inject(&mut parts.headers);
    }
    match upstream::send(&worker.pool, &authority, parts, body, upgrade.is_some()).await {
        Ok(mut res) if res.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let Some(client_side) = upgrade else {
                return Err(ApiError::unavailable(
                    "the cell switched protocols unasked",
                    Duration::from_secs(1),
                ));
            };
            let cell_side = hyper::upgrade::on(&mut res);
            let state = worker.state.clone();
            tokio::spawn(async move {
                match tokio::try_join!(client_side, cell_side) {
                    Ok((client, cell)) => {
                        let (mut client, mut cell) = (TokioIo::new(client), TokioIo::new(cell));
                        match room {
                            // A dojo's socket follows its room: when the replica set changes
                            // and the room now belongs to another replica, the client gets
                            // close 1012 and reconnects (to the room's new replica, which
                            // takes the room over) and resyncs.
                            Some(room) => {
                                if crate::tunnel::dojo(client, cell, room.moved(&state)).await {
                                    tracing::info!(tenant = %room.tenant, dojo = %room.dojo, "dojo socket closed (1012): its room moved to another replica");
                                }
                            }
                            None => {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut cell).await;
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "websocket upgrade failed"),
                }
            });
            Ok(res.map(|_| Either::Right(Body::empty())))
        }
        Ok(res) => Ok(res.map(Either::Left)),
        Err(e) => {
            tracing::warn!(cell = ?target.cell_id, error = ?e, "cell unreachable");
            Err(ApiError::unavailable(
                "the tenant's cell is not reachable",
                Duration::from_secs(1),
            ))
        }
    }
}

/// The tenant's compiled route and the upstream URI for `req`, waiting (bounded) while the
/// route is frozen.
async fn destination(
    worker: &Worker,
    client: IpAddr,
    req: &http::request::Parts,
) -> Result<Destination, ApiError> {
    let state = &worker.state;
    let host = req.headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let (tenant, rest) = tenant_of(host, req.uri.path(), &state.config.domain)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no tenant in this request"))?;
    let (service, upstream_path) =
        service_for(rest).ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such endpoint"))?;
    let Some(target) = worker.target(&tenant) else {
        state.stats.unknown_tenant.fetch_add(1, Ordering::Relaxed);
        return Err(tenant_not_found());
    };
    if let Err(wait) = state.admit(&target, client) {
        target.stats.limited(worker.index);
        target
            .stats
            .answered(worker.index, StatusCode::TOO_MANY_REQUESTS);
        return Err(ApiError::rate_limited(wait));
    }
    routed(state, req, target, &tenant, service, (rest, upstream_path))
        .await
        .map_err(|(e, target)| {
            target.stats.answered(worker.index, e.status());
            e
        })
}

/// [`destination`] once the tenant's route is found and the request admitted; a refusal comes
/// with the route it was of (its counters count it).
async fn routed(
    state: &AppState,
    req: &http::request::Parts,
    mut target: Arc<Target>,
    tenant: &str,
    service: Service,
    (rest, upstream_path): (&str, &str),
) -> Result<Destination, (ApiError, Arc<Target>)> {
    // A frozen route (migration cut-over) holds the request, bounded, until it is active again.
    let deadline = tokio::time::Instant::now() + state.config.freeze_wait;
    loop {
        match target.state {
            RouteState::Active => break,
            RouteState::Suspended => {
                let e = ApiError::new(ErrorCode::TenantSuspended, "this tenant is suspended");
                return Err((e, target));
            }
            RouteState::Frozen => {
                // Registered before reading the table again, so a change in between is seen.
                let changed = state.changed.notified();
                match state.target(tenant) {
                    Some(now) => target = now,
                    None => return Err((tenant_not_found(), target)),
                }
                if target.state != RouteState::Frozen {
                    continue;
                }
                if Box::pin(tokio::time::timeout_at(deadline, changed))
                    .await
                    .is_err()
                {
                    let e = ApiError::unavailable(
                        "this tenant is moving; retry shortly",
                        Duration::from_secs(1),
                    );
                    return Err((e, target));
                }
                match state.target(tenant) {
                    Some(now) => target = now,
                    None => return Err((tenant_not_found(), target)),
                }
            }
        }
    }
    let Some(upstream) = target.upstream(service, upstream_path) else {
        let e = ApiError::unavailable(
            "this service of the cell is not ready",
            Duration::from_secs(1),
        );
        return Err((e, target));
    };
    let uri = match upstream.uri(upstream_path, req.uri.query()) {
        Ok(uri) => uri,
        Err(e) => return Err((e, target)),
    };
    let authority = upstream.authority.clone();
    let room = (service == Service::Dojo && is_websocket_upgrade(&req.headers)).then(|| Room {
        tenant: tenant.to_owned(),
        dojo: dojo_of(upstream_path).to_owned(),
        replica: authority.clone(),
    });
    // Path form (`/t/<slug>/…`): the cell learns the prefix its links need
    // (`X-Forwarded-Prefix: /t/<slug>`); the host form needs none.
    let prefix = (rest.len() < req.uri.path().len()).then(|| target.path_prefix.clone());
    Ok((target, service, (authority, uri), prefix, room))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_router_only_headers_are_dropped_and_nothing_else() {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("accept", "application/json"),
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-cell-id", "c-evil"),
            ("authorization", "Bearer t"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        drop_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "authorization"]);
        assert_eq!(headers.len(), 2);
    }
}
