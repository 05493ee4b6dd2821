//! A cell with poc-service and dojo-service, and a y-websocket client.

use std::time::Duration;

use poc_service::test_util::PocCell;
use serde_json::{Value, json};
use sqlx::PgPool;
use test_support::ApiClient;
pub use test_support::live::Live;
use tokio::sync::oneshot;

/// poc-service + dojo-service of one cell.
pub struct Cell {
    /// poc-service's public API.
    pub poc: ApiClient,
    pub dojo: ApiClient,
    pub dojo_addr: std::net::SocketAddr,
    pub dojo_url: String,
    poc_cell: PocCell,
    dojo_config: dojo_service::Config,
    /// The running instance: what stops it, and its task (done once it has stopped).
    running: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    /// Further replicas on the same database, by address (see [`Cell::add_replica`]).
    replicas: Vec<(
        std::net::SocketAddr,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

/// A signed-in user of the cell.
#[derive(Clone)]
pub struct User {
    pub id: String,
    pub token: String,
    /// dojo-service with this user's token.
    pub dojo: ApiClient,
}

impl Cell {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut dojo_service::Config)) -> Self {
        Self::start_full(|_| {}, tweak).await
    }

    /// Starts with tweaks to both services' configs.
    pub async fn start_full(
        tweak_poc: impl FnOnce(&mut poc_service::Config),
        tweak: impl FnOnce(&mut dojo_service::Config),
    ) -> Self {
        let poc_cell = PocCell::start("dojo", tweak_poc).await;
        let dojo_url = test_support::test_database(&dojo_service::MIGRATOR)
            .await
            .expect("dojo database");
        let mut dojo_config =
            dojo_service::Config::for_tests(poc_cell.common(&dojo_url), poc_cell.peer());
        tweak(&mut dojo_config);
        let mut cell = Self {
            poc: poc_cell.poc.clone(),
            dojo: ApiClient::new("http://unused"),
            dojo_addr: ([127, 0, 0, 1], 0).into(),
            dojo_url,
            poc_cell,
            dojo_config,
            running: None,
            replicas: Vec::new(),
        };
        cell.start_dojo().await;
        cell
    }

    /// (Re)starts dojo-service on the same database; a previous instance is stopped first.
    pub async fn start_dojo(&mut self) {
        if let Some((stop, running)) = self.running.take() {
            drop(stop);
            // The old instance has closed its sockets once its task is done.
            tokio::time::timeout(Duration::from_secs(30), running)
                .await
                .expect("dojo-service stops")
                .expect("dojo-service's task");
        }
        let (addr, stop, running) = self.spawn_dojo().await;
        self.dojo_addr = addr;
        self.dojo = ApiClient::new(format!("http://{addr}"));
        self.running = Some((stop, running));
    }

    /// Starts another replica of dojo-service on the same database, as a scaled cell runs
    /// them; returns its address. It stops with the cell.
    pub async fn add_replica(&mut self) -> std::net::SocketAddr {
        let (addr, stop, running) = self.spawn_dojo().await;
        self.replicas.push((addr, stop, running));
        addr
    }

    async fn spawn_dojo(
        &self,
    ) -> (
        std::net::SocketAddr,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        // Each instance has its own pool (a stopped instance closes its pool).
        let pool = PgPool::connect(&self.dojo_url).await.expect("dojo pool");
        let app = dojo_service::App::build_with_pool(self.dojo_config.clone(), pool)
            .await
            .expect("dojo builds");
        let addr = app.public_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(async move {
            app.run_until_stopped(async move {
                let _ = stopped.await;
            })
            .await
            .expect("dojo-service runs");
        });
        (addr, stop, running)
    }

    fn user(&self, u: poc_service::test_util::User) -> User {
        User {
            dojo: self.dojo.with_token(&u.token),
            id: u.id,
            token: u.token,
        }
    }

    /// The tenant's first admin.
    pub async fn admin(&self) -> User {
        self.user(self.poc_cell.admin().await)
    }

    /// A member invited by `admin`.
    pub async fn member(&self, admin: &User, email: &str) -> User {
        let admin = poc_service::test_util::User {
            id: admin.id.clone(),
            token: admin.token.clone(),
        };
        self.user(self.poc_cell.member(&admin, email).await)
    }

    /// A user's client against the current dojo-service instance.
    pub fn as_user(&self, user: &User) -> ApiClient {
        self.dojo.with_token(&user.token)
    }

    /// Creates a dojo as `host`; returns its JSON.
    pub async fn create_dojo(&self, host: &User, extra: Value) -> Value {
        let mut body =
            json!({ "name": "Kata", "language": "rust", "initial_code": "fn main() {}\n" });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.as_user(host)
            .post("/v1/dojos", &body)
            .await
            .assert_status(201)
            .clone()
    }

    /// A live connection to `dojo` as `user` (`query` is appended, e.g. `&observer=true`).
    pub async fn connect(&self, dojo: &str, user: &User, query: &str) -> Live {
        self.connect_at(self.dojo_addr, dojo, user, query).await
    }

    /// Like [`Cell::connect`], to the replica at `addr`.
    pub async fn connect_at(
        &self,
        addr: std::net::SocketAddr,
        dojo: &str,
        user: &User,
        query: &str,
    ) -> Live {
        Live::connect(
            &format!(
                "ws://{addr}/v1/dojos/{dojo}/live?token={}{query}",
                user.token
            ),
            None,
        )
        .await
    }
}
