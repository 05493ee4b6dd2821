//! Search as a user meets it (not part of the test command; prints numbers for
//! docs/benchmarks.md): the platform `mrbill up` starts from the release binaries, one tenant
//! holding 100,000 PoCs, searched through the router and straight at its poc-service.
//!
//! `cargo build --release --bins && cargo bench -p e2e-tests --bench search_platform`
//! (`./x bench search-platform`). `SEARCH_BENCH_N` changes the number of PoCs,
//! `SEARCH_BENCH_ROUNDS` the requests per kind and target (default 3000),
//! `SEARCH_BENCH_SETTLE_SECS` the quiet period before measuring (default 20 s: the indexer merges
//! its segments once writes stop, the steady state of a cell).
//!
//! The PoCs are the search benchmark's corpus (`poc-service/benches/common/corpus.rs`), written
//! into the cell's database in batches and indexed by the cell's own indexer, as a restore or a
//! bulk import would be. Searches are by a member, so the visibility filter is always on.
//!
//! The load generator is this program again, in its own process (`SEARCH_BENCH_LOADGEN` holds
//! its job), on one thread with one keep-alive connection to each target: every kind's request
//! goes to the service and through the router in the same round, the order alternating, so
//! noise falls on both alike. It prints the table and the budgets.

use std::time::{Duration, Instant};

use e2e_tests::platform::Platform;
use e2e_tests::seed;
use serde_json::{Value, json};

#[path = "../../../tenant-cell/poc-service/benches/common/corpus.rs"]
mod corpus;

use corpus::{LANGUAGES, Rng, WORDS};

/// The load generator's job: where to send what.
const JOB_VAR: &str = "SEARCH_BENCH_LOADGEN";

fn main() {
    if let Ok(job) = std::env::var(JOB_VAR) {
        let job: Value = serde_json::from_str(&job).expect("the job is JSON");
        load_generator(&job);
        return;
    }
    let n = env_or("SEARCH_BENCH_N", 100_000);
    let rounds = env_or("SEARCH_BENCH_ROUNDS", 3_000);
    let settle = env_or("SEARCH_BENCH_SETTLE_SECS", 20);
    let rt = seed::runtime();
    // One load generator sends what many users would: the router's per-tenant and per-client
    // budgets (429 beyond them) are raised out of the way, as in the router's own bench.
    let platform = Platform::up_with(&[
        ("MRBILL_TENANT_RATE", "1000000"),
        ("MRBILL_CLIENT_RATE", "1000000"),
    ]);
    println!("binaries: {}", test_support::bin_dir().display());
    let tenant = platform.create_tenant("search");
    let cell = tenant["cell"]["cell_id"].as_str().expect("cell").to_owned();
    let direct = tenant["cell"]["status"]["endpoints"]["services"]["poc"]
        .as_str()
        .unwrap_or_else(|| panic!("no poc endpoint in {tenant:#}"))
        .to_owned();
    let (admin, member) = rt.block_on(async {
        let admin = platform.admin_token(&tenant).await;
        let mut members = Vec::new();
        for i in 0..MEMBERS {
            let email = format!("dev{i}@search.example");
            let registered = platform.invite_member("search", &admin, &email).await;
            members.push(
                registered["access_token"]
                    .as_str()
                    .expect("token")
                    .to_owned(),
            );
        }
        (admin, members.swap_remove(0))
    });

    let started = Instant::now();
    rt.block_on(load_corpus(&platform, &cell, n));
    println!(
        "loaded {n} PoCs into the cell's database        {:>6.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    rt.block_on(seed::indexed(&platform, "search", &admin));
    println!(
        "indexed by the cell's poc-service             {:>6.1} s",
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(settle));

    let job = json!({
        "router": format!("{}/t/search", platform.router_url()),
        "direct": direct,
        "token": member,
        "rounds": rounds,
        "kinds": queries(),
    });
    let status = std::process::Command::new(std::env::current_exe().expect("this program"))
        .env(JOB_VAR, job.to_string())
        .status()
        .expect("start the load generator");
    assert!(status.success(), "the load generator failed: {status}");
}

fn env_or(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Members who own the PoCs, as in the search benchmark: the first one searches.
const MEMBERS: usize = 8;

/// `n` PoCs of the corpus, newest last, owned in turn by the members (a quarter private, so
/// the searching member cannot see 7/32 of them), as the search benchmark writes them.
async fn load_corpus(platform: &Platform, cell: &str, n: u64) {
    let mut db = seed::poc_db(platform, cell).await;
    let owners: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM users WHERE role = 'member'")
        .fetch_all(&mut db)
        .await
        .expect("the users");
    let mut rng = Rng(0x5eed);
    let mut i = 0;
    while i < n {
        let batch = (n - i).min(5_000);
        let mut rows = Rows::default();
        for k in i..i + batch {
            let g = corpus::generate(&mut rng, k as usize);
            rows.id.push(uuid::Uuid::new_v4());
            rows.owner.push(owners[k as usize % owners.len()]);
            rows.name.push(g.name);
            rows.description.push(g.description);
            rows.url.push(format!("https://github.com/acme/poc-{k}"));
            rows.language.push(g.language.to_owned());
            rows.tags.push(g.tags.join(","));
            rows.framework.push(g.framework.to_owned());
            rows.visibility
                .push(if g.private { "private" } else { "tenant" }.to_owned());
            rows.age_ms.push((n - k) as i64);
        }
        sqlx::query(
            "INSERT INTO pocs (id, owner_id, name, description, repository_url, language, tags,
                               frameworks, visibility, created_at, updated_at)
             SELECT id, owner, name, description, url, language, string_to_array(tags, ','),
                    ARRAY[framework], visibility,
                    now() - age * interval '1 millisecond', now() - age * interval '1 millisecond'
             FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::text[], $10::bigint[])
                  AS t(id, owner, name, description, url, language, tags, framework, visibility, age)",
        )
        .bind(&rows.id)
        .bind(&rows.owner)
        .bind(&rows.name)
        .bind(&rows.description)
        .bind(&rows.url)
        .bind(&rows.language)
        .bind(&rows.tags)
        .bind(&rows.framework)
        .bind(&rows.visibility)
        .bind(&rows.age_ms)
        .execute(&mut db)
        .await
        .expect("load a batch");
        i += batch;
    }
}

