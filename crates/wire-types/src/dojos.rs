//! Dojo API DTOs (dojo-service `/v1/dojos`) and the custom messages of the live socket.
//!
//! The live socket `/v1/dojos/{id}/live` speaks the y-websocket protocol: a binary frame holds
//! one or more messages, each a varint tag and its payload. Tags 0–3 are y-sync's (sync step
//! 1/2 and update, awareness, auth, awareness query). The tags below carry JSON payloads
//! (length-prefixed, as y-sync's custom messages are). A socket receives them only when it asks:
//! `?custom=true` for chat, signals and room events, `?acks=true` for acks, so a standard
//! y-websocket client (which asks for neither) never gets a message it cannot decode.
//! The shared document holds the code in the text named [`CODE_TEXT`].

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{DojoId, UserId};

/// Name of the shared text that holds a dojo's code (`ydoc.getText("code")`).
pub const CODE_TEXT: &str = "code";

/// Chat: client → server [`ChatSend`]; server → every peer [`ChatMessage`] once stored.
pub const MSG_CHAT: u8 = 100;
/// Voice-call signaling: client → server [`SignalSend`]; server → the one target [`SignalFrom`].
pub const MSG_SIGNAL: u8 = 101;
/// Room events, server → client: [`RoomEvent`].
pub const MSG_ROOM: u8 = 102;
/// Server → sender, with `?acks=true`: [`Ack`] once the sender's updates are stored.
pub const MSG_ACK: u8 = 103;

/// WebSocket close codes of the live socket (besides the standard 1002 protocol error, 1009
/// message too big, 1011 server error and 1001 going away).
pub mod close {
    /// Missing, invalid, expired or revoked token.
    pub const UNAUTHENTICATED: u16 = 4001;
    /// Not allowed in this dojo (private and not a participant, removed by the host).
    pub const FORBIDDEN: u16 = 4003;
    /// No such dojo (or not visible to the caller).
    pub const NOT_FOUND: u16 = 4004;
    /// The room is at its participant limit.
    pub const ROOM_FULL: u16 = 4005;
    /// The dojo has ended.
    pub const ENDED: u16 = 4006;
    /// The document is at its size limit; the refused edit was not stored (nor acknowledged).
    pub const DOCUMENT_FULL: u16 = 4013;
    /// The connection sent more messages, or its user (or room) wrote more bytes, than the
    /// limits allow; the refused message was not stored.
    pub const RATE_LIMITED: u16 = 4029;
    /// The service is stopping (a restart, or the cell moving to another placement), or the
    /// room moved to another replica of the service: every acknowledged update is stored;
    /// reconnect (through the router) and resync.
    pub const SERVICE_RESTART: u16 = 1012;
}

/// Dojo lifecycle, derived from its schedule and end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum DojoStatus {
    /// Scheduled to start later.
    Upcoming,
    /// Open for editing.
    Active,
    /// Ended by its host or an admin; read-only history.
    Ended,
}

/// What a participant may do in the live document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum ParticipantRole {
    /// Created the dojo: edits, ends it, removes participants.
    Host,
    /// Edits the code.
    Editor,
    /// Receives everything; document updates are rejected.
    Observer,
}

/// `POST /v1/dojos`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[serde(deny_unknown_fields)]
pub struct CreateDojo {
    /// 1–120 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 120,
            pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
        )
    )]
    pub name: String,
    /// Up to 2,000 characters.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 2000,
            pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
        )
    )]
    pub description: String,
    /// Language of the code, e.g. `rust` (stored lower-case, 1–32 characters).
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 32,
            pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
        )
    )]
    pub language: String,
    /// 2–500 people at once (default 50).
    #[serde(default, deserialize_with = "crate::de::integral_u32")]
    #[cfg_attr(feature = "openapi", schema(minimum = 2, maximum = 500))]
    pub max_participants: Option<u32>,
    /// Invite-only: only people who joined with the join code see and enter it.
    #[serde(default)]
    pub private: bool,
    /// The code the document starts with (up to 50,000 characters).
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 50000,
            pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
        )
    )]
    pub initial_code: String,
    /// When the dojo starts (RFC 3339); absent or past = now.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub scheduled_start: Option<OffsetDateTime>,
}

