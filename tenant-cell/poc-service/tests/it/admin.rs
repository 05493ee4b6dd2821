//! User administration: listing, roles, disabling, the last-admin rule, settings.

use serde_json::json;

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test]
async fn admins_list_users_and_members_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let member = app.member(&admin, "dev@acme.test").await;

    let page = admin.client.get("/v1/users?per_page=1&page=2").await;
    let body = page.assert_status(200);
    assert_eq!(
        (
            body["total"].as_u64(),
            body["page"].as_u64(),
            body["per_page"].as_u64()
        ),
        (Some(2), Some(2), Some(1))
    );
    assert_eq!(body["items"][0]["email"], "dev@acme.test");
    assert!(
        !page.text.contains("password"),
        "listings never contain password hashes"
    );

    member
        .client
        .get("/v1/users")
        .await
        .assert_error(403, "forbidden");
    member
        .client
        .get(&format!("/v1/users/{}", admin.user_id))
        .await
        .assert_error(403, "forbidden");
    member
        .client
        .patch(
            &format!("/v1/users/{}", admin.user_id),
            &json!({ "disabled": true }),
        )
        .await
        .assert_error(403, "forbidden");
    member
        .client
        .post("/v1/invites", &json!({ "role": "admin" }))
        .await
        .assert_error(403, "forbidden");
    member
        .client
        .patch("/v1/settings", &json!({ "registration": "open" }))
        .await
        .assert_error(403, "forbidden");
    assert_eq!(
        member.client.get("/v1/settings").await.assert_status(200)["registration"],
        "invite_only"
    );
}

#[tokio::test]
async fn paging_parameters_out_of_range_are_422() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let res = admin.client.get("/v1/users?page=0&per_page=1000").await;
    res.assert_error(422, "validation_failed");
    let fields: Vec<String> = res
        .field_errors()
        .into_iter()
        .map(|[field, _]| field)
        .collect();
    assert_eq!(fields, ["page", "per_page"]);
    admin
        .client
        .get("/v1/users?page=x")
        .await
        .assert_error(400, "invalid_parameter");
    admin
        .client
        .get("/v1/users?sort=name")
        .await
        .assert_error(400, "invalid_parameter");
}

#[tokio::test]
async fn a_disabled_user_loses_access_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let member = app.member(&admin, "dev@acme.test").await;
    member.client.get("/v1/users/me").await.assert_status(200);

    let res = admin
        .client
        .patch(
            &format!("/v1/users/{}", member.user_id),
            &json!({ "disabled": true }),
        )
        .await;
    assert_eq!(res.assert_status(200)["disabled"], true);

    member
        .client
        .get("/v1/users/me")
        .await
        .assert_error(401, "unauthenticated");
    app.api
        .post(
            "/v1/auth/refresh",
            &json!({ "refresh_token": member.refresh }),
        )
        .await
        .assert_error(401, "invalid_refresh_token");
    app.login("dev@acme.test", PASSWORD)
        .await
        .assert_error(403, "account_disabled");

    // Re-enabled: they sign in again (old tokens stay dead).
    admin
        .client
        .patch(
            &format!("/v1/users/{}", member.user_id),
            &json!({ "disabled": false }),
        )
        .await
        .assert_status(200);
    member
        .client
        .get("/v1/users/me")
        .await
        .assert_error(401, "unauthenticated");
    app.login("dev@acme.test", PASSWORD)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn a_role_change_revokes_tokens_carrying_the_old_role() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let member = app.member(&admin, "dev@acme.test").await;
    let res = admin
        .client
        .patch(
            &format!("/v1/users/{}", member.user_id),
            &json!({ "role": "admin" }),
        )
        .await;
    assert_eq!(res.assert_status(200)["role"], "admin");
    member
        .client
        .get("/v1/users/me")
        .await
        .assert_error(401, "unauthenticated");
    let fresh = app.session(
        app.login("dev@acme.test", PASSWORD)
            .await
            .assert_status(200),
    );
    fresh.client.get("/v1/users").await.assert_status(200);
}

#[tokio::test]
async fn the_last_active_admin_cannot_be_demoted_or_disabled() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let path = format!("/v1/users/{}", admin.user_id);
    admin
        .client
        .patch(&path, &json!({ "role": "member" }))
        .await
        .assert_error(409, "last_admin");
    admin
        .client
        .patch(&path, &json!({ "disabled": true }))
        .await
        .assert_error(409, "last_admin");
    admin.client.get("/v1/users/me").await.assert_status(200);
}

#[tokio::test]
async fn unknown_users_are_404() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = uuid::Uuid::new_v4();
    admin
        .client
        .get(&format!("/v1/users/{id}"))
        .await
        .assert_error(404, "not_found");
    admin
        .client
        .patch(&format!("/v1/users/{id}"), &json!({ "role": "member" }))
        .await
        .assert_error(404, "not_found");
}
