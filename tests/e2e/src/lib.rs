//! Helpers for end-to-end tests: start the real `poc-service` binary the way the local driver
//! will (secrets files, bootstrap, ready file) and stop it.

pub mod disk;
pub mod ledger;
pub mod platform;
pub mod seed;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::ApiClient;

pub const PASSWORD: &str = "correct horse battery staple";

/// The cell services' committed public OpenAPI documents: `(service, document)` for poc, dojo
/// and media.
pub fn openapi_documents() -> Vec<(&'static str, Value)> {
    cell_model::contract::Service::ALL
        .map(cell_model::contract::Service::name)
        .into_iter()
        .map(|service| {
            let path = format!(
                "{}/../../tenant-cell/{service}-service/openapi.json",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = std::fs::read_to_string(&path).expect("openapi.json");
            (service, serde_json::from_str(&text).expect("JSON"))
        })
        .collect()
}

/// Path of a workspace binary.
pub fn bin(name: &str) -> PathBuf {
    let bin = test_support::bin_dir().join(name);
    assert!(
        bin.exists(),
        "{} missing: build the binaries first (./x test does)",
        bin.display()
    );
    bin
}

/// A running `poc-service` process with its own database and secrets.
pub struct PocProcess {
    pub dir: tempfile::TempDir,
    pub database_url: String,
    pub child: Child,
    pub api: ApiClient,
    pub internal: ApiClient,
}

impl PocProcess {
    /// Creates secrets, a fresh database, and starts the binary; waits for its ready file.
    pub async fn start(extra_env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tmp dir");
        let secrets = dir.path().join("secrets");
        std::fs::create_dir_all(&secrets).expect("mkdir");
        let status = Command::new(bin("poc-service"))
            .arg("init-secrets")
            .arg("--dir")
            .arg(&secrets)
            .status()
            .expect("run init-secrets");
        assert!(status.success());
        let database_url = test_support::empty_database().await.expect("database");
        let ready = dir.path().join("ready.json");
        let mut cmd = Command::new(bin("poc-service"));
        cmd.env("MRBILL_CELL_ID", "c-e2e-acme")
            .env("MRBILL_TENANT", "acme")
            .env("MRBILL_DATABASE_URL", &database_url)
            .env(
                "MRBILL_JWT_PRIVATE_KEY_FILE",
                secrets.join("jwt-private.pem"),
            )
            .env(
                "MRBILL_JWT_KID",
                std::fs::read_to_string(secrets.join("jwt.kid")).expect("kid"),
            )
            .env("MRBILL_SERVICE_TOKEN_FILE", secrets.join("service-token"))
            .env("MRBILL_SEARCH_DIR", dir.path().join("index"))
            .env("MRBILL_READY_FILE", &ready)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A file, not a pipe: nobody drains a pipe while the test runs, and a full pipe
            // would block the service on its next log line.
            .stderr(std::fs::File::create(dir.path().join("poc-service.log")).expect("log file"));
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start poc-service");
        let addrs = wait_ready(&ready, &mut child);
        let api = ApiClient::new(format!(
            "http://{}",
            addrs["public"].as_str().expect("public addr")
        ));
        let internal = ApiClient::new(format!(
            "http://{}",
            addrs["internal"].as_str().expect("internal addr")
        ));
        Self {
            dir,
            database_url,
            child,
            api,
            internal,
        }
    }

    /// Runs `poc-service bootstrap-admin`; returns its output.
    pub fn bootstrap(&self, email: &str) -> std::process::Output {
        Command::new(bin("poc-service"))
            .args(["bootstrap-admin", "--email", email])
            .env("MRBILL_DATABASE_URL", &self.database_url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run bootstrap")
    }

    /// Bootstraps and registers the admin; returns the token response.
    pub async fn admin(&self, email: &str) -> Value {
        let out = self.bootstrap(email);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let invite: Value = serde_json::from_slice(&out.stdout).expect("bootstrap prints JSON");
        let res = self.api.post("/v1/auth/register", &json!({ "email": email, "password": PASSWORD, "invite_token": invite["invite_token"] })).await;
        res.assert_status(201).clone()
    }

    /// SIGTERM, then waits (≤ 10 s) for the exit; returns the status and the captured logs.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(kill.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("status") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "no graceful exit within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let logs = std::fs::read_to_string(self.dir.path().join("poc-service.log")).expect("logs");
        (status, logs)
    }
}

impl Drop for PocProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(path: &Path, child: &mut Child) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return serde_json::from_str(&text).expect("ready file is JSON");
        }
        assert!(
            child.try_wait().expect("child status").is_none(),
            "poc-service exited during start-up"
        );
        assert!(
            Instant::now() < deadline,
            "poc-service not ready within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
