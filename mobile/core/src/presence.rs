//! Presence in a dojo room: who is there and where their cursor is, published through the
//! y-websocket awareness protocol in the shape web editors use (y-codemirror, y-monaco):
//!
//! ```json
//! {"user": {"name": "Ana", "color": "#1e88e5"}, "cursor": {"anchor": <pos>, "head": <pos>}}
//! ```
//!
//! where a `<pos>` is a Yjs relative position (yrs' [`StickyIndex`]): it stays on the same
//! character while others edit before it. The core turns the others' positions into indexes in
//! its own copy of the code ([`RemoteCursor`]) whenever their presence or the code changes.

use std::collections::HashMap;

use serde_json::{Value, json};
use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::sync::{AwarenessUpdate, Message};
use yrs::{Assoc, ClientID, Doc, IndexedSequence, StickyIndex, Transact};

/// The shared text of a dojo (as the server names it).
pub(crate) const CODE_TEXT: &str = "code";

/// Another participant's cursor, as an index into this client's copy of the code (UTF-16 code
/// units, like every index of a session).
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct RemoteCursor {
    /// Their awareness client (stable while they stay connected).
    pub client: u64,
    pub name: String,
    /// A CSS colour (`#rrggbb`) as their editor chose it, or empty.
    pub color: String,
    /// Where the selection started; equal to `head` for a plain cursor.
    pub anchor: u32,
    /// Where the caret is.
    pub head: u32,
}

/// This client's own presence, re-published on every reconnect.
#[derive(Default)]
pub(crate) struct Mine {
    /// Awareness clock: peers keep a state only if its clock is newer than the last one seen.
    clock: u32,
    user: Option<(String, String)>,
    cursor: Option<(StickyIndex, StickyIndex)>,
}

impl Mine {
    pub(crate) fn set_user(&mut self, name: String, color: String) {
        self.user = Some((name, color));
    }

    /// Pins the cursor to the characters at `anchor` and `head` (clamped to the text).
    pub(crate) fn set_cursor(&mut self, doc: &Doc, anchor: u32, head: u32) {
        let code = doc.get_or_insert_text(CODE_TEXT);
        let txn = doc.transact();
        let len = yrs::Text::len(&code, &txn);
        let pin = |index: u32| code.sticky_index(&txn, index.min(len), Assoc::After);
        self.cursor = pin(anchor).zip(pin(head));
    }

    pub(crate) fn clear_cursor(&mut self) {
        self.cursor = None;
    }

    /// The announcement for a new connection: the room removed this client's state when the
    /// old one closed, which moved its clock one past ours, so skip one.
    pub(crate) fn publish_again(&mut self, doc: &Doc) -> Option<Message> {
        self.clock = self.clock.wrapping_add(1);
        self.publish(doc)
    }

    /// The awareness message announcing this state (with a fresh clock), or `None` before the
    /// app said anything about itself.
    pub(crate) fn publish(&mut self, doc: &Doc) -> Option<Message> {
        if self.user.is_none() && self.cursor.is_none() {
            return None;
        }
        let (name, color) = self.user.clone().unwrap_or_default();
        let cursor = self.cursor.as_ref().map_or(
            Value::Null,
            |(anchor, head)| json!({ "anchor": anchor, "head": head }),
        );
        let state = json!({ "user": { "name": name, "color": color }, "cursor": cursor });
        self.clock = self.clock.wrapping_add(1);
        let entry = AwarenessUpdateEntry {
            clock: self.clock,
            json: state.to_string().into(),
        };
        Some(Message::Awareness(AwarenessUpdate {
            clients: [(doc.client_id(), entry)].into_iter().collect(),
        }))
    }
}

