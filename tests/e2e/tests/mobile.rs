//! The native apps' shared logic as the Android app runs it: the generated Kotlin bindings, the
//! core's JVM tests (`mobile/android/core/src/test`) and the view models with theirs
//! (`mobile/android/viewmodels`), compiled with Kotlin 2 (npm `kotlin-compiler`) and run with
//! JUnit 4 on JNA (Debian `libjna-java`, `junit4`) — `./x test` installs them and sets
//! `MRBILL_KOTLIN_HOME` — against the real `libmrbill_core.so` and a real local platform: a
//! tenant with its admin, an invite and a revoked one, and a second tenant, suspended.

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
    // An invite for the register screen, and a revoked one (an expired invite is refused with
    // the same `invalid_invite`).
    let admin = platform.api("mobile").with_token(&token);
    let mut invites = Vec::new();
    for who in ["invited", "revoked"] {
        let made = admin
            .post(
                "/v1/invites",
                &serde_json::json!({ "email": format!("{who}@mobile.example"), "role": "member" }),
            )
            .await;
        let made = made.assert_status(201);
        invites.push((
            made["token"].as_str().expect("token").to_owned(),
            made["invite"]["id"].as_str().expect("id").to_owned(),
        ));
    }
    admin
        .delete(&format!("/v1/invites/{}", invites[1].1))
        .await
        .assert_status(204);
    // A second company, suspended: the app shows it as such.
    platform.create_tenant("mobile-off");
    platform
        .mrbill(&["tenant", "suspend", "mobile-off", "-o", "json"])
        .json();
    let resolve = format!("{}/v1/resolve?tenant=mobile-off", platform.router_url());
    let mut suspended = false;
    for _ in 0..100 {
        let said: serde_json::Value = reqwest::get(&resolve)
            .await
            .expect("router")
            .json()
            .await
            .unwrap_or_default();
        if said["status"] == "suspended" {
            suspended = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(suspended, "the router learns the suspension");
    let email = tenant["admin_invite"]["email"].as_str().expect("email");
    let cell = tenant["cell"]["cell_id"].as_str().expect("cell id");
    let dojo_ready = platform.cell_dir(cell).join("tmp/dojo.ready");

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let android = root.join("mobile/android/core/src");
    let models = root.join("mobile/android/viewmodels/src");
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
        .arg(models.join("main/kotlin"))
        .arg(models.join("test/kotlin"))
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
        .arg(format!("-Dmrbill.invite={}", invites[0].0))
        .arg(format!("-Dmrbill.revokedInvite={}", invites[1].0))
        .arg("-Dmrbill.suspended=mobile-off")
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
            "dev.mrbill.viewmodel.SessionModelsTest",
            "dev.mrbill.viewmodel.PocModelsTest",
            "dev.mrbill.viewmodel.JobModelsTest",
            "dev.mrbill.viewmodel.DojoModelsTest",
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
    assert!(said.contains("OK (22 tests)"), "{said}");
}
