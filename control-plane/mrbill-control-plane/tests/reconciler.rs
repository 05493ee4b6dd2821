//! The reconciler in process: the real admin API, catalog (Postgres) and reconciler, with
//! cells run by a scripted driver that records what it is asked to do and fails, hangs or
//! waits at the steps a test names. It stands in for a driver here because the point is the
//! reconciler's bookkeeping — the real drivers have their own tests (e2e, kube-fake).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cell_model::contract::Service;
use cell_model::route_feed::{RouteEntry, RouteEvent, RouteState, ServiceUrls};
use cell_model::{CellSpec, Phase};
use mrbill_control_plane::catalog::{MIGRATOR, Op};
use mrbill_control_plane::driver::{BoxFuture, CellDriver, Observation, Step, Work, condition};
use mrbill_control_plane::{App, Config};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

/// What the scripted driver does at a step.
#[derive(Clone, Debug)]
enum Script {
    /// Fails this many times before it succeeds.
    Fail(u32),
    /// Does the step's work, then never returns (a crash before the step is recorded).
    HangAfterEffect,
    /// Waits for a permit before doing the work.
    Gate(Arc<Semaphore>),
}

#[derive(Debug, Default)]
struct FakeDriver {
    /// Steps whose work was done, in order: (tenant, op, step).
    done: Mutex<Vec<(String, Op, Step)>>,
    /// Attempts per (tenant, step), failed ones included.
    attempts: Mutex<HashMap<(String, Step), u32>>,
    /// Tenants whose service URLs were asked for (the route step of provision and resume).
    routed: Mutex<Vec<String>>,
    /// Backup paths the delete's backup step was given.
    backups: Mutex<Vec<Option<PathBuf>>>,
    script: Mutex<HashMap<Step, Script>>,
    /// Signalled when a step hangs or waits at its gate.
    stuck: Notify,
    backup_root: PathBuf,
}

impl FakeDriver {
    fn new(backup_root: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            backup_root,
            ..Self::default()
        })
    }

    fn script(&self, step: Step, script: Script) {
        self.script.lock().expect("lock").insert(step, script);
    }

    fn unscript(&self) {
        self.script.lock().expect("lock").clear();
    }

    fn done(&self, tenant: &str) -> Vec<(Op, Step)> {
        let done = self.done.lock().expect("lock");
        done.iter()
            .filter(|(t, _, _)| t == tenant)
            .map(|(_, op, step)| (*op, *step))
            .collect()
    }
}

impl CellDriver for FakeDriver {
    fn steps(&self, op: Op) -> &'static [Step] {
        match op {
            Op::Provision => &[Step::Secrets, Step::Databases, Step::Services, Step::Route],
            Op::Suspend => &[Step::Route, Step::Services],
            Op::Resume => &[Step::Services, Step::Route],
            Op::Delete => &[Step::Route, Step::Backup, Step::Files, Step::Catalog],
        }
    }

    fn run<'a>(&'a self, work: Work<'a>, op: Op, step: Step) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let tenant = work.spec.tenant.clone();
            let attempt = {
                let mut attempts = self.attempts.lock().expect("lock");
                let n = attempts.entry((tenant.clone(), step)).or_default();
                *n += 1;
                *n
            };
            let script = self.script.lock().expect("lock").get(&step).cloned();
            if let Some(Script::Gate(gate)) = &script {
                self.stuck.notify_one();
                let _permit = gate.acquire().await?;
            }
            if let Some(Script::Fail(times)) = script
                && attempt <= times
            {
                anyhow::bail!("scripted failure {attempt} of {times}");
            }
            if step == Step::Backup {
                self.backups
                    .lock()
                    .expect("lock")
                    .push(work.backup.map(PathBuf::from));
            }
            self.done.lock().expect("lock").push((tenant, op, step));
            if let Some(Script::HangAfterEffect) = script {
                self.stuck.notify_one();
                std::future::pending::<()>().await;
            }
            Ok(())
        })
    }

    fn service_urls<'a>(
        &'a self,
        spec: &'a CellSpec,
    ) -> BoxFuture<'a, anyhow::Result<ServiceUrls>> {
        let poc = format!("http://{}.poc.invalid", spec.tenant);
        self.routed.lock().expect("lock").push(spec.tenant.clone());
        Box::pin(async move { Ok([(Service::Poc, poc)].into_iter().collect()) })
    }

    fn settle<'a>(
        &'a self,
        _spec: &'a CellSpec,
        serving: bool,
    ) -> BoxFuture<'a, anyhow::Result<Observation>> {
        Box::pin(async move {
            Ok(Observation {
                conditions: vec![condition("Ready", serving, "Scripted")],
                ..Observation::default()
            })
        })
    }

    fn watch<'a>(
        &'a self,
        _spec: &'a CellSpec,
        _phase: Phase,
    ) -> BoxFuture<'a, anyhow::Result<Option<Observation>>> {
        Box::pin(async { Ok(None) })
    }

    fn backup_destination(&self, tenant: &str, cell_id: &str) -> Option<PathBuf> {
        Some(self.backup_root.join(format!("{tenant}-{cell_id}")))
    }

    fn details(&self, _cell_id: &str) -> Option<Value> {
        None
    }
}

