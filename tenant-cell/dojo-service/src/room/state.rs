//! One room's task: drains commands in batches, sends each batch's edits, stores it, then sends
//! its chat and acknowledgements.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;
use wire_types::UserId;
use wire_types::dojos::{CODE_TEXT, MSG_CHAT, MSG_ROOM, ParticipantRole, Peer, RoomEvent, close};
use yrs::block::ClientID;
use yrs::sync::{Awareness, Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Transact, Update};

use super::{Command, Outbound, Presence, Refused};
use crate::budget::WriteBudget;
use crate::config::LiveLimits;
use crate::room::owner::{self, StoreError};
use crate::store;

mod messages;

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
    /// Being closed at the end of this batch: nothing more of it is taken.
    closing: bool,
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

pub(super) struct RoomState {
    dojo: Uuid,
    /// The ownership epoch this room took when it loaded.
    epoch: i64,
    /// Taken over by another replica: nothing more is stored, not even a snapshot.
    moved: bool,
    pool: PgPool,
    limits: LiveLimits,
    max_participants: u32,
    awareness: Awareness,
    peers: HashMap<u64, PeerConn>,
    next_peer: u64,
    /// Last stored update and chat sequence numbers.
    update_seq: i64,
    chat_seq: i64,
    /// Updates stored since the last snapshot, and their bytes.
    since_snapshot: u64,
    since_snapshot_bytes: usize,
    /// The encoded document's size, at most: the last snapshot plus the updates since.
    doc_bytes: usize,
    budget: WriteBudget,
}

