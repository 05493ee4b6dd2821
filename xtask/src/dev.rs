//! `x dev`: the platform on this machine with embedded defaults, through the real CLI.
//!
//! `mrbill up --with-prometheus --with-traces` (control plane + router + a Prometheus scraping
//! every cell + a trace collector; the control plane adopts or restarts existing cells),
//! then the demo tenant: onboarded with `mrbill tenant create` on first run, its admin
//! registered with the one-time invite and a generated password, a few sample PoCs and a dojo.
//! Everything keeps running in the background; `./x down` (or `mrbill down`) stops it. The
//! platform is a release build (`target/release`; the router built as it ships, with its own
//! profile into `target/router`), the one the benchmarks measure.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::{cargo, run_checked, target_dir};

const SLUG: &str = "demo";
const ADMIN_EMAIL: &str = "admin@demo.example.com";

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    build()?;
    let home = cell_model::local::mrbill_home();
    let up = mrbill(
        &home,
        &["up", "--with-prometheus", "--with-traces", "-o", "json"],
    )?;
    let router = up["router"].as_str().context("router url")?.to_owned();
    let prometheus = up["prometheus"].as_str().unwrap_or_default().to_owned();

    let tenant = match mrbill_status(&home, &["tenant", "show", SLUG, "-o", "json"])? {
        (0, tenant) => tenant,
        (3, _) => mrbill(
            &home,
            &[
                "tenant",
                "create",
                SLUG,
                "--name",
                "Demo Corp",
                "--admin-email",
                ADMIN_EMAIL,
                "--email-domain",
                "demo.example.com",
                "-o",
                "json",
            ],
        )?,
        (code, _) => bail!("mrbill tenant show {SLUG} failed (exit {code})"),
    };
    let endpoint = tenant["cell"]["status"]["endpoints"]["public"]
        .as_str()
        .context("endpoint")?
        .to_owned();
    wait_until_served(&endpoint)?;
    let credentials = home.join("dev/demo-admin.json");
    let password = match std::fs::read(&credentials) {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes)?["password"]
            .as_str()
            .map(str::to_owned),
        Err(_) => register_and_seed(&endpoint, &tenant, &credentials)?,
    };

    println!(
        "\nMr. Bill platform is running (state in {}).\n",
        home.display()
    );
    println!("  tenant endpoint  {endpoint}");
    println!("  admin            {ADMIN_EMAIL}");
    match &password {
        Some(p) => println!(
            "  password         {p}   (also in {})",
            credentials.display()
        ),
        None => println!("  password         (registered earlier by hand)"),
    }
    println!("  resolve          {router}/v1/resolve?tenant={SLUG}");
    println!("  API document     {endpoint}/poc/openapi.json");
    println!(
        "  prometheus       {prometheus}   (e.g. up{{tenant=\"{SLUG}\"}}, ALERTS; rules: charts/mrbill/files/prometheus-rules.yml)"
    );
    println!("  traces           mrbill traces --tenant {SLUG}, then mrbill traces show <trace>");
    println!(
        "  logs             {}/logs, {}/placements/*/cells/*/logs",
        home.display(),
        home.display()
    );
    if let Some(p) = &password {
        println!("\nTry it:");
        println!("  API={endpoint}");
        println!(
            "  TOKEN=$(curl -s $API/v1/auth/login -H 'content-type: application/json' -d '{{\"email\":\"{ADMIN_EMAIL}\",\"password\":\"{p}\"}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')"
        );
        println!("  curl -s \"$API/v1/pocs?q=kubernetis\" -H \"authorization: Bearer $TOKEN\"");
        println!("  curl -s \"$API/v1/reports/dashboard\" -H \"authorization: Bearer $TOKEN\"");
        println!(
            "  curl -s \"$API/v1/videos\" -H \"authorization: Bearer $TOKEN\"   # the sample video; its download.url is relative to $API"
        );
    }
    let mrbill_bin = bin_dir().join("mrbill");
    println!(
        "\nMore: {} tenant list | cell list | status | tenant create <slug> …  (MRBILL_HOME={})",
        mrbill_bin.display(),
        home.display()
    );
    println!(
        "Stop everything with ./x down; delete {} to start over.",
        home.display()
    );
    Ok(())
}

/// `x down`: `mrbill down`.
pub fn down() -> anyhow::Result<()> {
    let home = cell_model::local::mrbill_home();
    let status = Command::new(bin_dir().join("mrbill"))
        .arg("down")
        .env("MRBILL_HOME", &home)
        .status()
        .context("running mrbill down (build it with ./x dev first)")?;
    anyhow::ensure!(status.success(), "mrbill down failed");
    Ok(())
}

