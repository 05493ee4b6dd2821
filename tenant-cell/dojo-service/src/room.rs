//! Rooms: one task per loaded dojo, owning its yrs document and awareness.
//!
//! ```text
//! socket ─frame─► room task: drain a batch of commands
//!                   ├─ apply updates to the doc, chat → pending rows
//!                   ├─ store::append (one transaction)      ← persist first
//!                   └─ then send: updates to the others, chat to all, acks, replies
//! ```
//!
//! **Invariant:** nothing that carries document content or chat leaves the room before the
//! batch it belongs to is stored. If storing fails, the batch's messages are never sent, every
//! socket is closed (1011) and the room is unloaded; clients reconnect and resync, and the
//! document is reloaded from what was stored.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use wire_types::UserId;
use wire_types::dojos::{
    Ack, CODE_TEXT, ChatMessage, ChatSend, MSG_ACK, MSG_CHAT, MSG_ROOM, MSG_SIGNAL,
    ParticipantRole, Peer, RoomEvent, SignalFrom, SignalSend,
};
use yrs::block::ClientID;
use yrs::encoding::read::Cursor;
use yrs::sync::{Awareness, AwarenessUpdate, Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

use crate::config::LiveLimits;
use crate::store;

/// What a socket hears from its room.
#[derive(Debug)]
pub enum Outbound {
    /// Binary frames, in order.
    Frames(Vec<Bytes>),
    Close(u16, &'static str),
    /// A WebSocket ping (the socket's own liveness check; rooms never send it).
    Ping,
}

/// Why a socket may not enter.
#[derive(Debug)]
pub enum Refused {
    Full,
    /// The room could not be loaded (database trouble).
    Unavailable,
}

/// What a socket asked for beyond y-sync and awareness. A standard y-websocket client asks
/// for neither and so never receives a message it cannot decode.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extensions {
    /// `?acks=true`: `MSG_ACK` once its updates are stored.
    pub acks: bool,
    /// `?custom=true`: chat, signals and room events (`MSG_CHAT`, `MSG_SIGNAL`, `MSG_ROOM`).
    pub custom: bool,
}

/// A socket admitted to a room.
pub struct Admitted {
    pub peer: u64,
    pub room: RoomHandle,
    pub outbound: mpsc::Receiver<Outbound>,
}

enum Command {
    Join {
        user: Uuid,
        role: ParticipantRole,
        wants: Extensions,
        reply: oneshot::Sender<Result<(u64, mpsc::Receiver<Outbound>), Refused>>,
    },
    Frame {
        peer: u64,
        data: Bytes,
        received: Instant,
    },
    Leave {
        peer: u64,
    },
    /// Disconnect every socket of `user` (removed by the host).
    Kick {
        user: Uuid,
    },
    /// The dojo ended: disconnect everyone and unload.
    End,
}

/// A loaded room, as sockets and handlers reach it.
#[derive(Clone)]
pub struct RoomHandle {
    commands: mpsc::Sender<Command>,
    online: Arc<Presence>,
    generation: u64,
}

/// Who is connected, kept by the room task for the REST API.
#[derive(Default)]
struct Presence {
    connections: AtomicU32,
    users: Mutex<HashMap<Uuid, u32>>,
}

impl RoomHandle {
    /// Hands a frame from `peer` to the room (waits when the room is busy: backpressure).
    pub async fn frame(&self, peer: u64, data: Bytes) -> bool {
        self.commands
            .send(Command::Frame {
                peer,
                data,
                received: Instant::now(),
            })
            .await
            .is_ok()
    }

    pub async fn leave(&self, peer: u64) {
        let _ = self.commands.send(Command::Leave { peer }).await;
    }
}

/// The rooms loaded in this process.
pub struct Rooms {
    pool: PgPool,
    limits: LiveLimits,
    loaded: tokio::sync::Mutex<HashMap<Uuid, RoomHandle>>,
    generations: std::sync::atomic::AtomicU64,
}

impl Rooms {
    pub fn new(pool: PgPool, limits: LiveLimits) -> Self {
        Self {
            pool,
            limits,
            loaded: tokio::sync::Mutex::new(HashMap::new()),
            generations: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Enters `dojo`'s room (loading it if needed) as `user` with `role`.
    pub async fn join(
        self: &Arc<Self>,
        dojo: Uuid,
        max_participants: u32,
        user: Uuid,
        role: ParticipantRole,
        wants: Extensions,
    ) -> Result<Admitted, Refused> {
        // A room that is unloading refuses the command; the second try loads it afresh.
        for _ in 0..2 {
            let room = self.open(dojo, max_participants).await?;
            let (reply, answer) = oneshot::channel();
            let sent = room
                .commands
                .send(Command::Join {
                    user,
                    role,
                    wants,
                    reply,
                })
                .await;
            if sent.is_err() {
                self.forget(dojo, room.generation).await;
                continue;
            }
            match answer.await {
                Ok(Ok((peer, outbound))) => {
                    return Ok(Admitted {
                        peer,
                        room,
                        outbound,
                    });
                }
                Ok(Err(refused)) => return Err(refused),
                Err(_) => self.forget(dojo, room.generation).await,
            }
        }
        Err(Refused::Unavailable)
    }

    async fn open(
        self: &Arc<Self>,
        dojo: Uuid,
        max_participants: u32,
    ) -> Result<RoomHandle, Refused> {
        let mut loaded = self.loaded.lock().await;
        if let Some(room) = loaded.get(&dojo)
            && !room.commands.is_closed()
        {
            return Ok(room.clone());
        }
        let state = RoomState::load(&self.pool, dojo, max_participants, self.limits)
            .await
            .map_err(|e| {
                tracing::error!(%dojo, error = %e, "room could not be loaded");
                Refused::Unavailable
            })?;
        let (commands, rx) = mpsc::channel(4096);
        let room = RoomHandle {
            commands,
            online: Arc::new(Presence::default()),
            generation: self
                .generations
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        loaded.insert(dojo, room.clone());
        metrics::gauge!("dojo_rooms_loaded").set(loaded.len() as f64);
        let rooms = self.clone();
        let presence = room.online.clone();
        let generation = room.generation;
        tokio::spawn(async move {
            state.run(rx, presence).await;
            rooms.forget(dojo, generation).await;
        });
        Ok(room)
    }

    async fn forget(&self, dojo: Uuid, generation: u64) {
        let mut loaded = self.loaded.lock().await;
        if loaded
            .get(&dojo)
            .is_some_and(|r| r.generation == generation)
        {
            loaded.remove(&dojo);
        }
        metrics::gauge!("dojo_rooms_loaded").set(loaded.len() as f64);
    }

    async fn loaded(&self, dojo: Uuid) -> Option<RoomHandle> {
        self.loaded.lock().await.get(&dojo).cloned()
    }

    /// Rooms loaded and connections open in this instance.
    pub async fn totals(&self) -> (usize, u64) {
        let loaded = self.loaded.lock().await;
        let connections = loaded
            .values()
            .map(|r| u64::from(r.online.connections.load(Ordering::Relaxed)))
            .sum();
        (loaded.len(), connections)
    }

    /// Connections in `dojo` right now, and the users behind them.
    pub async fn online(&self, dojo: Uuid) -> (u32, HashSet<Uuid>) {
        match self.loaded(dojo).await {
            Some(room) => (
                room.online.connections.load(Ordering::Relaxed),
                room.online
                    .users
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .keys()
                    .copied()
                    .collect(),
            ),
            None => (0, HashSet::new()),
        }
    }

    /// Disconnects `user` from `dojo` (4003).
    pub async fn kick(&self, dojo: Uuid, user: Uuid) {
        if let Some(room) = self.loaded(dojo).await {
            let _ = room.commands.send(Command::Kick { user }).await;
        }
    }

    /// Disconnects everyone from `dojo` (4006) and unloads it.
    pub async fn end(&self, dojo: Uuid) {
        if let Some(room) = self.loaded(dojo).await {
            let _ = room.commands.send(Command::End).await;
        }
    }
}

/// The encoded state of a new document holding `code`.
pub fn initial_state(code: &str) -> Vec<u8> {
    let doc = Doc::new();
    let text = doc.get_or_insert_text(CODE_TEXT);
    let mut txn = doc.transact_mut();
    text.push(&mut txn, code);
    txn.encode_state_as_update_v1(&StateVector::default())
}

struct PeerConn {
    user: Uuid,
    role: ParticipantRole,
    out: mpsc::Sender<Outbound>,
    /// Awareness clients this socket announced (removed when it leaves); no other socket may
    /// change their states.
    clients: HashSet<ClientID>,
    acks: bool,
    /// Whether it takes the custom messages (tags 100–102).
    custom: bool,
    updates: u64,
}

impl PeerConn {
    /// Whether this socket takes `frame`: custom messages only if it asked for them.
    fn takes(&self, frame: &[u8]) -> bool {
        match frame.first() {
            Some(&tag) if (MSG_CHAT..=MSG_ROOM).contains(&tag) => self.custom,
            _ => true,
        }
    }

    fn wire(&self, peer: u64) -> Peer {
        Peer {
            peer,
            user_id: UserId(self.user),
            role: self.role,
        }
    }
}

/// Who a queued message goes to.
/// Broadcasts go to the peers present when the message was queued: peer ids only grow, so
/// those are the ids below the `next_peer` of that moment. A peer that joins later in the same
/// batch gets the document from its own sync step instead, and its events in order.
enum To {
    All { below: u64 },
    AllBut { but: u64, below: u64 },
    One(u64),
}

struct RoomState {
    dojo: Uuid,
    pool: PgPool,
    limits: LiveLimits,
    max_participants: u32,
    awareness: Awareness,
    peers: HashMap<u64, PeerConn>,
    next_peer: u64,
    /// Last stored update and chat sequence numbers.
    update_seq: i64,
    chat_seq: i64,
    /// Updates stored since the last snapshot.
    since_snapshot: u64,
}

/// One batch's effects, stored before anything is sent.
#[derive(Default)]
struct Batch {
    updates: Vec<(i64, Vec<u8>)>,
    chat: Vec<store::NewChat>,
    /// Messages to send once the batch is stored.
    outgoing: Vec<(To, Bytes)>,
    /// Peers to close after sending.
    close: Vec<(u64, u16, &'static str)>,
    /// When the oldest frame of the batch arrived.
    oldest: Option<Instant>,
    unload: bool,
}

fn encode(message: Message) -> Bytes {
    Bytes::from(message.encode_v1())
}

fn custom<T: serde::Serialize>(tag: u8, body: &T) -> Bytes {
    encode(Message::Custom(
        tag,
        serde_json::to_vec(body).unwrap_or_default(),
    ))
}

fn rejected(reason: impl Into<String>) -> Bytes {
    custom(
        MSG_ROOM,
        &RoomEvent::Rejected {
            reason: reason.into(),
        },
    )
}

impl RoomState {
    async fn load(
        pool: &PgPool,
        dojo: Uuid,
        max_participants: u32,
        limits: LiveLimits,
    ) -> anyhow::Result<Self> {
        let (snapshot_seq, state, updates) = store::load_document(pool, dojo).await?;
        let doc = Doc::new();
        let _ = doc.get_or_insert_text(CODE_TEXT);
        {
            let mut txn = doc.transact_mut();
            if !state.is_empty() {
                txn.apply_update(Update::decode_v1(&state)?)?;
            }
            for (_, update) in &updates {
                txn.apply_update(Update::decode_v1(update)?)?;
            }
        }
        let update_seq = updates.last().map_or(snapshot_seq, |u| u.0);
        let chat_seq = store::last_chat_seq(pool, dojo).await?;
        Ok(Self {
            dojo,
            pool: pool.clone(),
            limits,
            max_participants,
            awareness: Awareness::new(doc),
            peers: HashMap::new(),
            next_peer: 1,
            update_seq,
            chat_seq,
            since_snapshot: updates.len() as u64,
        })
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>, presence: Arc<Presence>) {
        loop {
            let first = if self.peers.is_empty() {
                match tokio::time::timeout(self.limits.idle_unload, commands.recv()).await {
                    Ok(Some(command)) => command,
                    Ok(None) | Err(_) => break,
                }
            } else {
                match commands.recv().await {
                    Some(command) => command,
                    None => break,
                }
            };
            let mut batch = Batch::default();
            self.handle(first, &mut batch);
            // Gathering starts when the room picks the batch up, so each batch of a large room
            // spans at least `coalesce` (measured: counting from the first frame's arrival
            // instead leaves batches as small as without coalescing).
            let gather_until = (self.peers.len() >= self.limits.coalesce_from
                && !self.limits.coalesce.is_zero())
            .then(|| tokio::time::Instant::now() + self.limits.coalesce);
            while batch.updates.len() + batch.chat.len() < 512 {
                match commands.try_recv() {
                    Ok(command) => self.handle(command, &mut batch),
                    Err(_) => match gather_until {
                        Some(until) if tokio::time::Instant::now() < until => {
                            match tokio::time::timeout_at(until, commands.recv()).await {
                                Ok(Some(command)) => self.handle(command, &mut batch),
                                Ok(None) | Err(_) => break,
                            }
                        }
                        _ => break,
                    },
                }
            }
            if !self.store(&batch).await {
                for peer in self.peers.values() {
                    let _ = peer
                        .out
                        .try_send(Outbound::Close(1011, "storage unavailable"));
                }
                self.peers.clear();
                break;
            }
            self.send(batch.outgoing);
            for (peer, code, reason) in batch.close {
                if let Some(conn) = self.peers.remove(&peer) {
                    let _ = conn.out.try_send(Outbound::Close(code, reason));
                    self.forget_peer(peer, conn);
                }
            }
            if let Some(oldest) = batch.oldest {
                metrics::histogram!("dojo_fanout_seconds").record(oldest.elapsed().as_secs_f64());
            }
            self.publish(&presence);
            if batch.unload {
                break;
            }
            if self.since_snapshot >= self.limits.compact_every {
                self.compact().await;
            }
        }
        self.publish(&presence);
        if self.since_snapshot > 0 {
            self.compact().await;
        }
        // Dropping the receiver refuses later commands; their senders load the room again.
    }

    /// Everyone present now.
    fn everyone(&self) -> To {
        To::All {
            below: self.next_peer,
        }
    }

    /// Everyone present now but `peer`.
    fn others(&self, peer: u64) -> To {
        To::AllBut {
            but: peer,
            below: self.next_peer,
        }
    }

    fn publish(&self, presence: &Presence) {
        presence
            .connections
            .store(self.peers.len() as u32, Ordering::Relaxed);
        let mut users = presence.users.lock().unwrap_or_else(|p| p.into_inner());
        users.clear();
        for peer in self.peers.values() {
            *users.entry(peer.user).or_default() += 1;
        }
    }

    /// Stores the batch (retrying briefly); `false` if it could not be stored.
    async fn store(&mut self, batch: &Batch) -> bool {
        if batch.updates.is_empty() && batch.chat.is_empty() {
            return true;
        }
        let started = Instant::now();
        let mut wait = Duration::from_millis(50);
        for attempt in 1..=4 {
            match store::append(&self.pool, self.dojo, &batch.updates, &batch.chat).await {
                Ok(_) => {
                    metrics::histogram!("dojo_persist_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!("dojo_updates_total").increment(batch.updates.len() as u64);
                    metrics::counter!("dojo_chat_messages_total")
                        .increment(batch.chat.len() as u64);
                    self.since_snapshot += batch.updates.len() as u64;
                    return true;
                }
                Err(e) => {
                    tracing::warn!(dojo = %self.dojo, attempt, error = %e, "storing room batch failed");
                    tokio::time::sleep(wait).await;
                    wait *= 4;
                }
            }
        }
        tracing::error!(dojo = %self.dojo, "room batch not stored; closing the room");
        false
    }

    async fn compact(&mut self) {
        let (state, code) = {
            let txn = self.awareness.doc().transact();
            let text = txn.get_text(CODE_TEXT);
            (
                txn.encode_state_as_update_v1(&StateVector::default()),
                // Anyone may type a NUL into the shared text; the history column is `text`.
                text.map(|t| t.get_string(&txn).replace('\0', ""))
                    .unwrap_or_default(),
            )
        };
        match store::compact(&self.pool, self.dojo, self.update_seq, &state, &code).await {
            Ok(()) => self.since_snapshot = 0,
            Err(e) => {
                tracing::warn!(dojo = %self.dojo, error = %e, "compaction failed; the log is kept")
            }
        }
    }

    fn send(&mut self, outgoing: Vec<(To, Bytes)>) {
        // Each socket gets its share of the batch in one hand-over (one wake-up of its writer),
        // in the batch's order.
        let mut per_peer: HashMap<u64, Vec<Bytes>> = HashMap::new();
        for (to, bytes) in outgoing {
            let peers = &self.peers;
            let mut add = |id: u64| {
                if peers.get(&id).is_some_and(|p| p.takes(&bytes)) {
                    per_peer.entry(id).or_default().push(bytes.clone());
                }
            };
            match to {
                To::All { below } => self
                    .peers
                    .keys()
                    .filter(|id| **id < below)
                    .for_each(|id| add(*id)),
                To::AllBut { but, below } => self
                    .peers
                    .keys()
                    .filter(|id| **id != but && **id < below)
                    .for_each(|id| add(*id)),
                To::One(one) => {
                    if self.peers.contains_key(&one) {
                        add(one);
                    }
                }
            }
        }
        let mut slow = Vec::new();
        for (id, frames) in per_peer {
            if let Some(peer) = self.peers.get(&id)
                && peer.out.try_send(Outbound::Frames(frames)).is_err()
            {
                slow.push(id);
            }
        }
        // A receiver that cannot keep up is disconnected; it resyncs when it reconnects.
        for id in slow {
            if let Some(conn) = self.peers.remove(&id) {
                metrics::counter!("dojo_slow_consumers_total").increment(1);
                let _ = conn
                    .out
                    .try_send(Outbound::Close(1013, "too slow; reconnect"));
                let left = self.forget_peer(id, conn);
                self.send(left);
            }
        }
    }

    /// Removes a departed peer's awareness states; returns what the others must hear.
    fn forget_peer(&mut self, id: u64, conn: PeerConn) -> Vec<(To, Bytes)> {
        let mut out = Vec::new();
        let clients: Vec<ClientID> = conn.clients.iter().copied().collect();
        for client in &clients {
            self.awareness.remove_state(*client);
        }
        if !clients.is_empty()
            && let Ok(update) = self.awareness.update_with_clients(clients)
        {
            out.push((self.everyone(), encode(Message::Awareness(update))));
        }
        out.push((
            self.everyone(),
            custom(
                MSG_ROOM,
                &RoomEvent::Left {
                    peer: id,
                    user_id: UserId(conn.user),
                },
            ),
        ));
        metrics::gauge!("dojo_connections").decrement(1.0);
        out
    }

    fn handle(&mut self, command: Command, batch: &mut Batch) {
        match command {
            Command::Join {
                user,
                role,
                wants,
                reply,
            } => {
                if self.peers.len() as u32 >= self.max_participants {
                    let _ = reply.send(Err(Refused::Full));
                    return;
                }
                let (out, outbound) = mpsc::channel(self.limits.send_queue);
                let id = self.next_peer;
                self.next_peer += 1;
                let conn = PeerConn {
                    user,
                    role,
                    out,
                    clients: HashSet::new(),
                    acks: wants.acks,
                    custom: wants.custom,
                    updates: 0,
                };
                let you = conn.wire(id);
                let peers = self.peers.iter().map(|(id, p)| p.wire(*id)).collect();
                if reply.send(Ok((id, outbound))).is_err() {
                    return;
                }
                self.peers.insert(id, conn);
                metrics::gauge!("dojo_connections").increment(1.0);
                // The y-websocket greeting: our state vector, then everyone's awareness.
                let sv = self.awareness.doc().transact().state_vector();
                batch.outgoing.push((
                    To::One(id),
                    custom(
                        MSG_ROOM,
                        &RoomEvent::Welcome {
                            you: you.clone(),
                            peers,
                        },
                    ),
                ));
                batch.outgoing.push((
                    To::One(id),
                    encode(Message::Sync(SyncMessage::SyncStep1(sv))),
                ));
                if let Ok(update) = self.awareness.update()
                    && !update.clients.is_empty()
                {
                    batch
                        .outgoing
                        .push((To::One(id), encode(Message::Awareness(update))));
                }
                batch.outgoing.push((
                    self.others(id),
                    custom(MSG_ROOM, &RoomEvent::Joined { peer: you }),
                ));
            }
            Command::Frame {
                peer,
                data,
                received,
            } => {
                if !self.peers.contains_key(&peer) {
                    return;
                }
                batch.oldest.get_or_insert(received);
                if let Err(reason) = self.frame(peer, &data, batch) {
                    tracing::debug!(dojo = %self.dojo, peer, reason, "protocol error");
                    batch.close.push((peer, 1002, "protocol error"));
                }
            }
            Command::Leave { peer } => {
                if let Some(conn) = self.peers.remove(&peer) {
                    let left = self.forget_peer(peer, conn);
                    batch.outgoing.extend(left);
                }
            }
            Command::Kick { user } => {
                let ids: Vec<u64> = self
                    .peers
                    .iter()
                    .filter(|(_, p)| p.user == user)
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    batch.close.push((
                        id,
                        wire_types::dojos::close::FORBIDDEN,
                        "removed from the dojo",
                    ));
                }
            }
            Command::End => {
                for id in self.peers.keys() {
                    batch
                        .close
                        .push((*id, wire_types::dojos::close::ENDED, "the dojo has ended"));
                }
                batch.unload = true;
            }
        }
    }

    /// One binary frame: one or more y-sync / custom messages.
    fn frame(&mut self, peer: u64, data: &[u8], batch: &mut Batch) -> Result<(), &'static str> {
        let mut decoder = DecoderV1::new(Cursor::new(data));
        let messages: Vec<Message> = MessageReader::new(&mut decoder)
            .collect::<Result<_, _>>()
            .map_err(|_| "undecodable message")?;
        if messages.is_empty() {
            return Err("empty frame");
        }
        for message in messages {
            match message {
                Message::Sync(SyncMessage::SyncStep1(sv)) => {
                    let update = self
                        .awareness
                        .doc()
                        .transact()
                        .encode_state_as_update_v1(&sv);
                    batch.outgoing.push((
                        To::One(peer),
                        encode(Message::Sync(SyncMessage::SyncStep2(update))),
                    ));
                }
                Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
                    self.update(peer, update, batch)?;
                }
                Message::Awareness(update) => {
                    if let Some(taken) = self.foreign_client(peer, &update) {
                        tracing::debug!(dojo = %self.dojo, peer, client = ?taken, "awareness for another socket's client refused");
                        batch.outgoing.push((
                            To::One(peer),
                            rejected("awareness may only change your own clients"),
                        ));
                        continue;
                    }
                    let raw = encode(Message::Awareness(update.clone()));
                    let summary = self
                        .awareness
                        .apply_update_summary(update)
                        .map_err(|_| "bad awareness update")?;
                    if let (Some(summary), Some(conn)) = (summary, self.peers.get_mut(&peer)) {
                        conn.clients
                            .extend(summary.added.iter().chain(&summary.updated).copied());
                        for gone in &summary.removed {
                            conn.clients.remove(gone);
                        }
                    }
                    // To everyone, the sender included, as the reference y-websocket server
                    // does: a lone client's own renewals (every 15 s) are what keep it from
                    // timing out and reconnecting (y-websocket gives up after 30 s of silence).
                    batch.outgoing.push((self.everyone(), raw));
                }
                Message::AwarenessQuery => {
                    if let Ok(update) = self.awareness.update() {
                        batch
                            .outgoing
                            .push((To::One(peer), encode(Message::Awareness(update))));
                    }
                }
                Message::Auth(_) => {}
                Message::Custom(MSG_CHAT, body) => self.chat(peer, &body, batch),
                Message::Custom(MSG_SIGNAL, body) => self.signal(peer, &body, batch),
                Message::Custom(tag, _) => batch.outgoing.push((
                    To::One(peer),
                    rejected(format!("unknown message type {tag}")),
                )),
            }
        }
        Ok(())
    }

    /// A client id in `update` that belongs to another socket (or to the room itself), if any:
    /// a socket owns the ids it announced first, so nobody can fake or erase others' presence.
    fn foreign_client(&self, peer: u64, update: &AwarenessUpdate) -> Option<ClientID> {
        update.clients.keys().copied().find(|client| {
            *client == self.awareness.client_id()
                || self
                    .peers
                    .iter()
                    .any(|(id, p)| *id != peer && p.clients.contains(client))
        })
    }

    fn update(&mut self, peer: u64, raw: Vec<u8>, batch: &mut Batch) -> Result<(), &'static str> {
        let update = Update::decode_v1(&raw).map_err(|_| "undecodable update")?;
        let Some(conn) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        if update.is_empty() {
            return Ok(());
        }
        if conn.role == ParticipantRole::Observer {
            batch
                .outgoing
                .push((To::One(peer), rejected("observers cannot edit")));
            return Ok(());
        }
        conn.updates += 1;
        let (acks, count) = (conn.acks, conn.updates);
        self.awareness
            .doc()
            .transact_mut()
            .apply_update(update)
            .map_err(|_| "update does not apply")?;
        self.update_seq += 1;
        batch.updates.push((self.update_seq, raw.clone()));
        batch.outgoing.push((
            self.others(peer),
            encode(Message::Sync(SyncMessage::Update(raw))),
        ));
        if acks {
            batch
                .outgoing
                .push((To::One(peer), custom(MSG_ACK, &Ack { updates: count })));
        }
        Ok(())
    }

    fn chat(&mut self, peer: u64, body: &[u8], batch: &mut Batch) {
        let Some(conn) = self.peers.get(&peer) else {
            return;
        };
        let text = match serde_json::from_slice::<ChatSend>(body) {
            Ok(send) => send.text,
            Err(_) => {
                batch
                    .outgoing
                    .push((To::One(peer), rejected("chat: expected {\"text\": \"…\"}")));
                return;
            }
        };
        let chars = text.trim().chars().count();
        if chars == 0 || chars > 4000 {
            batch
                .outgoing
                .push((To::One(peer), rejected("chat: 1–4000 characters")));
            return;
        }
        // NUL cannot be stored (and would fail the whole batch); other control characters
        // besides line breaks and tabs have no place in chat either.
        if text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            batch
                .outgoing
                .push((To::One(peer), rejected("chat: control characters")));
            return;
        }
        self.chat_seq += 1;
        // Microseconds, as Postgres stores them: the live message and the history agree.
        let now = time::OffsetDateTime::now_utc();
        let sent_at = now
            .replace_nanosecond(now.nanosecond() / 1000 * 1000)
            .unwrap_or(now);
        let message = ChatMessage {
            seq: self.chat_seq,
            user_id: UserId(conn.user),
            text: text.clone(),
            sent_at,
        };
        batch.chat.push(store::NewChat {
            seq: self.chat_seq,
            user: conn.user,
            text,
            sent_at,
        });
        batch
            .outgoing
            .push((self.everyone(), custom(MSG_CHAT, &message)));
    }

    fn signal(&mut self, peer: u64, body: &[u8], batch: &mut Batch) {
        let Some(conn) = self.peers.get(&peer) else {
            return;
        };
        let send = match serde_json::from_slice::<SignalSend>(body) {
            Ok(send) => send,
            Err(_) => {
                batch.outgoing.push((
                    To::One(peer),
                    rejected("signal: expected {\"to\", \"signal\"}"),
                ));
                return;
            }
        };
        if !self.peers.contains_key(&send.to) || send.to == peer {
            batch
                .outgoing
                .push((To::One(peer), rejected("signal: no such peer")));
            return;
        }
        let from = SignalFrom {
            from: peer,
            user_id: UserId(conn.user),
            signal: send.signal,
        };
        batch
            .outgoing
            .push((To::One(send.to), custom(MSG_SIGNAL, &from)));
    }
}
