//! The rendered production path, started for real (no cluster needed): for every tier and
//! database engine, the operator's objects for a cell and the Secrets it generates are
//! handed to a local kubelet (`kubelet/`), which starts each Deployment's and StatefulSet's
//! containers from the rendered spec — the image's binary as its Dockerfile builds it, the
//! rendered args and env, secret files with the rendered modes and owner, the pod's user and
//! fsGroup — against a real Postgres (in-cluster: the rendered CloudNativePG `Cluster` and
//! `Database`s, started by the kubelet's CNPG stand-in — CNPG itself cannot run here; rds: a
//! TLS-only stand-in for the instance, whose roles the operator's own role maker creates as the
//! master user). Each pod must pass its rendered readiness probe, and a real router in front must
//! serve the tenant's first admin through every service.

mod fixtures;
mod kubelet;
mod rds;

use std::time::Duration;

use cell_model::contract::Service;
use cell_model::route_feed::{RouteEntry, RouteEvent, RouteState, RouteTable};
use cell_model::{AdminBootstrap, Cell, DatabaseEngine, SearchEngine, Tier};
use cell_operator::render::{Images, desired};
use cell_operator::roles::{DatabaseAdmin as _, Postgres, Role, Server};
use kubelet::Kubelet;
use serde_json::json;

const INVITE: &str = "the-first-admins-invite-token";
const ADMIN: &str = "boss@acme.example";
const PASSWORD: &str = "correct horse battery staple";
const BUCKET: &str = "mrbill-c-acme-1234-media";

fn cell(tier: Tier, engine: DatabaseEngine) -> Cell {
    let expires = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let mut cell = fixtures::cell(tier, engine, SearchEngine::Embedded);
    cell.spec.bootstrap = Some(AdminBootstrap {
        admin_email: ADMIN.into(),
        invite_token_sha256: service_kit::secrets::token_hash(INVITE),
        expires_at: expires
            .format(&time::format_description::well_known::Rfc3339)
            .expect("rfc 3339"),
    });
    cell
}

