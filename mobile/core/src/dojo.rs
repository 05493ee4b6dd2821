//! Dojos: the list, creating and joining one, and [`DojoSession`] — a live room over the
//! y-websocket protocol with the same yrs as the server.
//!
//! A session's task owns the socket: it syncs the shared `code` text (step 1/2, updates),
//! delivers remote changes, chat, peers, the others' cursors ([`crate::presence`]) and call
//! signals to the app's [`DojoListener`], and reconnects with backoff after a dropped connection or a close that
//! asks the client to come back (1001, 1006, 1011–1013, 4029), resyncing the document: edits
//! made while away are sent then. Each connection takes a fresh one-time ticket (no token in
//! the URL). A revoked session (4001 "token revoked") ends the room and signs the app out.
//!
//! Every index (insert, delete, cursors) counts UTF-16 code units, as Kotlin's `String`,
//! Swift's `String.utf16` and the web's Yjs do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Ws;
use wire_types::DojoId;
use wire_types::dojos::{
    ChatMessage, ChatPage, CreateDojo, Dojo, DojoPage, LiveTicket, MSG_CHAT, MSG_ROOM, MSG_SIGNAL,
    Peer, RoomEvent, SignalFrom, close,
};
use yrs::encoding::read::Cursor;
use yrs::sync::{Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, OffsetKind, Options, ReadTxn, Text, Transact, Update};

use crate::presence::{CODE_TEXT, Mine, RemoteCursor, cursors};

use crate::client::MrBill;
use crate::error::CoreError;

/// Reconnect backoff: from this, doubling, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Where a session is.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum LiveState {
    Connecting,
    /// Connected and synced: edits reach the others now.
    Live,
    /// The connection dropped; trying again (edits are kept and sent once back).
    Reconnecting {
        attempt: u32,
    },
    /// Over: closed by the app, or by the server for good (`code` 4001 signed out, 4003
    /// removed, 4004 gone, 4005 full, 4006 ended).
    Closed {
        code: u16,
        reason: String,
    },
}

/// What a session tells the app. Called on the core's threads: hop to the UI thread.
#[uniffi::export(with_foreign)]
pub trait DojoListener: Send + Sync {
    /// The shared code after a remote change (or the first sync).
    fn on_code(&self, code: String);
    fn on_chat(&self, message: ChatMessage);
    /// Everyone else in the room now.
    fn on_peers(&self, peers: Vec<Peer>);
    /// The others' cursors, placed in this copy of the code (after their presence or the code
    /// changed).
    fn on_cursors(&self, cursors: Vec<RemoteCursor>);
    /// A call signal (`{"kind": "offer", "sdp": …}`, `answer`, `ice_candidate`, `hangup`)
    /// from peer `from`, for the platform's WebRTC stack.
    fn on_signal(&self, from: u64, signal_json: String);
    fn on_state(&self, state: LiveState);
}

#[uniffi::export(async_runtime = "tokio")]
impl MrBill {
    /// The dojos the user may see, newest first.
    pub async fn dojos(&self) -> Result<DojoPage, CoreError> {
        self.authed(Method::GET, "/v1/dojos", None).await
    }

    pub async fn create_dojo(&self, dojo: CreateDojo) -> Result<Dojo, CoreError> {
        let body = serde_json::to_value(&dojo).map_err(|e| CoreError::Server {
            status: 0,
            code: "unencodable_request".into(),
            detail: e.to_string(),
        })?;
        self.authed(Method::POST, "/v1/dojos", Some(body)).await
    }

    /// Joins a dojo by the code its host shared.
    pub async fn join_dojo(&self, join_code: String) -> Result<Dojo, CoreError> {
        let body = json!({ "join_code": join_code });
        self.authed(Method::POST, "/v1/dojos/join", Some(body))
            .await
    }

    /// The dojo's chat so far, oldest first.
    pub async fn chat_history(&self, dojo: DojoId) -> Result<ChatPage, CoreError> {
        self.authed(Method::GET, &format!("/v1/dojos/{dojo}/chat"), None)
            .await
    }