/// One batch of PoCs, column by column.
#[derive(Default)]
struct Rows {
    id: Vec<uuid::Uuid>,
    owner: Vec<uuid::Uuid>,
    name: Vec<String>,
    description: Vec<String>,
    url: Vec<String>,
    language: Vec<String>,
    tags: Vec<String>,
    framework: Vec<String>,
    visibility: Vec<String>,
    age_ms: Vec<i64>,
}

/// The kinds of search measured, each with the paths it cycles through (the search
/// benchmark's queries).
fn queries() -> Value {
    let word = |i: usize| WORDS[i % WORDS.len()];
    json!([
        ["nothing matches (fixed cost)", ["/v1/pocs?language=cobol"]],
        [
            "fuzzy (one typo)",
            WORDS
                .iter()
                .map(|w| format!("/v1/pocs?q={}", typo(w)))
                .collect::<Vec<_>>()
        ],
        [
            "prefix (typing)",
            WORDS
                .iter()
                .map(|w| format!("/v1/pocs?q={}", &w[..3.min(w.len())]))
                .collect::<Vec<_>>()
        ],
        [
            "facet filter (language + tag)",
            LANGUAGES
                .iter()
                .enumerate()
                .map(|(i, l)| format!(
                    "/v1/pocs?language={}&tags=tag{:03}",
                    l.replace('+', "%2B"),
                    i % 20
                ))
                .collect::<Vec<_>>()
        ],
        [
            "combined (words + prefix + filters)",
            (0..WORDS.len())
                .map(|i| format!(
                    "/v1/pocs?q={}%20{}&language={}&tags=tag{:03}",
                    word(i),
                    &word(i + 1)[..4.min(word(i + 1).len())],
                    LANGUAGES[i % 3],
                    i % 5
                ))
                .collect::<Vec<_>>()
        ],
        ["browse everything, newest first", ["/v1/pocs"]],
    ])
}

/// The word with two neighbouring letters swapped (one typo).
fn typo(word: &str) -> String {
    let mut chars: Vec<char> = word.chars().collect();
    if chars.len() >= 5 {
        chars.swap(2, 3);
    }
    chars.into_iter().collect()
}

/// The load generator's process: runs the job, prints the table and the budgets.
fn load_generator(job: &Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let token = job["token"].as_str().expect("token");
    let bases = [
        job["direct"].as_str().expect("direct"),
        job["router"].as_str().expect("router"),
    ];
    let rounds = job["rounds"].as_u64().expect("rounds") as usize;
    let kinds: Vec<(String, Vec<String>)> =
        serde_json::from_value(job["kinds"].clone()).expect("kinds");
    // One client per target, so each keeps its own connection alive.
    let clients = [client(), client()];
    // samples[kind][target]
    let mut samples = vec![[Vec::new(), Vec::new()]; kinds.len()];
    rt.block_on(async {
        for round in 0..rounds + 50 {
            for (k, (_, paths)) in kinds.iter().enumerate() {
                let path = &paths[round % paths.len()];
                let mut totals = [0, 0];
                for step in 0..2 {
                    let target = (round + step) % 2;
                    let started = Instant::now();
                    let res = clients[target]
                        .get(format!("{}{path}", bases[target]))
                        .bearer_auth(token)
                        .send()
                        .await
                        .expect("request");
                    let status = res.status();
                    let body: Value = res.json().await.expect("JSON");
                    let took = started.elapsed();
                    assert_eq!(status, 200, "{path}: {body}");
                    totals[target] = body["total"].as_u64().expect("total");
                    // The first 50 rounds warm up connections and caches.
                    if round >= 50 {
                        samples[k][target].push(took);
                    }
                }
                assert_eq!(totals[0], totals[1], "{path}: both answer alike");
            }
        }
    });
    println!(
        "{:<36} {:>20} {:>20} {:>20}",
        "search (ms)", "service p50 / p99", "router p50 / p99", "router adds p50/p99"
    );
    let mut verdicts = Vec::new();
    for ((label, _), [direct, routed]) in kinds.iter().zip(samples) {
        let (d50, d99) = percentiles(direct);
        let (r50, r99) = percentiles(routed);
        println!(
            "{label:<36} {d50:>10.2} / {d99:>7.2} {r50:>10.2} / {r99:>7.2} {:>10.2} / {:>7.2}",
            r50 - d50,
            r99 - d99
        );
        verdicts.push((label.clone(), d99, r99));
    }
    println!("budgets (n = {rounds} per kind and target):");
    for (label, d99, r99) in verdicts {
        let browse = label.starts_with("browse");
        let service_budget = if browse { 5.0 } else { f64::INFINITY };
        println!(
            "  {label:<36} through the router p99 ≤ 15 ms: {}; router adds ≤ 0.5 ms: {}{}",
            met(r99 <= 15.0),
            met(r99 - d99 <= 0.5),
            if browse {
                format!("; service p99 ≤ 5 ms: {}", met(d99 <= service_budget))
            } else {
                String::new()
            }
        );
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .expect("client")
}

/// p50 and p99 in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at =
        |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.99))
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}
