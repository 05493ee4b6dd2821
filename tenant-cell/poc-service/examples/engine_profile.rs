//! Engine-only timing of the embedded index at 100k PoCs (no HTTP, no Postgres), to see what a
//! search costs inside tantivy: `cargo run --release -p poc-service --example engine_profile`.
//! `B=<n>` applies documents in batches of n (default 5000); `MERGE=1` merges to one segment
//! before measuring.

#[path = "../benches/common/corpus.rs"]
mod corpus;

use std::time::Instant;

use corpus::Rng;
use poc_service::search::embedded::EmbeddedIndex;
use poc_service::search::{PocDoc, SearchIndex, SearchQuery, Sort, Viewer};
use uuid::Uuid;
use wire_types::pocs::Visibility;

/// label, text, language, tag, viewer.
type Case = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Viewer,
);

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let index = EmbeddedIndex::in_memory().expect("index");
        let batch_size: usize = std::env::var("B")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5000);
        let mut rng = Rng(0x5eed);
        let users: Vec<Uuid> = (0..9).map(|_| Uuid::new_v4()).collect();
        let mut batch = Vec::new();
        for n in 0..100_000usize {
            let g = corpus::generate(&mut rng, n);
            batch.push(PocDoc {
                id: Uuid::new_v4(),
                owner_id: users[n % users.len()],
                name: g.name,
                description: g.description,
                language: g.language.into(),
                tags: g.tags,
                frameworks: vec![g.framework.into()],
                visibility: if g.private {
                    Visibility::Private
                } else {
                    Visibility::Tenant
                },
                created_at: n as i64,
                updated_at: n as i64,
            });
            if batch.len() == batch_size {
                index
                    .apply(std::mem::take(&mut batch), vec![])
                    .await
                    .expect("apply");
            }
        }
        index.apply(batch, vec![]).await.expect("apply");
        println!("segments: {}", index.segments());
        if std::env::var_os("MERGE").is_some() {
            // Background merges may hold segments for a moment; retry until one remains.
            while index.segments() > 1 {
                index.merge_all().expect("merge");
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            println!("segments after merge: {}", index.segments());
        }
        let member = Viewer::User(users[0]);
        let cases: [Case; 8] = [
            ("fuzzy member", "kubrenetes", None, None, member),
            ("fuzzy admin", "kubrenetes", None, None, Viewer::Everything),
            ("prefix member", "kub", None, None, member),
            ("prefix admin", "kub", None, None, Viewer::Everything),
            ("filter member", "", Some("rust"), Some("tag003"), member),
            (
                "filter admin",
                "",
                Some("rust"),
                Some("tag003"),
                Viewer::Everything,
            ),
            ("browse member", "", None, None, member),
            (
                "combined member",
                "kubernetes oper",
                Some("rust"),
                Some("tag001"),
                member,
            ),
        ];
        for (label, text, language, tag, viewer) in cases {
            let mut q = SearchQuery::browse(viewer);
            q.text = text.into();
            q.language = language.map(Into::into);
            q.tags = tag.into_iter().map(Into::into).collect();
            q.sort = if text.is_empty() {
                Sort::CreatedDesc
            } else {
                Sort::Relevance
            };
            let mut total = 0;
            let started = Instant::now();
            for _ in 0..200 {
                total = index.search(&q).await.expect("search").total;
            }
            println!(
                "{label:<18} {:>8.3} ms/search  ({total} matches)",
                started.elapsed().as_secs_f64() * 1e3 / 200.0
            );
        }
    });
}
