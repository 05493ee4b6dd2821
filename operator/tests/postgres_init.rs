//! The roles script an in-cluster Postgres runs on first start, run here with real `psql`
//! against a real cluster (the way the Postgres image's entrypoint runs it: superuser in
//! `POSTGRES_USER`, password in `PGPASSWORD`).

use cell_operator::render::postgres_roles_script;
use sqlx::{Connection, PgConnection};

fn run_script(cluster: &pg_cluster::PgCluster, roles_dir: &std::path::Path) {
    let script = roles_dir.join("10-roles.sh");
    std::fs::write(&script, postgres_roles_script()).expect("write script");
    let bin = pg_cluster::bin_dir().expect("Postgres binaries");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("bash")
        .arg(&script)
        .env("PATH", path)
        .env("POSTGRES_USER", cluster.superuser())
        .env("PGPASSWORD", cluster.password())
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", cluster.port().to_string())
        .env("MRBILL_ROLES_DIR", roles_dir)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "roles script failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn each_service_gets_its_own_role_and_database_and_nothing_else() {
    let root = std::env::temp_dir().join(format!("mrbill-roles-{}", uuid::Uuid::new_v4()));
    let spec = pg_cluster::ClusterSpec {
        root: root.clone(),
        port: None,
        superuser: "mrbill".into(),
        password: uuid::Uuid::new_v4().simple().to_string(),
        ephemeral: true,
    };
    let mut cluster = pg_cluster::PgCluster::init(&spec).expect("init cluster");
    cluster.start().expect("start cluster");
    pg_cluster::spawn_reaper(std::process::id(), &cluster.data_dir(), Some(&root)).expect("reaper");
    let roles_dir = root.join("roles");
    std::fs::create_dir_all(&roles_dir).expect("dir");
    // The same form of URL `secrets::generate` writes (URL-safe passwords).
    let mut urls = Vec::new();
    for service in cell_model::contract::Service::ALL.map(cell_model::contract::Service::name) {
        let password = service_kit::secrets::random_token(24);
        std::fs::write(
            roles_dir.join(format!("{service}-database-url")),
            format!("postgres://{service}:{password}@postgres.cell-acme.svc:5432/{service}"),
        )
        .expect("write url");
        urls.push((service, cluster.url_for(service, &password, service)));
    }

    run_script(&cluster, &roles_dir);
    // Idempotent: a second run (a restarted init) changes nothing and does not fail.
    run_script(&cluster, &roles_dir);

    for (service, url) in &urls {
        let mut conn = PgConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("{service} connects to its own database: {e}"));
        let (user, db, superuser): (String, String, bool) = sqlx::query_as(
            "SELECT current_user::text, current_database()::text, rolsuper FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&mut conn)
        .await
        .expect("whoami");
        assert_eq!(
            (user.as_str(), db.as_str(), superuser),
            (*service, *service, false)
        );
        // It owns its database: it can create what its migrations need.
        sqlx::raw_sql("CREATE TABLE t (id int)")
            .execute(&mut conn)
            .await
            .expect("owner creates tables");
    }
    // poc's role cannot open dojo's database (CONNECT revoked from PUBLIC).
    let (_, poc_url) = &urls[0];
    let (base, _) = poc_url.rsplit_once('/').expect("a database in the URL");
    let cross = format!("{base}/dojo");
    let err = PgConnection::connect(&cross)
        .await
        .expect_err("poc must not reach dojo's database");
    assert!(err.to_string().contains("permission denied"), "{err}");
    // And a wrong password is refused.
    let wrong = cluster.url_for("poc", "not-the-password", "poc");
    assert!(PgConnection::connect(&wrong).await.is_err());

    cluster.stop().expect("stop");
    let _ = std::fs::remove_dir_all(&root);
}
