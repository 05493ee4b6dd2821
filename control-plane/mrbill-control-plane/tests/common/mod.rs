//! A control plane in process for tests: the real admin API, catalog (Postgres) and
//! reconciler, with cells run by a scripted driver that records what it is asked to do and
//! fails, hangs or waits at the steps a test names. It stands in for a driver because the
//! point is the control plane's bookkeeping — the real drivers have their own tests (e2e,
//! kube-fake).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cell_model::Phase;
use cell_model::contract::Service;
use cell_model::route_feed::{Endpoints, RouteEntry, RouteEvent, ServiceUrls};
use mrbill_control_plane::catalog::{MIGRATOR, Op};
use mrbill_control_plane::driver::{
    BoxFuture, CellDriver, Move, Observation, Restoring, Step, Taken, Work, condition,
};
use mrbill_control_plane::{App, Config};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

/// What the scripted driver does at a step.
#[derive(Clone, Debug)]
pub enum Script {
    /// Fails this many times before it succeeds.
    Fail(u32),
    /// Does the step's work, then never returns (a crash before the step is recorded).
    HangAfterEffect,
    /// Waits for a permit before doing the work.
    Gate(Arc<Semaphore>),
}

#[derive(Debug, Default)]
pub struct FakeDriver {
    /// Steps whose work was done, in order: (tenant, op, step).
    pub done: Mutex<Vec<(String, Op, Step)>>,
    /// Attempts per (tenant, step), failed ones included.
    pub attempts: Mutex<HashMap<(String, Step), u32>>,
    /// Tenants whose service URLs were asked for (the route step of provision and resume).
    pub routed: Mutex<Vec<String>>,
    /// Backup paths the delete's backup step was given.
    pub backups: Mutex<Vec<Option<PathBuf>>>,
    /// Backups taken (the directory each went to; the fake writes a marker file there).
    pub taken: Mutex<Vec<PathBuf>>,
    /// Restore steps with the backup directory they were given.
    pub restored: Mutex<Vec<(Step, String)>>,
    /// Migration steps with the (source, target) they were given.
    pub placed: Mutex<Vec<(Step, String, String)>>,
    script: Mutex<HashMap<Step, Script>>,
    /// Backup locations a deleted tenant does not come back from (they went with its cell).
    pub lost_with_cell: Mutex<Vec<String>>,
    /// Signalled when a step hangs or waits at its gate.
    pub stuck: Notify,
    backup_root: PathBuf,
}

impl FakeDriver {
    pub fn new(backup_root: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            backup_root,
            ..Self::default()
        })
    }

    pub fn script(&self, step: Step, script: Script) {
        self.script.lock().expect("lock").insert(step, script);
    }

    pub fn unscript(&self) {
        self.script.lock().expect("lock").clear();
    }

    pub fn done(&self, tenant: &str) -> Vec<(Op, Step)> {
        let done = self.done.lock().expect("lock");
        done.iter()
            .filter(|(t, _, _)| t == tenant)
            .map(|(_, op, step)| (*op, *step))
            .collect()
    }
}

