//! dojo-service settings: the shared [`CommonConfig`], the cell's public key, poc-service's
//! internal API, and the live-room limits.

use std::time::Duration;

use service_kit::config::{CommonConfig, optional};
use service_kit::peer::PeerConfig;

/// A dojo's initial code must fit in a request (the cell contract's limit for dojo).
const MIN_BODY_LIMIT: usize = cell_model::contract::DOJO_BODY_LIMIT;

/// Limits of the live socket and rooms.
#[derive(Clone, Copy, Debug)]
pub struct LiveLimits {
    /// Largest WebSocket message accepted (bytes); larger closes the socket with 1009.
    pub max_message_bytes: usize,
    /// Sustained messages per second per connection, and the burst above it; more closes the
    /// socket with 4029.
    pub messages_per_sec: f64,
    pub message_burst: f64,
    /// Messages queued for a slow receiver before it is disconnected (it resyncs on reconnect).
    pub send_queue: usize,
    /// Document updates between two compactions of a dojo's update log into a snapshot.
    pub compact_every: u64,
    /// Bytes of updates that also trigger a compaction, so a room reloads from its snapshot
    /// and at most about this much log.
    pub compact_bytes: usize,
    /// Snapshots kept per dojo (the newest; older history is dropped at compaction).
    pub keep_snapshots: u32,
    /// Largest encoded document; an update that would pass it closes its socket with 4013.
    pub max_document_bytes: usize,
    /// Bytes of updates and chat each user may write per second in a room (across its
    /// sockets), and the burst; more closes the writing socket with 4029.
    pub user_write_bytes_per_sec: f64,
    pub user_write_burst: f64,
    /// The same for everyone in a room together.
    pub room_write_bytes_per_sec: f64,
    pub room_write_burst: f64,
    /// How long an empty room stays loaded before it is compacted and unloaded.
    pub idle_unload: Duration,
    /// How often live sockets re-check their token (revocation); at most 30 s.
    pub recheck_every: Duration,
    /// A revoked or disabled user's socket closes within this (at most 30 s, the contract's
    /// `service_kit::revocation::WINDOW`): each re-check trusts only answers younger than
    /// `revocation_window - recheck_every`.
    pub revocation_window: Duration,
    /// Sockets are pinged this often; one that sends nothing back for 2.5 intervals is
    /// closed (1001), so vanished clients stop holding room places.
    pub ping_every: Duration,
    /// Rooms with at least `coalesce_from` sockets send at most one batch per `coalesce`
    /// (gathering frames until `coalesce` after the previous batch went out), so each socket
    /// gets several updates per write: a large room's cost is one write per socket per batch,
    /// whatever the batch holds. A frame after a quiet spell goes at once; smaller rooms never
    /// wait.
    pub coalesce: Duration,
    pub coalesce_from: usize,
    /// How long a one-time live ticket (`POST /v1/dojos/{id}/live-ticket`) works.
    pub ticket_ttl: Duration,
}

impl Default for LiveLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 1024 * 1024,
            messages_per_sec: 60.0,
            message_burst: 240.0,
            send_queue: 1024,
            compact_every: 500,
            compact_bytes: 1024 * 1024,
            keep_snapshots: 50,
            max_document_bytes: 1024 * 1024,
            user_write_bytes_per_sec: 64.0 * 1024.0,
            user_write_burst: 1024.0 * 1024.0,
            room_write_bytes_per_sec: 256.0 * 1024.0,
            room_write_burst: 4.0 * 1024.0 * 1024.0,
            idle_unload: Duration::from_secs(30),
            recheck_every: Duration::from_secs(10),
            revocation_window: service_kit::revocation::WINDOW,
            ping_every: Duration::from_secs(30),
            coalesce: Duration::from_millis(2),
            coalesce_from: 64,
            ticket_ttl: Duration::from_secs(30),
        }
    }
}

/// Everything dojo-service needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub common: CommonConfig,
    /// The cell's public key and poc-service (revocation checks).
    pub peer: PeerConfig,
    pub live: LiveLimits,
}

impl Config {
    /// Reads the shared settings, the peer's ([`PeerConfig::from_env`]) and the
    /// `MRBILL_DOJO_*` limits.
    pub fn from_env() -> anyhow::Result<Self> {
        let mut common = CommonConfig::from_env()?;
        common.body_limit = common.body_limit.max(MIN_BODY_LIMIT);
        let d = LiveLimits::default();
        let secs = |name: &str, default: Duration| -> anyhow::Result<Duration> {
            Ok(optional::<u64>(name)?.map_or(default, Duration::from_secs))
        };
        Ok(Self {
            common,
            peer: PeerConfig::from_env()?,
            live: LiveLimits {
                max_message_bytes: optional("MRBILL_DOJO_MAX_MESSAGE_BYTES")?
                    .unwrap_or(d.max_message_bytes),
                messages_per_sec: optional("MRBILL_DOJO_MESSAGES_PER_SEC")?
                    .unwrap_or(d.messages_per_sec),
                message_burst: optional("MRBILL_DOJO_MESSAGE_BURST")?.unwrap_or(d.message_burst),
                send_queue: optional("MRBILL_DOJO_SEND_QUEUE")?.unwrap_or(d.send_queue),
                compact_every: optional("MRBILL_DOJO_COMPACT_EVERY")?.unwrap_or(d.compact_every),
                compact_bytes: d.compact_bytes,
                keep_snapshots: optional("MRBILL_DOJO_KEEP_SNAPSHOTS")?
                    .unwrap_or(d.keep_snapshots)
                    .max(1),
                max_document_bytes: optional("MRBILL_DOJO_MAX_DOCUMENT_BYTES")?
                    .unwrap_or(d.max_document_bytes),
                user_write_bytes_per_sec: d.user_write_bytes_per_sec,
                user_write_burst: d.user_write_burst,
                room_write_bytes_per_sec: d.room_write_bytes_per_sec,
                room_write_burst: d.room_write_burst,
                idle_unload: secs("MRBILL_DOJO_IDLE_UNLOAD_SECS", d.idle_unload)?,
                // Re-checks must fit the window a few times over.
                recheck_every: secs("MRBILL_DOJO_RECHECK_SECS", d.recheck_every)?
                    .min(d.revocation_window / 3),
                revocation_window: d.revocation_window,
                ping_every: secs("MRBILL_DOJO_PING_SECS", d.ping_every)?
                    .max(Duration::from_secs(1)),
                coalesce: optional::<u64>("MRBILL_DOJO_COALESCE_MS")?
                    .map_or(d.coalesce, Duration::from_millis)
                    .min(Duration::from_millis(20)),
                coalesce_from: optional("MRBILL_DOJO_COALESCE_FROM")?.unwrap_or(d.coalesce_from),
                ticket_ttl: d.ticket_ttl,
            },
        })
    }

    /// A config for tests against a given key and poc-service.
    pub fn for_tests(mut common: CommonConfig, peer: PeerConfig) -> Self {
        common.body_limit = common.body_limit.max(MIN_BODY_LIMIT);
        Self {
            common,
            peer,
            live: LiveLimits::default(),
        }
    }
}
