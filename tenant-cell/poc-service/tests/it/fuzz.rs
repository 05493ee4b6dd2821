//! Generative test: random JSON (and random bytes) sent to every operation of poc-service's
//! public OpenAPI document, signed in or not, never gets a 5xx. (dojo and media are fuzzed by
//! schemathesis from their documents.)

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
    "name",
    "description",
    "repository_url",
    "language",
    "tags",
    "frameworks",
    "visibility",
    "current_password",
    "new_password",
    "token",
    "code",
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

/// Every operation of the public document (so a new one is fuzzed as soon as it is
/// documented); its `{…}` parameters are replaced by a random or real id.
fn endpoints() -> Vec<(String, String)> {
    let doc: Value = serde_json::from_str(&poc_service::openapi::public_json()).expect("openapi");
    let mut found = Vec::new();
    for (path, operations) in doc["paths"].as_object().expect("paths") {
        for method in operations.as_object().expect("operations").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                found.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    found
}

/// `path` with each `{parameter}` replaced by `id`.
fn with_id(path: &str, id: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                id
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

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
    let endpoints = endpoints();
    assert!(
        endpoints
            .iter()
            .any(|(m, p)| m == "PATCH" && p == "/v1/pocs/{id}")
            && endpoints.len() > 25,
        "the whole document: {endpoints:?}"
    );
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
        cases: 500,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        endpoint in proptest::sample::select(endpoints),
        id in proptest::sample::select(ids.to_vec()),
        client in 0usize..3,
        body in json_value(),
        raw in proptest::option::weighted(0.15, prop::collection::vec(any::<u8>(), 0..64)),
        query in proptest::option::weighted(0.3, "[a-z_]{1,8}=[-a-z0-9%]{0,8}"),
    )| {
        let (method, path) = endpoint;
        let mut path = with_id(&path, &id);
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
