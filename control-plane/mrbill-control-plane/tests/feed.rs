//! The route feed publishes changes in revision order, however many writers commit at once:
//! a router applying the deltas it reads never sees a revision go backwards. Real Postgres
//! (the catalog's migrations), the real feed stream.

use std::sync::Arc;

use cell_model::contract::Service;
use cell_model::route_feed::{RouteEntry, RouteEvent, RouteState};
use futures_util::StreamExt;
use mrbill_control_plane::catalog;
use mrbill_control_plane::feed::RouteHub;
use sqlx::PgPool;

const WRITERS: usize = 12;
const WRITES_EACH: usize = 10;

fn entry(tenant: &str) -> RouteEntry {
    RouteEntry {
        tenant: tenant.to_owned(),
        cell_id: format!("c-{tenant}"),
        generation: 0,
        state: RouteState::Active,
        services: [(Service::Poc, "http://127.0.0.1:1".to_owned())]
            .into_iter()
            .collect(),
        replicas: Default::default(),
        email_domains: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_route_writes_are_published_in_revision_order() {
    let url = test_support::test_database(&catalog::MIGRATOR)
        .await
        .expect("catalog database");
    let pool = PgPool::connect(&url).await.expect("pool");
    let hub = Arc::new(RouteHub::default());
    let body = hub.stream(&pool, None, true).await.expect("feed");
    let mut lines = body.into_data_stream();

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (hub, pool) = (hub.clone(), pool.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..WRITES_EACH {
                let writer = hub.writer().await;
                let mut tx = pool.begin().await.expect("tx");
                let event = writer
                    .put(&mut tx, entry(&format!("t{w}-{i}")))
                    .await
                    .expect("put");
                tx.commit().await.expect("commit");
                writer.publish(Some(event));
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }

    let mut text = String::new();
    let mut revisions = Vec::new();
    while revisions.len() < WRITERS * WRITES_EACH {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next())
            .await
            .expect("the feed keeps coming")
            .expect("open")
            .expect("chunk");
        text.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        while let Some((line, rest)) = text.split_once('\n') {
            if !line.trim().is_empty() {
                let event: RouteEvent = serde_json::from_str(line).expect("an event");
                if !matches!(event, RouteEvent::Snapshot { .. }) {
                    revisions.push(event.revision());
                }
            }
            text = rest.to_owned();
        }
    }
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "published out of revision order: {revisions:?}"
    );
}
