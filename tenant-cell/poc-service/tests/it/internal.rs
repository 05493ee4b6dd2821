//! The internal listener: service token only, never user tokens; not on the public listener.

use crate::helpers::TestApp;

#[tokio::test]
async fn token_version_needs_the_service_token() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let path = format!("/internal/v1/users/{}/token-version", admin.user_id);

    let res = app.internal_with_service_token().get(&path).await;
    let body = res.assert_status(200);
    assert_eq!(
        (body["token_version"].as_i64(), body["disabled"].as_bool()),
        (Some(0), Some(false))
    );

    app.internal
        .get(&path)
        .await
        .assert_error(401, "unauthenticated");
    app.internal
        .with_token(&admin.access)
        .get(&path)
        .await
        .assert_error(401, "unauthenticated");
    app.internal
        .with_token("guess")
        .get(&path)
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn token_version_reflects_disabling() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let member = app.member(&admin, "dev@acme.test").await;
    admin
        .client
        .patch(
            &format!("/v1/users/{}", member.user_id),
            &serde_json::json!({ "disabled": true }),
        )
        .await
        .assert_status(200);
    let res = app
        .internal_with_service_token()
        .get(&format!(
            "/internal/v1/users/{}/token-version",
            member.user_id
        ))
        .await;
    let body = res.assert_status(200);
    assert_eq!(
        (body["token_version"].as_i64(), body["disabled"].as_bool()),
        (Some(1), Some(true))
    );
}

#[tokio::test]
async fn unknown_users_and_bad_ids_on_the_internal_api() {
    let app = TestApp::spawn().await;
    let internal = app.internal_with_service_token();
    internal
        .get(&format!(
            "/internal/v1/users/{}/token-version",
            uuid::Uuid::new_v4()
        ))
        .await
        .assert_error(404, "not_found");
    internal
        .get("/internal/v1/users/not-a-uuid/token-version")
        .await
        .assert_error(400, "invalid_parameter");
}

#[tokio::test]
async fn the_public_listener_does_not_serve_the_internal_api() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let path = format!("/internal/v1/users/{}/token-version", admin.user_id);
    let service_token = secrecy::ExposeSecret::expose_secret(&app.config.service_token).to_owned();
    app.api
        .with_token(&service_token)
        .get(&path)
        .await
        .assert_error(404, "not_found");
}

mod pocs {
    use serde_json::{Value, json};

    use crate::helpers::{TestApp, poc};

