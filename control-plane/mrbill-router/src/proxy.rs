//! The proxy path: every request that is not the router's own API.
//!
//! It runs on every request, so it is kept lean: the routing table is compiled once per change
//! into [`Targets`] (parsed upstream authorities, ready header values, one rate limiter per
//! tenant), and a request costs one lookup, one URI and two header values.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::IntoResponse;
use cell_model::contract::Service;
use cell_model::route_feed::{RouteState, RouteTable};

use crate::request::{service_for, tenant_of};
use http::uri::Authority;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use service_kit::ApiError;
use wire_types::{CELL_ID_HEADER, ErrorCode};

use crate::limit::{Rate, TenantLimiter};
use crate::metrics::TenantStats;
use crate::peer::Client;
use crate::trace::{Arrived, RequestSpan, RouteAttributes};
use crate::upstream::{self, ProxyBody, Upstream};
use crate::{AppState, tenant_not_found};

/// What a worker's requests share; one reference count per request.
pub(crate) struct Worker {
    pub(crate) state: AppState,
    /// This worker's connections to the cells.
    pub(crate) pool: Arc<crate::pool::Pool>,
    pub(crate) api: axum::Router,
}

/// One tenant's route, ready for the proxy.
#[derive(Debug)]
struct Target {
    state: RouteState,
    cell_id: HeaderValue,
    /// Per service, in [`Service::ALL`] order, every replica; empty while not ready.
    upstreams: [Vec<Upstream>; Service::ALL.len()],
    /// Per service, the round-robin position over its replicas.
    next: [AtomicUsize; Service::ALL.len()],
    /// Kept across table changes, so a route update does not refill the tenant's buckets.
    limiter: Arc<Mutex<TenantLimiter>>,
    /// Kept across table changes like the limiter (`metrics`).
    stats: Arc<TenantStats>,
    /// Its requests' span attributes (`trace`).
    trace: RouteAttributes,
}

impl Target {
    /// The replica for a request to `path` of `service`: round robin, except that every request
    /// about one dojo reaches the same dojo replica (its room lives in one process).
    fn upstream(&self, service: Service, path: &str) -> Option<&Upstream> {
        let i = Service::ALL.iter().position(|s| *s == service)?;
        let all = &self.upstreams[i];
        let pick = match all.len() {
            0 => return None,
            1 => 0,
            _ if service == Service::Dojo => {
                rendezvous(dojo_of(path), all.iter().map(|u| u.authority.as_str()))?
            }
            n => self.next[i].fetch_add(1, Ordering::Relaxed) % n,
        };
        all.get(pick)
    }
}

/// The dojo a path is about (`/v1/dojos/{id}…`), empty for others.
fn dojo_of(path: &str) -> &str {
    path.strip_prefix("/v1/dojos/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
}

/// Which of `replicas` owns `key`: the one with the highest hash of (key, replica) —
/// rendezvous hashing. Every router picks the same one, and a change of the replica set moves
/// only the keys of the replicas that left or the share a new one takes (`hash % n` would move
/// almost every room, and a moved room is a handover for all its sockets).
fn rendezvous<'a>(key: &str, replicas: impl Iterator<Item = &'a str>) -> Option<usize> {
    replicas
        .enumerate()
        .max_by_key(|(_, replica)| fnv1a(&[key.as_bytes(), b"\0", replica.as_bytes()]))
        .map(|(i, _)| i)
}

/// FNV-1a, 64 bit: stable across builds and processes (std's hasher promises neither).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's last bytes mix poorly into the high bits; a final avalanche (splitmix64's) spreads
    // them so close keys do not favour one replica.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The routing table compiled for the proxy.
#[derive(Debug, Default)]
pub(crate) struct Targets(HashMap<String, Arc<Target>, foldhash::fast::RandomState>);

impl Targets {
    /// Compiles `table`, carrying over the rate limiters of `previous`.
    pub(crate) fn compile(table: &RouteTable, previous: &Targets, limit: Rate) -> Self {
        let parse = |tenant: &str, route: &cell_model::route_feed::RouteEntry, service| {
            let replicas = route.replicas.get(service);
            let urls: Vec<&str> = if replicas.is_empty() {
                route.services.get(service).into_iter().collect()
            } else {
                replicas.iter().map(String::as_str).collect()
            };
            urls.into_iter()
                .filter_map(|url| {
                    let parsed = Upstream::parse(url);
                    if parsed.is_none() {
                        tracing::warn!(%tenant, %url, "unusable service URL in the route; skipped");
                    }
                    parsed
                })
                .collect::<Vec<_>>()
        };
        let targets = table
            .routes
            .iter()
            .filter_map(|(tenant, route)| {
                let Ok(cell_id) = HeaderValue::from_str(&route.cell_id) else {
                    tracing::warn!(%tenant, "unusable cell id in the route; tenant not routed");
                    return None;
                };
                let before = previous.0.get(tenant);
                let limiter = before.map_or_else(
                    || Arc::new(Mutex::new(TenantLimiter::new(limit))),
                    |t| t.limiter.clone(),
                );
                let stats = before.map_or_else(Arc::default, |t| t.stats.clone());
                let target = Target {
                    state: route.state,
                    cell_id,
                    upstreams: Service::ALL.map(|s| parse(tenant, route, s)),
                    next: Service::ALL.map(|_| AtomicUsize::new(0)),
                    limiter,
                    stats,
                    trace: RouteAttributes::new(tenant, &route.cell_id),
                };
                Some((tenant.clone(), Arc::new(target)))
            })
            .collect();
        Self(targets)
    }

