//! CloudNativePG for a cell's `Cluster` and `Database`s, as far as the cell relies on it. No
//! CNPG operator can run on this machine (no cluster, no container runtime), so this is a
//! **stand-in**, and it does only what CNPG documents for the fields the operator renders:
//!
//! - one instance (the primary) from `imageName`'s major version — this machine's Postgres —
//!   run as `postgresUID` (CNPG's default 26) with data checksums;
//! - TLS from `certificates.serverTLSSecret` (which must be `kubernetes.io/tls`), the
//!   Cluster's `postgresql.parameters`;
//! - `bootstrap.initdb`: the owner role (password from `secret`) and its database;
//! - `managed.roles`: each role with `login`, its password from `passwordSecret`, which must
//!   be a `kubernetes.io/basic-auth` Secret whose `username` is the role;
//! - every `Database` naming the Cluster: created with its owner;
//! - `pg_hba.conf` as CNPG writes it: its fixed rules, the Cluster's `postgresql.pg_hba`, then
//!   its default `host all all all scram-sha-256`; with `enableSuperuserAccess: false` the
//!   superuser has no password;
//! - the Services `<name>-rw`, `-ro`, `-r` on port 5432, all reaching the primary here.
//!
//! Whatever else CNPG does (replicas, failover, backups, its instance manager) is not
//! emulated; the rendered objects are validated against CNPG's own CRD schemas elsewhere.

use super::*;

/// The Services CNPG puts in front of a Cluster.
pub(super) const SERVICE_SUFFIXES: [&str; 3] = ["rw", "ro", "r"];

