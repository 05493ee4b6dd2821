//! Search through HTTP: typos, prefixes, filters, facets limited to what the caller may see,
//! deletions, and the outbox catching up after the index was down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use poc_service::search::embedded::EmbeddedIndex;
use poc_service::search::{PocDoc, SearchHits, SearchIndex, SearchQuery};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Session, TestApp, names, poc};

async fn seeded() -> (TestApp, Session, Session, Session) {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let alice = app.member(&admin, "alice@acme.test").await;
    let bob = app.member(&admin, "bob@acme.test").await;
    alice
        .create_poc(&poc("Kubernetes operator", "rust", &["k8s", "operator"]))
        .await;
    alice
        .create_poc(&poc(
            "Realtime whiteboard",
            "typescript",
            &["websocket", "crdt"],
        ))
        .await;
    bob.create_poc(&poc("Payment gateway", "go", &["payments", "k8s"]))
        .await;
    let mut private = poc("Secret kubernetes scheduler", "rust", &["k8s", "secret"]);
    private["visibility"] = json!("private");
    bob.create_poc(&private).await;
    admin.search_until("", |p| p["total"] == 4).await;
    (app, admin, alice, bob)
}

fn facet(page: &Value, name: &str, value: &str) -> Option<u64> {
    page["facets"][name]
        .as_array()?
        .iter()
        .find(|f| f["value"] == value)?["count"]
        .as_u64()
}

#[tokio::test]
async fn search_finds_a_poc_with_one_typo_and_by_prefix() {
    let (_app, _admin, alice, _bob) = seeded().await;
    let typo = alice
        .search_until("?q=kubernetis", |p| p["total"].as_u64() > Some(0))
        .await;
    assert_eq!(names(&typo), ["Kubernetes operator"]);
    let prefix = alice
        .search_until("?q=white", |p| p["total"].as_u64() > Some(0))
        .await;
    assert_eq!(names(&prefix), ["Realtime whiteboard"]);
    let typed = alice
        .search_until("?q=realtime%20wh", |p| p["total"].as_u64() > Some(0))
        .await;
    assert_eq!(names(&typed), ["Realtime whiteboard"]);
    // Short words must match exactly: "go" is not a typo of "gp".
    let none = alice.client.get("/v1/pocs?q=gp%20gateway").await;
    assert_eq!(none.assert_status(200)["total"], 0);
}

#[tokio::test]
async fn facets_count_only_what_the_caller_may_see() {
    let (_app, admin, alice, bob) = seeded().await;
    let for_alice = alice.client.get_ok("/v1/pocs").await;
    assert_eq!(
        for_alice["total"], 3,
        "bob's private PoC is invisible to alice"
    );
    assert_eq!(
        (
            facet(&for_alice, "tags", "k8s"),
            facet(&for_alice, "language", "rust")
        ),
        (Some(2), Some(1))
    );
    assert_eq!(facet(&for_alice, "tags", "secret"), None);

    let for_bob = bob.client.get_ok("/v1/pocs").await;
    assert_eq!(
        (
            for_bob["total"].as_u64(),
            facet(&for_bob, "tags", "k8s"),
            facet(&for_bob, "language", "rust")
        ),
        (Some(4), Some(3), Some(2))
    );
    let for_admin = admin.client.get_ok("/v1/pocs?q=kubernetes").await;
    assert_eq!(for_admin["total"], 2);
    let for_alice = alice.client.get_ok("/v1/pocs?q=kubernetes").await;
    assert_eq!(names(&for_alice), ["Kubernetes operator"]);
}

#[tokio::test]
async fn filters_on_language_all_tags_and_owner() {
    let (_app, _admin, alice, bob) = seeded().await;
    let rust = alice.client.get_ok("/v1/pocs?language=Rust").await;
    assert_eq!(names(&rust), ["Kubernetes operator"]);
    let both = bob.client.get_ok("/v1/pocs?tags=k8s,secret").await;
    assert_eq!(names(&both), ["Secret kubernetes scheduler"]);
    let k8s = alice.client.get_ok("/v1/pocs?tags=K8S&sort=name").await;
    assert_eq!(names(&k8s), ["Kubernetes operator", "Payment gateway"]);
    let mine = alice.client.get_ok("/v1/pocs?owner=me&sort=-name").await;
    assert_eq!(names(&mine), ["Realtime whiteboard", "Kubernetes operator"]);
    let bobs = alice
        .client
        .get_ok(&format!("/v1/pocs?owner={}", bob.user_id))
        .await;
    assert_eq!(names(&bobs), ["Payment gateway"]);
}

