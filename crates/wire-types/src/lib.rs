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
pub mod routing;
pub mod rules;

pub use error::{ErrorBody, ErrorCode, FieldError};

/// What may be serialised to a client: the answer types of this crate (marked with `wire!`
/// next to their definitions) and lists and options of them. `service_kit`'s `ApiJson` answers
/// only `Wire` values, so a service's own type (a database row, ad-hoc JSON) cannot reach a
/// client by accident.
pub trait Wire: serde::Serialize {}
impl<T: Wire> Wire for Vec<T> {}
impl<T: Wire> Wire for Option<T> {}

/// Marks types as part of the wire contract.
macro_rules! wire {
    ($($ty:ty),* $(,)?) => { $(impl $crate::Wire for $ty {})* };
}
pub(crate) use wire;

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
