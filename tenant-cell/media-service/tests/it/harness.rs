//! A cell with poc-service and media-service; helpers to wait for jobs and fetch their files.

use std::path::PathBuf;
use std::time::Duration;

pub use poc_service::test_util::{PocCell, User};
use serde_json::Value;
use sqlx::PgPool;
use test_support::ApiClient;
use tokio::sync::oneshot;

/// poc-service + media-service of one cell.
pub struct Cell {
    pub poc: PocCell,
    pub media: ApiClient,
    pub media_url: String,
    pub pool: PgPool,
    db_url: String,
    /// Where artifacts are stored.
    pub dir: PathBuf,
    config: media_service::Config,
    /// Each running instance: what stops it, and its task (done once it has stopped).
    stops: Vec<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl Cell {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut media_service::Config)) -> Self {
        let poc = PocCell::start("media", |_| {}).await;
        let url = test_support::test_database(&media_service::MIGRATOR)
            .await
            .expect("media database");
        let dir = std::env::temp_dir().join(format!("media-it-{}", uuid::Uuid::new_v4()));
        let mut config =
            media_service::Config::for_tests(poc.common(&url), poc.peer(), dir.clone());
        config.render_program = env!("CARGO_BIN_EXE_media-render").into();
        tweak(&mut config);
        let pool = PgPool::connect(&url).await.expect("media pool");
        let mut cell = Self {
            poc,
            media: ApiClient::new("http://unused"),
            media_url: String::new(),
            pool,
            db_url: url,
            dir,
            config,
            stops: Vec::new(),
        };
        cell.start_media(|_| {}).await;
        cell
    }

    /// Starts (another) media-service instance on the same database and storage; `tweak`
    /// adjusts its config. The newest instance serves `self.media`.
    pub async fn start_media(&mut self, tweak: impl FnOnce(&mut media_service::Config)) {
        let mut config = self.config.clone();
        tweak(&mut config);
        let pool = PgPool::connect(&self.db_url).await.expect("pool");
        let app = media_service::App::build_with_pool(config, pool)
            .await
            .expect("media builds");
        self.media_url = format!("http://{}", app.public_addr());
        self.media = ApiClient::new(self.media_url.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(async move {
            app.run_until_stopped(async move {
                let _ = stopped.await;
            })
            .await
            .expect("media-service runs");
        });
        self.stops.push((stop, running));
    }

    /// Stops every media-service instance (their jobs go back to the queue).
    pub async fn stop_media(&mut self) {
        for (stop, running) in self.stops.drain(..) {
            drop(stop);
            tokio::time::timeout(Duration::from_secs(30), running)
                .await
                .expect("media-service stops")
                .expect("media-service's task");
        }
    }

    pub fn as_user(&self, user: &User) -> ApiClient {
        self.media.with_token(&user.token)
    }

    /// Starts a report for `user` with `request` and waits for it to complete (asserted); the
    /// finished job.
    pub async fn completed_report(&self, user: &User, request: Value) -> Value {
        let job = self
            .as_user(user)
            .post("/v1/reports", &request)
            .await
            .assert_status(202)
            .clone();
        let path = format!("/v1/reports/{}", job["id"].as_str().expect("id"));
        let done = self.finished(user, &path).await;
        assert_eq!(done["state"], "completed", "{done}");
        done
    }

    /// Polls a job (`/v1/reports/<id>` or `/v1/videos/<id>`) until it reaches a final state.
    pub async fn finished(&self, user: &User, path: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let job = self
                .as_user(user)
                .get(path)
                .await
                .assert_status(200)
                .clone();
            if ["completed", "failed", "cancelled"].contains(&job["state"].as_str().unwrap_or("")) {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} did not finish: {job}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fetches a (relative) signed link: status and body.
    pub async fn fetch(&self, link: &str) -> (u16, Vec<u8>, reqwest::header::HeaderMap) {
        let res = reqwest::get(format!("{}{link}", self.media_url))
            .await
            .expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        (status, res.bytes().await.expect("body").to_vec(), headers)
    }

    /// Every file below the artifact directory.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir, &mut out);
        out
    }
}

/// Writes bytes to a temporary file and runs `program args… <file>`; returns stdout.
pub fn run_on(bytes: &[u8], ext: &str, program: &str, args: &[&str]) -> String {
    run_around(bytes, ext, program, args, &[])
}

/// Like [`run_on`] with `after` following the file (e.g. `pdftotext <file> -`).
pub fn run_around(bytes: &[u8], ext: &str, program: &str, args: &[&str], after: &[&str]) -> String {
    let path = std::env::temp_dir().join(format!("media-it-{}.{ext}", uuid::Uuid::new_v4()));
    std::fs::write(&path, bytes).expect("write");
    let out = std::process::Command::new(program)
        .args(args)
        .arg(&path)
        .args(after)
        .output()
        .unwrap_or_else(|e| panic!("{program} (apt: ffmpeg / poppler-utils): {e}"));
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
