//! The operator's SQL checks of a move (`cell_operator::moves::PgMoves`) against two real
//! Postgres clusters with logical replication between them, connecting as the service's role
//! (not a superuser) over TLS verified with each side's own CA — as a target's operator does
//! with CloudNativePG clusters. The replication itself is set up here as CNPG would (a
//! publication on the source, a subscription on the target made by its superuser).

use std::time::{Duration, Instant};

use cell_operator::moves::{MoveChecks, PgMoves, Side};
use rcgen::{CertificateParams, KeyPair};
use sqlx::PgPool;

const PASSWORD: &str = "poc-password";

struct Server {
    cluster: pg_cluster::PgCluster,
    ca: String,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A cluster serving TLS with a self-signed certificate for `localhost` (its own CA).
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let spec = pg_cluster::ClusterSpec {
            root: dir.path().join("pg"),
            port: None,
            superuser: "postgres".into(),
            password: "superuser-password".into(),
            ephemeral: true,
        };
        let owner = pg_cluster::Owner::detect().expect("the Postgres user");
        let mut cluster = match &owner {
            Some(owner) => pg_cluster::PgCluster::init_as(&spec, Some(owner.clone())),
            None => pg_cluster::PgCluster::init(&spec),
        }
        .expect("initdb");
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let data = cluster.data_dir();
        for (file, text) in [
            ("server.crt", cert.pem()),
            ("server.key", key.serialize_pem()),
        ] {
            let path = data.join(file);
            std::fs::write(&path, text).expect("tls file");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            if let Some(owner) = &owner {
                std::os::unix::fs::chown(&path, Some(owner.uid), Some(owner.gid)).expect("chown");
            }
        }
        let auto = data.join("postgresql.auto.conf");
        let mut conf = std::fs::read_to_string(&auto).unwrap_or_default();
        conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&auto, conf).expect("conf");
        cluster.start().expect("postgres starts");
        pg_cluster::spawn_reaper(std::process::id(), &data, Some(dir.path())).expect("reaper");
        Self {
            cluster,
            ca: cert.pem(),
            _dir: dir,
        }
    }

    async fn superuser(&self, db: &str) -> PgPool {
        PgPool::connect(&self.cluster.url(db))
            .await
            .expect("superuser")
    }

    /// The service's side as the operator sees it: its role, over verified TLS.
    fn side(&self) -> Side {
        Side {
            url: format!(
                "postgres://poc:{PASSWORD}@localhost:{}/poc",
                self.cluster.port()
            ),
            ca: Some(self.ca.clone()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.cluster.stop();
    }
}

async fn exec(db: &PgPool, sql: &str) {
    sqlx::raw_sql(sql)
        .execute(db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

const SCHEMA: &str = "CREATE TABLE pocs (id bigserial PRIMARY KEY, name text NOT NULL);
                      CREATE TABLE _sqlx_migrations (version bigint PRIMARY KEY);";

async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match check().await {
            Ok(v) => return v,
            Err(why) if Instant::now() < deadline => {
                let _ = why;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(why) => panic!("{what}: {why}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_checks_follow_a_real_subscription_as_the_services_role() {
    let (source, target) = (Server::start(), Server::start());
    for server in [&source, &target] {
        let admin = server.superuser("postgres").await;
        exec(
            &admin,
            &format!("CREATE ROLE poc LOGIN PASSWORD '{PASSWORD}'"),
        )
        .await;
        exec(&admin, "CREATE DATABASE poc OWNER poc").await;
        let owner = PgPool::connect(&server.cluster.url_for("poc", PASSWORD, "poc"))
            .await
            .expect("poc");
        exec(&owner, SCHEMA).await;
    }
    let src = PgPool::connect(&source.cluster.url_for("poc", PASSWORD, "poc"))
        .await
        .expect("poc");
    exec(&src, "INSERT INTO pocs (name) SELECT 'poc ' || g FROM generate_series(1, 500) g; INSERT INTO _sqlx_migrations VALUES (1)").await;
    // As CNPG: the publication on the source, the subscription by the target's superuser.
    exec(
        &source.superuser("poc").await,
        "CREATE PUBLICATION mrbill_move FOR ALL TABLES",
    )
    .await;
    exec(
        &target.superuser("poc").await,
        &format!(
            "CREATE SUBSCRIPTION mrbill_move CONNECTION 'host=127.0.0.1 port={} dbname=poc user=postgres password=superuser-password' PUBLICATION mrbill_move",
            source.cluster.port()
        ),
    )
    .await;

    let checks = PgMoves;
    let (from, to) = (source.side(), target.side());
    until("the initial copy", async || {
        match checks.copying(&to, "mrbill_move").await? {
            0 => Ok(()),
            n => Err(format!("{n} tables copying")),
        }
    })
    .await;
    // Writes go on until the fence; sync waits for them, then carries the sequence over.
    exec(
        &src,
        "INSERT INTO pocs (name) SELECT 'late ' || g FROM generate_series(1, 50) g",
    )
    .await;
    let tables = until("in sync", async || checks.sync(&from, &to).await).await;
    assert_eq!(tables, 2);
    let dst = PgPool::connect(&target.cluster.url_for("poc", PASSWORD, "poc"))
        .await
        .expect("poc");
    let next: i64 = sqlx::query_scalar("SELECT nextval('pocs_id_seq')")
        .fetch_one(&dst)
        .await
        .expect("nextval");
    assert_eq!(next, 551, "the target continues where the source stopped");
    assert_eq!(checks.verify(&from, &to).await, Ok(2));

    // A row the source never had: verify names the table.
    exec(
        &target.superuser("poc").await,
        "ALTER SUBSCRIPTION mrbill_move DISABLE",
    )
    .await;
    exec(&dst, "UPDATE pocs SET name = 'tampered' WHERE id = 1").await;
    let differs = checks.verify(&from, &to).await.expect_err("a difference");
    assert!(differs.contains("public.pocs"), "{differs}");
    // And a server whose certificate another CA signed is refused.
    let stranger = Side {
        ca: Some(target.ca.clone()),
        ..source.side()
    };
    let refused = checks
        .verify(&stranger, &to)
        .await
        .expect_err("not verified");
    assert!(refused.contains("connecting"), "{refused}");
}
