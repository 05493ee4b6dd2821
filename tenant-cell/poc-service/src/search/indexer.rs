//! The indexer: drains the change log into the search index.
//!
//! Every index is a *consumer* (`search_consumers`): each poc-service replica with an index of
//! its own (the embedded engine; its id is kept in the index directory), or one consumer shared
//! by every replica of a shared engine (Meilisearch). Every insert or update of a PoC row adds
//! one `search_changes` row per consumer in the same transaction (a trigger, so no write path
//! can forget) and notifies `poc_search_outbox`. The indexer wakes on that notification (or on
//! a local nudge, or every 500 ms), reads a batch of its consumer's rows, loads the PoCs'
//! *current* state, applies it to the index, and only then deletes the batch. A failing index
//! leaves the rows in place and is retried with backoff, so nothing is lost.
//!
//! A consumer new to the database (a fresh index directory, or one removed after an hour of
//! silence) registers under an exclusive lock on `search_consumers` — which waits for every
//! writing transaction that has not yet seen it — and then rebuilds its index from Postgres:
//! every change is either in that snapshot or a row of its own.
//!
//! **Invariant:** at most one indexer drains a consumer at a time (a transaction-scoped
//! advisory lock per consumer), so an older state can never overwrite a newer one in an index.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{PocDoc, SearchIndex};
use crate::store::pocs;

const CHANNEL: &str = "poc_search_outbox";
/// How often a consumer says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// A consumer silent this long is removed with its rows (it rebuilds if it comes back).
const STALE: &str = "1 hour";
const BATCH: i64 = 1_000;
const POLL: Duration = Duration::from_millis(500);
/// How often the index's document count is compared with Postgres (self-healing).
const CONSISTENCY_CHECK: Duration = Duration::from_secs(60);
/// Quiet time after the last write before the index is optimized.
const OPTIMIZE_AFTER: Duration = Duration::from_secs(10);

/// Shared view of the indexer for handlers and the admin API.
#[derive(Debug, Default)]
pub struct IndexerHandle {
    wake: Notify,
    /// Set by `nudge`, cleared before each drain: a nudge that lands while a drain is running is
    /// never lost, whatever the timing of the `Notify` permit.
    dirty: AtomicBool,
    reindex: AtomicBool,
    reindexing: AtomicBool,
    indexed_seq: AtomicI64,
    /// The consumer this process drains for.
    consumer: String,
}