    fn names(page: &Value) -> Vec<&str> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect()
    }

    #[tokio::test]
    async fn internal_pocs_enforce_visible_to_and_page_with_a_cursor() {
        let app = TestApp::spawn().await;
        let admin = app.admin().await;
        let alice = app.member(&admin, "alice@acme.test").await;
        let bob = app.member(&admin, "bob@acme.test").await;
        for i in 0..5 {
            alice
                .create_poc(&poc(&format!("Alice {i}"), "rust", &["a"]))
                .await;
        }
        let mut private = poc("Bob private", "go", &["b"]);
        private["visibility"] = json!("private");
        bob.create_poc(&private).await;
        bob.create_poc(&poc("Bob shared", "go", &["b", "a"])).await;

        let internal = app.internal_with_service_token();
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/internal/v1/pocs?visible_to={}&limit=2", alice.user_id);
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = internal.get_ok(&path).await;
            seen.extend(names(&page).into_iter().map(str::to_owned));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(
            seen,
            [
                "Alice 0",
                "Alice 1",
                "Alice 2",
                "Alice 3",
                "Alice 4",
                "Bob shared"
            ]
        );

        let for_bob = internal
            .get(&format!(
                "/internal/v1/pocs?visible_to={}&tags=b",
                bob.user_id
            ))
            .await;
        assert_eq!(
            names(for_bob.assert_status(200)),
            ["Bob private", "Bob shared"]
        );
        let excluded = internal
            .get(&format!(
                "/internal/v1/pocs?visible_to={}&exclude_tags=b",
                admin.user_id
            ))
            .await;
        assert_eq!(
            excluded.assert_status(200)["items"]
                .as_array()
                .map(Vec::len),
            Some(5)
        );

        // Never without the service token, never with a user's token.
        let path = format!("/internal/v1/pocs?visible_to={}", alice.user_id);
        app.internal
            .get(&path)
            .await
            .assert_error(401, "unauthenticated");
        app.internal
            .with_token(&alice.access)
            .get(&path)
            .await
            .assert_error(401, "unauthenticated");
    }

    #[tokio::test]
    async fn aggregates_count_only_what_the_user_may_see() {
        let app = TestApp::spawn().await;
        let admin = app.admin().await;
        let alice = app.member(&admin, "alice@acme.test").await;
        let bob = app.member(&admin, "bob@acme.test").await;
        alice.create_poc(&poc("One", "rust", &["cli", "k8s"])).await;
        alice.create_poc(&poc("Two", "rust", &["cli"])).await;
        let mut private = poc("Three", "go", &["k8s"]);
        private["visibility"] = json!("private");
        bob.create_poc(&private).await;

        let internal = app.internal_with_service_token();
        let agg = internal
            .get_ok(&format!(
                "/internal/v1/pocs/aggregates?visible_to={}",
                alice.user_id
            ))
            .await;
        assert_eq!(agg["total"], 2);
        assert_eq!(agg["by_language"], json!([{ "key": "rust", "count": 2 }]));
        assert_eq!(
            agg["by_tag"],
            json!([{ "key": "cli", "count": 2 }, { "key": "k8s", "count": 1 }])
        );
        assert_eq!(
            agg["by_owner"],
            json!([{ "key": alice.user_id, "count": 2 }])
        );
        let month = time::OffsetDateTime::now_utc();
        assert_eq!(
            agg["by_month"],
            json!([{ "key": format!("{:04}-{:02}", month.year(), u8::from(month.month())), "count": 2 }])
        );

        let all = internal
            .get_ok(&format!(
                "/internal/v1/pocs/aggregates?visible_to={}",
                admin.user_id
            ))
            .await;
        assert_eq!(
            (
                all["total"].as_u64(),
                all["by_tag"][0]["key"].as_str(),
                all["by_tag"][0]["count"].as_u64()
            ),
            (Some(3), Some("cli"), Some(2))
        );

        let future = internal
            .get(&format!(
                "/internal/v1/pocs/aggregates?visible_to={}&from=2999-01-01",
                admin.user_id
            ))
            .await;
        assert_eq!(future.assert_status(200)["total"], 0);
        let today = format!(
            "{:04}-{:02}-{:02}",
            month.year(),
            u8::from(month.month()),
            month.day()
        );
        let until_today = internal
            .get(&format!(
                "/internal/v1/pocs/aggregates?visible_to={}&to={today}",
                admin.user_id
            ))
            .await;
        assert_eq!(
            until_today.assert_status(200)["total"],
            3,
            "`to` as a date includes that whole day"
        );
    }

    #[tokio::test]
    async fn internal_poc_queries_reject_bad_parameters() {
        let app = TestApp::spawn().await;
        let admin = app.admin().await;
        let internal = app.internal_with_service_token();
        internal
            .get(&format!(
                "/internal/v1/pocs?visible_to={}",
                uuid::Uuid::new_v4()
            ))
            .await
            .assert_error(404, "not_found");
        internal
            .get("/internal/v1/pocs")
            .await
            .assert_error(400, "invalid_parameter");
        let res = internal
            .get(&format!(
                "/internal/v1/pocs?visible_to={}&from=yesterday&cursor=zzz&limit=0",
                admin.user_id
            ))
            .await;
        res.assert_error(422, "validation_failed");
        let res = internal
            .get(&format!(
                "/internal/v1/pocs/aggregates?visible_to={}&from=2026-02-01&to=2026-01-01",
                admin.user_id
            ))
            .await;
        res.assert_error(422, "validation_failed");
    }
}
