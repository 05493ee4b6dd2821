//! SQL over media-service's database: the job queue and its artifacts.
//!
//! **Invariants:** a worker changes a job only while it holds the job's current `lease_token`
//! (so a worker that lost its lease, or whose job was cancelled or deleted, changes nothing);
//! every object a worker writes is first recorded in `media_orphans` and only leaves that table
//! in the transaction that completes the job, so objects of jobs that never complete are swept.

use std::time::Duration;

use serde_json::Value;
use sqlx::{FromRow, PgExecutor, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::media::JobState;

/// Job kinds (the `kind` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Report,
    Video,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Report => "report",
            Kind::Video => "video",
        }
    }
}

#[derive(Clone, Debug, FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub kind: String,
    pub owner_id: Uuid,
    pub params: Value,
    pub state: String,
    pub progress: i16,
    pub attempts: i32,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub facts: Value,
    pub artifacts: Value,
    pub created_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
    /// The queuing request's trace (`traceparent`), if it was traced.
    pub traceparent: Option<String>,
}

impl JobRow {
    pub fn state(&self) -> JobState {
        JobState::parse(&self.state).unwrap_or(JobState::Failed)
    }
}

const COLUMNS: &str = "id, kind, owner_id, params, state, progress, attempts, \
    error_code, error_message, facts, artifacts, created_at, finished_at, traceparent";

/// Why a request for a new job was refused.
#[derive(Debug)]
pub enum Refusal {
    /// The user has this many jobs pending or processing already.
    TooManyActive(i64),
    /// The user asked for this many jobs in the last minute.
    TooManyPerMinute(i64),
}

/// Per-user limits checked when a job is requested.
#[derive(Clone, Copy, Debug)]
pub struct UserLimits {
    pub active: u32,
    pub per_minute: u32,
}

/// Inserts a pending job unless the user is over a limit (checked under a per-user lock, so
/// concurrent requests cannot both slip under it). It remembers the current span's trace, so
/// the worker's spans join the request that queued it.
pub async fn insert(
    pool: &PgPool,
    kind: Kind,
    owner: Uuid,
    params: &Value,
    limits: UserLimits,
) -> sqlx::Result<Result<JobRow, Refusal>> {
    let traceparent = service_kit::telemetry::trace::current_traceparent();
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('media-user:' || $1::text))")
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    let (active, recent): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state IN ('pending', 'processing')),
                count(*) FILTER (WHERE created_at > now() - interval '1 minute')
           FROM media_jobs WHERE owner_id = $1",
    )
    .bind(owner)
    .fetch_one(&mut *tx)
    .await?;
    if active >= i64::from(limits.active) {
        return Ok(Err(Refusal::TooManyActive(active)));
    }
    if recent >= i64::from(limits.per_minute) {
        return Ok(Err(Refusal::TooManyPerMinute(recent)));
    }
    let row = sqlx::query_as(&format!(
        "INSERT INTO media_jobs (id, kind, owner_id, params, traceparent)
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(kind.as_str())
    .bind(owner)
    .bind(params)
    .bind(traceparent)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify('media_jobs', '')")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Ok(row))
}

/// One of the owner's jobs of a kind (another user's or kind's is "not found").
pub async fn find(
    ex: impl PgExecutor<'_>,
    kind: Kind,
    owner: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<JobRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM media_jobs WHERE id = $1 AND owner_id = $2 AND kind = $3"
    ))
    .bind(id)
    .bind(owner)
    .bind(kind.as_str())
    .fetch_optional(ex)
    .await
}

/// A job by id alone (download links, which carry their own proof).
pub async fn find_any(ex: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<JobRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM media_jobs WHERE id = $1"))
        .bind(id)
        .fetch_optional(ex)
        .await
}

/// The owner's jobs of a kind, newest first, after the keyset position `after`.
pub async fn list(
    ex: impl PgExecutor<'_>,
    kind: Kind,
    owner: Uuid,
    after: Option<(OffsetDateTime, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<JobRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM media_jobs WHERE owner_id = $1 AND kind = $2
           AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
         ORDER BY created_at DESC, id DESC LIMIT $5"
    ))
    .bind(owner)
    .bind(kind.as_str())
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(ex)
    .await
}

