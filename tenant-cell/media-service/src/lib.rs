//! media-service: dashboard figures, reports (PDF, CSV, JSON) and the yearly video.
//!
//! Layout: `routes` (REST: extract → call → map), `jobs` (workers over the Postgres queue),
//! `render` (Typst reports and cards, ffmpeg), `poc` (poc-service's internal API, the only
//! source of PoC data), `artifacts` (object storage and signed links), `store` (SQL), `app`
//! (wiring).

pub mod app;
mod artifacts;
pub mod config;
mod domain;
mod jobs;
pub mod openapi;
mod poc;
pub mod render;
mod routes;
mod state;
/// The job queue's SQL (public for the crate's integration tests of its claim rules).
pub mod store;

pub use app::App;
pub use config::Config;

/// This service's migrations, embedded at compile time (one ledger in its own database).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
