//! The real `poc-service` binary: secrets, bootstrap, serving, sign-up and graceful shutdown,
//! exactly as the local driver will run it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::ApiClient;

fn poc_bin() -> std::path::PathBuf {
    let bin = test_support::bin_dir().join("poc-service");
    assert!(
        bin.exists(),
        "{} missing: build the binaries first (./x test does)",
        bin.display()
    );
    bin
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

#[tokio::test]
async fn poc_binary_bootstraps_an_admin_serves_and_stops_gracefully() {
    let dir = tempfile::tempdir().expect("tmp dir");
    let secrets = dir.path().join("secrets");
    let url = test_support::empty_database().await.expect("database");
    std::fs::create_dir_all(&secrets).expect("mkdir");

    let status = Command::new(poc_bin())
        .arg("init-secrets")
        .arg("--dir")
        .arg(&secrets)
        .status()
        .expect("run init-secrets");
    assert!(status.success());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(secrets.join("jwt-private.pem"))
            .expect("key")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "secrets are 0600");

    let bootstrap = |email: &str| {
        Command::new(poc_bin())
            .args(["bootstrap-admin", "--email", email])
            .env("MRBILL_DATABASE_URL", &url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run bootstrap")
    };
    let out = bootstrap("boss@acme.test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let invite: Value = serde_json::from_slice(&out.stdout).expect("bootstrap prints JSON");

    let ready = dir.path().join("ready.json");
    let mut child = Command::new(poc_bin())
        .env("MRBILL_CELL_ID", "c-e2e-acme")
        .env("MRBILL_TENANT", "acme")
        .env("MRBILL_DATABASE_URL", &url)
        .env(
            "MRBILL_JWT_PRIVATE_KEY_FILE",
            secrets.join("jwt-private.pem"),
        )
        .env(
            "MRBILL_JWT_KID",
            std::fs::read_to_string(secrets.join("jwt.kid")).expect("kid"),
        )
        .env("MRBILL_SERVICE_TOKEN_FILE", secrets.join("service-token"))
        .env("MRBILL_READY_FILE", &ready)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start poc-service");
    let addrs = wait_ready(&ready, &mut child);
    let api = ApiClient::new(format!(
        "http://{}",
        addrs["public"].as_str().expect("public addr")
    ));

    let res = api
        .post("/v1/auth/register", &json!({ "email": "boss@acme.test", "password": "correct horse battery staple", "invite_token": invite["invite_token"] }))
        .await;
    assert_eq!(res.assert_status(201)["user"]["role"], "admin");
    let token = res.body["access_token"].as_str().expect("token").to_owned();
    api.with_token(&token)
        .get("/v1/users/me")
        .await
        .assert_status(200);

    // Once an admin exists, bootstrap refuses with its documented exit code.
    assert_eq!(bootstrap("other@acme.test").status.code(), Some(3));

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("status") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no graceful exit within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut logs)
        .expect("logs");
    assert!(
        logs.contains("\"request_id\""),
        "JSON logs carry request ids: {logs}"
    );
    assert!(
        !logs.contains(token.as_str())
            && !logs.contains(invite["invite_token"].as_str().unwrap_or("-")),
        "secrets never reach the logs"
    );
}
