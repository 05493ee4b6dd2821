//! Test harness shared by every service's integration tests.
//!
//! - [`pg`]: one Postgres cluster per test run (started by `./x test`, which exports
//!   `MRBILL_TEST_PG_URL`; a plain `cargo test` starts a private one per test process instead)
//!   and a fresh database per test cloned from a migrated template (~40 ms).
//! - [`http`]: a small typed HTTP client returning status + JSON.

pub mod http;
pub mod pg;

pub use http::{ApiClient, ApiResponse};
pub use pg::test_database;
