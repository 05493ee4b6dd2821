//! Failed-login counters in Postgres, so every replica of poc-service sees the same counts.

use std::time::Duration;

use sqlx::PgExecutor;

/// How long the most-blocked of `keys` stays blocked, if any is.
pub async fn blocked_for(
    ex: impl PgExecutor<'_>,
    keys: &[String],
) -> sqlx::Result<Option<Duration>> {
    let secs: Option<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM max(blocked_until) - now())::float8 FROM login_throttle WHERE key = ANY($1) AND blocked_until > now()",
    )
    .bind(keys)
    .fetch_one(ex)
    .await?;
    Ok(secs.filter(|s| *s > 0.0).map(Duration::from_secs_f64))
}

/// Counts a failure for `key` in the current window (a new window starts once `window` has
/// passed); reaching `max` failures blocks the key for `block_for`.
pub async fn record_failure(
    ex: impl PgExecutor<'_>,
    key: &str,
    max: u32,
    window: Duration,
    block_for: Duration,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO login_throttle AS t (key, failures, window_start, blocked_until)
         VALUES ($1, 1, now(), CASE WHEN $3 <= 1 THEN now() + make_interval(secs => $4) END)
         ON CONFLICT (key) DO UPDATE SET
           failures = CASE WHEN t.window_start < now() - make_interval(secs => $2) THEN 1 ELSE t.failures + 1 END,
           window_start = CASE WHEN t.window_start < now() - make_interval(secs => $2) THEN now() ELSE t.window_start END,
           blocked_until = CASE
             WHEN (CASE WHEN t.window_start < now() - make_interval(secs => $2) THEN 1 ELSE t.failures + 1 END) >= $3
             THEN now() + make_interval(secs => $4)
             ELSE t.blocked_until END",
    )
    .bind(key)
    .bind(window.as_secs_f64())
    .bind(i32::try_from(max).unwrap_or(i32::MAX))
    .bind(block_for.as_secs_f64())
    .execute(ex)
    .await
    .map(drop)
}

pub async fn clear(ex: impl PgExecutor<'_>, key: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM login_throttle WHERE key = $1")
        .bind(key)
        .execute(ex)
        .await
        .map(drop)
}
