//! dojo-service: live dojos where a tenant's developers write code together, chat and talk.
//!
//! Layout: `routes` (REST: extract → call → map), `live` (the WebSocket: authenticate, admit,
//! pump frames), `room` (one task per loaded dojo owning its yrs document: persist, then
//! broadcast), `store` (SQL), `app` (wiring).

mod access;
pub mod app;
mod budget;
pub mod config;
mod domain;
mod live;
pub mod openapi;
mod room;
mod routes;
mod state;
mod store;
mod tickets;

pub use app::App;
pub use config::Config;

/// This service's migrations, embedded at compile time (one ledger in its own database).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
