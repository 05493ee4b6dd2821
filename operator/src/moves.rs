//! The SQL side of a move on Kubernetes (and a restore's fence mark), run by the **target**
//! cell's operator against both cells' Postgres as each service's role (a target has its source's role passwords: the
//! identity is copied), over TLS verified with each side's CA. The queries are `pg_move`'s,
//! the same the local driver runs; the real one is tested against real Postgres clusters with
//! logical replication between them, the controller's use of it with a scripted one.

use std::future::Future;
use std::pin::Pin;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

/// One service database of one side: its URL (`postgres://role:password@host:port/db`) and
/// the CA its server certificate is checked against (`verify-full`); without one (RDS, whose
/// CA the services do not check either) TLS is only required.
#[derive(Clone)]
pub struct Side {
    pub url: String,
    pub ca: Option<String>,
}

impl std::fmt::Debug for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = self.url.rsplit_once('@').map_or("?", |(_, h)| h);
        f.debug_struct("Side")
            .field("at", &host)
            .finish_non_exhaustive()
    }
}

pub type Checked<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// The checks of a move, per service database. `Err` says why not (yet).
pub trait MoveChecks: Send + Sync {
    /// Tables of the move's subscription still in their initial copy (0: caught up).
    fn copying<'a>(&'a self, target: &'a Side, subscription: &'a str) -> Checked<'a, i64>;

    /// Once the target holds every row of the fenced source (per-table checksums equal),
    /// copies the sequences; returns how many tables matched.
    fn sync<'a>(&'a self, source: &'a Side, target: &'a Side) -> Checked<'a, usize>;

    /// Compares both sides table by table once more; returns how many tables matched.
    fn verify<'a>(&'a self, source: &'a Side, target: &'a Side) -> Checked<'a, usize>;

    /// A restore's fence mark: one committed transaction (an xid assigned), so the WAL holds a
    /// commit stamped after any moment a restore may ask for. Postgres replays to a target time
    /// only up to the first commit after it: without one it ends recovery short of its target
    /// and refuses to start (`recovery ended before configured recovery target was reached`).
    fn mark<'a>(&'a self, side: &'a Side) -> Checked<'a, ()>;
}

/// The real one: short-lived pools, `verify-full` TLS.
#[derive(Clone, Copy, Debug, Default)]
pub struct PgMoves;

async fn connect(side: &Side) -> Result<PgPool, String> {
    let options: PgConnectOptions = side
        .url
        .parse()
        .map_err(|e| format!("a database URL: {e}"))?;
    let options = match &side.ca {
        Some(ca) => options
            .ssl_mode(PgSslMode::VerifyFull)
            .ssl_root_cert_from_pem(ca.clone().into_bytes()),
        None => options.ssl_mode(PgSslMode::Require),
    };
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|e| format!("connecting to {side:?}: {e}"))
}

async fn compare(source: &Side, target: &Side) -> Result<(PgPool, PgPool, usize), String> {
    let (src, dst) = (connect(source).await?, connect(target).await?);
    let (expected, got) = tokio::try_join!(pg_move::checksums(&src), pg_move::checksums(&dst))
        .map_err(|e| format!("{e:#}"))?;
    let behind = pg_move::differing(&expected, &got);
    if !behind.is_empty() {
        return Err(format!("the target differs from the source in {behind:?}"));
    }
    Ok((src, dst, expected.len()))
}

impl MoveChecks for PgMoves {
    fn copying<'a>(&'a self, target: &'a Side, subscription: &'a str) -> Checked<'a, i64> {
        Box::pin(async move {
            let db = connect(target).await?;
            if !pg_move::subscribed(&db, subscription)
                .await
                .map_err(|e| format!("{e:#}"))?
            {
                return Err(format!("no subscription {subscription} yet"));
            }
            pg_move::copying(&db, subscription)
                .await
                .map_err(|e| format!("{e:#}"))
        })
    }

    fn sync<'a>(&'a self, source: &'a Side, target: &'a Side) -> Checked<'a, usize> {
        Box::pin(async move {
            let (src, dst, tables) = compare(source, target).await?;
            pg_move::copy_sequences(&src, &dst)
                .await
                .map_err(|e| format!("copying sequences: {e:#}"))?;
            Ok(tables)
        })
    }

    fn verify<'a>(&'a self, source: &'a Side, target: &'a Side) -> Checked<'a, usize> {
        Box::pin(async move { compare(source, target).await.map(|(_, _, n)| n) })
    }

    fn mark<'a>(&'a self, side: &'a Side) -> Checked<'a, ()> {
        Box::pin(async move {
            let db = connect(side).await?;
            let marked = sqlx::query("SELECT txid_current()").execute(&db).await;
            db.close().await;
            marked.map(drop).map_err(|e| format!("the fence mark: {e}"))
        })
    }
}
