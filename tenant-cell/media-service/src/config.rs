//! media-service settings: the shared [`CommonConfig`], the cell's public key, poc-service's
//! internal API, the URL-signing key, where artifacts go, and the job limits.

use std::path::PathBuf;

use cell_model::contract::{Secret, env as var};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use service_kit::config::{CommonConfig, optional, secret_file};
use service_kit::peer::PeerConfig;

/// Where artifacts are stored.
#[derive(Clone, Debug)]
pub enum Storage {
    /// A local directory (the default; per-tenant prefixes below it).
    Dir(PathBuf),
    /// An S3 bucket (credentials and region from the standard AWS environment; `endpoint` for
    /// S3-compatible stores and tests).
    S3 {
        bucket: String,
        endpoint: Option<String>,
        /// The bucket's own key and region; `None` = the AWS provider chain.
        static_credentials: Option<S3Credentials>,
    },
}

/// A bucket's own key: an S3-compatible store's per-bucket credentials (an in-cluster cell's
/// claimed bucket), or an emulator's in tests. AWS cells use the provider chain (IRSA).
#[derive(Clone, Debug)]
pub struct S3Credentials {
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
}

/// Job queue limits.
#[derive(Clone, Copy, Debug)]
pub struct JobLimits {
    /// Worker tasks in this process.
    pub workers: usize,
    /// Jobs processing at once across every replica of the cell (the tenant's share).
    pub tenant_concurrency: u32,
    /// Pending or processing jobs one user may have; more → 429.
    pub user_active: u32,
    /// Job requests one user may make per minute; more → 429.
    pub user_per_minute: u32,
    /// A claimed job is the worker's for this long; it renews it while working, so a worker
    /// that died loses its jobs to others after at most this.
    pub lease: Duration,
    /// Attempts before a job fails for good.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, at most 5 minutes.
    pub backoff: Duration,
    /// How often idle workers look for due jobs (a new job wakes them at once).
    pub poll: Duration,
}

impl Default for JobLimits {
    fn default() -> Self {
        Self {
            workers: 2,
            tenant_concurrency: 2,
            user_active: 3,
            user_per_minute: 10,
            lease: Duration::from_secs(30),
            max_attempts: 5,
            backoff: Duration::from_secs(2),
            poll: Duration::from_secs(2),
        }
    }
}

/// How ffmpeg runs.
#[derive(Clone, Debug)]
pub struct Ffmpeg {
    pub program: PathBuf,
    /// Encoder threads per render.
    pub threads: u32,
    /// `nice` increment (0–19).
    pub nice: u8,
}

impl Default for Ffmpeg {
    fn default() -> Self {
        Self {
            program: PathBuf::from("ffmpeg"),
            threads: 2,
            nice: 10,
        }
    }
}

/// Everything media-service needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub common: CommonConfig,
    /// The cell's public key and poc-service (PoC data and revocation checks).
    pub peer: PeerConfig,
    /// HMAC key of the download links.
    pub url_key: SecretString,
    /// How long a download link works.
    pub link_ttl: Duration,
    pub storage: Storage,
    pub jobs: JobLimits,
    pub ffmpeg: Ffmpeg,
    /// The `media-render` binary (Typst), run per PDF and per video's cards.
    pub render_program: PathBuf,
    /// PoCs one report or video may hold (a video of more would exceed any sensible length).
    pub max_report_pocs: usize,
    pub max_video_pocs: usize,
    /// Names this instance when it is the only one of its name: on start it takes back at once
    /// the jobs its previous process (same name, other pid) held, instead of waiting for their
    /// leases to expire. Unset (the default), a dead process's jobs wait for their leases.
    pub instance: Option<String>,
}

/// The bucket's own key from files (an S3-compatible store's per-bucket credentials, e.g. an
/// `ObjectBucketClaim`'s Secret mounted into the pod); `None` when neither file is set.
fn s3_credentials() -> anyhow::Result<Option<S3Credentials>> {
    let id = secret_file(var::MEDIA_S3_ACCESS_KEY_ID_FILE)?;
    let secret = secret_file(var::MEDIA_S3_SECRET_ACCESS_KEY_FILE)?;
    match (id, secret) {
        (None, None) => Ok(None),
        (Some(id), Some(secret_access_key)) => Ok(Some(S3Credentials {
            region: optional::<String>(var::MEDIA_S3_REGION)?
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "us-east-1".to_owned()),
            access_key_id: id.expose_secret().trim().to_owned(),
            secret_access_key: SecretString::from(secret_access_key.expose_secret().trim()),
        })),
        _ => anyhow::bail!(
            "{} and {} go together",
            var::MEDIA_S3_ACCESS_KEY_ID_FILE,
            var::MEDIA_S3_SECRET_ACCESS_KEY_FILE
        ),
    }
}

