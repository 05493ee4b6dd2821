//! Rooms: one task per loaded dojo, owning its yrs document and awareness. This module is the
//! registry (load on demand, join, kick, end, unload); `state` is one room's task (batches,
//! storage, fan-out) and `state::messages` what each message does to the room.
//!
//! ```text
//! socket ─frame─► room task: drain a batch of commands
//!                   ├─ apply updates to the doc, chat → pending rows
//!                   ├─ send: updates to the others, awareness, events, sync replies
//!                   ├─ store::append (one transaction)      ← off the fan-out path
//!                   └─ then send: chat to all, acks
//! ```
//!
//! **Invariant:** nothing is acknowledged, and no chat is shown, before the batch it belongs to
//! is stored. Document updates go to the other sockets as soon as they are applied: a y-sync
//! update is idempotent and every client that holds it gives it back when it syncs, so an edit
//! that was fanned out but not stored is not lost. If storing fails, the batch's chat and acks
//! are never sent, every socket is closed (1011) and the room is unloaded; clients reconnect and
//! resync, which stores again the edits they hold, and the document is reloaded from what was
//! stored.
//!
//! **One owner across replicas** (`owner`): loading a room takes it over (a new epoch); a room
//! that was taken over stores nothing more, closes its sockets with 1012 and unloads, and its
//! clients reconnect (through the router) to the replica that owns the room now.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use wire_types::dojos::{CODE_TEXT, ParticipantRole};
use yrs::{Doc, ReadTxn, StateVector, Text, Transact};

use crate::config::LiveLimits;

pub(crate) mod owner;
mod state;

use state::RoomState;

/// What a socket hears from its room.
#[derive(Clone, Debug)]
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
    /// Another replica took the room over: disconnect everyone (1012, reconnect) and unload.
    Moved,
}

/// A loaded room, as sockets and handlers reach it.
#[derive(Clone)]
pub struct RoomHandle {
    commands: mpsc::Sender<Command>,
    online: Arc<Presence>,
    generation: u64,
    /// The ownership epoch this room took (see `owner`).
    epoch: i64,
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
    /// The registry, listening for other replicas taking its rooms over until it is dropped.
    pub fn start(pool: PgPool, limits: LiveLimits) -> Arc<Self> {
        let rooms = Arc::new(Self {
            pool: pool.clone(),
            limits,
            loaded: tokio::sync::Mutex::new(HashMap::new()),
            generations: std::sync::atomic::AtomicU64::new(1),
        });
        owner::listen(pool, Arc::downgrade(&rooms));
        rooms
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
            epoch: state.epoch(),
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

    /// The epoch of every loaded room.
    async fn epochs(&self) -> HashMap<Uuid, i64> {
        let loaded = self.loaded.lock().await;
        loaded.iter().map(|(dojo, r)| (*dojo, r.epoch)).collect()
    }

    /// Another replica took `dojo` over at `epoch`: a room of an older epoch lets go.
    async fn taken(&self, dojo: Uuid, epoch: i64) {
        let Some(room) = self.loaded(dojo).await else {
            return;
        };
        if room.epoch < epoch {
            tracing::info!(%dojo, epoch, "room taken over by another replica; letting go");
            metrics::counter!("dojo_rooms_handed_over_total").increment(1);
            let _ = room.commands.send(Command::Moved).await;
        }
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

    /// Disconnects `user` from `dojo` (4003), on whichever replica holds its room.
    pub async fn kick(&self, dojo: Uuid, user: Uuid) {
        self.kick_here(dojo, user).await;
        owner::announce(&self.pool, owner::Note::Kick { dojo, user }).await;
    }

    async fn kick_here(&self, dojo: Uuid, user: Uuid) {
        if let Some(room) = self.loaded(dojo).await {
            let _ = room.commands.send(Command::Kick { user }).await;
        }
    }

    /// Disconnects everyone from `dojo` (4006) and unloads it, on whichever replica holds it.
    pub async fn end(&self, dojo: Uuid) {
        self.end_here(dojo).await;
        owner::announce(&self.pool, owner::Note::End { dojo }).await;
    }

    async fn end_here(&self, dojo: Uuid) {
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
