//! The restore drill with the real binaries: a tenant's data in every service, backups,
//! more writes, the cell destroyed as a lost disk would (its processes killed with SIGKILL,
//! its directory removed), then `mrbill tenant restore --to-time`: every row, object and dojo
//! document of the chosen backup is back, nothing written after it is, and what was issued
//! before (the access token, a signed download link) still works. And a tenant deleted by
//! mistake: `mrbill tenant restore` brings it back from the backup its delete took. And a
//! restore that cannot finish (a corrupt backup) undone with `--abort`, nothing lost.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e_tests::ledger::completed_report;
use e2e_tests::platform::{Platform, cell_services, kill, processes_with, wait_until};
use e2e_tests::seed;
use serde_json::{Value, json};

async fn create_poc(api: &test_support::ApiClient, name: &str) -> String {
    let body = json!({ "name": name, "description": "drill", "language": "rust",
        "tags": ["drill"], "repository_url": format!("https://github.com/acme/{}", name.replace(' ', "-")) });
    api.post("/v1/pocs", &body).await.assert_status(201)["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// The ids of the drill's PoCs, as the tenant sees them through the router.
async fn listed_pocs(api: &test_support::ApiClient) -> BTreeSet<String> {
    let page = api.get_ok("/v1/pocs?per_page=100").await;
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_owned())
        .collect()
}

fn backup(platform: &Platform) -> Value {
    let taken = platform
        .mrbill(&["tenant", "backup", "acme", "-o", "json"])
        .json();
    assert_eq!(taken["state"], "done", "{taken}");
    taken
}

/// What the drills write before a backup: PoCs, a report (its signed link downloaded), and a
/// dojo with an acknowledged edit.
struct Seeded {
    pocs: BTreeSet<String>,
    job: String,
    link: String,
    report: Vec<u8>,
    live_url: String,
}

impl Seeded {
    async fn write(platform: &Platform, api: &test_support::ApiClient, token: &str) -> Self {
        let mut pocs = BTreeSet::new();
        for n in 0..12 {
            pocs.insert(create_poc(api, &format!("kept {n}")).await);
        }
        let job = api.post("/v1/reports", &json!({ "format": "csv" })).await;
        let job = job.assert_status(202)["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let link = completed_report(api, &job).await;
        let report = reqwest::get(format!("{}{link}", platform.router_url()))
            .await
            .expect("download");
        assert_eq!(report.status(), 200);
        let report = report.bytes().await.expect("report bytes").to_vec();
        let (live_url, live) =
            seed::dojo_with_edit(platform, "acme", token, "Drill", "fn kept() {}\n").await;
        drop(live);
        Self {
            pocs,
            job,
            link,
            report,
            live_url,
        }
    }

    /// What was issued before still works after a restore (the old token is `api`'s): the
    /// signed link downloads the same file, the report's job is there, the dojo has its edit.
    async fn check(&self, platform: &Platform, api: &test_support::ApiClient) {
        let again = reqwest::get(format!("{}{}", platform.router_url(), self.link))
            .await
            .expect("download");
        assert_eq!(again.status(), 200, "a signed link from before the restore");
        assert_eq!(again.bytes().await.expect("bytes"), self.report);
        assert_eq!(
            api.get_ok(&format!("/v1/reports/{}", self.job)).await["state"],
            "completed"
        );
        let mut live = test_support::live::Live::connect(&self.live_url, None).await;
        live.until("the dojo's text from the backup", |l| {
            l.code().contains("fn kept()")
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_restore_drill_brings_back_every_row_object_and_document_of_the_backup() {
    let platform = Platform::up();
    let tenant = platform.create_tenant("acme");
    let cell = tenant["cell"]["cell_id"].as_str().expect("cell").to_owned();
    let token = platform.admin_token(&tenant).await;
    let api = platform.api("acme").with_token(&token);

    let seeded = Seeded::write(&platform, &api, &token).await;
    let kept = seeded.pocs.clone();

    let chosen = backup(&platform);
    assert!(chosen["bytes"].as_u64().expect("bytes") > 0, "{chosen}");
    let dir = std::path::PathBuf::from(chosen["path"].as_str().expect("path"));
    for file in [
        "manifest.json",
        "poc.dump",
        "dojo.dump",
        "media.dump",
        "secrets/jwt-private.pem",
    ] {
        assert!(dir.join(file).exists(), "the backup lacks {file}");
    }
    // Written after the chosen backup, and in a later one: not brought back.
    let later = create_poc(&api, "written after").await;
    let newer = backup(&platform);
    let listed = platform
        .mrbill(&["tenant", "backups", "acme", "-o", "json"])
        .json();
    let ids: Vec<&str> = listed["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .map(|b| b["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        [&newer["id"], &chosen["id"]].map(|v| v.as_str().expect("id"))
    );

    // A lost disk: every process of the cell killed, its directory gone.
    let cell_dir = platform.cell_dir(&cell);
    let mut pids = cell_services(&cell);
    pids.extend(processes_with(&[
        "postgres",
        &cell_dir.display().to_string(),
    ]));
    pids.extend(processes_with(&[
        "supervise",
        &cell_dir.display().to_string(),
    ]));
    for pid in &pids {
        kill(*pid, "KILL");
    }
    wait_until(
        Duration::from_secs(10),
        "the cell's processes to die",
        || pids.iter().all(|pid| !e2e_tests::platform::pid_alive(*pid)),
    );
    // The control plane may be starting a supervisor for it meanwhile: removed until gone.
    wait_until(
        Duration::from_secs(10),
        "the cell's directory to be gone",
        || {
            let _ = std::fs::remove_dir_all(&cell_dir);
            !cell_dir.join("pg").exists()
        },
    );
    assert!(
        !api.get("/v1/pocs").await.status.is_success(),
        "a destroyed cell does not answer"
    );

    let started = Instant::now();
    let to_time = chosen["taken_at"].as_str().expect("taken_at");
    let restored = platform.mrbill(&["tenant", "restore", "acme", "--to-time", to_time, "--yes"]);
    assert_eq!(restored.code, 0, "{}\n{}", restored.stderr, restored.stdout);
    eprintln!(
        "restored in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        restored.stdout.trim()
    );
    assert!(restored.stderr.contains(chosen["id"].as_str().expect("id")));
    assert_eq!(platform.tenant("acme")["cell"]["status"]["phase"], "Ready");

    // Every PoC of the backup, nothing after it, through the router with the old token (the
    // list comes from the search index, rebuilt from the restored rows).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut listed = listed_pocs(&api).await;
    while !listed.is_superset(&kept) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        listed = listed_pocs(&api).await;
    }
    let drill: BTreeSet<String> = listed.iter().filter(|id| *id != &later).cloned().collect();
    assert_eq!(drill, kept, "the backup's PoCs");
    assert!(
        !listed.contains(&later),
        "a PoC written after the backup came back"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.get_ok("/v1/pocs?q=%22kept+7%22").await["items"] == json!([]) {
        assert!(
            Instant::now() < deadline,
            "search does not find a restored PoC"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seeded.check(&platform, &api).await;

    // One cell runs: the destroyed one is gone and nothing of it was set aside twice.
    let set_aside: Vec<_> = std::fs::read_dir(cell_dir.parent().expect("cells"))
        .expect("cells dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        set_aside
            .iter()
            .filter(|n| n.contains(".replaced-"))
            .count()
            <= 1,
        "{set_aside:?}"
    );
}

/// A tenant deleted by mistake comes back: its delete's backup is listed among its backups
/// (`final`), and `mrbill tenant restore` admits it again as it was and restores that backup —
/// every PoC, the report and its signed link, the dojo's edit, and the token issued before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_tenant_comes_back_from_the_backup_its_delete_took() {
    let platform = Platform::up();
    let tenant = platform.create_tenant("acme");
    let token = platform.admin_token(&tenant).await;
    let api = platform.api("acme").with_token(&token);
    let seeded = Seeded::write(&platform, &api, &token).await;

    let deleted = platform
        .mrbill(&["tenant", "delete", "acme", "--yes", "-o", "json"])
        .json();
    api.get("/v1/pocs")
        .await
        .assert_error(404, "tenant_not_found");
    let listed = platform
        .mrbill(&["tenant", "backups", "acme", "-o", "json"])
        .json();
    let last = listed["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .find(|b| b["kind"] == "final")
        .unwrap_or_else(|| panic!("no final backup: {listed}"))
        .clone();
    assert_eq!(last["path"], deleted["backup_path"]);

    let started = Instant::now();
    let restored = platform.mrbill(&["tenant", "restore", "acme", "--yes"]);
    assert_eq!(restored.code, 0, "{}\n{}", restored.stderr, restored.stdout);
    eprintln!(
        "a deleted tenant restored in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let back = platform.tenant("acme");
    assert_eq!(back["cell"]["status"]["phase"], "Ready");
    for field in ["display_name", "admin_email", "email_domains", "tier"] {
        assert_eq!(back[field], tenant[field], "{field}");
    }
    assert_eq!(back["cell"]["cell_id"], tenant["cell"]["cell_id"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listed_pocs(&api).await.is_superset(&seeded.pocs) {
        assert!(Instant::now() < deadline, "the PoCs are not all back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seeded.check(&platform, &api).await;
}

/// A restore that cannot finish — its backup is corrupt, so verify keeps failing while the
/// tenant's requests are held — is undone with `mrbill tenant restore --abort`: the cell as it
/// was serves again with everything it had, written after the backup too, to the old token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_from_a_corrupt_backup_is_undone_and_nothing_is_lost() {
    let platform = Platform::up();
    let tenant = platform.create_tenant("acme");
    let token = platform.admin_token(&tenant).await;
    let api = platform.api("acme").with_token(&token);
    let before = create_poc(&api, "before the backup").await;
    let taken = backup(&platform);
    let after = create_poc(&api, "after the backup").await;
    // Corrupt: the manifest's checksum of one table no longer matches what was dumped.
    let manifest =
        std::path::Path::new(taken["path"].as_str().expect("path")).join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest).expect("manifest"))
        .expect("manifest json");
    m["checksums"]["poc"][0][1] = json!("corrupt");
    std::fs::write(&manifest, serde_json::to_vec(&m).expect("json")).expect("write");

    let restoring = platform.mrbill(&["tenant", "restore", "acme", "--yes", "--no-wait"]);
    assert_eq!(restoring.code, 0, "{}", restoring.stderr);
    wait_until(Duration::from_secs(60), "the verify to fail", || {
        platform.tenant("acme")["cell"]["operation"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("differ from the backup"))
    });

    let started = Instant::now();
    let undone = platform.mrbill(&["tenant", "restore", "acme", "--abort"]);
    assert_eq!(undone.code, 0, "{}\n{}", undone.stderr, undone.stdout);
    eprintln!(
        "undone in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        undone.stdout.trim()
    );
    let listed = listed_pocs(&api).await;
    assert!(
        listed.contains(&before) && listed.contains(&after),
        "the cell as it was, written after the backup too: {listed:?}"
    );
    create_poc(&api, "after the abort").await;
    let cells = platform.cell_dir(tenant["cell"]["cell_id"].as_str().expect("cell"));
    let aside: Vec<_> = std::fs::read_dir(cells.parent().expect("cells"))
        .expect("cells dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".discarded-") || n.contains(".replaced-"))
        .collect();
    assert!(aside.is_empty(), "copies left: {aside:?}");
    platform
        .mrbill(&["tenant", "restore", "acme", "--abort"])
        .assert_failure(4, "conflict");
}