/// The others' cursors in `doc` now, from their awareness states (this client's own left out;
/// states without a cursor, or with one this copy cannot place yet, are skipped).
pub(crate) fn cursors(doc: &Doc, presence: &HashMap<ClientID, String>) -> Vec<RemoteCursor> {
    let txn = doc.transact();
    let mut cursors: Vec<RemoteCursor> = presence
        .iter()
        .filter(|(client, _)| **client != doc.client_id())
        .filter_map(|(client, state)| {
            let state: Value = serde_json::from_str(state).ok()?;
            let place = |key: &str| -> Option<u32> {
                let sticky: StickyIndex =
                    serde_json::from_value(state["cursor"][key].clone()).ok()?;
                Some(sticky.get_offset(&txn)?.index)
            };
            let text = |key: &str| state["user"][key].as_str().unwrap_or_default().to_owned();
            Some(RemoteCursor {
                client: client.get(),
                name: text("name"),
                color: text("color"),
                anchor: place("anchor")?,
                head: place("head")?,
            })
        })
        .collect();
    cursors.sort_by_key(|c| c.client);
    cursors
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{GetString, OffsetKind, Options, Text};

    fn doc(client: ClientID) -> Doc {
        Doc::with_options(Options {
            client_id: client,
            offset_kind: OffsetKind::Utf16,
            ..Options::default()
        })
    }

    fn sync(from: &Doc, to: &Doc) {
        let update = from
            .transact()
            .encode_state_as_update_v1(&to.transact().state_vector());
        let update = yrs::Update::decode_v1(&update).expect("an update");
        to.transact_mut().apply_update(update).expect("applies");
    }

    use yrs::ReadTxn;
    use yrs::updates::decoder::Decode;

    /// A cursor published by one copy is placed by another, and stays on its character when
    /// text is inserted before it — also after a character outside the BMP (UTF-16 indexes).
    #[test]
    fn a_cursor_follows_its_character_through_edits_before_it() {
        let (ana, bo) = (doc(ClientID::new(1)), doc(ClientID::new(2)));
        let code = ana.get_or_insert_text(CODE_TEXT);
        code.insert(&mut ana.transact_mut(), 0, "fn main() {}");
        sync(&ana, &bo);

        let mut mine = Mine::default();
        mine.set_user("Ana".into(), "#1e88e5".into());
        mine.set_cursor(&ana, 3, 7); // "main"
        let Some(Message::Awareness(update)) = mine.publish(&ana) else {
            panic!("a presence message");
        };
        let entry = &update.clients[&ClientID::new(1)];
        assert_eq!(entry.clock, 1);
        let presence: HashMap<ClientID, String> =
            [(ClientID::new(1), entry.json.to_string())].into();

        let seen = cursors(&bo, &presence);
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (seen[0].name.as_str(), seen[0].anchor, seen[0].head),
            ("Ana", 3, 7)
        );

        let theirs = bo.get_or_insert_text(CODE_TEXT);
        theirs.insert(&mut bo.transact_mut(), 0, "// 🦀\n");
        assert_eq!(theirs.get_string(&bo.transact()), "// 🦀\nfn main() {}");
        let moved = cursors(&bo, &presence);
        assert_eq!(
            (moved[0].anchor, moved[0].head),
            (9, 13),
            "6 UTF-16 units before it"
        );
        assert!(
            cursors(&ana, &presence).is_empty(),
            "one's own cursor is not a remote one"
        );
        assert_eq!(
            mine.publish(&ana).map(|_| mine.clock),
            Some(2),
            "a fresh clock each time"
        );

        // The room forgets a client whose connection closed by moving its clock one on: the
        // announcement on the next connection must be newer still, or it is ignored.
        let mut room = yrs::sync::Awareness::new(doc(ClientID::new(9)));
        let announce = |room: &mut yrs::sync::Awareness, message: Option<Message>| {
            let Some(Message::Awareness(update)) = message else {
                panic!("an announcement");
            };
            room.apply_update(update).expect("applies");
        };
        announce(&mut room, mine.publish(&ana));
        room.remove_state(ClientID::new(1));
        announce(&mut room, mine.publish_again(&ana));
        assert!(
            room.state::<Value>(ClientID::new(1)).is_some(),
            "announced again"
        );
    }
}
