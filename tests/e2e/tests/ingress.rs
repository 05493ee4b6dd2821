//! The production request path, ingress → router → cell, with a real nginx as the ingress
//! controller (ingress-nginx is nginx, appending the client to `X-Forwarded-For`) and the real
//! router and cell binaries. Clients are told apart by their loopback source address (all of
//! 127/8 is this machine), as distinct hosts on the internet would be.

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e_tests::PASSWORD;
use e2e_tests::platform::{Platform, wait_until};
use serde_json::json;

/// nginx in front of `router`, the way the chart's Ingress puts the ingress controller there.
struct Ingress {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Ingress {
    fn start(router: &str) -> Self {
        let nginx = std::env::var("MRBILL_NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".into());
        assert!(
            std::path::Path::new(&nginx).exists(),
            "{nginx} missing: ./x test installs nginx-light"
        );
        let dir = tempfile::tempdir().expect("nginx dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let upstream = router.trim_start_matches("http://");
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
error_log stderr warn;
pid {dir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://{upstream};
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"#,
            dir = dir.path().display(),
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let child = Command::new(&nginx)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.path())
            .stdin(Stdio::null())
            .spawn()
            .expect("start nginx");
        wait_until(Duration::from_secs(10), "nginx listens", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for Ingress {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client whose connections come from `source`.
fn from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().expect("source address"))
        .build()
        .expect("client")
}

async fn login(client: &reqwest::Client, url: &str, email: &str, password: &str) -> u16 {
    client
        .post(url)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("login request")
        .status()
        .as_u16()
}

/// The attack: wrong passwords from one machine, through the ingress. When the router replaced
/// `X-Forwarded-For` with its peer (the ingress), every client of the tenant shared one
/// login-throttle key and 50 failures locked out every user of the tenant.
#[tokio::test]
async fn one_client_guessing_passwords_through_the_ingress_does_not_lock_out_the_tenant() {
    let platform = Platform::up_with(&[("MRBILL_ROUTER_TRUSTED_PROXIES", "127.0.0.1/32")]);
    let acme = platform.create_tenant("acme");
    platform.admin_token(&acme).await;
    let admin = acme["admin_invite"]["email"].as_str().expect("admin email");
    let ingress = Ingress::start(platform.router_url());
    let url = format!("{}/t/acme/v1/auth/login", ingress.url);

    let attacker = from("127.0.0.2");
    let mut refused = 0;
    for i in 0..60 {
        match login(
            &attacker,
            &url,
            &format!("nobody{i}@acme.example"),
            "wrong password!",
        )
        .await
        {
            401 => {}
            429 => refused += 1,
            other => panic!("attempt {i}: unexpected {other}"),
        }
    }
    assert!(
        refused >= 10,
        "the attacker was throttled only {refused} times"
    );
    assert_eq!(
        login(&attacker, &url, admin, PASSWORD).await,
        429,
        "the attacking address stays blocked"
    );
    // Everyone else behind the same ingress still signs in.
    assert_eq!(login(&from("127.0.0.3"), &url, admin, PASSWORD).await, 200);
}

/// Uploads just over each service's limit (and a 3 MB one), through the router to the real
/// services, repeated: every one is the client's mistake (413 `payload_too_large`), never
/// "cell not reachable". The service used to answer 413 and close while the router was still
/// sending, and the router reported 503 in about 4 of 10 tries.
#[tokio::test]
async fn oversized_uploads_through_the_router_are_413_every_time() {
    use cell_model::contract::{BODY_LIMIT, DOJO_BODY_LIMIT};
    let platform = Platform::up();
    let acme = platform.create_tenant("acme");
    let token = platform.admin_token(&acme).await;
    let http = reqwest::Client::new();
    let base = format!("{}/t/acme", platform.router_url());
    for (path, size) in [
        ("/v1/pocs", BODY_LIMIT + 1),
        ("/v1/dojos", DOJO_BODY_LIMIT + 1),
        ("/v1/videos", BODY_LIMIT + 1),
        ("/v1/videos", 3 * 1024 * 1024),
    ] {
        for attempt in 0..20 {
            let res = http
                .post(format!("{base}{path}"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(vec![b' '; size])
                .send()
                .await
                .unwrap_or_else(|e| panic!("{path} {size} B #{attempt}: {e}"));
            let status = res.status().as_u16();
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            assert_eq!(
                (status, body["code"].as_str()),
                (413, Some("payload_too_large")),
                "{path} {size} B #{attempt}: {body}"
            );
        }
    }
    // Just within dojo's limit, the body reaches dojo-service (which then judges the JSON).
    let res = http
        .post(format!("{base}/v1/dojos"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(vec![b' '; DOJO_BODY_LIMIT])
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 400, "whitespace is not a JSON object");
}