/// Cancels a job that has not finished; returns it as it is now (or `None` if not the owner's).
pub async fn cancel(
    pool: &PgPool,
    kind: Kind,
    owner: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<JobRow>> {
    sqlx::query(
        "UPDATE media_jobs SET state = 'cancelled', lease_token = NULL, lease_owner = NULL,
                updated_at = now(), finished_at = now()
          WHERE id = $1 AND owner_id = $2 AND kind = $3 AND state IN ('pending', 'processing')",
    )
    .bind(id)
    .bind(owner)
    .bind(kind.as_str())
    .execute(pool)
    .await?;
    find(pool, kind, owner, id).await
}

/// Deletes a job; returns it so its objects can be removed.
pub async fn delete(
    pool: &PgPool,
    kind: Kind,
    owner: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<JobRow>> {
    sqlx::query_as(&format!(
        "DELETE FROM media_jobs WHERE id = $1 AND owner_id = $2 AND kind = $3 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(owner)
    .bind(kind.as_str())
    .fetch_optional(pool)
    .await
}

/// A claimed job: the row and the token that proves the claim.
#[derive(Debug)]
pub struct Claim {
    pub job: JobRow,
    pub token: Uuid,
}

/// Takes the oldest due job — pending and past its backoff, or processing under an expired
/// lease (its worker died) — unless the cell already runs `concurrency` jobs. Jobs whose
/// workers died `max_attempts` times fail instead of being tried again.
pub async fn claim(
    pool: &PgPool,
    worker: &str,
    lease: Duration,
    concurrency: u32,
    max_attempts: u32,
) -> sqlx::Result<Option<Claim>> {
    let mut tx = pool.begin().await?;
    // One claimer at a time per cell, so the concurrency count cannot be raced past.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('media-claim'))")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE media_jobs SET state = 'failed', error_code = 'worker_lost',
                error_message = 'the job stopped its worker ' || attempts || ' times',
                lease_token = NULL, lease_owner = NULL, updated_at = now(), finished_at = now()
          WHERE state = 'processing' AND lease_until <= now() AND attempts >= $1",
    )
    .bind(i32::try_from(max_attempts).unwrap_or(i32::MAX))
    .execute(&mut *tx)
    .await?;
    let running: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM media_jobs WHERE state = 'processing' AND lease_until > now()",
    )
    .fetch_one(&mut *tx)
    .await?;
    if running >= i64::from(concurrency) {
        return Ok(None);
    }
    let token = Uuid::new_v4();
    let job: Option<JobRow> = sqlx::query_as(&format!(
        "UPDATE media_jobs SET state = 'processing', attempts = attempts + 1,
                lease_owner = $1, lease_token = $2,
                lease_until = now() + make_interval(secs => $3), updated_at = now()
          WHERE id = (SELECT id FROM media_jobs
                       WHERE (state = 'pending' AND run_after <= now())
                          OR (state = 'processing' AND lease_until <= now())
                       ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
          RETURNING {COLUMNS}"
    ))
    .bind(worker)
    .bind(token)
    .bind(lease.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(job.map(|job| Claim { job, token }))
}

/// Expires the leases held by an earlier process of `instance` (worker names
/// `<instance>/<pid>/<n>`), so its jobs are claimed again at once.
pub async fn release_previous(pool: &PgPool, instance: &str, pid: u32) -> sqlx::Result<u64> {
    let r = sqlx::query(
        "UPDATE media_jobs SET lease_until = now()
          WHERE state = 'processing' AND lease_owner LIKE $1 || '/%'
            AND lease_owner NOT LIKE $1 || '/' || $2 || '/%'",
    )
    .bind(instance)
    .bind(pid.to_string())
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
}

/// Renews the lease and records progress; `false` if the claim is gone (cancelled, deleted,
/// or taken over after the lease expired): the worker must stop.
pub async fn heartbeat(
    ex: impl PgExecutor<'_>,
    claim: &Claim,
    progress: u8,
    lease: Duration,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE media_jobs SET progress = greatest(progress, $3),
                lease_until = now() + make_interval(secs => $4), updated_at = now()
          WHERE id = $1 AND lease_token = $2 AND state = 'processing'",
    )
    .bind(claim.job.id)
    .bind(claim.token)
    .bind(i16::from(progress.min(100)))
    .bind(lease.as_secs_f64())
    .execute(ex)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Records what the job found out (cards, duration) while it holds the claim.
pub async fn set_facts(
    ex: impl PgExecutor<'_>,
    claim: &Claim,
    facts: &Value,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE media_jobs SET facts = $3, updated_at = now()
          WHERE id = $1 AND lease_token = $2 AND state = 'processing'",
    )
    .bind(claim.job.id)
    .bind(claim.token)
    .bind(facts)
    .execute(ex)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Records keys about to be written, so they are swept if the job never completes.
pub async fn track_objects(
    ex: impl PgExecutor<'_>,
    job: Uuid,
    keys: &[String],
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO media_orphans (key, job_id) SELECT k, $1 FROM unnest($2::text[]) AS k
         ON CONFLICT (key) DO NOTHING",
    )
    .bind(job)
    .bind(keys)
    .execute(ex)
    .await?;
    Ok(())
}

/// Completes the job with its artifacts; `false` if the claim is gone (its objects stay
/// tracked as orphans and are swept).
pub async fn complete(pool: &PgPool, claim: &Claim, artifacts: &Value) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let r = sqlx::query(
        "UPDATE media_jobs SET state = 'completed', progress = 100, artifacts = $3,
                error_code = NULL, error_message = NULL, lease_token = NULL, lease_owner = NULL,
                updated_at = now(), finished_at = now()
          WHERE id = $1 AND lease_token = $2 AND state = 'processing'",
    )
    .bind(claim.job.id)
    .bind(claim.token)
    .bind(artifacts)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM media_orphans WHERE job_id = $1")
        .bind(claim.job.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Ends an attempt that failed: back to pending after `retry_in`, or failed for good.
pub async fn fail(
    ex: impl PgExecutor<'_>,
    claim: &Claim,
    retry_in: Option<Duration>,
    code: &str,
    message: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE media_jobs SET
                state = CASE WHEN $3::float8 IS NULL THEN 'failed' ELSE 'pending' END,
                run_after = now() + make_interval(secs => coalesce($3, 0)),
                finished_at = CASE WHEN $3::float8 IS NULL THEN now() END,
                error_code = $4, error_message = $5,
                lease_token = NULL, lease_owner = NULL, updated_at = now()
          WHERE id = $1 AND lease_token = $2 AND state = 'processing'",
    )
    .bind(claim.job.id)
    .bind(claim.token)
    .bind(retry_in.map(|d| d.as_secs_f64()))
    .bind(code)
    .bind(message)
    .execute(ex)
    .await?;
    Ok(())
}

/// Gives back a claim that was never worked on (taken as the service began to stop): the job
/// is pending again with the attempt not counted, so stopping never spends a job's attempts.
pub async fn unclaim(ex: impl PgExecutor<'_>, claim: &Claim) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE media_jobs SET state = 'pending', attempts = attempts - 1, run_after = now(),
                lease_token = NULL, lease_owner = NULL, updated_at = now()
          WHERE id = $1 AND lease_token = $2 AND state = 'processing'",
    )
    .bind(claim.job.id)
    .bind(claim.token)
    .execute(ex)
    .await?;
    Ok(())
}

/// Keys of objects whose jobs will never complete (deleted, cancelled, failed).
pub async fn orphans(ex: impl PgExecutor<'_>, limit: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT key FROM media_orphans o
          WHERE NOT EXISTS (SELECT 1 FROM media_jobs j
                             WHERE j.id = o.job_id AND j.state IN ('pending', 'processing'))
          ORDER BY created_at LIMIT $1",
    )
    .bind(limit)
    .fetch_all(ex)
    .await
}

pub async fn forget_orphan(ex: impl PgExecutor<'_>, key: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM media_orphans WHERE key = $1")
        .bind(key)
        .execute(ex)
        .await?;
    Ok(())
}

/// What the tenant's completed jobs hold: artifact bytes, and seconds of video.
pub async fn usage(ex: impl PgExecutor<'_>) -> sqlx::Result<(i64, f64)> {
    sqlx::query_as(
        "SELECT (SELECT coalesce(sum((a.value->>'bytes')::bigint), 0)::bigint
                   FROM media_jobs j, jsonb_each(j.artifacts) a WHERE j.state = 'completed'),
                (SELECT coalesce(sum((facts->>'duration_secs')::float8), 0)::float8
                   FROM media_jobs WHERE kind = 'video' AND state = 'completed')",
    )
    .fetch_one(ex)
    .await
}

/// Queue depth by state (for `/metrics`).
pub async fn depth(ex: impl PgExecutor<'_>) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT state, count(*) FROM media_jobs WHERE state IN ('pending', 'processing') GROUP BY 1",
    )
    .fetch_all(ex)
    .await
}
