//! The live writer: one dojo's socket through the router, as a y-websocket client with chat
//! (`test_support::live::Live`). Each round appends a marker `[n]` to the shared code and sends
//! chat `live chat n`; the chat's echo acknowledges both. The room stores a batch (document
//! updates and chat, one transaction) before it sends the batch's chat, and handles a socket's
//! messages in order, so an echo means everything the socket sent before it is stored.
//!
//! A socket that closes (a killed service, the router, Postgres, a migration's fence) is opened
//! again, keeping the document: the sync sends the server every edit it lacks, as y-websocket
//! does, and the next echo covers those too. A chat whose echo never came is in doubt: it is not
//! sent again (a chat, unlike an edit, is not idempotent).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use test_support::live::Live;
use wire_types::dojos::MSG_CHAT;

use super::Writer;
use crate::platform::Platform;

/// What the live writer was told.
#[derive(Debug, Default)]
pub struct LiveLedger {
    /// The dojo it writes in.
    pub dojo: Option<String>,
    /// Markers whose round's echo came back (stored).
    pub edits: BTreeSet<u64>,
    /// The last marker written (every marker in the document must be one of `1..=sent`).
    pub sent: u64,
    /// Chats whose echo came back (stored).
    pub chats: Vec<String>,
    /// Chats whose echo never came: each may or may not be stored.
    pub chats_in_doubt: BTreeSet<String>,
    /// Sockets lost and opened again.
    pub reconnects: u32,
}

/// How long a round waits for its echo before the socket counts as lost.
const ECHO_WITHIN: Duration = Duration::from_secs(10);

impl Writer {
    pub async fn live_dojo(self) {
        let body = json!({ "name": "live ledger", "language": "rust", "initial_code": "" });
        let dojo = loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let created = self
                .send(reqwest::Method::POST, "/v1/dojos", &body, "live ledger")
                .await;
            if let Some(dojo) = created {
                break dojo["id"].as_str().expect("id").to_owned();
            }
        };
        {
            let mut ledger = self.ledger.lock().await;
            ledger.dojos.push(dojo.clone());
            ledger.live.dojo = Some(dojo.clone());
        }
        let url = format!(
            "{}/v1/dojos/{dojo}/live?token={}",
            self.base.replacen("http", "ws", 1),
            self.token
        );
        let mut live: Option<Live> = None;
        // Markers written but not yet covered by an echo.
        let mut pending: Vec<u64> = Vec::new();
        let mut n = 0;
        while !self.stop.load(Ordering::SeqCst) {
            let Some(socket) = self.open(&mut live, &url).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            n += 1;
            let chat = format!("live chat {n}");
            let end = u32::try_from(socket.code().len()).expect("code length");
            socket.insert(end, &format!("[{n}]")).await;
            socket.send_json(MSG_CHAT, &json!({ "text": chat })).await;
            pending.push(n);
            let echoed = echo(socket, &chat).await;
            let mut ledger = self.ledger.lock().await;
            ledger.live.sent = n;
            if echoed {
                ledger.live.edits.extend(pending.drain(..));
                ledger.live.chats.push(chat);
            } else {
                ledger.live.chats_in_doubt.insert(chat);
                socket.got.closed.get_or_insert((0, "no echo".into()));
            }
            drop(ledger);
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// The writer's socket, synced: opened the first time, opened again (keeping the document)
    /// after it closed; `None` while that fails.
    async fn open<'a>(&self, live: &'a mut Option<Live>, url: &str) -> Option<&'a mut Live> {
        let reopened = match live {
            None => {
                *live = Some(Live::try_connect(url, None).await?);
                false
            }
            Some(socket) if socket.got.closed.is_some() => {
                if !socket.try_reconnect(url, None).await {
                    return None;
                }
                true
            }
            Some(_) => return live.as_mut(),
        };
        let socket = live.as_mut()?;
        // The server's step 2 answers our step 1; its step 1 came before it (one socket's
        // messages are in order), and answering that sent every edit the server lacks.
        let deadline = Instant::now() + ECHO_WITHIN;
        while socket.got.step2.is_empty() {
            if socket.got.closed.is_some() || Instant::now() > deadline {
                socket.got.closed.get_or_insert((0, "no sync".into()));
                return None;
            }
            socket.pump(Duration::from_millis(50)).await;
        }
        if reopened {
            self.ledger.lock().await.live.reconnects += 1;
        }
        Some(socket)
    }
}

/// Pumps until `chat` comes back (`true`), or the socket closes or stays silent.
async fn echo(socket: &mut Live, chat: &str) -> bool {
    let deadline = Instant::now() + ECHO_WITHIN;
    while socket.got.closed.is_none() && Instant::now() < deadline {
        if socket.got.chat.iter().any(|c| c["text"] == chat) {
            socket.got.chat.clear();
            return true;
        }
        socket.pump(Duration::from_millis(50)).await;
    }
    false
}

impl LiveLedger {
    /// The dojo as a fresh client syncs it and as its chat history reads: every acknowledged
    /// marker and chat exactly once; no marker that was never written; any other chat one in
    /// doubt, once.
    pub async fn verify(&self, platform: &Platform, slug: &str, token: &str) {
        let dojo = self.dojo.as_deref().expect("the live writer's dojo");
        let ws = platform.router_url().replacen("http", "ws", 1);
        let url = format!("{ws}/t/{slug}/v1/dojos/{dojo}/live?token={token}");
        let mut reader = Live::connect(&url, None).await;
        reader
            .until("the document", |l| !l.got.step2.is_empty())
            .await;
        let mut markers: BTreeMap<u64, usize> = BTreeMap::new();
        for marker in reader.code().split_terminator(']') {
            let n = marker
                .strip_prefix('[')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a marker: {marker:?}"));
            *markers.entry(n).or_default() += 1;
        }
        for n in &self.edits {
            assert_eq!(markers.get(n), Some(&1), "acknowledged edit [{n}]");
        }
        for (n, count) in &markers {
            assert_eq!(*count, 1, "edit [{n}] is in the document {count} times");
            assert!(*n <= self.sent, "edit [{n}] was never written");
        }

        let api = platform.api(slug).with_token(token);
        let mut chats: BTreeMap<String, usize> = BTreeMap::new();
        let mut after = 0;
        loop {
            let page = api
                .get_ok(&format!("/v1/dojos/{dojo}/chat?limit=200&after={after}"))
                .await;
            for item in page["items"].as_array().expect("items") {
                let text = item["text"].as_str().expect("text").to_owned();
                *chats.entry(text).or_default() += 1;
            }
            match page["next_after"].as_i64() {
                Some(next) => after = next,
                None => break,
            }
        }
        for chat in &self.chats {
            assert_eq!(chats.get(chat), Some(&1), "acknowledged chat {chat:?}");
        }
        for (chat, count) in &chats {
            assert_eq!(*count, 1, "chat {chat:?} is stored {count} times");
            assert!(
                self.chats.contains(chat) || self.chats_in_doubt.contains(chat),
                "chat {chat:?} appeared, though it was never sent"
            );
        }
    }
}
