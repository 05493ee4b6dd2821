//! Chaos under load, with a ledger: five writers create PoCs, edit one, create dojos and queue
//! reports through the router, and edit a dojo's code and chat in it over its live socket,
//! logging every acknowledged write, while faults hit the
//! platform one at a time — SIGKILL to poc-, dojo- and media-service, the router, the control
//! plane and the cell's supervisor; the cell's Postgres shut down fast (SIGINT) and
//! immediately (SIGQUIT); the cell's disk full (its directory is on a 1 GiB tmpfs, filled to
//! the last byte until a write is refused, then freed). Each fault is injected once the
//! writers have been acknowledged again since the last one came back (no sleeps decide when),
//! and its recovery is measured from the signal to the first request that succeeds (or the
//! process listening again) — for the full disk from the moment space is free to the next
//! acknowledged write — against the budgets: a service ≤ 5 s, Postgres (and a full disk)
//! ≤ 10 s, the router ≤ 2 s. Afterwards every acknowledged write is present exactly once, and
//! whatever else is there is a write whose answer never came (in doubt: the client cannot
//! know). `./x soak` repeats the faults for many rounds (`MRBILL_CHAOS_ROUNDS`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use e2e_tests::ledger::{Ledger, Load, completed_report};
use e2e_tests::platform::{Platform, kill, pid_alive};
use serde_json::json;
use sqlx::Connection;
use tokio::sync::Mutex;

/// One fault: what is signalled, and how the test knows it is over.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Service(&'static str),
    Router,
    ControlPlane,
    Supervisor,
    Postgres(&'static str),
    DiskFull,
}

impl Fault {
    fn name(self) -> String {
        match self {
            Fault::Service(s) => format!("kill -9 {s}-service"),
            Fault::Router => "kill -9 router".into(),
            Fault::ControlPlane => "kill -9 control plane".into(),
            Fault::Supervisor => "kill -9 supervisor".into(),
            Fault::Postgres(sig) => format!("postgres {sig}"),
            Fault::DiskFull => "disk full".into(),
        }
    }

    fn budget(self) -> Duration {
        match self {
            Fault::Router => Duration::from_secs(2),
            Fault::Postgres(_) | Fault::DiskFull => Duration::from_secs(10),
            _ => Duration::from_secs(5),
        }
    }
}

fn state(cell_dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(cell_dir.join("state.json")).expect("state.json"))
        .expect("state json")
}

fn postmaster(cell_dir: &Path) -> u32 {
    cell_model::local::postmaster_pid(&cell_dir.join("pg/data")).expect("postmaster pid")
}

/// The pid the fault signals, and the signal.
fn target(platform: &Platform, cell_dir: &Path, fault: Fault) -> (u32, &'static str) {
    match fault {
        Fault::Service(s) => {
            let pid = state(cell_dir)["services"][s]["pid"].as_u64().expect("pid");
            (pid as u32, "KILL")
        }
        Fault::Router => (platform.router_pid().expect("router"), "KILL"),
        Fault::ControlPlane => (platform.control_plane_pid().expect("control plane"), "KILL"),
        Fault::Supervisor => {
            let pid = std::fs::read_to_string(cell_dir.join("supervisor.pid")).expect("pidfile");
            (pid.trim().parse().expect("pid"), "KILL")
        }
        Fault::Postgres(sig) => (postmaster(cell_dir), sig),
        Fault::DiskFull => unreachable!("a full disk is no signal"),
    }
}

