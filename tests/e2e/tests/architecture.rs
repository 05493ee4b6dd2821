//! Rules of the code's shape that a reader relies on, checked on the sources (ARCHITECTURE.md,
//! "Invariants"): `domain/` does no I/O, and the cell services read their settings from the
//! environment only in their `config` module (built on `service_kit::config`) and `main`.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `.rs` files under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// What a domain module must not name: I/O and the layers above it (as paths).
const NOT_IN_DOMAIN: &[&str] = &[
    "sqlx::",
    "axum::",
    "tokio::",
    "reqwest::",
    "hyper::",
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "File::",
    "TcpStream",
];

#[test]
fn domain_modules_do_no_io_and_import_no_outer_layer() {
    let mut files = sources(&root().join("tenant-cell/poc-service/src/domain"));
    files.push(root().join("control-plane/mrbill-control-plane/src/domain.rs"));
    files.push(root().join("tenant-cell/dojo-service/src/domain.rs"));
    files.push(root().join("tenant-cell/media-service/src/domain.rs"));
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in NOT_IN_DOMAIN {
                if code.contains(word) {
                    broken.push(format!("{}:{}: {word}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(files.len() >= 6, "the domain modules: {files:?}");
    assert!(
        broken.is_empty(),
        "I/O in a domain module:\n{}",
        broken.join("\n")
    );
}

/// Reads of the environment outside `config.rs` and `main.rs`, and why each is allowed.
const ENV_EXCEPTIONS: &[(&str, &str)] = &[
    // The AWS SDK's own credential chain (AWS_* variables, IRSA): not our settings.
    (
        "media-service/src/artifacts.rs",
        "AmazonS3Builder::from_env()",
    ),
    // The render child inherits PATH to find ffmpeg and nothing else of the environment.
    (
        "media-service/src/render/mod.rs",
        "std::env::var_os(\"PATH\")",
    ),
];

#[test]
fn cell_services_read_the_environment_only_in_their_config_and_main() {
    let mut files = Vec::new();
    for dir in [
        "tenant-cell/poc-service/src",
        "tenant-cell/dojo-service/src",
        "tenant-cell/media-service/src",
        "crates/service-kit/src",
    ] {
        files.extend(sources(&root().join(dir)));
    }
    let mut broken = Vec::new();
    for file in &files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name == "config.rs" || name == "main.rs" {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            let reads = code.contains("env::var") || code.contains("::from_env(");
            let excused = ENV_EXCEPTIONS
                .iter()
                .any(|(path, what)| file.ends_with(path) && code.contains(what));
            if reads && !excused {
                broken.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "settings read from the environment outside config/main:\n{}",
        broken.join("\n")
    );
}
