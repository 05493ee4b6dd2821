//! Typed helpers: spawn the app, bootstrap an admin, invite members, sign in.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use poc_service::search::SearchIndex;
use poc_service::search::embedded::EmbeddedIndex;
use poc_service::{App, Config};
use serde_json::{Value, json};
use sqlx::PgPool;
use test_support::{ApiClient, ApiResponse};
use tokio::sync::oneshot;

pub const PASSWORD: &str = "correct horse battery staple";

/// A running poc-service with its own database.
pub struct TestApp {
    /// Client for the public listener.
    pub api: ApiClient,
    /// Client for the internal listener (no token).
    pub internal: ApiClient,
    pub config: Config,
    pub pool: PgPool,
    /// The search index the app writes to.
    pub index: Arc<dyn SearchIndex>,
    _stop: oneshot::Sender<()>,
}

/// A replica started by [`TestApp::replica`].
pub struct Replica {
    pub api: ApiClient,
    stop: Option<oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Replica {
    /// Stops it and waits until it has (its index is closed).
    pub async fn stop(mut self) {
        drop(self.stop.take());
        if let Some(running) = self.running.take() {
            let _ = running.await;
        }
    }
}

/// A signed-in user.
#[derive(Clone, Debug)]
pub struct Session {
    pub access: String,
    pub refresh: String,
    pub user_id: String,
    /// `api` with this session's bearer token.
    pub client: ApiClient,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns with a config tweak (cell id `c-test-<n>`, tenant `acme` by default).
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let index: Arc<dyn SearchIndex> = Arc::new(EmbeddedIndex::in_memory().expect("index"));
        Self::spawn_full(tweak, index).await
    }

    /// Spawns with a given search index.
    pub async fn spawn_with_index(index: Arc<dyn SearchIndex>) -> Self {
        Self::spawn_full(|_| {}, index).await
    }

    async fn spawn_full(tweak: impl FnOnce(&mut Config), index: Arc<dyn SearchIndex>) -> Self {
        let url = test_support::test_database(&poc_service::MIGRATOR)
            .await
            .expect("test database");
        let cell = format!("c-test-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let mut config = Config::for_tests(&cell, "acme", &url).expect("test config");
        tweak(&mut config);
        let pool = PgPool::connect(&url).await.expect("pool");
        let app = App::build_with_index(config.clone(), pool, index.clone())
            .await
            .expect("app builds");
        let api = ApiClient::new(format!("http://{}", app.public_addr()));
        let internal = ApiClient::new(format!("http://{}", app.internal_addr()));
        let pool = app.pool().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Self {
            api,
            internal,
            config,
            pool,
            index,
            _stop: stop,
        }
    }

    /// Another replica of this poc-service on the same database, with an embedded index in
    /// `dir` of its own (how a cell scales poc). Stops when dropped.
    pub async fn replica(&self, dir: &Path) -> Replica {
        let mut config = self.config.clone();
        config.search = poc_service::config::SearchConfig::Embedded {
            dir: Some(dir.to_owned()),
        };
        // A pool of its own: a stopping replica closes its pool, and lets its index directory
        // go before it has stopped (a replica started next on it finds it unlocked).
        let app = App::build(config.clone())
            .await
            .unwrap_or_else(|e| panic!("replica builds: {e:#}"));
        let api = ApiClient::new(format!("http://{}", app.public_addr()));
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Replica {
            api,
            stop: Some(stop),
            running: Some(running),
        }
    }

    /// Runs the provisioning bootstrap for `email` and returns the invite token.
    pub async fn bootstrap_invite(&self, email: &str) -> String {
        poc_service::bootstrap::bootstrap_admin(&self.pool, email, None)
            .await
            .expect("bootstrap")
            .invite_token
    }

    pub async fn register(&self, email: &str, password: &str, invite: Option<&str>) -> ApiResponse {
        let mut body = json!({ "email": email, "password": password });
        if let Some(invite) = invite {
            body["invite_token"] = json!(invite);
        }
        self.api.post("/v1/auth/register", &body).await
    }

    pub async fn login(&self, email: &str, password: &str) -> ApiResponse {
        self.api
            .post(
                "/v1/auth/login",
                &json!({ "email": email, "password": password }),
            )
            .await
    }

    pub fn session(&self, tokens: &Value) -> Session {
        let access = tokens["access_token"]
            .as_str()
            .expect("access token")
            .to_owned();
        Session {
            refresh: tokens["refresh_token"]
                .as_str()
                .expect("refresh token")
                .to_owned(),
            user_id: tokens["user"]["id"].as_str().expect("user id").to_owned(),
            client: self.api.with_token(&access),
            access,
        }
    }

    /// The tenant's first admin, created through the bootstrap invite.
    pub async fn admin(&self) -> Session {
        let email = "admin@acme.test";
        let invite = self.bootstrap_invite(email).await;
        let res = self.register(email, PASSWORD, Some(&invite)).await;
        let body = res.assert_status(201).clone();
        self.session(&body)
    }

    /// A member invited by `admin`.
    pub async fn member(&self, admin: &Session, email: &str) -> Session {
        let invite = admin
            .client
            .post("/v1/invites", &json!({ "email": email, "role": "member" }))
            .await;
        let token = invite.assert_status(201)["token"]
            .as_str()
            .expect("invite token")
            .to_owned();
        let res = self.register(email, PASSWORD, Some(&token)).await;
        let body = res.assert_status(201).clone();
        self.session(&body)
    }

    /// A client for the internal listener carrying the cell's service token.
    pub fn internal_with_service_token(&self) -> ApiClient {
        self.internal
            .with_token(secrecy::ExposeSecret::expose_secret(
                &self.config.service_token,
            ))
    }
}

/// A valid PoC body; tweak fields with `json` merges.
pub fn poc(name: &str, language: &str, tags: &[&str]) -> Value {
    json!({
        "name": name,
        "description": format!("{name}: a proof of concept"),
        "repository_url": format!("https://github.com/acme/{}", name.to_lowercase().replace(' ', "-")),
        "language": language,
        "tags": tags,
        "frameworks": [],
        "visibility": "tenant",
    })
}

impl Session {
    /// Creates a PoC and returns its JSON.
    pub async fn create_poc(&self, body: &Value) -> Value {
        self.client
            .post("/v1/pocs", body)
            .await
            .assert_status(201)
            .clone()
    }

    /// Polls a search until `done` holds (the index is eventually consistent), up to 10 s.
    pub async fn search_until(&self, query: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let res = self.client.get(&format!("/v1/pocs{query}")).await;
            let body = res.assert_status(200).clone();
            if done(&body) {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "search {query} never satisfied the condition; last: {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Names of the items of a search page.
pub fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Mails in a mailbox directory (the local driver's), newest last.
pub fn mailbox(dir: &Path) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .map(|p| std::fs::read_to_string(p).expect("mail"))
        .collect()
}

pub use test_support::mail::code_in;

pub async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
