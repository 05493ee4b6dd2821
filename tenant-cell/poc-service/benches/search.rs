//! Search benchmark: one cell with 100k PoCs, measured over HTTP against the release build.
//! `cargo bench -p poc-service --bench search` (starts its own Postgres; prints numbers).
//! `POC_BENCH_N=20000` runs a smaller cell.
//!
//! Prints bulk-create throughput (through the API, 16 concurrent clients), indexer lag
//! (acknowledged write → visible in search) and p50/p99 latency of fuzzy, prefix,
//! facet-filter and combined searches by a member (so the visibility filter is always on),
//! interleaved so noise hits every kind alike. `POC_BENCH_SETTLE_SECS=20` waits before the
//! search phase, so the indexer's idle-time merge has happened (the steady state of a cell).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use poc_service::config::SearchConfig;
use poc_service::search::embedded::EmbeddedIndex;
use poc_service::{App, Config};
use serde_json::{Value, json};
use test_support::ApiClient;

#[path = "common/corpus.rs"]
mod corpus;

use corpus::{LANGUAGES, Rng, WORDS};

fn poc_body(rng: &mut Rng, n: usize) -> Value {
    let g = corpus::generate(rng, n);
    json!({
        "name": g.name,
        "description": g.description,
        "repository_url": format!("https://github.com/acme/poc-{n}"),
        "language": g.language,
        "tags": g.tags,
        "frameworks": [g.framework],
        "visibility": if g.private { "private" } else { "tenant" },
    })
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at =
        |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
    println!(
        "{label:<44} p50 {:>7.3} ms   p99 {:>7.3} ms   max {:>7.3} ms   (n = {})",
        at(0.5),
        at(0.99),
        at(1.0),
        samples.len()
    );
}

async fn token(api: &ApiClient, body: Value) -> String {
    let res = api.post("/v1/auth/register", &body).await;
    res.body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("register failed: {}", res.text))
        .to_owned()
}

