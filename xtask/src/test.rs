//! `x test`: everything CI checks, in the order that fails fastest.

use std::process::Command;

use pg_cluster::spawn_reaper;

use crate::{cargo, run_checked, target_dir};

pub fn run(filters: &[String]) -> anyhow::Result<()> {
    run_checked(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run_checked(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--features",
        "cell-model/kube",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Every binary (and test) first, with the test run's feature set so nothing is rebuilt:
    // end-to-end tests run the real, current binaries.
    run_checked(cargo().args([
        "build",
        "--workspace",
        "--all-targets",
        "--features",
        "cell-model/kube",
    ]))?;

    let root = std::env::temp_dir().join(format!("mrbill-test-run-{}", std::process::id()));
    let spec = pg_cluster::ClusterSpec {
        root: root.clone(),
        port: None,
        superuser: "mrbill".into(),
        password: crate::random_hex(16)?,
        ephemeral: true,
    };
    let mut cluster = pg_cluster::PgCluster::init(&spec)?;
    spawn_reaper(std::process::id(), &cluster.data_dir(), Some(&root))?;
    cluster.start()?;
    eprintln!(
        "test cluster: 127.0.0.1:{} ({})",
        cluster.port(),
        root.display()
    );

    let nextest = Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = cargo();
    if nextest {
        cmd.args([
            "nextest",
            "run",
            "--workspace",
            "--features",
            "cell-model/kube",
            "--no-fail-fast",
        ]);
    } else {
        cmd.args([
            "test",
            "--workspace",
            "--features",
            "cell-model/kube",
            "--no-fail-fast",
        ]);
    }
    cmd.args(filters)
        .env("MRBILL_TEST_PG_URL", cluster.url("postgres"))
        .env("MRBILL_BIN_DIR", target_dir().join("debug"));
    let result = run_checked(&mut cmd);
    let stopped = cluster.destroy();
    result?;
    stopped
}
