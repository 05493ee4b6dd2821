//! The router feed: what the control plane tells routers about where each tenant's cell is.
//!
//! `GET /v1/routes?watch=1` (control plane) streams NDJSON: one [`RouteEvent::Snapshot`] with a
//! revision, then deltas, resumable with `since=<rev>`. Routers hold the table in memory and
//! snapshot it to disk so they keep routing while the control plane is down.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::contract::Service;

/// How a route behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteState {
    /// Requests are forwarded.
    Active,
    /// Requests wait (bounded) for the route to become active again: a migration cut-over.
    Frozen,
    /// Requests are refused with 403 `tenant_suspended`.
    Suspended,
}

/// Base URLs of a cell's services (reachable from the router only), by service. A service
/// without one (a cell still provisioning) gets 503 + `Retry-After` at the router. On the
/// wire an object keyed by service name; names a reader does not know are skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "BTreeMap<String, String>", into = "BTreeMap<String, String>")]
pub struct ServiceUrls(BTreeMap<Service, String>);

impl ServiceUrls {
    pub fn get(&self, service: Service) -> Option<&str> {
        self.0.get(&service).map(String::as_str)
    }

    pub fn insert(&mut self, service: Service, url: impl Into<String>) {
        self.0.insert(service, url.into());
    }

    pub fn iter(&self) -> impl Iterator<Item = (Service, &str)> {
        self.0.iter().map(|(s, u)| (*s, u.as_str()))
    }
}

impl FromIterator<(Service, String)> for ServiceUrls {
    fn from_iter<I: IntoIterator<Item = (Service, String)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl From<BTreeMap<String, String>> for ServiceUrls {
    fn from(map: BTreeMap<String, String>) -> Self {
        map.into_iter()
            .filter_map(|(name, url)| Some((Service::parse(&name)?, url)))
            .collect()
    }
}

impl From<ServiceUrls> for BTreeMap<String, String> {
    fn from(urls: ServiceUrls) -> Self {
        urls.0
            .into_iter()
            .map(|(s, url)| (s.name().to_owned(), url))
            .collect()
    }
}

/// Every replica's base URL per service, for services that run more than one (the router
/// balances across them). On the wire an object of lists keyed by service name; names a reader
/// does not know are skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    from = "BTreeMap<String, Vec<String>>",
    into = "BTreeMap<String, Vec<String>>"
)]
pub struct ReplicaUrls(BTreeMap<Service, Vec<String>>);

impl ReplicaUrls {
    pub fn get(&self, service: Service) -> &[String] {
        self.0.get(&service).map_or(&[], Vec::as_slice)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Service, &[String])> {
        self.0.iter().map(|(s, u)| (*s, u.as_slice()))
    }
}

impl FromIterator<(Service, Vec<String>)> for ReplicaUrls {
    fn from_iter<I: IntoIterator<Item = (Service, Vec<String>)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .filter(|(_, urls)| urls.len() > 1)
                .collect(),
        )
    }
}

impl From<BTreeMap<String, Vec<String>>> for ReplicaUrls {
    fn from(map: BTreeMap<String, Vec<String>>) -> Self {
        map.into_iter()
            .filter_map(|(name, urls)| Some((Service::parse(&name)?, urls)))
            .collect()
    }
}

impl From<ReplicaUrls> for BTreeMap<String, Vec<String>> {
    fn from(urls: ReplicaUrls) -> Self {
        urls.0
            .into_iter()
            .map(|(s, u)| (s.name().to_owned(), u))
            .collect()
    }
}

/// Where a cell's services answer, as a route carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// One per service (readers that know no replicas use it).
    pub services: ServiceUrls,
    /// Every replica of the services that run several.
    pub replicas: ReplicaUrls,
}

impl Endpoints {
    /// Points `route` at these endpoints.
    pub fn apply_to(self, route: &mut RouteEntry) {
        route.services = self.services;
        route.replicas = self.replicas;
    }

    pub fn get(&self, service: Service) -> Option<&str> {
        self.services.get(service)
    }
}

impl From<ServiceUrls> for Endpoints {
    fn from(services: ServiceUrls) -> Self {
        Self {
            services,
            replicas: ReplicaUrls::default(),
        }
    }
}

/// One tenant's route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEntry {
    pub tenant: String,
    pub cell_id: String,
    /// Bumped by the control plane on every change of this entry; older updates are ignored.
    pub generation: u64,
    pub state: RouteState,
    pub services: ServiceUrls,
    /// Every replica of the services that run more than one (`services` names one of them).
    #[serde(default, skip_serializing_if = "ReplicaUrls::is_empty")]
    pub replicas: ReplicaUrls,
    /// Email domains that resolve to this tenant (`/v1/resolve?email=`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email_domains: Vec<String>,
}

/// One NDJSON line of the feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RouteEvent {
    /// The whole table at `revision`; replaces whatever the reader had.
    Snapshot {
        revision: u64,
        routes: Vec<RouteEntry>,
    },
    /// A new or changed route.
    Upsert { revision: u64, route: RouteEntry },
    /// A tenant that no longer has a route.
    Remove { revision: u64, tenant: String },
}