fn main() {
    let n: usize = std::env::var("POC_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let url = test_support::test_database(&poc_service::MIGRATOR).await.expect("database");
        let index_dir = std::env::temp_dir().join(format!("poc-bench-index-{}", std::process::id()));
        let mut config = Config::for_tests("c-bench", "bench", &url).expect("config");
        config.dev_mode = true;
        config.search = SearchConfig::Embedded { dir: Some(index_dir.clone()) };
        let index = std::sync::Arc::new(EmbeddedIndex::open(&index_dir).expect("index"));
        let pool = sqlx::PgPool::connect(&url).await.expect("pool");
        let app = App::build_with_index(config, pool, index.clone()).await.expect("app");
        let api = ApiClient::new(format!("http://{}", app.public_addr()));
        tokio::spawn(app.run_until_stopped(std::future::pending()));

        let admin = api.with_token(&token(&api, json!({ "email": "admin@bench.test", "password": "correct horse battery staple" })).await);
        let mut writers = Vec::new();
        for i in 0..8 {
            let invite = admin.post("/v1/invites", &json!({ "role": "member" })).await;
            let invite = invite.body["token"].as_str().expect("invite").to_owned();
            writers.push(api.with_token(&token(&api, json!({ "email": format!("dev{i}@bench.test"), "password": "correct horse battery staple", "invite_token": invite })).await));
        }
        let member = writers[0].clone();

        // Bulk create through the API.
        let mut rng = Rng(0x5eed);
        let bodies: Vec<Value> = (0..n).map(|i| poc_body(&mut rng, i)).collect();
        let started = Instant::now();
        let created = futures_util::stream::iter(bodies.into_iter().enumerate())
            .map(|(i, body)| {
                let client = writers[i % writers.len()].clone();
                async move { client.post("/v1/pocs", &body).await.status.as_u16() == 201 }
            })
            .buffer_unordered(16)
            .filter(|ok| std::future::ready(*ok))
            .count()
            .await;
        let elapsed = started.elapsed();
        println!("bulk create through the API ({created} PoCs, 16 clients)   {:>8.0} PoCs/s   ({:.1} s)", created as f64 / elapsed.as_secs_f64(), elapsed.as_secs_f64());
        assert_eq!(created, n, "every create succeeds");

        // Wait for the indexer to catch up with the bulk load.
        let started = Instant::now();
        loop {
            let status = admin.get("/v1/admin/search").await;
            if status.body["pending"] == 0 && admin.get("/v1/pocs?per_page=1").await.body["total"].as_u64() == Some(n as u64) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("indexer catch-up after the bulk load                  {:>8.1} s", started.elapsed().as_secs_f64());

        // Indexer lag: acknowledged write → found by search, one write at a time.
        let mut lag = Vec::new();
        for i in 0..200 {
            let marker = format!("zlagmarker{i:04}");
            let body = json!({ "name": format!("{marker} probe"), "repository_url": "https://github.com/acme/probe", "language": "rust" });
            let res = member.post("/v1/pocs", &body).await;
            assert_eq!(res.status.as_u16(), 201, "{}", res.text);
            let acked = Instant::now();
            loop {
                let page = member.get(&format!("/v1/pocs?q={marker}")).await;
                // Neighbouring markers are one typo apart, so look for this one by name.
                if page.text.contains(&format!("\"{marker} probe\"")) {
                    break;
                }
                assert!(acked.elapsed() < Duration::from_secs(10), "write never became searchable: {}", page.text);
            }
            lag.push(acked.elapsed());
        }
        report("indexer lag (write acknowledged → searchable)", lag);

        // Search latency by kind, interleaved.
        let queries: [(&str, Vec<String>); 6] = [
            ("nothing matches (fixed cost)", vec!["/v1/pocs?language=cobol".to_owned()]),
            ("browse everything, newest first", vec!["/v1/pocs".to_owned()]),
            ("fuzzy (one typo)", WORDS.iter().map(|w| format!("/v1/pocs?q={}", typo(w))).collect()),
            ("prefix (typing)", WORDS.iter().map(|w| format!("/v1/pocs?q={}", &w[..3.min(w.len())])).collect()),
            ("facet filter (language + tag)", LANGUAGES.iter().enumerate().map(|(i, l)| format!("/v1/pocs?language={}&tags=tag{:03}", l.replace('+', "%2B"), i % 20)).collect()),
            ("combined (words + prefix + filters)", WORDS.iter().enumerate().map(|(i, w)| format!("/v1/pocs?q={w}%20{}&language={}&tags=tag{:03}", &WORDS[(i + 1) % WORDS.len()][..4.min(WORDS[(i + 1) % WORDS.len()].len())], LANGUAGES[i % 3], i % 5)).collect()),
        ];
        // Give the indexer its quiet period: it merges the index's segments when writes stop.
        let settle = std::env::var("POC_BENCH_SETTLE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(settle)).await;
        println!("index segments before the search phase            {:>8}", index.segments());
        for round in 0..50 {
            for (_, paths) in &queries {
                member.get(&paths[round % paths.len()]).await;
            }
        }
        let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); queries.len()];
        for round in 0..1_000 {
            for (k, (_, paths)) in queries.iter().enumerate() {
                let t = Instant::now();
                let res = member.get(&paths[round % paths.len()]).await;
                samples[k].push(t.elapsed());
                assert_eq!(res.status.as_u16(), 200);
            }
        }
        for ((label, _), s) in queries.iter().zip(samples) {
            report(&format!("search: {label}"), s);
        }
        std::fs::remove_dir_all(index_dir).ok();
    });
}

/// The word with two neighbouring letters swapped (one typo).
fn typo(word: &str) -> String {
    let mut chars: Vec<char> = word.chars().collect();
    if chars.len() >= 5 {
        chars.swap(2, 3);
    }
    chars.into_iter().collect()
}
