//! Dojo fan-out through the router, with persistence on: `./x bench dojo` (or, with the release
//! `dojo-service` and the router's `--profile router` build, `cargo bench -p dojo-service
//! --bench fanout`).
//!
//! The real `dojo-service` and `mrbill-router` binaries as they ship, each its own process; a
//! private Postgres cluster; poc-service in this process (it issues the token; revocation
//! answers are cached). N editors (WebSocket clients through the router, each with its own
//! yrs document) each send 5 updates/s at random phases; every other editor receives each update. Fan-out
//! latency = from just before the editor sends to the moment another editor has received it,
//! over all (update, receiver) pairs. Rooms of `DOJO_BENCH_SIZES` (default 50,100,150,200,300)
//! editors, `DOJO_BENCH_SECS` (default 10) each. Before that, on the fresh process:
//! dojo-service's memory per connection and per loaded room, and `DOJO_BENCH_CONNECTIONS`
//! (default 4000) idle connections held at once. Everything shares the machine's 2 cores, the load generator included.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use test_support::rss_kib;
use tokio_tungstenite::tungstenite::Message as Ws;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, Text, Transact};

struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}

fn write_secret(dir: &Path, name: &str, value: &str) -> PathBuf {
    let path = dir.join(name);
    service_kit::secrets::write_secret(&path, value).expect("secret (0600)");
    path
}

/// Send instants of updates in flight, by a hash of their frame: the server forwards an update
/// as the same bytes (`Message::Sync(Update)`), so receivers need not decode anything. Sharded,
/// so 2 threads looking up 200k frames/s do not queue on one lock.
struct InFlight([Mutex<HashMap<u64, Instant>>; 64]);

impl Default for InFlight {
    fn default() -> Self {
        Self(std::array::from_fn(|_| Mutex::default()))
    }
}

