//! PoC CRUD, ownership and visibility.

use serde_json::json;

use crate::helpers::{TestApp, poc};

#[tokio::test]
async fn a_member_creates_reads_updates_and_deletes_their_poc() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let dev = app.member(&admin, "dev@acme.test").await;

    let res = dev
        .client
        .post(
            "/v1/pocs",
            &poc("Search Spike", "Rust", &["Search", "machine learning"]),
        )
        .await;
    let created = res.assert_status(201).clone();
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(res.headers["location"], format!("/v1/pocs/{id}").as_str());
    assert_eq!(created["owner_id"].as_str(), Some(dev.user_id.as_str()));
    assert_eq!(created["language"], "rust");
    assert_eq!(created["tags"], json!(["search", "machine-learning"]));

    let path = format!("/v1/pocs/{id}");
    assert_eq!(
        dev.client.get(&path).await.assert_status(200)["name"],
        "Search Spike"
    );

    let patched = dev
        .client
        .patch(
            &path,
            &json!({ "description": "now with facets", "visibility": "private" }),
        )
        .await;
    let body = patched.assert_status(200);
    assert_eq!(
        (
            body["description"].as_str(),
            body["visibility"].as_str(),
            body["name"].as_str()
        ),
        (
            Some("now with facets"),
            Some("private"),
            Some("Search Spike")
        )
    );
    assert!(body["updated_at"].as_str() > created["updated_at"].as_str());

    let mut replacement = poc("Search Spike 2", "go", &[]);
    replacement
        .as_object_mut()
        .expect("object")
        .remove("description");
    let replaced = dev
        .client
        .put(&path, &replacement)
        .await
        .assert_status(200)
        .clone();
    assert_eq!(
        (
            replaced["name"].as_str(),
            replaced["description"].as_str(),
            replaced["language"].as_str()
        ),
        (Some("Search Spike 2"), Some(""), Some("go"))
    );

    dev.client.delete(&path).await.assert_status(204);
    dev.client.get(&path).await.assert_error(404, "not_found");
    dev.client
        .delete(&path)
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn another_members_private_poc_does_not_exist_for_them() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let alice = app.member(&admin, "alice@acme.test").await;
    let bob = app.member(&admin, "bob@acme.test").await;
    let mut body = poc("Secret", "rust", &[]);
    body["visibility"] = json!("private");
    let secret = alice.create_poc(&body).await;
    let path = format!("/v1/pocs/{}", secret["id"].as_str().expect("id"));

    bob.client.get(&path).await.assert_error(404, "not_found");
    bob.client
        .patch(&path, &json!({ "name": "mine now" }))
        .await
        .assert_error(404, "not_found");
    bob.client
        .delete(&path)
        .await
        .assert_error(404, "not_found");
    // The same answer as for an id that never existed: nothing leaks.
    let missing = bob
        .client
        .get(&format!("/v1/pocs/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(
        missing.body["message"],
        bob.client.get(&path).await.body["message"]
    );
    // Admins see and change everything.
    admin.client.get(&path).await.assert_status(200);
    admin
        .client
        .patch(&path, &json!({ "name": "Moderated" }))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn members_cannot_change_someone_elses_shared_poc() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let alice = app.member(&admin, "alice@acme.test").await;
    let bob = app.member(&admin, "bob@acme.test").await;
    let shared = alice.create_poc(&poc("Shared", "rust", &[])).await;
    let path = format!("/v1/pocs/{}", shared["id"].as_str().expect("id"));
    bob.client.get(&path).await.assert_status(200);
    bob.client
        .patch(&path, &json!({ "name": "hijacked" }))
        .await
        .assert_error(403, "forbidden");
    bob.client
        .delete(&path)
        .await
        .assert_error(403, "forbidden");
    assert_eq!(alice.client.get(&path).await.body["name"], "Shared");
}

#[tokio::test]
async fn invalid_pocs_are_422_with_every_field() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let mut body = poc("x", "rust", &[]);
    body["name"] = json!("n".repeat(121));
    body["repository_url"] = json!("https://gitlab.com/acme/x");
    body["tags"] = json!((0..21).map(|i| format!("t{i}")).collect::<Vec<_>>());
    body["description"] = json!("d".repeat(5001));
    let res = admin.client.post("/v1/pocs", &body).await;
    res.assert_error(422, "validation_failed");
    let fields = res.field_errors();
    assert_eq!(
        fields,
        [
            ["name", "too_long"],
            ["description", "too_long"],
            ["repository_url", "invalid_repository_url"],
            ["tags", "too_many"]
        ]
    );

    let mut body = poc("x", "rust", &["ok", "not/ok"]);
    body["repository_url"] = json!("https://github.com/acme");
    let res = admin.client.post("/v1/pocs", &body).await;
    res.assert_error(422, "validation_failed");
    assert_eq!(res.body["details"]["fields"][1]["field"], "tags[1]");

    let mut body = poc("x", "rust", &[]);
    body["visibility"] = json!("public");
    admin
        .client
        .post("/v1/pocs", &body)
        .await
        .assert_error(400, "invalid_json");
    body["visibility"] = json!("tenant");
    body["owner_id"] = json!(admin.user_id);
    admin
        .client
        .post("/v1/pocs", &body)
        .await
        .assert_error(400, "invalid_json");
}

#[tokio::test]
async fn a_cell_never_serves_another_cells_pocs() {
    let acme = TestApp::spawn().await;
    let globex = TestApp::spawn().await;
    let acme_admin = acme.admin().await;
    let globex_admin = globex.admin().await;
    let p = acme_admin.create_poc(&poc("Acme only", "rust", &[])).await;
    let path = format!("/v1/pocs/{}", p["id"].as_str().expect("id"));
    globex_admin
        .client
        .get(&path)
        .await
        .assert_error(404, "not_found");
    globex
        .api
        .with_token(&acme_admin.access)
        .get(&path)
        .await
        .assert_error(401, "unauthenticated");
}