    /// Opens the dojo's room: the session connects in the background and reports to
    /// `listener`. Close it when the screen goes.
    pub async fn open_dojo(
        self: Arc<Self>,
        dojo: DojoId,
        listener: Arc<dyn DojoListener>,
    ) -> Result<Arc<DojoSession>, CoreError> {
        // Fails early (not found, forbidden, signed out) before any socket.
        let _: Dojo = self
            .authed(Method::GET, &format!("/v1/dojos/{dojo}"), None)
            .await?;
        let doc = Doc::with_options(Options {
            offset_kind: OffsetKind::Utf16,
            ..Options::default()
        });
        let _ = doc.get_or_insert_text(CODE_TEXT);
        let (outbox, queued) = mpsc::unbounded_channel();
        let mine = Arc::new(Mutex::new(Mine::default()));
        let session = Arc::new(DojoSession {
            doc: doc.clone(),
            outbox,
            mine: mine.clone(),
        });
        let room = Room {
            doc,
            mine,
            listener,
        };
        tokio::spawn(run(self, dojo, room, queued));
        Ok(session)
    }
}

/// What the app asks of its session's task.
enum Command {
    Send(Vec<u8>),
    /// A local edit to send: the others' cursors move with it.
    Edit(Vec<u8>),
    Close,
}

/// A live dojo room. Edits apply locally at once and reach the others through the task.
#[derive(uniffi::Object)]
pub struct DojoSession {
    doc: Doc,
    outbox: mpsc::UnboundedSender<Command>,
    mine: Arc<Mutex<Mine>>,
}

impl std::fmt::Debug for DojoSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DojoSession").finish_non_exhaustive()
    }
}

#[uniffi::export]
impl DojoSession {
    /// The shared code as this client has it.
    pub fn code(&self) -> String {
        let text = self.doc.get_or_insert_text(CODE_TEXT);
        text.get_string(&self.doc.transact())
    }

    /// Inserts `text` at `index` (UTF-16 code units, clamped to the end).
    pub fn insert(&self, index: u32, text: String) {
        self.edit(|code, txn| {
            let at = index.min(code.len(txn));
            code.insert(txn, at, &text);
        });
    }

    /// Deletes `len` UTF-16 code units from `index` (clamped to the text).
    pub fn delete(&self, index: u32, len: u32) {
        self.edit(|code, txn| {
            let end = code.len(txn);
            let at = index.min(end);
            code.remove_range(txn, at, len.min(end - at));
        });
    }

    pub fn send_chat(&self, text: String) {
        let body = json!({ "text": text }).to_string().into_bytes();
        self.queue(Message::Custom(MSG_CHAT, body));
    }

    /// Who this user is to the others (their name by the cursor, in this colour, `#rrggbb`).
    pub fn set_user(&self, name: String, color: String) {
        self.presence(|mine, _| mine.set_user(name, color));
    }

    /// Where this user's selection is (`anchor` = `head` for a plain caret), in UTF-16 code
    /// units; the others see it move with the text.
    pub fn set_cursor(&self, anchor: u32, head: u32) {
        self.presence(|mine, doc| mine.set_cursor(doc, anchor, head));
    }

    /// Hides this user's cursor (the editor lost focus).
    pub fn clear_cursor(&self) {
        self.presence(|mine, _| mine.clear_cursor());
    }

    /// Sends a call signal (`{"kind": "offer", "sdp": …}` and the like) to peer `to`.
    pub fn send_signal(&self, to: u64, signal_json: String) -> Result<(), CoreError> {
        let signal: wire_types::dojos::Signal =
            serde_json::from_str(&signal_json).map_err(|e| CoreError::Validation {
                fields: vec![wire_types::FieldError::new(
                    "signal",
                    "invalid_signal",
                    e.to_string(),
                )],
            })?;
        let body = json!({ "to": to, "signal": signal })
            .to_string()
            .into_bytes();
        self.queue(Message::Custom(MSG_SIGNAL, body));
        Ok(())
    }

    /// Leaves the room (normal close); the listener hears `Closed`. (Not `close`: the
    /// bindings' objects are `AutoCloseable`, whose `close` frees the object.)
    pub fn leave(&self) {
        let _ = self.outbox.send(Command::Close);
    }
}

impl DojoSession {
    fn edit(&self, change: impl FnOnce(&yrs::TextRef, &mut yrs::TransactionMut<'_>)) {
        let code = self.doc.get_or_insert_text(CODE_TEXT);
        let before = self.doc.transact().state_vector();
        {
            let mut txn = self.doc.transact_mut();
            change(&code, &mut txn);
        }
        let update = self.doc.transact().encode_state_as_update_v1(&before);
        let message = Message::Sync(SyncMessage::Update(update));
        let _ = self.outbox.send(Command::Edit(message.encode_v1()));
    }

    fn presence(&self, change: impl FnOnce(&mut Mine, &Doc)) {
        let mut mine = self.mine.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut mine, &self.doc);
        if let Some(message) = mine.publish(&self.doc) {
            self.queue(message);
        }
    }