impl InFlight {
    fn key(bytes: &[u8]) -> u64 {
        let mut h = DefaultHasher::new();
        bytes.hash(&mut h);
        h.finish()
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Instant>> {
        self.0[(key % 64) as usize].lock().expect("shard")
    }

    fn sent(&self, frame: &[u8]) {
        let key = Self::key(frame);
        self.shard(key).insert(key, Instant::now());
    }

    /// Milliseconds since `frame` was sent, if it is an update we sent.
    fn latency(&self, frame: &[u8], received: Instant) -> Option<f64> {
        let key = Self::key(frame);
        let sent = self.shard(key).get(&key).copied()?;
        Some(received.duration_since(sent).as_secs_f64() * 1000.0)
    }

    fn len(&self) -> usize {
        self.0.iter().map(|s| s.lock().expect("shard").len()).sum()
    }
}

/// One editor: sends 5 updates/s until `until`, records the latency of what it receives.
async fn editor(
    url: String,
    in_flight: Arc<InFlight>,
    run_for: Duration,
    ready: Arc<tokio::sync::Barrier>,
) -> Vec<f64> {
    let (socket, _) = tokio_tungstenite::connect_async_with_config(&url, None, true)
        .await
        .expect("websocket through the router");
    let (mut sink, mut stream) = socket.split();
    let doc = Doc::new();
    let code = doc.get_or_insert_text("code");
    ready.wait().await;
    let until = Instant::now() + run_for;
    let mut latencies = Vec::new();
    let phase = Duration::from_millis(u64::from(rand_u32() % 200));
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + phase,
        Duration::from_millis(200),
    );
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if Instant::now() >= until {
                    break;
                }
                n += 1;
                let update = {
                    let before = doc.transact().state_vector();
                    let mut txn = doc.transact_mut();
                    // Typing on at the end of what this editor typed (its cursor): the pattern
                    // of real editing. Inserting at 0 in a document that never receives the
                    // others' text would make every update conflict with every other editor's
                    // (an adversarial CRDT case that synced clients never produce).
                    let end = code.len(&txn);
                    code.insert(&mut txn, end, &format!("{n};"));
                    drop(txn);
                    doc.transact().encode_state_as_update_v1(&before)
                };
                let frame = Message::Sync(SyncMessage::Update(update)).encode_v1();
                in_flight.sent(&frame);
                if sink.send(Ws::Binary(frame.into())).await.is_err() {
                    break;
                }
            }
            next = stream.next() => match next {
                Some(Ok(Ws::Binary(bytes))) => {
                    if let Some(ms) = in_flight.latency(&bytes, Instant::now()) {
                        latencies.push(ms);
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    }
    // Drain what is still arriving for a moment.
    let drain_until = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Some(Ok(Ws::Binary(bytes)))) =
        tokio::time::timeout_at(drain_until, stream.next()).await
    {
        if let Some(ms) = in_flight.latency(&bytes, Instant::now()) {
            latencies.push(ms);
        }
    }
    let _ = sink.close().await;
    latencies
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("random");
    u32::from_le_bytes(b)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let sizes: Vec<usize> = std::env::var("DOJO_BENCH_SIZES")
        .unwrap_or_else(|_| "50,100,150,200,300".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let secs: u64 = env_or("DOJO_BENCH_SECS", 10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bin = test_support::bin_dir();
    let dir = std::env::temp_dir().join(format!("dojo-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");

    // poc-service in-process: issues the token and answers revocation checks.
    let cell = "c-bench";
    let (poc_internal, token, poc_config, _stop_poc) = rt.block_on(async {
        let url = test_support::test_database(&poc_service::MIGRATOR)
            .await
            .expect("poc db");
        let config = poc_service::Config::for_tests(cell, "acme", &url).expect("config");
        let pool = sqlx::PgPool::connect(&url).await.expect("pool");
        let app = poc_service::App::build_with_pool(config.clone(), pool.clone())
            .await
            .expect("poc");
        let public = format!("http://{}", app.public_addr());
        let internal = format!("http://{}", app.internal_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let invite = poc_service::bootstrap::bootstrap_admin(&pool, "admin@acme.test", None)
            .await
            .expect("bootstrap")
            .invite_token;
        let tokens = test_support::ApiClient::new(public)
            .post(
                "/v1/auth/register",
                &json!({ "email": "admin@acme.test", "password": "correct horse battery staple", "invite_token": invite }),
            )
            .await
            .assert_status(201)
            .clone();
        let token = tokens["access_token"].as_str().expect("token").to_owned();
        (internal, token, config, stop)
    });

    // dojo-service, its own process, its own database.
    let dojo_db = rt
        .block_on(test_support::test_database(&dojo_service::MIGRATOR))
        .expect("dojo db");
    let public_key =
        service_kit::jwt::public_pem_from_private(&poc_config.jwt_private_key).expect("key");
    let dojo_port = free_port();
    let dojo = Stopped(
        Command::new(bin.join("dojo-service"))
            .env("MRBILL_CELL_ID", cell)
            .env("MRBILL_TENANT", "acme")
            .env("MRBILL_HTTP_ADDR", format!("127.0.0.1:{dojo_port}"))
            .env(
                "MRBILL_DATABASE_URL_FILE",
                write_secret(&dir, "db", &dojo_db),
            )
            .env(
                "MRBILL_JWT_PUBLIC_KEY_FILE",
                write_secret(&dir, "pub.pem", &public_key),
            )
            .env("MRBILL_JWT_KID", &poc_config.jwt_kid)
            .env(
                "MRBILL_SERVICE_TOKEN_FILE",
                write_secret(
                    &dir,
                    "service-token",
                    secrecy::ExposeSecret::expose_secret(&poc_config.service_token),
                ),
            )
            .env("MRBILL_POC_INTERNAL_URL", &poc_internal)
            .env("MRBILL_TRUSTED_PROXIES", "127.0.0.1")
            .env("MRBILL_DOJO_MESSAGES_PER_SEC", "1000")
            .envs(
                std::env::var("MRBILL_DOJO_COMPACT_EVERY")
                    .ok()
                    .map(|v| ("MRBILL_DOJO_COMPACT_EVERY", v)),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("dojo.log")).expect("log"))
            .spawn()
            .expect("dojo-service (cargo build --release --bins)"),
    );
    if std::panic::catch_unwind(|| wait_for_port(dojo_port)).is_err() {
        panic!(
            "dojo-service did not start: {}",
            std::fs::read_to_string(dir.join("dojo.log")).unwrap_or_default()
        );
    }

    // mrbill-router in front of it.
    let router_port = free_port();
    let snapshot = dir.join("routes.json");
    std::fs::write(
        &snapshot,
        json!({ "revision": 1, "routes": { "acme": {
            "tenant": "acme", "cell_id": cell, "generation": 1, "state": "active",
            "services": { "poc": "http://127.0.0.1:1", "dojo": format!("http://127.0.0.1:{dojo_port}") } } } })
        .to_string(),
    )
    .expect("snapshot");
    let _router = Stopped(
        Command::new(cell_model::local::router_binary(&bin))
            .env("MRBILL_ROUTER_ADDR", format!("127.0.0.1:{router_port}"))
            .env(
                "MRBILL_PUBLIC_URL",
                format!("http://127.0.0.1:{router_port}"),
            )
            .env("MRBILL_ROUTER_SNAPSHOT", &snapshot)
            .env("MRBILL_TENANT_RATE", "100000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mrbill-router"),
    );
    wait_for_port(router_port);
    let endpoint = format!("http://127.0.0.1:{router_port}/t/acme");
    let api = test_support::ApiClient::new(endpoint.clone()).with_token(&token);
    let create = |name: String| {
        let api = api.clone();
        async move {
            api.post(
                "/v1/dojos",
                &json!({ "name": name, "language": "rust", "max_participants": 500 }),
            )
            .await
            .assert_status(201)["id"]
                .as_str()
                .expect("id")
                .to_owned()
        }
    };

    // Memory: per connection (one room, many idle sockets) and per loaded room.
    let pid = dojo.0.id();
    let base = rss_kib(pid);
    let idle_conns = 200;
    let room = rt.block_on(create("memory".into()));
    let direct = format!("ws://127.0.0.1:{dojo_port}/v1/dojos/{room}/live?token={token}");
    // Fresh: measured before any load, so freed memory the allocator keeps does not hide it.
    let sockets = rt.block_on(async {
        let mut sockets = Vec::new();
        for _ in 0..idle_conns {
            sockets.push(
                tokio_tungstenite::connect_async(&direct)
                    .await
                    .expect("connect")
                    .0,
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        sockets
    });
    let with_conns = rss_kib(pid);
    let rooms = 100;
    let room_sockets = rt.block_on(async {
        let mut sockets = Vec::new();
        for i in 0..rooms {
            let id = create(format!("room {i}")).await;
            let url = format!("ws://127.0.0.1:{dojo_port}/v1/dojos/{id}/live?token={token}");
            sockets.push(
                tokio_tungstenite::connect_async(&url)
                    .await
                    .expect("connect")
                    .0,
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        sockets
    });
    let with_rooms = rss_kib(pid);
    println!(
        "dojo-service RSS: {:.1} MB fresh and idle; +{:.1} KB per idle connection ({idle_conns} in one room); +{:.1} KB per loaded room with one connection ({rooms} rooms)",
        base as f64 / 1024.0,
        (with_conns.saturating_sub(base)) as f64 / f64::from(idle_conns),
        (with_rooms.saturating_sub(with_conns)) as f64 / f64::from(rooms),
    );
    drop(sockets);
    drop(room_sockets);

    // Connections one instance holds: `DOJO_BENCH_CONNECTIONS` (default 4000) idle sockets over
    // rooms of 200, each admitted (welcome received), then one edit reaches a whole room.
    let target: usize = env_or("DOJO_BENCH_CONNECTIONS", 4000);
    let started = Instant::now();
    let before = rss_kib(pid);
    let held = rt.block_on(async {
        let mut held = Vec::new();
        for r in 0..target.div_ceil(200) {
            let id = create(format!("capacity {r}")).await;
            let url = format!("ws://127.0.0.1:{dojo_port}/v1/dojos/{id}/live?token={token}");
            for _ in 0..200.min(target - held.len()) {
                let (mut socket, _) =
                    tokio_tungstenite::connect_async_with_config(&url, None, true)
                        .await
                        .expect("connect");
                // Admitted: the first frame is the welcome.
                let first = tokio::time::timeout(Duration::from_secs(10), socket.next()).await;
                assert!(matches!(first, Ok(Some(Ok(Ws::Binary(_))))), "admitted");
                held.push(socket);
            }
        }
        held
    });
    let after = rss_kib(pid);
    let each_kib = (after.saturating_sub(before)) as f64 / held.len().max(1) as f64;
    println!(
        "connections per instance: {} idle sockets held in {} rooms ({:.1} s to open), RSS {:.1} MB (+{each_kib:.1} KB each: ≈ {:.0}k connections per GiB)",
        held.len(),
        target.div_ceil(200),
        started.elapsed().as_secs_f64(),
        after as f64 / 1024.0,
        1024.0 * 1024.0 / each_kib.max(1.0) / 1000.0,
    );
    drop(held);
    std::thread::sleep(Duration::from_secs(1));

    println!(
        "dojo fan-out through mrbill-router, persistence on; each editor 5 updates/s; {secs} s per size"
    );
    println!(
        "{:>8} {:>10} {:>12} {:>9} {:>9} {:>9} {:>10}",
        "editors", "updates/s", "deliveries/s", "p50 ms", "p99 ms", "max ms", "budget"
    );
    let mut largest_ok = 0;
    for &size in &sizes {
        let dojo_id = rt.block_on(create(format!("fan-out {size}")));
        // `DOJO_BENCH_DIRECT=1` skips the router, to see its share.
        let base = if std::env::var_os("DOJO_BENCH_DIRECT").is_some() {
            format!("ws://127.0.0.1:{dojo_port}")
        } else {
            endpoint.replacen("http", "ws", 1)
        };
        let url = format!("{base}/v1/dojos/{dojo_id}/live?token={token}");
        let in_flight: Arc<InFlight> = Arc::default();
        let ready = Arc::new(tokio::sync::Barrier::new(size));
        let mut latencies: Vec<f64> = rt.block_on(async {
            let tasks: Vec<_> = (0..size)
                .map(|_| {
                    tokio::spawn(editor(
                        url.clone(),
                        in_flight.clone(),
                        Duration::from_secs(secs),
                        ready.clone(),
                    ))
                })
                .collect();
            let mut all = Vec::new();
            for task in tasks {
                all.extend(task.await.expect("editor"));
            }
            all
        });
        latencies.sort_by(f64::total_cmp);
        let sent = in_flight.len();
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        let ok = p99 <= 10.0;
        if ok {
            largest_ok = largest_ok.max(size);
        }
        println!(
            "{size:>8} {:>10.0} {:>12.0} {p50:>9.2} {p99:>9.2} {:>9.2} {:>10}",
            sent as f64 / secs as f64,
            latencies.len() as f64 / secs as f64,
            latencies.last().copied().unwrap_or(f64::NAN),
            if ok { "met" } else { "missed" }
        );
    }
    println!("largest room meeting p99 ≤ 10 ms: {largest_ok} editors (target ≥ 200)");

    std::fs::remove_dir_all(dir).ok();
}
