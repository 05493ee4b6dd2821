//! Test harness shared by every service's integration tests.
//!
//! - [`pg`]: one Postgres cluster per test run (started by `./x test`, which exports
//!   `MRBILL_TEST_PG_URL`; a plain `cargo test` starts a private one per test process instead)
//!   and a fresh database per test cloned from a migrated template (~40 ms).
//! - [`http`]: a small typed HTTP client returning status + JSON.
//! - [`live`]: a y-websocket client (WebSocket + yrs document) for the dojo's live socket.

pub mod http;
pub mod live;
pub mod mail;
pub mod moto;
pub mod otlp;
pub mod pg;
pub mod raw;

pub use http::{ApiClient, ApiResponse};
pub use pg::{empty_database, test_database};

/// A file the repository commits because code generates it (an OpenAPI document, the CRD, a
/// rendered snapshot) must be what the code generates now. `relative` is resolved against the
/// running test's package (`CARGO_MANIFEST_DIR` at run time: a shared target directory may
/// hold a binary built in another clone). With the variable `update` set, the file is
/// rewritten instead; commit the result.
pub fn assert_committed(relative: &str, generated: &str, update: &str) {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .expect("cargo sets CARGO_MANIFEST_DIR for tests");
    let path = dir.join(relative);
    if std::env::var_os(update).is_some() {
        let body = format!("{}\n", generated.trim_end());
        std::fs::write(&path, body).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "{} is stale: rerun this test with {update}=1 and commit the result",
        path.display()
    );
}

/// Directory of the workspace's binaries: `MRBILL_BIN_DIR` (set by `./x test`), else the
/// `target/<profile>` directory the running test binary was built into.
pub fn bin_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("MRBILL_BIN_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps")
        .to_owned()
}

/// Resident set size of `pid` in KiB (`VmRSS` in `/proc/<pid>/status`; 0 if it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The schemathesis CLI: `MRBILL_SCHEMATHESIS` (set by `./x test`, which installs it into a
/// venv), else `st` on the `PATH`.
fn schemathesis() -> String {
    if let Ok(st) = std::env::var("MRBILL_SCHEMATHESIS") {
        return st;
    }
    let on_path = std::process::Command::new("st")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        on_path,
        "schemathesis not found: run ./x test (it installs it) or set MRBILL_SCHEMATHESIS"
    );
    "st".into()
}

/// Runs schemathesis (all checks) with the document at `spec` (a URL or a file) against `base`
/// as the bearer of `token`, with
/// settings from `config` and any `extra` CLI arguments; its example database and caches go to
/// `workdir`. Prints the report and fails the test on any finding. Blocking.
pub fn assert_schemathesis_clean(
    workdir: &std::path::Path,
    config: &std::path::Path,
    spec: &str,
    base: &str,
    token: &str,
    extra: &[&str],
) {
    let output = std::process::Command::new(schemathesis())
        .current_dir(workdir)
        .arg("--config-file")
        .arg(config)
        .args(["run", spec])
        .args(["--url", base])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(extra)
        .output()
        .expect("run schemathesis");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{report}");
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}"
    );
}

/// [`assert_schemathesis_clean`] with the committed settings file `settings` plus
/// `path.id = id` (an existing resource, so requests reach past "not found"), on a blocking
/// thread; `name` names the work directory (in the system's temporary directory, removed after a
/// clean run).
pub async fn schemathesis_with_id(
    name: &str,
    settings: &std::path::Path,
    id: &str,
    spec: &str,
    base: &str,
    token: &str,
    extra: &'static [&'static str],
) {
    let workdir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).expect("workdir");
    let committed = std::fs::read_to_string(settings).expect("schemathesis settings");
    let config = workdir.join("schemathesis.toml");
    std::fs::write(
        &config,
        format!("{committed}\n[parameters]\n\"path.id\" = \"{id}\"\n"),
    )
    .expect("config");
    let (spec, base, token) = (spec.to_owned(), base.to_owned(), token.to_owned());
    tokio::task::spawn_blocking(move || {
        assert_schemathesis_clean(&workdir, &config, &spec, &base, &token, extra);
        // Clean: nothing in it is worth keeping (a failed run keeps it to look at).
        let _ = std::fs::remove_dir_all(&workdir);
    })
    .await
    .expect("schemathesis run");
}