/// Whether the platform serves again after `fault` (a request through the router succeeds;
/// for the control plane: it listens again; for the supervisor: a new one runs the cell).
async fn recovered(platform: &Platform, cell_dir: &Path, token: &str, fault: Fault) -> bool {
    let path = match fault {
        Fault::Service("dojo") => "/v1/dojos",
        Fault::Service("media") => "/v1/reports",
        Fault::ControlPlane => return platform.control_plane_pid().is_some(),
        Fault::Supervisor => {
            let supervised = cell_model::local::live_pid(&cell_dir.join("supervisor.pid"))
                .is_some_and(|pid| state(cell_dir)["pid"] == pid);
            if !supervised {
                return false;
            }
            "/v1/pocs?q=%22w1%22"
        }
        _ => "/v1/pocs?q=%22w1%22",
    };
    reqwest::Client::new()
        .get(format!("{}/t/acme{path}", platform.router_url()))
        .bearer_auth(token)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Fills the cell's filesystem until the cell refuses a write (or leaves one in doubt), then
/// frees it; how long after the space was free the next write was acknowledged.
async fn disk_full(platform: &Platform, ledger: &Mutex<Ledger>) -> Duration {
    let disk = platform.disk().expect("the cells' filesystem");
    // Refusals of unavailability (5xx) and writes left in doubt; not 429s, which the writers'
    // pace draws anyway.
    let troubles = || async {
        let l = ledger.lock().await;
        let unavailable: u32 = l.refused.range(500..).map(|(_, n)| n).sum();
        unavailable as usize + l.in_doubt.len()
    };
    let before = troubles().await;
    let hit = Instant::now();
    disk.fill();
    assert_eq!(disk.available(), 0, "the disk is full");
    while troubles().await == before {
        assert!(
            hit.elapsed() < Duration::from_secs(60),
            "writes went on with a full disk for a minute"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "disk full: a write refused after {} ms ({:?})",
        hit.elapsed().as_millis(),
        ledger.lock().await.refused
    );
    let acknowledged = ledger.lock().await.pocs.len();
    let freed = Instant::now();
    disk.free();
    while ledger.lock().await.pocs.len() == acknowledged {
        assert!(
            freed.elapsed() < Duration::from_secs(60),
            "no write acknowledged a minute after the disk had room again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    freed.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_write_survives_each_fault_and_each_recovers_within_budget() {
    let mut platform = Platform::up();
    platform.bound_cells("local", 1 << 30);
    let tenant = platform.create_tenant("acme");
    let cell = tenant["cell"]["cell_id"].as_str().expect("cell").to_owned();
    let cell_dir = platform.cell_dir(&cell);
    let token = platform.admin_token(&tenant).await;
    let api = platform.api("acme").with_token(&token);
    let edited = api
        .post(
            "/v1/pocs",
            &json!({ "name": "edited", "description": "start", "language": "rust",
                "tags": [], "repository_url": "https://github.com/acme/edited" }),
        )
        .await
        .assert_status(201)["id"]
        .as_str()
        .expect("poc")
        .to_owned();

    let load = Load::start(
        &format!("{}/t/acme", platform.router_url()),
        &token,
        &edited,
    );

    let faults = [
        Fault::Service("poc"),
        Fault::Service("dojo"),
        Fault::Service("media"),
        Fault::Router,
        Fault::ControlPlane,
        Fault::Supervisor,
        Fault::Postgres("INT"),
        Fault::Postgres("QUIT"),
        Fault::DiskFull,
    ];
    // `./x soak` runs the faults round after round (MRBILL_CHAOS_ROUNDS); the test command once.
    let rounds: usize = std::env::var("MRBILL_CHAOS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let mut report = Vec::new();
    for fault in (0..rounds).flat_map(|_| faults) {
        // Injected once the writers were acknowledged again since the last fault.
        let since = load.acknowledged().await;
        load.until_acknowledged(since, 5, Duration::from_secs(60))
            .await;
        if let Fault::DiskFull = fault {
            let took = disk_full(&platform, &load.ledger).await;
            eprintln!("{:<24} back after {:>5} ms", fault.name(), took.as_millis());
            report.push((fault, took));
            continue;
        }
        let (pid, signal) = target(&platform, &cell_dir, fault);
        let hit = Instant::now();
        kill(pid, signal);
        while pid_alive(pid) {
            assert!(
                hit.elapsed() < Duration::from_secs(30),
                "{} did not take",
                fault.name()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        while !recovered(&platform, &cell_dir, &token, fault).await {
            assert!(
                hit.elapsed() < Duration::from_secs(60),
                "nothing came back after {}",
                fault.name()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = hit.elapsed();
        eprintln!("{:<24} back after {:>5} ms", fault.name(), took.as_millis());
        report.push((fault, took));
    }
    // The writers go on a little against the recovered platform, then stop.
    let since = load.acknowledged().await;
    load.until_acknowledged(since, 5, Duration::from_secs(60))
        .await;
    let ledger = load.finish().await;
    eprintln!(
        "acknowledged {} PoCs, {} edits, {} dojos, {} reports, {} live edits and chats \
         ({} sockets reopened); refused {:?}; in doubt {} (+{} chats)",
        ledger.pocs.len(),
        ledger.edits.len(),
        ledger.dojos.len(),
        ledger.reports.len(),
        ledger.live.chats.len(),
        ledger.live.reconnects,
        ledger.refused,
        ledger.in_doubt.len(),
        ledger.live.chats_in_doubt.len(),
    );

    // A fault is unavailability (503 + Retry-After), never an internal error.
    assert!(
        !ledger.refused.contains_key(&500),
        "a fault answered 500: {:?}",
        ledger.refused
    );

    // PoCs: every acknowledged one exactly once; any other row is a create in doubt, once.
    let url = std::fs::read_to_string(cell_dir.join("secrets/poc-database-url")).expect("url");
    let mut db = sqlx::PgConnection::connect(url.trim())
        .await
        .expect("poc db");
    let rows: Vec<(uuid::Uuid, String, String)> =
        sqlx::query_as("SELECT id, name, description FROM pocs WHERE deleted_at IS NULL")
            .fetch_all(&mut db)
            .await
            .expect("pocs");
    let ids: BTreeMap<String, String> = rows
        .iter()
        .map(|(id, name, _)| (id.to_string(), name.clone()))
        .collect();
    for (id, name) in &ledger.pocs {
        assert_eq!(
            ids.get(id),
            Some(name),
            "acknowledged PoC {name} ({id}) lost"
        );
    }
    let acked: BTreeSet<&str> = ledger.pocs.iter().map(|(id, _)| id.as_str()).collect();
    let mut names = BTreeSet::new();
    for (id, name, _) in &rows {
        assert!(names.insert(name.clone()), "PoC {name} exists twice");
        let id = id.to_string();
        assert!(
            acked.contains(id.as_str()) || name == "edited" || ledger.in_doubt.contains(name),
            "PoC {name} ({id}) appeared, though no writer was told of it nor left in doubt"
        );
    }
    // The edited PoC holds the last acknowledged edit, or a later one in doubt.
    let (_, _, description) = rows
        .iter()
        .find(|(id, _, _)| id.to_string() == edited)
        .expect("the edited PoC");
    let last = ledger.edits.get(&edited).expect("edits acknowledged");
    let n = |d: &str| d.trim_start_matches("edit ").parse::<u64>().unwrap_or(0);
    assert!(
        description == last || (ledger.in_doubt.contains(description) && n(description) > n(last)),
        "the PoC says {description:?}; the last acknowledged edit was {last:?}"
    );
    // Dojos: every acknowledged one; others only if in doubt.
    let url = std::fs::read_to_string(cell_dir.join("secrets/dojo-database-url")).expect("url");
    let mut db = sqlx::PgConnection::connect(url.trim())
        .await
        .expect("dojo db");
    let dojos: Vec<(uuid::Uuid, String)> = sqlx::query_as("SELECT id, name FROM dojos")
        .fetch_all(&mut db)
        .await
        .expect("dojos");
    let found: BTreeSet<String> = dojos.iter().map(|(id, _)| id.to_string()).collect();
    for id in &ledger.dojos {
        assert!(found.contains(id), "acknowledged dojo {id} lost");
    }
    for (id, name) in &dojos {
        assert!(
            ledger.dojos.contains(&id.to_string()) || ledger.in_doubt.contains(name),
            "dojo {name} appeared unacknowledged"
        );
    }
    // The live dojo: every acknowledged edit and chat exactly once, and the sockets the faults
    // closed were opened again.
    ledger.live.verify(&platform, "acme", &token).await;
    assert!(
        ledger.live.reconnects > 0,
        "no fault closed the live socket"
    );
    // Reports queued before, during and after the faults complete.
    for job in &ledger.reports {
        completed_report(&api, job).await;
    }

    for (fault, took) in report {
        assert!(
            took <= fault.budget(),
            "{} took {} ms to recover (budget {} ms)",
            fault.name(),
            took.as_millis(),
            fault.budget().as_millis()
        );
    }
}