impl IndexerHandle {
    /// Asks the indexer to drain now (called after a committed write).
    pub fn nudge(&self) {
        self.dirty.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Asks for a rebuild from Postgres; returns at once.
    pub fn request_reindex(&self) {
        self.reindex.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    pub fn is_reindexing(&self) -> bool {
        self.reindexing.load(Ordering::SeqCst) || self.reindex.load(Ordering::SeqCst)
    }

    /// Highest change-log position applied by this process.
    pub fn indexed_seq(&self) -> i64 {
        self.indexed_seq.load(Ordering::SeqCst)
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Changes not yet applied to this process's index.
    pub async fn pending(&self, pool: &PgPool) -> sqlx::Result<i64> {
        sqlx::query_scalar("SELECT count(*) FROM search_changes WHERE consumer = $1")
            .bind(&self.consumer)
            .fetch_one(pool)
            .await
    }
}

/// The consumer an index drains for: an embedded index on disk keeps its id in its directory
/// (a restart goes on where it stopped); an in-memory one is new each start; a shared engine
/// has one consumer for all replicas.
pub fn consumer_for(config: &crate::config::SearchConfig) -> anyhow::Result<String> {
    use crate::config::SearchConfig;
    Ok(match config {
        SearchConfig::Embedded { dir: Some(dir) } => {
            let file = dir.join("consumer-id");
            match std::fs::read_to_string(&file) {
                Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
                _ => {
                    let id = format!("embedded-{}", Uuid::now_v7().simple());
                    std::fs::create_dir_all(dir)?;
                    std::fs::write(&file, &id)?;
                    id
                }
            }
        }
        SearchConfig::Embedded { dir: None } => format!("memory-{}", Uuid::now_v7().simple()),
        SearchConfig::Meilisearch { index, .. } => format!("meilisearch-{index}"),
    })
}

/// Registers the consumer and starts the indexer task, which runs until `shutdown` fires;
/// the task's handle ends once it has let the index go (a stopping service waits for it, so a
/// replica started next on the same index directory finds it unlocked).
///
/// The registration happens before the service takes a write, so every write it acknowledges
/// leaves a change row of this consumer (`pending` is exact from the first request on); a new
/// consumer starts with a rebuild, which the task retries until it succeeds.
pub async fn spawn(
    pool: PgPool,
    index: Arc<dyn SearchIndex>,
    consumer: String,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(Arc<IndexerHandle>, tokio::task::JoinHandle<()>)> {
    // From the start at 0: the first failure after a restart is an increase (IndexerFailing).
    metrics::counter!("mrbill_poc_search_indexer_failures_total").increment(0);
    let handle = Arc::new(IndexerHandle {
        reindex: AtomicBool::new(register(&pool, &consumer).await?),
        consumer,
        ..IndexerHandle::default()
    });
    let task = tokio::spawn(run(pool, index, handle.clone(), shutdown));
    Ok((handle, task))
}

async fn run(
    pool: PgPool,
    index: Arc<dyn SearchIndex>,
    handle: Arc<IndexerHandle>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut listener = listen(&pool).await;
    let mut backoff = Duration::from_millis(100);
    let mut last_check = Instant::now() - CONSISTENCY_CHECK;
    let mut last_beat = Instant::now();
    let mut last_write = Instant::now();
    let mut optimized = true;
    loop {
        if *shutdown.borrow() {
            return;
        }
        handle.dirty.store(false, Ordering::SeqCst);
        let result = async {
            if last_beat.elapsed() >= HEARTBEAT {
                if register(&pool, &handle.consumer).await? {
                    // New to the database: nothing of what came before is in our rows.
                    handle.reindex.store(true, Ordering::SeqCst);
                }
                last_beat = Instant::now();
            }
            if handle.reindex.swap(false, Ordering::SeqCst)
                && let Err(e) = rebuild(&pool, index.as_ref(), &handle).await
            {
                // Still owed: a consumer's writes from before its rows began are only here.
                handle.reindex.store(true, Ordering::SeqCst);
                return Err(e);
            }
            if drain(&pool, index.as_ref(), &handle).await? > 0 {
                last_write = Instant::now();
                optimized = false;
            } else if !optimized && last_write.elapsed() >= OPTIMIZE_AFTER {
                index.optimize().await?;
                optimized = true;
            }
            if last_check.elapsed() >= CONSISTENCY_CHECK {
                last_check = Instant::now();
                if !consistent(&pool, index.as_ref(), &handle).await? {
                    rebuild(&pool, index.as_ref(), &handle).await?;
                    drain(&pool, index.as_ref(), &handle).await?;
                }
            }
            anyhow::Ok(())
        }
        .await;
        let wait = match result {
            Ok(())
                if handle.dirty.load(Ordering::SeqCst) || handle.reindex.load(Ordering::SeqCst) =>
            {
                continue;
            }
            Ok(()) => {
                backoff = Duration::from_millis(100);
                POLL
            }
            Err(e) => {
                metrics::counter!("mrbill_poc_search_indexer_failures_total").increment(1);
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "search indexing failed; will retry");
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                wait
            }
        };
        tokio::select! {
            _ = handle.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
            notified = recv(&mut listener) => {
                if !notified {
                    // Connection lost: reconnect on the next round, keep polling meanwhile.
                    listener = listen(&pool).await;
                }
            }
        }
    }
}

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(pool).await.ok()?;
    listener.listen(CHANNEL).await.ok()?;
    Some(listener)
}

/// Waits for a notification; `false` when the listener is gone.
async fn recv(listener: &mut Option<PgListener>) -> bool {
    match listener {
        Some(l) => l.recv().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// Applies the consumer's changes until it has none; returns how many were applied.
pub async fn drain(
    pool: &PgPool,
    index: &dyn SearchIndex,
    handle: &IndexerHandle,
) -> anyhow::Result<usize> {
    let mut applied = 0;
    loop {
        let mut tx = pool.begin().await?;
        let locked: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtext('mrbill.poc.indexer:' || $1))",
        )
        .bind(&handle.consumer)
        .fetch_one(&mut *tx)
        .await?;
        if !locked {
            return Ok(applied);
        }
        let batch: Vec<(i64, Uuid, f64)> = sqlx::query_as(
            "SELECT seq, poc_id, EXTRACT(EPOCH FROM now() - created_at)::float8
             FROM search_changes WHERE consumer = $1 ORDER BY seq LIMIT $2",
        )
        .bind(&handle.consumer)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if batch.is_empty() {
            return Ok(applied);
        }
        applied += batch.len();
        let mut ids: Vec<Uuid> = batch.iter().map(|(_, id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let rows = pocs::for_index(&mut *tx, &ids).await?;
        let upserts: Vec<PocDoc> = rows
            .iter()
            .filter(|r| r.deleted_at.is_none())
            .map(|r| r.to_doc())
            .collect();
        let deletes: Vec<Uuid> = ids
            .iter()
            .filter(|id| !upserts.iter().any(|d| d.id == **id))
            .copied()
            .collect();
        index.apply(upserts, deletes).await?;
        let seqs: Vec<i64> = batch.iter().map(|(seq, _, _)| *seq).collect();
        sqlx::query("DELETE FROM search_changes WHERE seq = ANY($1)")
            .bind(&seqs)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let max_seq = seqs.iter().copied().max().unwrap_or_default();
        handle.indexed_seq.fetch_max(max_seq, Ordering::SeqCst);
        let lag = metrics::histogram!("mrbill_poc_search_indexer_lag_seconds");
        for (_, _, age) in &batch {
            lag.record(*age);
        }
        metrics::counter!("mrbill_poc_search_indexed_total").increment(batch.len() as u64);
    }
}

/// Rebuilds the index from Postgres. Writes made meanwhile are in the consumer's changes and are
/// applied by the next drain (applying a PoC twice is harmless).
pub async fn rebuild(
    pool: &PgPool,
    index: &dyn SearchIndex,
    handle: &IndexerHandle,
) -> anyhow::Result<()> {
    handle.reindexing.store(true, Ordering::SeqCst);
    let result = async {
        let started = Instant::now();
        index.clear().await?;
        let mut after = Uuid::nil();
        let mut total = 0usize;
        loop {
            let rows = pocs::live_page(pool, after, BATCH).await?;
            let Some(last) = rows.last() else { break };
            after = last.id;
            total += rows.len();
            index
                .apply(rows.iter().map(|r| r.to_doc()).collect(), Vec::new())
                .await?;
        }
        tracing::info!(
            documents = total,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "search index rebuilt from Postgres"
        );
        index.optimize().await?;
        anyhow::Ok(())
    }
    .await;
    handle.reindexing.store(false, Ordering::SeqCst);
    result
}

/// Says the consumer is alive (registering it if it is new: then `true`) and removes consumers
/// silent for longer than [`STALE`], with their rows.
pub async fn register(pool: &PgPool, consumer: &str) -> anyhow::Result<bool> {
    sqlx::query(&format!(
        "DELETE FROM search_consumers WHERE seen_at < now() - interval '{STALE}'"
    ))
    .execute(pool)
    .await?;
    let seen = sqlx::query("UPDATE search_consumers SET seen_at = now() WHERE consumer = $1")
        .bind(consumer)
        .execute(pool)
        .await?;
    if seen.rows_affected() == 1 {
        return Ok(false);
    }
    // Waits for every writing transaction that read the consumers without us, and keeps new
    // ones out until we are in: each later change gets a row of ours.
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE search_consumers IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO search_consumers (consumer) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(consumer)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(consumer, "search consumer registered; rebuilding its index");
    Ok(true)
}

/// Whether the index holds as many documents as there are live PoCs (checked only when the
/// consumer has no pending change, so in-flight writes do not count as drift).
async fn consistent(
    pool: &PgPool,
    index: &dyn SearchIndex,
    handle: &IndexerHandle,
) -> anyhow::Result<bool> {
    let pending = handle.pending(pool).await?;
    if pending > 0 {
        return Ok(true);
    }
    let live = pocs::count_live(pool).await?;
    let indexed = index.count().await?;
    if indexed != live as u64 {
        tracing::warn!(
            live,
            indexed,
            "search index out of step with Postgres; rebuilding"
        );
        return Ok(false);
    }
    Ok(true)
}