/// A router following a snapshot with the route the control plane publishes once the cell is
/// Ready (the operator's endpoints: `http://<svc>-service.<ns>.svc:8080`), made local.
struct Router {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Router {
    fn start(kubelet: &Kubelet, cell: &Cell) -> Self {
        let dir = tempfile::tempdir().expect("router dir");
        let ns = &kubelet.namespace;
        let url = |svc: Service| {
            let host = format!("http://{}.{ns}.svc:8080", svc.binary());
            (svc, kubelet.localize(&host, None))
        };
        let mut table = RouteTable::default();
        table.apply(RouteEvent::Snapshot {
            revision: 1,
            routes: vec![RouteEntry {
                tenant: cell.spec.tenant.clone(),
                cell_id: cell.spec.cell_id.clone(),
                generation: 1,
                state: RouteState::Active,
                services: Service::ALL.map(url).into_iter().collect(),
                // dojo's pods by name, as the operator reports them for pinning.
                replicas: [(
                    Service::Dojo,
                    vec![kubelet.localize(&cell_operator::render::pod_url(cell, "dojo", 0), None)],
                )]
                .into_iter()
                .collect(),
                email_domains: vec!["acme.example".into()],
            }],
        });
        let snapshot = dir.path().join("routes.json");
        std::fs::write(&snapshot, serde_json::to_vec(&table).expect("json")).expect("snapshot");
        let port = pg_cluster::free_port().expect("port");
        let child = std::process::Command::new(test_support::bin_dir().join("mrbill-router"))
            .env("MRBILL_ROUTER_ADDR", format!("127.0.0.1:{port}"))
            .env("MRBILL_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
            .env("MRBILL_ROUTER_SNAPSHOT", &snapshot)
            .env("MRBILL_LOG_FORMAT", "compact")
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("router");
        let router = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "router never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        router
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn a_cell_starts_from_its_rendered_objects(tier: Tier, engine: DatabaseEngine) {
    let mut cell = cell(tier, engine);
    // The optional settings too: the tenant's email domains and the platform's mail relay (a
    // real SMTP server), so open sign-up works through the rendered pods.
    cell.spec.email_domains = vec!["acme.example".into()];
    let smtp = test_support::mail::SmtpReceiver::start();
    // And traces, to a real OTLP receiver.
    let collector = test_support::otlp::Collector::start();
    let tracing = cell_operator::render::Tracing {
        env: vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                collector.url().to_owned(),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into()),
        ],
        namespace: "observability".into(),
        pod_labels: [(
            "app.kubernetes.io/name".into(),
            "opentelemetry-collector".into(),
        )]
        .into(),
        port: 4318,
    };
    let mail = cell_operator::render::Mail {
        smtp_url: smtp.url().into(),
        from: Some("no-reply+{tenant}@mrbill.example".into()),
    };
    let mut objects = desired(
        &cell,
        &Images {
            registry: "registry.example.com/mrbill".into(),
            trusted_proxies: "127.0.0.1/32".into(),
            aws_egress: Vec::new(),
            mail: Some(mail.clone()),
            secrets_access: None,
            cnpg_namespace: "cnpg-system".into(),
            identity_access: None,
            service_export: false,
            object_store: cell_operator::render::ObjectStore::default(),
            monitoring: None,
            tracing: Some(tracing),
        },
    );
    let egress = objects
        .iter()
        .find(|o| o["metadata"]["name"] == "allow-traces-to-collector")
        .expect("the services' egress to the collector");
    assert_eq!(egress["spec"]["egress"][0]["ports"][0]["port"], 4318);
    objects.extend(cell_operator::secrets::generate(&cell).expect("secrets"));
    objects.push(cell_operator::secrets::smtp(&cell, &mail));
    // An RDS cell's database Secrets come from its instance (the operator writes them once
    // the instance is available; RDS endpoints are outside the cluster).
    let rds = match engine {
        DatabaseEngine::Rds => Some(rds::RdsInstance::start().await),
        _ => None,
    };
    if let Some(rds) = &rds {
        let secrets = cell_operator::secrets::rds(&cell, "127.0.0.1", i32::from(rds.port()));
        // The operator makes the roles itself, as the master user (never in the namespace).
        let roles: Vec<Role> = secrets
            .iter()
            .map(|secret| {
                let name = secret["metadata"]["name"].as_str().expect("name");
                let url = secret["stringData"]["url"].as_str().expect("url");
                Role {
                    name: name
                        .strip_suffix("-database")
                        .expect("a database Secret")
                        .into(),
                    password: cell_operator::secrets::password_of(url)
                        .expect("password")
                        .to_owned()
                        .into(),
                }
            })
            .collect();
        let server = Server {
            host: "127.0.0.1".into(),
            port: rds.port(),
        };
        Postgres
            .ensure_roles(&server, &rds.master, &roles)
            .await
            .expect("the services' roles");
        objects.extend(secrets);
    }
    // …and its bucket and IAM role from its foundation stack; an in-cluster cell's bucket is
    // claimed from the platform's object store. S3 is moto here, for both.
    let s3 = test_support::moto::Moto::start();
    let mut irsa_env = Vec::new();
    if rds.is_some() {
        let outputs = [
            ("BucketName", BUCKET),
            ("KeyArn", "arn:aws:kms:sa-east-1:123456789012:key/cell"),
            (
                "IrsaRoleArn",
                "arn:aws:iam::123456789012:role/mrbill-c-acme-1234",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        objects = cell_operator::render::with_foundation(&cell, objects, &outputs);
        reqwest::Client::new()
            .put(format!("{}/{BUCKET}", s3.url))
            .send()
            .await
            .expect("create bucket")
            .error_for_status()
            .expect("bucket created");
        irsa_env = [
            ("AWS_ENDPOINT_URL", s3.url.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "sa-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    }
    let secret = |name: &str, key: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == name)
            .and_then(|o| o["stringData"][key].as_str())
            .map(str::to_owned)
    };
    let poc_database = secret("poc-database", "url").expect("poc's database URL");
    let postgres_ca = secret("postgres-tls", "ca.crt");
    let ns = format!("cell-{}", cell.spec.tenant);
    let s3_url = s3.url.clone();
    let (kubelet, second_media) = tokio::task::spawn_blocking(move || {
        let mut kubelet = Kubelet::new(&ns, objects).with_irsa_env(irsa_env);
        if engine != DatabaseEngine::Rds {
            let buckets = kubelet.provision_buckets(&s3_url);
            let claims: Vec<&str> = buckets.iter().map(|(claim, _)| claim.as_str()).collect();
            assert_eq!(
                claims,
                ["media-bucket", "postgres-backups"],
                "a bucket for artifacts and one for backups: {buckets:?}"
            );
            kubelet.start_cnpg(cell_operator::render::POSTGRES_CLUSTER);
        }
        for service in cell_model::contract::Service::ALL.map(cell_model::contract::Service::name) {
            kubelet.start(
                cell_operator::render::workload_kind(service),
                &format!("{service}-service"),
            );
        }
        // A second media pod: whichever renders a job, either serves its files.
        let second = kubelet.start_replica("Deployment", "media-service", 1);
        (kubelet, second)
    })
    .await
    .expect("pods start");
    if let Some(ca) = postgres_ca {
        postgres_takes_tls_only(&poc_database, &kubelet.localize(&poc_database, None), &ca);
    }
    let router = Router::start(&kubelet, &cell);

    let api = test_support::ApiClient::new(format!("{}/t/acme", router.url));
    api.post(
        "/v1/auth/register",
        &json!({ "email": ADMIN, "password": PASSWORD, "invite_token": INVITE }),
    )
    .await
    .assert_status(201);
    let login = api
        .post(
            "/v1/auth/login",
            &json!({ "email": ADMIN, "password": PASSWORD }),
        )
        .await;
    let token = login.assert_status(200)["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let admin = api.with_token(&token);
    admin
        .post(
            "/v1/pocs",
            &json!({ "name": "Pods for real", "description": "rendered and started",
                     "language": "rust", "tags": ["k8s"],
                     "repository_url": "https://github.com/acme/pods" }),
        )
        .await
        .assert_status(201);
    admin
        .post(
            "/v1/dojos",
            &json!({ "name": "pairing", "language": "rust" }),
        )
        .await
        .assert_status(201);
    admin.get("/v1/reports/dashboard").await.assert_status(200);
    // A report goes through media's storage: the cell's bucket.
    let job = admin.post("/v1/reports", &json!({ "format": "csv" })).await;
    let location = job.assert_status(202)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let done = loop {
        let job = admin.get(&format!("/v1/reports/{location}")).await;
        let body = job.assert_status(200).clone();
        if body["state"] == "completed" {
            break body;
        }
        assert!(
            body["state"] != "failed" && std::time::Instant::now() < deadline,
            "report: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The rendered variables reached every service: the report's trace went to the collector,
    // its job under media's request, with the cell on each span.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let spans = collector.spans();
        let job = spans
            .iter()
            .find(|s| s.service() == "media-service" && s.span.name == "report job");
        let request = spans
            .iter()
            .find(|s| s.service() == "media-service" && s.span.name == "POST /v1/reports");
        let pocs = spans.iter().any(|s| s.service() == "poc-service");
        if let (Some(job), Some(request), true) = (job, request, pocs) {
            assert_eq!(job.parent_id(), request.span_id());
            assert_eq!(
                job.resource.get("mrbill.cell").map(String::as_str),
                Some(cell.spec.cell_id.as_str())
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no trace of the report: {:?}",
            spans
                .iter()
                .map(|s| (s.service(), &s.span.name))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sign_up_by_mail(&api, &admin, &smtp).await;
    let link = done["download"]["url"].as_str().expect("download link");
    let csv = reqwest::get(format!("{}{link}", router.url))
        .await
        .expect("download");
    assert_eq!(csv.status(), 200, "{link}");
    assert!(csv.text().await.expect("csv").contains("Pods for real"));
    // Straight to each media pod (as a router with both in the route would reach them): the
    // file is in the cell's bucket, not in the pod that rendered it.
    let path = link
        .strip_prefix("/t/acme")
        .expect("the link goes through the tenant's prefix");
    for port in [kubelet.port("media-service", 8080), second_media[&8080]] {
        let res = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}{path}"))
            .header("x-cell-id", &cell.spec.cell_id)
            .send()
            .await
            .expect("download from a media pod");
        assert_eq!(res.status(), 200, "media pod on {port}: {path}");
        assert!(res.text().await.expect("csv").contains("Pods for real"));
    }
    let listing = reqwest::get(format!("{}/{}", s3.url, bucket_of(&kubelet, engine)))
        .await
        .expect("list the bucket")
        .text()
        .await
        .expect("listing");
    assert!(
        listing.contains(&format!("{location}/report.csv")),
        "the report is in the cell's bucket: {listing}"
    );
    drop(router);
    tokio::task::spawn_blocking(move || {
        drop(kubelet);
        drop(rds);
        drop(s3);
    })
    .await
    .expect("stopped");
}

/// The bucket media writes to: the foundation's (rds) or the claimed one (in-cluster).
fn bucket_of(kubelet: &Kubelet, engine: DatabaseEngine) -> String {
    match engine {
        DatabaseEngine::Rds => BUCKET.to_owned(),
        _ => kubelet.workload("ConfigMap", cell_operator::render::MEDIA_BUCKET)["data"]
            ["BUCKET_NAME"]
            .as_str()
            .expect("the claim's bucket")
            .to_owned(),
    }
}

/// Open registration through the rendered pods: a tenant address gets a code by mail (the
/// relay's URL from the cell's `smtp` Secret, the sender from `MRBILL_MAIL_FROM`), another
/// domain is refused (`MRBILL_EMAIL_DOMAINS`), and the code makes the account.
async fn sign_up_by_mail(
    api: &test_support::ApiClient,
    admin: &test_support::ApiClient,
    smtp: &test_support::mail::SmtpReceiver,
) {
    admin
        .patch("/v1/settings", &json!({ "registration": "open" }))
        .await
        .assert_status(200);
    let register = |email: &str| {
        let body = json!({ "email": email, "password": PASSWORD });
        async move { api.post("/v1/auth/register", &body).await }
    };
    register("someone@elsewhere.example")
        .await
        .assert_error(403, "email_domain_not_allowed");
    register("dev@acme.example").await.assert_status(202);
    let mail = smtp.mail_to("dev@acme.example").await;
    assert!(mail.contains("no-reply+acme@mrbill.example"), "{mail}");
    let code = test_support::mail::code_in(&mail);
    api.post(
        "/v1/auth/confirm-email",
        &json!({ "email": "dev@acme.example", "code": code }),
    )
    .await
    .assert_status(201);
}

/// In-cluster Postgres (started from its rendered Cluster) refuses connections without TLS, a
/// role reaches no database but its own, and a client trusting another cell's CA cannot talk
/// to it: only the cell's own CA verifies it, for the Service's name. libpq's `psql` (its `hostaddr` keeps the name to check while
/// connecting to this machine).
fn postgres_takes_tls_only(url: &str, local: &str, ca: &str) {
    let dir = tempfile::tempdir().expect("dir");
    let (credentials, rest) = url
        .trim_start_matches("postgres://")
        .split_once('@')
        .expect("credentials");
    let (user, password) = credentials.split_once(':').expect("password");
    let host = rest.split_once(':').expect("a port").0;
    let database = rest.rsplit_once('/').expect("a database").1;
    let (_, local) = local.split_once('@').expect("credentials");
    let port = local.split([':', '/']).nth(1).expect("the local port");
    let psql = |mode: &str, root: Option<&std::path::Path>| {
        let mut conninfo = format!(
            "host={host} hostaddr=127.0.0.1 port={port} user={user} dbname={database} sslmode={mode}"
        );
        if let Some(root) = root {
            conninfo.push_str(&format!(" sslrootcert={}", root.display()));
        }
        std::process::Command::new(pg_cluster::bin_dir().expect("postgres").join("psql"))
            .args([&conninfo, "-tAc", "SELECT 1"])
            .env("PGPASSWORD", password)
            .output()
            .expect("psql")
    };
    let plain = psql("disable", None);
    let said = String::from_utf8_lossy(&plain.stderr);
    assert!(
        !plain.status.success() && said.contains("no encryption"),
        "a connection without TLS: {said}"
    );
    let own = dir.path().join("ca.crt");
    std::fs::write(&own, ca).expect("ca");
    let verified = psql("verify-full", Some(&own));
    assert!(
        verified.status.success(),
        "TLS verified with the cell's CA: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    // Each role reaches its own database only (`hostssl sameuser`), even with its password.
    let own_conninfo = |db: &str| {
        format!(
            "host={host} hostaddr=127.0.0.1 port={port} user={user} dbname={db} sslmode=verify-full sslrootcert={}",
            own.display()
        )
    };
    for db in ["dojo", "media", "postgres"] {
        let out = std::process::Command::new(pg_cluster::bin_dir().expect("postgres").join("psql"))
            .args([&own_conninfo(db), "-tAc", "SELECT 1"])
            .env("PGPASSWORD", password)
            .output()
            .expect("psql");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && said.contains("rejects connection"),
            "{user} reached database {db}: {said}"
        );
    }
    let other = dir.path().join("other.crt");
    let foreign = cell_operator::tls::postgres("c-other-1", "cell-other").expect("another CA");
    std::fs::write(&other, foreign.ca).expect("ca");
    assert!(
        !psql("verify-ca", Some(&other)).status.success(),
        "a client trusting another CA reached this cell's Postgres"
    );
}

#[tokio::test]
async fn a_small_cell_starts_from_its_rendered_pods() {
    a_cell_starts_from_its_rendered_objects(Tier::Small, DatabaseEngine::InCluster).await;
}

#[tokio::test]
async fn a_standard_cell_starts_from_its_rendered_pods() {
    a_cell_starts_from_its_rendered_objects(Tier::Standard, DatabaseEngine::InCluster).await;
}

#[tokio::test]
async fn a_large_cell_starts_from_its_rendered_pods() {
    a_cell_starts_from_its_rendered_objects(Tier::Large, DatabaseEngine::InCluster).await;
}

#[tokio::test]
async fn a_small_rds_cell_starts_from_its_rendered_pods() {
    a_cell_starts_from_its_rendered_objects(Tier::Small, DatabaseEngine::Rds).await;
}

#[tokio::test]
async fn a_large_rds_cell_starts_from_its_rendered_pods() {
    a_cell_starts_from_its_rendered_objects(Tier::Large, DatabaseEngine::Rds).await;
}