/// After a restart the control plane brings existing cells back within seconds; wait until the
/// router reaches the demo cell (its poc-service answers 401 without a token).
fn wait_until_served(endpoint: &str) -> anyhow::Result<()> {
    let http = reqwest::blocking::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        if let Ok(res) = http.get(format!("{endpoint}/v1/users/me")).send()
            && res.status().as_u16() == 401
        {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the demo tenant is not served at {endpoint}; see `mrbill cell show {SLUG}`"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Where `./x dev` builds the platform: a release build, so the platform a user tries locally
/// runs at the speed the benchmarks report (`docs/benchmarks.md`, "Builds": a debug build's
/// search was 10–30× slower; optimising only the dependencies in the dev profile cost more build
/// time on a fresh machine than a release build beside the tests' debug one).
fn bin_dir() -> std::path::PathBuf {
    target_dir().join("release")
}

fn build() -> anyhow::Result<()> {
    // The router as it ships: its own profile, whole-program optimised (Cargo.toml); `mrbill
    // up` runs it from `target/router` (`cell_model::local::router_binary`).
    run_checked(cargo().args(["build", "--profile", "router", "-p", "mrbill-router"]))?;
    run_checked(cargo().args([
        "build",
        "--release",
        "-p",
        "mrbill",
        "-p",
        "mrbill-control-plane",
        "-p",
        "poc-service",
        "-p",
        "dojo-service",
        "-p",
        "media-service",
    ]))
}

/// Registers the demo admin with the bootstrap invite and a generated password, then adds
/// sample PoCs. Returns the password (also saved 0600 in `credentials`).
fn register_and_seed(
    endpoint: &str,
    tenant: &Value,
    credentials: &Path,
) -> anyhow::Result<Option<String>> {
    let Some(invite) = tenant["admin_invite"]["invite_token"].as_str() else {
        return Ok(None);
    };
    let password = format!("demo-{}", crate::random_hex(8)?);
    let http = reqwest::blocking::Client::new();
    let res = http
        .post(format!("{endpoint}/v1/auth/register"))
        .json(&json!({ "email": ADMIN_EMAIL, "password": password, "invite_token": invite }))
        .send()?;
    if res.status().as_u16() == 403 {
        // The invite was used: someone registered the admin by hand.
        return Ok(None);
    }
    anyhow::ensure!(
        res.status().is_success(),
        "registering the demo admin: {} {}",
        res.status(),
        res.text().unwrap_or_default()
    );
    let token = res.json::<Value>()?["access_token"]
        .as_str()
        .context("access token")?
        .to_owned();
    std::fs::create_dir_all(credentials.parent().context("credentials dir")?)?;
    write_private(
        credentials,
        &json!({ "email": ADMIN_EMAIL, "password": password }).to_string(),
    )?;
    for (name, language, tags, description) in SAMPLES {
        let slug = name.to_lowercase().replace(' ', "-");
        let res = http
            .post(format!("{endpoint}/v1/pocs"))
            .bearer_auth(&token)
            .json(&json!({
                "name": name, "description": description, "language": language, "tags": tags,
                "repository_url": format!("https://github.com/demo-corp/{slug}"),
            }))
            .send()?;
        anyhow::ensure!(
            res.status().is_success(),
            "seeding {name}: {}",
            res.status()
        );
    }
    let res = http
        .post(format!("{endpoint}/v1/dojos"))
        .bearer_auth(&token)
        .json(&json!({
            "name": "FizzBuzz kata", "language": "rust",
            "description": "Open to everyone in the tenant: edit together, chat, talk",
            "initial_code": "fn main() {\n    for i in 1..=15 {\n        // your turn\n    }\n}\n",
        }))
        .send()?;
    anyhow::ensure!(
        res.status().is_success(),
        "creating the sample dojo: {}",
        res.status()
    );
    let year = time::OffsetDateTime::now_utc().year();
    for (path, body) in [
        (
            "/v1/videos",
            json!({ "year": year, "title": "Demo Corp's year in PoCs" }),
        ),
        ("/v1/reports", json!({ "format": "pdf", "group_by": "tag" })),
    ] {
        let res = http
            .post(format!("{endpoint}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()?;
        anyhow::ensure!(
            res.status().is_success(),
            "queueing a sample {path}: {} {}",
            res.status(),
            res.text().unwrap_or_default()
        );
    }
    eprintln!(
        "x: registered {ADMIN_EMAIL}, added {} sample PoCs, a sample dojo, and queued a yearly video and a PDF report",
        SAMPLES.len()
    );
    Ok(Some(password))
}

const SAMPLES: &[(&str, &str, &[&str], &str)] = &[
    (
        "Kubernetes operator",
        "rust",
        &["k8s", "operator"],
        "Reconciles tenant cells on EKS",
    ),
    (
        "Payments gateway",
        "go",
        &["payments", "api"],
        "Card payments behind one REST API",
    ),
    (
        "Realtime dashboard",
        "typescript",
        &["websocket", "ui"],
        "Live metrics over WebSockets",
    ),
    (
        "Fraud scoring",
        "python",
        &["ml", "payments"],
        "Gradient-boosted fraud scores per order",
    ),
    (
        "Search relevance lab",
        "rust",
        &["search", "tantivy"],
        "Typo-tolerant PoC search experiments",
    ),
    (
        "Mobile offline sync",
        "kotlin",
        &["mobile", "crdt"],
        "Offline-first sync with CRDTs on Android",
    ),
    (
        "Invoice OCR",
        "python",
        &["ml", "documents"],
        "Extracts totals from scanned invoices",
    ),
    (
        "Event sourcing kit",
        "java",
        &["events", "kafka"],
        "Aggregates rebuilt from a Kafka log",
    ),
];

fn mrbill(home: &Path, args: &[&str]) -> anyhow::Result<Value> {
    match mrbill_status(home, args)? {
        (0, v) => Ok(v),
        (code, _) => bail!("`mrbill {}` failed (exit {code})", args.join(" ")),
    }
}

/// Runs the freshly built `mrbill` (progress and errors go straight to the terminal).
fn mrbill_status(home: &Path, args: &[&str]) -> anyhow::Result<(i32, Value)> {
    let out = Command::new(bin_dir().join("mrbill"))
        .args(args)
        .env("MRBILL_HOME", home)
        .env("MRBILL_BIN_DIR", bin_dir())
        .stdin(Stdio::null())
        .stderr(if args.contains(&"show") {
            Stdio::null()
        } else {
            Stdio::inherit()
        })
        .output()
        .context("running mrbill")?;
    let code = out.status.code().unwrap_or(-1);
    let value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    Ok((code, value))
}

fn write_private(path: &Path, value: &str) -> anyhow::Result<()> {
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
