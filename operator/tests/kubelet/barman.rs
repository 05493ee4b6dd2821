//! CloudNativePG's backups as its instance manager runs them, for a Cluster whose spec has
//! `backup.barmanObjectStore`: WAL archived with `barman-cloud-wal-archive`, the base backup
//! each `Backup` of the Cluster asks for taken with `barman-cloud-backup` (its status written
//! as CNPG writes it), and a Cluster's `bootstrap.recovery` from such a `Backup` — to its
//! `recoveryTarget` — with `barman-cloud-restore` and `barman-cloud-wal-restore`
//! (PyPI `barman[cloud]`, the tools CNPG's operand images carry; `./x test` installs them and
//! names their directory in `MRBILL_BARMAN_CLOUD`). The store is whatever S3 the claim's
//! ConfigMap names (moto in tests), with the key from the Secret `s3Credentials` names.
//!
//! One difference from CNPG: Postgres here runs as a uid of its own that cannot enter the
//! tools' virtualenv, so `archive_command` hands each segment to a spool directory and a relay
//! thread (as the test's user) uploads it; CNPG's manager calls the tool from the command.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Kubelet, is_root, str_of};

/// Where barman-cloud's commands are.
fn tools() -> PathBuf {
    std::env::var_os("MRBILL_BARMAN_CLOUD").map_or_else(
        || PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/mrbill/venv/bin"),
        PathBuf::from,
    )
}

/// A Cluster's object store as barman-cloud reaches it from here.
#[derive(Clone, Debug)]
pub struct Store {
    /// The S3 endpoint, made local.
    pub endpoint: String,
    /// `s3://<bucket>/`
    pub destination: String,
    /// The folder of this Cluster in the bucket (CNPG's default: the Cluster's name).
    pub server: String,
    env: Vec<(String, String)>,
}

impl Store {
    fn command(&self, tool: &str) -> Command {
        let program = tools().join(tool);
        assert!(
            program.exists(),
            "{} is missing: ./x test installs barman[cloud] (or set MRBILL_BARMAN_CLOUD)",
            program.display()
        );
        let mut cmd = Command::new(program);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v))).args([
            "--cloud-provider",
            "aws-s3",
            "--endpoint-url",
            &self.endpoint,
        ]);
        cmd
    }

    fn run(&self, tool: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let out = self
            .command(tool)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The archived WAL segments' names, in order.
    pub fn segments(&self) -> Vec<String> {
        let bucket = self
            .destination
            .trim_start_matches("s3://")
            .trim_end_matches('/');
        let url = format!(
            "{}/{bucket}?list-type=2&prefix={}/wals/",
            self.endpoint, self.server
        );
        let listing = http_get(&url).expect("list the archive");
        let mut out: Vec<String> = listing
            .split("<Key>")
            .skip(1)
            .filter_map(|k| k.split("</Key>").next())
            .filter_map(|key| key.rsplit('/').next())
            .map(|name| name.trim_end_matches(".gz").to_owned())
            .filter(|name| name.len() == 24)
            .collect();
        out.sort();
        out
    }
}

impl Kubelet {
    /// What the controller does once the backups' claim is bound: the Cluster archives into
    /// the bucket the provisioner's ConfigMap names.
    pub fn bind_backups(
        &mut self,
        cell: &cell_model::Cell,
        store: &cell_operator::render::ObjectStore,
    ) {
        let config = self
            .workload("ConfigMap", cell_operator::render::BACKUP_BUCKET)
            .clone();
        let objects = std::mem::take(&mut self.objects);
        self.objects = cell_operator::render::with_backups(cell, objects, &config, store);
    }

    /// The object store of Cluster `name`, if its spec backs up.
    pub fn backup_store(&self, name: &str) -> Option<Store> {
        let store = &self.workload("Cluster", name)["spec"]["backup"]["barmanObjectStore"];
        self.store_of(store, name)
    }

    /// The store a `barmanObjectStore` section names (`None`: no section), its folder
    /// `default_server` unless it names one.
    fn store_of(&self, store: &Value, default_server: &str) -> Option<Store> {
        if store.is_null() {
            return None;
        }
        let key = |selector: &Value| {
            self.data(
                "Secret",
                str_of(&selector["name"]),
                str_of(&selector["key"]),
            )
        };
        let credentials = &store["s3Credentials"];
        Some(Store {
            endpoint: self.localize(str_of(&store["endpointURL"]), None),
            destination: str_of(&store["destinationPath"]).to_owned(),
            server: match str_of(&store["serverName"]) {
                "" => default_server.to_owned(),
                server => server.to_owned(),
            },
            env: vec![
                ("AWS_ACCESS_KEY_ID".into(), key(&credentials["accessKeyId"])),
                (
                    "AWS_SECRET_ACCESS_KEY".into(),
                    key(&credentials["secretAccessKey"]),
                ),
                ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
            ],
        })
    }

