//! Accounts benchmark: the per-request cost of authentication and the cost of sign-in.
//! `cargo bench -p poc-service --bench accounts` (starts its own Postgres; prints numbers).
//!
//! Measured side by side in one run: JWT sign/verify, argon2id hashing, and HTTP latency of an
//! unauthenticated (`/healthz`) vs an authenticated (`/v1/users/me`: JWT verify + user row)
//! request, so the difference is what authentication adds to every API call.

use std::time::{Duration, Instant};

use poc_service::{App, Config};
use serde_json::json;
use service_kit::jwt::{KeyPair, TokenSigner, TokenVerifier};
use test_support::ApiClient;
use wire_types::UserId;
use wire_types::auth::Role;

fn per_op(label: &str, n: u32, mut f: impl FnMut()) {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    let each = start.elapsed() / n;
    println!("{label:<40} {:>10.1} µs/op", each.as_secs_f64() * 1e6);
}

fn percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e3;
    println!(
        "{label:<40} p50 {:>6.3} ms   p99 {:>6.3} ms   (n = {})",
        at(0.50),
        at(0.99),
        samples.len()
    );
}

fn main() {
    let kp = KeyPair::generate().expect("keygen");
    let signer = TokenSigner::new(
        &kp.kid,
        &kp.private_pem,
        "c-bench",
        "bench",
        Duration::from_secs(300),
    )
    .expect("signer");
    let verifier = TokenVerifier::new("c-bench", &[(kp.kid.clone(), kp.public_pem.clone())])
        .expect("verifier");
    let token = signer.sign(UserId::new(), Role::Member, 0).expect("sign");
    per_op("jwt sign (EdDSA)", 5_000, || {
        signer.sign(UserId::new(), Role::Member, 0).expect("sign");
    });
    per_op("jwt verify (EdDSA, aud, kid)", 5_000, || {
        verifier.verify(&token).expect("verify");
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let start = Instant::now();
        let hashed = 10;
        for _ in 0..hashed {
            std::hint::black_box(poc_service_hash("correct horse battery staple").await);
        }
        println!(
            "{:<40} {:>10.1} ms/op",
            "argon2id hash (19 MiB, t=2)",
            start.elapsed().as_secs_f64() * 1e3 / f64::from(hashed)
        );

        let url = test_support::test_database(&poc_service::MIGRATOR)
            .await
            .expect("database");
        let mut config = Config::for_tests("c-bench", "bench", &url).expect("config");
        config.dev_mode = true;
        let app = App::build(config).await.expect("app");
        let api = ApiClient::new(format!("http://{}", app.public_addr()));
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        let res = api
            .post(
                "/v1/auth/register",
                &json!({ "email": "bench@acme.test", "password": "correct horse battery staple" }),
            )
            .await;
        let access = res.body["access_token"].as_str().expect("token").to_owned();
        let authed = api.with_token(&access);

        let rounds = 3_000;
        for _ in 0..200 {
            api.get("/healthz").await;
            authed.get("/v1/users/me").await;
        }
        let (mut open, mut auth) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
        // Interleaved so machine noise hits both series alike.
        for _ in 0..rounds {
            let t = Instant::now();
            api.get("/healthz").await;
            open.push(t.elapsed());
            let t = Instant::now();
            authed.get("/v1/users/me").await;
            auth.push(t.elapsed());
        }
        percentiles("GET /healthz (no auth)", open);
        percentiles("GET /v1/users/me (JWT + user row)", auth);
        let start = Instant::now();
        let logins = 20;
        for _ in 0..logins {
            api.post(
                "/v1/auth/login",
                &json!({ "email": "bench@acme.test", "password": "correct horse battery staple" }),
            )
            .await;
        }
        println!(
            "{:<40} {:>10.1} ms/op",
            "POST /v1/auth/login (argon2 verify)",
            start.elapsed().as_secs_f64() * 1e3 / f64::from(logins)
        );
    });
}

async fn poc_service_hash(password: &str) -> String {
    use argon2::PasswordHasher;
    let salt = argon2::password_hash::SaltString::encode_b64(b"bench-salt-16byt").expect("salt");
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("hash")
        .to_string()
}