#[tokio::test]
async fn listing_pages_newest_first() {
    let (_app, admin, _alice, _bob) = seeded().await;
    let first = admin.client.get_ok("/v1/pocs?per_page=3").await;
    let second = admin.client.get_ok("/v1/pocs?per_page=3&page=2").await;
    assert_eq!(
        names(&first),
        [
            "Secret kubernetes scheduler",
            "Payment gateway",
            "Realtime whiteboard"
        ]
    );
    assert_eq!(names(&second), ["Kubernetes operator"]);
    assert_eq!(
        (second["total"].as_u64(), second["page"].as_u64()),
        (Some(4), Some(2))
    );
    let oldest = admin
        .client
        .get_ok("/v1/pocs?sort=created_at&per_page=1")
        .await;
    assert_eq!(names(&oldest), ["Kubernetes operator"]);
}

#[tokio::test]
async fn relevance_comes_first_then_recency() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    admin
        .create_poc(&poc("Parser combinators", "rust", &[]))
        .await;
    admin
        .create_poc(&poc("Parser generator", "rust", &[]))
        .await;
    let mut weak = poc("Build tool", "rust", &[]);
    weak["description"] = json!("has a parser somewhere inside");
    admin.create_poc(&weak).await;
    let page = admin.search_until("?q=parser", |p| p["total"] == 3).await;
    assert_eq!(
        names(&page),
        ["Parser generator", "Parser combinators", "Build tool"]
    );
}

#[tokio::test]
async fn a_deleted_or_changed_poc_leaves_search() {
    let (_app, _admin, alice, _bob) = seeded().await;
    let page = alice
        .search_until("?q=whiteboard", |p| p["total"] == 1)
        .await;
    let id = page["items"][0]["id"].as_str().expect("id").to_owned();
    alice
        .client
        .patch(
            &format!("/v1/pocs/{id}"),
            &json!({ "name": "Realtime canvas", "description": "drawing together" }),
        )
        .await
        .assert_status(200);
    alice
        .search_until("?q=whiteboard", |p| p["total"] == 0)
        .await;
    alice.search_until("?q=canvas", |p| p["total"] == 1).await;
    alice
        .client
        .delete(&format!("/v1/pocs/{id}"))
        .await
        .assert_status(204);
    alice.search_until("?q=canvas", |p| p["total"] == 0).await;
    let all = alice.search_until("", |p| p["total"] == 2).await;
    assert!(!all.to_string().contains("Realtime"));
}

#[tokio::test]
async fn bad_search_parameters_are_rejected_with_details() {
    let (_app, admin, _alice, _bob) = seeded().await;
    let res = admin
        .client
        .get(&format!(
            "/v1/pocs?q={}&per_page=500&owner=nobody",
            "x".repeat(201)
        ))
        .await;
    res.assert_error(422, "validation_failed");
    let fields: Vec<String> = res
        .field_errors()
        .into_iter()
        .map(|[field, _]| field)
        .collect();
    assert_eq!(fields, ["q", "owner", "per_page"]);
    admin
        .client
        .get("/v1/pocs?sort=popularity")
        .await
        .assert_error(400, "invalid_parameter");
    admin
        .client
        .get("/v1/pocs?page=1000&per_page=100")
        .await
        .assert_error(422, "validation_failed");
    admin
        .client
        .get("/v1/pocs?tags=a/b")
        .await
        .assert_error(422, "validation_failed");
}

/// An index that can be switched off, to play "the search engine is down".
struct Switchable {
    inner: EmbeddedIndex,
    down: AtomicBool,
}

impl Switchable {
    fn check(&self) -> anyhow::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            anyhow::bail!("index unavailable (test)")
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl SearchIndex for Switchable {
    fn engine(&self) -> &'static str {
        "embedded"
    }
    async fn apply(&self, upserts: Vec<PocDoc>, deletes: Vec<Uuid>) -> anyhow::Result<()> {
        self.check()?;
        self.inner.apply(upserts, deletes).await
    }
    async fn clear(&self) -> anyhow::Result<()> {
        self.check()?;
        self.inner.clear().await
    }
    async fn count(&self) -> anyhow::Result<u64> {
        self.check()?;
        self.inner.count().await
    }
    async fn search(&self, query: &SearchQuery) -> anyhow::Result<SearchHits> {
        self.check()?;
        self.inner.search(query).await
    }
}

