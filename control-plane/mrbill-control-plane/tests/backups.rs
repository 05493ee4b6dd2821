//! Backups and restores in process (see `common`): the API's answers, the restore's steps
//! around the route, the schedule and the retention. The local driver's real backup and
//! restore run in the e2e drill (`tests/e2e/tests/backups.rs`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use cell_model::route_feed::RouteState;
use common::{Plane, Script};
use mrbill_control_plane::catalog::Op;
use mrbill_control_plane::driver::Step;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_holds_the_route_from_freeze_to_switch_and_runs_the_drivers_steps_in_order() {
    let plane = Plane::start().await;
    plane.create("acme").await;
    plane.settled("acme", "Ready").await;
    let first = plane.backup_done("acme").await;
    assert!(
        first["taken_at"].is_string() && first["bytes"] == 2,
        "{first}"
    );
    let path = first["path"].as_str().expect("path");
    assert!(std::path::Path::new(path).join("manifest.json").exists());
    let second = plane.backup_done("acme").await;
    let (_, list) = plane
        .call(Method::GET, "/v1/tenants/acme/backups", None)
        .await;
    let ids: Vec<&str> = list["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .map(|b| b["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        [&second["id"], &first["id"]].map(|v| v.as_str().expect("id"))
    );

    // By time: the newest taken at or before it (the first one here).
    let gate = Arc::new(Semaphore::new(0));
    plane
        .driver
        .script(Step::Target, Script::Gate(gate.clone()));
    let stuck = plane.driver.stuck.notified();
    let (status, plan) = plane
        .call(
            Method::POST,
            "/v1/tenants/acme/restore",
            Some(json!({ "to_time": first["taken_at"] })),
        )
        .await;
    assert_eq!(status, 202, "{plan}");
    assert_eq!(plan["backup"]["id"], first["id"]);
    assert_eq!(
        plan["steps"],
        json!([
            "freeze", "fence", "target", "copy", "verify", "start", "switch"
        ])
    );
    stuck.await;
    // Between freeze and switch the routers hold the tenant's requests.
    assert_eq!(
        plane.route("acme").await.expect("route").state,
        RouteState::Frozen
    );
    // One operation at a time.
    let (status, busy) = plane
        .call(Method::POST, "/v1/tenants/acme/restore", Some(json!({})))
        .await;
    assert_eq!(status, 409, "{busy}");
    assert_eq!(busy["code"], "operation_in_progress");
    gate.add_permits(1);
    plane.settled("acme", "Ready").await;
    let route = plane.route("acme").await.expect("route");
    assert_eq!(route.state, RouteState::Active);

    let restored: Vec<(Step, String)> = plane
        .driver
        .restored
        .lock()
        .expect("lock")
        .iter()
        .map(|(s, p)| (*s, p.clone()))
        .collect();
    let expected: Vec<(Step, String)> = [
        Step::Fence,
        Step::Target,
        Step::Copy,
        Step::Verify,
        Step::Start,
    ]
    .into_iter()
    .map(|s| (s, path.to_owned()))
    .collect();
    assert_eq!(restored, expected);
    let order: Vec<Step> = plane
        .driver
        .done("acme")
        .into_iter()
        .filter(|(op, _)| *op == Op::Restore)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        order,
        [
            Step::Fence,
            Step::Target,
            Step::Copy,
            Step::Verify,
            Step::Start
        ]
    );

    // Without a field: the newest backup.
    let (status, plan) = plane
        .call(Method::POST, "/v1/tenants/acme/restore", Some(json!({})))
        .await;
    assert_eq!(status, 202, "{plan}");
    assert_eq!(plan["backup"]["id"], second["id"]);
    plane.settled("acme", "Ready").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_requests_are_checked() {
    let plane = Plane::start().await;
    let call = |method: Method, path: &'static str, body: Option<Value>| {
        let plane = &plane;
        async move { plane.call(method, path, body).await }
    };
    let (status, body) = call(Method::POST, "/v1/tenants/nobody/backups", None).await;
    assert_eq!((status, &body["code"]), (404, &json!("tenant_not_found")));
    let (status, body) = call(Method::GET, "/v1/tenants/nobody/backups", None).await;
    assert_eq!((status, &body["code"]), (404, &json!("tenant_not_found")));
    let (status, body) = call(Method::POST, "/v1/tenants/nobody/restore", Some(json!({}))).await;
    assert_eq!((status, &body["code"]), (404, &json!("tenant_not_found")));

    plane.create("acme").await;
    plane.settled("acme", "Ready").await;
    // Nothing to restore yet.
    let (status, body) = call(Method::POST, "/v1/tenants/acme/restore", Some(json!({}))).await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("not_found")),
        "{body}"
    );
    let (status, body) = call(Method::GET, "/v1/tenants/acme/backups/nope", None).await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("not_found")),
        "{body}"
    );

    // Every field's problem at once, with its name.
    let (status, body) = call(
        Method::POST,
        "/v1/tenants/acme/restore",
        Some(json!({ "from": "last-tuesday", "to_time": "yesterday" })),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<(&str, &str)> = body["details"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| {
            (
                f["field"].as_str().expect("field"),
                f["code"].as_str().expect("code"),
            )
        })
        .collect();
    assert_eq!(
        fields,
        [("from", "invalid_format"), ("to_time", "invalid_format")]
    );
    let (status, body) = call(
        Method::POST,
        "/v1/tenants/acme/restore",
        Some(
            json!({ "from": uuid::Uuid::now_v7().to_string(), "to_time": "2026-01-01T00:00:00Z" }),
        ),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = call(
        Method::POST,
        "/v1/tenants/acme/restore",
        Some(json!({ "to_time": "2999-01-01T00:00:00Z" })),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["details"]["fields"][0]["code"], "out_of_range",
        "{body}"
    );
    let (status, body) = call(
        Method::POST,
        "/v1/tenants/acme/restore",
        Some(json!({ "from": 7 })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(
        Method::POST,
        "/v1/tenants/acme/restore",
        Some(json!({ "when": "now" })),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    let backup = plane.backup_done("acme").await;
    // A time before the first backup, an id that is not the tenant's.
    let (status, body) = call(
        Method::POST,
        "/v1/tenants/acme/restore",
        Some(json!({ "to_time": "2020-01-01T00:00:00Z" })),
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("not_found")),
        "{body}"
    );
    plane.create("other").await;
    plane.settled("other", "Ready").await;
    let (status, body) = plane
        .call(
            Method::POST,
            "/v1/tenants/other/restore",
            Some(json!({ "from": backup["id"] })),
        )
        .await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("not_found")),
        "{body}"
    );
    let (status, _) = plane
        .call(
            Method::GET,
            &format!(
                "/v1/tenants/other/backups/{}",
                backup["id"].as_str().expect("id")
            ),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // A failed backup says why, and is never restored.
    plane.driver.script(Step::Backup, Script::Fail(1));
    let (_, queued) = call(Method::POST, "/v1/tenants/other/backups", None).await;
    let id = queued["id"].as_str().expect("id").to_owned();
    let failed = loop {
        let (_, b) = plane
            .call(
                Method::GET,
                &format!("/v1/tenants/other/backups/{id}"),
                None,
            )
            .await;
        if b["state"] == "failed" {
            break b;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(
        failed["error"]
            .as_str()
            .expect("error")
            .contains("scripted failure")
    );
    let (status, body) = plane
        .call(
            Method::POST,
            "/v1/tenants/other/restore",
            Some(json!({ "from": id })),
        )
        .await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("not_found")),
        "{body}"
    );

    // A suspended tenant is not restored.
    let (status, _) = call(Method::POST, "/v1/tenants/acme/suspend", None).await;
    assert_eq!(status, 202);
    plane.settled("acme", "Suspended").await;
    let (status, body) = call(Method::POST, "/v1/tenants/acme/restore", Some(json!({}))).await;
    assert_eq!(
        (status, &body["code"]),
        (409, &json!("tenant_not_active")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_follow_the_schedule_and_the_retention_keeps_the_newest() {
    let mut plane = Plane::start().await;
    plane.config.backup_every = Some(Duration::from_millis(300));
    plane.restart().await;
    plane.create("acme").await;
    plane.settled("acme", "Ready").await;
    let list = loop {
        let (_, list) = plane
            .call(Method::GET, "/v1/tenants/acme/backups", None)
            .await;
        let done = list["backups"]
            .as_array()
            .expect("backups")
            .iter()
            .filter(|b| b["state"] == "done" && b["kind"] == "scheduled")
            .count();
        if done >= 5 {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    plane.config.backup_every = Some(Duration::ZERO);
    plane.restart().await;

    // Everything 30 days old: past the small tier's 7 days, so only the newest three stay
    // (files too).
    let url = plane.config.catalog_url.as_ref().expect("catalog");
    let pool = sqlx::PgPool::connect(secrecy::ExposeSecret::expose_secret(url))
        .await
        .expect("catalog");
    sqlx::query("UPDATE backups SET taken_at = taken_at - interval '30 days'")
        .execute(&pool)
        .await
        .expect("age");
    let newest: Vec<String> = list["backups"].as_array().expect("backups")[..3]
        .iter()
        .map(|b| b["id"].as_str().expect("id").to_owned())
        .collect();
    let all: Vec<(String, String)> = list["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .map(|b| {
            (
                b["id"].as_str().expect("id").to_owned(),
                b["path"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let kept = loop {
        let (_, now) = plane
            .call(Method::GET, "/v1/tenants/acme/backups", None)
            .await;
        let ids: Vec<String> = now["backups"]
            .as_array()
            .expect("backups")
            .iter()
            .map(|b| b["id"].as_str().expect("id").to_owned())
            .collect();
        if ids.len() == 3 {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(kept, newest);
    for (id, path) in all {
        assert_eq!(
            std::path::Path::new(&path).exists(),
            newest.contains(&id),
            "backup {id} at {path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slug_used_again_never_restores_the_old_tenants_backups() {
    let plane = Plane::start().await;
    plane.create("acme").await;
    plane.settled("acme", "Ready").await;
    let old = plane.backup_done("acme").await;
    let (status, _) = plane.call(Method::DELETE, "/v1/tenants/acme", None).await;
    assert_eq!(status, 202);
    plane
        .until("acme", "the deletion", |status, _| status == 404)
        .await;
    plane.create("acme").await;
    plane.settled("acme", "Ready").await;
    let (status, body) = plane
        .call(Method::POST, "/v1/tenants/acme/restore", Some(json!({})))
        .await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("not_found")),
        "{body}"
    );
    let (status, body) = plane
        .call(
            Method::POST,
            "/v1/tenants/acme/restore",
            Some(json!({ "from": old["id"] })),
        )
        .await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("not_found")),
        "{body}"
    );
}
