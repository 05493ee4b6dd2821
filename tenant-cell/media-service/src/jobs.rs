//! Workers: claim a due job (`FOR UPDATE SKIP LOCKED`, within the cell's concurrency limit),
//! run it while renewing the lease, then complete it — or retry it with backoff, or fail it.
//!
//! ```text
//! POST ─► media_jobs (pending) ─NOTIFY─► worker: claim (processing, lease, attempts+1)
//!   ├─ every lease/3: heartbeat (progress, lease renewed) — claim gone ⇒ drop the work
//!   │                  (ffmpeg is killed with it)
//!   ├─ PoCs from poc-service (unavailable ⇒ retry later, never a report with missing data)
//!   ├─ render (Typst / ffmpeg) ─► record keys as orphans ─► put objects
//!   └─ complete (artifacts, orphans cleared in one transaction)
//! worker killed ⇒ lease expires ⇒ another worker (or the restarted one) claims it again
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use service_kit::telemetry::trace;
use tokio::sync::{Notify, watch};
use tracing::Instrument as _;
use uuid::Uuid;
use wire_types::media::{CreateReport, CreateVideo};

use crate::poc::{Filter, PocError};
use crate::render::{report, video};
use crate::state::AppState;
use crate::store::{self, Claim, Kind};

/// How a job attempt ended badly.
#[derive(Debug)]
pub struct Failure {
    pub code: &'static str,
    pub message: String,
    /// Worth another attempt (poc-service or storage down), or never going to work.
    pub transient: bool,
}

impl Failure {
    fn permanent(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            transient: false,
        }
    }

    fn transient(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            transient: true,
        }
    }
}

impl From<PocError> for Failure {
    fn from(e: PocError) -> Self {
        match e {
            PocError::Unavailable(_) => Failure::transient("poc_unavailable", e.to_string()),
            PocError::Refused { .. } => Failure::permanent("poc_refused", e.to_string()),
            PocError::TooMany(_) => Failure::permanent("too_many_pocs", e.to_string()),
        }
    }
}

/// How often the sweeper reads the tenant's usage.
const USAGE_EVERY: Duration = Duration::from_secs(60);

/// Starts the workers, the NOTIFY listener and the sweeper; they stop when `stop` flips.
pub fn spawn(state: AppState, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    let wake = Arc::new(Notify::new());
    if let Some(instance) = state.config.instance.clone() {
        // The previous process's unfinished renders are this instance's alone (before any
        // worker starts one of its own).
        let _ = std::fs::remove_dir_all(work_root(&state));
        let state = state.clone();
        let wake = wake.clone();
        tokio::spawn(async move {
            match store::release_previous(&state.pool, &instance, std::process::id()).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(
                        jobs = n,
                        "taking back the jobs of this instance's previous process"
                    );
                    wake.notify_waiters();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "releasing the previous process's jobs failed")
                }
            }
        });
    }
    let mut tasks = vec![
        tokio::spawn(listen(state.clone(), wake.clone(), stop.clone())),
        tokio::spawn(sweep(state.clone(), stop.clone())),
    ];
    for n in 0..state.config.jobs.workers {
        tasks.push(tokio::spawn(work(
            state.clone(),
            n,
            wake.clone(),
            stop.clone(),
        )));
    }
    tasks
}

/// Wakes workers on `NOTIFY media_jobs` (jobs queued by any replica).
async fn listen(state: AppState, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&state.pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "job listener cannot connect; polling only");
                if sleep_or_stop(&mut stop, Duration::from_secs(5)).await {
                    return;
                }
                continue;
            }
        };
        if let Err(e) = listener.listen("media_jobs").await {
            tracing::warn!(error = %e, "LISTEN media_jobs failed");
            continue;
        }
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                n = listener.recv() => match n {
                    Ok(_) => wake.notify_waiters(),
                    Err(e) => {
                        tracing::warn!(error = %e, "job listener lost its connection");
                        break;
                    }
                },
            }
        }
    }
}

/// `true` if `stop` flipped during the wait.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = stop.changed() => true,
        _ = tokio::time::sleep(d) => *stop.borrow(),
    }
}

/// Where renders keep their intermediate files: `<tmp>/mrbill-media/<cell>/<job>-<claim>/`.
fn work_root(state: &AppState) -> std::path::PathBuf {
    std::env::temp_dir()
        .join("mrbill-media")
        .join(&state.config.common.cell_id)
}