impl Kubelet {
    /// Starts the rendered CNPG `Cluster` `name` (see the module doc).
    pub fn start_cnpg(&mut self, name: &str) {
        let cluster = self.workload("Cluster", name).clone();
        let spec = &cluster["spec"];
        let port = self.services[&format!("{name}-rw")][&5432];
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).expect("cluster dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let uid = spec["postgresUID"].as_u64().unwrap_or(26) as u32;
        let superuser = uuid::Uuid::new_v4().simple().to_string();
        let pg = pg_cluster::ClusterSpec {
            root: dir.join("pgdata"),
            port: Some(port),
            superuser: "postgres".into(),
            password: superuser,
            ephemeral: true,
        };
        let owner = is_root().then(|| {
            pg_cluster::Owner::unlisted("postgres", uid, &dir.join("nss"))
                .expect("nss files")
                .expect("libnss-wrapper (./x setup installs it)")
        });
        let mut cluster_pg = pg_cluster::PgCluster::init_as(&pg, owner).expect("initdb");

        // TLS: the server certificate and key from serverTLSSecret, the instance's own files.
        let tls = str_of(&spec["certificates"]["serverTLSSecret"]).to_owned();
        let secret = self.workload("Secret", &tls).clone();
        assert_eq!(
            secret["type"], "kubernetes.io/tls",
            "CNPG's serverTLSSecret must be a kubernetes.io/tls Secret"
        );
        let tls_dir = dir.join("tls");
        std::fs::create_dir_all(&tls_dir).expect("tls dir");
        for key in ["tls.crt", "tls.key"] {
            let path = tls_dir.join(key);
            std::fs::write(&path, self.data("Secret", &tls, key)).expect("tls file");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            if is_root() {
                std::os::unix::fs::chown(&path, Some(uid), Some(uid)).expect("chown");
            }
        }
        let mut settings = format!(
            "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            tls_dir.join("tls.crt").display(),
            tls_dir.join("tls.key").display()
        );
        for (k, v) in spec["postgresql"]["parameters"]
            .as_object()
            .into_iter()
            .flatten()
        {
            settings.push_str(&format!("{k} = '{}'\n", str_of(v)));
        }
        // What CNPG's instance manager does for a Cluster that backs up: archive every WAL
        // segment into the object store (`barman.rs`).
        let store = self.backup_store(name);
        if let Some(store) = &store {
            let uid = is_root().then_some(uid);
            settings.push_str(&Self::archive(store, &dir.join("spool"), uid));
        }
        let auto = cluster_pg.data_dir().join("postgresql.auto.conf");
        let mut conf = std::fs::read_to_string(&auto).unwrap_or_default();
        conf.push_str(&settings);
        std::fs::write(&auto, conf).expect("postgresql.auto.conf");
        cluster_pg.start().unwrap_or_else(|e| {
            panic!(
                "postgres starts: {e:#}\n{}",
                std::fs::read_to_string(cluster_pg.log_file()).unwrap_or_default()
            )
        });
        pg_cluster::spawn_reaper(std::process::id(), &cluster_pg.data_dir(), Some(&pg.root))
            .expect("reaper");

        if let Some(store) = &store {
            let password = cluster_pg.password().to_owned();
            self.base_backups(name, store, port, &password);
        }

        // What CNPG makes: the bootstrap owner and database, the managed roles, the Databases.
        let mut sql = String::new();
        let initdb = &spec["bootstrap"]["initdb"];
        let role = |sql: &mut String, role: &str, secret: &str| {
            let object = self.workload("Secret", secret);
            assert_eq!(
                object["type"], "kubernetes.io/basic-auth",
                "{secret}: CNPG reads role passwords from basic-auth Secrets"
            );
            assert_eq!(
                self.data("Secret", secret, "username"),
                role,
                "{secret}: its username must be the role's"
            );
            let password = self.data("Secret", secret, "password").replace('\'', "''");
            sql.push_str(&format!(
                "SELECT format('CREATE ROLE %I LOGIN', '{role}') WHERE NOT EXISTS \
                 (SELECT 1 FROM pg_roles WHERE rolname = '{role}') \\gexec\n\
                 ALTER ROLE \"{role}\" LOGIN PASSWORD '{password}';\n"
            ));
        };
        let owner = str_of(&initdb["owner"]).to_owned();
        role(&mut sql, &owner, str_of(&initdb["secret"]["name"]));
        let database = |sql: &mut String, db: &str, owner: &str| {
            sql.push_str(&format!(
                "SELECT format('CREATE DATABASE %I OWNER %I', '{db}', '{owner}') WHERE NOT EXISTS \
                 (SELECT 1 FROM pg_database WHERE datname = '{db}') \\gexec\n"
            ));
        };
        database(&mut sql, str_of(&initdb["database"]), &owner);
        let managed: Vec<&Value> = spec["managed"]["roles"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        for r in &managed {
            assert_ne!(r["login"], false, "{r}: a service's role logs in");
            let name = str_of(&r["name"]);
            role(&mut sql, name, str_of(&r["passwordSecret"]["name"]));
            if r["replication"] == true {
                sql.push_str(&format!("ALTER ROLE \"{name}\" REPLICATION;\n"));
            }
        }
        // Memberships once every role exists (a move's migrator is in each service's role).
        for r in &managed {
            for member_of in r["inRoles"].as_array().into_iter().flatten() {
                sql.push_str(&format!(
                    "GRANT \"{}\" TO \"{}\";\n",
                    str_of(member_of),
                    str_of(&r["name"])
                ));
            }
        }
        let databases: Vec<Value> = self
            .objects
            .iter()
            .filter(|o| o["kind"] == "Database" && o["spec"]["cluster"]["name"] == name)
            .cloned()
            .collect();
        for d in &databases {
            database(
                &mut sql,
                str_of(&d["spec"]["name"]),
                str_of(&d["spec"]["owner"]),
            );
        }
        // The client rules as CNPG writes them, then no superuser password (no superuser
        // access), then a reload.
        let user_rules: Vec<&str> = spec["postgresql"]["pg_hba"]
            .as_array()
            .into_iter()
            .flatten()
            .map(str_of)
            .collect();
        let hba = format!(
            "local all all scram-sha-256\n\
             hostssl postgres streaming_replica all cert\n\
             hostssl replication streaming_replica all cert\n\
             {}\n\
             host all all all scram-sha-256\n",
            user_rules.join("\n")
        );
        std::fs::write(cluster_pg.data_dir().join("pg_hba.conf"), hba).expect("pg_hba.conf");
        if spec["enableSuperuserAccess"] != true {
            sql.push_str("ALTER ROLE postgres PASSWORD NULL;\n");
        }
        sql.push_str("SELECT pg_reload_conf();\n");
        let out = Command::new(pg_cluster::bin_dir().expect("postgres").join("psql"))
            .args([
                &cluster_pg.url("postgres"),
                "-v",
                "ON_ERROR_STOP=1",
                "--no-psqlrc",
                "-q",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(sql.as_bytes())?;
                child.wait_with_output()
            })
            .expect("psql");
        assert!(
            out.status.success(),
            "CNPG stand-in: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The reload is asynchronous: wait until the superuser's plain connection is refused.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let probe = Command::new(pg_cluster::bin_dir().expect("postgres").join("psql"))
                .args([&cluster_pg.url("postgres"), "-tAc", "SELECT 1"])
                .output()
                .expect("psql");
            if !probe.status.success() {
                break;
            }
            assert!(Instant::now() < deadline, "pg_hba.conf never reloaded");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.postgres = Some(cluster_pg);
    }
}
