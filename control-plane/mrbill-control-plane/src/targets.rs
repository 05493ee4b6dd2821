//! Prometheus's file-based discovery of the cells' services (`MRBILL_PROMETHEUS_TARGETS`, set
//! by `mrbill up --with-prometheus`): the control plane rewrites the file from the route table
//! each time a route changes, so a cell is scraped the moment its route is active and dropped
//! when it goes (Prometheus watches the file).
//!
//! ```text
//! route change ─► RouteHub ─► run() ─► catalog: active routes + their cells' placements
//!                                    ─► <file> (written aside, then renamed: never half read)
//! [{"targets": ["127.0.0.1:41237"],
//!   "labels": {"tenant": "acme", "cell": "c-acme-…", "service": "poc", "placement": "local"}}, …]
//! ```
//!
//! One group per service replica (every dojo pod is its own target). Only active routes: a
//! suspended cell's services are stopped on purpose and a frozen one is mid-switch, so neither
//! should page anyone. The `job` label is the scrape job's (`cells` in the local configuration).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cell_model::contract::Service;
use cell_model::route_feed::{RouteEntry, RouteState};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::{Ctx, catalog};

/// How often the file is written even without a route change.
const REWRITE: std::time::Duration = std::time::Duration::from_secs(30);

/// Keeps the file current until the control plane stops.
pub async fn run(ctx: Arc<Ctx>, path: PathBuf) {
    // Subscribed before the first read: no change between the two is missed.
    let mut changes = ctx.hub.subscribe();
    loop {
        if let Err(e) = write(&ctx.pool, &path).await {
            tracing::warn!(file = %path.display(), error = %format!("{e:#}"), "writing Prometheus's scrape targets");
        }
        // A change, or every [`REWRITE`] anyway (a write that failed is tried again).
        match tokio::time::timeout(REWRITE, changes.recv()).await {
            Ok(Ok(_) | Err(RecvError::Lagged(_))) | Err(_) => {}
            Ok(Err(RecvError::Closed)) => return,
        }
        // Changes that came together make one rewrite.
        while matches!(changes.try_recv(), Ok(_) | Err(TryRecvError::Lagged(_))) {}
    }
}

/// Writes the targets of every active route to `path`.
pub async fn write(pool: &PgPool, path: &Path) -> anyhow::Result<()> {
    let (_, routes) = catalog::route_snapshot(pool).await?;
    let placements: BTreeMap<String, String> =
        sqlx::query_as("SELECT cell_id, placement FROM cells")
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    let text = serde_json::to_string_pretty(&groups(&routes, &placements))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text)?;
    std::fs::rename(&aside, path)?;
    Ok(())
}

/// The file's target groups for `routes`.
pub fn groups(routes: &[RouteEntry], placements: &BTreeMap<String, String>) -> Value {
    let mut groups = Vec::new();
    for route in routes.iter().filter(|r| r.state == RouteState::Active) {
        for service in Service::ALL {
            let replicas = route.replicas.get(service);
            let urls: Vec<&str> = match (replicas.is_empty(), route.services.get(service)) {
                (false, _) => replicas.iter().map(String::as_str).collect(),
                (true, Some(url)) => vec![url],
                (true, None) => Vec::new(),
            };
            for url in urls {
                let Some(target) = host_port(url) else {
                    continue;
                };
                let mut labels = json!({
                    "tenant": route.tenant,
                    "cell": route.cell_id,
                    "service": service.name(),
                });
                if let Some(placement) = placements.get(&route.cell_id) {
                    labels["placement"] = json!(placement);
                }
                groups.push(json!({ "targets": [target], "labels": labels }));
            }
        }
    }
    Value::Array(groups)
}

/// `host:port` of a service's base URL (what Prometheus scrapes `/metrics` of).
fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next()?;
    (!authority.is_empty()).then(|| authority.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cell_model::route_feed::{ReplicaUrls, ServiceUrls};

    fn route(tenant: &str, state: RouteState) -> RouteEntry {
        let mut services = ServiceUrls::default();
        services.insert(Service::Poc, "http://127.0.0.1:7001");
        services.insert(Service::Dojo, "http://127.0.0.1:7002/");
        RouteEntry {
            tenant: tenant.into(),
            cell_id: format!("c-{tenant}"),
            generation: 1,
            state,
            services,
            replicas: ReplicaUrls::default(),
            email_domains: Vec::new(),
        }
    }

    #[test]
    fn every_service_of_an_active_route_is_a_target_with_its_tenant_and_cell() {
        let placements = BTreeMap::from([("c-acme".to_owned(), "local".to_owned())]);
        let routes = [
            route("acme", RouteState::Active),
            route("gone", RouteState::Suspended),
            route("moving", RouteState::Frozen),
        ];
        assert_eq!(
            groups(&routes, &placements),
            json!([
                { "targets": ["127.0.0.1:7001"], "labels": { "tenant": "acme", "cell": "c-acme",
                    "service": "poc", "placement": "local" } },
                { "targets": ["127.0.0.1:7002"], "labels": { "tenant": "acme", "cell": "c-acme",
                    "service": "dojo", "placement": "local" } },
            ])
        );
    }

    #[test]
    fn every_replica_is_its_own_target() {
        let mut acme = route("acme", RouteState::Active);
        acme.replicas = ReplicaUrls::from_iter([(
            Service::Dojo,
            vec![
                "http://127.0.0.1:7002".into(),
                "http://127.0.0.1:7003".into(),
            ],
        )]);
        let dojo: Vec<Value> = groups(&[acme], &BTreeMap::new())
            .as_array()
            .expect("groups")
            .iter()
            .filter(|g| g["labels"]["service"] == "dojo")
            .map(|g| g["targets"][0].clone())
            .collect();
        assert_eq!(dojo, [json!("127.0.0.1:7002"), json!("127.0.0.1:7003")]);
    }
}
