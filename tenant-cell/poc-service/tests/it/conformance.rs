//! One conformance suite for every `SearchIndex` engine: result *sets* and facet counts (not
//! exact ranking), filters, visibility, deletes and clearing.
//!
//! It runs on the embedded tantivy engine here. The Meilisearch run is `#[ignore]`d because no
//! Meilisearch binary exists on these machines: start one and run
//! `MRBILL_TEST_MEILISEARCH_URL=http://127.0.0.1:7700 cargo test -p poc-service --test it -- --ignored meilisearch`.

use std::collections::BTreeSet;

use poc_service::search::embedded::EmbeddedIndex;
use poc_service::search::meili::MeiliIndex;
use poc_service::search::{PocDoc, SearchIndex, SearchQuery, Sort, Viewer};
use uuid::Uuid;
use wire_types::pocs::{FacetCount, Visibility};

const ALICE: Uuid = Uuid::from_u128(1);
const BOB: Uuid = Uuid::from_u128(2);

fn doc(
    n: u128,
    owner: Uuid,
    name: &str,
    language: &str,
    tags: &[&str],
    visibility: Visibility,
) -> PocDoc {
    PocDoc {
        id: Uuid::from_u128(100 + n),
        owner_id: owner,
        name: name.into(),
        description: format!("{name} proof of concept"),
        language: language.into(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        frameworks: vec!["axum".into()],
        visibility,
        created_at: 1_700_000_000_000_000 + n as i64,
        updated_at: 1_700_000_000_000_000 + n as i64,
    }
}

fn corpus() -> Vec<PocDoc> {
    vec![
        doc(
            1,
            ALICE,
            "Kubernetes operator",
            "rust",
            &["k8s", "operator"],
            Visibility::Tenant,
        ),
        doc(
            2,
            ALICE,
            "Realtime whiteboard",
            "typescript",
            &["websocket", "crdt"],
            Visibility::Tenant,
        ),
        doc(
            3,
            BOB,
            "Payment gateway",
            "go",
            &["payments", "k8s"],
            Visibility::Tenant,
        ),
        doc(
            4,
            BOB,
            "Secret kubernetes scheduler",
            "rust",
            &["k8s", "secret"],
            Visibility::Private,
        ),
        doc(
            5,
            ALICE,
            "Parser combinators",
            "rust",
            &["parsing"],
            Visibility::Private,
        ),
    ]
}

fn ids(ns: &[u128]) -> BTreeSet<Uuid> {
    ns.iter().map(|n| Uuid::from_u128(100 + n)).collect()
}

fn query(viewer: Viewer, text: &str) -> SearchQuery {
    let mut q = SearchQuery::browse(viewer);
    q.text = text.into();
    q.sort = if text.is_empty() {
        Sort::CreatedDesc
    } else {
        Sort::Relevance
    };
    q
}

async fn found(index: &dyn SearchIndex, q: &SearchQuery) -> BTreeSet<Uuid> {
    let hits = index.search(q).await.expect("search");
    assert_eq!(
        hits.total as usize,
        hits.ids.len(),
        "total counts every match ({q:?})"
    );
    hits.ids.into_iter().collect()
}

fn fc(value: &str, count: u64) -> FacetCount {
    FacetCount {
        value: value.into(),
        count,
    }
}

/// The suite. Panics on the first deviation.
pub async fn run(index: &dyn SearchIndex) {
    index.clear().await.expect("clear");
    index.apply(corpus(), Vec::new()).await.expect("apply");
    assert_eq!(index.count().await.expect("count"), 5);

    let alice = Viewer::User(ALICE);
    // Typo (one, on a word of 5+ letters), prefix, several words.
    assert_eq!(found(index, &query(alice, "kubernetis")).await, ids(&[1]));
    assert_eq!(found(index, &query(alice, "white")).await, ids(&[2]));
    assert_eq!(found(index, &query(alice, "realtime wh")).await, ids(&[2]));
    assert_eq!(
        found(index, &query(Viewer::Everything, "kubernetes")).await,
        ids(&[1, 4])
    );
    assert_eq!(
        found(index, &query(alice, "gatewya")).await,
        ids(&[3]),
        "a transposition is one typo"
    );
    assert!(
        found(index, &query(alice, "gp gateway")).await.is_empty(),
        "short words need an exact match"
    );

    // Visibility: members see tenant-wide PoCs and their own private ones.
    assert_eq!(found(index, &query(alice, "")).await, ids(&[1, 2, 3, 5]));
    assert_eq!(
        found(index, &query(Viewer::User(BOB), "")).await,
        ids(&[1, 2, 3, 4])
    );
    assert_eq!(
        found(index, &query(Viewer::Everything, "")).await,
        ids(&[1, 2, 3, 4, 5])
    );

    // Facets count exactly what the viewer may see.
    let hits = index.search(&query(alice, "")).await.expect("search");
    assert_eq!(
        hits.facets.language,
        [fc("rust", 2), fc("go", 1), fc("typescript", 1)]
    );
    assert_eq!(
        hits.facets.tags,
        [
            fc("k8s", 2),
            fc("crdt", 1),
            fc("operator", 1),
            fc("parsing", 1),
            fc("payments", 1),
            fc("websocket", 1)
        ]
    );

    // Filters: language, all tags, owner.
    let mut q = query(Viewer::Everything, "");
    q.language = Some("rust".into());
    assert_eq!(found(index, &q).await, ids(&[1, 4, 5]));
    q.tags = vec!["k8s".into(), "secret".into()];
    assert_eq!(found(index, &q).await, ids(&[4]));
    let mut q = query(alice, "");
    q.owner = Some(BOB);
    assert_eq!(found(index, &q).await, ids(&[3]));

    // Sorting and paging.
    let mut q = query(Viewer::Everything, "");
    q.sort = Sort::NameAsc;
    q.limit = 2;
    let page = index.search(&q).await.expect("search");
    assert_eq!(
        (page.ids, page.total),
        (vec![Uuid::from_u128(101), Uuid::from_u128(105)], 5)
    );
    q.offset = 4;
    assert_eq!(
        index.search(&q).await.expect("search").ids,
        [Uuid::from_u128(104)]
    );
    let mut q = query(Viewer::Everything, "");
    q.sort = Sort::CreatedAsc;
    q.limit = 1;
    assert_eq!(
        index.search(&q).await.expect("search").ids,
        [Uuid::from_u128(101)]
    );

    // Updates replace, deletes remove.
    let mut renamed = corpus().remove(1);
    renamed.name = "Collaborative canvas".into();
    renamed.description = String::new();
    index
        .apply(vec![renamed], vec![Uuid::from_u128(103)])
        .await
        .expect("apply");
    assert!(found(index, &query(alice, "whiteboard")).await.is_empty());
    assert_eq!(found(index, &query(alice, "canvas")).await, ids(&[2]));
    assert!(found(index, &query(alice, "payment")).await.is_empty());
    assert_eq!(index.count().await.expect("count"), 4);

    index.clear().await.expect("clear");
    assert_eq!(index.count().await.expect("count"), 0);
}

#[tokio::test]
async fn embedded_engine_passes_the_conformance_suite() {
    run(&EmbeddedIndex::in_memory().expect("index")).await;
}

#[tokio::test]
async fn embedded_engine_persists_to_disk_and_reopens() {
    let dir = std::env::temp_dir().join(format!("poc-index-{}", Uuid::new_v4()));
    {
        let index = EmbeddedIndex::open(&dir).expect("open");
        index.apply(corpus(), Vec::new()).await.expect("apply");
    }
    let reopened = EmbeddedIndex::open(&dir).expect("reopen");
    assert_eq!(reopened.count().await.expect("count"), 5);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
#[ignore = "needs Meilisearch (set MRBILL_TEST_MEILISEARCH_URL)"]
async fn meilisearch_engine_passes_the_conformance_suite() {
    let url = std::env::var("MRBILL_TEST_MEILISEARCH_URL").expect("MRBILL_TEST_MEILISEARCH_URL");
    let key = std::env::var("MRBILL_TEST_MEILISEARCH_KEY").ok();
    let index = MeiliIndex::new(
        &url,
        key.as_deref(),
        &format!("conformance-{}", Uuid::new_v4().simple()),
    )
    .expect("client");
    run(&index).await;
}
