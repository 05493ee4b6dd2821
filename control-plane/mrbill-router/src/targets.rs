//! The routing table compiled for the proxy, and each worker's own copy of it.
//!
//! The table is compiled once per change into [`Targets`] (parsed upstream authorities, ready
//! header values, one rate limiter and one set of counters per tenant, kept across changes).
//! Each worker takes its own copy when the table's version moves, so a request reads and writes
//! only its worker's memory, except for the tenant's rate limiter, which all workers share.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cell_model::contract::Service;
use cell_model::route_feed::{RouteState, RouteTable};
use http::HeaderValue;

use crate::AppState;
use crate::limit::TenantLimiter;
use crate::metrics::TenantStats;
use crate::trace::RouteAttributes;
use crate::upstream::Upstream;

/// What a worker's requests share; one reference count per request.
pub(crate) struct Worker {
    pub(crate) state: AppState,
    /// Which worker this is (its counters: `metrics`).
    pub(crate) index: usize,
    /// This worker's connections to the cells.
    pub(crate) pool: Arc<crate::pool::Pool>,
    /// This worker's copy of the compiled routes (below).
    pub(crate) routes: Mutex<LocalRoutes>,
    pub(crate) api: axum::Router,
    /// Whether its connections start on the fast path (`fast`).
    pub(crate) fast: bool,
}

/// A worker's own copy of the compiled routes, taken again when the table has changed. A
/// request then reads and counts only what its worker writes: the shared table's lock word,
/// its routes' reference counts and round-robin positions would otherwise be written by every
/// worker on every request, and bounce between the cores.
#[derive(Default)]
pub(crate) struct LocalRoutes {
    /// The table's version this copy is of (0: none yet).
    version: u64,
    targets: Targets,
}

impl Worker {
    /// The compiled route of `tenant`, if it has one.
    pub(crate) fn target(&self, tenant: &str) -> Option<Arc<Target>> {
        let version = self.state.version();
        let mut local = self
            .routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if local.version != version {
            let routes = self.state.routes();
            local.targets = routes.targets.copy();
            // Read under the table's lock, so the copy is of exactly this version.
            local.version = self.state.version();
        }
        local.targets.0.get(tenant).cloned()
    }
}

/// One tenant's route, ready for the proxy.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) state: RouteState,
    pub(crate) cell_id: HeaderValue,
    /// `X-Forwarded-Prefix` for its path-form requests: `/t/<tenant>`.
    pub(crate) path_prefix: HeaderValue,
    /// Per service, in [`Service::ALL`] order, every replica; empty while not ready.
    pub(crate) upstreams: [Vec<Upstream>; Service::ALL.len()],
    /// Per service, the round-robin position over its replicas.
    pub(crate) next: [AtomicUsize; Service::ALL.len()],
    /// Kept across table changes, so a route update does not refill the tenant's buckets.
    pub(crate) limiter: Arc<Mutex<TenantLimiter>>,
    /// Kept across table changes like the limiter (`metrics`).
    pub(crate) stats: Arc<TenantStats>,
    /// Its requests' span attributes (`trace`).
    pub(crate) trace: RouteAttributes,
}

impl Target {
    /// The replica for a request to `path` of `service`: round robin, except that every request
    /// about one dojo reaches the same dojo replica (its room lives in one process).
    pub(crate) fn upstream(&self, service: Service, path: &str) -> Option<&Upstream> {
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
pub(crate) fn dojo_of(path: &str) -> &str {
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
pub(crate) struct Targets(pub(crate) HashMap<String, Arc<Target>, foldhash::fast::RandomState>);

impl Targets {
    /// Compiles `table`, carrying over the rate limiters and counters of `previous`.
    pub(crate) fn compile(table: &RouteTable, previous: &Targets, config: &crate::Config) -> Self {
        let limit = config.tenant_limit;
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
                let stats = before.map_or_else(
                    || Arc::new(TenantStats::new(config.workers)),
                    |t| t.stats.clone(),
                );
                let Ok(path_prefix) = HeaderValue::from_str(&format!("/t/{tenant}")) else {
                    tracing::warn!(%tenant, "unusable tenant name in the route; tenant not routed");
                    return None;
                };
                let target = Target {
                    state: route.state,
                    cell_id,
                    path_prefix,
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

    /// A copy for one worker: the same routes, rate limiters and counters, its own reference
    /// counts and round-robin positions.
    fn copy(&self) -> Self {
        let targets = self.0.iter().map(|(tenant, t)| {
            let target = Target {
                state: t.state,
                cell_id: unshared(&t.cell_id),
                path_prefix: unshared(&t.path_prefix),
                upstreams: t
                    .upstreams
                    .each_ref()
                    .map(|all| all.iter().map(Upstream::copy).collect()),
                next: Service::ALL.map(|_| AtomicUsize::new(0)),
                limiter: t.limiter.clone(),
                stats: t.stats.clone(),
                trace: t.trace.copy(),
            };
            (tenant.clone(), Arc::new(target))
        });
        Self(targets.collect())
    }

    /// Every routed tenant's counters.
    pub(crate) fn stats(&self) -> Vec<(String, Arc<TenantStats>)> {
        self.0
            .iter()
            .map(|(tenant, target)| (tenant.clone(), target.stats.clone()))
            .collect()
    }
}

/// `value` in bytes of its own, so cloning it per request counts on this worker's memory only.
fn unshared(value: &HeaderValue) -> HeaderValue {
    HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone())
}

impl AppState {
    /// The compiled route of `tenant` in the shared table, if it has one: for the rare paths (a
    /// frozen route's wait, a dojo socket following its room); requests use their worker's copy.
    pub(crate) fn target(&self, tenant: &str) -> Option<Arc<Target>> {
        self.routes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .targets
            .0
            .get(tenant)
            .cloned()
    }

    /// `Ok` to go ahead, or how long until `client` may send to the tenant again.
    pub(crate) fn admit(&self, target: &Target, client: IpAddr) -> Result<(), Duration> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