impl RouteEvent {
    pub fn revision(&self) -> u64 {
        match self {
            RouteEvent::Snapshot { revision, .. }
            | RouteEvent::Upsert { revision, .. }
            | RouteEvent::Remove { revision, .. } => *revision,
        }
    }
}

/// The routing table a router holds: tenant → route, at a feed revision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub revision: u64,
    pub routes: BTreeMap<String, RouteEntry>,
}

impl RouteTable {
    /// Applies one feed event. Events at or below the table's revision are ignored (a resumed
    /// feed may repeat some), and so are entry updates older than the entry held.
    pub fn apply(&mut self, event: RouteEvent) {
        match event {
            RouteEvent::Snapshot { revision, routes } => {
                self.revision = revision;
                self.routes = routes.into_iter().map(|r| (r.tenant.clone(), r)).collect();
            }
            RouteEvent::Upsert { revision, route } if revision > self.revision => {
                self.revision = revision;
                let newer = self
                    .routes
                    .get(&route.tenant)
                    .is_none_or(|held| route.generation >= held.generation);
                if newer {
                    self.routes.insert(route.tenant.clone(), route);
                }
            }
            RouteEvent::Remove { revision, tenant } if revision > self.revision => {
                self.revision = revision;
                self.routes.remove(&tenant);
            }
            _ => {}
        }
    }

    pub fn get(&self, tenant: &str) -> Option<&RouteEntry> {
        self.routes.get(tenant)
    }

    /// The tenant owning an email address's domain (domains are unique across tenants).
    pub fn tenant_for_email(&self, email: &str) -> Option<&RouteEntry> {
        let domain = email.rsplit_once('@')?.1.trim().to_ascii_lowercase();
        self.routes.values().find(|r| {
            r.email_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(&domain))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tenant: &str, generation: u64, state: RouteState) -> RouteEntry {
        RouteEntry {
            tenant: tenant.into(),
            cell_id: format!("c-{tenant}"),
            generation,
            state,
            services: [(Service::Poc, "http://127.0.0.1:1".to_owned())]
                .into_iter()
                .collect(),
            replicas: Default::default(),
            email_domains: vec![format!("{tenant}.com")],
        }
    }

    #[test]
    fn the_table_follows_snapshot_and_deltas_and_ignores_stale_events() {
        let mut table = RouteTable::default();
        table.apply(RouteEvent::Snapshot {
            revision: 5,
            routes: vec![entry("acme", 1, RouteState::Active)],
        });
        table.apply(RouteEvent::Upsert {
            revision: 4,
            route: entry("globex", 1, RouteState::Active),
        });
        assert!(
            table.get("globex").is_none(),
            "an event older than the snapshot is ignored"
        );
        table.apply(RouteEvent::Upsert {
            revision: 6,
            route: entry("acme", 2, RouteState::Suspended),
        });
        assert_eq!(
            table.get("acme").map(|r| r.state),
            Some(RouteState::Suspended)
        );
        table.apply(RouteEvent::Upsert {
            revision: 7,
            route: entry("acme", 1, RouteState::Active),
        });
        assert_eq!(
            table.get("acme").map(|r| r.generation),
            Some(2),
            "an older generation never wins"
        );
        table.apply(RouteEvent::Remove {
            revision: 8,
            tenant: "acme".into(),
        });
        assert!(table.get("acme").is_none());
        assert_eq!(table.revision, 8);
    }

    #[test]
    fn feed_lines_are_tagged_json() {
        let line = serde_json::to_string(&RouteEvent::Remove {
            revision: 3,
            tenant: "acme".into(),
        })
        .expect("json");
        assert_eq!(line, r#"{"type":"remove","revision":3,"tenant":"acme"}"#);
        let back: RouteEvent = serde_json::from_str(&line).expect("parse");
        assert_eq!(back.revision(), 3);
    }

    #[test]
    fn emails_resolve_by_domain() {
        let mut table = RouteTable::default();
        table.apply(RouteEvent::Snapshot {
            revision: 1,
            routes: vec![entry("acme", 1, RouteState::Active)],
        });
        assert_eq!(
            table
                .tenant_for_email("Ada@ACME.com")
                .map(|r| r.tenant.as_str()),
            Some("acme")
        );
        assert!(table.tenant_for_email("ada@globex.com").is_none());
        assert!(table.tenant_for_email("not-an-email").is_none());
    }

    #[test]
    fn service_urls_are_an_object_by_name_and_unknown_names_are_skipped() {
        let urls: ServiceUrls = [(Service::Dojo, "http://d".to_owned())]
            .into_iter()
            .collect();
        assert_eq!(
            serde_json::to_string(&urls).expect("json"),
            r#"{"dojo":"http://d"}"#
        );
        let read: ServiceUrls =
            serde_json::from_str(r#"{"poc":"http://p","search":"http://s"}"#).expect("parse");
        assert_eq!(read.get(Service::Poc), Some("http://p"));
        assert_eq!(read.iter().count(), 1);
    }
}