    fn queue(&self, message: Message) {
        let _ = self.outbox.send(Command::Send(message.encode_v1()));
    }
}

/// How a connection ended.
enum Ended {
    /// For good: the app closed it, or the server refused us.
    Closed(u16, String),
    /// Dropped, or the server asked us to come back.
    Again,
}

/// What a session's task works on: the document, this client's presence, the app's listener.
struct Room {
    doc: Doc,
    mine: Arc<Mutex<Mine>>,
    listener: Arc<dyn DojoListener>,
}

/// The session's task: connect, serve, reconnect with backoff until closed for good.
async fn run(
    core: Arc<MrBill>,
    dojo: DojoId,
    room: Room,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let listener = &room.listener;
    let mut attempt = 0u32;
    let mut peers = HashMap::new();
    listener.on_state(LiveState::Connecting);
    loop {
        let ended = match connect(&core, &dojo).await {
            Ok(socket) => {
                attempt = 0;
                serve(socket, &room, &mut commands, &mut peers).await
            }
            Err(CoreError::SignedOut) => Ended::Closed(close::UNAUTHENTICATED, "signed out".into()),
            Err(CoreError::NotFound) => Ended::Closed(close::NOT_FOUND, "no such dojo".into()),
            Err(_) => Ended::Again,
        };
        match ended {
            Ended::Closed(code, reason) => {
                if code == close::UNAUTHENTICATED {
                    // Revoked (password changed elsewhere, account disabled): signed out.
                    core.forget_session();
                }
                listener.on_state(LiveState::Closed { code, reason });
                return;
            }
            Ended::Again => {
                attempt += 1;
                listener.on_state(LiveState::Reconnecting { attempt });
                let wait = FIRST_BACKOFF
                    .saturating_mul(1 << attempt.min(6))
                    .min(MAX_BACKOFF);
                // The app may close while we wait.
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    command = commands.recv() => match command {
                        Some(Command::Close) | None => {
                            listener.on_state(LiveState::Closed { code: 1000, reason: "closed".into() });
                            return;
                        }
                        // Edits made while away are in the document; resync sends them.
                        Some(Command::Send(_) | Command::Edit(_)) => {}
                    },
                }
            }
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A socket to the dojo's room with a fresh one-time ticket.
async fn connect(core: &MrBill, dojo: &DojoId) -> Result<Socket, CoreError> {
    let ticket: LiveTicket = core
        .authed(Method::POST, &format!("/v1/dojos/{dojo}/live-ticket"), None)
        .await?;
    let endpoint = core.company().ok_or(CoreError::NoCompany)?.endpoint;
    let ws = endpoint
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    let url = format!(
        "{ws}/v1/dojos/{dojo}/live?ticket={}&custom=true",
        ticket.ticket
    );
    let (socket, _) =
        tokio_tungstenite::connect_async(url)
            .await
            .map_err(|_| CoreError::Network {
                reason: "the dojo's live connection failed".into(),
            })?;
    Ok(socket)
}

/// One connection: sync, then relay both ways until it ends.
async fn serve(
    mut socket: Socket,
    room: &Room,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    peers: &mut HashMap<u64, Peer>,
) -> Ended {
    let (doc, listener) = (&room.doc, &*room.listener);
    let step1 = Message::Sync(SyncMessage::SyncStep1(doc.transact().state_vector()));
    // The others dropped this client's presence with the old connection: announce it again.
    let again = room
        .mine
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .publish_again(doc);
    for message in std::iter::once(step1).chain(again) {
        if socket
            .send(Ws::Binary(message.encode_v1().into()))
            .await
            .is_err()
        {
            return Ended::Again;
        }
    }
    let mut presence: HashMap<yrs::ClientID, String> = HashMap::new();
    let mut live = false;
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Send(bytes)) => {
                    if socket.send(Ws::Binary(bytes.into())).await.is_err() {
                        return Ended::Again;
                    }
                }
                Some(Command::Edit(bytes)) => {
                    listener.on_cursors(cursors(doc, &presence));
                    if socket.send(Ws::Binary(bytes.into())).await.is_err() {
                        return Ended::Again;
                    }
                }
                Some(Command::Close) | None => {
                    let _ = socket.close(None).await;
                    return Ended::Closed(1000, "closed".into());
                }
            },
            frame = socket.next() => match frame {
                Some(Ok(Ws::Binary(bytes))) => {
                    let mut replies = Vec::new();
                    let (changed, moved) = handle(&bytes, doc, listener, peers, &mut presence, &mut replies);
                    for reply in replies {
                        if socket.send(Ws::Binary(reply.into())).await.is_err() {
                            return Ended::Again;
                        }
                    }
                    if changed {
                        let code = doc.get_or_insert_text(CODE_TEXT);
                        listener.on_code(code.get_string(&doc.transact()));
                    }
                    if changed || moved {
                        listener.on_cursors(cursors(doc, &presence));
                    }
                    if !live {
                        live = true;
                        listener.on_state(LiveState::Live);
                    }
                }
                Some(Ok(Ws::Close(frame))) => {
                    let (code, reason) = frame.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    });
                    return ended_by(code, reason);
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ended::Again,
            },
        }
    }
}

