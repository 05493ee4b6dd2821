//! Typed helpers: spawn the app, bootstrap an admin, invite members, sign in.

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
    _stop: oneshot::Sender<()>,
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
        let url = test_support::test_database(&poc_service::MIGRATOR)
            .await
            .expect("test database");
        let cell = format!("c-test-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let mut config = Config::for_tests(&cell, "acme", &url).expect("test config");
        tweak(&mut config);
        let app = App::build(config.clone()).await.expect("app builds");
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
            _stop: stop,
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
