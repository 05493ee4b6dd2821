//! Plumbing shared by every cell service (poc, dojo, media).
//!
//! A service's `main` is: [`config`] → [`telemetry::init`] → its own `App::build` (which uses
//! [`http::service_router`] and [`serve::Server`]) → `run_until_stopped`. Handlers return
//! [`ApiError`] and take input only through the extractors in [`extract`], so every failure a
//! client can cause renders as the shared error body with a 4xx status.

pub mod auth;
pub mod cell;
pub mod cell_secrets;
pub mod cli;
pub mod config;
pub mod cursor;
pub mod db;
pub mod error;
pub mod extract;
pub mod http;
pub mod jwt;
pub mod openapi;
pub mod peer;
pub mod revocation;
pub mod secrets;
pub mod serve;
pub mod state;
pub mod telemetry;

pub use error::ApiError;
