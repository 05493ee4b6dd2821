//! A cell with poc-service and dojo-service, and a y-websocket client.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::PgPool;
use test_support::ApiClient;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wire_types::dojos::{CODE_TEXT, MSG_CHAT, MSG_ROOM, MSG_SIGNAL};
use yrs::encoding::read::Cursor;
use yrs::sync::{Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

pub const PASSWORD: &str = "correct horse battery staple";

/// poc-service + dojo-service of one cell.
pub struct Cell {
    pub poc: ApiClient,
    pub dojo: ApiClient,
    pub dojo_addr: std::net::SocketAddr,
    pub dojo_url: String,
    pub poc_pool: PgPool,
    dojo_config: dojo_service::Config,
    _stops: Vec<oneshot::Sender<()>>,
}

/// A signed-in user of the cell.
#[derive(Clone)]
pub struct User {
    pub id: String,
    pub token: String,
    /// dojo-service with this user's token.
    pub dojo: ApiClient,
}

impl Cell {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut dojo_service::Config)) -> Self {
        let cell = format!("c-dojo-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let poc_url = test_support::test_database(&poc_service::MIGRATOR)
            .await
            .expect("poc database");
        let poc_config =
            poc_service::Config::for_tests(&cell, "acme", &poc_url).expect("poc config");
        let poc_pool = PgPool::connect(&poc_url).await.expect("poc pool");
        let poc_app = poc_service::App::build_with_pool(poc_config.clone(), poc_pool.clone())
            .await
            .expect("poc builds");
        let poc = ApiClient::new(format!("http://{}", poc_app.public_addr()));
        let poc_internal = format!("http://{}", poc_app.internal_addr());
        let (stop_poc, poc_stopped) = oneshot::channel::<()>();
        tokio::spawn(poc_app.run_until_stopped(async move {
            let _ = poc_stopped.await;
        }));

        let dojo_url = test_support::test_database(&dojo_service::MIGRATOR)
            .await
            .expect("dojo database");
        let public_key = service_kit::jwt::public_pem_from_private(&poc_config.jwt_private_key)
            .expect("public key");
        let mut dojo_config = dojo_service::Config::for_tests(
            service_kit::config::CommonConfig::for_tests(&cell, "acme", &dojo_url),
            &poc_config.jwt_kid,
            &public_key,
            poc_config.service_token.clone(),
            &poc_internal,
        );
        tweak(&mut dojo_config);
        let mut cell = Self {
            poc,
            dojo: ApiClient::new("http://unused"),
            dojo_addr: ([127, 0, 0, 1], 0).into(),
            dojo_url,
            poc_pool,
            dojo_config,
            _stops: vec![stop_poc],
        };
        cell.start_dojo().await;
        cell
    }

    /// (Re)starts dojo-service on the same database; a previous instance is stopped first.
    pub async fn start_dojo(&mut self) {
        if self._stops.len() > 1 {
            self._stops.truncate(1);
            // Give the old instance a moment to close its sockets.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Each instance has its own pool (a stopped instance closes its pool).
        let pool = PgPool::connect(&self.dojo_url).await.expect("dojo pool");
        let app = dojo_service::App::build_with_pool(self.dojo_config.clone(), pool)
            .await
            .expect("dojo builds");
        self.dojo_addr = app.public_addr();
        self.dojo = ApiClient::new(format!("http://{}", self.dojo_addr));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        self._stops.push(stop);
    }

    /// The tenant's first admin.
    pub async fn admin(&self) -> User {
        let email = "admin@acme.test";
        let invite = poc_service::bootstrap::bootstrap_admin(&self.poc_pool, email, None)
            .await
            .expect("bootstrap")
            .invite_token;
        let body = self
            .poc
            .post(
                "/v1/auth/register",
                &json!({ "email": email, "password": PASSWORD, "invite_token": invite }),
            )
            .await
            .assert_status(201)
            .clone();
        self.user(&body)
    }

    /// A member invited by `admin`.
    pub async fn member(&self, admin: &User, email: &str) -> User {
        let invite = self
            .poc
            .with_token(&admin.token)
            .post("/v1/invites", &json!({ "email": email, "role": "member" }))
            .await
            .assert_status(201)["token"]
            .as_str()
            .expect("invite token")
            .to_owned();
        let body = self
            .poc
            .post(
                "/v1/auth/register",
                &json!({ "email": email, "password": PASSWORD, "invite_token": invite }),
            )
            .await
            .assert_status(201)
            .clone();
        self.user(&body)
    }

    fn user(&self, tokens: &Value) -> User {
        let token = tokens["access_token"].as_str().expect("token").to_owned();
        User {
            id: tokens["user"]["id"].as_str().expect("id").to_owned(),
            dojo: self.dojo.with_token(&token),
            token,
        }
    }

    /// A user's client against the current dojo-service instance.
    pub fn as_user(&self, user: &User) -> ApiClient {
        self.dojo.with_token(&user.token)
    }

    /// Creates a dojo as `host`; returns its JSON.
    pub async fn create_dojo(&self, host: &User, extra: Value) -> Value {
        let mut body =
            json!({ "name": "Kata", "language": "rust", "initial_code": "fn main() {}\n" });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.as_user(host)
            .post("/v1/dojos", &body)
            .await
            .assert_status(201)
            .clone()
    }

    /// A live connection to `dojo` as `user` (`query` is appended, e.g. `&observer=true`).
    pub async fn connect(&self, dojo: &str, user: &User, query: &str) -> Live {
        Live::connect(
            &format!(
                "ws://{}/v1/dojos/{dojo}/live?token={}{query}",
                self.dojo_addr, user.token
            ),
            None,
        )
        .await
    }
}

/// What a live socket received besides document sync.
#[derive(Debug, Default)]
pub struct Received {
    pub chat: Vec<Value>,
    pub signals: Vec<Value>,
    pub room: Vec<Value>,
    pub acks: Vec<Value>,
    pub closed: Option<(u16, String)>,
}

/// A y-websocket client: a socket and its yrs document.
pub struct Live {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub doc: Doc,
    pub got: Received,
}

impl Live {
    /// Connects and sends the client's sync step 1, as y-websocket does.
    pub async fn connect(url: &str, bearer: Option<&str>) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().expect("request");
        if let Some(token) = bearer {
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
        }
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket handshake");
        let doc = Doc::new();
        let _ = doc.get_or_insert_text(CODE_TEXT);
        let mut live = Self {
            socket,
            doc,
            got: Received::default(),
        };
        let sv = live.doc.transact().state_vector();
        live.send(Message::Sync(SyncMessage::SyncStep1(sv))).await;
        live
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
            match message {
                Message::Sync(SyncMessage::SyncStep1(sv)) => {
                    let update = self.doc.transact().encode_state_as_update_v1(&sv);
                    self.send(Message::Sync(SyncMessage::SyncStep2(update)))
                        .await;
                }
                Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
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
                _ => {}
            }
        }
    }

    /// The state vector the client holds (for "nothing missing" checks).
    pub fn state_vector(&self) -> StateVector {
        self.doc.transact().state_vector()
    }
}