impl Config {
    /// Reads the shared settings, the peer's ([`PeerConfig::from_env`]),
    /// `MRBILL_MEDIA_URL_KEY_FILE`, `MRBILL_MEDIA_DIR` or `MRBILL_MEDIA_S3_BUCKET`
    /// (+ `MRBILL_MEDIA_S3_ENDPOINT`, `MRBILL_MEDIA_S3_REGION` and the bucket's key in
    /// `MRBILL_MEDIA_S3_ACCESS_KEY_ID_FILE` / `MRBILL_MEDIA_S3_SECRET_ACCESS_KEY_FILE`), and
    /// the `MRBILL_MEDIA_*` limits.
    pub fn from_env() -> anyhow::Result<Self> {
        let common = CommonConfig::from_env()?;
        let url_key = secret_file(Secret::MediaUrlKey.env())?
            .ok_or_else(|| anyhow::anyhow!("MRBILL_MEDIA_URL_KEY_FILE must be set"))?;
        let storage = match optional::<String>(var::MEDIA_S3_BUCKET)? {
            Some(bucket) => Storage::S3 {
                bucket,
                endpoint: optional::<String>(var::MEDIA_S3_ENDPOINT)?.filter(|e| !e.is_empty()),
                static_credentials: s3_credentials()?,
            },
            None => Storage::Dir(optional::<PathBuf>(var::MEDIA_DIR)?.ok_or_else(|| {
                anyhow::anyhow!("MRBILL_MEDIA_DIR or MRBILL_MEDIA_S3_BUCKET must be set")
            })?),
        };
        let d = JobLimits::default();
        let f = Ffmpeg::default();
        let secs = |name: &str, default: Duration| -> anyhow::Result<Duration> {
            Ok(optional::<u64>(name)?.map_or(default, Duration::from_secs))
        };
        Ok(Self {
            common,
            peer: PeerConfig::from_env()?,
            url_key,
            link_ttl: secs("MRBILL_MEDIA_LINK_TTL_SECS", Duration::from_secs(900))?
                .clamp(Duration::from_secs(10), Duration::from_secs(7 * 86400)),
            storage,
            jobs: JobLimits {
                workers: optional("MRBILL_MEDIA_WORKERS")?.unwrap_or(d.workers),
                tenant_concurrency: optional("MRBILL_MEDIA_TENANT_CONCURRENCY")?
                    .unwrap_or(d.tenant_concurrency)
                    .max(1),
                user_active: optional("MRBILL_MEDIA_USER_ACTIVE_JOBS")?.unwrap_or(d.user_active),
                user_per_minute: optional("MRBILL_MEDIA_USER_JOBS_PER_MINUTE")?
                    .unwrap_or(d.user_per_minute),
                lease: secs("MRBILL_MEDIA_LEASE_SECS", d.lease)?.max(Duration::from_secs(1)),
                max_attempts: optional("MRBILL_MEDIA_MAX_ATTEMPTS")?
                    .unwrap_or(d.max_attempts)
                    .max(1),
                backoff: optional::<u64>("MRBILL_MEDIA_BACKOFF_MS")?
                    .map_or(d.backoff, Duration::from_millis),
                poll: d.poll,
            },
            ffmpeg: Ffmpeg {
                program: optional("MRBILL_FFMPEG")?.unwrap_or(f.program),
                threads: optional("MRBILL_FFMPEG_THREADS")?
                    .unwrap_or(f.threads)
                    .max(1),
                nice: optional::<u8>("MRBILL_FFMPEG_NICE")?
                    .unwrap_or(f.nice)
                    .min(19),
            },
            render_program: optional("MRBILL_MEDIA_RENDER")?.unwrap_or_else(default_renderer),
            max_report_pocs: optional("MRBILL_MEDIA_MAX_REPORT_POCS")?.unwrap_or(20_000),
            max_video_pocs: optional("MRBILL_MEDIA_MAX_VIDEO_POCS")?.unwrap_or(500),
            instance: optional::<String>(var::MEDIA_INSTANCE)?
                .filter(|i| !i.contains(['/', '%', '_'])),
        })
    }

    /// A config for tests against a given key, poc-service and artifact directory.
    pub fn for_tests(common: CommonConfig, peer: PeerConfig, dir: PathBuf) -> Self {
        Self {
            common,
            peer,
            url_key: SecretString::from("test-url-signing-key-0123456789abcdef"),
            link_ttl: Duration::from_secs(900),
            storage: Storage::Dir(dir),
            jobs: JobLimits {
                lease: Duration::from_secs(3),
                backoff: Duration::from_millis(200),
                poll: Duration::from_millis(200),
                ..JobLimits::default()
            },
            ffmpeg: Ffmpeg::default(),
            render_program: default_renderer(),
            max_report_pocs: 20_000,
            max_video_pocs: 500,
            instance: None,
        }
    }
}

/// `media-render` next to this executable (how binaries are installed and built), else `PATH`.
fn default_renderer() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("media-render")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("media-render"))
}
