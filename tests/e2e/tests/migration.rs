//! A tenant moves between placements while clients write through the router, with the real
//! binaries: two placements are two data roots on this machine (own Postgres clusters, ports,
//! files), which is exactly the mechanism two hosts would use. Every acknowledged write is
//! logged by its writer; afterwards a checker finds each one exactly once on the target and
//! nothing the writers were not told about, and what was issued before the move (the access
//! token, a signed download link, a dojo's acknowledged edit) still works.

use std::time::{Duration, Instant};

use e2e_tests::ledger::{Load, completed_report};
use e2e_tests::platform::{Platform, wait_until};
use e2e_tests::seed;
use serde_json::{Value, json};

/// The ids of the writers' PoCs in a cell's database.
async fn ledger_pocs(
    platform: &Platform,
    placement: &str,
    cell: &str,
) -> std::collections::BTreeSet<String> {
    let sql = "SELECT id FROM pocs WHERE 'ledger' = ANY(tags) AND deleted_at IS NULL";
    ids_in(platform, placement, cell, "poc", sql).await
}

/// Ids a query finds in a service's database of a cell (read with the service's own login).
async fn ids_in(
    platform: &Platform,
    placement: &str,
    cell: &str,
    service: &str,
    sql: &str,
) -> std::collections::BTreeSet<String> {
    use sqlx::Connection;
    let dir = platform.cell_dir_on(placement, cell);
    let url = std::fs::read_to_string(dir.join(format!("secrets/{service}-database-url")))
        .expect("db url");
    let mut db = sqlx::PgConnection::connect(url.trim())
        .await
        .expect("connect");
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(sql)
        .fetch_all(&mut db)
        .await
        .expect("ids");
    let unique: std::collections::BTreeSet<String> = ids.iter().map(|i| i.to_string()).collect();
    assert_eq!(unique.len(), ids.len(), "a PoC twice");
    unique
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_moves_while_clients_write_and_nothing_is_lost() {
    let platform = Platform::up_with(&[
        ("MRBILL_PLACEMENTS", "local=20,edge=20"),
        ("MRBILL_MIGRATE_GRACE_SECS", "1"),
    ]);
    let tenant = platform.create_tenant("acme");
    let cell = tenant["cell"]["cell_id"].as_str().expect("cell").to_owned();
    let token = platform.admin_token(&tenant).await;
    let api = platform.api("acme").with_token(&token);

    // Issued before the move: a signed link, a dojo with an acknowledged edit, a PoC to edit.
    let report = api.post("/v1/reports", &json!({ "format": "csv" })).await;
    let report = report.assert_status(202)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let link = completed_report(&api, &report).await;
    let (live_url, mut live) =
        seed::dojo_with_edit(&platform, "acme", &token, "Before", "fn before() {}\n").await;
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
    tokio::time::sleep(Duration::from_secs(2)).await;

    let home = platform.home.clone();
    let moved = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(e2e_tests::bin("mrbill"))
            .args(["cell", "migrate", "acme", "--to", "edge", "-o", "json"])
            .env("MRBILL_HOME", &home)
            .output()
            .expect("mrbill");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("migration json")
    })
    .await
    .expect("join");
    tokio::time::sleep(Duration::from_secs(2)).await; // the writers go on against the target
    let ledger = load.finish().await;
    let freeze = moved["freeze_ms"].as_u64().expect("freeze measured");
    eprintln!(
        "moved: freeze {freeze} ms; acknowledged {} PoCs, {} edits, {} dojos, {} reports; refused {:?}",
        ledger.pocs.len(),
        ledger.edits.len(),
        ledger.dojos.len(),
        ledger.reports.len(),
        ledger.refused
    );
    assert_eq!(moved["state"], "done", "{moved}");
    assert!(
        ledger.pocs.len() > 20,
        "the writers wrote: {:?}",
        ledger.pocs.len()
    );
    assert_eq!(platform.tenant("acme")["cell"]["placement"], "edge");

    // Every acknowledged PoC exactly once, nothing unacknowledged: the writers' PoCs in the
    // target's database are exactly the ledger's.
    let on_target = ledger_pocs(&platform, "edge", &cell).await;
    let acknowledged: std::collections::BTreeSet<String> =
        ledger.pocs.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(acknowledged.len(), ledger.pocs.len(), "ids are unique");
    let lost: Vec<_> = acknowledged.difference(&on_target).collect();
    let unacknowledged: Vec<_> = on_target.difference(&acknowledged).collect();
    assert!(lost.is_empty(), "acknowledged PoCs lost: {lost:?}");
    assert!(
        unacknowledged.is_empty(),
        "PoCs nobody was told about: {unacknowledged:?}"
    );
    // The last acknowledged edit is what the target has.
    let poc = api.get_ok(&format!("/v1/pocs/{edited}")).await;
    assert_eq!(
        Some(&poc["description"].as_str().unwrap_or_default().to_owned()),
        ledger.edits.get(&edited)
    );
    let dojos = ids_in(&platform, "edge", &cell, "dojo", "SELECT id FROM dojos").await;
    let missing: Vec<_> = ledger
        .dojos
        .iter()
        .filter(|d| !dojos.contains(*d))
        .collect();
    assert!(missing.is_empty(), "acknowledged dojos lost: {missing:?}");
    assert_eq!(
        dojos.len(),
        ledger.dojos.len() + 1,
        "the ledger's dojos and the one from before"
    );
    // The live dojo's edits and chat: its socket followed the cell to the target.
    ledger.live.verify(&platform, "acme", &token).await;
    assert!(
        ledger.live.reconnects > 0,
        "the fence closed the live socket"
    );
    // Reports queued before, during and after the cut-over complete, each once.
    for job in &ledger.reports {
        completed_report(&api, job).await;
    }
    // Search on the target knows the PoCs written before and during the move.
    let (_, name) = ledger.pocs.last().expect("a PoC").clone();
    let q = name.replace(' ', "+");
    let deadline = Instant::now() + Duration::from_secs(5);
    while api.get_ok(&format!("/v1/pocs?q=%22{q}%22")).await["items"] == json!([]) {
        assert!(
            Instant::now() < deadline,
            "{name} is not searchable on the target"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // What was issued before the move works after it.
    let download = reqwest::get(format!("{}{link}", platform.router_url()))
        .await
        .expect("get");
    assert_eq!(
        download.status(),
        200,
        "a signed link from before the move downloads"
    );
    // The socket open on the source was told to reconnect when the source stopped.
    assert_eq!(live.closed_with().await, 1012);
    let mut again = test_support::live::Live::connect(&live_url, None).await;
    again
        .until("the dojo's text from before", |l| {
            l.code().contains("fn before()")
        })
        .await;

    // The source is removed after its grace period, with a backup.
    let source = platform.cell_dir_on("local", &cell);
    wait_until(
        Duration::from_secs(60),
        "the source cell to be retired",
        || !source.exists(),
    );
    let backups = std::fs::read_dir(platform.home.join("backups"))
        .expect("backups")
        .count();
    assert_eq!(backups, 1);

    // And back: the same tenant, everything still there.
    let back = platform.mrbill(&["cell", "migrate", "acme", "--to", "local", "-o", "json"]);
    assert_eq!(back.json()["state"], "done");
    assert_eq!(ledger_pocs(&platform, "local", &cell).await, on_target);
}

/// poc-services running for `cell` (on any placement).
fn poc_services(cell: &str) -> usize {
    e2e_tests::platform::cell_services(cell)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("poc-service"))
        })
        .count()
}

