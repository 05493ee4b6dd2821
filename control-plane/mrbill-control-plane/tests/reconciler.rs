//! The reconciler in process (see `common`): step recording, resume after a crash at each step,
//! retries, an operation replaced or followed by another.

mod common;

use std::sync::Arc;

use cell_model::contract::Service;
use cell_model::route_feed::RouteState;
use common::{Plane, Script, recorded};
use mrbill_control_plane::catalog::Op;
use mrbill_control_plane::driver::Step;
use tokio::sync::Semaphore;

const PROVISION: [Step; 3] = [Step::Secrets, Step::Databases, Step::Services];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_runs_each_step_once_records_it_and_publishes_the_route() {
    let mut plane = Plane::start().await;
    plane.create("acme").await;
    let tenant = plane.settled("acme", "Ready").await;

    let provision: Vec<(Op, Step)> = PROVISION.iter().map(|s| (Op::Provision, *s)).collect();
    assert_eq!(plane.driver.done("acme"), provision);
    assert_eq!(
        recorded(&tenant),
        ["secrets", "databases", "services", "route"]
            .map(|s| (s.to_owned(), true))
            .to_vec()
    );
    let route = plane.route("acme").await.expect("routed");
    assert_eq!(
        route.services.get(Service::Poc),
        Some("http://acme.poc.local.invalid")
    );
    assert_eq!(route.state, RouteState::Active);
    // The first admin: one invite, its token with the control plane, its hash in the spec.
    let token = tenant["admin_invite"]["invite_token"]
        .as_str()
        .expect("invite");
    assert_eq!(
        tenant["cell"]["spec"]["bootstrap"]["inviteTokenSha256"],
        service_kit::secrets::token_hash(token)
    );

    // A restarted control plane finds nothing to do: no step runs twice.
    plane.restart().await;
    plane.create("other").await;
    plane.settled("other", "Ready").await;
    assert_eq!(plane.driver.done("acme"), provision);
    plane.halt().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_step_resumes_at_that_step_and_converges() {
    let mut plane = Plane::start().await;
    for (i, step) in PROVISION.into_iter().enumerate() {
        let slug = format!("crash-{}", step.as_str());
        plane.driver.script(step, Script::HangAfterEffect);
        let stuck = plane.driver.stuck.notified();
        plane.create(&slug).await;
        stuck.await;
        // Unscripted first: the restarted reconciler may run the step again at once, and a
        // scripted hang there would never end.
        plane.driver.unscript();
        plane.restart().await; // the step's work is done, its record is not
        let tenant = plane.settled(&slug, "Ready").await;

        let mut expected: Vec<(Op, Step)> = PROVISION[..=i]
            .iter()
            .map(|s| (Op::Provision, *s))
            .collect();
        expected.extend(PROVISION[i..].iter().map(|s| (Op::Provision, *s)));
        assert_eq!(plane.driver.done(&slug), expected, "crash after {step:?}");
        assert!(recorded(&tenant).iter().all(|(_, done)| *done));
        assert!(plane.route(&slug).await.is_some(), "routed after {step:?}");
    }
    plane.halt().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_is_retried_and_recorded_once() {
    let mut plane = Plane::start().await;
    plane.driver.script(Step::Databases, Script::Fail(2));
    plane.create("flaky").await;
    plane
        .until("flaky", "the failure to be reported", |_, t| {
            t["cell"]["operation"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("scripted failure"))
        })
        .await;
    let tenant = plane.settled("flaky", "Ready").await;
    let attempts = plane.driver.attempts.lock().expect("lock").clone();
    assert_eq!(attempts[&("flaky".to_owned(), Step::Databases)], 3);
    assert_eq!(attempts[&("flaky".to_owned(), Step::Services)], 1);
    let names: Vec<String> = recorded(&tenant).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["secrets", "databases", "services", "route"]);
    plane.halt().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_takes_over_from_a_provisioning_in_flight() {
    let mut plane = Plane::start().await;
    let gate = Arc::new(Semaphore::new(0));
    plane
        .driver
        .script(Step::Services, Script::Gate(gate.clone()));
    let stuck = plane.driver.stuck.notified();
    plane.create("doomed").await;
    stuck.await;
    let (status, _) = plane
        .call(reqwest::Method::DELETE, "/v1/tenants/doomed", None)
        .await;
    assert_eq!(status, 202);
    gate.add_permits(1);
    plane
        .until("doomed", "the tenant to be gone", |status, _| status == 404)
        .await;

    // The provisioning finished the step it was in and stopped: its route step never ran.
    assert!(
        !plane
            .driver
            .routed
            .lock()
            .expect("lock")
            .contains(&"doomed".to_owned()),
        "the replaced provisioning published no route"
    );
    assert_eq!(
        plane.driver.done("doomed"),
        [
            (Op::Provision, Step::Secrets),
            (Op::Provision, Step::Databases),
            (Op::Provision, Step::Services),
            (Op::Delete, Step::Backup),
            (Op::Delete, Step::Files),
        ]
    );
    let backups = plane.driver.backups.lock().expect("lock").clone();
    assert_eq!(backups.len(), 1);
    let backup = backups[0].clone().expect("a backup path");
    assert!(backup.to_string_lossy().contains("doomed-c-doomed-"));
    assert!(
        plane.route("doomed").await.is_none(),
        "the route is removed"
    );
    // The slug is free again.
    plane.driver.unscript();
    plane.create("doomed").await;
    plane.settled("doomed", "Ready").await;
    plane.halt().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspend_during_provisioning_follows_it() {
    let mut plane = Plane::start().await;
    let gate = Arc::new(Semaphore::new(0));
    plane
        .driver
        .script(Step::Services, Script::Gate(gate.clone()));
    let stuck = plane.driver.stuck.notified();
    plane.create("sleepy").await;
    stuck.await;
    let (status, _) = plane
        .call(reqwest::Method::POST, "/v1/tenants/sleepy/suspend", None)
        .await;
    assert_eq!(status, 202);
    plane.driver.unscript();
    gate.add_permits(1);
    let tenant = plane.settled("sleepy", "Suspended").await;
    assert_eq!(tenant["state"], "suspended");
    assert_eq!(
        plane.driver.done("sleepy"),
        [
            (Op::Provision, Step::Secrets),
            (Op::Provision, Step::Databases),
            (Op::Provision, Step::Services),
            (Op::Suspend, Step::Services),
        ]
    );
    assert_eq!(
        plane.route("sleepy").await.expect("routed").state,
        RouteState::Suspended
    );
    plane.halt().await;
}

/// A delete removes a tenant and its cell in one transaction; a reader must see both or neither.
/// While tenants are deleted one after another, readers poll the one being deleted and the
/// listing: a tenant is answered 200 or 404 — never a 500 from a view that found the tenant but
/// not its cell — and the listing is always 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_during_deletes_see_a_tenant_whole_or_not_at_all() {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let mut plane = Plane::start().await;
    let slugs: Vec<String> = (0..30).map(|i| format!("gone{i}")).collect();
    for slug in &slugs {
        plane.create(slug).await;
    }
    for slug in &slugs {
        plane.settled(slug, "Ready").await;
    }
    let (current, finished) = (AtomicUsize::new(0), AtomicBool::new(false));
    let deleter = async {
        for (i, slug) in slugs.iter().enumerate() {
            current.store(i, Ordering::SeqCst);
            let path = format!("/v1/tenants/{slug}");
            let (status, body) = plane.call(reqwest::Method::DELETE, &path, None).await;
            assert_eq!(status, 202, "{body}");
            plane
                .until(slug, "the tenant to be gone", |s, _| s == 404)
                .await;
        }
        finished.store(true, Ordering::SeqCst);
    };
    let read = |listing: bool| {
        let (plane, slugs, current, finished) = (&plane, &slugs, &current, &finished);
        async move {
            let mut answers: BTreeMap<u16, usize> = BTreeMap::new();
            while !finished.load(Ordering::SeqCst) {
                let path = if listing {
                    "/v1/tenants".to_owned()
                } else {
                    format!("/v1/tenants/{}", slugs[current.load(Ordering::SeqCst)])
                };
                let (status, body) = plane.call(reqwest::Method::GET, &path, None).await;
                assert!(
                    status == 200 || (status == 404 && !listing),
                    "GET {path}: {status} {body}"
                );
                *answers.entry(status).or_default() += 1;
            }
            answers
        }
    };
    // Two readers of the tenant being deleted, one of the listing.
    let ((), one, two, all) = tokio::join!(deleter, read(false), read(false), read(true));
    assert!(one.get(&200).is_some_and(|n| *n > 0), "{one:?}");
    assert!(two.get(&404).is_some_and(|n| *n > 0), "{two:?}");
    assert!(all.get(&200).is_some_and(|n| *n > 0), "{all:?}");
    plane.halt().await;
}
