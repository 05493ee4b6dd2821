//! Engine-only timing of the embedded index at 100k PoCs (no HTTP, no Postgres), to see what a
//! search costs inside tantivy: `cargo run --release -p poc-service --example engine_profile`.
//! `B=<n>` applies documents in batches of n (default 5000); `MERGE=1` merges to one segment
//! before measuring.
use std::time::Instant;

use poc_service::search::embedded::EmbeddedIndex;
use poc_service::search::{PocDoc, SearchIndex, SearchQuery, Sort, Viewer};
use uuid::Uuid;
use wire_types::pocs::Visibility;

const WORDS: &[&str] = &[
    "kubernetes",
    "operator",
    "realtime",
    "whiteboard",
    "payment",
    "gateway",
    "parser",
    "compiler",
    "scheduler",
    "search",
    "engine",
    "stream",
    "ledger",
    "cache",
    "proxy",
    "router",
    "telemetry",
    "dashboard",
    "invoice",
    "checkout",
    "recommendation",
    "vector",
    "embedding",
    "sync",
    "offline",
    "mobile",
    "camera",
    "audio",
    "video",
    "transcoder",
    "queue",
    "workflow",
    "notebook",
    "graph",
    "planner",
    "chatbot",
    "crawler",
    "billing",
    "identity",
    "ingest",
    "warehouse",
    "lakehouse",
    "feature",
    "flags",
    "canary",
    "rollout",
    "observability",
    "tracing",
];
const LANGS: &[&str] = &[
    "rust",
    "typescript",
    "go",
    "python",
    "kotlin",
    "swift",
    "java",
    "c++",
    "elixir",
    "ruby",
    "scala",
    "zig",
];

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("engine_profile");
    rt.block_on(async {
        let index = EmbeddedIndex::in_memory().expect("engine_profile");
        let mut x: u64 = 0x5eed;
        let mut r = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let users: Vec<Uuid> = (0..9).map(|_| Uuid::new_v4()).collect();
        let mut batch = Vec::new();
        for n in 0..100_000u64 {
            let tags: Vec<String> = (0..1 + r() % 4)
                .map(|_| format!("tag{:03}", (r() % 200).min(r() % 200)))
                .collect();
            batch.push(PocDoc {
                id: Uuid::new_v4(),
                owner_id: users[(r() % 9) as usize],
                name: format!(
                    "{} {} {n}",
                    WORDS[(r() % 48) as usize],
                    WORDS[(r() % 48) as usize]
                ),
                description: format!(
                    "A proof of concept about {} and {}",
                    WORDS[(r() % 48) as usize],
                    WORDS[(r() % 48) as usize]
                ),
                language: LANGS[((r() % 12).min(r() % 12)) as usize].into(),
                tags,
                frameworks: vec!["axum".into()],
                visibility: if r().is_multiple_of(4) {
                    Visibility::Private
                } else {
                    Visibility::Tenant
                },
                created_at: n as i64,
                updated_at: n as i64,
            });
            if batch.len()
                == std::env::var("B")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(5000)
            {
                index
                    .apply(std::mem::take(&mut batch), vec![])
                    .await
                    .expect("engine_profile");
            }
        }
        println!("segments: {}", index.segments());
        if std::env::var("MERGE").is_ok() {
            while index.segments() > 1 {
                index.merge_all().expect("engine_profile");
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            println!("segments after merge: {}", index.segments());
        }
        for (label, text, lang, tag, viewer) in [
            (
                "fuzzy member",
                "kubrenetes",
                None,
                None,
                Viewer::User(users[0]),
            ),
            ("fuzzy admin", "kubrenetes", None, None, Viewer::Everything),
            ("prefix member", "kub", None, None, Viewer::User(users[0])),
            ("prefix admin", "kub", None, None, Viewer::Everything),
            (
                "filter member",
                "",
                Some("rust"),
                Some("tag003"),
                Viewer::User(users[0]),
            ),
            (
                "filter admin",
                "",
                Some("rust"),
                Some("tag003"),
                Viewer::Everything,
            ),
            ("browse member", "", None, None, Viewer::User(users[0])),
            (
                "combined member",
                "kubernetes oper",
                Some("rust"),
                Some("tag001"),
                Viewer::User(users[0]),
            ),
        ] {
            let mut q = SearchQuery::browse(viewer);
            q.text = text.into();
            q.language = lang.map(Into::into);
            q.tags = tag.into_iter().map(Into::into).collect();
            q.sort = if text.is_empty() {
                Sort::CreatedDesc
            } else {
                Sort::Relevance
            };
            let mut total = 0;
            let t = Instant::now();
            for _ in 0..200 {
                total = index.search(&q).await.expect("engine_profile").total;
            }
            println!(
                "{label:<18} {:>8.3} ms/search  ({total} matches)",
                t.elapsed().as_secs_f64() * 1e3 / 200.0
            );
        }
    });
}