/// The control plane killed right after each migration step (before recording it) resumes
/// and converges: the tenant ends on the target, serving, with its data, and at no point do
/// two cells of the tenant run a poc-service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_crash_at_any_migration_step_resumes_and_converges() {
    let platform = Platform::up_with(&[("MRBILL_PLACEMENTS", "local=20,edge=20")]);
    let tenant = platform.create_tenant("acme");
    let cell = tenant["cell"]["cell_id"].as_str().expect("cell").to_owned();
    let token = platform.admin_token(&tenant).await;
    let api = platform.api("acme").with_token(&token);
    for n in 0..5 {
        let body = json!({ "name": format!("kept {n}"), "description": "", "language": "rust",
            "tags": ["ledger"], "repository_url": format!("https://github.com/acme/kept-{n}") });
        api.post("/v1/pocs", &body).await.assert_status(201);
    }
    let steps = [
        "target", "copy", "catch-up", "freeze", "fence", "sync", "verify", "start", "switch",
        "retire",
    ];
    let mut from = "local";
    for step in steps {
        let to = if from == "local" { "edge" } else { "local" };
        eprintln!("crash after {step} ({from} → {to})");
        let mut crashing =
            platform.restart_control_plane_crashing_after(&format!("migrate:{step}"));
        let started = platform.mrbill(&["cell", "migrate", "acme", "--to", to, "--no-wait"]);
        assert_eq!(started.code, 0, "{}", started.stderr);
        let status = crashing.wait().expect("wait for the crash");
        assert_eq!(status.code(), Some(86), "crashed after {step}");
        assert!(
            poc_services(&cell) <= 1,
            "two cells serve after a crash at {step}"
        );

        platform.mrbill(&["up", "-o", "json"]).json();
        wait_until(Duration::from_secs(120), "the migration to finish", || {
            let list = platform
                .mrbill(&["cell", "migrations", "acme", "-o", "json"])
                .json();
            let latest = &list["migrations"][0];
            latest["state"] == "done"
                && latest["steps"]
                    .as_array()
                    .is_some_and(|s| s.iter().all(|s| s["done"] == true))
        });
        let tenant = platform.tenant("acme");
        assert_eq!(tenant["cell"]["placement"], to, "after a crash at {step}");
        assert_eq!(
            tenant["cell"]["status"]["phase"], "Ready",
            "after a crash at {step}"
        );
        assert_eq!(
            poc_services(&cell),
            1,
            "one cell serves after a crash at {step}"
        );
        assert_eq!(
            ledger_pocs(&platform, to, &cell).await.len(),
            5,
            "after {step}"
        );
        api.get("/v1/pocs").await.assert_status(200);
        from = to;
    }
}

