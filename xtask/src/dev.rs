//! `x dev`: the platform on this machine with embedded defaults.
//!
//! For now that is poc-service on its own Postgres cluster under `$MRBILL_HOME/dev`, with a
//! bootstrap invite for the demo tenant's admin. State survives restarts; Ctrl-C stops the
//! service, and a reaper stops Postgres when this process exits.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use pg_cluster::spawn_reaper;

use crate::{cargo, run_checked, target_dir};

const ADMIN_EMAIL: &str = "admin@demo.example.com";

/// `MRBILL_HOME`, else `$XDG_DATA_HOME/mrbill` or `~/.local/share/mrbill`; as root
/// `/var/lib/mrbill`, because Postgres runs as an unprivileged user that must reach its files.
pub fn mrbill_home() -> PathBuf {
    if let Some(home) = std::env::var_os("MRBILL_HOME") {
        return PathBuf::from(home);
    }
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/mrbill");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".local/share")
        });
    data.join("mrbill")
}

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    run_checked(cargo().args(["build", "-p", "poc-service", "-p", "mrbill-router"]))?;
    let bin = target_dir().join("debug/poc-service");
    let router_bin = target_dir().join("debug/mrbill-router");
    let home = mrbill_home();
    let dev = home.join("dev");
    let secrets = dev.join("secrets");
    let logs = dev.join("logs");
    for dir in [&home, &dev, &secrets, &logs] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    set_mode(&secrets, 0o700)?;
    // Postgres (unprivileged) must traverse down to its own directory.
    for dir in [&home, &dev] {
        set_mode(dir, 0o755)?;
    }

    let superuser_password = secret(&secrets.join("pg-superuser"), || crate::random_hex(16))?;
    let spec = pg_cluster::ClusterSpec {
        root: dev.join("pg"),
        port: None,
        superuser: "mrbill".into(),
        password: superuser_password,
        ephemeral: false,
    };
    let mut cluster = pg_cluster::PgCluster::init(&spec)?;
    cluster.start()?;
    spawn_reaper(std::process::id(), &cluster.data_dir(), None)?;

    // One database and role per service.
    let poc_password = secret(&secrets.join("poc-db-password"), || crate::random_hex(16))?;
    ensure_role_and_database(&cluster, "poc", &poc_password)?;
    let db_url = cluster.url_for("poc", &poc_password, "poc");
    write_secret(&secrets.join("poc-database-url"), &db_url)?;
    run_checked(
        Command::new(&bin)
            .arg("init-secrets")
            .arg("--dir")
            .arg(&secrets),
    )?;
    secret(&secrets.join("bootstrap-token"), || crate::random_hex(24))?;

    let bootstrap = Command::new(&bin)
        .args(["bootstrap-admin", "--email", ADMIN_EMAIL, "--token-file"])
        .arg(secrets.join("bootstrap-token"))
        .env("MRBILL_DATABASE_URL_FILE", secrets.join("poc-database-url"))
        .env("MRBILL_LOG_FORMAT", "compact")
        .env("RUST_LOG", "warn")
        .output()?;
    let invite: Option<serde_json::Value> = match bootstrap.status.code() {
        Some(0) => {
            Some(serde_json::from_slice(&bootstrap.stdout).context("parsing bootstrap output")?)
        }
        Some(3) => None,
        _ => bail!(
            "bootstrap-admin failed: {}",
            String::from_utf8_lossy(&bootstrap.stderr)
        ),
    };

    // The router is the public face (8080 when free); the cell's services sit behind it.
    let router_port = if TcpListener::bind(("127.0.0.1", 8080)).is_ok() {
        8080
    } else {
        pg_cluster::free_port()?
    };
    let ready = dev.join("poc-service.ready");
    let _ = std::fs::remove_file(&ready);
    let log = std::fs::File::create(logs.join("poc-service.log"))?;
    let mut child = Command::new(&bin)
        .arg("serve")
        .env("MRBILL_CELL_ID", "c-dev-demo")
        .env("MRBILL_TENANT", "demo")
        .env("MRBILL_HTTP_ADDR", "127.0.0.1:0")
        .env("MRBILL_INTERNAL_ADDR", "127.0.0.1:0")
        .env("MRBILL_DATABASE_URL_FILE", secrets.join("poc-database-url"))
        .env(
            "MRBILL_JWT_PRIVATE_KEY_FILE",
            secrets.join("jwt-private.pem"),
        )
        .env(
            "MRBILL_JWT_KID",
            std::fs::read_to_string(secrets.join("jwt.kid"))?.trim(),
        )
        .env("MRBILL_SERVICE_TOKEN_FILE", secrets.join("service-token"))
        .env("MRBILL_TRUSTED_PROXIES", "127.0.0.1")
        .env("MRBILL_SEARCH_DIR", dev.join("search-index"))
        .env("MRBILL_READY_FILE", &ready)
        .env("MRBILL_LOG_FORMAT", "compact")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let addrs = wait_for_ready(&ready, &mut child)?;
    let public = addrs["public"].as_str().unwrap_or_default().to_owned();
    let internal = addrs["internal"].as_str().unwrap_or_default().to_owned();

    // Until the control plane serves the route feed, the router starts from a snapshot.
    let routes = dev.join("routes.json");
    let table = serde_json::json!({ "revision": 1, "routes": { "demo": {
        "tenant": "demo", "cell_id": "c-dev-demo", "generation": 1, "state": "active",
        "services": { "poc": format!("http://{public}") }, "email_domains": ["demo.example.com"] } } });
    std::fs::write(&routes, table.to_string())?;
    let router_log = std::fs::File::create(logs.join("router.log"))?;
    let mut router = Command::new(&router_bin)
        .env("MRBILL_ROUTER_ADDR", format!("127.0.0.1:{router_port}"))
        .env(
            "MRBILL_PUBLIC_URL",
            format!("http://127.0.0.1:{router_port}"),
        )
        .env("MRBILL_ROUTER_SNAPSHOT", &routes)
        .env("MRBILL_LOG_FORMAT", "compact")
        .stdin(Stdio::null())
        .stdout(router_log.try_clone()?)
        .stderr(router_log)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", router_port)).is_err() {
        if router.try_wait()?.is_some() || Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "mrbill-router did not start; see {}",
                logs.join("router.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let endpoint = format!("http://127.0.0.1:{router_port}/t/demo");

    println!("\nMr. Bill platform (dev) is running — tenant `demo`, cell `c-dev-demo`.\n");
    println!(
        "  tenant endpoint  {endpoint}   (through mrbill-router; try: curl {endpoint}/poc/openapi.json)"
    );
    println!("  resolve          http://127.0.0.1:{router_port}/v1/resolve?tenant=demo");
    println!("  poc-service      http://{public}   (behind the router; /healthz, /metrics)");
    println!(
        "  internal API  http://{internal}   (service token in {})",
        secrets.join("service-token").display()
    );
    println!(
        "  Postgres      127.0.0.1:{}   (data in {})",
        cluster.port(),
        cluster.data_dir().display()
    );
    println!("  logs          {}", logs.join("poc-service.log").display());
    match invite {
        Some(invite) => {
            let token = invite["invite_token"].as_str().unwrap_or_default();
            println!("\nBootstrap admin {ADMIN_EMAIL} — register once with the one-time invite:");
            println!(
                "  curl -s {endpoint}/v1/auth/register -H 'content-type: application/json' \\\n    -d '{{\"email\":\"{ADMIN_EMAIL}\",\"password\":\"choose a long passphrase\",\"invite_token\":\"{token}\"}}'"
            );
        }
        None => println!(
            "\nThe admin {ADMIN_EMAIL} is registered: sign in at POST {endpoint}/v1/auth/login"
        ),
    }
    println!(
        "\nCtrl-C stops everything; data stays in {} (delete it to start over).",
        home.display()
    );
    let status = child.wait()?;
    let _ = router.kill();
    let _ = router.wait();
    cluster.stop()?;
    if !status.success() && status.code().is_some() {
        bail!(
            "poc-service exited with {status}; see {}",
            logs.join("poc-service.log").display()
        );
    }
    Ok(())
}

