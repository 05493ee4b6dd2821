//! A y-websocket client for tests: a WebSocket (tokio-tungstenite) and a yrs document that
//! answers sync steps the way `y-websocket` does, and collects the dojo's custom messages.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::encoding::read::Cursor;
use yrs::sync::{Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

/// Name of the shared text (as `wire_types::dojos::CODE_TEXT`).
const CODE_TEXT: &str = "code";
const MSG_CHAT: u8 = 100;
const MSG_SIGNAL: u8 = 101;
const MSG_ROOM: u8 = 102;

/// What a live socket received besides document sync.
#[derive(Debug, Default)]
pub struct Received {
    pub chat: Vec<Value>,
    pub signals: Vec<Value>,
    pub room: Vec<Value>,
    pub acks: Vec<Value>,
    /// Awareness messages received.
    pub awareness: usize,
    /// The sync step 2 replies received, as sent (the server's answers to our step 1).
    pub step2: Vec<Vec<u8>>,
    pub closed: Option<(u16, String)>,
}

/// Opens a socket that takes the dojo's custom messages (chat, signals, room events) unless
/// `url` says otherwise.
async fn open(
    url: &str,
    bearer: Option<&str>,
) -> Option<WebSocketStream<MaybeTlsStream<TcpStream>>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = if url.contains("custom=") {
        url.to_owned()
    } else {
        format!(
            "{url}{}custom=true",
            if url.contains('?') { '&' } else { '?' }
        )
    };
    let mut request = url.into_client_request().expect("request");
    if let Some(token) = bearer {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
    }
    let (socket, _) = tokio_tungstenite::connect_async(request).await.ok()?;
    Some(socket)
}

/// A y-websocket client: a socket and its yrs document.
pub struct Live {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub doc: Doc,
    pub got: Received,
    presence: std::collections::HashMap<yrs::ClientID, Value>,
}

impl Live {
    /// Connects and sends the client's sync step 1, as y-websocket does.
    pub async fn connect(url: &str, bearer: Option<&str>) -> Self {
        Self::try_connect(url, bearer)
            .await
            .expect("websocket handshake")
    }

    /// Like [`Live::connect`], `None` when the handshake fails (e.g. the service is down).
    pub async fn try_connect(url: &str, bearer: Option<&str>) -> Option<Self> {
        let socket = open(url, bearer).await?;
        let doc = Doc::new();
        let _ = doc.get_or_insert_text(CODE_TEXT);
        let mut live = Self {
            socket,
            doc,
            got: Received::default(),
            presence: std::collections::HashMap::new(),
        };
        let sv = live.doc.transact().state_vector();
        live.send(Message::Sync(SyncMessage::SyncStep1(sv))).await;
        Some(live)
    }

    /// Opens a new socket at `url` keeping the document, as y-websocket does after a close that
    /// asks it to come back: its sync step 1, and the server's step 1 answered with every local
    /// edit the server lacks. What was received before is forgotten.
    pub async fn reconnect(&mut self, url: &str, bearer: Option<&str>) {
        assert!(self.try_reconnect(url, bearer).await, "websocket handshake");
    }

    /// Like [`Live::reconnect`]; `false` (nothing changed) when the handshake fails.
    pub async fn try_reconnect(&mut self, url: &str, bearer: Option<&str>) -> bool {
        let Some(socket) = open(url, bearer).await else {
            return false;
        };
        self.socket = socket;
        self.got = Received::default();
        self.presence.clear();
        let sv = self.doc.transact().state_vector();
        self.send(Message::Sync(SyncMessage::SyncStep1(sv))).await;
        true
    }

    pub async fn send(&mut self, message: Message) {
        self.send_raw(message.encode_v1()).await;
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        let _ = self.socket.send(Ws::Binary(bytes.into())).await;
    }

    pub async fn send_json(&mut self, tag: u8, body: &Value) {
        self.send(Message::Custom(
            tag,
            serde_json::to_vec(body).expect("json"),
        ))
        .await;
    }

    /// A round trip through the room: sends a chat with a fresh marker and waits for its echo.
    /// The room handles one message at a time and each socket's messages in order, so whatever
    /// it was going to send this socket because of earlier messages (anyone's) has arrived by
    /// then — a test can assert that something did *not* arrive without guessing a delay.
    pub async fn round_trip(&mut self) {
        let marker = format!("round trip {}", uuid::Uuid::new_v4());
        self.send_json(MSG_CHAT, &serde_json::json!({ "text": marker }))
            .await;
        self.until("the round trip's echo", |l| {
            l.got.chat.iter().any(|c| c["text"] == marker.as_str())
        })
        .await;
        self.got.chat.retain(|c| c["text"] != marker.as_str());
    }

    /// Edits the code locally and sends the update.
    pub async fn insert(&mut self, at: u32, text: &str) {
        let update = {
            let code = self.doc.get_or_insert_text(CODE_TEXT);
            let before = self.doc.transact().state_vector();
            let mut txn = self.doc.transact_mut();
            code.insert(&mut txn, at, text);
            drop(txn);
            self.doc.transact().encode_state_as_update_v1(&before)
        };
        self.send(Message::Sync(SyncMessage::Update(update))).await;
    }