/// A dojo as clients see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Dojo {
    pub id: DojoId,
    pub name: String,
    pub description: String,
    pub language: String,
    pub host_id: UserId,
    pub max_participants: u32,
    pub private: bool,
    pub status: DojoStatus,
    /// Shown to participants and admins only; others join public dojos without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_code: Option<String>,
    /// The caller's role, if they are a participant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub my_role: Option<ParticipantRole>,
    /// People connected to the live document right now.
    pub online: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub scheduled_start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub ended_at: Option<OffsetDateTime>,
}

/// Someone who joined a dojo.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Participant {
    pub user_id: UserId,
    pub role: ParticipantRole,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub joined_at: OffsetDateTime,
    /// Connected to the live document right now.
    pub online: bool,
}

/// `GET /v1/dojos/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DojoDetail {
    #[serde(flatten)]
    pub dojo: Dojo,
    pub participants: Vec<Participant>,
}

/// `GET /v1/dojos`: a page, soonest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct DojoPage {
    pub items: Vec<Dojo>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// `POST /v1/dojos/{id}/live-ticket`: a one-time ticket for the live socket, for clients that
/// cannot set an `Authorization` header on a WebSocket (browsers): open
/// `/v1/dojos/{id}/live?ticket=<ticket>` within 30 seconds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LiveTicket {
    pub ticket: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: OffsetDateTime,
}

/// `POST /v1/dojos/join`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JoinDojo {
    /// The code the host shares (case-insensitive).
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 32,
            pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
        )
    )]
    pub join_code: String,
    /// Join to watch only.
    #[serde(default)]
    pub observer: bool,
}

/// A chat message, as stored and as sent to every peer (`MSG_CHAT`, server → client).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct ChatMessage {
    /// Increasing within a dojo: the order everyone sees.
    pub seq: i64,
    pub user_id: UserId,
    pub text: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub sent_at: OffsetDateTime,
}

/// `GET /v1/dojos/{id}/chat`: oldest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct ChatPage {
    pub items: Vec<ChatMessage>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}

/// A stored version of the code (`GET /v1/dojos/{id}/snapshots`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CodeSnapshot {
    /// The document update sequence the snapshot covers.
    pub seq: i64,
    pub code: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub taken_at: OffsetDateTime,
}

/// `GET /v1/dojos/{id}/snapshots`: newest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SnapshotPage {
    pub items: Vec<CodeSnapshot>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<i64>,
}

/// `MSG_CHAT`, client → server.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSend {
    /// 1–4,000 characters.
    pub text: String,
}

/// A WebRTC signaling payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signal {
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    IceCandidate {
        candidate: serde_json::Value,
    },
    /// The sender hung up.
    Hangup,
}

/// `MSG_SIGNAL`, client → server: for exactly one peer of the room.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalSend {
    /// The target's peer id (from [`RoomEvent::Welcome`] / [`RoomEvent::Joined`]).
    pub to: u64,
    pub signal: Signal,
}

/// `MSG_SIGNAL`, server → the target peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignalFrom {
    pub from: u64,
    pub user_id: UserId,
    pub signal: Signal,
}

/// A connected peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Peer {
    /// Unique within the room while connected.
    pub peer: u64,
    pub user_id: UserId,
    pub role: ParticipantRole,
}

/// `MSG_ROOM`, server → client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RoomEvent {
    /// First message on a new socket: who you are and who is here.
    Welcome {
        you: Peer,
        peers: Vec<Peer>,
    },
    Joined {
        peer: Peer,
    },
    Left {
        peer: u64,
        user_id: UserId,
    },
    /// A message of yours was refused; the socket stays open.
    Rejected {
        reason: String,
    },
}

/// `MSG_ACK`, server → sender: all of its document updates up to `updates` (counted from 1
/// on this socket) are stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub updates: u64,
}

/// `GET /internal/v1/rooms` (operators): what one dojo-service instance holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomTotals {
    /// Rooms loaded in memory.
    pub rooms: u64,
    /// Live sockets across them.
    pub connections: u64,
}

crate::wire!(
    Dojo,
    DojoDetail,
    DojoPage,
    LiveTicket,
    ChatPage,
    SnapshotPage,
    RoomTotals
);