#[tokio::test]
async fn the_outbox_catches_up_after_the_index_was_down() {
    let index = Arc::new(Switchable {
        inner: EmbeddedIndex::in_memory().expect("index"),
        down: AtomicBool::new(true),
    });
    let app = TestApp::spawn_with_index(index.clone()).await;
    let admin = app.admin().await;
    // Writes are acknowledged while the index is down...
    for i in 0..5 {
        admin
            .create_poc(&poc(&format!("Offline {i}"), "rust", &["offline"]))
            .await;
    }
    // ...search says so honestly instead of returning wrong results...
    let res = admin.client.get("/v1/pocs?q=offline").await;
    res.assert_error(503, "unavailable");
    assert!(res.headers.contains_key("retry-after"));
    let status = admin.client.get_ok("/v1/admin/search").await;
    assert_eq!(status["pending"], 5);
    // ...and once it is back, every acknowledged write becomes searchable.
    index.down.store(false, Ordering::SeqCst);
    let page = admin.search_until("?q=offline", |p| p["total"] == 5).await;
    assert_eq!(
        page["facets"]["tags"][0],
        json!({ "value": "offline", "count": 5 })
    );
    // The outbox entries go once the batch is committed, just after it became searchable.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while admin.client.get_ok("/v1/admin/search").await["pending"] != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox never drained"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reindex_rebuilds_a_lost_index_from_postgres() {
    let (app, admin, alice, _bob) = seeded().await;
    // Lose the index's contents behind the service's back.
    app.index.clear().await.expect("clear");
    assert_eq!(
        alice.client.get("/v1/pocs").await.assert_status(200)["total"],
        0
    );
    alice
        .client
        .post("/v1/admin/search/reindex", &json!({}))
        .await
        .assert_error(403, "forbidden");
    let res = admin
        .client
        .post("/v1/admin/search/reindex", &json!({}))
        .await;
    res.assert_status(202);
    alice.search_until("", |p| p["total"] == 3).await;
    admin
        .search_until("?q=kubernetes", |p| p["total"] == 2)
        .await;
}

/// The index only says which PoCs match; what a result shows, and whether the user may see it,
/// is read from Postgres. Rows changed behind the index's back (the outbox trigger off for this
/// session, so the index keeps its old entry) show their current values, and a PoC the user may
/// no longer see, or that was deleted, is dropped even though the index still matches it.
#[tokio::test]
async fn search_results_are_read_from_postgres_not_from_the_index() {
    let (app, _admin, alice, bob) = seeded().await;
    let page = alice
        .search_until("?q=whiteboard", |p| p["total"] == 1)
        .await;
    let id = page["items"][0]["id"].as_str().expect("id").to_owned();
    let mut behind = app.pool.acquire().await.expect("connection");
    sqlx::raw_sql("SET session_replication_role = replica")
        .execute(&mut *behind)
        .await
        .expect("triggers off for this session");
    // What alice's search for it shows now.
    let whiteboard = || async {
        alice
            .client
            .get("/v1/pocs?q=whiteboard")
            .await
            .assert_status(200)
            .clone()
    };
    sqlx::query("UPDATE pocs SET name = 'Renamed behind the index' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&mut *behind)
        .await
        .expect("rename");
    let page = whiteboard().await;
    assert_eq!(
        page["items"][0]["name"], "Renamed behind the index",
        "{page}"
    );

    sqlx::query("UPDATE pocs SET visibility = 'private', owner_id = $2::uuid WHERE id = $1::uuid")
        .bind(&id)
        .bind(&bob.user_id)
        .execute(&mut *behind)
        .await
        .expect("make it bob's and private");
    let page = whiteboard().await;
    assert_eq!(page["items"], serde_json::json!([]), "{page}");

    sqlx::query("UPDATE pocs SET visibility = 'tenant', deleted_at = now() WHERE id = $1::uuid")
        .bind(&id)
        .execute(&mut *behind)
        .await
        .expect("visible again, but deleted");
    let page = whiteboard().await;
    assert_eq!(page["items"], serde_json::json!([]), "deleted: {page}");
    sqlx::raw_sql("SET session_replication_role = origin")
        .execute(&mut *behind)
        .await
        .expect("triggers back on");
}
