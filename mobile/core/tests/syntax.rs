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
    tool("syntax_check.py", args)
}

fn tool(script: &str, args: &[&Path]) -> Output {
    let python = std::env::var("MRBILL_PYTHON").unwrap_or_else(|_| "python3".into());
    Command::new(&python)
        .arg(root().join("mobile/tools").join(script))
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

/// The iOS view models mirror the Android ones one to one (the same models, the same public
/// intents), so the JVM tests of the Kotlin models speak for the Swift ones too.
#[test]
fn the_ios_view_models_mirror_the_android_ones() {
    let kotlin = root().join("mobile/android/viewmodels/src/main/kotlin");
    let swift = root().join("mobile/ios/MrBillKit/Sources/ViewModels");
    let out = tool("mirror_check.py", &[&kotlin, &swift]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains(" 0 differences"), "{said}");
}

#[test]
fn a_model_missing_an_intent_on_one_side_is_caught() {
    let dir = std::env::temp_dir().join(format!("mrbill-mirror-{}", std::process::id()));
    let (kotlin, swift) = (dir.join("kotlin"), dir.join("swift"));
    std::fs::create_dir_all(&kotlin).expect("dir");
    std::fs::create_dir_all(&swift).expect("dir");
    std::fs::write(
        kotlin.join("A.kt"),
        "class ListModel(app: AppModel) : ScreenModel(app) {\n  fun refresh() {}\n  fun loadMore() {}\n  private fun failed() {}\n}\n",
    )
    .expect("kt");
    std::fs::write(
        swift.join("A.swift"),
        "public final class ListModel: ScreenModel, ObservableObject {\n  public func refresh() {}\n  private func failed() {}\n}\n",
    )
    .expect("swift");
    let out = tool("mirror_check.py", &[&kotlin, &swift]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("ListModel: only in Kotlin ['loadMore']"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
