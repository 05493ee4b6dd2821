//! Against a real cluster (ignored by default: none runs on the test machines). Prerequisites:
//! both charts installed (`charts/README.md`) with images the cluster can pull, and
//!
//! - `MRBILL_E2E_CONTROL_PLANE_URL`: the control plane's URL (e.g. after
//!   `kubectl -n mrbill port-forward svc/mrbill-control-plane 8080`),
//! - `MRBILL_E2E_OPERATOR_TOKEN_FILE`: a file with the operator token (see the chart's NOTES),
//! - `MRBILL_E2E_PUBLIC_URL`: the router's public URL.
//!
//! Run: `cargo test -p e2e-tests --test kubernetes_cluster -- --ignored`. A missing setting
//! fails the test; it never passes silently.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::ApiClient;

fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set (see this file's header)"))
}

fn mrbill(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(e2e_tests::bin("mrbill"))
        .args(args)
        .args(["-o", "json"])
        .env(
            "MRBILL_CONTROL_PLANE_URL",
            setting("MRBILL_E2E_CONTROL_PLANE_URL"),
        )
        .env(
            "MRBILL_OPERATOR_TOKEN_FILE",
            setting("MRBILL_E2E_OPERATOR_TOKEN_FILE"),
        )
        .output()
        .expect("run mrbill");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster"]
async fn a_tenant_created_through_the_control_plane_is_served_through_the_router() {
    let slug = format!("e2e-{}", &uuid_suffix());
    let (code, tenant, err) = mrbill(&[
        "tenant",
        "create",
        &slug,
        "--name",
        "E2E Inc.",
        "--admin-email",
        "admin@e2e.example",
        "--email-domain",
        "e2e.example",
    ]);
    assert_eq!(code, 0, "{err}");
    // `tenant create` waits for the cell; on a cluster that may take longer: poll up to 10 min.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut phase = tenant["cell"]["status"]["phase"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    while phase != "Ready" {
        assert!(
            Instant::now() < deadline,
            "{slug} not Ready after 10 minutes (phase {phase})"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (_, t, _) = mrbill(&["tenant", "show", &slug]);
        phase = t["cell"]["status"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    }
    // Through the router to the cell's poc-service: no token → its 401.
    let api = ApiClient::new(format!(
        "{}/t/{slug}",
        setting("MRBILL_E2E_PUBLIC_URL").trim_end_matches('/')
    ));
    api.get("/v1/pocs")
        .await
        .assert_error(401, "unauthenticated");

    let (code, _, err) = mrbill(&["tenant", "delete", &slug, "--yes"]);
    assert_eq!(code, 0, "{err}");
}

fn uuid_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{nanos:08x}")
}
