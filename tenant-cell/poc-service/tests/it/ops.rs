//! Health, readiness, metrics and request ids.

use crate::helpers::{self, TestApp};

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.api.get("/healthz").await.assert_status(200)["status"],
        "ok"
    );
    assert_eq!(
        app.api.get("/readyz").await.assert_status(200)["status"],
        "ready"
    );
}

#[tokio::test]
async fn readiness_fails_with_retry_after_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    app.pool.close().await;
    let res = app.api.get("/readyz").await;
    res.assert_error(503, "unavailable");
    assert!(res.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let app = TestApp::spawn().await;
    app.api.get("/v1/users/me").await.assert_status(401);
    let metrics = app.api.get("/metrics").await;
    assert!(metrics.status.is_success());
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l.starts_with("mrbill_http_requests_total")
                && l.contains("route=\"/v1/users/me\"")
                && l.contains("status=\"401\"")),
        "{}",
        metrics.text
    );
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = TestApp::spawn().await;
    let res = app
        .api
        .with_header("x-request-id", "req-123")
        .get("/healthz")
        .await;
    assert_eq!(res.headers["x-request-id"], "req-123");
    let res = app.api.get("/healthz").await;
    assert!(!res.headers["x-request-id"].is_empty());
}

/// The tenant's usage gauges count accounts that may sign in and PoCs not deleted.
#[tokio::test]
async fn usage_gauges_count_the_tenants_users_and_live_pocs() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    admin.create_poc(&helpers::poc("Kept", "rust", &[])).await;
    let gone = admin.create_poc(&helpers::poc("Gone", "go", &[])).await;
    let id = gone["id"].as_str().expect("id");
    admin
        .client
        .delete(&format!("/v1/pocs/{id}"))
        .await
        .assert_status(204);
    poc_service::usage::refresh(&app.pool).await.expect("usage");
    let metrics = app.api.get("/metrics").await.text;
    for line in ["mrbill_tenant_users 1", "mrbill_tenant_pocs 1"] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}
