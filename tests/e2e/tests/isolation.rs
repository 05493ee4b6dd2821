//! The isolation matrix, derived from the cell services' OpenAPI documents and run through the
//! real router against two real tenants (`alpha`, the victim; `beta`, the attacker), each with
//! an admin and two members. Every operation of the documents is called:
//! - with beta's admin token at alpha's endpoint (a token of another cell) → 401;
//! - at beta's endpoint with alpha's ids → 404 (or 403 for a signed link);
//! - with no token → 401 (every operation that declares a bearer token);
//! - on one member's private PoC, private dojo, report and video with the other member's token
//!   → 403/404; admin-only operations with a member token → 403;
//!
//! and no answer carries alpha's data. Refresh tokens, invite and reset tokens, passwords and
//! signed links of alpha are replayed at beta and refused, and the live socket refuses the same
//! callers. A new operation is in the matrix as soon as it is in a document; one with a new
//! kind of path id or request body fails here until the matrix knows how to fill it.

use std::collections::BTreeSet;
use std::time::Duration;

use e2e_tests::PASSWORD;
use e2e_tests::platform::Platform;
use serde_json::{Value, json};
use test_support::ApiClient;
use test_support::live::Live;

/// Operations only admins may call (a member gets 403).
const ADMIN_ONLY: &[(&str, &str)] = &[
    ("GET", "/v1/admin/search"),
    ("POST", "/v1/admin/search/reindex"),
    ("GET", "/v1/invites"),
    ("POST", "/v1/invites"),
    ("DELETE", "/v1/invites/{id}"),
    ("PATCH", "/v1/settings"),
    ("GET", "/v1/users"),
    ("GET", "/v1/users/{id}"),
    ("PATCH", "/v1/users/{id}"),
    ("POST", "/v1/users/{id}/password-reset"),
];

/// One operation of a document.
struct Op {
    method: String,
    path: String,
    bearer: bool,
    documented: BTreeSet<u16>,
    body: Option<String>,
}

fn operations() -> Vec<Op> {
    let mut ops = Vec::new();
    for (_, doc) in e2e_tests::openapi_documents() {
        for (route, methods) in doc["paths"].as_object().expect("paths") {
            for (method, op) in methods.as_object().expect("operations") {
                let body = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                    .as_str()
                    .map(|r| r.rsplit('/').next().expect("name").to_owned());
                ops.push(Op {
                    method: method.to_uppercase(),
                    path: route.clone(),
                    bearer: op["security"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some())),
                    documented: op["responses"]
                        .as_object()
                        .expect("responses")
                        .keys()
                        .filter_map(|k| k.parse().ok())
                        .collect(),
                    body,
                });
            }
        }
    }
    ops
}

/// A tenant with its admin, two members and member 1's private things.
struct Tenant {
    slug: String,
    api: ApiClient,
    admin: String,
    m1: String,
    m1_id: String,
    m1_email: String,
    m1_refresh: String,
    m2: String,
    poc: String,
    dojo: String,
    join_code: String,
    report: String,
    video: String,
    invite: String,
    unused_invite: String,
    reset_token: String,
    link: String,
    /// Strings only this tenant's data contains.
    markers: Vec<String>,
}

