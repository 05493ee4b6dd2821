//! `mrbill cell scale` with the real binaries: a cell runs more replicas of a service (the
//! supervisor starts them, each with its own ports, log and search index), the route lists
//! them and the router spreads requests over them; every replica finds every PoC; bounds are
//! the tier's; scaling down takes replicas out of the route before they stop.

use std::time::Duration;

use e2e_tests::platform::{Platform, wait_until};
use serde_json::json;

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
    let dojo = platform.mrbill(&["cell", "scale", "acme", "--service", "dojo=2"]);
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

    // And back in: the second replica leaves the route, then stops; requests keep working.
    let back = platform.mrbill(&["cell", "scale", "acme", "--service", "poc=1", "-o", "json"]);
    assert_eq!(back.code, 0, "{}", back.stderr);
    wait_until(
        Duration::from_secs(30),
        "the second poc replica to stop",
        || processes(&cell, "poc-service") == 1,
    );
    assert_eq!(processes(&cell, "media-service"), 2, "media keeps its two");
    for _ in 0..6 {
        assert_eq!(api.get_ok("/v1/pocs?tags=scaled").await["total"], 6);
    }
}
