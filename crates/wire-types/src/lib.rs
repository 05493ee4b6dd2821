//! Wire types: the only types serialized to clients.
//!
//! **Invariant:** every HTTP API renders errors as [`ErrorBody`] with a code from [`ErrorCode`];
//! codes are stable snake_case strings that clients may match on, so existing ones are never
//! renamed.

pub mod account;
pub mod admin;
pub mod auth;
mod de;
pub mod dojos;
mod error;
mod ids;
pub mod media;
pub mod pocs;
pub mod rules;

pub use error::{ErrorBody, ErrorCode, FieldError};

#[cfg(feature = "uniffi")]
uniffi::setup_scaffolding!();

// Plain uuids (media jobs) cross as their text.
#[cfg(feature = "uniffi")]
use uuid::Uuid;
#[cfg(feature = "uniffi")]
uniffi::custom_type!(Uuid, String, {
    remote,
    lower: |id| id.to_string(),
    try_lift: |s| Ok(s.parse()?),
});

// Times cross to the apps as milliseconds since the Unix epoch.
#[cfg(feature = "uniffi")]
use time::OffsetDateTime;
#[cfg(feature = "uniffi")]
uniffi::custom_type!(OffsetDateTime, i64, {
    remote,
    lower: |t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
    try_lift: |ms| Ok(OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)?),
});
pub use ids::{DojoId, InviteId, PocId, UserId};

/// Header the router sets to the id of the cell it routes to.
pub const CELL_ID_HEADER: &str = "x-cell-id";
