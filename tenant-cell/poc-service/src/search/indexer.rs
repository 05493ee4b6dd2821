//! The indexer: drains the transactional outbox into the search index.
//!
//! Every insert or update of a PoC row adds its id to `search_outbox` in the same transaction
//! (a trigger, so no write path can forget) and notifies `poc_search_outbox`. The indexer wakes
//! on that notification (or on a local nudge, or every 500 ms), reads a batch, loads the rows'
//! *current* state, applies it to the index, and only then deletes the batch from the outbox.
//! A failing index leaves the outbox untouched and is retried with backoff, so nothing is lost.
//!
//! **Invariant:** at most one indexer drains at a time (a transaction-scoped advisory lock), so
//! an older state can never overwrite a newer one in the index.

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

    /// Highest outbox position applied by this process.
    pub fn indexed_seq(&self) -> i64 {
        self.indexed_seq.load(Ordering::SeqCst)
    }
}

/// Starts the indexer task. It runs until `shutdown` fires.
pub fn spawn(
    pool: PgPool,
    index: Arc<dyn SearchIndex>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Arc<IndexerHandle> {
    let handle = Arc::new(IndexerHandle::default());
    tokio::spawn(run(pool, index, handle.clone(), shutdown));
    handle
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
    let mut last_write = Instant::now();
    let mut optimized = true;
    loop {
        if *shutdown.borrow() {
            return;
        }
        handle.dirty.store(false, Ordering::SeqCst);
        let result = async {
            if handle.reindex.swap(false, Ordering::SeqCst) {
                rebuild(&pool, index.as_ref(), &handle).await?;
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
                if !consistent(&pool, index.as_ref()).await? {
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

/// Applies outbox batches until it is empty; returns how many entries were applied.
pub async fn drain(
    pool: &PgPool,
    index: &dyn SearchIndex,
    handle: &IndexerHandle,
) -> anyhow::Result<usize> {
    let mut applied = 0;
    loop {
        let mut tx = pool.begin().await?;
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('mrbill.poc.indexer'))")
                .fetch_one(&mut *tx)
                .await?;
        if !locked {
            return Ok(applied);
        }
        let batch: Vec<(i64, Uuid, f64)> = sqlx::query_as(
            "SELECT seq, poc_id, EXTRACT(EPOCH FROM now() - created_at)::float8 FROM search_outbox ORDER BY seq LIMIT $1",
        )
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
        sqlx::query("DELETE FROM search_outbox WHERE seq = ANY($1)")
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

/// Rebuilds the index from Postgres. Writes made meanwhile are in the outbox and are applied by
/// the next drain (applying a PoC twice is harmless).
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

/// Whether the index holds as many documents as there are live PoCs (checked only when the
/// outbox is empty, so in-flight writes do not count as drift).
async fn consistent(pool: &PgPool, index: &dyn SearchIndex) -> anyhow::Result<bool> {
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM search_outbox")
        .fetch_one(pool)
        .await?;
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