/// An abort after the source was fenced (its services stopped, requests held): the source
/// serves again with everything it had, the target cell and the replication are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_after_the_fence_leaves_the_source_serving_and_removes_the_target() {
    let platform = Platform::up_with(&[("MRBILL_PLACEMENTS", "local=20,edge=20")]);
    let tenant = platform.create_tenant("acme");
    let cell = tenant["cell"]["cell_id"].as_str().expect("cell").to_owned();
    let token = platform.admin_token(&tenant).await;
    let api = platform.api("acme").with_token(&token);
    let body = json!({ "name": "kept", "description": "", "language": "rust",
        "tags": ["ledger"], "repository_url": "https://github.com/acme/kept" });
    api.post("/v1/pocs", &body).await.assert_status(201);

    let mut paused = platform.restart_control_plane_pausing_after("migrate:fence");
    let started = platform.mrbill(&["cell", "migrate", "acme", "--to", "edge", "--no-wait"]);
    assert_eq!(started.code, 0, "{}", started.stderr);
    wait_until(Duration::from_secs(60), "the fence", || {
        let list = platform
            .mrbill(&["cell", "migrations", "acme", "-o", "json"])
            .json();
        list["migrations"][0]["steps"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"] == "fence" && s["done"] == true))
    });
    assert_eq!(poc_services(&cell), 0, "fenced: no poc-service runs");
    let target = platform.cell_dir_on("edge", &cell);
    assert!(target.exists());

    let aborted = platform.mrbill(&["cell", "migrate", "acme", "--abort", "-o", "json"]);
    assert_eq!(aborted.code, 0, "{}", aborted.stderr);
    assert_eq!(aborted.json()["state"], "aborted");
    let tenant = platform.tenant("acme");
    assert_eq!(tenant["cell"]["placement"], "local");
    assert_eq!(tenant["cell"]["status"]["phase"], "Ready");
    api.get("/v1/pocs").await.assert_status(200);
    assert_eq!(ledger_pocs(&platform, "local", &cell).await.len(), 1);
    assert!(!target.exists(), "the target cell is removed");
    assert_eq!(poc_services(&cell), 1);
    // Nothing of the replication stays on the source (slots would hold its WAL forever).
    {
        use sqlx::Connection;
        let dir = platform.cell_dir_on("local", &cell);
        let url = std::fs::read_to_string(dir.join("secrets/poc-database-url")).expect("url");
        let mut db = sqlx::PgConnection::connect(url.trim())
            .await
            .expect("connect");
        let slots: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_replication_slots")
            .fetch_one(&mut db)
            .await
            .expect("slots");
        let publications: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_publication")
            .fetch_one(&mut db)
            .await
            .expect("publications");
        assert_eq!((slots, publications), (0, 0));
    }
    let (_, placements) = (
        0,
        platform.mrbill(&["placement", "list", "-o", "json"]).json(),
    );
    let edge = placements["placements"]
        .as_array()
        .expect("placements")
        .iter()
        .find(|p| p["name"] == "edge")
        .cloned()
        .expect("edge");
    assert_eq!(edge["used"], 0, "the target's units are free again");
    let _ = paused.kill();
    let _ = paused.wait();
}

