//! A platform started again from another build runs its existing cells from that build, the
//! way `./x dev` moved from debug to release binaries: a cell records the build it was made
//! with, and used to keep running it.

use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use e2e_tests::platform::{Platform, cell_services, set_mode, wait_until};

/// What `mrbill up` and a cell run.
const BINARIES: [&str; 7] = [
    "mrbill",
    "mrbill-control-plane",
    "mrbill-router",
    "poc-service",
    "dojo-service",
    "media-service",
    "media-render",
];

/// The file a process runs, as (device, inode).
fn running(pid: u32) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?;
    Some((meta.dev(), meta.ino()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cell_made_by_one_build_runs_the_next_build_the_platform_starts_from() {
    let platform = Platform::up();
    let tenant = platform.create_tenant("acme");
    let cell = tenant["cell"]["cell_id"]
        .as_str()
        .expect("cell id")
        .to_owned();
    let down = platform.mrbill(&["down"]);
    assert_eq!(down.code, 0, "{}", down.stderr);

    // "Another build": this build's files under another directory, poc-service a copy of its
    // own, so which file the cell's poc-service runs shows which build it came from (a cell
    // of a root-run platform runs a hard link of it: the same inode).
    let other = tempfile::tempdir_in("/tmp").expect("build dir");
    for name in BINARIES {
        let (from, to) = (test_support::bin_dir().join(name), other.path().join(name));
        if name == "poc-service" {
            std::fs::copy(&from, &to).expect("copy poc-service");
        } else {
            std::fs::hard_link(&from, &to).expect("link a binary");
        }
    }
    // The cell's user (root-run platforms) must reach the new build's directory.
    set_mode(other.path(), 0o755);
    let new_poc = std::fs::metadata(other.path().join("poc-service")).expect("copied");
    let new_poc = (new_poc.dev(), new_poc.ino());

    let other_dir = other.path().to_str().expect("utf-8 path");
    let up = platform.mrbill_env(
        &["up", "--router-addr", "127.0.0.1:0", "-o", "json"],
        &[("MRBILL_BIN_DIR", other_dir)],
    );
    assert_eq!(up.code, 0, "{}", up.stderr);
    wait_until(
        Duration::from_secs(60),
        "the cell's poc-service running the new build",
        || {
            cell_services(&cell)
                .into_iter()
                .any(|pid| running(pid) == Some(new_poc))
        },
    );
    // Stopped by the build that started it (the platform's drop stops it with the test's own).
    let down = platform.mrbill_env(&["down"], &[("MRBILL_BIN_DIR", other_dir)]);
    assert_eq!(down.code, 0, "{}", down.stderr);
}
