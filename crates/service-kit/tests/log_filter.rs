//! The log subscriber skips a disabled event at its callsite, the way `tracing` means it to: a
//! `debug!`/`trace!` in a dependency's hot path (hyper-util's pool has four per proxied request)
//! must cost a cached check, not a dispatch to every layer to be filtered there. An absent
//! optional layer used to declare an interest in every callsite and so did exactly that. Runs
//! in a process of its own (nextest's default): it installs the global subscriber.

use service_kit::telemetry::{self, LogFormat};
use tracing::Level;

#[test]
#[allow(unsafe_code)]
fn a_disabled_event_is_skipped_at_its_callsite_and_an_enabled_one_is_not() {
    // SAFETY: no other thread of this process exists yet to read the environment.
    unsafe { std::env::set_var("RUST_LOG", "warn") };
    telemetry::init("log-filter-test", LogFormat::Json);
    assert!(!tracing::enabled!(
        target: "hyper_util::client::legacy::pool",
        Level::TRACE
    ));
    assert!(!tracing::enabled!(Level::DEBUG));
    assert!(!tracing::enabled!(Level::INFO));
    assert!(tracing::enabled!(Level::WARN));
}
