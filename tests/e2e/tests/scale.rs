//! `mrbill cell scale` with the real binaries: a cell runs more replicas of a service (the
//! supervisor starts them, each with its own ports, log and search index), the route lists
//! them and the router spreads requests over them; every replica finds every PoC; bounds are
//! the tier's; scaling down takes replicas out of the route before they stop.

use std::time::Duration;

use e2e_tests::platform::{Platform, wait_until};
use serde_json::json;
use test_support::live::Live;

/// Running processes of `binary` for `cell`.
fn processes(cell: &str, binary: &str) -> usize {
    e2e_tests::platform::cell_services(cell)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(binary))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_scales_out_and_in_and_every_replica_serves() {
    let platform = Platform::up();
    let tenant = platform.create_tenant("acme");
    let cell = tenant["cell"]["cell_id"].as_str().expect("cell").to_owned();
    let token = platform.admin_token(&tenant).await;
    let api = platform.api("acme").with_token(&token);
    assert_eq!(processes(&cell, "poc-service"), 1);

    // Beyond the tier's bounds: refused, nothing changes.
    let too_many = platform.mrbill(&["cell", "scale", "acme", "--service", "poc=3"]);
    too_many.assert_failure(5, "validation_failed");
    assert!(
        too_many.stderr.contains("1–2 in tier small"),
        "{}",
        too_many.stderr
    );
    let dojo = platform.mrbill(&["cell", "scale", "acme", "--service", "dojo=3"]);
    dojo.assert_failure(5, "validation_failed");
    // The database: a class of the tier's, storage that only grows up to the tier's maximum.
    for (args, said) in [
        (
            &["--db-class", "db.r7g.4xlarge"][..],
            "one of db.t4g.small, db.t4g.medium in tier small",
        ),
        (
            &["--db-storage", "10"][..],
            "storage only grows: the database has 20 GiB",
        ),
        (&["--db-storage", "101"][..], "20–100 GiB in tier small"),
    ] {
        let refused = platform.mrbill(&[&["cell", "scale", "acme"][..], args].concat());
        refused.assert_failure(5, "validation_failed");
        assert!(
            refused.stderr.contains(said),
            "{args:?}: {}",
            refused.stderr
        );
    }
    let bigger = platform.mrbill(&[
        "cell",
        "scale",
        "acme",
        "--db-class",
        "db.t4g.medium",
        "--db-storage",
        "40",
        "-o",
        "json",
    ]);
    assert_eq!(bigger.code, 0, "{}", bigger.stderr);
    let database = &bigger.json()["cell"]["spec"]["database"];
    assert_eq!(
        (database["class"].as_str(), database["storageGib"].as_u64()),
        (Some("db.t4g.medium"), Some(40)),
        "recorded in the spec: {database}"
    );
    let shown = platform.mrbill(&["cell", "show", "acme"]);
    assert!(
        shown.stdout.contains("class db.t4g.medium, 40 GiB"),
        "{}",
        shown.stdout
    );

    let scaled = platform.mrbill(&[
        "cell",
        "scale",
        "acme",
        "--service",
        "poc=2",
        "--service",
        "media=2",
        "-o",
        "json",
    ]);
    assert_eq!(scaled.code, 0, "{}", scaled.stderr);
    assert_eq!(scaled.json()["cell"]["status"]["phase"], "Ready");
    assert_eq!(processes(&cell, "poc-service"), 2);
    assert_eq!(processes(&cell, "media-service"), 2);
    let shown = platform.mrbill(&["cell", "show", "acme"]);
    assert!(
        shown.stdout.contains("poc 2 (2 running)"),
        "{}",
        shown.stdout
    );

    // Writes through the router reach both replicas, and both find all of them.
    for n in 0..6 {
        let body = json!({ "name": format!("scaled {n}"), "description": "", "language": "rust",
            "tags": ["scaled"], "repository_url": format!("https://github.com/acme/scaled-{n}") });
        api.post("/v1/pocs", &body).await.assert_status(201);
    }
    for _ in 0..6 {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while api.get_ok("/v1/pocs?tags=scaled").await["total"] != 6 {
            assert!(
                std::time::Instant::now() < deadline,
                "a replica's index is behind"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let logs = platform.cell_dir(&cell).join("logs");
    for log in ["poc.log", "poc-2.log"] {
        let text = std::fs::read_to_string(logs.join(log)).expect("log");
        assert!(
            text.contains("\"path\":\"/v1/pocs\""),
            "{log} served no request"
        );
    }

    // And back in, under load: the second replica leaves the route, the routers drain it, then
    // it stops; not one request fails on the way.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Eight clients at once, so requests are in flight whenever the replica leaves.
    let loads: Vec<_> = (0..8)
        .map(|client| tokio::spawn(load(api.clone(), stop.clone(), client)))
        .collect();
    tokio::task::block_in_place(|| {
        let back = platform.mrbill(&["cell", "scale", "acme", "--service", "poc=1", "-o", "json"]);
        assert_eq!(back.code, 0, "{}", back.stderr);
        wait_until(
            Duration::from_secs(30),
            "the second poc replica to stop",
            || processes(&cell, "poc-service") == 1,
        );
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut served, mut failed) = (0, Vec::new());
    for load in loads {
        let (ok, bad) = load.await.expect("load");
        served += ok;
        failed.extend(bad);
    }
    eprintln!(
        "{served} requests served while scaling in, {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "requests failed while scaling in: {failed:?}"
    );
    assert!(served > 10, "the load ran: {served}");
    assert_eq!(processes(&cell, "media-service"), 2, "media keeps its two");
    for _ in 0..6 {
        assert_eq!(api.get_ok("/v1/pocs?tags=scaled").await["total"], 6);
    }

    // A suspended tenant's sizes are recorded and its resume applies them.
    platform
        .mrbill(&["tenant", "suspend", "acme", "-o", "json"])
        .json();
    let recorded = platform.mrbill(&[
        "cell",
        "scale",
        "acme",
        "--service",
        "poc=2",
        "--service",
        "media=1",
        "-o",
        "json",
    ]);
    let spec = &recorded.json()["cell"]["spec"]["replicas"];
    assert_eq!(
        (spec["poc"].as_u64(), spec["media"].as_u64()),
        (Some(2), Some(1)),
        "{spec}"
    );
    assert_eq!(
        processes(&cell, "poc-service"),
        0,
        "nothing runs while suspended"
    );
    platform
        .mrbill(&["tenant", "resume", "acme", "-o", "json"])
        .json();
    assert_eq!(processes(&cell, "poc-service"), 2);
    assert_eq!(processes(&cell, "media-service"), 1);
    assert_eq!(api.get_ok("/v1/pocs?tags=scaled").await["total"], 6);
}

/// Creates and lists PoCs through the router until `stop`, a request every 85 ms: the eight
/// clients share one address, and together stay under the router's per-client rate (125/s),
/// so a failure is the scaling's, never the limiter's; what was served, what failed.
async fn load(
    api: test_support::ApiClient,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    client: u32,
) -> (u32, Vec<String>) {
    let (mut served, mut failed) = (0, Vec::new());
    let mut n = client * 1_000_000;
    let mut pace = tokio::time::interval(Duration::from_millis(85));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        pace.tick().await;
        n += 1;
        let res = if !n.is_multiple_of(4) {
            api.get("/v1/users/me").await
        } else {
            let body = json!({ "name": format!("load {n}"), "description": "", "language": "rust",
                "tags": ["load"], "repository_url": format!("https://github.com/acme/load-{n}") });
            api.post("/v1/pocs", &body).await
        };
        match res.status.is_success() {
            true => served += 1,
            false => failed.push(format!("{} {}", res.status, res.text)),
        }
    }
    (served, failed)
}

/// One dojo's two collaborators through the router, with the dojo's live URL.
struct Session {
    url: String,
    clients: [Live; 2],
}

impl Session {
    /// Each client edits once more (reconnecting first, with its document, when its room moved
    /// and the router dropped it); returns how many had to reconnect.
    async fn edit(&mut self, round: usize) -> usize {
        let mut reconnected = 0;
        for (who, live) in self.clients.iter_mut().enumerate() {
            live.pump(Duration::from_millis(20)).await;
            if live.got.closed.is_some() {
                reconnected += 1;
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                loop {
                    live.reconnect(&self.url, None).await;
                    live.pump(Duration::from_millis(300)).await;
                    if live.got.closed.is_none() && !live.got.room.is_empty() {
                        break;
                    }
                    assert!(std::time::Instant::now() < deadline, "the room came back");
                }
            }
            live.insert(0, &format!("[{who}.{round}]")).await;
        }
        reconnected
    }

    /// Both clients hold every edit of every round, and the same text.
    async fn converged(&mut self, rounds: usize) {
        let want = |l: &Live| {
            (0..rounds).all(|r| (0..2).all(|w| l.code().contains(&format!("[{w}.{r}]"))))
        };
        for live in &mut self.clients {
            live.until("every edit of both clients", want).await;
        }
        assert_eq!(self.clients[0].code(), self.clients[1].code());
        // And the cell holds it: a newcomer gets the same text from the room.
        let expected = self.clients[0].code();
        let mut newcomer = Live::connect(&self.url, None).await;
        newcomer
            .until("a newcomer's sync", |l| l.code() == expected)
            .await;
    }
}

/// A standard tenant (2 poc, 2 dojo replicas) scaled to 3 poc and 3 dojo replicas, then to one
/// dojo replica, while collaborators edit twenty dojos through the router: the route lists
/// every replica, rooms spread over the dojo replicas, the router moves the sockets of rooms
/// that changed replica and the new replica takes those rooms over; every client ends with
/// every edit, and a PoC created through any poc replica is found by a search on every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dojo_rooms_survive_a_change_of_the_dojo_replicas() {
    let platform = Platform::up();
    let tenant = platform
        .mrbill(&[
            "tenant",
            "create",
            "acme",
            "--name",
            "Acme",
            "--admin-email",
            "admin@acme.example",
            "--tier",
            "standard",
            "-o",
            "json",
        ])
        .json();
    let cell = tenant["cell"]["cell_id"].as_str().expect("cell").to_owned();
    let token = platform.admin_token(&tenant).await;
    let api = platform.api("acme").with_token(&token);
    let ws = platform.router_url().replacen("http", "ws", 1);
    let mut sessions = Vec::new();
    // Enough dojos that some land on the new replica (each does with probability ⅓: none of
    // twenty does once in 3,000 runs).
    for n in 0..20 {
        let dojo = api
            .post(
                "/v1/dojos",
                &json!({ "name": format!("kata {n}"), "language": "rust", "initial_code": "" }),
            )
            .await
            .assert_status(201)["id"]
            .as_str()
            .expect("dojo id")
            .to_owned();
        let url = format!("{ws}/t/acme/v1/dojos/{dojo}/live?token={token}&acks=true");
        let clients = [
            Live::connect(&url, None).await,
            Live::connect(&url, None).await,
        ];
        sessions.push(Session { url, clients });
    }
    let mut rounds = 0;
    for session in &mut sessions {
        assert_eq!(session.edit(rounds).await, 0);
    }
    rounds += 1;

    assert_eq!(processes(&cell, "dojo-service"), 2, "the tier's default");
    let out = platform.mrbill(&[
        "cell",
        "scale",
        "acme",
        "--service",
        "poc=3",
        "--service",
        "dojo=3",
        "-o",
        "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(processes(&cell, "dojo-service"), 3);
    assert_eq!(processes(&cell, "poc-service"), 3);
    let mut moved = 0;
    for round in rounds..rounds + 2 {
        for session in &mut sessions {
            moved += session.edit(round).await;
        }
        // PoCs written meanwhile, each through whichever poc replica the router picks, are
        // found by a search on every replica (the router goes round robin over the three).
        let body = json!({ "name": format!("during round {round}"), "description": "",
            "language": "rust", "tags": [format!("round-{round}")],
            "repository_url": format!("https://github.com/acme/round-{round}") });
        api.post("/v1/pocs", &body).await.assert_status(201);
        for _ in 0..3 {
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while api.get_ok(&format!("/v1/pocs?tags=round-{round}")).await["total"] != 1 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "a replica's index is behind"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    rounds += 2;
    for session in &mut sessions {
        session.converged(rounds).await;
    }
    eprintln!("{moved} clients followed their room to the new replica");
    assert!(moved > 0, "no room moved to the new replica");
    let logs = platform.cell_dir(&cell).join("logs");
    let third = std::fs::read_to_string(logs.join("dojo-3.log")).expect("log");
    assert!(third.contains("/live"), "the new replica served no socket");

    // And down to one: two replicas leave the route and stop; their rooms move to the first.
    let out = platform.mrbill(&["cell", "scale", "acme", "--service", "dojo=1", "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    wait_until(Duration::from_secs(30), "two dojo replicas to stop", || {
        processes(&cell, "dojo-service") == 1
    });
    for round in rounds..rounds + 2 {
        for session in &mut sessions {
            session.edit(round).await;
        }
    }
    rounds += 2;
    for session in &mut sessions {
        session.converged(rounds).await;
    }
}