/// A control plane on a test catalog and a home of its own, restartable (a restart is a crash:
/// stopping drops the reconciler and every step it was running).
struct Plane {
    config: Config,
    driver: Arc<FakeDriver>,
    url: String,
    token: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _home: tempdir::Dir,
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Plane {
    async fn start() -> Self {
        let url = test_support::test_database(&MIGRATOR)
            .await
            .expect("catalog database");
        let root = std::env::temp_dir().join(format!(
            "mrbill-reconciler-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let mut config = Config::from_env().expect("config");
        config.home = cell_model::local::Home::new(&root);
        config.catalog_url = Some(url.into());
        config.addr = None;
        config.placements = vec![("local".into(), 100)];
        config.crash_after_step = None;
        config.health_interval = Duration::from_millis(100);
        let driver = FakeDriver::new(root.join("backups"));
        let mut plane = Self {
            config,
            driver,
            url: String::new(),
            token: String::new(),
            http: reqwest::Client::new(),
            stop: None,
            task: None,
            _home: tempdir::Dir(root),
        };
        plane.restart().await;
        plane
    }

    /// Stops the running control plane (if any) and starts a new one on the same catalog.
    async fn restart(&mut self) {
        self.halt().await;
        let app = App::build_with_driver(self.config.clone(), self.driver.clone())
            .await
            .expect("control plane");
        self.url = format!("http://{}", app.addr());
        self.token = std::fs::read_to_string(self.config.home.operator_token())
            .expect("operator token")
            .trim()
            .to_owned();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        })));
    }

    async fn halt(&mut self) {
        if let (Some(stop), Some(task)) = (self.stop.take(), self.task.take()) {
            let _ = stop.send(());
            task.await
                .expect("join")
                .expect("control plane stopped cleanly");
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn create(&self, slug: &str) {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/v1/tenants",
                Some(json!({
                    "slug": slug,
                    "display_name": "Acme",
                    "admin_email": format!("admin@{slug}.example"),
                    "email_domains": [],
                })),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }

    async fn tenant(&self, slug: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, &format!("/v1/tenants/{slug}"), None)
            .await
    }

    /// Waits (on the reconciler's own progress, polled) until `done` holds for the tenant.
    async fn until(&self, slug: &str, what: &str, done: impl Fn(u16, &Value) -> bool) -> Value {
        for _ in 0..400 {
            let (status, tenant) = self.tenant(slug).await;
            if done(status, &tenant) {
                return tenant;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "{slug}: {what} never happened: {:?}",
            self.tenant(slug).await
        );
    }

    async fn settled(&self, slug: &str, phase: &str) -> Value {
        self.until(slug, phase, |_, t| {
            t["cell"]["status"]["phase"] == phase && t["cell"]["operation"]["finished"] == true
        })
        .await
    }

    /// The route the feed's snapshot holds for `slug`, if any.
    async fn route(&self, slug: &str) -> Option<RouteEntry> {
        let res = self
            .http
            .get(format!("{}/v1/routes", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("feed");
        let text = res.text().await.expect("feed body");
        let first = text.lines().next().expect("a snapshot line");
        match serde_json::from_str(first).expect("a feed event") {
            RouteEvent::Snapshot { routes, .. } => routes.into_iter().find(|r| r.tenant == slug),
            other => panic!("the feed starts with a snapshot, not {other:?}"),
        }
    }
}

fn recorded(tenant: &Value) -> Vec<(String, bool)> {
    tenant["cell"]["operation"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("name").to_owned(),
                s["done"] == true,
            )
        })
        .collect()
}

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
        Some("http://acme.poc.invalid")
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
        plane.restart().await; // the step's work is done, its record is not
        plane.driver.unscript();
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
