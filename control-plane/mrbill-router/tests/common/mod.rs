//! Helpers shared by the router's integration tests.
// Each test binary uses a different subset.
#![allow(dead_code)]

use axum::Router;
use cell_model::contract::Service;
use cell_model::route_feed::{RouteEntry, RouteState, RouteTable};
use mrbill_router::{AppState, Config};
use test_support::ApiClient;

/// Serves `app` on a free loopback port; returns its base URL.
pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// An active-or-not route for `tenant` (cell `c-<tenant>`, email domain `<tenant>.com`).
pub fn route(tenant: &str, state: RouteState, poc: &str) -> RouteEntry {
    RouteEntry {
        tenant: tenant.into(),
        cell_id: format!("c-{tenant}"),
        generation: 1,
        state,
        services: [(Service::Poc, poc.to_owned())].into_iter().collect(),
        replicas: Default::default(),
        email_domains: vec![format!("{tenant}.com")],
    }
}

pub async fn router(
    table: Vec<RouteEntry>,
    snapshot: Option<std::path::PathBuf>,
) -> (ApiClient, AppState) {
    router_with(table, snapshot, |_| {}).await
}

pub async fn router_with(
    table: Vec<RouteEntry>,
    snapshot: Option<std::path::PathBuf>,
    tweak: impl FnOnce(&mut Config),
) -> (ApiClient, AppState) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut config = Config::new(addr, "mrbill.test", &format!("http://{addr}"));
    config.snapshot = snapshot;
    config.freeze_wait = std::time::Duration::from_millis(200);
    tweak(&mut config);
    let state = AppState::new(config).expect("state");
    if !table.is_empty() {
        let mut t = RouteTable::default();
        t.apply(cell_model::route_feed::RouteEvent::Snapshot {
            revision: 1,
            routes: table,
        });
        state.set_table(t).expect("table");
    }
    tokio::spawn(mrbill_router::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));
    (ApiClient::new(format!("http://{addr}")), state)
}