/// One batch's effects. Document updates, awareness and events go out as soon as the batch is
/// applied; chat and acknowledgements only once it is stored.
#[derive(Default)]
struct Batch {
    updates: Vec<(i64, Vec<u8>)>,
    chat: Vec<store::NewChat>,
    /// Messages to send at once: what a client that holds it can give back (a CRDT update
    /// re-syncs from any client that has it) or what is not stored at all.
    outgoing: Vec<(To, Bytes)>,
    /// Messages to send once the batch is stored: chat (not re-derivable) and acknowledgements
    /// (a promise that the edits are stored).
    after_store: Vec<(To, Bytes)>,
    /// Peers to close after sending.
    close: Vec<(u64, u16, &'static str)>,
    /// When the oldest frame of the batch arrived.
    oldest: Option<Instant>,
    unload: bool,
}

/// Why the sockets of a room that another replica took over are closed.
const MOVED: &str = "room moved to another replica; reconnect";

fn moved() -> Outbound {
    Outbound::Close(close::SERVICE_RESTART, MOVED)
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
    pub(super) async fn load(
        pool: &PgPool,
        dojo: Uuid,
        max_participants: u32,
        limits: LiveLimits,
    ) -> anyhow::Result<Self> {
        // Take the room over first, then read: every batch the previous owner stored is
        // committed by then, and it can store none after.
        let epoch = owner::take(pool, dojo).await?;
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
        let log_bytes = updates.iter().map(|u| u.1.len()).sum::<usize>();
        let chat_seq = store::last_chat_seq(pool, dojo).await?;
        Ok(Self {
            dojo,
            epoch,
            moved: false,
            pool: pool.clone(),
            limits,
            max_participants,
            awareness: Awareness::new(doc),
            peers: HashMap::new(),
            next_peer: 1,
            update_seq,
            chat_seq,
            since_snapshot: updates.len() as u64,
            since_snapshot_bytes: log_bytes,
            doc_bytes: state.len() + log_bytes,
            budget: WriteBudget::new(&limits),
        })
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        presence: Arc<Presence>,
    ) {
        let mut last_sent = tokio::time::Instant::now();
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
            // A large room sends at most one batch per `coalesce`: gathering lasts until
            // `coalesce` after the previous batch went out, so the time spent storing that
            // batch counts towards the window (measured: counting from the first frame's
            // arrival instead leaves batches as small as without coalescing).
            let gather_until = (self.peers.len() >= self.limits.coalesce_from
                && !self.limits.coalesce.is_zero())
            .then(|| last_sent + self.limits.coalesce);
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
            // Storing is off the fan-out path: the others get the batch's edits while it is
            // being stored.
            self.send(std::mem::take(&mut batch.outgoing));
            last_sent = tokio::time::Instant::now();
            if let Some(oldest) = batch.oldest {
                metrics::histogram!("dojo_fanout_seconds").record(oldest.elapsed().as_secs_f64());
            }
            if let Err(close) = self.store(&batch).await {
                for peer in self.peers.values() {
                    let _ = peer.out.try_send(close.clone());
                }
                self.peers.clear();
                break;
            }
            self.send(std::mem::take(&mut batch.after_store));
            for (peer, code, reason) in batch.close {
                if let Some(conn) = self.peers.remove(&peer) {
                    let _ = conn.out.try_send(Outbound::Close(code, reason));
                    self.forget_peer(peer, conn);
                }
            }
            self.publish(&presence);
            if batch.unload {
                break;
            }
            if self.since_snapshot >= self.limits.compact_every
                || self.since_snapshot_bytes >= self.limits.compact_bytes
            {
                self.compact().await;
            }
        }
        self.publish(&presence);
        if self.since_snapshot > 0 && !self.moved {
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

    pub(super) fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Stores the batch (retrying briefly); if it could not be stored, how to close the sockets:
    /// 1012 when another replica took the room over, 1011 when the database failed.
    async fn store(&mut self, batch: &Batch) -> Result<(), Outbound> {
        if batch.updates.is_empty() && batch.chat.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut wait = Duration::from_millis(50);
        for attempt in 1..=4 {
            let stored = store::append(
                &self.pool,
                self.dojo,
                self.epoch,
                &batch.updates,
                &batch.chat,
            )
            .await;
            match stored {
                Ok(_) => {
                    metrics::histogram!("dojo_persist_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!("dojo_updates_total").increment(batch.updates.len() as u64);
                    metrics::counter!("dojo_chat_messages_total")
                        .increment(batch.chat.len() as u64);
                    self.since_snapshot += batch.updates.len() as u64;
                    self.since_snapshot_bytes +=
                        batch.updates.iter().map(|u| u.1.len()).sum::<usize>();
                    return Ok(());
                }
                Err(StoreError::Moved) => {
                    tracing::info!(dojo = %self.dojo, "room taken over by another replica; batch not stored");
                    self.moved = true;
                    return Err(moved());
                }
                Err(StoreError::Db(e)) => {
                    tracing::warn!(dojo = %self.dojo, attempt, error = %e, "storing room batch failed");
                    tokio::time::sleep(wait).await;
                    wait *= 4;
                }
            }
        }
        tracing::error!(dojo = %self.dojo, "room batch not stored; closing the room");
        Err(Outbound::Close(1011, "storage unavailable"))
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
        let size = state.len();
        match store::compact(
            &self.pool,
            (self.dojo, self.epoch),
            self.update_seq,
            &state,
            &code,
            self.limits.keep_snapshots,
        )
        .await
        {
            Ok(()) => {
                self.since_snapshot = 0;
                self.since_snapshot_bytes = 0;
                self.doc_bytes = size;
            }
            Err(StoreError::Moved) => self.moved = true,
            Err(StoreError::Db(e)) => {
                tracing::warn!(dojo = %self.dojo, error = %e, "compaction failed; the log is kept")
            }
        }
    }

    fn send(&mut self, outgoing: Vec<(To, Bytes)>) {
        // Each socket gets its share of the batch in one hand-over (one wake-up of its writer),
        // in the batch's order.
        let mut per_peer: HashMap<u64, Vec<Bytes>> = HashMap::new();
        for (to, bytes) in outgoing {
            let mut add = |id: u64, peer: &PeerConn| {
                if peer.takes(&bytes) {
                    per_peer.entry(id).or_default().push(bytes.clone());
                }
            };
            match to {
                To::All { below } => self
                    .peers
                    .iter()
                    .filter(|(id, _)| **id < below)
                    .for_each(|(id, peer)| add(*id, peer)),
                To::AllBut { but, below } => self
                    .peers
                    .iter()
                    .filter(|(id, _)| **id != but && **id < below)
                    .for_each(|(id, peer)| add(*id, peer)),
                To::One(one) => {
                    if let Some(peer) = self.peers.get(&one) {
                        add(one, peer);
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
                    closing: false,
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
                if self.peers.get(&peer).is_none_or(|p| p.closing) {
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
            Command::Moved => {
                for id in self.peers.keys() {
                    batch.close.push((*id, close::SERVICE_RESTART, MOVED));
                }
                self.moved = true;
                batch.unload = true;
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
}
