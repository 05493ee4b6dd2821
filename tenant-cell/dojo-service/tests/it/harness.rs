//! A cell with poc-service and dojo-service, and a y-websocket client.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use test_support::ApiClient;
pub use test_support::live::Live;
use tokio::sync::oneshot;

pub const PASSWORD: &str = "correct horse battery staple";

/// poc-service + dojo-service of one cell.
pub struct Cell {
    pub poc: ApiClient,
    pub dojo: ApiClient,
    pub dojo_addr: std::net::SocketAddr,
    pub dojo_url: String,
    pub poc_pool: PgPool,
    dojo_config: dojo_service::Config,
    _stops: Vec<oneshot::Sender<()>>,
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
        let cell = format!("c-dojo-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let poc_url = test_support::test_database(&poc_service::MIGRATOR)
            .await
            .expect("poc database");
        let mut poc_config =
            poc_service::Config::for_tests(&cell, "acme", &poc_url).expect("poc config");
        tweak_poc(&mut poc_config);
        let poc_pool = PgPool::connect(&poc_url).await.expect("poc pool");
        let poc_app = poc_service::App::build_with_pool(poc_config.clone(), poc_pool.clone())
            .await
            .expect("poc builds");
        let poc = ApiClient::new(format!("http://{}", poc_app.public_addr()));
        let poc_internal = format!("http://{}", poc_app.internal_addr());
        let (stop_poc, poc_stopped) = oneshot::channel::<()>();
        tokio::spawn(poc_app.run_until_stopped(async move {
            let _ = poc_stopped.await;
        }));

        let dojo_url = test_support::test_database(&dojo_service::MIGRATOR)
            .await
            .expect("dojo database");
        let public_key = service_kit::jwt::public_pem_from_private(&poc_config.jwt_private_key)
            .expect("public key");
        let mut dojo_config = dojo_service::Config::for_tests(
            service_kit::config::CommonConfig::for_tests(&cell, "acme", &dojo_url),
            &poc_config.jwt_kid,
            &public_key,
            poc_config.service_token.clone(),
            &poc_internal,
        );
        tweak(&mut dojo_config);
        let mut cell = Self {
            poc,
            dojo: ApiClient::new("http://unused"),
            dojo_addr: ([127, 0, 0, 1], 0).into(),
            dojo_url,
            poc_pool,
            dojo_config,
            _stops: vec![stop_poc],
        };
        cell.start_dojo().await;
        cell
    }

    /// (Re)starts dojo-service on the same database; a previous instance is stopped first.
    pub async fn start_dojo(&mut self) {
        if self._stops.len() > 1 {
            self._stops.truncate(1);
            // Give the old instance a moment to close its sockets.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Each instance has its own pool (a stopped instance closes its pool).
        let pool = PgPool::connect(&self.dojo_url).await.expect("dojo pool");
        let app = dojo_service::App::build_with_pool(self.dojo_config.clone(), pool)
            .await
            .expect("dojo builds");
        self.dojo_addr = app.public_addr();
        self.dojo = ApiClient::new(format!("http://{}", self.dojo_addr));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        self._stops.push(stop);
    }

    /// The tenant's first admin.
    pub async fn admin(&self) -> User {
        let email = "admin@acme.test";
        let invite = poc_service::bootstrap::bootstrap_admin(&self.poc_pool, email, None)
            .await
            .expect("bootstrap")
            .invite_token;
        self.register(email, &invite).await
    }

    /// A member invited by `admin`.
    pub async fn member(&self, admin: &User, email: &str) -> User {
        let invite = self
            .poc
            .with_token(&admin.token)
            .post("/v1/invites", &json!({ "email": email, "role": "member" }))
            .await
            .assert_status(201)["token"]
            .as_str()
            .expect("invite token")
            .to_owned();
        self.register(email, &invite).await
    }

    /// Registers `email` with an invite and signs in as them.
    async fn register(&self, email: &str, invite: &str) -> User {
        let tokens = self
            .poc
            .post(
                "/v1/auth/register",
                &json!({ "email": email, "password": PASSWORD, "invite_token": invite }),
            )
            .await
            .assert_status(201)
            .clone();
        let token = tokens["access_token"].as_str().expect("token").to_owned();
        User {
            id: tokens["user"]["id"].as_str().expect("id").to_owned(),
            dojo: self.dojo.with_token(&token),
            token,
        }
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
        Live::connect(
            &format!(
                "ws://{}/v1/dojos/{dojo}/live?token={}{query}",
                self.dojo_addr, user.token
            ),
            None,
        )
        .await
    }
}
