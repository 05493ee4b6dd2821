//! Restores beyond the ordinary (see `common`): a deleted tenant brought back, and a restore
//! undone before its switch.

mod common;

use cell_model::route_feed::RouteState;
use common::{Plane, Script};
use mrbill_control_plane::catalog::Op;
use mrbill_control_plane::driver::Step;
use reqwest::Method;
use serde_json::{Value, json};

/// A deleted tenant comes back as it was: a restore admits it again (slug, name, admin, email
/// domains, tier, placement, cell id) and runs the restore's steps from the backup its delete
/// took (kind `final`, listed among its backups); that restore is not undone. A slug never
/// known, a deleted tenant whose email domain another tenant took meanwhile, and a backup the
/// driver lost with the cell, are refused, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_tenant_comes_back_from_the_backup_its_delete_took() {
    let plane = Plane::start().await;
    let create = |slug: &'static str, domain: &'static str| {
        let plane = &plane;
        async move {
            let body = json!({ "slug": slug, "display_name": "Gone Ltd",
                "admin_email": format!("admin@{domain}"), "email_domains": [domain] });
            let (status, body) = plane.call(Method::POST, "/v1/tenants", Some(body)).await;
            assert_eq!(status, 202, "{body}");
            plane.settled(slug, "Ready").await
        }
    };
    let delete = |slug: &'static str| {
        let plane = &plane;
        async move {
            let path = format!("/v1/tenants/{slug}");
            let (status, _) = plane.call(Method::DELETE, &path, None).await;
            assert_eq!(status, 202);
            plane.until(slug, "the deletion", |s, _| s == 404).await;
        }
    };
    let before = create("gone", "gone.example").await;
    let cell_id = before["cell"]["cell_id"].clone();
    delete("gone").await;

    let (status, list) = plane
        .call(Method::GET, "/v1/tenants/gone/backups", None)
        .await;
    assert_eq!(status, 200, "{list}");
    let finals: Vec<&Value> = list["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .filter(|b| b["kind"] == "final")
        .collect();
    assert_eq!(finals.len(), 1, "{list}");
    let last = finals[0].clone();
    assert_eq!(
        (&last["state"], &last["cell_id"]),
        (&json!("done"), &cell_id)
    );

    // Its domain belongs to another tenant now: refused, and it stays deleted.
    create("thief", "gone.example").await;
    let restore = |body: Value| plane.call(Method::POST, "/v1/tenants/gone/restore", Some(body));
    let (status, body) = restore(json!({})).await;
    assert_eq!(
        (status, &body["code"]),
        (409, &json!("email_domain_taken")),
        "{body}"
    );
    assert_eq!(plane.tenant("gone").await.0, 404);
    delete("thief").await;

    // A backup that went with the cell (a deleted rds cell's restore point): refused, and the
    // tenant's readmission rolls back with the refusal.
    let location = last["path"].as_str().expect("a location").to_owned();
    plane
        .driver
        .lost_with_cell
        .lock()
        .expect("lock")
        .push(location);
    let (status, body) = restore(json!({})).await;
    assert_eq!((status, &body["code"]), (409, &json!("conflict")), "{body}");
    assert_eq!(plane.tenant("gone").await.0, 404, "still deleted");
    plane.driver.lost_with_cell.lock().expect("lock").clear();

    // A deleted tenant's restore is not undone (there is no cell as it was to go back to):
    // refused while it is stuck, and it goes on once the failure clears.
    plane.driver.script(Step::Verify, Script::Fail(u32::MAX));
    let (status, plan) = restore(json!({})).await;
    assert_eq!(status, 202, "{plan}");
    plane
        .until("gone", "the verify's first failure", |_, t| {
            t["cell"]["operation"]["last_error"]
                .as_str()
                .is_some_and(|e| e.starts_with("scripted failure"))
        })
        .await;
    let (status, body) = plane
        .call(Method::POST, "/v1/tenants/gone/restore/abort", None)
        .await;
    assert_eq!((status, &body["code"]), (409, &json!("conflict")), "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("delete the tenant again"),
        "{body}"
    );
    plane.driver.unscript();
    assert_eq!(
        (&plan["cell_id"], &plan["backup"]["id"]),
        (&cell_id, &last["id"])
    );
    let after = plane.settled("gone", "Ready").await;
    for field in ["display_name", "admin_email", "email_domains", "tier"] {
        assert_eq!(after[field], before[field], "{field}");
    }
    assert_eq!(after["cell"]["cell_id"], cell_id);
    assert_eq!(after["cell"]["placement"], before["cell"]["placement"]);
    let restored = plane.driver.restored.lock().expect("lock").clone();
    let mut steps: Vec<Step> = restored.iter().map(|(step, _)| *step).collect();
    steps.dedup(); // the verify failed while scripted, then passed
    assert_eq!(
        steps,
        [
            Step::Fence,
            Step::Target,
            Step::Copy,
            Step::Verify,
            Step::Start
        ]
    );
    assert!(
        restored.iter().all(|(_, dir)| json!(dir) == last["path"]),
        "{restored:?} from {last}"
    );
    let route = plane.route("gone").await.expect("a route");
    assert_eq!(route.state, RouteState::Active);
    assert!(
        route
            .services
            .get(cell_model::contract::Service::Poc)
            .is_some(),
        "the route serves the cell"
    );

    // Restored once: the deletion is spent, and the tenant is a tenant again.
    let (status, body) = restore(json!({ "from": last["id"] })).await;
    assert_eq!(
        status, 202,
        "a live tenant's restore from its old backup: {body}"
    );
    plane.settled("gone", "Ready").await;

    let (status, body) = plane
        .call(Method::POST, "/v1/tenants/never/restore", Some(json!({})))
        .await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("tenant_not_found")),
        "{body}"
    );
}

