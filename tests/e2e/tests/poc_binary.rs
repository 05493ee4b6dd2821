//! The real `poc-service` binary: secrets, bootstrap, serving, sign-up and graceful shutdown,
//! exactly as the local driver will run it.

use e2e_tests::PocProcess;

#[tokio::test]
async fn poc_binary_bootstraps_an_admin_serves_and_stops_gracefully() {
    let poc = PocProcess::start(&[]).await;
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(poc.dir.path().join("secrets/jwt-private.pem"))
            .expect("key")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "secrets are 0600");

    let tokens = poc.admin("boss@acme.test").await;
    assert_eq!(tokens["user"]["role"], "admin");
    let token = tokens["access_token"].as_str().expect("token").to_owned();
    poc.api
        .with_token(&token)
        .get("/v1/users/me")
        .await
        .assert_status(200);

    // Query strings can carry secrets (a `?token=` link) or what users search: logs keep the
    // path only.
    let marker = "qmarker7f3a";
    poc.api
        .with_token(&token)
        .get(&format!("/v1/pocs?q={marker}"))
        .await
        .assert_status(200);

    // Once an admin exists, bootstrap refuses with its documented exit code.
    assert_eq!(poc.bootstrap("other@acme.test").status.code(), Some(3));

    let (status, logs) = poc.stop();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    assert!(
        logs.contains("\"request_id\""),
        "JSON logs carry request ids: {logs}"
    );
    assert!(
        !logs.contains(token.as_str()),
        "secrets never reach the logs"
    );
    assert!(
        logs.contains("/v1/pocs"),
        "the request is logged by its path: {logs}"
    );
    assert!(!logs.contains(marker), "query strings never reach the logs");
}
