//! `mrbill-control-plane`: the admin API, tenant lifecycle, the catalog, the cell reconciler
//! with its two drivers, and the route feed the routers follow.
//!
//! ```text
//! mrbill CLI ──HTTP (operator token)──► api ──► tenants ──► catalog (Postgres) ◄── reconciler ──► dyn CellDriver ─┬─► local ──► cell supervisors
//!                                                                                                                 └─► kubernetes ──► Cell resources ◄── cell-operator
//! mrbill-router ──GET /v1/routes?watch=1 (router token)──► feed (RouteHub) ──► targets (Prometheus's file discovery)
//! ```
//!
//! **Invariant:** cell services never call the control plane; the router only reads its feed.
//! With the control plane down, every cell keeps serving.

pub mod api;
pub mod backups;
pub mod catalog;
pub mod config;
pub mod domain;
pub mod driver;
pub mod feed;
pub mod gauges;
pub mod migrate;
pub mod op_trace;
pub mod reconciler;
pub mod targets;
pub mod tenants;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cell_model::local::Home;
use driver::CellDriver;
use driver::local::set_mode;
use secrecy::{ExposeSecret, SecretString};
use service_kit::http::Readiness;
use service_kit::secrets::{random_token, read_secret, write_secret};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub use config::Config;

/// What the API handlers and the reconciler share.
#[derive(Debug)]
pub struct Ctx {
    pub pool: PgPool,
    pub config: Config,
    pub hub: feed::RouteHub,
    /// Where cells run (`MRBILL_DRIVER`).
    pub driver: Arc<dyn CellDriver>,
    /// Wakes the reconciler (a new operation was queued).
    pub wake: Notify,
    /// Wakes the backup worker (a backup was asked for).
    pub backup_wake: Notify,
    pub operator_token: SecretString,
    pub router_token: SecretString,
}

/// A bound, migrated control plane.
#[derive(Debug)]
pub struct App {
    ctx: Arc<Ctx>,
    listener: TcpListener,
}

impl App {
    /// Binds and migrates, with the driver `MRBILL_DRIVER` names.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let driver: Arc<dyn CellDriver> = match config.driver {
            config::Driver::Local => Arc::new(driver::local::LocalDriver::new(
                config.home.clone(),
                config.bin_dir.clone(),
            )),
            config::Driver::Kubernetes => Arc::new(
                driver::kubernetes::KubeDriver::from_environment()
                    .await
                    .context("connecting to the Kubernetes API (MRBILL_DRIVER=kubernetes)")?,
            ),
        };
        Self::build_with_driver(config, driver).await
    }

    /// Binds and migrates, with cells run by `driver`.
    pub async fn build_with_driver(
        config: Config,
        driver: Arc<dyn CellDriver>,
    ) -> anyhow::Result<Self> {
        let home = config.home.clone();
        std::fs::create_dir_all(home.control_plane_dir())?;
        set_mode(&home.control_plane_dir(), 0o700)?;
        std::fs::create_dir_all(home.logs_dir())?;
        let operator_token = match &config.operator_token_file {
            Some(file) => read_secret(file)?,
            None => ensure_token(&home.operator_token())?,
        };
        let router_token = match &config.router_token_file {
            Some(file) => read_secret(file)?,
            None => ensure_token(&home.router_token())?,
        };
        let url = match &config.catalog_url {
            Some(url) => url.clone(),
            None => start_catalog_cluster(&home).await?,
        };
        let pool = service_kit::db::connect_and_migrate(
            &url,
            &catalog::MIGRATOR,
            10,
            Duration::from_secs(30),
        )
        .await?;
        catalog::ensure_placements(&pool, &config.placements).await?;
        let listener = bind(&home, config.addr).await?;
        Ok(Self {
            ctx: Arc::new(Ctx {
                pool,
                config,
                hub: feed::RouteHub::default(),
                driver,
                wake: Notify::new(),
                backup_wake: Notify::new(),
                operator_token,
                router_token,
            }),
            listener,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves the API and runs the reconciler until `shutdown` resolves. Cells keep running.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.addr();
        let ready = self.ctx.config.home.control_plane_ready();
        write_ready(&ready, &format!("http://{addr}"))?;
        tracing::info!(%addr, "mrbill-control-plane listening");
        let reconciler = tokio::spawn(reconciler::run(self.ctx.clone()));
        let backups = tokio::spawn(backups::run(self.ctx.clone()));
        let gauges = tokio::spawn(gauges::run(self.ctx.clone()));
        let targets = self
            .ctx
            .config
            .prometheus_targets
            .clone()
            .map(|path| tokio::spawn(targets::run(self.ctx.clone(), path)));
        let app = service_kit::http::admin_router(
            api::router(self.ctx.clone()),
            Readiness::new(Some(self.ctx.pool.clone())),
            64 * 1024,
        );
        let ctx = self.ctx.clone();
        let result = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                ctx.hub.close();
            })
            .await;
        reconciler.abort();
        backups.abort();
        gauges.abort();
        if let Some(targets) = targets {
            targets.abort();
        }
        let _ = std::fs::remove_file(&ready);
        result.map_err(Into::into)
    }
}

/// Binds the configured address, else the one remembered in `control-plane/addr` (so routers
/// following `http://<addr>` find a restarted control plane), else a free loopback port.
async fn bind(home: &Home, configured: Option<SocketAddr>) -> anyhow::Result<TcpListener> {
    if let Some(addr) = configured {
        return TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"));
    }
    let remembered = home.control_plane_dir().join("addr");
    let previous: Option<SocketAddr> = std::fs::read_to_string(&remembered)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let listener = match previous {
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(%addr, error = %e, "the remembered address is taken; routers must be pointed at the new one");
                TcpListener::bind(("127.0.0.1", 0)).await?
            }
        },
        None => TcpListener::bind(("127.0.0.1", 0)).await?,
    };
    std::fs::write(&remembered, listener.local_addr()?.to_string())?;
    Ok(listener)
}

fn write_ready(path: &std::path::Path, url: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::json!({ "url": url, "pid": std::process::id() }).to_string(),
    )?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Reads a token file, creating it (0600) on first start.
fn ensure_token(path: &std::path::Path) -> anyhow::Result<SecretString> {
    if !path.exists() {
        write_secret(path, &random_token(32))?;
    }
    read_secret(path)
}

/// The catalog's own cluster under `MRBILL_HOME/catalog` (created on first start); it keeps
/// running when the control plane stops (`mrbill down` stops it).
async fn start_catalog_cluster(home: &Home) -> anyhow::Result<SecretString> {
    let secret = home.control_plane_dir().join("catalog-password");
    let password = ensure_token(&secret)?;
    for dir in [home.root().to_owned(), home.catalog_dir()] {
        std::fs::create_dir_all(&dir)?;
        set_mode(&dir, 0o755)?;
    }
    let spec = pg_cluster::ClusterSpec {
        root: home.catalog_dir(),
        port: None,
        superuser: "mrbill".into(),
        password: password.expose_secret().to_owned(),
        ephemeral: false,
    };
    let cluster = tokio::task::spawn_blocking(move || {
        let mut cluster = pg_cluster::PgCluster::init(&spec)?;
        cluster.start()?;
        anyhow::Ok(cluster)
    })
    .await??;
    let admin = SecretString::from(cluster.url("postgres"));
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin.expose_secret()).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'catalog')")
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        sqlx::raw_sql("CREATE DATABASE catalog")
            .execute(&mut conn)
            .await?;
    }
    Ok(SecretString::from(cluster.url("catalog")))
}
