//! poc-service: the cell's accounts (it alone holds the cell's signing key) and, later, PoCs and
//! search.
//!
//! Layout: `routes/` (extract → call → map), `domain/` (validated values, no I/O), `store/` (SQL
//! over a pool or transaction), `session` (token issuing and rotation), `app` (wiring).

pub mod app;
pub mod bootstrap;
pub mod config;
pub mod domain;
pub mod mail;
pub mod openapi;
mod routes;
pub mod search;
mod session;
mod state;
mod store;
#[cfg(feature = "test-util")]
pub mod test_util;
pub mod usage;

pub use app::App;
pub use config::Config;

/// This service's migrations, embedded at compile time (one ledger in its own database).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