/// `<instance or host>/<pid>/<n>`: who holds a job, in `lease_owner`.
fn worker_name(state: &AppState, n: usize) -> String {
    let instance = state.config.instance.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().replace('/', "-"))
            .unwrap_or_else(|_| "media".into())
    });
    format!("{instance}/{}/{n}", std::process::id())
}

/// How long a starting worker waits for poc-service before it takes jobs anyway.
const PEER_PATIENCE: Duration = Duration::from_secs(5);

async fn work(state: AppState, n: usize, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let name = worker_name(&state, n);
    let limits = state.config.jobs;
    // The cell's services start together (provisioning, a migration's or a restore's start):
    // a job taken before poc-service listens would spend an attempt on its start-up.
    let patience = tokio::time::Instant::now() + PEER_PATIENCE;
    while !state.poc.listening().await && tokio::time::Instant::now() < patience {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    loop {
        if *stop.borrow() {
            return;
        }
        // Registered before looking, so a job queued meanwhile is not missed.
        let woken = wake.notified();
        match store::claim(
            &state.pool,
            &name,
            limits.lease,
            limits.tenant_concurrency,
            limits.max_attempts,
        )
        .await
        {
            // Stopping began while the claim was made (another worker may just have handed
            // this very job back): it goes back untouched, for the next owner.
            Ok(Some(claim)) if *stop.borrow() => {
                if let Err(e) = store::unclaim(&state.pool, &claim).await {
                    tracing::warn!(job = %claim.job.id, error = %e, "giving a claim back failed; its lease will expire");
                }
                return;
            }
            Ok(Some(claim)) => {
                let span = job_span(&claim);
                run(&state, claim, &mut stop).instrument(span).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "claiming a job failed"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = woken => {}
            _ = tokio::time::sleep(limits.poll) => {}
        }
    }
}

/// A job attempt's span: a consumer span in the trace of the request that queued the job (its
/// stored `traceparent`), or a trace of its own.
fn job_span(claim: &Claim) -> tracing::Span {
    let span = tracing::info_span!(
        "job",
        otel.kind = "consumer",
        job.kind = %claim.job.kind,
        job.attempt = claim.job.attempts,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let parent = claim
        .job
        .traceparent
        .as_deref()
        .map(trace::from_traceparent)
        .unwrap_or_default();
    trace::adopt(&span, parent);
    trace::rename(&span, || format!("{} job", claim.job.kind));
    span
}

/// Runs one claimed job to its end (or until the claim is lost or the service stops).
async fn run(state: &AppState, claim: Claim, stop: &mut watch::Receiver<bool>) {
    let kind = claim.job.kind.clone();
    let started = Instant::now();
    tracing::info!(job = %claim.job.id, kind, attempt = claim.job.attempts, "job started");
    let (progress, seen) = watch::channel(0u8);
    let lease = state.config.jobs.lease;
    let heartbeat = async {
        // Progress shows within a second; the lease is renewed well before it runs out.
        let every = (lease / 3).min(Duration::from_secs(1));
        loop {
            tokio::time::sleep(every).await;
            let p = *seen.borrow();
            match store::heartbeat(&state.pool, &claim, p, lease).await {
                Ok(true) => {}
                Ok(false) => return,
                // Keep trying: the lease runs out on its own if the database stays away.
                Err(e) => tracing::warn!(job = %claim.job.id, error = %e, "heartbeat failed"),
            }
        }
    };
    let outcome = tokio::select! {
        r = execute(state, &claim, &progress) => Some(r),
        () = heartbeat => {
            tracing::info!(job = %claim.job.id, "job cancelled, deleted or taken over; stopped");
            None
        }
        _ = stop.changed() => {
            // Handed back at once rather than waiting for the lease to run out.
            let _ = store::fail(&state.pool, &claim, Some(Duration::ZERO), "interrupted",
                "the service stopped during the job").await;
            return;
        }
    };
    let secs = started.elapsed().as_secs_f64();
    match outcome {
        None => {}
        Some(Ok(artifacts)) => match store::complete(&state.pool, &claim, &artifacts).await {
            Ok(true) => {
                metrics::histogram!("media_job_seconds", "kind" => kind.clone()).record(secs);
                metrics::counter!("media_jobs_completed_total", "kind" => kind.clone())
                    .increment(1);
                tracing::info!(job = %claim.job.id, kind, secs, "job completed");
            }
            Ok(false) => tracing::info!(job = %claim.job.id, "job gone before it completed"),
            Err(e) => {
                tracing::warn!(job = %claim.job.id, error = %e, "completing failed; the lease will expire and the job run again")
            }
        },
        Some(Err(f)) => {
            let attempts = u32::try_from(claim.job.attempts).unwrap_or(u32::MAX);
            let retry_in = (f.transient && attempts < state.config.jobs.max_attempts).then(|| {
                (state.config.jobs.backoff * 2u32.saturating_pow(attempts.saturating_sub(1)))
                    .min(Duration::from_secs(300))
            });
            metrics::counter!("media_job_failures_total", "kind" => kind.clone(), "code" => f.code)
                .increment(1);
            trace::failed(&tracing::Span::current());
            tracing::warn!(job = %claim.job.id, kind, code = f.code, error = %f.message, ?retry_in, "job attempt failed");
            if let Err(e) = store::fail(&state.pool, &claim, retry_in, f.code, &f.message).await {
                tracing::warn!(job = %claim.job.id, error = %e, "recording the failure failed; the lease will expire");
            }
        }
    }
}

fn params<T: serde::de::DeserializeOwned>(claim: &Claim) -> Result<T, Failure> {
    serde_json::from_value(claim.job.params.clone())
        .map_err(|e| Failure::permanent("invalid_params", e.to_string()))
}

async fn execute(
    state: &AppState,
    claim: &Claim,
    progress: &watch::Sender<u8>,
) -> Result<Value, Failure> {
    match claim.job.kind.as_str() {
        "report" => run_report(state, claim, params(claim)?, progress).await,
        "video" => run_video(state, claim, params(claim)?, progress).await,
        other => Err(Failure::permanent(
            "invalid_params",
            format!("unknown job kind {other}"),
        )),
    }
}

/// Records the keys, then writes the objects; `(file, key, bytes, content type)` each.
async fn store_files(
    state: &AppState,
    claim: &Claim,
    kind: Kind,
    files: Vec<(&'static str, Vec<u8>, &'static str)>,
) -> Result<Value, Failure> {
    let storage = |e: anyhow::Error| Failure::transient("storage_failed", format!("{e:#}"));
    let keys: Vec<String> = files
        .iter()
        .map(|(file, _, _)| state.artifacts.key(kind, claim.job.id, file))
        .collect();
    store::track_objects(&state.pool, claim.job.id, &keys)
        .await
        .map_err(|e| storage(e.into()))?;
    let mut out = serde_json::Map::new();
    for ((file, bytes, content_type), key) in files.into_iter().zip(keys) {
        let size = bytes.len();
        state.artifacts.put(&key, bytes).await.map_err(storage)?;
        out.insert(
            file.to_owned(),
            json!({ "key": key, "bytes": size, "content_type": content_type }),
        );
    }
    Ok(Value::Object(out))
}

async fn run_report(
    state: &AppState,
    claim: &Claim,
    request: CreateReport,
    progress: &watch::Sender<u8>,
) -> Result<Value, Failure> {
    let filter = Filter {
        visible_to: claim.job.owner_id,
        owner: None,
        from: request.from.clone(),
        to: request.to.clone(),
        tags: request.tags.clone(),
        exclude_tags: request.exclude_tags.clone(),
    };
    let pocs = state.poc.all(&filter, state.config.max_report_pocs).await?;
    progress.send_replace(30);
    let format = request.format;
    let meta = report::Meta {
        tenant: state.config.common.tenant.clone(),
        request,
        generated_at: time::OffsetDateTime::now_utc(),
    };
    let failed = |e: anyhow::Error| Failure::transient("render_failed", format!("{e:#}"));
    let render = render_span("report", format.content_type());
    let inline = render.in_scope(|| report::render(&meta, &pocs));
    let bytes = match inline.map_err(failed)? {
        Some(bytes) => bytes,
        None => {
            let mut cmd =
                crate::render::child(&state.config.render_program, state.config.ffmpeg.nice);
            cmd.arg("pdf");
            crate::render::run_renderer(cmd, &report::pdf_data(&meta, &pocs))
                .instrument(render)
                .await
                .map_err(failed)?
        }
    };
    progress.send_replace(80);
    let file = match format {
        wire_types::media::ReportFormat::Pdf => "report.pdf",
        wire_types::media::ReportFormat::Csv => "report.csv",
        wire_types::media::ReportFormat::Json => "report.json",
    };
    store_files(
        state,
        claim,
        Kind::Report,
        vec![(file, bytes, format.content_type())],
    )
    .await
}

/// The span of a render (Typst, or the renderer process and ffmpeg), a child of the job's.
fn render_span(kind: &'static str, content_type: &'static str) -> tracing::Span {
    let span = tracing::info_span!("render", render.content_type = content_type);
    trace::rename(&span, || format!("render {kind}"));
    span
}

/// Filters for a user's own PoCs of one year.
pub fn year_filter(owner: Uuid, year: i32, tags: &[String], exclude_tags: &[String]) -> Filter {
    Filter {
        visible_to: owner,
        owner: Some(owner),
        from: Some(format!("{year:04}-01-01")),
        to: Some(format!("{year:04}-12-31")),
        tags: tags.to_vec(),
        exclude_tags: exclude_tags.to_vec(),
    }
}

async fn run_video(
    state: &AppState,
    claim: &Claim,
    request: CreateVideo,
    progress: &watch::Sender<u8>,
) -> Result<Value, Failure> {
    let filter = year_filter(
        claim.job.owner_id,
        request.year,
        &request.tags,
        &request.exclude_tags,
    );
    let pocs = state.poc.all(&filter, state.config.max_video_pocs).await?;
    if pocs.is_empty() {
        return Err(Failure::permanent(
            "no_pocs",
            format!("no PoCs in {} match", request.year),
        ));
    }
    let cards = pocs.len();
    store::set_facts(
        &state.pool,
        claim,
        &json!({ "cards": cards, "duration_secs": video::duration_secs(cards) }),
    )
    .await
    .map_err(|e| Failure::transient("storage_failed", e.to_string()))?;
    progress.send_replace(10);
    let dir = work_root(state).join(format!("{}-{}", claim.job.id, claim.token));
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| Failure::transient("render_failed", e.to_string()))?;
    let meta = video::Meta {
        tenant: state.config.common.tenant.clone(),
        title: request
            .title
            .clone()
            .unwrap_or_else(|| format!("{} in PoCs", request.year)),
        year: request.year,
    };
    let rendered = video::render(
        &state.config.render_program,
        state.config.ffmpeg.nice,
        &state.config.ffmpeg,
        &dir,
        meta,
        pocs,
        progress,
    )
    .instrument(render_span("video", "video/mp4"))
    .await;
    let files = async {
        let rendered =
            rendered.map_err(|e| Failure::transient("render_failed", format!("{e:#}")))?;
        let read = |p: std::path::PathBuf| async move {
            tokio::fs::read(&p)
                .await
                .map_err(|e| Failure::transient("render_failed", e.to_string()))
        };
        Ok::<_, Failure>(vec![
            ("video.mp4", read(rendered.mp4).await?, "video/mp4"),
            (
                "thumbnail.jpg",
                read(rendered.thumbnail).await?,
                "image/jpeg",
            ),
        ])
    }
    .await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    store_files(state, claim, Kind::Video, files?).await
}

/// Removes objects of jobs that will never complete (deleted, cancelled or failed while
/// their files were being written), and keeps the queue-depth gauges current, and every
/// [`USAGE_EVERY`] the tenant's usage (`mrbill_tenant_storage_bytes`: its artifacts;
/// `mrbill_tenant_video_seconds`: its videos' length).
async fn sweep(state: AppState, mut stop: watch::Receiver<bool>) {
    // Counters exist from the start at 0, so the first completion after a restart is an
    // increase (MediaQueueStuck reads `increase()`).
    for kind in ["report", "video"] {
        metrics::counter!("media_jobs_completed_total", "kind" => kind).increment(0);
    }
    let mut usage_due = std::time::Instant::now();
    loop {
        if let Ok(depth) = store::depth(&state.pool).await {
            for s in ["pending", "processing"] {
                let n = depth.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
                metrics::gauge!("media_jobs", "state" => s).set(n as f64);
            }
        }
        if std::time::Instant::now() >= usage_due {
            match store::usage(&state.pool).await {
                Ok((bytes, video)) => {
                    metrics::gauge!("mrbill_tenant_storage_bytes").set(bytes as f64);
                    metrics::gauge!("mrbill_tenant_video_seconds").set(video);
                    usage_due = std::time::Instant::now() + USAGE_EVERY;
                }
                Err(e) => tracing::warn!(error = %e, "reading the tenant's usage"),
            }
        }
        if let Ok(keys) = store::orphans(&state.pool, 100).await {
            for key in keys {
                match state.artifacts.delete(&key).await {
                    Ok(()) => {
                        let _ = store::forget_orphan(&state.pool, &key).await;
                    }
                    Err(e) => tracing::warn!(key, error = %e, "removing an orphaned object failed"),
                }
            }
        }
        if sleep_or_stop(
            &mut stop,
            state.config.jobs.poll.max(Duration::from_secs(1)) * 5,
        )
        .await
        {
            return;
        }
    }
}
