//! What stands in for a cell's RDS instance: a real Postgres that accepts TLS connections only
//! (a throw-away certificate), as RDS's `rds.force_ssl` makes it, with a master user that is
//! not a superuser but may create roles and databases, as RDS's master is.

// Shared by several test crates, each using part of it.
#![allow(dead_code)]

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudformation::config::{Credentials, SharedCredentialsProvider};
use cell_operator::aws::AwsSettings;
use test_support::moto::Moto;

use cell_operator::aws::MasterCredentials;
use cell_operator::roles::{DatabaseAdmin, Role, Server};
use secrecy::ExposeSecret;
use sqlx::{Connection, PgConnection};

pub const MASTER: &str = "rds_master";

/// An SDK configuration for moto in `region`.
pub fn sdk(moto: &Moto, region: &str) -> SdkConfig {
    SdkConfig::builder()
        .endpoint_url(&moto.url)
        .region(Region::new(region.to_owned()))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test", "test", None, None, "moto",
        )))
        .behavior_version(BehaviorVersion::latest())
        .build()
}

/// An S3 client of moto's store in `region` (buckets in the path, as moto takes them).
pub fn s3(moto: &Moto, region: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(&sdk(moto, region))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A VPC with two subnets in two zones and a cluster security group, as the cluster would have.
pub async fn network(sdk: &SdkConfig) -> AwsSettings {
    let region = sdk.region().map(ToString::to_string).unwrap_or_default();
    let cfn = aws_sdk_cloudformation::Client::new(sdk);
    let template = r#"
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Vpc: { Type: AWS::EC2::VPC, Properties: { CidrBlock: 10.20.0.0/16 } }
  A: { Type: AWS::EC2::Subnet, Properties: { VpcId: { Ref: Vpc }, CidrBlock: 10.20.1.0/24, AvailabilityZone: REGIONa } }
  B: { Type: AWS::EC2::Subnet, Properties: { VpcId: { Ref: Vpc }, CidrBlock: 10.20.2.0/24, AvailabilityZone: REGIONb } }
  Cluster: { Type: AWS::EC2::SecurityGroup, Properties: { GroupDescription: cluster, VpcId: { Ref: Vpc } } }
Outputs:
  Vpc: { Value: { Ref: Vpc } }
  A: { Value: { Ref: A } }
  B: { Value: { Ref: B } }
  Cluster: { Value: { "Fn::GetAtt": [Cluster, GroupId] } }
"#
    .replace("REGION", &region);
    cfn.create_stack()
        .stack_name("cluster-network")
        .template_body(&template)
        .send()
        .await
        .expect("network stack");
    let out = cfn
        .describe_stacks()
        .stack_name("cluster-network")
        .send()
        .await
        .expect("describe");
    let outputs: std::collections::BTreeMap<String, String> = out.stacks()[0]
        .outputs()
        .iter()
        .map(|o| {
            (
                o.output_key().unwrap_or_default().to_owned(),
                o.output_value().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    AwsSettings {
        vpc_id: outputs["Vpc"].clone(),
        subnet_ids: vec![outputs["A"].clone(), outputs["B"].clone()],
        cluster_security_group_id: outputs["Cluster"].clone(),
        oidc_provider_arn: format!(
            "arn:aws:iam::123456789012:oidc-provider/oidc.eks.{region}.amazonaws.com/id/EXAMPLE"
        ),
        oidc_provider_host: format!("oidc.eks.{region}.amazonaws.com/id/EXAMPLE"),
    }
}

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
        Arc::new(Here(self.port(), None))
    }

    /// [`Self::admin`] of a move's target, whose subscriptions reach `source` whatever
    /// address they name.
    pub fn admin_replicating_from(&self, source: &RdsInstance) -> Arc<dyn DatabaseAdmin> {
        Arc::new(Here(self.port(), Some(source.port())))
    }

    /// What RDS does for ModifyDBInstance's `MasterUserPassword`: the master's password here
    /// becomes `password`.
    pub async fn set_master_password(&self, password: &str) {
        let cluster = self.cluster.as_ref().expect("running");
        let admin = format!("{}?sslmode=require", cluster.url("postgres"));
        let mut conn = PgConnection::connect(&admin).await.expect("as rdsadmin");
        sqlx::raw_sql(&format!(
            "ALTER ROLE {MASTER} PASSWORD '{}'",
            password.replace('\'', "''")
        ))
        .execute(&mut conn)
        .await
        .expect("the master's password");
        conn.close().await.expect("close");
    }

    /// Puts this instance's master credentials where the operator reads cell `cell_id`'s
    /// (Secrets Manager `mrbill/<cell>/database`), as the foundation stack makes them.
    pub async fn store_master(&self, sdk: &SdkConfig, cell_id: &str) {
        aws_sdk_secretsmanager::Client::new(sdk)
            .create_secret()
            .name(format!("mrbill/{cell_id}/database"))
            .secret_string(format!(
                r#"{{"username":"{MASTER}","password":"{}"}}"#,
                self.master.password.expose_secret()
            ))
            .send()
            .await
            .expect("master credentials");
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

/// What a move's schema Job does: the source's schema dumped (as the migrator, without the
/// move's publication), restored in one transaction as the service's role.
pub fn copy_schema(source: &str, target: &str) {
    let bin = pg_cluster::bin_dir().expect("postgres binaries");
    let dump = std::process::Command::new(bin.join("pg_dump"))
        .args(["--schema-only", "--no-owner", "--no-privileges"])
        .args(["--no-publications", "--no-subscriptions", source])
        .output()
        .expect("pg_dump");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let mut restore = std::process::Command::new(bin.join("psql"))
        .args(["-v", "ON_ERROR_STOP=1", "-X", "--single-transaction", "-q"])
        .arg(target)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql");
    use std::io::Write;
    restore
        .stdin
        .take()
        .expect("stdin")
        .write_all(&dump.stdout)
        .expect("schema to psql");
    assert!(restore.wait().expect("psql").success());
}

/// A role maker whose instance refuses connections (nothing listens at its port).
pub fn unreachable() -> Arc<dyn DatabaseAdmin> {
    Arc::new(Here(pg_cluster::free_port().expect("a free port"), None))
}

/// The instance's port here, and a move's source's.
struct Here(u16, Option<u16>);

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
        use cell_operator::roles::Replication;
        Box::pin(async move {
            let here = |port| Server {
                host: "127.0.0.1".into(),
                port,
            };
            let source = here(self.1.unwrap_or_default());
            let step = match step {
                Replication::Subscribe { migrator, .. } => Replication::Subscribe {
                    source: &source,
                    migrator,
                },
                other => other,
            };
            cell_operator::roles::Postgres
                .replicate(&here(self.0), master, databases, step)
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
