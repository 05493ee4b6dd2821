//! For the tests and benches of the cell's other services (feature `test-util`): poc-service
//! of a test cell, running in this process on port 0 with its own database: it
//! issues the tokens the other services verify, answers their internal-API calls (PoC data,
//! revocation), and registers users. dojo- and media-service tests start theirs next to it.

use serde_json::{Value, json};
use sqlx::PgPool;
use test_support::ApiClient;
use tokio::sync::oneshot;

pub const PASSWORD: &str = "correct horse battery staple";

/// A signed-in user of the cell.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub token: String,
}

pub struct PocCell {
    /// The cell id (the tokens' audience).
    pub cell: String,
    pub poc: ApiClient,
    /// poc-service's internal listener, for the other services' config.
    pub internal_url: String,
    pub pool: PgPool,
    pub config: crate::Config,
    /// poc-service stops when this is dropped.
    stop: Option<oneshot::Sender<()>>,
}

impl PocCell {
    /// Starts poc-service for a new cell (`prefix` names it in logs: `c-<prefix>-<random>`).
    pub async fn start(prefix: &str, tweak: impl FnOnce(&mut crate::Config)) -> Self {
        let cell = format!(
            "c-{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let url = test_support::test_database(&crate::MIGRATOR)
            .await
            .expect("poc database");
        let mut config = crate::Config::for_tests(&cell, "acme", &url).expect("poc config");
        tweak(&mut config);
        let pool = PgPool::connect(&url).await.expect("poc pool");
        let app = crate::App::build_with_pool(config.clone(), pool.clone())
            .await
            .expect("poc builds");
        let poc = ApiClient::new(format!("http://{}", app.public_addr()));
        let internal_url = format!("http://{}", app.internal_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Self {
            cell,
            poc,
            internal_url,
            pool,
            config,
            stop: Some(stop),
        }
    }

    /// Stops poc-service (the other services then see it unavailable).
    pub fn stop(&mut self) {
        self.stop.take();
    }

    /// The cell's token-verifying key (SPKI PEM) and its `kid`.
    pub fn public_key(&self) -> (String, String) {
        (
            self.config.jwt_kid.clone(),
            service_kit::jwt::public_pem_from_private(&self.config.jwt_private_key)
                .expect("public key"),
        )
    }

    /// What another service of this cell needs to trust its tokens and reach it.
    pub fn peer(&self) -> service_kit::peer::PeerConfig {
        let (kid, public_key) = self.public_key();
        service_kit::peer::PeerConfig::for_tests(
            &kid,
            &public_key,
            self.config.service_token.clone(),
            &self.internal_url,
        )
    }

    /// Shared config of another service of this cell on database `url`.
    pub fn common(&self, url: &str) -> service_kit::config::CommonConfig {
        service_kit::config::CommonConfig::for_tests(&self.cell, "acme", url)
    }

    /// The tenant's first admin.
    pub async fn admin(&self) -> User {
        let email = "admin@acme.test";
        let invite = crate::bootstrap::bootstrap_admin(&self.pool, email, None)
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
        User {
            id: tokens["user"]["id"].as_str().expect("id").to_owned(),
            token: tokens["access_token"].as_str().expect("token").to_owned(),
        }
    }

    /// Creates a PoC as `user` (fields of `extra` override the defaults); returns its JSON.
    pub async fn create_poc(&self, user: &User, name: &str, extra: Value) -> Value {
        let mut body = json!({
            "name": name,
            "repository_url": format!("https://github.com/acme/{}", slug(name)),
            "language": "Rust",
            "tags": ["demo"],
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.poc
            .with_token(&user.token)
            .post("/v1/pocs", &body)
            .await
            .assert_status(201)
            .clone()
    }
}

/// `Ledger Sync!` → `ledger-sync-` (a valid repository name).
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}