/// A restore that cannot finish (its verify fails: a corrupt backup) is undone: the cell as it
/// was runs again, the route points at it and is active, the restored copy goes, and the restore
/// is gone from the cell's spec — at once, not after the failing step's retry backoff (8 s by
/// the fourth failure). Refused when there is nothing to undo, and after the switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_stuck_before_its_switch_is_undone() {
    let plane = Plane::start().await;
    plane.create("acme").await;
    plane.settled("acme", "Ready").await;
    let abort = || plane.call(Method::POST, "/v1/tenants/acme/restore/abort", None);
    let (status, body) = abort().await;
    assert_eq!((status, &body["code"]), (409, &json!("conflict")), "{body}");

    plane.backup_done("acme").await;
    plane.driver.script(Step::Verify, Script::Fail(u32::MAX));
    let (status, plan) = plane
        .call(Method::POST, "/v1/tenants/acme/restore", Some(json!({})))
        .await;
    assert_eq!(status, 202, "{plan}");
    plane
        .until("acme", "the verify's fourth failure", |_, t| {
            t["cell"]["operation"]["last_error"] == "scripted failure 4 of 4294967295"
        })
        .await;
    assert_eq!(
        plane.route("acme").await.expect("route").state,
        RouteState::Frozen
    );

    let asked = std::time::Instant::now();
    let (status, body) = abort().await;
    assert_eq!(status, 202, "{body}");
    let (status, again) = abort().await;
    assert_eq!(status, 202, "asked twice: {again}");
    let tenant = plane.settled("acme", "Ready").await;
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(4),
        "the undo waited for the retry: {:?}",
        asked.elapsed()
    );
    assert_eq!(tenant["cell"]["operation"]["name"], "unrestore");
    let undone: Vec<Step> = plane
        .driver
        .done("acme")
        .into_iter()
        .filter(|(op, _)| *op == Op::Unrestore)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(undone, [Step::Unfence, Step::Discard]);
    assert_eq!(
        plane.route("acme").await.expect("route").state,
        RouteState::Active
    );
    let (status, body) = abort().await;
    assert_eq!(
        (status, &body["code"]),
        (409, &json!("conflict")),
        "undone: {body}"
    );

    // A restore that switched is the tenant's state now: nothing to undo.
    plane.driver.unscript();
    let (status, plan) = plane
        .call(Method::POST, "/v1/tenants/acme/restore", Some(json!({})))
        .await;
    assert_eq!(status, 202, "{plan}");
    plane.settled("acme", "Ready").await;
    let (status, body) = abort().await;
    assert_eq!((status, &body["code"]), (409, &json!("conflict")), "{body}");
}
