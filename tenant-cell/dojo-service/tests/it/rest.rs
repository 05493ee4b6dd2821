//! The REST API: create, list, read, join by code, end, remove; visibility and bad input.

use serde_json::json;

use crate::harness::Cell;

#[tokio::test]
async fn dojos_are_created_listed_joined_and_ended_with_their_visibility_rules() {
    let cell = Cell::start().await;
    let admin = cell.admin().await;
    let ada = cell.member(&admin, "ada@acme.test").await;
    let bob = cell.member(&admin, "bob@acme.test").await;

    let public = cell.create_dojo(&ada, json!({ "name": "Open kata" })).await;
    assert_eq!(public["status"], "active");
    assert_eq!(public["my_role"], "host");
    let private = cell
        .create_dojo(
            &ada,
            json!({ "name": "Secret kata", "private": true, "language": "Go" }),
        )
        .await;
    assert_eq!(private["language"], "go");
    let code = private["join_code"]
        .as_str()
        .expect("host sees the code")
        .to_owned();

    // Bob sees the public dojo (without its code) but not the private one.
    let listed = bob.dojo.get("/v1/dojos").await.assert_status(200).clone();
    let names: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names, ["Open kata"]);
    assert!(listed["items"][0].get("join_code").is_none());
    let private_id = private["id"].as_str().expect("id");
    bob.dojo
        .get(&format!("/v1/dojos/{private_id}"))
        .await
        .assert_error(404, "not_found");
    // The admin sees both.
    let all = admin.dojo.get("/v1/dojos").await.assert_status(200).clone();
    assert_eq!(all["items"].as_array().map(Vec::len), Some(2));

    // Joining with the code opens the private dojo to Bob.
    let joined = bob
        .dojo
        .post(
            "/v1/dojos/join",
            &json!({ "join_code": code.to_lowercase() }),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(joined["my_role"], "editor");
    let detail = bob
        .dojo
        .get(&format!("/v1/dojos/{private_id}"))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(detail["participants"].as_array().map(Vec::len), Some(2));

    // Only the host (or an admin) ends it; then joining is refused.
    bob.dojo
        .post(&format!("/v1/dojos/{private_id}/end"), &json!({}))
        .await
        .assert_error(403, "forbidden");
    let ended = ada
        .dojo
        .post(&format!("/v1/dojos/{private_id}/end"), &json!({}))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(ended["status"], "ended");
    bob.dojo
        .post("/v1/dojos/join", &json!({ "join_code": code }))
        .await
        .assert_error(409, "conflict");
    // Ended dojos leave the listing.
    let open = admin.dojo.get("/v1/dojos").await.assert_status(200).clone();
    assert_eq!(open["items"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn listing_filters_and_pages() {
    let cell = Cell::start().await;
    let admin = cell.admin().await;
    let mut active = std::collections::BTreeSet::new();
    for i in 0..5 {
        let dojo = cell
            .create_dojo(&admin, json!({ "name": format!("Rust {i}") }))
            .await;
        active.insert(dojo["id"].as_str().expect("id").to_owned());
    }
    cell.create_dojo(
        &admin,
        json!({ "name": "Later", "scheduled_start": "2999-01-01T00:00:00Z" }),
    )
    .await;
    let py = cell
        .create_dojo(&admin, json!({ "name": "Py", "language": "python" }))
        .await;
    active.insert(py["id"].as_str().expect("id").to_owned());
    let upcoming = admin
        .dojo
        .get("/v1/dojos?status=upcoming")
        .await
        .assert_status(200)
        .clone();
    assert_eq!(upcoming["items"][0]["name"], "Later");
    assert_eq!(upcoming["items"][0]["status"], "upcoming");
    let python = admin
        .dojo
        .get("/v1/dojos?language=PYTHON")
        .await
        .assert_status(200)
        .clone();
    assert_eq!(python["items"].as_array().map(Vec::len), Some(1));
    // A NUL in the filter is the client's mistake, not a 500 (Postgres cannot compare it).
    admin
        .dojo
        .get("/v1/dojos?language=ru%00st")
        .await
        .assert_error(400, "invalid_parameter");
    let mut seen = Vec::new();
    let mut path = "/v1/dojos?status=active&limit=2".to_owned();
    loop {
        let page = admin.dojo.get(&path).await.assert_status(200).clone();
        for item in page["items"].as_array().expect("items") {
            seen.push(item["id"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/dojos?status=active&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    // Every active dojo exactly once across pages: no repeat at a page boundary, none missed.
    assert_eq!(seen.len(), active.len(), "{seen:?}");
    assert_eq!(
        seen.into_iter().collect::<std::collections::BTreeSet<_>>(),
        active
    );
}

#[tokio::test]
async fn bad_input_gets_4xx_with_codes() {
    let cell = Cell::start().await;
    let admin = cell.admin().await;
    let res = admin
        .dojo
        .post(
            "/v1/dojos",
            &json!({ "name": "", "language": "rust", "max_participants": 1 }),
        )
        .await;
    res.assert_error(422, "validation_failed");
    let fields: Vec<String> = res.field_errors().into_iter().map(|[f, _]| f).collect();
    assert!(fields.contains(&"name".to_owned()) && fields.contains(&"max_participants".to_owned()));
    admin
        .dojo
        .post(
            "/v1/dojos",
            &json!({ "name": "x", "language": "rust", "surprise": 1 }),
        )
        .await
        .assert_error(400, "invalid_json");
    admin
        .dojo
        .post(
            "/v1/dojos",
            &json!({ "name": "x", "language": "rust", "description": "a\u{0}b" }),
        )
        .await
        .assert_error(422, "validation_failed");
    admin
        .dojo
        .get("/v1/dojos?limit=0")
        .await
        .assert_error(400, "invalid_parameter");
    admin
        .dojo
        .get("/v1/dojos?cursor=nope")
        .await
        .assert_error(400, "invalid_parameter");
    admin
        .dojo
        .get("/v1/dojos/not-a-uuid")
        .await
        .assert_error(400, "invalid_parameter");
    admin
        .dojo
        .get(&format!("/v1/dojos/{}", uuid::Uuid::new_v4()))
        .await
        .assert_error(404, "not_found");
    cell.dojo
        .get("/v1/dojos")
        .await
        .assert_error(401, "unauthenticated");
    // A plain GET on the live endpoint is not a WebSocket handshake.
    let dojo = cell.create_dojo(&admin, json!({})).await;
    admin
        .dojo
        .get(&format!(
            "/v1/dojos/{}/live",
            dojo["id"].as_str().expect("id")
        ))
        .await
        .assert_error(400, "invalid_parameter");
}

#[test]
fn openapi_document_is_committed_and_current() {
    let generated = dojo_service::openapi::public_json();
    test_support::assert_committed("openapi.json", &generated, "UPDATE_OPENAPI");
}

#[tokio::test]
async fn another_cells_token_opens_nothing_here() {
    let acme = Cell::start().await;
    let globex = Cell::start().await;
    let acme_admin = acme.admin().await;
    let globex_admin = globex.admin().await;
    let dojo = acme.create_dojo(&acme_admin, json!({})).await;
    let id = dojo["id"].as_str().expect("id");
    // Globex's (valid, signed by its own cell) token against Acme's dojo-service.
    let intruder = acme.dojo.with_token(&globex_admin.token);
    intruder
        .get("/v1/dojos")
        .await
        .assert_error(401, "unauthenticated");
    intruder
        .get(&format!("/v1/dojos/{id}/chat"))
        .await
        .assert_error(401, "unauthenticated");
    intruder
        .post(&format!("/v1/dojos/{id}/end"), &json!({}))
        .await
        .assert_error(401, "unauthenticated");
    let mut live = acme.connect(id, &globex_admin, "").await;
    assert_eq!(
        live.closed_with().await,
        wire_types::dojos::close::UNAUTHENTICATED
    );
    // And Acme's dojo is untouched.
    let still = acme_admin
        .dojo
        .get(&format!("/v1/dojos/{id}"))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(still["status"], "active");
}