impl Tenant {
    async fn create(platform: &Platform, slug: &str) -> Self {
        let tenant = platform.create_tenant(slug);
        let admin = platform.admin_token(&tenant).await;
        let api = platform.api(slug);
        let as_admin = api.with_token(&admin);
        let mut members = Vec::new();
        for n in 1..=2 {
            let email = format!("member{n}@{slug}.example");
            platform.invite_member(slug, &admin, &email).await;
            let login = api
                .post(
                    "/v1/auth/login",
                    &json!({ "email": email, "password": PASSWORD }),
                )
                .await;
            let login = login.assert_status(200).clone();
            members.push((email, login));
        }
        let (m1_email, m1_login) = &members[0];
        let m1 = m1_login["access_token"].as_str().expect("token").to_owned();
        let m2 = members[1].1["access_token"]
            .as_str()
            .expect("token")
            .to_owned();
        let as_m1 = api.with_token(&m1);
        let me = as_m1.get("/v1/users/me").await.assert_status(200).clone();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let secret = format!("{slug}-secret-{nanos:x}");
        let poc = as_m1
            .post(
                "/v1/pocs",
                &json!({ "name": format!("{secret} poc"), "repository_url": "https://github.com/acme/private",
                         "language": "rust", "tags": [format!("{slug}-private")], "visibility": "private" }),
            )
            .await;
        let poc = poc.assert_status(201)["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let dojo = as_m1
            .post(
                "/v1/dojos",
                &json!({ "name": format!("{secret} dojo"), "language": "rust", "private": true,
                         "initial_code": format!("// {secret} code") }),
            )
            .await;
        let dojo = dojo.assert_status(201).clone();
        let report = as_m1.post("/v1/reports", &json!({ "format": "csv" })).await;
        let report = report.assert_status(202)["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let video = as_m1.post("/v1/videos", &json!({ "year": 2026 })).await;
        let video = video.assert_status(202)["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let invite = as_admin
            .post("/v1/invites", &json!({ "role": "member" }))
            .await;
        let invite = invite.assert_status(201).clone();
        let reset = as_admin
            .post(
                &format!(
                    "/v1/users/{}/password-reset",
                    me["id"].as_str().expect("id")
                ),
                &json!({}),
            )
            .await;
        let reset_token = reset.assert_status(201)["token"]
            .as_str()
            .expect("token")
            .to_owned();
        let mut link = String::new();
        for _ in 0..300 {
            let r = as_m1.get(&format!("/v1/reports/{report}")).await;
            if let Some(url) = r.assert_status(200)["download"]["url"].as_str() {
                link = url.to_owned();
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            link.starts_with(&format!("/t/{slug}/")),
            "report link: {link:?}"
        );
        Self {
            slug: slug.to_owned(),
            api,
            admin,
            m1_id: me["id"].as_str().expect("id").to_owned(),
            m1_email: m1_email.clone(),
            m1_refresh: m1_login["refresh_token"]
                .as_str()
                .expect("refresh")
                .to_owned(),
            m1,
            m2,
            poc,
            dojo: dojo["id"].as_str().expect("id").to_owned(),
            join_code: dojo["join_code"].as_str().expect("join code").to_owned(),
            report,
            video,
            invite: invite["invite"]["id"].as_str().expect("id").to_owned(),
            unused_invite: invite["token"].as_str().expect("token").to_owned(),
            reset_token,
            link,
            markers: vec![secret, m1_email.clone()],
        }
    }

    /// `path` with this tenant's ids filled in.
    fn fill(&self, path: &str) -> String {
        let id = match path.split('/').nth(2) {
            _ if !path.contains('{') => return path.to_owned(),
            Some("invites") => &self.invite,
            Some("pocs") => &self.poc,
            Some("users") => &self.m1_id,
            Some("dojos") => &self.dojo,
            Some("reports") => &self.report,
            Some("videos") => &self.video,
            Some("media") => {
                let path = self.link.strip_prefix(&format!("/t/{}", self.slug));
                return path.expect("link on the tenant's endpoint").to_owned();
            }
            _ => panic!("{path}: the matrix does not know which id this path takes; add it"),
        };
        path.replace("{id}", id).replace("{user_id}", &self.m1_id)
    }

    /// A valid body for the request schema `name`.
    fn body(&self, name: &str) -> Value {
        match name {
            "PocInput" => {
                json!({ "name": "x", "repository_url": "https://github.com/a/b", "language": "rust" })
            }
            "PocPatch" => json!({ "name": "renamed" }),
            "CreateInviteRequest" => json!({ "role": "member" }),
            "UpdateSettingsRequest" => json!({ "registration": "open" }),
            "UpdateProfileRequest" => json!({ "display_name": "Renamed" }),
            "ChangePasswordRequest" => {
                json!({ "current_password": PASSWORD, "new_password": "another fine passphrase" })
            }
            "UpdateUserRequest" => json!({ "disabled": true }),
            "CreateDojo" => json!({ "name": "d", "language": "rust" }),
            "JoinDojo" => json!({ "join_code": self.join_code }),
            "CreateReport" => json!({ "format": "csv" }),
            "CreateVideo" => json!({ "year": 2026 }),
            "LoginRequest" => json!({ "email": self.m1_email, "password": PASSWORD }),
            "RefreshRequest" => json!({ "refresh_token": self.m1_refresh }),
            "RegisterRequest" => {
                json!({ "email": format!("new@{}.example", self.slug), "password": PASSWORD,
                                         "invite_token": self.unused_invite })
            }
            "ResetPasswordRequest" => {
                json!({ "token": self.reset_token, "new_password": "another fine passphrase" })
            }
            "ForgotPasswordRequest" => json!({ "email": self.m1_email }),
            "ConfirmEmailRequest" => json!({ "email": self.m1_email, "code": "123456" }),
            _ => panic!("{name}: the matrix has no sample body for this request; add one"),
        }
    }
}

/// Calls `op` at `base` (`/t/<slug>`) with `path` filled in, returning status and body text.
async fn call(
    api: &ApiClient,
    token: Option<&str>,
    op: &Op,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = api.http.request(
        op.method.parse().expect("method"),
        format!("{}{path}", api.base),
    );
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.expect("request");
    (res.status().as_u16(), res.text().await.unwrap_or_default())
}

#[tokio::test]
async fn no_tenant_reaches_another_and_members_only_their_own() {
    let platform = Platform::up_with(&[
        ("MRBILL_TENANT_RATE", "100000"),
        ("MRBILL_CLIENT_RATE", "100000"),
    ]);
    let alpha = Tenant::create(&platform, "alpha").await;
    let beta = Tenant::create(&platform, "beta").await;
    let mut failures = Vec::new();
    let mut calls = std::collections::BTreeMap::<String, usize>::new();
    let mut check =
        |row: &str, op: &Op, (status, body): (u16, String), allowed: &[u16], markers: &[String]| {
            *calls.entry(row.to_owned()).or_default() += 1;
            let name = format!("{row}: {} {}", op.method, op.path);
            if !allowed.contains(&status) {
                failures.push(format!(
                    "{name} → {status} (want one of {allowed:?}): {body:.200}"
                ));
            } else if !op.documented.contains(&status) {
                failures.push(format!(
                    "{name} → {status}, which the document does not list"
                ));
            }
            if let Some(m) = markers.iter().find(|m| body.contains(m.as_str())) {
                failures.push(format!("{name}: the answer carries alpha's data ({m})"));
            }
        };
    let ops = operations();
    for (method, path) in ADMIN_ONLY {
        assert!(
            ops.iter().any(|o| o.method == *method && o.path == *path),
            "{method} {path} is gone"
        );
    }
    for op in ops.iter().filter(|o| !o.path.ends_with("/live")) {
        let at_alpha = alpha.fill(&op.path);
        let body = |t: &Tenant| op.body.as_deref().map(|b| t.body(b));
        if op.bearer {
            let r = call(&alpha.api, Some(&beta.admin), op, &at_alpha, body(&alpha)).await;
            check("beta's token at alpha", op, r, &[401], &alpha.markers);
            let r = call(&alpha.api, None, op, &at_alpha, body(&alpha)).await;
            check("no token at alpha", op, r, &[401], &alpha.markers);
            if ADMIN_ONLY.contains(&(op.method.as_str(), op.path.as_str())) {
                let r = call(&alpha.api, Some(&alpha.m2), op, &at_alpha, body(&alpha)).await;
                check("a member on an admin operation", op, r, &[403], &[]);
            } else if op.path.contains('{') {
                let r = call(&alpha.api, Some(&alpha.m2), op, &at_alpha, body(&alpha)).await;
                check(
                    "another member's private things",
                    op,
                    r,
                    &[403, 404],
                    &alpha.markers[..1],
                );
            }
        }
        if op.path.contains('{') {
            // Alpha's ids (and signed link) at beta's endpoint, with beta's admin token.
            let r = call(&beta.api, Some(&beta.admin), op, &at_alpha, body(&alpha)).await;
            check("alpha's ids at beta", op, r, &[403, 404], &alpha.markers);
        } else if !op.bearer {
            // Alpha's credentials (password, refresh, invite and reset tokens) at beta.
            let r = call(&beta.api, None, op, &op.path, body(&alpha)).await;
            let allowed: &[u16] = match op.path.as_str() {
                "/v1/auth/logout" => &[204],
                "/v1/auth/forgot-password" => &[202],
                _ => &[401, 403, 404],
            };
            check(
                "alpha's credentials at beta",
                op,
                r,
                allowed,
                &alpha.markers,
            );
        }
    }
    println!("calls per row: {calls:#?}");
    for (row, least) in [
        ("beta's token at alpha", 40),
        ("no token at alpha", 40),
        ("a member on an admin operation", ADMIN_ONLY.len()),
        ("another member's private things", 17),
        ("alpha's ids at beta", 20),
        ("alpha's credentials at beta", 7),
    ] {
        let n = calls.get(row).copied().unwrap_or_default();
        assert!(n >= least, "{row}: {n} calls, expected at least {least}");
    }
    live_socket_refuses_other_callers(&platform, &alpha, &beta, &mut failures).await;
    // Nothing above changed alpha: member 1 still sees their private things, with their token.
    let as_m1 = alpha.api.with_token(&alpha.m1);
    as_m1
        .get(&format!("/v1/pocs/{}", alpha.poc))
        .await
        .assert_status(200);
    as_m1
        .get(&format!("/v1/dojos/{}", alpha.dojo))
        .await
        .assert_status(200);
    as_m1
        .get(&format!("/v1/reports/{}", alpha.report))
        .await
        .assert_status(200);
    let link = alpha
        .api
        .http
        .get(format!("{}{}", platform.router_url(), alpha.link))
        .send()
        .await;
    assert_eq!(
        link.expect("link").status().as_u16(),
        200,
        "alpha's own link works at alpha"
    );
    assert!(
        failures.is_empty(),
        "{} isolation failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The live socket (an upgrade, outside the request/response matrix) refuses a token of another
/// cell, no token, a member who is not in the private dojo, and alpha's dojo at beta.
async fn live_socket_refuses_other_callers(
    platform: &Platform,
    alpha: &Tenant,
    beta: &Tenant,
    failures: &mut Vec<String>,
) {
    let ws = platform.router_url().replacen("http", "ws", 1);
    let cases = [
        (
            "beta's token at alpha",
            &alpha.slug,
            Some(beta.admin.as_str()),
        ),
        ("no token at alpha", &alpha.slug, None),
        (
            "another member at alpha",
            &alpha.slug,
            Some(alpha.m2.as_str()),
        ),
        (
            "alpha's dojo at beta",
            &beta.slug,
            Some(beta.admin.as_str()),
        ),
    ];
    for (row, slug, token) in cases {
        let url = format!("{ws}/t/{slug}/v1/dojos/{}/live", alpha.dojo);
        let Some(mut live) = Live::try_connect(&url, token).await else {
            continue; // refused at the handshake
        };
        live.pump(Duration::from_millis(500)).await;
        if live.got.closed.is_none() || live.code().contains(&alpha.markers[0]) {
            failures.push(format!(
                "live socket, {row}: admitted ({:?})",
                live.got.closed
            ));
        }
    }
    let own = format!("{ws}/t/{}/v1/dojos/{}/live", alpha.slug, alpha.dojo);
    let mut live = Live::connect(&own, Some(&alpha.m1)).await;
    live.until("the host sees the code", |l| {
        l.code().contains(&alpha.markers[0])
    })
    .await;
}
