//! The client of Mr. Bill's native apps, written once: the Android (Kotlin) and iOS (Swift)
//! apps call it through UniFFI and hold no client logic of their own.
//!
//! ```text
//! app (Compose / SwiftUI) → view model → MrBill (this crate) ─HTTP─► router ─► the tenant's cell
//!                                          └─ TokenStore (Keychain / Keystore, the app's)
//! ```
//!
//! - [`MrBill::resolve`] finds the company (slug or work email) through the router and keeps
//!   its endpoint; a cell that moved is resolved again once and the request retried.
//! - The session: [`MrBill::login`], [`MrBill::register`], [`MrBill::logout`] (and account
//!   self-service: sign-up with a mailed code, forgot/reset/change password, profile); the access
//!   token is refreshed before it expires, one refresh at a time (concurrent calls wait for
//!   it); a reused or revoked refresh token signs out. Tokens leave the core only through the
//!   app's [`TokenStore`]; nothing here logs them.
//! - PoCs, the dashboard, dojos, reports and yearly videos (started, watched until done, with
//!   absolute signed links): the services' own DTOs (`wire-types`) as records.
//! - [`DojoSession`]: a live dojo room over y-websocket with the server's yrs: the shared code,
//!   chat, peers, the others' cursors (web editors' awareness shape), call signals; reconnects
//!   and resyncs by itself.
//! - Errors: one [`CoreError`], mapped from the API's stable codes.
//!
//! Async functions run on one tokio runtime inside (UniFFI's `tokio` support); Kotlin sees
//! `suspend fun`s, Swift `async` functions.

mod account;
mod client;
mod dojo;
mod error;
mod media;
mod presence;
mod session;

pub use client::{Company, MrBill, PocQuery};
pub use dojo::{DojoListener, DojoSession, LiveState};
pub use error::CoreError;
pub use media::JobListener;
pub use presence::RemoteCursor;
pub use session::{MemoryTokenStore, StoredSession, TokenStore};

uniffi::setup_scaffolding!();
