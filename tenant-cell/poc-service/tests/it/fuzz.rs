//! Generative test: random JSON (and random bytes) sent to every endpoint, signed in or not,
//! never gets a 5xx.

use proptest::prelude::*;
use serde_json::Value;
use test_support::ApiClient;

use crate::helpers::TestApp;

const FIELDS: &[&str] = &[
    "email",
    "password",
    "display_name",
    "invite_token",
    "refresh_token",
    "role",
    "disabled",
    "registration",
    "expires_in_hours",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![
            Just("admin".to_owned()),
            Just("member".to_owned()),
            Just("open".to_owned()),
            Just("a@acme.test".to_owned()),
            ".{0,24}"
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let key = prop_oneof![
            proptest::sample::select(FIELDS).prop_map(str::to_owned),
            "[a-z_]{1,10}"
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every public endpoint; `{id}` is replaced by a random or real id.
const ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/users/me"),
    ("GET", "/v1/users"),
    ("GET", "/v1/users/{id}"),
    ("PATCH", "/v1/users/{id}"),
    ("POST", "/v1/invites"),
    ("GET", "/v1/invites"),
    ("DELETE", "/v1/invites/{id}"),
    ("GET", "/v1/settings"),
    ("PATCH", "/v1/settings"),
];

#[test]
fn random_requests_never_get_a_server_error() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (app, admin) = rt.block_on(async {
        let app = TestApp::spawn_with(|c| c.throttle.ip_max_failures = 1_000_000).await;
        let admin = app.admin().await;
        (app, admin)
    });
    let ids = [
        admin.user_id.clone(),
        uuid::Uuid::new_v4().to_string(),
        "x".into(),
        "%00".into(),
    ];
    let clients: [ApiClient; 3] = [
        app.api.clone(),
        admin.client.clone(),
        app.api.with_token("garbage"),
    ];
    let config = ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        endpoint in proptest::sample::select(ENDPOINTS),
        id in proptest::sample::select(ids.to_vec()),
        client in 0usize..3,
        body in json_value(),
        raw in proptest::option::weighted(0.15, prop::collection::vec(any::<u8>(), 0..64)),
        query in proptest::option::weighted(0.3, "[a-z_]{1,8}=[-a-z0-9%]{0,8}"),
    )| {
        let (method, path) = endpoint;
        let mut path = path.replace("{id}", &id);
        if let Some(q) = &query {
            path = format!("{path}?{q}");
        }
        let method: reqwest::Method = method.parse().expect("method");
        let client = &clients[client];
        let res = rt.block_on(async {
            match &raw {
                Some(bytes) => client.raw(method.clone(), &path, "application/json", bytes.clone()).await,
                None => ApiClient::send(client.request(method.clone(), &path).json(&body)).await,
            }
        });
        prop_assert!(res.status.as_u16() < 500, "{method} {path} {body} → {} {}", res.status, res.text);
        prop_assert!(res.body["code"].is_string() || res.status.is_success(), "error without a code: {}", res.text);
    });
}