/// `mrbill placement drain` moves every cell off a placement in waves, each to the roomiest
/// open placement of its region; it stops at the first cell with nowhere to go, with a report,
/// and a second run resumes once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_moves_cells_in_waves_stops_when_full_and_resumes() {
    let platform = Platform::up_with(&[("MRBILL_PLACEMENTS", "local=20,edge=2")]);
    for slug in ["acme", "globex", "initech"] {
        platform.create_tenant(slug);
    }
    let first = platform.mrbill(&["placement", "drain", "local", "--parallel", "2"]);
    first.assert_failure(4, "drain_stopped");
    assert!(
        first.stderr.contains("no open placement in region local"),
        "{}",
        first.stderr
    );
    let on = |slug: &str| {
        platform.tenant(slug)["cell"]["placement"]
            .as_str()
            .map(str::to_owned)
    };
    let placed: Vec<Option<String>> = ["acme", "globex", "initech"]
        .iter()
        .map(|s| on(s))
        .collect();
    assert_eq!(
        placed
            .iter()
            .filter(|p| p.as_deref() == Some("edge"))
            .count(),
        2,
        "{placed:?}"
    );

    let added = platform.mrbill(&[
        "placement",
        "add",
        "far",
        "--region",
        "local",
        "--capacity",
        "5",
    ]);
    assert_eq!(added.code, 0, "{}", added.stderr);
    let second = platform.mrbill(&["placement", "drain", "local", "-o", "json"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.json()["moved"].as_array().map(Vec::len), Some(1));
    for slug in ["acme", "globex", "initech"] {
        let tenant = platform.tenant(slug);
        assert_ne!(tenant["cell"]["placement"], "local", "{slug}");
        assert_eq!(tenant["cell"]["status"]["phase"], "Ready", "{slug}");
    }
    let list = platform.mrbill(&["placement", "list", "-o", "json"]).json();
    let local = list["placements"]
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["name"] == "local")
        .cloned()
        .expect("local");
    assert_eq!(
        (local["cells"].as_u64(), local["cordoned"].as_bool()),
        (Some(0), Some(true))
    );
}
