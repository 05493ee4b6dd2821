//! The router feed: `GET /v1/routes?watch=1[&since=<rev>]`, NDJSON.
//!
//! A reader gets a snapshot (unless it is already at the current revision), then every change as
//! it commits, and a blank keep-alive line every 15 s. No history is kept: a reader that is
//! behind, or lags the broadcast, gets a fresh snapshot, which replaces its table.
//!
//! **Invariant:** route changes are published in revision order. Every writer holds the hub's
//! lock from the revision bump until the event is published.

use std::time::Duration;

use axum::body::Body;
use cell_model::route_feed::{RouteEntry, RouteEvent};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Mutex, MutexGuard, broadcast, mpsc};

use crate::catalog;

/// Orders and fans out route changes.
#[derive(Debug)]
pub struct RouteHub {
    events: broadcast::Sender<RouteEvent>,
    writer: Mutex<()>,
    /// Set on shutdown: open feeds end, so graceful shutdown does not wait on them forever.
    closing: tokio::sync::watch::Sender<bool>,
}

/// Permission to write routes; publish the events it produced before dropping it.
#[derive(Debug)]
pub struct RouteWriter<'a> {
    _guard: MutexGuard<'a, ()>,
    events: &'a broadcast::Sender<RouteEvent>,
}

impl RouteWriter<'_> {
    /// Writes `entry` in `conn`'s transaction at a new revision; publish the returned event after
    /// the commit.
    pub async fn put(
        &self,
        conn: &mut PgConnection,
        mut entry: RouteEntry,
    ) -> sqlx::Result<RouteEvent> {
        let revision = catalog::bump_revision(conn).await?;
        entry.generation = revision;
        catalog::put_route(conn, &entry, revision).await?;
        Ok(RouteEvent::Upsert {
            revision,
            route: entry,
        })
    }

    /// Deletes `tenant`'s route in `conn`'s transaction, if it has one.
    pub async fn remove(
        &self,
        conn: &mut PgConnection,
        tenant: &str,
    ) -> sqlx::Result<Option<RouteEvent>> {
        if catalog::route(conn, tenant).await?.is_none() {
            return Ok(None);
        }
        let revision = catalog::bump_revision(conn).await?;
        catalog::delete_route(conn, tenant).await?;
        Ok(Some(RouteEvent::Remove {
            revision,
            tenant: tenant.to_owned(),
        }))
    }

    pub fn publish(self, event: Option<RouteEvent>) {
        if let Some(event) = event {
            // No receivers is fine: routers catch up with a snapshot.
            let _ = self.events.send(event);
        }
    }
}

impl Default for RouteHub {
    fn default() -> Self {
        Self {
            events: broadcast::channel(1024).0,
            writer: Mutex::new(()),
            closing: tokio::sync::watch::channel(false).0,
        }
    }
}

impl RouteHub {
    /// Every route change from now on (a receiver that falls behind is told it lagged).
    pub fn subscribe(&self) -> broadcast::Receiver<RouteEvent> {
        self.events.subscribe()
    }

    /// Ends every open feed (readers reconnect to the next control plane).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    pub async fn writer(&self) -> RouteWriter<'_> {
        RouteWriter {
            _guard: self.writer.lock().await,
            events: &self.events,
        }
    }

    /// Changes `tenant`'s route with `change` (no-op without a route, or when nothing changed).
    pub async fn update(
        &self,
        pool: &PgPool,
        tenant: &str,
        change: impl FnOnce(&mut RouteEntry),
    ) -> sqlx::Result<()> {
        let writer = self.writer().await;
        let mut tx = pool.begin().await?;
        let Some(current) = catalog::route(&mut tx, tenant).await? else {
            return Ok(());
        };
        let mut next = current.clone();
        change(&mut next);
        if next == current {
            return Ok(());
        }
        let event = writer.put(&mut tx, next).await?;
        tx.commit().await?;
        writer.publish(Some(event));
        Ok(())
    }

    /// Removes `tenant`'s route.
    pub async fn remove(&self, pool: &PgPool, tenant: &str) -> sqlx::Result<()> {
        let writer = self.writer().await;
        let mut tx = pool.begin().await?;
        let event = writer.remove(&mut tx, tenant).await?;
        tx.commit().await?;
        writer.publish(event);
        Ok(())
    }

    /// The NDJSON body for a reader at `since`; with `watch`, it stays open for deltas.
    pub async fn stream(
        &self,
        pool: &PgPool,
        since: Option<u64>,
        watch: bool,
    ) -> sqlx::Result<Body> {
        // Subscribe before reading the snapshot: nothing committed in between is missed, and
        // events already in the snapshot are skipped by revision.
        let mut events = self.events.subscribe();
        let mut closing = self.closing.subscribe();
        let (revision, routes) = catalog::route_snapshot(pool).await?;
        let (lines, rx) = mpsc::channel::<Result<String, std::io::Error>>(64);
        let snapshot =
            (since != Some(revision)).then_some(RouteEvent::Snapshot { revision, routes });
        tokio::spawn(async move {
            if let Some(snapshot) = snapshot
                && lines.send(Ok(line(&snapshot))).await.is_err()
            {
                return;
            }
            if !watch {
                return;
            }
            let mut keepalive = tokio::time::interval(Duration::from_secs(15));
            keepalive.tick().await;
            loop {
                let text = tokio::select! {
                    event = events.recv() => match event {
                        Ok(event) if event.revision() > revision => line(&event),
                        Ok(_) => continue,
                        // Lagged or shutting down: end the stream; the reader resumes.
                        Err(_) => return,
                    },
                    _ = keepalive.tick() => "\n".to_owned(),
                    _ = closing.wait_for(|closed| *closed) => return,
                    () = lines.closed() => return,
                };
                if lines.send(Ok(text)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Body::from_stream(futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        )))
    }
}

fn line(event: &RouteEvent) -> String {
    let mut text = serde_json::to_string(event).expect("route events serialize");
    text.push('\n');
    text
}
