//! `mrbill-router`: serve the proxy; follow the control plane's route feed when configured
//! (`MRBILL_CONTROL_PLANE_URL`, `MRBILL_ROUTER_TOKEN_FILE`), else route from the snapshot.
//! With `MRBILL_READY_FILE`, writes `{"url", "pid"}` there once bound.

use std::net::SocketAddr;

use mrbill_router::{AppState, Config, Rate};
use service_kit::config::{optional, required};

/// `<PREFIX>_RATE` (per second) and `<PREFIX>_BURST` (default: twice the rate), else `default`.
fn limit(prefix: &str, default: Rate) -> anyhow::Result<Rate> {
    Ok(match optional::<f64>(&format!("{prefix}_RATE"))? {
        Some(rate) => Rate::new(
            rate,
            optional(&format!("{prefix}_BURST"))?.unwrap_or(rate * 2.0),
        ),
        None => default,
    })
}

/// mimalloc: with glibc's allocator a request cost 6 % more instructions untraced and 15 % more
/// traced (`./x bench router-counted`; docs/benchmarks.md, "Counted").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // This runtime accepts connections and follows the feed; the workers serve requests.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    service_kit::telemetry::init(
        "mrbill-router",
        optional("MRBILL_LOG_FORMAT")?.unwrap_or_default(),
    );
    let addr =
        optional("MRBILL_ROUTER_ADDR")?.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8088)));
    let domain: String = optional("MRBILL_DOMAIN")?.unwrap_or_else(|| "localhost".into());
    let mut config = Config::new(addr, &domain, &required::<String>("MRBILL_PUBLIC_URL")?);
    config.snapshot = optional("MRBILL_ROUTER_SNAPSHOT")?;
    config.trusted_proxies = service_kit::config::ip_nets("MRBILL_ROUTER_TRUSTED_PROXIES")?;
    config.tenant_limit = limit("MRBILL_TENANT", config.tenant_limit)?;
    // A client's share follows its tenant's budget unless set: a quarter of it.
    let share = Rate::new(
        config.tenant_limit.rate / 4.0,
        config.tenant_limit.burst / 4.0,
    );
    config.client_limit = limit("MRBILL_CLIENT", share)?;
    config.resolve_limit = limit("MRBILL_RESOLVE", config.resolve_limit)?;
    if let Some(workers) = optional("MRBILL_ROUTER_WORKERS")? {
        config.workers = workers;
    }
    // `false`: every request through hyper (the fast path's peer, for comparison).
    if let Some(fast_path) = optional("MRBILL_ROUTER_FAST_PATH")? {
        config.fast_path = fast_path;
    }
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "mrbill-router listening");
    let ready_file: Option<std::path::PathBuf> = optional("MRBILL_READY_FILE")?;
    if let Some(path) = &ready_file {
        // `{"url", "pid"}` once bound, for `mrbill up` and tests that bind port 0.
        let tmp = path.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::json!({ "url": format!("http://{bound}"), "pid": std::process::id() })
                .to_string(),
        )?;
        std::fs::rename(&tmp, path)?;
    }
    let state = AppState::new(config)?;
    // Metrics on a listener of their own: the public one never lists the tenants.
    if let Some(addr) = optional::<std::net::SocketAddr>("MRBILL_ROUTER_METRICS_ADDR")? {
        let metrics = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(addr = %metrics.local_addr()?, "metrics listening");
        let app = mrbill_router::metrics::router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(metrics, app).await {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        });
    }
    match (
        optional::<String>("MRBILL_CONTROL_PLANE_URL")?,
        service_kit::config::secret_file("MRBILL_ROUTER_TOKEN_FILE")?,
    ) {
        (Some(url), Some(token)) => {
            tokio::spawn(mrbill_router::feed::follow(
                state.clone(),
                url,
                secrecy::ExposeSecret::expose_secret(&token).to_owned(),
            ));
        }
        _ => tracing::warn!(
            "no MRBILL_CONTROL_PLANE_URL / MRBILL_ROUTER_TOKEN_FILE: routing from the snapshot only"
        ),
    }
    mrbill_router::serve(listener, state, service_kit::serve::shutdown_signal()).await?;
    if let Some(path) = ready_file {
        let _ = std::fs::remove_file(path);
    }
    service_kit::telemetry::shutdown();
    Ok(())
}
