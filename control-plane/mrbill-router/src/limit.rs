//! Rate limits: each tenant has a budget, and each client a fair share inside it, so one noisy
//! client (anonymous or not) gets 429 while the tenant's other users are served.
//!
//! A client is its address, IPv6 by /64 (one host holds a whole /64). The maps of clients are
//! bounded: idle clients whose bucket has refilled are forgotten, and past [`MAX_CLIENTS`] new
//! clients share one overflow bucket instead of growing memory without end.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Clients remembered per map before newcomers share the overflow bucket.
pub(crate) const MAX_CLIENTS: usize = 4096;

/// A token-bucket setting: sustained `rate` per second, `burst` above it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub rate: f64,
    pub burst: f64,
}

impl Rate {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self { rate, burst }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(limit: Rate, now: Instant) -> Self {
        Self {
            tokens: limit.burst,
            at: now,
        }
    }

    fn refill(&mut self, limit: Rate, now: Instant) {
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * limit.rate).min(limit.burst);
        self.at = now;
    }

    /// Takes one token, or says how long until there is one.
    fn take(&mut self, limit: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(limit, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / limit.rate.max(f64::MIN_POSITIVE),
            ))
        }
    }

    fn is_full(&self, limit: Rate, now: Instant) -> bool {
        self.tokens + now.duration_since(self.at).as_secs_f64() * limit.rate >= limit.burst
    }
}

/// Who a bucket belongs to: an address (IPv6 by /64), or everyone past the map's bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ClientKey {
    V4([u8; 4]),
    V6Net([u8; 8]),
    Overflow,
}

impl ClientKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    Self::V6Net([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
        }
    }
}

/// One bucket per client, bounded in size.
#[derive(Debug, Default)]
pub(crate) struct ClientBuckets(HashMap<ClientKey, Bucket, foldhash::fast::RandomState>);

impl ClientBuckets {
    /// The bucket of `ip`, created full; past the bound, the shared overflow bucket.
    fn bucket(&mut self, ip: IpAddr, limit: Rate, now: Instant) -> &mut Bucket {
        let mut key = ClientKey::of(ip);
        if !self.0.contains_key(&key) && self.0.len() >= MAX_CLIENTS {
            self.0.retain(|_, b| !b.is_full(limit, now));
            if self.0.len() >= MAX_CLIENTS {
                key = ClientKey::Overflow;
            }
        }
        self.0
            .entry(key)
            .or_insert_with(|| Bucket::full(limit, now))
    }

    /// Takes one of `ip`'s tokens.
    pub(crate) fn admit(&mut self, ip: IpAddr, limit: Rate, now: Instant) -> Result<(), Duration> {
        self.bucket(ip, limit, now).take(limit, now)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// A tenant's budget and its clients' shares.
#[derive(Debug)]
pub(crate) struct TenantLimiter {
    tenant: Bucket,
    clients: ClientBuckets,
}

impl TenantLimiter {
    pub(crate) fn new(tenant: Rate) -> Self {
        Self {
            tenant: Bucket::full(tenant, Instant::now()),
            clients: ClientBuckets::default(),
        }
    }

    /// The client's share first (a client past its share never spends the tenant's budget),
    /// then the tenant's budget (a refused request gives the client its token back).
    pub(crate) fn admit(
        &mut self,
        ip: IpAddr,
        tenant: Rate,
        client: Rate,
        now: Instant,
    ) -> Result<(), Duration> {
        let share = self.clients.bucket(ip, client, now);
        share.take(client, now)?;
        if let Err(wait) = self.tenant.take(tenant, now) {
            share.tokens += 1.0;
            return Err(wait);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_noisy_client_exhausts_its_share_not_the_tenants_budget() {
        let (tenant, client) = (Rate::new(1.0, 20.0), Rate::new(1.0, 5.0));
        let mut limiter = TenantLimiter::new(tenant);
        let now = Instant::now();
        let noisy = (0..100)
            .filter(|_| limiter.admit(ip("192.0.2.1"), tenant, client, now).is_ok())
            .count();
        assert_eq!(noisy, 5, "the noisy client gets its share");
        for _ in 0..5 {
            limiter
                .admit(ip("192.0.2.2"), tenant, client, now)
                .expect("another client is served");
        }
    }

    #[test]
    fn the_tenants_budget_still_caps_many_clients_together() {
        let (tenant, client) = (Rate::new(1.0, 10.0), Rate::new(1.0, 5.0));
        let mut limiter = TenantLimiter::new(tenant);
        let now = Instant::now();
        let served = (0..10u8)
            .flat_map(|n| (0..5).map(move |_| n))
            .filter(|n| {
                limiter
                    .admit(ip(&format!("192.0.2.{n}")), tenant, client, now)
                    .is_ok()
            })
            .count();
        assert_eq!(served, 10);
        let wait = limiter
            .admit(ip("192.0.2.99"), tenant, client, now)
            .expect_err("budget spent");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
    }

    #[test]
    fn ipv6_clients_are_one_client_per_64_and_the_map_stays_bounded() {
        let limit = Rate::new(1.0, 2.0);
        let mut clients = ClientBuckets::default();
        let now = Instant::now();
        assert!(clients.admit(ip("2001:db8::1"), limit, now).is_ok());
        assert!(clients.admit(ip("2001:db8::2"), limit, now).is_ok());
        assert!(
            clients.admit(ip("2001:db8::3"), limit, now).is_err(),
            "one /64 is one client"
        );
        for n in 0..(MAX_CLIENTS as u32 + 100) {
            let _ = clients.admit(IpAddr::from(n.to_be_bytes()), limit, now);
        }
        assert!(clients.len() <= MAX_CLIENTS + 1, "{}", clients.len());
        // Once buckets have refilled, idle clients are forgotten to make room.
        let later = now + Duration::from_secs(10);
        assert!(clients.admit(ip("198.51.100.1"), limit, later).is_ok());
        assert!(clients.len() < 10, "{}", clients.len());
    }
}
