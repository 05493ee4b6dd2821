//! Every hand-written Kotlin and Swift file of the apps parses (tree-sitter, PyPI
//! `tree-sitter-kotlin` / `tree-sitter-swift`, which `./x test` installs and points
//! `MRBILL_PYTHON` at): no Android SDK or Swift toolchain exists here, so a broken brace in a
//! screen would otherwise land unseen. The checker itself is shown to catch a broken file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn check(args: &[&Path]) -> Output {
    let python = std::env::var("MRBILL_PYTHON").unwrap_or_else(|_| "python3".into());
    Command::new(&python)
        .arg(root().join("mobile/tools/syntax_check.py"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{python}: ./x test installs tree-sitter ({e})"))
}

#[test]
fn every_kotlin_and_swift_file_of_the_apps_parses() {
    let mobile = root().join("mobile");
    // The generated bindings: kotlinc compiles the Kotlin ones (tests/e2e/tests/mobile.rs).
    let kotlin = mobile.join("android/core/src/main/kotlin");
    let swift = mobile.join("ios/MrBillKit/Sources/Generated");
    let exclude = Path::new("--exclude");
    let out = check(&[&mobile, exclude, &kotlin, exclude, &swift]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!said.starts_with("0 files"), "nothing checked: {said}");
}

#[test]
fn a_broken_file_is_caught() {
    let dir = std::env::temp_dir().join(format!("mrbill-syntax-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("Broken.kt"), "class Broken {\n  fun f( {\n}\n").expect("kt");
    std::fs::write(dir.join("Broken.swift"), "struct S {\n  func f() {\n").expect("swift");
    let out = check(&[&dir]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("Broken.kt:") && said.contains("Broken.swift:"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
