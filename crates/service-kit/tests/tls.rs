//! Services reach a Postgres that requires TLS (RDS Postgres 16 forces SSL; the operator writes
//! `sslmode=require` URLs): with the TLS-enabled sqlx such a URL connects and the session is
//! encrypted, while a plaintext connection is refused (`hostssl` rules only). Real Postgres with
//! a throw-away self-signed certificate (`openssl`).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use sqlx::{Connection, PgConnection};

async fn ssl_in_use(url: &str) -> bool {
    let mut conn = PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .expect("pg_stat_ssl")
}

#[tokio::test]
async fn an_sslmode_require_url_connects_over_tls() {
    let root = std::env::temp_dir().join(format!("mrbill-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let spec = pg_cluster::ClusterSpec {
        root: root.clone(),
        port: None,
        superuser: "mrbill".into(),
        password: "tls-test-password".into(),
        ephemeral: true,
    };
    let mut cluster = pg_cluster::PgCluster::init(&spec).expect("init");
    cluster.start().expect("start");
    pg_cluster::spawn_reaper(std::process::id(), &cluster.data_dir(), Some(&root)).expect("reaper");

    let tls = root.join("tls");
    std::fs::create_dir_all(&tls).expect("dir");
    let (cert, key) = (tls.join("server.crt"), tls.join("server.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (./x setup installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(owner) = pg_cluster::Owner::detect().expect("owner") {
        for path in [&tls, &cert, &key] {
            std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid)).expect("chown");
        }
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    let admin = cluster.url("postgres");
    assert!(
        !ssl_in_use(&format!("{admin}?sslmode=disable")).await,
        "before: a plaintext session, and the check can tell"
    );
    // Only TLS connections over the network from now on.
    cluster.require_tls().expect("hostssl rules");
    let mut conn = PgConnection::connect(&admin).await.expect("connect");
    for sql in [
        format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
        "ALTER SYSTEM SET ssl = on".to_owned(),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        sqlx::raw_sql(&sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    drop(conn);
    // The reload is asynchronous: wait until plaintext is refused.
    let plain = format!("{admin}?sslmode=disable");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while PgConnection::connect(&plain).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "plaintext still accepted after the reload"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        ssl_in_use(&format!("{admin}?sslmode=require")).await,
        "require ⇒ encrypted"
    );
    cluster.stop().expect("stop");
    let _ = std::fs::remove_dir_all(&root);
}
