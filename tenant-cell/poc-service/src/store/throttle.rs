//! Failed-login counters in Postgres, so every replica of poc-service sees the same counts.
//!
//! **Invariant:** an attempt is reserved (counted) before its password is verified, so no
//! amount of concurrency gets more than the limit's worth of guesses verified.

use std::time::Duration;

use sqlx::{PgExecutor, PgPool};

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

/// Reserves one attempt for `key` *before* the password is checked: the attempt counts as a
/// failure in the current window (a new window starts once `window` has passed), and reaching
/// `max` blocks the key for `block_for`. One statement, so concurrent guesses queue on the row
/// and never more than `max` are let through. `Err(wait)` (nothing reserved) while blocked.
pub async fn reserve(
    ex: &PgPool,
    key: &str,
    max: u32,
    window: Duration,
    block_for: Duration,
) -> sqlx::Result<Result<(), Duration>> {
    let reserved: Option<i32> = sqlx::query_scalar(
        "INSERT INTO login_throttle AS t (key, failures, window_start, blocked_until)
         VALUES ($1, 1, now(), CASE WHEN $3 <= 1 THEN now() + make_interval(secs => $4) END)
         ON CONFLICT (key) DO UPDATE SET
           failures = CASE WHEN t.window_start < now() - make_interval(secs => $2) THEN 1 ELSE t.failures + 1 END,
           window_start = CASE WHEN t.window_start < now() - make_interval(secs => $2) THEN now() ELSE t.window_start END,
           blocked_until = CASE
             WHEN (CASE WHEN t.window_start < now() - make_interval(secs => $2) THEN 1 ELSE t.failures + 1 END) >= $3
             THEN now() + make_interval(secs => $4)
           END
         WHERE t.blocked_until IS NULL OR t.blocked_until <= now()
         RETURNING failures",
    )
    .bind(key)
    .bind(window.as_secs_f64())
    .bind(i32::try_from(max).unwrap_or(i32::MAX))
    .bind(block_for.as_secs_f64())
    .fetch_optional(ex)
    .await?;
    if reserved.is_some() {
        return Ok(Ok(()));
    }
    let wait = blocked_for(ex, &[key.to_owned()]).await?;
    // Unblocked in between: a second back off rather than a retry loop.
    Ok(Err(wait.unwrap_or(Duration::from_secs(1))))
}

/// Gives back an attempt [`reserve`]d for `key` that turned out not to be a failure (the
/// password was right, or another key refused it), lifting a block it alone caused.
pub async fn release(ex: impl PgExecutor<'_>, key: &str, max: u32) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE login_throttle SET failures = failures - 1,
           blocked_until = CASE WHEN failures - 1 < $2 THEN NULL ELSE blocked_until END
         WHERE key = $1 AND failures > 0",
    )
    .bind(key)
    .bind(i32::try_from(max).unwrap_or(i32::MAX))
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
