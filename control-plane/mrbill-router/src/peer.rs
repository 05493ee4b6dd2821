//! Who sends a request: the connection's peer, and behind a trusted proxy the client it names.

use std::net::{IpAddr, SocketAddr};

use http::HeaderValue;

use crate::Config;

/// Who sent a request: the client's address (for rate limits) and the `X-Forwarded-For` the
/// cell gets.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) ip: IpAddr,
    pub(crate) forwarded_for: HeaderValue,
}

/// One connection's peer, with its `X-Forwarded-For` value made once.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    ip: IpAddr,
    value: HeaderValue,
    trusted: bool,
}

impl Peer {
    pub(crate) fn new(addr: SocketAddr, config: &Config) -> Self {
        let ip = addr.ip().to_canonical();
        Self {
            ip,
            value: HeaderValue::from_str(&ip.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            trusted: config.trusted_proxies.iter().any(|net| net.contains(&ip)),
        }
    }

    /// Whether its `X-Forwarded-For` is believed.
    pub(crate) fn trusted(&self) -> bool {
        self.trusted
    }

    /// The client of one request: the peer itself, or, when the peer is a trusted proxy, the
    /// client its `X-Forwarded-For` names, with the peer appended to that chain.
    pub(crate) fn client(&self, config: &Config, headers: &http::HeaderMap) -> Client {
        let untrusted = || Client {
            ip: self.ip,
            forwarded_for: self.value.clone(),
        };
        if !self.trusted {
            return untrusted();
        }
        let mut chain = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            chain.extend_from_slice(value.as_bytes());
            chain.extend_from_slice(b", ");
        }
        if chain.is_empty() {
            return untrusted();
        }
        chain.extend_from_slice(self.value.as_bytes());
        Client {
            ip: service_kit::cell::client_ip(&config.trusted_proxies, self.ip, headers),
            forwarded_for: HeaderValue::from_bytes(&chain).unwrap_or_else(|_| self.value.clone()),
        }
    }
}
