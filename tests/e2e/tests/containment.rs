//! Containment on a root-run local platform: each cell's services run as that cell's own
//! unprivileged user, and its Postgres as another one of its own; the services' user can read
//! its own cell's files but not another cell's, nor its Postgres's data, nor the control
//! plane's tokens. Tried as a compromised service would: `cat`/`ls` run with the
//! other cell's uid. (CI runs as root; as another user the platform cannot switch users, and
//! the README says what isolation that loses — the test then has nothing to check.)

use std::os::unix::process::CommandExt;
use std::process::Command;

use e2e_tests::platform::{Platform, cell_services};

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// The uid the cell's postmaster runs as.
fn postgres_uid(cell: &std::path::Path) -> u32 {
    let pid = std::fs::read_to_string(cell.join("pg/data/postmaster.pid")).expect("postmaster.pid");
    uid_of(
        pid.lines()
            .next()
            .expect("pid")
            .trim()
            .parse()
            .expect("number"),
    )
}

fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    line.split_whitespace()
        .nth(1)
        .expect("uid")
        .parse()
        .expect("number")
}

/// Runs `program args` as `uid`; whether it succeeded, and its stderr.
fn as_user(uid: u32, program: &str, args: &[&std::path::Path]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .uid(uid)
        .gid(uid)
        .output()
        .expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn one_cells_user_cannot_read_another_cells_files() {
    if !running_as_root() {
        eprintln!("not root: cells share the invoking user (see README); nothing to check");
        return;
    }
    let platform = Platform::up();
    let cells: Vec<(String, u32)> = ["alpha", "beta"]
        .iter()
        .map(|slug| {
            let tenant = platform.create_tenant(slug);
            let cell = tenant["cell"]["cell_id"]
                .as_str()
                .expect("cell id")
                .to_owned();
            let pids = cell_services(&cell);
            assert_eq!(pids.len(), 3, "poc, dojo and media of {slug}");
            let uids: Vec<u32> = pids.iter().map(|p| uid_of(*p)).collect();
            assert!(
                uids.iter().all(|u| *u == uids[0] && *u != 0),
                "{slug}: {uids:?}"
            );
            (cell, uids[0])
        })
        .collect();
    let [(a_cell, a_uid), (b_cell, b_uid)] = [cells[0].clone(), cells[1].clone()];
    assert_ne!(a_uid, b_uid, "each cell has its own user");
    let (a, b) = (platform.cell_dir(&a_cell), platform.cell_dir(&b_cell));

    // Its own: the secrets its services read, its objects and search index.
    for own in [
        a.join("secrets/service-token"),
        a.join("secrets/poc-database-url"),
    ] {
        let (ok, err) = as_user(a_uid, "cat", &[&own]);
        assert!(ok, "{}: {err}", own.display());
    }
    assert!(as_user(a_uid, "ls", &[&a.join("objects")]).0);
    // Not what only the control plane uses, in its own cell either.
    let (ok, _) = as_user(a_uid, "cat", &[&a.join("secrets/pg-superuser")]);
    assert!(!ok, "the Postgres superuser's password is root's");
    // Nothing of the other cell, and nothing of the control plane.
    for theirs in [
        b.join("secrets/service-token"),
        b.join("secrets/poc-database-url"),
        b.join("secrets/jwt-private.pem"),
        b.join("cell.json"),
        platform.home.join("control-plane/operator-token"),
        platform.home.join("control-plane/router-token"),
    ] {
        let (ok, err) = as_user(a_uid, "cat", &[&theirs]);
        assert!(
            !ok && err.contains("Permission denied"),
            "{} readable: {err}",
            theirs.display()
        );
    }
    for theirs in [
        b.join("objects"),
        b.join("search"),
        b.join("logs"),
        b.join("mailbox"),
        b.join("tmp"),
        b.join("pg"),
    ] {
        let (ok, err) = as_user(a_uid, "ls", &[&theirs]);
        assert!(
            !ok && err.contains("Permission denied"),
            "{} listable: {err}",
            theirs.display()
        );
    }
    // Each cell's Postgres runs as a user of its own: not its services', not another cell's
    // Postgres's; the services' user cannot read its data, nor can the other Postgres.
    let (a_pg, b_pg) = (postgres_uid(&a), postgres_uid(&b));
    assert!(a_pg != 0 && b_pg != 0 && a_pg != b_pg, "{a_pg} {b_pg}");
    assert!(![a_uid, b_uid].contains(&a_pg) && ![a_uid, b_uid].contains(&b_pg));
    for (uid, dir) in [
        (a_uid, a.join("pg/data")),
        (b_pg, a.join("pg/data")),
        (a_pg, b.join("pg")),
    ] {
        let (ok, err) = as_user(uid, "ls", &[&dir]);
        assert!(
            !ok && err.contains("Permission denied"),
            "{uid} lists {}: {err}",
            dir.display()
        );
    }
    // A render's scratch space is the cell's own, not a shared /tmp path.
    let media = cell_services(&a_cell)
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.contains("media-service"))
        })
        .expect("media-service");
    let environ = std::fs::read(format!("/proc/{media}/environ")).expect("environ");
    let tmpdir = format!("TMPDIR={}", a.join("tmp").display());
    assert!(
        environ.split(|b| *b == 0).any(|v| v == tmpdir.as_bytes()),
        "media's TMPDIR is its cell's"
    );
}