fn wait_for_ready(
    path: &Path,
    child: &mut std::process::Child,
) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Ok(serde_json::from_str(&text)?);
        }
        if let Some(status) = child.try_wait()? {
            bail!("poc-service exited during start-up ({status}); see its log");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("poc-service did not become ready within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Creates the login role and its own database if missing (idempotent), through psql.
fn ensure_role_and_database(
    cluster: &pg_cluster::PgCluster,
    name: &str,
    password: &str,
) -> anyhow::Result<()> {
    let psql = |db: &str, sql: &str| -> anyhow::Result<String> {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &cluster.url(db),
                "-c",
                sql,
            ])
            .output()
            .context("running psql")?;
        anyhow::ensure!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let pw = password.replace('\'', "''");
    psql(
        "postgres",
        &format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN CREATE ROLE {name} LOGIN PASSWORD '{pw}'; ELSE ALTER ROLE {name} LOGIN PASSWORD '{pw}'; END IF; END $$"
        ),
    )?;
    if psql(
        "postgres",
        &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
    )? != "1"
    {
        psql("postgres", &format!("CREATE DATABASE {name} OWNER {name}"))?;
    }
    // Nobody but the owner may connect: services cannot read each other's databases.
    psql(
        "postgres",
        &format!("REVOKE ALL ON DATABASE {name} FROM PUBLIC"),
    )?;
    Ok(())
}

/// Reads the secret at `path`, creating it (0600) with `make` first if missing.
fn secret(path: &Path, make: impl FnOnce() -> anyhow::Result<String>) -> anyhow::Result<String> {
    if let Ok(v) = std::fs::read_to_string(path) {
        return Ok(v.trim().to_owned());
    }
    let value = make()?;
    write_secret(path, &value)?;
    Ok(value)
}

fn write_secret(path: &Path, value: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(value.as_bytes())?;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}
