//! Contract test for the Meilisearch engine against a recorded HTTP fake (wiremock): pins the
//! exact settings, document, delete, filter and facet requests it sends. Meilisearch itself
//! cannot run on these machines; the replies below are recorded from its documented API.

use poc_service::search::meili::MeiliIndex;
use poc_service::search::{PocDoc, SearchIndex, SearchQuery, Sort, Viewer};
use serde_json::{Value, json};
use uuid::Uuid;
use wire_types::pocs::{FacetCount, Visibility};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const AT: &str = "2026-11-22T00:00:00Z";

fn enqueued(uid: u32, kind: &str) -> ResponseTemplate {
    ResponseTemplate::new(202).set_body_json(json!({ "taskUid": uid, "indexUid": "pocs", "status": "enqueued", "type": kind, "enqueuedAt": AT }))
}

fn succeeded(uid: u32, kind: &str, details: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "uid": uid, "batchUid": uid, "indexUid": "pocs", "status": "succeeded", "type": kind, "canceledBy": null,
        "details": details, "error": null, "duration": "PT0.004S", "enqueuedAt": AT, "startedAt": AT, "finishedAt": AT
    }))
}

#[tokio::test]
async fn meilisearch_engine_sends_the_pinned_requests() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/indexes/pocs/settings"))
        .respond_with(enqueued(1, "settingsUpdate"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/tasks/1"))
        .respond_with(succeeded(1, "settingsUpdate", json!({})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/indexes/pocs/documents"))
        .respond_with(enqueued(2, "documentAdditionOrUpdate"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/tasks/2"))
        .respond_with(succeeded(
            2,
            "documentAdditionOrUpdate",
            json!({ "receivedDocuments": 1, "indexedDocuments": 1 }),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/indexes/pocs/documents/delete-batch"))
        .respond_with(enqueued(3, "documentDeletion"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/tasks/3"))
        .respond_with(succeeded(
            3,
            "documentDeletion",
            json!({ "providedIds": 1, "deletedDocuments": 1, "originalFilter": null }),
        ))
        .mount(&server)
        .await;
    let hit = Uuid::from_u128(7);
    Mock::given(method("POST"))
        .and(path_regex("^/indexes/pocs/search$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "hits": [{ "id": hit.to_string() }], "query": "kubernetes op", "processingTimeMs": 1,
            "hitsPerPage": 20, "page": 2, "totalPages": 2, "totalHits": 21,
            "facetDistribution": { "language": { "rust": 15, "go": 6 }, "tags": { "k8s": 21 } }
        })))
        .mount(&server)
        .await;

    let index = MeiliIndex::new(&server.uri(), Some("master-key"), "pocs").expect("client");
    let owner = Uuid::from_u128(1);
    let doc = PocDoc {
        id: hit,
        owner_id: owner,
        name: "Kubernetes Operator".into(),
        description: "reconciles cells".into(),
        language: "rust".into(),
        tags: vec!["k8s".into()],
        frameworks: vec!["kube-rs".into()],
        visibility: Visibility::Private,
        created_at: 1_795_000_000_000_000,
        updated_at: 1_795_000_000_000_001,
    };
    index
        .apply(vec![doc], vec![Uuid::from_u128(9)])
        .await
        .expect("apply");
    let query = SearchQuery {
        text: "kubernetes op".into(),
        language: Some("rust".into()),
        tags: vec!["k8s".into()],
        owner: None,
        viewer: Viewer::User(owner),
        sort: Sort::Relevance,
        offset: 20,
        limit: 20,
    };
    let hits = index.search(&query).await.expect("search");
    assert_eq!((hits.ids, hits.total), (vec![hit], 21));
    assert_eq!(
        hits.facets.language,
        [
            FacetCount {
                value: "rust".into(),
                count: 15
            },
            FacetCount {
                value: "go".into(),
                count: 6
            }
        ]
    );

    let sent: Vec<(String, String, Value)> = server
        .received_requests()
        .await
        .expect("recording is on")
        .iter()
        .filter(|r| !r.url.path().starts_with("/tasks/"))
        .map(|r| {
            assert_eq!(
                r.headers.get("authorization").and_then(|v| v.to_str().ok()),
                Some("Bearer master-key")
            );
            let target = match r.url.query() {
                Some(q) => format!("{}?{q}", r.url.path()),
                None => r.url.path().to_owned(),
            };
            (
                r.method.to_string(),
                target,
                serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            )
        })
        .collect();
    let expected = vec![
        (
            "PATCH".to_owned(),
            "/indexes/pocs/settings".to_owned(),
            json!({
                "rankingRules": ["words", "typo", "proximity", "attribute", "sort", "exactness", "created_at:desc"],
                "filterableAttributes": ["language", "tags", "owner_id", "visibility"],
                "sortableAttributes": ["created_at", "updated_at", "name_sort"],
                "searchableAttributes": ["name", "tags", "language", "frameworks", "description"],
                "pagination": { "maxTotalHits": 10000 },
                "faceting": { "maxValuesPerFacet": 100 },
                "typoTolerance": { "enabled": true, "disableOnAttributes": null, "disableOnWords": null, "minWordSizeForTypos": { "oneTypo": 5, "twoTypos": 255 } }
            }),
        ),
        (
            "POST".to_owned(),
            "/indexes/pocs/documents?primaryKey=id".to_owned(),
            json!([{
                "id": hit.to_string(), "owner_id": owner.to_string(), "name": "Kubernetes Operator", "name_sort": "kubernetes operator",
                "description": "reconciles cells", "language": "rust", "tags": ["k8s"], "frameworks": ["kube-rs"],
                "visibility": "private", "created_at": 1_795_000_000_000_000i64, "updated_at": 1_795_000_000_000_001i64
            }]),
        ),
        (
            "POST".to_owned(),
            "/indexes/pocs/documents/delete-batch".to_owned(),
            json!([Uuid::from_u128(9).to_string()]),
        ),
        (
            "POST".to_owned(),
            "/indexes/pocs/search".to_owned(),
            json!({
                "q": "kubernetes op",
                "page": 2,
                "hitsPerPage": 20,
                "filter": format!("(visibility = \"tenant\" OR owner_id = \"{owner}\") AND language = \"rust\" AND tags = \"k8s\""),
                "facets": ["language", "tags"],
                "attributesToRetrieve": ["id"]
            }),
        ),
    ];
    assert_eq!(sent.len(), expected.len(), "requests sent: {sent:#?}");
    for (got, want) in sent.iter().zip(&expected) {
        assert_eq!(got, want);
    }
}
