//! Migrations through the admin API with the scripted driver (see `common`): the order of the
//! steps and which placement each works on, the route frozen across the cut-over and switched
//! to the target, resumption after a crash at every driver step, an abort before the switch
//! (the source serves again, the target's units are free), the source retired after its grace
//! period, and bad requests refused with stable codes before anything starts.

mod common;

use std::time::Duration;

use cell_model::route_feed::RouteState;
use common::{Plane, Script};
use mrbill_control_plane::catalog::Op;
use mrbill_control_plane::driver::Step;
use mrbill_control_plane::migrate::{ABORT, MIGRATE};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// Steps the driver runs (the others are the control plane's own).
const DRIVER_STEPS: [Step; 7] = [
    Step::Target,
    Step::Copy,
    Step::CatchUp,
    Step::Fence,
    Step::Sync,
    Step::Verify,
    Step::Start,
];

async fn plane_with_edge(grace: Duration) -> Plane {
    let mut plane = Plane::start().await;
    plane.config.migrate_grace = grace;
    plane.restart().await;
    let (status, body) = plane
        .call(
            Method::POST,
            "/v1/placements",
            Some(json!({ "name": "edge", "region": "local", "capacity": 4 })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    plane
}

async fn migrate(plane: &Plane, slug: &str, body: Value) -> (u16, Value) {
    plane
        .call(
            Method::POST,
            &format!("/v1/tenants/{slug}/migrate"),
            Some(body),
        )
        .await
}

async fn latest(plane: &Plane, slug: &str) -> Value {
    let (status, list) = plane
        .call(Method::GET, &format!("/v1/tenants/{slug}/migrations"), None)
        .await;
    assert_eq!(status, 200, "{list}");
    list["migrations"][0].clone()
}

async fn until_migration(plane: &Plane, slug: &str, state: &str) -> Value {
    for _ in 0..400 {
        let m = latest(plane, slug).await;
        if m["state"] == state {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{slug}: migration never reached {state}: {}",
        latest(plane, slug).await
    );
}

async fn used(plane: &Plane, placement: &str) -> u64 {
    let (_, p) = plane
        .call(Method::GET, &format!("/v1/placements/{placement}"), None)
        .await;
    p["used"].as_u64().expect("used")
}

fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_freezes_switches_and_retires_the_source() {
    let mut plane = plane_with_edge(Duration::ZERO).await;
    plane.create("acme").await;
    plane.settled("acme", "Ready").await;
    let gate = std::sync::Arc::new(Semaphore::new(0));
    plane.driver.script(Step::Sync, Script::Gate(gate.clone()));
    let stuck = plane.driver.stuck.notified();

    let (status, plan) = migrate(&plane, "acme", json!({ "to": "edge" })).await;
    assert_eq!(status, 202, "{plan}");
    assert_eq!(
        (plan["from"].as_str(), plan["to"].as_str()),
        (Some("local"), Some("edge"))
    );
    stuck.await;
    // Mid cut-over: requests are held, the route still names the source, both placements
    // hold the cell's units.
    let route = plane.route("acme").await.expect("route");
    assert_eq!(route.state, RouteState::Frozen);
    assert!(
        route
            .services
            .get(cell_model::contract::Service::Poc)
            .expect("poc")
            .contains(".local.")
    );
    assert_eq!(
        (used(&plane, "local").await, used(&plane, "edge").await),
        (1, 1)
    );
    gate.add_permits(1);

    let done = until_migration(&plane, "acme", "done").await;
    assert!(done["freeze_ms"].as_u64().is_some(), "{done}");
    let route = plane.route("acme").await.expect("route");
    assert_eq!(route.state, RouteState::Active);
    assert!(
        route
            .services
            .get(cell_model::contract::Service::Poc)
            .expect("poc")
            .contains(".edge.")
    );
    let tenant = plane.settled("acme", "Ready").await;
    assert_eq!(tenant["cell"]["placement"], "edge");
    assert_eq!(
        tenant["cell"]["spec"]["placement"], "edge",
        "the desired state says so too"
    );

    // The driver's steps ran in order, each once, between source and target.
    let migrated: Vec<Step> = plane
        .driver
        .done("acme")
        .into_iter()
        .filter(|(op, _)| *op == Op::Migrate)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(migrated, DRIVER_STEPS);
    assert!(
        plane
            .driver
            .placed
            .lock()
            .expect("lock")
            .iter()
            .all(|(_, from, to)| from == "local" && to == "edge")
    );
    // The migration is `done` inside its retire step; the step is recorded right after.
    let mut done = done;
    for _ in 0..400 {
        if done["steps"]
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s["done"] == true))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        done = latest(&plane, "acme").await;
    }
    let recorded: Vec<String> = done["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["done"] == true)
        .map(|s| s["name"].as_str().expect("name").to_owned())
        .collect();
    assert_eq!(
        recorded,
        MIGRATE.iter().map(|s| s.as_str()).collect::<Vec<_>>()
    );

    // Grace 0: the source is backed up and removed by the delete steps, on the source.
    for _ in 0..200 {
        if plane
            .driver
            .done("acme")
            .iter()
            .any(|(op, s)| *op == Op::Delete && *s == Step::Files)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let retired: Vec<Step> = plane
        .driver
        .done("acme")
        .into_iter()
        .filter(|(op, _)| *op == Op::Delete)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(retired, [Step::Backup, Step::Files]);
    assert_eq!(
        (used(&plane, "local").await, used(&plane, "edge").await),
        (0, 1)
    );
    // Back again: the same steps, the other way.
    let (status, _) = migrate(&plane, "acme", json!({ "to": "local" })).await;
    assert_eq!(status, 202);
    until_migration(&plane, "acme", "done").await;
    assert!(
        plane
            .route("acme")
            .await
            .expect("route")
            .services
            .get(cell_model::contract::Service::Poc)
            .expect("poc")
            .contains(".local.")
    );
    plane.halt().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_migration_step_resumes_and_converges() {
    let mut plane = plane_with_edge(Duration::from_secs(3600)).await;
    for step in DRIVER_STEPS {
        let slug = format!("crash-{}", step.as_str());
        plane.create(&slug).await;
        plane.settled(&slug, "Ready").await;
        plane.driver.script(step, Script::HangAfterEffect);
        let stuck = plane.driver.stuck.notified();
        let (status, body) = migrate(&plane, &slug, json!({ "to": "edge" })).await;
        assert_eq!(status, 202, "{body}");
        stuck.await;
        // Unscripted first: the restarted reconciler may run the step again at once.
        plane.driver.unscript();
        plane.restart().await;
        until_migration(&plane, &slug, "done").await;
        let tenant = plane.settled(&slug, "Ready").await;
        assert_eq!(tenant["cell"]["placement"], "edge", "crash after {step:?}");
        let route = plane.route(&slug).await.expect("route");
        assert_eq!(route.state, RouteState::Active, "crash after {step:?}");
        // The crashed step ran again; every other step once.
        let ran: Vec<Step> = plane
            .driver
            .done(&slug)
            .into_iter()
            .filter(|(op, _)| *op == Op::Migrate)
            .map(|(_, s)| s)
            .collect();
        let i = DRIVER_STEPS
            .iter()
            .position(|s| *s == step)
            .expect("listed");
        let mut expected = DRIVER_STEPS[..=i].to_vec();
        expected.extend_from_slice(&DRIVER_STEPS[i..]);
        assert_eq!(ran, expected, "crash after {step:?}");
        // Move it back so the edge placement has room for the next one.
        let (status, _) = migrate(&plane, &slug, json!({ "to": "local" })).await;
        assert_eq!(status, 202);
        until_migration(&plane, &slug, "done").await;
        plane.settled(&slug, "Ready").await;
    }
    plane.halt().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_before_the_switch_leaves_the_source_serving() {
    let mut plane = plane_with_edge(Duration::from_secs(3600)).await;
    plane.create("acme").await;
    plane.settled("acme", "Ready").await;
    let gate = std::sync::Arc::new(Semaphore::new(0));
    plane
        .driver
        .script(Step::Verify, Script::Gate(gate.clone()));
    let stuck = plane.driver.stuck.notified();
    let (status, _) = migrate(&plane, "acme", json!({ "to": "edge" })).await;
    assert_eq!(status, 202);
    stuck.await;
    let (status, body) = plane
        .call(Method::POST, "/v1/tenants/acme/migration/abort", None)
        .await;
    assert_eq!(status, 202, "{body}");
    gate.add_permits(1); // the verify in flight finishes; the abort takes over after it
    let aborted = until_migration(&plane, "acme", "aborted").await;
    assert!(aborted["freeze_ms"].is_null());
    let tenant = plane.settled("acme", "Ready").await;
    assert_eq!(tenant["cell"]["placement"], "local");
    let route = plane.route("acme").await.expect("route");
    assert_eq!(route.state, RouteState::Active);
    assert!(
        route
            .services
            .get(cell_model::contract::Service::Poc)
            .expect("poc")
            .contains(".local.")
    );
    assert_eq!(
        (used(&plane, "local").await, used(&plane, "edge").await),
        (1, 0)
    );
    let abort: Vec<Step> = plane
        .driver
        .done("acme")
        .into_iter()
        .filter(|(op, _)| *op == Op::Abort)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(abort, [Step::Unfence, Step::Discard]);
    assert!(
        !plane
            .driver
            .done("acme")
            .contains(&(Op::Migrate, Step::Start)),
        "the target never started"
    );
    let recorded = tenant["cell"]["operation"]["steps"]
        .as_array()
        .expect("steps")
        .len();
    assert_eq!(recorded, ABORT.len());
    // Nothing to abort any more.
    let (status, body) = plane
        .call(Method::POST, "/v1/tenants/acme/migration/abort", None)
        .await;
    assert_eq!((status, code(&body)), (404, "not_found"));
    plane.halt().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_migrations_are_refused_before_anything_starts() {
    let mut plane = plane_with_edge(Duration::from_secs(3600)).await;
    plane.create("acme").await;
    plane.settled("acme", "Ready").await;
    let refused = [
        (json!({ "to": "nowhere" }), 422, "validation_failed"),
        (json!({ "to": "local" }), 422, "validation_failed"),
        (json!({ "to": "../x" }), 422, "validation_failed"),
        (json!({ "to": "edge", "extra": 1 }), 400, "invalid_json"),
        (json!({}), 400, "invalid_json"),
    ];
    for (body, status, expected) in refused {
        let (got, answer) = migrate(&plane, "acme", body.clone()).await;
        assert_eq!((got, code(&answer)), (status, expected), "{body}: {answer}");
    }
    let (status, body) = migrate(&plane, "ghost", json!({ "to": "edge" })).await;
    assert_eq!((status, code(&body)), (404, "tenant_not_found"));

    // A dry run shows the plan and starts nothing.
    let (status, plan) = migrate(&plane, "acme", json!({ "to": "edge", "dry_run": true })).await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["steps"].as_array().map(Vec::len), Some(MIGRATE.len()));
    assert!(plan["id"].is_null());
    let (_, list) = plane
        .call(Method::GET, "/v1/tenants/acme/migrations", None)
        .await;
    assert_eq!(list["migrations"], json!([]));

    // Cordoned target, a full one.
    plane
        .call(Method::POST, "/v1/placements/edge/cordon", None)
        .await;
    let (status, body) = migrate(&plane, "acme", json!({ "to": "edge" })).await;
    assert_eq!((status, code(&body)), (409, "placement_cordoned"));
    plane
        .call(Method::POST, "/v1/placements/edge/uncordon", None)
        .await;
    plane
        .call(
            Method::POST,
            "/v1/placements",
            Some(json!({ "name": "tiny", "region": "local", "capacity": 0 })),
        )
        .await;
    let (status, body) = migrate(&plane, "acme", json!({ "to": "tiny" })).await;
    assert_eq!((status, code(&body)), (409, "capacity_exhausted"));

    // Two operations at once; a delete during a migration.
    let gate = std::sync::Arc::new(Semaphore::new(0));
    plane.driver.script(Step::Copy, Script::Gate(gate.clone()));
    let stuck = plane.driver.stuck.notified();
    assert_eq!(
        migrate(&plane, "acme", json!({ "to": "edge" })).await.0,
        202
    );
    stuck.await;
    let (status, body) = migrate(&plane, "acme", json!({ "to": "edge" })).await;
    assert_eq!(
        (status, code(&body)),
        (409, "operation_in_progress"),
        "{body}"
    );
    assert_eq!(body["details"]["operation"], "migrate");
    let (status, body) = plane.call(Method::DELETE, "/v1/tenants/acme", None).await;
    assert_eq!(
        (status, code(&body)),
        (409, "operation_in_progress"),
        "{body}"
    );
    let (status, body) = plane
        .call(Method::DELETE, "/v1/placements/edge", None)
        .await;
    assert_eq!((status, code(&body)), (409, "placement_in_use"), "{body}");
    gate.add_permits(1);
    until_migration(&plane, "acme", "done").await;
    plane.settled("acme", "Ready").await;
    // After the switch there is nothing to abort.
    let (status, _) = plane
        .call(Method::POST, "/v1/tenants/acme/migration/abort", None)
        .await;
    assert_eq!(status, 404);

    // A suspended tenant does not move.
    plane
        .call(Method::POST, "/v1/tenants/acme/suspend", None)
        .await;
    plane.settled("acme", "Suspended").await;
    let (status, body) = migrate(&plane, "acme", json!({ "to": "local" })).await;
    assert_eq!((status, code(&body)), (409, "tenant_not_active"));
    assert_eq!(body["details"]["state"], "suspended");
    plane.halt().await;
}

/// An rds cell's instance and stack are named by its cell id in its region: a target in the
/// source's region would take the source's own (the operator adopts what bears its name).
#[tokio::test]
async fn an_rds_cell_moves_only_to_another_region() {
    let mut plane = Plane::start().await;
    plane.config.driver = mrbill_control_plane::config::Driver::Kubernetes;
    plane.config.cell_database = cell_model::DatabaseEngine::Rds;
    plane.restart().await;
    for (name, region) in [("edge", "local"), ("far", "sa-east-1")] {
        let body = json!({ "name": name, "region": region, "capacity": 4 });
        let (status, answer) = plane.call(Method::POST, "/v1/placements", Some(body)).await;
        assert_eq!(status, 201, "{answer}");
    }
    plane.create("acme").await;
    plane.settled("acme", "Ready").await;
    let (status, body) = migrate(&plane, "acme", json!({ "to": "edge" })).await;
    assert_eq!((status, code(&body)), (422, "validation_failed"), "{body}");
    assert_eq!(
        body["details"]["fields"][0]["code"], "same_region",
        "{body}"
    );
    let (status, plan) = migrate(&plane, "acme", json!({ "to": "far", "dry_run": true })).await;
    assert_eq!(status, 200, "{plan}");
    plane.halt().await;
}
