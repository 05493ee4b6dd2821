//! The committed Kotlin and Swift bindings are exactly what uniffi-bindgen makes of the built
//! core (`libmrbill_core.so`, `mobile/uniffi.toml`): a change to the core's API that was not
//! regenerated fails here. `./x bindings` (or `UPDATE_BINDINGS=1` on this test) rewrites them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where each language's bindings live in the repository.
const OUTPUTS: [(&str, &str); 2] = [
    ("kotlin", "mobile/android/core/src/main/kotlin"),
    ("swift", "mobile/ios/MrBillKit/Sources/Generated"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every file under `dir`, by its path relative to `dir`.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("inside").to_owned();
                out.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}

#[test]
fn committed_bindings_are_what_the_core_exports() {
    let bin = test_support::bin_dir();
    let library = bin.join("libmrbill_core.so");
    assert!(
        library.exists(),
        "{}: build the workspace first",
        library.display()
    );
    let update = std::env::var_os("UPDATE_BINDINGS").is_some();
    for (language, committed) in OUTPUTS {
        let fresh = tempfile_dir(language);
        let out = Command::new(bin.join("uniffi-bindgen"))
            .arg("generate")
            .arg(&library)
            .args(["--language", language, "--no-format", "--config"])
            .arg(root().join("mobile/uniffi.toml"))
            .arg("--out-dir")
            .arg(&fresh)
            .output()
            .expect("uniffi-bindgen (built with the workspace)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let committed = root().join(committed);
        if update {
            let _ = std::fs::remove_dir_all(&committed);
            for (rel, bytes) in files(&fresh) {
                let path = committed.join(rel);
                std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
                std::fs::write(path, bytes).expect("write");
            }
        } else {
            let (want, have) = (files(&fresh), files(&committed));
            assert_eq!(
                want.keys().collect::<Vec<_>>(),
                have.keys().collect::<Vec<_>>(),
                "{language} binding files differ: run ./x bindings"
            );
            for (rel, bytes) in &want {
                assert!(
                    have[rel] == *bytes,
                    "{} is stale: run ./x bindings",
                    committed.join(rel).display()
                );
            }
        }
        let _ = std::fs::remove_dir_all(&fresh);
    }
}

fn tempfile_dir(language: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("mrbill-bindings-{language}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
