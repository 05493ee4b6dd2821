//! The mobile core's numbers (not part of the test command); prints them for
//! docs/benchmarks.md. The core is used as the apps use it, minus the bindings' thin layer:
//!
//! 1. Cold start → first PoC list: a new `MrBill` (no session), resolve the company through
//!    the router, log in, the first page of PoCs.
//! 2. Dojo edit round trip: two sessions of one dojo through the router; an insert on one until
//!    the other's listener has it (p50/p99).
//! 3. The release library's size (`libmrbill_core.so`, stripped), when built.
//!
//! Run with release binaries: `./x bench mobile`
//! (`cargo build --release --bins && cargo build --release -p mrbill-core && cargo bench -p e2e-tests --bench mobile`).

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use e2e_tests::PASSWORD;
use e2e_tests::platform::Platform;
use mrbill_core::{DojoListener, LiveState, MemoryTokenStore, MrBill, PocQuery};
use wire_types::dojos::{ChatMessage, CreateDojo, Peer};

const STARTS: usize = 20;
const EDITS: usize = 200;

/// Hands each code change to the bench.
struct Changes(std::sync::Mutex<mpsc::Sender<String>>);

impl DojoListener for Changes {
    fn on_code(&self, code: String) {
        let _ = self.0.lock().expect("sender").send(code);
    }
    fn on_chat(&self, _: ChatMessage) {}
    fn on_peers(&self, _: Vec<Peer>) {}
    fn on_cursors(&self, _: Vec<mrbill_core::RemoteCursor>) {}
    fn on_signal(&self, _: u64, _: String) {}
    fn on_state(&self, _: LiveState) {}
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let platform = Platform::up();
    println!("binaries: {}", test_support::bin_dir().display());
    let tenant = platform.create_tenant("phone");
    rt.block_on(platform.admin_token(&tenant));
    let email = tenant["admin_invite"]["email"]
        .as_str()
        .expect("email")
        .to_owned();
    let router = platform.router_url().to_owned();
    let query = PocQuery {
        text: None,
        language: None,
        tags: Vec::new(),
        mine: false,
        page: 1,
        per_page: 20,
    };

    let mut starts = Vec::new();
    for _ in 0..STARTS {
        let began = Instant::now();
        rt.block_on(async {
            let core = MrBill::new(router.clone(), MemoryTokenStore::new()).expect("core");
            core.resolve("phone".into()).await.expect("resolve");
            core.login(email.clone(), PASSWORD.into())
                .await
                .expect("login");
            core.search_pocs(query.clone()).await.expect("pocs");
        });
        starts.push(ms(began.elapsed()));
    }
    println!(
        "cold start → first PoC list (n={STARTS}): p50 {:.1} ms, max {:.1} ms",
        percentile(&mut starts, 0.5),
        percentile(&mut starts, 1.0)
    );

    let trips = rt.block_on(async {
        let signed_in = || async {
            let core = MrBill::new(router.clone(), MemoryTokenStore::new()).expect("core");
            core.resolve("phone".into()).await.expect("resolve");
            core.login(email.clone(), PASSWORD.into())
                .await
                .expect("login");
            core
        };
        let (a, b) = (signed_in().await, signed_in().await);
        let dojo = a
            .create_dojo(CreateDojo {
                name: "Round trips".into(),
                description: String::new(),
                language: "rust".into(),
                max_participants: None,
                private: false,
                initial_code: String::new(),
                scheduled_start: None,
            })
            .await
            .expect("dojo");
        let (tx_a, _rx_a) = mpsc::channel();
        let (tx_b, rx_b) = mpsc::channel();
        let writer = a
            .clone()
            .open_dojo(dojo.id, Arc::new(Changes(std::sync::Mutex::new(tx_a))))
            .await
            .expect("open");
        let _reader = b
            .clone()
            .open_dojo(dojo.id, Arc::new(Changes(std::sync::Mutex::new(tx_b))))
            .await
            .expect("open");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut trips = Vec::new();
        for i in 0..EDITS {
            let marker = format!("<{i}>");
            let began = Instant::now();
            writer.insert(u32::MAX, marker.clone());
            let rx = &rx_b;
            loop {
                let code = tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_secs(5)))
                    .expect("the edit arrives");
                if code.contains(&marker) {
                    break;
                }
            }
            trips.push(ms(began.elapsed()));
        }
        trips
    });
    let mut trips = trips;
    println!(
        "dojo edit round trip through the router (n={EDITS}): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&mut trips, 0.5),
        percentile(&mut trips, 0.99)
    );

    let library = test_support::bin_dir()
        .parent()
        .map(|target| target.join("release/libmrbill_core.so"));
    if let Some(library) = library.filter(|l| l.exists()) {
        let stripped = std::env::temp_dir().join("libmrbill_core.stripped.so");
        let ok = std::process::Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(&library)
            .status()
            .is_ok_and(|s| s.success());
        let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len()) as f64 / 1e6;
        println!(
            "release libmrbill_core.so (x86_64): {:.1} MB, {:.1} MB stripped",
            size(&library),
            if ok { size(&stripped) } else { f64::NAN }
        );
    }
}
