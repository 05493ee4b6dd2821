//! Following the control plane's route feed: `GET /v1/routes?watch=1[&since=<rev>]`, NDJSON
//! (a snapshot, then deltas), authenticated with the read-only router token. On any error the
//! router keeps its current table, backs off and resumes from the last revision it applied.

use std::time::Duration;

use axum::body::Body;
use cell_model::route_feed::RouteEvent;
use http::{Request, header};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::AppState;

/// Follows the feed at `base_url` forever (until the task is dropped).
pub async fn follow(state: AppState, base_url: String, token: String) {
    let client = crate::http_client::<Body>();
    let mut backoff = Duration::from_millis(200);
    loop {
        match watch_once(&state, &client, &base_url, &token).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "route feed interrupted; routing from the current table");
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// One connection: applies events until the stream ends.
async fn watch_once(
    state: &AppState,
    client: &Client<HttpConnector, Body>,
    base_url: &str,
    token: &str,
) -> anyhow::Result<()> {
    let since = state.revision();
    let uri = format!(
        "{}/v1/routes?watch=1&since={since}",
        base_url.trim_end_matches('/')
    );
    let req = Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())?;
    let res = client.request(req).await?;
    anyhow::ensure!(res.status().is_success(), "feed answered {}", res.status());
    let mut body = res.into_body();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = &line[..line.len() - 1];
            if line.iter().all(u8::is_ascii_whitespace) {
                state.feed_seen();
                continue;
            }
            let event: RouteEvent = serde_json::from_slice(line)?;
            state.apply(event)?;
            // Seen only once applied: a feed of lines this router cannot use is a stale feed.
            state.feed_seen();
        }
    }
    Ok(())
}
