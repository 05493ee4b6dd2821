//! Every cluster this crate starts asks for a password (SCRAM) on every connection — no `trust`,
//! no cleartext `password` rule — and its server never runs as root, even when the caller is
//! root (an unprivileged owner is picked). Real Postgres.

use sqlx::{Connection, PgConnection};

#[tokio::test]
async fn every_rule_asks_for_a_scram_password_and_the_server_is_not_root() {
    let root = std::env::temp_dir().join(format!("mrbill-pg-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let spec = pg_cluster::ClusterSpec {
        root: root.clone(),
        port: None,
        superuser: "mrbill".into(),
        password: "auth-test-password".into(),
        ephemeral: true,
    };
    let mut cluster = pg_cluster::PgCluster::init(&spec).expect("init");
    cluster.start().expect("start");
    pg_cluster::spawn_reaper(std::process::id(), &cluster.data_dir(), Some(&root)).expect("reaper");

    let mut conn = PgConnection::connect(&cluster.url("postgres"))
        .await
        .expect("connect with the password");
    let rules: Vec<(String, String)> =
        sqlx::query_as("SELECT type, auth_method FROM pg_hba_file_rules WHERE error IS NULL")
            .fetch_all(&mut conn)
            .await
            .expect("pg_hba_file_rules");
    assert!(!rules.is_empty(), "the rules are readable");
    assert!(
        rules.iter().all(|(_, method)| method == "scram-sha-256"),
        "only SCRAM: {rules:?}"
    );
    let wrong = cluster.url_for("mrbill", "not-the-password", "postgres");
    assert!(
        PgConnection::connect(&wrong).await.is_err(),
        "a wrong password is refused"
    );

    let pid_file =
        std::fs::read_to_string(cluster.data_dir().join("postmaster.pid")).expect("postmaster.pid");
    let pid = pid_file.lines().next().expect("pid line").trim();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .expect("Uid line");
    assert_ne!(uid, "0", "the server never runs as root");

    drop(conn);
    cluster.stop().expect("stop");
    let _ = std::fs::remove_dir_all(&root);
}
