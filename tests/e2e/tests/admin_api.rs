//! The control plane's admin API refuses everyone but the operator: without a token (401),
//! with a wrong token (401), and with the router's read-only token on everything but the
//! route feed (403). Only `mrbill` calls this API, always with the operator token, so nothing
//! else would notice if its authentication layer were lost.

use e2e_tests::platform::Platform;
use serde_json::{Value, json};
use test_support::ApiClient;

/// Every operation of the admin API, with a body where it takes one.
fn operations() -> Vec<(&'static str, &'static str, Option<Value>)> {
    let tenant = json!({ "slug": "intruder", "display_name": "Intruder",
                         "admin_email": "x@intruder.example", "email_domains": ["intruder.example"] });
    vec![
        ("POST", "/v1/tenants", Some(tenant)),
        ("GET", "/v1/tenants", None),
        ("GET", "/v1/tenants/acme", None),
        ("DELETE", "/v1/tenants/acme", None),
        ("POST", "/v1/tenants/acme/suspend", Some(json!({}))),
        ("POST", "/v1/tenants/acme/resume", Some(json!({}))),
        (
            "POST",
            "/v1/tenants/acme/migrate",
            Some(json!({ "to": "local", "dry_run": true })),
        ),
        ("GET", "/v1/tenants/acme/migrations", None),
        ("POST", "/v1/tenants/acme/scale", Some(json!({ "poc": 2 }))),
        ("POST", "/v1/tenants/acme/migration/abort", Some(json!({}))),
        ("GET", "/v1/cells", None),
        ("GET", "/v1/cells/acme", None),
        ("GET", "/v1/tiers", None),
        ("GET", "/v1/placements", None),
        (
            "POST",
            "/v1/placements",
            Some(json!({ "name": "rogue", "region": "x", "capacity": 1 })),
        ),
        ("GET", "/v1/placements/local", None),
        ("DELETE", "/v1/placements/local", None),
        ("POST", "/v1/placements/local/cordon", Some(json!({}))),
        ("POST", "/v1/placements/local/uncordon", Some(json!({}))),
        ("GET", "/v1/routes", None),
    ]
}

async fn call(api: &ApiClient, method: &str, path: &str, body: &Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", api.base);
    let mut req = api.http.request(method.parse().expect("method"), &url);
    if let Some(token) = &api.token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_admin_api_answers_only_the_operator() {
    let platform = Platform::up();
    platform.create_tenant("acme");
    let ready: Value = serde_json::from_slice(
        &std::fs::read(platform.home.join("control-plane/ready.json")).expect("ready file"),
    )
    .expect("ready JSON");
    let base = ready["url"].as_str().expect("control plane url").to_owned();
    let read = |name: &str| {
        std::fs::read_to_string(platform.home.join("control-plane").join(name))
            .expect("token file")
            .trim()
            .to_owned()
    };
    let (operator, router) = (read("operator-token"), read("router-token"));

    let anonymous = ApiClient::new(&base);
    let wrong = ApiClient::new(&base).with_token("not-the-operator-token");
    let routers = ApiClient::new(&base).with_token(&router);
    for (method, path, body) in operations() {
        let (status, answer) = call(&anonymous, method, path, &body).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (401, Some("unauthenticated")),
            "{method} {path} without a token: {answer}"
        );
        let (status, answer) = call(&wrong, method, path, &body).await;
        assert_eq!(status, 401, "{method} {path} with a wrong token: {answer}");
        let (status, answer) = call(&routers, method, path, &body).await;
        if (method, path) == ("GET", "/v1/routes") {
            assert_eq!(status, 200, "the router token reads the feed: {answer}");
        } else {
            assert_eq!(
                (status, answer["code"].as_str()),
                (403, Some("forbidden")),
                "{method} {path} with the router's token: {answer}"
            );
        }
    }
    // Nothing of the refused calls happened; the operator sees its tenant, alone.
    let admin = ApiClient::new(&base).with_token(&operator);
    let tenants = admin.get("/v1/tenants").await;
    let listed = tenants.assert_status(200)["tenants"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let slugs: Vec<&str> = listed.iter().filter_map(|t| t["slug"].as_str()).collect();
    assert_eq!(slugs, ["acme"]);
    // The first admin's invite token: in the answer about the tenant, never in the listing.
    assert!(listed[0].get("admin_invite").is_none(), "{}", listed[0]);
    admin.get("/v1/tenants/acme").await.assert_status(200)["admin_invite"]["invite_token"]
        .as_str()
        .expect("the tenant's own answer carries the invite");
    assert_eq!(platform.tenant("acme")["cell"]["status"]["phase"], "Ready");
    // No placement was added, removed or cordoned by the refused calls.
    let placements = admin.get("/v1/placements").await;
    let placements = &placements.assert_status(200)["placements"];
    assert_eq!(placements.as_array().map(Vec::len), Some(1), "{placements}");
    assert_eq!(placements[0]["cordoned"], false);
    // Nor did any migration start.
    let migrations = admin.get("/v1/tenants/acme/migrations").await;
    assert_eq!(migrations.assert_status(200)["migrations"], json!([]));
}