/// A cell made before cells had users of their own — services as root, Postgres as the
/// platform's `postgres` user, its files theirs — gets its own users the next time the
/// platform starts it (its Postgres data handed over while stopped), with its data intact.
#[tokio::test]
async fn a_cell_from_before_cells_had_users_gets_its_own() {
    use e2e_tests::PASSWORD;
    use serde_json::json;
    if !running_as_root() {
        eprintln!("not root: cells share the invoking user (see README); nothing to check");
        return;
    }
    let platform = Platform::up();
    let tenant = platform.create_tenant("elder");
    let cell = tenant["cell"]["cell_id"]
        .as_str()
        .expect("cell id")
        .to_owned();
    let token = platform.admin_token(&tenant).await;
    let admin = platform.api("elder").with_token(&token);
    admin
        .post(
            "/v1/pocs",
            &json!({ "name": "From the old days", "repository_url": "https://github.com/acme/old",
                     "language": "rust", "tags": ["legacy"] }),
        )
        .await
        .assert_status(201);
    assert_eq!(platform.mrbill(&["down"]).code, 0);

    // As such a cell was.
    let dir = platform.cell_dir(&cell);
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("cell.json")).expect("cell.json"))
            .expect("json");
    config["run_as"] = serde_json::Value::Null;
    config["pg_run_as"] = serde_json::Value::Null;
    std::fs::write(dir.join("cell.json"), config.to_string()).expect("cell.json");
    for (owner, path) in [
        ("root:root", dir.clone()),
        ("postgres:postgres", dir.join("pg")),
    ] {
        let status = Command::new("chown")
            .args(["-R", owner])
            .arg(&path)
            .status()
            .expect("chown");
        assert!(status.success());
    }

    platform.mrbill(&["up", "-o", "json"]).json();
    let mut services = Vec::new();
    e2e_tests::platform::wait_until(
        std::time::Duration::from_secs(60),
        "the cell's services to run again",
        || {
            services = cell_services(&cell);
            services.len() == 3 && dir.join("pg/data/postmaster.pid").exists()
        },
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("cell.json")).expect("cell.json"))
            .expect("json");
    let (run_as, pg_run_as) = (
        config["run_as"].as_u64().expect("the services' own user") as u32,
        config["pg_run_as"].as_u64().expect("Postgres's own user") as u32,
    );
    assert_ne!(run_as, pg_run_as);
    for pid in &services {
        assert_eq!(uid_of(*pid), run_as, "services run as the cell's user");
    }
    assert_eq!(
        postgres_uid(&dir),
        pg_run_as,
        "Postgres runs as its own user"
    );
    let (ok, err) = as_user(run_as, "ls", &[&dir.join("pg/data")]);
    assert!(!ok && err.contains("Permission denied"), "{err}");

    // Nothing lost: the same account signs in and finds its PoC.
    let api = platform.api("elder");
    let email = tenant["admin_invite"]["email"].as_str().expect("email");
    let mut login = api
        .post(
            "/v1/auth/login",
            &json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    for _ in 0..200 {
        if login.status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        login = api
            .post(
                "/v1/auth/login",
                &json!({ "email": email, "password": PASSWORD }),
            )
            .await;
    }
    let token = login.assert_status(200)["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let pocs = api.with_token(&token).get("/v1/pocs").await;
    assert!(
        pocs.assert_status(200)
            .to_string()
            .contains("From the old days"),
        "{}",
        pocs.body
    );
}
