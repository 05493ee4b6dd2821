//! Login throttling per account and per client IP.

use std::time::Duration;

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test]
async fn repeated_failures_block_the_account_with_retry_after() {
    let app = TestApp::spawn_with(|c| {
        c.throttle.account_max_failures = 3;
        c.throttle.block_for = Duration::from_secs(120);
    })
    .await;
    app.admin().await;
    for _ in 0..3 {
        app.login("admin@acme.test", "wrong password!")
            .await
            .assert_error(401, "invalid_credentials");
    }
    // Blocked now, even with the right password.
    let res = app.login("admin@acme.test", PASSWORD).await;
    res.assert_error(429, "rate_limited");
    let retry: u64 = res.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((100..=120).contains(&retry), "Retry-After {retry}");
}

#[tokio::test]
async fn a_successful_login_resets_the_account_counter() {
    let app = TestApp::spawn_with(|c| c.throttle.account_max_failures = 3).await;
    app.admin().await;
    for _ in 0..2 {
        app.login("admin@acme.test", "wrong password!")
            .await
            .assert_error(401, "invalid_credentials");
    }
    app.login("admin@acme.test", PASSWORD)
        .await
        .assert_status(200);
    for _ in 0..2 {
        app.login("admin@acme.test", "wrong password!")
            .await
            .assert_error(401, "invalid_credentials");
    }
    app.login("admin@acme.test", PASSWORD)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn one_client_ip_guessing_many_accounts_is_blocked_but_others_are_not() {
    let app = TestApp::spawn_with(|c| {
        c.throttle.ip_max_failures = 4;
        c.throttle.account_max_failures = 100;
    })
    .await;
    app.admin().await;
    // Tests connect from 127.0.0.1, a trusted proxy in the test config, so X-Forwarded-For
    // names the client, as it does behind the router.
    let attacker = app.api.with_header("x-forwarded-for", "203.0.113.7");
    let login =
        |email: String| serde_json::json!({ "email": email, "password": "wrong password!" });
    for i in 0..4 {
        attacker
            .post("/v1/auth/login", &login(format!("user{i}@acme.test")))
            .await
            .assert_error(401, "invalid_credentials");
    }
    attacker
        .post("/v1/auth/login", &login("someone@acme.test".into()))
        .await
        .assert_error(429, "rate_limited");
    let honest = app.api.with_header("x-forwarded-for", "198.51.100.9");
    honest
        .post(
            "/v1/auth/login",
            &serde_json::json!({ "email": "admin@acme.test", "password": PASSWORD }),
        )
        .await
        .assert_status(200);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_does_not_dodge_the_ip_limit() {
    let app = TestApp::spawn_with(|c| {
        c.common.trusted_proxies.clear();
        c.throttle.ip_max_failures = 3;
        c.throttle.account_max_failures = 100;
    })
    .await;
    for i in 0..3 {
        let spoof = app
            .api
            .with_header("x-forwarded-for", &format!("192.0.2.{i}"));
        spoof
            .post(
                "/v1/auth/login",
                &serde_json::json!({ "email": "x@acme.test", "password": "wrong password!" }),
            )
            .await
            .assert_error(401, "invalid_credentials");
    }
    let spoof = app.api.with_header("x-forwarded-for", "192.0.2.200");
    spoof
        .post(
            "/v1/auth/login",
            &serde_json::json!({ "email": "y@acme.test", "password": "wrong password!" }),
        )
        .await
        .assert_error(429, "rate_limited");
}

/// The race: checking the block, verifying and recording the failure were separate steps, so
/// a burst of concurrent guesses all passed the check. Attempts are reserved before verifying
/// now: at most the limit's worth of guesses is ever verified (each verified wrong guess is a
/// 401; the rest are refused with 429 before any hashing).
#[tokio::test]
async fn concurrent_wrong_logins_verify_at_most_the_limit() {
    let app = TestApp::spawn_with(|c| {
        c.throttle.account_max_failures = 5;
        c.throttle.ip_max_failures = 1000;
    })
    .await;
    app.admin().await;
    let guesses = (0..60).map(|i| {
        let api = app.api.clone();
        async move {
            api.post(
                "/v1/auth/login",
                &serde_json::json!({ "email": "admin@acme.test", "password": format!("guess number {i}") }),
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let verified = answers.iter().filter(|r| r.status == 401).count();
    assert!(verified <= 5, "{verified} guesses were verified");
    assert!(
        answers.iter().all(|r| r.status == 401 || r.status == 429),
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(verified >= 1, "some guesses were verified at all");
    // Per client too: guesses at many accounts from one address.
    let app = TestApp::spawn_with(|c| {
        c.throttle.account_max_failures = 1000;
        c.throttle.ip_max_failures = 8;
    })
    .await;
    let guesses = (0..60).map(|i| {
        let api = app.api.clone();
        async move {
            api.post(
                "/v1/auth/login",
                &serde_json::json!({ "email": format!("user{i}@acme.test"), "password": "wrong password!" }),
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let verified = answers.iter().filter(|r| r.status == 401).count();
    assert!(
        verified <= 8,
        "{verified} guesses from one client were verified"
    );
}

/// A right password gives its reserved attempt back: a user who signs in correctly many times
/// is never throttled.
#[tokio::test]
async fn right_passwords_never_use_up_the_limit() {
    let app = TestApp::spawn_with(|c| {
        c.throttle.account_max_failures = 2;
        c.throttle.ip_max_failures = 2;
    })
    .await;
    app.admin().await;
    for _ in 0..5 {
        app.login("admin@acme.test", PASSWORD)
            .await
            .assert_status(200);
    }
}
