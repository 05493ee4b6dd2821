//! The mobile core as the Android app uses it: the generated Kotlin bindings and the core's
//! JVM tests (`mobile/android/core/src/test`), compiled with Kotlin 2 (npm `kotlin-compiler`)
//! and run with JUnit 4 on JNA (Debian `libjna-java`, `junit4`) — `./x test` installs them and
//! sets `MRBILL_KOTLIN_HOME` — against the real `libmrbill_core.so` and a real local platform
//! with a tenant and its admin.

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e_tests::PASSWORD;
use e2e_tests::platform::Platform;

fn kotlin_home() -> PathBuf {
    std::env::var_os("MRBILL_KOTLIN_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME"))
                .join(".cache/mrbill/tools/kotlin/kotlinc-2.4.20")
        })
}

fn jar(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{}: ./x test installs it (npm kotlin-compiler, apt libjna-java junit4)",
        path.display()
    );
    path.display().to_string()
}

#[tokio::test]
async fn the_kotlin_tests_drive_the_real_core_against_a_real_platform() {
    let platform = Platform::up();
    let tenant = platform.create_tenant("mobile");
    let token = platform.admin_token(&tenant).await;
    // Open sign-up (for the account self-service test).
    platform
        .api("mobile")
        .with_token(&token)
        .patch(
            "/v1/settings",
            &serde_json::json!({ "registration": "open" }),
        )
        .await
        .assert_status(200);
    let email = tenant["admin_invite"]["email"].as_str().expect("email");
    let cell = tenant["cell"]["cell_id"].as_str().expect("cell id");
    let dojo_ready = platform.cell_dir(cell).join("tmp/dojo.ready");

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let android = root.join("mobile/android/core/src");
    let kotlin = kotlin_home();
    let (lib, java) = (kotlin.join("lib"), Path::new("/usr/share/java"));
    let classpath = [
        jar(java, "jna.jar"),
        jar(java, "junit4.jar"),
        jar(java, "hamcrest-core.jar"),
        jar(&lib, "kotlinx-coroutines-core-jvm.jar"),
    ]
    .join(":");
    let out = tempfile::tempdir().expect("out dir");
    let classes = out.path().join("tests.jar");
    let compiled = Command::new(kotlin.join("bin/kotlinc"))
        .arg("-nowarn")
        .args(["-cp", &classpath])
        .arg(android.join("main/kotlin"))
        .arg(android.join("test/kotlin"))
        .arg("-d")
        .arg(&classes)
        .output()
        .expect("kotlinc");
    assert!(
        compiled.status.success(),
        "kotlinc: {}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let run = Command::new("java")
        .arg(format!(
            "-Djna.library.path={}",
            test_support::bin_dir().display()
        ))
        .arg(format!("-Dmrbill.router={}", platform.router_url()))
        .arg("-Dmrbill.tenant=mobile")
        .arg(format!("-Dmrbill.dojo.ready={}", dojo_ready.display()))
        .arg(format!(
            "-Dmrbill.mailbox={}",
            platform.cell_dir(cell).join("mailbox").display()
        ))
        .arg(format!("-Dmrbill.email={email}"))
        .arg(format!("-Dmrbill.password={PASSWORD}"))
        .args([
            "-cp",
            &format!(
                "{}:{classpath}:{}",
                classes.display(),
                jar(&lib, "kotlin-stdlib.jar")
            ),
        ])
        .args([
            "org.junit.runner.JUnitCore",
            "dev.mrbill.core.CoreTest",
            "dev.mrbill.core.DojoTest",
            "dev.mrbill.core.MediaTest",
            "dev.mrbill.core.AccountTest",
        ])
        .output()
        .expect("java");
    let said = String::from_utf8_lossy(&run.stdout);
    println!("{said}");
    assert!(
        run.status.success(),
        "JUnit: {said}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(said.contains("OK (12 tests)"), "{said}");
}