impl FakeDriver {
    /// A step's scripted work: attempts counted, failures, gates and hangs as scripted.
    async fn act(
        &self,
        tenant: String,
        op: Op,
        step: Step,
        backup: Option<PathBuf>,
    ) -> anyhow::Result<()> {
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
            self.backups.lock().expect("lock").push(backup);
        }
        self.done.lock().expect("lock").push((tenant, op, step));
        if let Some(Script::HangAfterEffect) = script {
            self.stuck.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

impl CellDriver for FakeDriver {
    fn steps(&self, op: Op) -> &'static [Step] {
        match op {
            Op::Provision => &[Step::Secrets, Step::Databases, Step::Services, Step::Route],
            Op::Suspend => &[Step::Route, Step::Services],
            Op::Resume => &[Step::Services, Step::Route],
            Op::Delete => &[Step::Route, Step::Backup, Step::Files, Step::Catalog],
            Op::Scale => &[Step::Services, Step::Route],
            Op::Migrate | Op::Abort | Op::Restore | Op::Unrestore => &[],
        }
    }

    fn run<'a>(&'a self, work: Work<'a>, op: Op, step: Step) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.act(
            work.spec.tenant.clone(),
            op,
            step,
            work.backup.map(PathBuf::from),
        ))
    }

    fn migrates(&self) -> bool {
        true
    }

    fn migrate<'a>(&'a self, mv: Move<'a>, step: Step) -> BoxFuture<'a, anyhow::Result<()>> {
        let op = match step {
            Step::Unfence | Step::Discard => Op::Abort,
            _ => Op::Migrate,
        };
        self.placed
            .lock()
            .expect("lock")
            .push((step, mv.source.to_owned(), mv.target.to_owned()));
        Box::pin(self.act(mv.spec.tenant.clone(), op, step, None))
    }

    fn backs_up(&self) -> bool {
        true
    }

    fn restores_deleted(&self, _spec: &cell_model::CellSpec, location: &str) -> bool {
        !self
            .lost_with_cell
            .lock()
            .expect("lock")
            .iter()
            .any(|l| l == location)
    }

    fn unrestores(&self) -> bool {
        true
    }

    fn unrestore<'a>(&'a self, r: Restoring<'a>, step: Step) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.act(r.spec.tenant.clone(), Op::Unrestore, step, None))
    }

    /// Writes `<backup root>/<tenant>-<cell>-<id>/manifest.json` (a scripted `Step::Backup`
    /// failure fails it first).
    fn back_up<'a>(
        &'a self,
        work: Work<'a>,
        id: uuid::Uuid,
    ) -> BoxFuture<'a, anyhow::Result<Taken>> {
        Box::pin(async move {
            self.act(work.spec.tenant.clone(), Op::Provision, Step::Backup, None)
                .await?;
            let (tenant, cell) = (&work.spec.tenant, &work.spec.cell_id);
            let dest = self
                .backup_root
                .join(format!("{tenant}-{cell}-{}", id.simple()));
            std::fs::create_dir_all(&dest)?;
            std::fs::write(dest.join("manifest.json"), "{}")?;
            self.taken.lock().expect("lock").push(dest.clone());
            Ok(Taken {
                taken_at: time::OffsetDateTime::now_utc(),
                bytes: Some(2),
                location: dest.display().to_string(),
            })
        })
    }

    fn restore<'a>(&'a self, r: Restoring<'a>, step: Step) -> BoxFuture<'a, anyhow::Result<()>> {
        self.restored
            .lock()
            .expect("lock")
            .push((step, r.backup.to_owned()));
        Box::pin(self.act(r.spec.tenant.clone(), Op::Restore, step, None))
    }

    fn service_urls<'a>(&'a self, work: Work<'a>) -> BoxFuture<'a, anyhow::Result<Endpoints>> {
        let poc = format!("http://{}.poc.{}.invalid", work.spec.tenant, work.placement);
        self.routed
            .lock()
            .expect("lock")
            .push(work.spec.tenant.clone());
        Box::pin(async move { Ok(ServiceUrls::from_iter([(Service::Poc, poc)]).into()) })
    }

    fn settle<'a>(
        &'a self,
        _work: Work<'a>,
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
        _work: Work<'a>,
        _phase: Phase,
    ) -> BoxFuture<'a, anyhow::Result<Option<Observation>>> {
        Box::pin(async { Ok(None) })
    }

    fn backup_destination(&self, tenant: &str, cell_id: &str) -> Option<PathBuf> {
        Some(self.backup_root.join(format!("{tenant}-{cell_id}")))
    }

    fn details(&self, _placement: &str, _cell_id: &str) -> Option<Value> {
        None
    }
}

/// A control plane on a test catalog and a home of its own, restartable (a restart is a crash:
/// stopping drops the reconciler and every step it was running).
pub struct Plane {
    pub config: Config,
    pub driver: Arc<FakeDriver>,
    pub url: String,
    pub token: String,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _home: tempdir::Dir,
}

pub mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Plane {
    pub async fn start() -> Self {
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
    pub async fn restart(&mut self) {
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

    pub async fn halt(&mut self) {
        if let (Some(stop), Some(task)) = (self.stop.take(), self.task.take()) {
            let _ = stop.send(());
            task.await
                .expect("join")
                .expect("control plane stopped cleanly");
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
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

    pub async fn create(&self, slug: &str) {
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

    pub async fn tenant(&self, slug: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, &format!("/v1/tenants/{slug}"), None)
            .await
    }

    /// Waits (on the reconciler's own progress, polled) until `done` holds for the tenant.
    pub async fn until(&self, slug: &str, what: &str, done: impl Fn(u16, &Value) -> bool) -> Value {
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

    pub async fn settled(&self, slug: &str, phase: &str) -> Value {
        self.until(slug, phase, |_, t| {
            t["cell"]["status"]["phase"] == phase && t["cell"]["operation"]["finished"] == true
        })
        .await
    }

    /// Asks for a backup of `slug` and waits until it is done.
    pub async fn backup_done(&self, slug: &str) -> Value {
        let (status, queued) = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/tenants/{slug}/backups"),
                None,
            )
            .await;
        assert_eq!(status, 202, "{queued}");
        assert_eq!(queued["kind"], "manual");
        let id = queued["id"].as_str().expect("id").to_owned();
        for _ in 0..400 {
            let (status, backup) = self
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/tenants/{slug}/backups/{id}"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{backup}");
            if backup["state"] == "done" {
                return backup;
            }
            assert_ne!(backup["state"], "failed", "{backup}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("backup {id} never finished");
    }

    /// The route the feed's snapshot holds for `slug`, if any.
    pub async fn route(&self, slug: &str) -> Option<RouteEntry> {
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

pub fn recorded(tenant: &Value) -> Vec<(String, bool)> {
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