/// What a close from the server means for the session.
fn ended_by(code: u16, reason: String) -> Ended {
    match code {
        // Going away, abnormal, server error, restart, try again later, too fast.
        1001 | 1006 | 1011 | 1012 | 1013 | close::RATE_LIMITED => Ended::Again,
        // An expired token: a fresh ticket (after a refresh) brings the user back.
        close::UNAUTHENTICATED if reason.contains("expired") => Ended::Again,
        _ => Ended::Closed(code, reason),
    }
}

/// Applies one frame; replies to send back go to `replies`. Whether the code changed, and
/// whether someone's presence did.
fn handle(
    bytes: &[u8],
    doc: &Doc,
    listener: &dyn DojoListener,
    peers: &mut HashMap<u64, Peer>,
    presence: &mut HashMap<yrs::ClientID, String>,
    replies: &mut Vec<Vec<u8>>,
) -> (bool, bool) {
    let mut decoder = DecoderV1::new(Cursor::new(bytes));
    let Ok(messages) = MessageReader::new(&mut decoder).collect::<Result<Vec<_>, _>>() else {
        tracing::warn!("a dojo frame did not decode");
        return (false, false);
    };
    let (mut changed, mut moved) = (false, false);
    for message in messages {
        match message {
            Message::Sync(SyncMessage::SyncStep1(sv)) => {
                let update = doc.transact().encode_state_as_update_v1(&sv);
                replies.push(Message::Sync(SyncMessage::SyncStep2(update)).encode_v1());
            }
            Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
                if let Ok(update) = Update::decode_v1(&update) {
                    changed |= doc.transact_mut().apply_update(update).is_ok();
                }
            }
            Message::Custom(MSG_CHAT, body) => {
                if let Ok(chat) = serde_json::from_slice::<ChatMessage>(&body) {
                    listener.on_chat(chat);
                }
            }
            Message::Custom(MSG_SIGNAL, body) => {
                if let Ok(signal) = serde_json::from_slice::<SignalFrom>(&body) {
                    let json = serde_json::to_string(&signal.signal).unwrap_or_default();
                    listener.on_signal(signal.from, json);
                }
            }
            Message::Custom(MSG_ROOM, body) => {
                match serde_json::from_slice::<RoomEvent>(&body) {
                    Ok(RoomEvent::Welcome { peers: here, .. }) => {
                        peers.clear();
                        peers.extend(here.into_iter().map(|p| (p.peer, p)));
                    }
                    Ok(RoomEvent::Joined { peer }) => {
                        peers.insert(peer.peer, peer);
                    }
                    Ok(RoomEvent::Left { peer, .. }) => {
                        peers.remove(&peer);
                    }
                    Ok(RoomEvent::Rejected { reason }) => {
                        tracing::info!(%reason, "the dojo refused a message");
                        continue;
                    }
                    Err(_) => continue,
                }
                let mut list: Vec<Peer> = peers.values().cloned().collect();
                list.sort_by_key(|p| p.peer);
                listener.on_peers(list);
            }
            Message::Awareness(update) => {
                for (client, entry) in update.clients {
                    if entry.json.as_ref() == "null" {
                        presence.remove(&client);
                    } else {
                        presence.insert(client, entry.json.to_string());
                    }
                    moved = true;
                }
            }
            _ => {}
        }
    }
    (changed, moved)
}
