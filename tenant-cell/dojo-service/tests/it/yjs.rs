//! Interoperability with the standard JavaScript clients: `yjs` + `y-websocket` (npm, run by
//! Node) edit the same dojo as our Rust client. The npm packages are installed on first use
//! into `~/.cache/mrbill/node` (pinned versions).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::harness::Cell;

const PACKAGES: &[&str] = &["yjs@13.6.33", "y-websocket@3.1.0", "ws@8.23.0"];

/// A directory holding `node_modules` with the pinned packages and our client script.
fn node_dir() -> PathBuf {
    let dir = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/mrbill/node");
    std::fs::create_dir_all(&dir).expect("node cache dir");
    let stamp = dir.join(format!(
        "installed-{}",
        PACKAGES.join("+").replace('/', "_")
    ));
    if !stamp.exists() {
        let status = std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&dir)
            .args(PACKAGES)
            .status()
            .expect("npm (Node.js) is needed for the Yjs interoperability test");
        assert!(status.success(), "npm install {PACKAGES:?} failed");
        std::fs::write(&stamp, "").expect("stamp");
    }
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/yjs/client.mjs"),
        dir.join("client.mjs"),
    )
    .expect("client script");
    dir
}

#[tokio::test]
async fn a_standard_yjs_client_edits_with_our_client() {
    let dir = tokio::task::spawn_blocking(node_dir).await.expect("npm");
    let cell = Cell::start().await;
    let admin = cell.admin().await;
    let dojo = cell
        .create_dojo(&admin, json!({ "initial_code": "hello" }))
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut rust = cell.connect(&dojo, &admin, "").await;
    rust.until("the initial code", |l| l.code() == "hello")
        .await;
    // Room events (the yjs client's arrival) and chat fill the room meanwhile.
    rust.send_json(100, &json!({ "text": "hello yjs" })).await;

    let node = tokio::process::Command::new("node")
        .arg(dir.join("client.mjs"))
        .arg(format!("ws://{}", cell.dojo_addr))
        .arg(&dojo)
        .arg(&admin.token)
        .arg("hello")
        .arg("rust: hello from yjs")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node");
    rust.until("the yjs client's edit", |l| l.code() == "hello from yjs")
        .await;
    rust.insert(0, "rust: ").await;
    let out = tokio::time::timeout(Duration::from_secs(30), node.wait_with_output())
        .await
        .expect("the yjs client finishes")
        .expect("node output");
    assert!(
        out.status.success(),
        "yjs client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // y-websocket logs every message type it does not know; it must not have met any.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Unable to compute message"),
        "the standard client got messages it cannot decode: {stderr}"
    );
    let result: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the yjs client prints JSON");
    assert_eq!(result["text"], "rust: hello from yjs");
    assert!(
        result["peers"].as_u64() >= Some(1),
        "awareness works: {result}"
    );
    rust.until("the yjs client's edit", |l| {
        l.code() == "rust: hello from yjs"
    })
    .await;
}