    /// Publishes this client's awareness state (presence, cursor) as JSON.
    pub async fn set_presence(&mut self, state: &Value) {
        let update = yrs::sync::AwarenessUpdate {
            clients: [(
                self.doc.client_id(),
                yrs::sync::awareness::AwarenessUpdateEntry {
                    clock: 1,
                    json: state.to_string().into(),
                },
            )]
            .into_iter()
            .collect(),
        };
        self.send(Message::Awareness(update)).await;
    }

    /// The awareness states this client has heard of, by client id (removed ones dropped).
    pub fn presence(&self) -> std::collections::HashMap<yrs::ClientID, Value> {
        self.presence.clone()
    }

    /// Deletes `len` characters at `at` locally and sends the update.
    pub async fn delete(&mut self, at: u32, len: u32) {
        let update = {
            let code = self.doc.get_or_insert_text(CODE_TEXT);
            let before = self.doc.transact().state_vector();
            let mut txn = self.doc.transact_mut();
            code.remove_range(&mut txn, at, len);
            drop(txn);
            self.doc.transact().encode_state_as_update_v1(&before)
        };
        self.send(Message::Sync(SyncMessage::Update(update))).await;
    }

    pub fn code(&self) -> String {
        let code = self.doc.get_or_insert_text(CODE_TEXT);
        code.get_string(&self.doc.transact())
    }

    /// Handles incoming frames for up to `wait`, or until the socket closes.
    pub async fn pump(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while self.got.closed.is_none() {
            let Ok(next) = tokio::time::timeout_at(deadline, self.socket.next()).await else {
                return;
            };
            match next {
                Some(Ok(Ws::Binary(bytes))) => self.handle(&bytes).await,
                Some(Ok(Ws::Close(frame))) => {
                    self.got.closed = Some(frame.map_or((1005, String::new()), |f| {
                        (f.code.into(), f.reason.to_string())
                    }));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    self.got.closed.get_or_insert((1006, String::new()));
                }
            }
        }
    }

    /// Pumps until `done` holds (at most 10 s); panics with `what` otherwise.
    pub async fn until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done(self) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; got {:?}",
                self.got
            );
            self.pump(Duration::from_millis(50)).await;
        }
    }

    /// Peers this client knows are in the room (from its welcome, joins and leaves).
    pub fn peers(&self) -> usize {
        let mut n: i64 = 0;
        for event in &self.got.room {
            match event["type"].as_str() {
                Some("welcome") => n += event["peers"].as_array().map_or(0, Vec::len) as i64,
                Some("joined") => n += 1,
                Some("left") => n -= 1,
                _ => {}
            }
        }
        usize::try_from(n).unwrap_or(0)
    }

    /// Waits until this client knows `n` other peers and has synced its document.
    pub async fn settled(&mut self, n: usize) {
        self.until("the room to settle", |l| l.peers() == n).await;
        self.pump(Duration::from_millis(100)).await;
    }

    /// Waits for the close frame and returns its code.
    pub async fn closed_with(&mut self) -> u16 {
        self.until("the socket to close", |l| l.got.closed.is_some())
            .await;
        self.got.closed.as_ref().map_or(0, |c| c.0)
    }

    async fn handle(&mut self, bytes: &[u8]) {
        let mut decoder = DecoderV1::new(Cursor::new(bytes));
        let messages: Vec<Message> = MessageReader::new(&mut decoder)
            .collect::<Result<_, _>>()
            .expect("the server sends valid messages");
        for message in messages {
            let is_step2 = matches!(message, Message::Sync(SyncMessage::SyncStep2(_)));
            match message {
                Message::Sync(SyncMessage::SyncStep1(sv)) => {
                    let update = self.doc.transact().encode_state_as_update_v1(&sv);
                    self.send(Message::Sync(SyncMessage::SyncStep2(update)))
                        .await;
                }
                Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
                    if is_step2 {
                        self.got.step2.push(update.clone());
                    }
                    let update = Update::decode_v1(&update).expect("update decodes");
                    self.doc
                        .transact_mut()
                        .apply_update(update)
                        .expect("update applies");
                }
                Message::Custom(tag, body) => {
                    let value: Value = serde_json::from_slice(&body).expect("custom JSON");
                    match tag {
                        MSG_CHAT => self.got.chat.push(value),
                        MSG_SIGNAL => self.got.signals.push(value),
                        MSG_ROOM => self.got.room.push(value),
                        _ => self.got.acks.push(value),
                    }
                }
                Message::Awareness(update) => {
                    self.got.awareness += 1;
                    for (client, entry) in update.clients {
                        match serde_json::from_str::<Value>(&entry.json) {
                            Ok(Value::Null) | Err(_) => self.presence.remove(&client),
                            Ok(state) => self.presence.insert(client, state),
                        };
                    }
                }
                _ => {}
            }
        }
    }

    /// The state vector the client holds (for "nothing missing" checks).
    pub fn state_vector(&self) -> StateVector {
        self.doc.transact().state_vector()
    }
}
