//! The router feed: what the control plane tells routers about where each tenant's cell is.
//!
//! `GET /v1/routes?watch=1` (control plane) streams NDJSON: one [`RouteEvent::Snapshot`] with a
//! revision, then deltas, resumable with `since=<rev>`. Routers hold the table in memory and
//! snapshot it to disk so they keep routing while the control plane is down.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// Base URLs of a cell's services (reachable from the router only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceUrls {
    /// `None` while the cell is provisioning: the router answers 503 + `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dojo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
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

/// A cell service, as the router's path-prefix table names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Poc,
    Dojo,
    Media,
}

/// The largest request body a cell service accepts (bytes), unless it needs more.
pub const BODY_LIMIT: usize = 64 * 1024;
/// dojo-service's: a dojo's initial code (≤ 50,000 characters, up to 4 bytes each) must fit.
pub const DOJO_BODY_LIMIT: usize = 256 * 1024;

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Poc => "poc",
            Service::Dojo => "dojo",
            Service::Media => "media",
        }
    }

    /// The largest request body this service accepts: the service answers 413 past it, and the
    /// router refuses such bodies itself the same way (so a client's oversized upload never
    /// meets a connection the service has already closed).
    pub fn body_limit(self) -> usize {
        match self {
            Service::Dojo => DOJO_BODY_LIMIT,
            Service::Poc | Service::Media => BODY_LIMIT,
        }
    }
}

/// Path prefixes → services (the Contracts' table). `/internal/…` is never routed.
const PREFIXES: &[(&str, Service)] = &[
    ("/v1/auth", Service::Poc),
    ("/v1/users", Service::Poc),
    ("/v1/invites", Service::Poc),
    ("/v1/pocs", Service::Poc),
    ("/v1/settings", Service::Poc),
    ("/v1/admin", Service::Poc),
    ("/v1/dojos", Service::Dojo),
    ("/v1/reports", Service::Media),
    ("/v1/videos", Service::Media),
    ("/v1/media", Service::Media),
];

/// Which service serves `path`, and the path to send it: API prefixes keep their path;
/// `/<service>/openapi.json` becomes that service's `/openapi.json`. Borrows, never allocates:
/// the router calls it on every request.
pub fn service_for(path: &str) -> Option<(Service, &str)> {
    for (prefix, service) in PREFIXES {
        if let Some(rest) = path.strip_prefix(prefix)
            && (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
        {
            return Some((*service, path));
        }
    }
    let name = path.strip_prefix('/')?.strip_suffix("/openapi.json")?;
    [Service::Poc, Service::Dojo, Service::Media]
        .into_iter()
        .find(|service| service.name() == name)
        .map(|service| (service, "/openapi.json"))
}

/// The tenant a request is for and the path within the tenant: `/t/<slug>/rest` (path form),
/// or `Host: <slug>.<domain>` (host form). `None` when neither names a tenant. Borrows unless
/// the host needs lowercasing.
pub fn tenant_of<'a>(
    host: Option<&'a str>,
    path: &'a str,
    domain: &str,
) -> Option<(Cow<'a, str>, &'a str)> {
    if let Some(rest) = path.strip_prefix("/t/") {
        let (slug, tail) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, "/"),
        };
        return crate::is_valid_slug(slug).then_some((Cow::Borrowed(slug), tail));
    }
    let host = host?.split(':').next()?;
    let cut = host.len().checked_sub(domain.len() + 1)?;
    let (slug, dot_domain) = (host.get(..cut)?, host.get(cut..)?);
    if !dot_domain
        .strip_prefix('.')
        .is_some_and(|d| d.eq_ignore_ascii_case(domain))
    {
        return None;
    }
    let slug = if slug.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(slug.to_ascii_lowercase())
    } else {
        Cow::Borrowed(slug)
    };
    crate::is_valid_slug(&slug).then_some((slug, path))
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
            services: ServiceUrls {
                poc: Some("http://127.0.0.1:1".into()),
                dojo: None,
                media: None,
            },
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
    fn paths_map_to_services_by_prefix() {
        assert_eq!(
            service_for("/v1/pocs?q=x"),
            Some((Service::Poc, "/v1/pocs?q=x"))
        );
        assert_eq!(
            service_for("/v1/dojos/1/live"),
            Some((Service::Dojo, "/v1/dojos/1/live"))
        );
        assert_eq!(
            service_for("/v1/videos"),
            Some((Service::Media, "/v1/videos"))
        );
        assert_eq!(
            service_for("/media/openapi.json"),
            Some((Service::Media, "/openapi.json"))
        );
        assert_eq!(
            service_for("/v1/pocsx"),
            None,
            "a prefix matches whole segments only"
        );
        assert_eq!(
            service_for("/internal/v1/users/1/token-version"),
            None,
            "internal APIs are never routed"
        );
    }

    #[test]
    fn tenants_come_from_the_path_or_the_host() {
        assert_eq!(
            tenant_of(None, "/t/acme/v1/pocs", "mrbill.dev"),
            Some(("acme".into(), "/v1/pocs"))
        );
        assert_eq!(
            tenant_of(Some("acme.mrbill.dev:443"), "/v1/pocs", "mrbill.dev"),
            Some(("acme".into(), "/v1/pocs"))
        );
        assert_eq!(
            tenant_of(Some("mrbill.dev"), "/v1/pocs", "mrbill.dev"),
            None
        );
        assert_eq!(
            tenant_of(Some("ACME.Mrbill.dev"), "/v1/pocs", "mrbill.dev"),
            Some(("acme".into(), "/v1/pocs"))
        );
        assert_eq!(
            tenant_of(None, "/t/acme", "mrbill.dev"),
            Some(("acme".into(), "/"))
        );
        assert_eq!(tenant_of(Some("xmrbill.dev"), "/", "mrbill.dev"), None);
        assert_eq!(tenant_of(None, "/t/Bad_Slug/v1/pocs", "mrbill.dev"), None);
        assert_eq!(tenant_of(Some("evil.com"), "/v1/pocs", "mrbill.dev"), None);
    }
}