    /// What a new backups' claim's provisioner says: the bucket is now `bucket` (of the same
    /// store, with the same key here: moto takes any).
    pub fn rebind_backups_bucket(&mut self, bucket: &str) {
        let config = self
            .objects
            .iter_mut()
            .find(|o| {
                o["kind"] == "ConfigMap"
                    && o["metadata"]["name"] == cell_operator::render::BACKUP_BUCKET
            })
            .expect("the backups' ConfigMap");
        config["data"]["BUCKET_NAME"] = Value::String(bucket.to_owned());
    }

    /// Settings that archive every WAL segment into `store` (gzip, as rendered), through
    /// `spool`, and the relay that uploads it. `archive_timeout` is short here so a test sees
    /// a segment within a second (CNPG's default is 5 min).
    pub(super) fn archive(store: &Store, spool: &Path, uid: Option<u32>) -> String {
        std::fs::create_dir_all(spool).expect("spool");
        if let Some(uid) = uid {
            std::os::unix::fs::chown(spool, Some(uid), Some(uid)).expect("chown spool");
        }
        let (store, dir) = (store.clone(), spool.to_owned());
        std::thread::spawn(move || {
            while dir.exists() {
                let mut ready: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .map(|d| d.flatten().map(|e| e.path()).collect())
                    .unwrap_or_default();
                ready.retain(|p| p.extension().is_none());
                ready.sort();
                for segment in ready {
                    let path = segment.display().to_string();
                    let args = ["--gzip", &store.destination, &store.server, &path];
                    // Quiet: an upload cut short by the test's end is retried, never waited
                    // for, and must not hold the test's output open.
                    let ok = store
                        .command("barman-cloud-wal-archive")
                        .args(args)
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success());
                    if ok {
                        let _ = std::fs::remove_file(&segment);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let spool = spool.display();
        format!(
            "archive_mode = on\n\
             archive_command = 'test ! -f {spool}/%f && cp %p {spool}/%f.part && mv {spool}/%f.part {spool}/%f'\n\
             archive_timeout = '1s'\n"
        )
    }

    /// The base backups the Cluster's `Backup`s without a status ask for, taken as the
    /// superuser while it still has a password; each `Backup`'s status then says where it is
    /// (as CNPG's: phase, backupId, serverName, destinationPath, times).
    pub(super) fn base_backups(&mut self, name: &str, store: &Store, port: u16, password: &str) {
        let asked: Vec<String> = self
            .objects
            .iter()
            .filter(|o| {
                o["kind"] == "Backup"
                    && o["spec"]["cluster"]["name"] == name
                    && o["status"].is_null()
            })
            .map(|o| str_of(&o["metadata"]["name"]).to_owned())
            .collect();
        for backup in asked {
            let started = now_rfc3339();
            let port = port.to_string();
            let args = [
                "--immediate-checkpoint",
                "--gzip",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                &store.destination,
                &store.server,
            ];
            store.run("barman-cloud-backup", &args, &[("PGPASSWORD", password)]);
            let list = store.run(
                "barman-cloud-backup-list",
                &["--format", "json", &store.destination, &store.server],
                &[],
            );
            let listed: Value = serde_json::from_slice(&list.stdout).expect("backup list json");
            let id = listed["backups_list"]
                .as_array()
                .and_then(|b| b.last())
                .map(|b| str_of(&b["backup_id"]).to_owned())
                .expect("the backup is listed");
            let status = serde_json::json!({
                "phase": "completed",
                "backupId": id,
                "serverName": store.server,
                "destinationPath": store.destination,
                "startedAt": started,
                "stoppedAt": now_rfc3339(),
            });
            let object = self
                .objects
                .iter_mut()
                .find(|o| o["kind"] == "Backup" && o["metadata"]["name"] == backup.as_str())
                .expect("the Backup");
            object["status"] = status;
        }
    }

    /// Starts the rendered Cluster `cluster` as CNPG bootstraps one with `bootstrap.recovery`
    /// from a `Backup` of the namespace (by the id and folder its status names), or from the
    /// external cluster `recovery.source` names (its object store, the backup
    /// `recoveryTarget.backupID`): that backup restored into a new data directory, the
    /// archived WAL replayed to `recoveryTarget` (`targetTime`, or `targetImmediate`: the
    /// backup's end), promoted, started on a free port; its superuser has no password (as the
    /// source's).
    pub fn recover(&self, cluster: &Value) -> pg_cluster::PgCluster {
        let name = str_of(&cluster["metadata"]["name"]);
        let recovery = &cluster["spec"]["bootstrap"]["recovery"];
        let target = &recovery["recoveryTarget"];
        let (store, id) = match recovery["source"].as_str() {
            Some(source) => {
                let external = cluster["spec"]["externalClusters"]
                    .as_array()
                    .and_then(|e| e.iter().find(|c| c["name"] == source))
                    .unwrap_or_else(|| panic!("external cluster {source}"));
                let store = self
                    .store_of(&external["barmanObjectStore"], source)
                    .expect("the external cluster's object store");
                let id = str_of(&target["backupID"]);
                assert!(
                    !id.is_empty(),
                    "a recovery from an object store names its backup"
                );
                (store, id.to_owned())
            }
            None => {
                let backup_name = str_of(&recovery["backup"]["name"]);
                let backup = self.workload("Backup", backup_name);
                assert_eq!(backup["status"]["phase"], "completed", "{backup_name}");
                let mut store = self.backup_store(name).expect("the Cluster backs up");
                let archived = &backup["status"];
                store.destination = str_of(&archived["destinationPath"]).to_owned();
                store.server = str_of(&archived["serverName"]).to_owned();
                (store, str_of(&archived["backupId"]).to_owned())
            }
        };
        let target = match target["targetTime"].as_str() {
            Some(time) => format!("recovery_target_time = '{time}'"),
            None => {
                assert_eq!(target["targetImmediate"], true, "{target}");
                "recovery_target = 'immediate'".to_owned()
            }
        };
        let dir = self.root.join(format!("{name}-recovered"));
        // An earlier recovery's copy goes first (its segments, its data).
        let _ = std::fs::remove_dir_all(&dir);
        let data = dir.join("pgdata/data");
        std::fs::create_dir_all(&data).expect("data dir");
        let data_path = data.display().to_string();
        store.run(
            "barman-cloud-restore",
            &[&store.destination, &store.server, &id, &data_path],
            &[],
        );
        // Every archived segment where the recovering Postgres can read it.
        let wals = dir.join("wals");
        std::fs::create_dir_all(&wals).expect("wals dir");
        for segment in store.segments() {
            let to = wals.join(&segment).display().to_string();
            store.run(
                "barman-cloud-wal-restore",
                &[&store.destination, &store.server, &segment, &to],
                &[],
            );
        }
        let auto = data.join("postgresql.auto.conf");
        let mut conf = std::fs::read_to_string(&auto).unwrap_or_default();
        conf.push_str(&format!(
            "archive_mode = off\nrestore_command = 'cp {}/%f %p'\n\
             {target}\nrecovery_target_action = 'promote'\n",
            wals.display()
        ));
        std::fs::write(&auto, conf).expect("recovery settings");
        std::fs::write(data.join("recovery.signal"), "").expect("recovery.signal");
        let _ = std::fs::remove_file(data.join("postmaster.pid"));
        let uid = cluster["spec"]["postgresUID"].as_u64().unwrap_or(26) as u32;
        let owner = is_root().then(|| {
            for path in [&dir, &dir.join("pgdata"), &wals] {
                std::os::unix::fs::chown(path, Some(uid), Some(uid)).expect("chown");
            }
            chown_tree(&data, uid);
            chown_tree(&wals, uid);
            pg_cluster::Owner::unlisted("postgres", uid, &dir.join("nss"))
                .expect("nss files")
                .expect("libnss-wrapper")
        });
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))
            .expect("chmod data");
        let spec = pg_cluster::ClusterSpec {
            root: dir.join("pgdata"),
            port: Some(pg_cluster::free_port().expect("port")),
            superuser: "postgres".into(),
            password: String::new(),
            ephemeral: true,
        };
        let mut cluster = pg_cluster::PgCluster::init_as(&spec, owner).expect("recovered cluster");
        cluster.start().unwrap_or_else(|e| {
            panic!(
                "the recovered Postgres starts: {e:#}\n{}",
                std::fs::read_to_string(cluster.log_file()).unwrap_or_default()
            )
        });
        // Promoted once the target is reached: recovery.signal is gone.
        let deadline = Instant::now() + Duration::from_secs(60);
        while data.join("recovery.signal").exists() {
            assert!(
                Instant::now() < deadline,
                "recovery never finished: {}",
                std::fs::read_to_string(cluster.log_file()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }
}

fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{now}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn chown_tree(path: &Path, uid: u32) {
    let status = Command::new("chown")
        .args(["-R", &format!("{uid}:{uid}")])
        .arg(path)
        .status()
        .expect("chown");
    assert!(status.success(), "chown -R {}", path.display());
}

/// A GET's body (HTTP/1.0: no chunked encoding).
fn http_get(url: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = std::net::TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}