    /// Every routed tenant's counters.
    pub(crate) fn stats(&self) -> Vec<(String, Arc<TenantStats>)> {
        self.0
            .iter()
            .map(|(tenant, target)| (tenant.clone(), target.stats.clone()))
            .collect()
    }
}

/// The headers the router sets, named once (a name made with `from_static` at run time is
/// looked up among the standard ones on every request).
static X_CELL_ID: HeaderName = HeaderName::from_static(CELL_ID_HEADER);
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the ones only the router may set.
static DROPPED: [HeaderName; 10] = [
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

impl AppState {
    /// The compiled route of `tenant`, if it has one.
    fn target(&self, tenant: &str) -> Option<Arc<Target>> {
        self.routes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .targets
            .0
            .get(tenant)
            .cloned()
    }

    /// `Ok` to go ahead, or how long until `client` may send to the tenant again.
    fn admit(&self, target: &Target, client: IpAddr) -> Result<(), Duration> {
        target
            .limiter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .admit(
                client,
                self.config.tenant_limit,
                self.config.client_limit,
                Instant::now(),
            )
    }
}

/// Proxies one request to its tenant's cell; errors become the router's own JSON answers.
pub(crate) async fn handle(
    worker: &Worker,
    client: &Client,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let arrived = Arrived::now(&parts.headers);
    let destination = match destination(&worker.state, client.ip, &parts).await {
        Ok(destination) => destination,
        Err(e) => {
            let res = upstream::refuse(body, e).await;
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
    target.stats.answered(res.status());
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
    state: &AppState,
    client: IpAddr,
    req: &http::request::Parts,
) -> Result<Destination, ApiError> {
    let host = req.headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let (tenant, rest) = tenant_of(host, req.uri.path(), &state.config.domain)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no tenant in this request"))?;
    let (service, upstream_path) =
        service_for(rest).ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such endpoint"))?;
    let Some(target) = state.target(&tenant) else {
        state.stats.unknown_tenant.fetch_add(1, Ordering::Relaxed);
        return Err(tenant_not_found());
    };
    if let Err(wait) = state.admit(&target, client) {
        target.stats.limited();
        target.stats.answered(StatusCode::TOO_MANY_REQUESTS);
        return Err(ApiError::rate_limited(wait));
    }
    routed(state, req, target, &tenant, service, (rest, upstream_path))
        .await
        .map_err(|(e, target)| {
            target.stats.answered(e.status());
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
                if tokio::time::timeout_at(deadline, changed).await.is_err() {
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
    let path = req.uri.path();
    let prefix = (rest.len() < path.len())
        .then(|| HeaderValue::from_str(&path[..path.len() - rest.len()]).ok())
        .flatten();
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

    /// Growing from two replicas to three moves only the rooms the new one takes (about a
    /// third), and shrinking back moves exactly those home; the rooms spread evenly.
    #[test]
    fn a_replica_set_change_moves_only_the_rooms_it_must() {
        let two = ["dojo-0:8080", "dojo-1:8080"];
        let three = ["dojo-0:8080", "dojo-1:8080", "dojo-2:8080"];
        fn owner(set: &[&'static str], dojo: &str) -> &'static str {
            set[rendezvous(dojo, set.iter().copied()).expect("a replica")]
        }
        let dojos: Vec<String> = (0..3000)
            .map(|i| format!("0190e0c4-0000-7000-8000-{i:012}"))
            .collect();
        let mut moved = 0;
        let mut shares = [0; 3];
        for dojo in &dojos {
            let (before, after) = (owner(&two, dojo), owner(&three, dojo));
            if before != after {
                assert_eq!(after, "dojo-2:8080", "{dojo} moved between old replicas");
                moved += 1;
            }
            shares[three.iter().position(|r| *r == after).expect("known")] += 1;
        }
        assert!((850..1150).contains(&moved), "{moved} of 3000 rooms moved");
        assert!(shares.iter().all(|s| (850..1150).contains(s)), "{shares:?}");
        // The order replicas are listed in does not matter.
        let shuffled = ["dojo-2:8080", "dojo-0:8080", "dojo-1:8080"];
        assert!(
            dojos
                .iter()
                .all(|d| owner(&three, d) == owner(&shuffled, d))
        );
        assert_eq!(rendezvous("x", std::iter::empty()), None);
    }
}
