//! What stands in for a cell's RDS instance: a real Postgres that accepts TLS connections only
//! (a throw-away certificate), as RDS's `rds.force_ssl` makes it, with a master user that is
//! not a superuser but may create roles and databases, as RDS's master is.

// Shared by several test crates, each using part of it.
#![allow(dead_code)]

use std::sync::Arc;

use cell_operator::aws::MasterCredentials;
use cell_operator::roles::{DatabaseAdmin, Role, Server};
use secrecy::ExposeSecret;
use sqlx::{Connection, PgConnection};

pub const MASTER: &str = "rds_master";

pub struct RdsInstance {
    cluster: Option<pg_cluster::PgCluster>,
    pub master: MasterCredentials,
}

impl RdsInstance {
    pub async fn start() -> Self {
        Self::start_with("CREATEROLE CREATEDB").await
    }

    /// One whose master may also subscribe and make replication roles, as RDS's
    /// (`rds_superuser`) may: on plain Postgres 15 that takes a superuser.
    pub async fn start_for_moves() -> Self {
        Self::start_with("SUPERUSER").await
    }

    async fn start_with(attributes: &str) -> Self {
        let root = std::env::temp_dir().join(format!("mrbill-rds-{}", uuid::Uuid::new_v4()));
        let password = service_kit::secrets::random_token(24);
        let spec = pg_cluster::ClusterSpec {
            root: root.clone(),
            port: None,
            superuser: "rdsadmin".into(),
            password: password.clone(),
            ephemeral: true,
        };
        let mut cluster = pg_cluster::PgCluster::init(&spec).expect("init");
        let (cert, key) = (root.join("server.crt"), root.join("server.key"));
        let out = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=rds.example", "-keyout"])
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
            for path in [&cert, &key] {
                std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid)).expect("chown");
            }
        }
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        let conf = cluster.data_dir().join("postgresql.auto.conf");
        let mut settings = std::fs::read_to_string(&conf).unwrap_or_default();
        settings.push_str(&format!(
            "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            cert.display(),
            key.display()
        ));
        std::fs::write(&conf, settings).expect("ssl settings");
        cluster.require_tls().expect("hostssl rules");
        cluster.start().expect("start");
        pg_cluster::spawn_reaper(std::process::id(), &cluster.data_dir(), Some(&root))
            .expect("reaper");
        let master_password = service_kit::secrets::random_token(24);
        let admin = format!("{}?sslmode=require", cluster.url("postgres"));
        let mut conn = PgConnection::connect(&admin).await.expect("as rdsadmin");
        sqlx::raw_sql(&format!(
            "CREATE ROLE {MASTER} LOGIN {attributes} PASSWORD '{master_password}'"
        ))
        .execute(&mut conn)
        .await
        .expect("the master user");
        conn.close().await.expect("close");
        Self {
            cluster: Some(cluster),
            master: MasterCredentials {
                username: MASTER.into(),
                password: master_password.into(),
            },
        }
    }

    /// Stops and starts it (settings that need a restart).
    pub fn restart(&mut self) {
        let cluster = self.cluster.as_mut().expect("running");
        cluster.stop().expect("stop");
        cluster.start().expect("start");
    }

    /// Where it listens, as the operator names an instance.
    pub fn server(&self) -> Server {
        Server {
            host: "127.0.0.1".into(),
            port: self.port(),
        }
    }

    pub fn port(&self) -> u16 {
        self.cluster.as_ref().map_or(0, |c| c.port())
    }

    /// `url` (as the operator wrote it, with the instance's address) pointed at this stand-in.
    pub fn local(&self, url: &str) -> String {
        let (head, rest) = url.split_once('@').expect("credentials in the url");
        let path = &rest[rest.find('/').expect("a database")..];
        format!("{head}@127.0.0.1:{}{path}", self.port())
    }

    /// Makes roles here whatever address the operator names (an RDS endpoint is not reachable
    /// from this machine), with the operator's real role maker.
    pub fn admin(&self) -> Arc<dyn DatabaseAdmin> {
        Arc::new(Here(self.port()))
    }

    /// The master user's URL here (TLS).
    pub fn master_url(&self) -> String {
        format!(
            "postgres://{MASTER}:{}@127.0.0.1:{}/postgres?sslmode=require",
            self.master.password.expose_secret(),
            self.port()
        )
    }
}

/// A role maker whose instance refuses connections (nothing listens at its port).
pub fn unreachable() -> Arc<dyn DatabaseAdmin> {
    Arc::new(Here(pg_cluster::free_port().expect("a free port")))
}

struct Here(u16);

impl DatabaseAdmin for Here {
    fn ensure_roles<'a>(
        &'a self,
        _: &'a Server,
        master: &'a MasterCredentials,
        roles: &'a [Role],
    ) -> cell_operator::roles::Done<'a> {
        Box::pin(async move {
            let server = Server {
                host: "127.0.0.1".into(),
                port: self.0,
            };
            cell_operator::roles::Postgres
                .ensure_roles(&server, master, roles)
                .await
        })
    }

    fn replicate<'a>(
        &'a self,
        _: &'a Server,
        master: &'a MasterCredentials,
        databases: &'a [&'a str],
        step: cell_operator::roles::Replication<'a>,
    ) -> cell_operator::roles::Replicated<'a> {
        Box::pin(async move {
            let server = Server {
                host: "127.0.0.1".into(),
                port: self.0,
            };
            cell_operator::roles::Postgres
                .replicate(&server, master, databases, step)
                .await
        })
    }
}

impl Drop for RdsInstance {
    fn drop(&mut self) {
        if let Some(cluster) = self.cluster.take() {
            let _ = cluster.destroy();
        }
    }
}
