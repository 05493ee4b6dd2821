//! Cell routing guard and client addresses.
//!
//! The router adds `X-Cell-Id` (the cell it routes to) and `X-Forwarded-For` (the client it
//! saw), dropping any the client sent. A service answers a request for another cell with 421
//! `wrong_cell`, and believes `X-Forwarded-For` only when the TCP peer is a trusted proxy.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use http::request::Parts;
use ipnet::IpNet;
use wire_types::{CELL_ID_HEADER, ErrorCode};

use crate::ApiError;

/// What the guard needs to know about its cell.
#[derive(Clone, Debug)]
pub struct CellGuard {
    pub cell_id: Arc<str>,
    pub trusted_proxies: Arc<[IpNet]>,
}

impl CellGuard {
    pub fn new(cell_id: &str, trusted_proxies: &[IpNet]) -> Self {
        Self {
            cell_id: cell_id.into(),
            trusted_proxies: trusted_proxies.into(),
        }
    }

    /// The client address: the peer, or — when the peer is a trusted proxy — the right-most
    /// `X-Forwarded-For` entry that is not itself a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_ip(&self.trusted_proxies, peer, headers)
    }
}

/// The client behind a chain of proxies: `peer` itself unless it is in `trusted`; otherwise
/// the right-most `X-Forwarded-For` hop that is not a trusted proxy (each proxy appends the
/// peer it saw, so hops left of the first untrusted one are the client's own claims).
/// The router and every cell service name a client this way.
pub fn client_ip(trusted: &[IpNet], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => continue,
            Ok(ip) => return ip,
            // An unparsable hop means the chain can't be trusted beyond this point.
            Err(_) => break,
        }
    }
    peer
}

/// The client's IP address as established by [`guard`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<ClientIp>().copied().ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("cell guard middleware is not installed"))
        })
    }
}

/// Middleware: rejects requests routed to another cell and records the client IP.
pub async fn guard(State(cell): State<CellGuard>, mut req: Request, next: Next) -> Response {
    if let Some(target) = req.headers().get(CELL_ID_HEADER)
        && target.as_bytes() != cell.cell_id.as_bytes()
    {
        return ApiError::new(
            ErrorCode::WrongCell,
            "this request was routed to the wrong cell",
        )
        .with_details(serde_json::json!({ "cell": &*cell.cell_id }))
        .into_response();
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let ip = cell.client_ip(peer, req.headers());
    req.extensions_mut().insert(ClientIp(ip));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().expect("valid"));
        h
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let g = CellGuard::new("c", &["10.0.0.1/32".parse().expect("cidr")]);
        let peer: IpAddr = "192.0.2.7".parse().expect("ip");
        assert_eq!(g.client_ip(peer, &headers("1.2.3.4")), peer);
    }

    #[test]
    fn forwarded_for_from_the_router_names_the_client() {
        let g = CellGuard::new("c", &["10.0.0.0/24".parse().expect("cidr")]);
        let router: IpAddr = "10.0.0.5".parse().expect("ip");
        // A client-sent spoof on the left is skipped: only the right-most untrusted hop counts.
        assert_eq!(
            g.client_ip(router, &headers("6.6.6.6, 203.0.113.9")),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(
            g.client_ip(router, &headers("203.0.113.9, 10.0.0.7")),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(g.client_ip(router, &HeaderMap::new()), router);
        assert_eq!(g.client_ip(router, &headers("garbage")), router);
    }
}
