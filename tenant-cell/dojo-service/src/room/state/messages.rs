//! What each message of a socket does to its room: y-sync and awareness, chat, signaling,
//! under the room's write budgets and size limits.

use std::collections::HashSet;
use std::time::Instant;

use wire_types::UserId;
use wire_types::dojos::{
    Ack, ChatMessage, ChatSend, MSG_ACK, MSG_CHAT, MSG_SIGNAL, ParticipantRole, SignalFrom,
    SignalSend,
};
use yrs::encoding::read::Cursor;
use yrs::sync::{AwarenessUpdate, Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::{ReadTxn, StateVector, Transact, Update};

use super::{Batch, RoomState, To, custom, encode, rejected};
use crate::budget::Over;
use crate::store;

/// Awareness a socket may hold: client ids, and the JSON of one state (presence, cursor).
const MAX_AWARENESS_CLIENTS: usize = 8;
const MAX_AWARENESS_STATE: usize = 4 * 1024;

impl RoomState {
    /// One binary frame: one or more y-sync / custom messages.
    pub(super) fn frame(
        &mut self,
        peer: u64,
        data: &[u8],
        batch: &mut Batch,
    ) -> Result<(), &'static str> {
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
                    if let Some(why) = self.awareness_refusal(peer, &update) {
                        tracing::debug!(dojo = %self.dojo, peer, why, "awareness update refused");
                        batch.outgoing.push((To::One(peer), rejected(why)));
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

    /// Why `update` may not be applied, if it may not: a socket owns the client ids it
    /// announced first, so nobody can fake or erase others' presence (nor the room's own id),
    /// and it holds a bounded number of bounded states.
    fn awareness_refusal(&self, peer: u64, update: &AwarenessUpdate) -> Option<&'static str> {
        let foreign = update.clients.keys().any(|client| {
            *client == self.awareness.client_id()
                || self
                    .peers
                    .iter()
                    .any(|(id, p)| *id != peer && p.clients.contains(client))
        });
        if foreign {
            return Some("awareness may only change your own clients");
        }
        let mine = self.peers.get(&peer).map(|p| &p.clients);
        let added = update
            .clients
            .keys()
            .filter(|c| !mine.is_some_and(|m| m.contains(c)))
            .count();
        if mine.map_or(0, HashSet::len) + added > MAX_AWARENESS_CLIENTS {
            return Some("awareness: too many clients on one connection");
        }
        if update
            .clients
            .values()
            .any(|e| e.json.len() > MAX_AWARENESS_STATE)
        {
            return Some("awareness: a state is larger than 4 KiB");
        }
        None
    }

    /// Charges `bytes` of `peer`'s writing to the budgets (and, for document edits, the size
    /// limit); on refusal the socket is closed at the end of the batch and nothing of this
    /// write is applied, stored or sent.
    fn charge(&mut self, peer: u64, bytes: usize, edit: bool, batch: &mut Batch) -> bool {
        let Some(user) = self.peers.get(&peer).map(|p| p.user) else {
            return false;
        };
        let mut over = None;
        if edit && self.doc_bytes + bytes > self.limits.max_document_bytes {
            // The bound may be loose (merging shrinks): measure before refusing.
            self.doc_bytes = self
                .awareness
                .doc()
                .transact()
                .encode_state_as_update_v1(&StateVector::default())
                .len();
            if self.doc_bytes + bytes > self.limits.max_document_bytes {
                over = Some(Over::Document);
            }
        }
        if over.is_none() {
            over = self
                .budget
                .take(user, bytes, &self.limits, Instant::now())
                .err();
        }
        let Some(over) = over else {
            return true;
        };
        let (code, reason) = match over {
            Over::Document => (
                wire_types::dojos::close::DOCUMENT_FULL,
                "the document is at its size limit",
            ),
            Over::Volume => (
                wire_types::dojos::close::RATE_LIMITED,
                "writing too much; slow down",
            ),
        };
        metrics::counter!("dojo_writes_refused_total", "reason" => match over {
            Over::Document => "document_full",
            Over::Volume => "volume",
        })
        .increment(1);
        if let Some(conn) = self.peers.get_mut(&peer) {
            conn.closing = true;
        }
        batch.close.push((peer, code, reason));
        false
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
        if !self.charge(peer, raw.len(), true, batch) {
            return Ok(());
        }
        let Some(conn) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        conn.updates += 1;
        let (acks, count) = (conn.acks, conn.updates);
        self.awareness
            .doc()
            .transact_mut()
            .apply_update(update)
            .map_err(|_| "update does not apply")?;
        self.update_seq += 1;
        self.doc_bytes += raw.len();
        batch.updates.push((self.update_seq, raw.clone()));
        batch.outgoing.push((
            self.others(peer),
            encode(Message::Sync(SyncMessage::Update(raw))),
        ));
        if acks {
            batch
                .after_store
                .push((To::One(peer), custom(MSG_ACK, &Ack { updates: count })));
        }
        Ok(())
    }

    fn chat(&mut self, peer: u64, body: &[u8], batch: &mut Batch) {
        if !self.peers.contains_key(&peer) {
            return;
        }
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
        if !self.charge(peer, text.len(), false, batch) {
            return;
        }
        let Some(conn) = self.peers.get(&peer) else {
            return;
        };
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
            .after_store
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
