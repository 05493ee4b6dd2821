//! The live socket with real y-websocket clients: convergence, late joiners, observers, chat,
//! signaling, limits and close codes, bad frames, and durability across a restart.

use std::time::Duration;

use serde_json::json;
use wire_types::dojos::{MSG_CHAT, MSG_SIGNAL, close};
use yrs::sync::{Message, SyncMessage};

use crate::harness::{Cell, Live};

fn id(dojo: &serde_json::Value) -> String {
    dojo["id"].as_str().expect("dojo id").to_owned()
}

#[tokio::test]
async fn concurrent_editors_converge_and_a_late_joiner_syncs() {
    converge(Cell::start().await).await;
}

/// Large rooms gather a batch's frames for a moment (`coalesce`); nothing is lost or reordered.
#[tokio::test]
async fn a_coalescing_room_converges_too() {
    converge(
        Cell::start_with(|c| {
            c.live.coalesce_from = 1;
            c.live.coalesce = std::time::Duration::from_millis(15);
        })
        .await,
    )
    .await;
}

async fn converge(cell: Cell) {
    let admin = cell.admin().await;
    let ada = cell.member(&admin, "ada@acme.test").await;
    let dojo = id(&cell
        .create_dojo(&admin, json!({ "initial_code": "" }))
        .await);
    let mut a = cell.connect(&dojo, &admin, "").await;
    let mut b = cell.connect(&dojo, &ada, "").await;
    a.settled(1).await;
    b.settled(1).await;
    for i in 0..20 {
        a.insert(0, &format!("a{i};")).await;
        b.insert(0, &format!("b{i};")).await;
    }
    a.until("a to see all 40 edits", |l| {
        l.code().len() == 40 * 3 + 10 * 2
    })
    .await;
    b.until("b to see all 40 edits", |l| {
        l.code().len() == 40 * 3 + 10 * 2
    })
    .await;
    assert_eq!(a.code(), b.code(), "both replicas hold the same text");
    // Deletions travel too.
    a.delete(0, 30).await;
    a.until("a's deletion", |l| l.code().len() == 40 * 3 + 10 * 2 - 30)
        .await;
    b.until("b to see the deletion", |l| {
        l.code().len() == 40 * 3 + 10 * 2 - 30
    })
    .await;
    assert_eq!(a.code(), b.code());
    let expected = a.code();

    let mut late = cell.connect(&dojo, &ada, "").await;
    late.until("the late joiner to sync", |l| l.code() == expected)
        .await;
}

#[tokio::test]
async fn observers_receive_everything_but_cannot_edit() {
    let cell = Cell::start().await;
    let admin = cell.admin().await;
    let ada = cell.member(&admin, "ada@acme.test").await;
    let dojo = id(&cell
        .create_dojo(&admin, json!({ "initial_code": "start\n" }))
        .await);
    let mut editor = cell.connect(&dojo, &admin, "").await;
    let mut observer = cell.connect(&dojo, &ada, "&observer=true").await;
    editor.settled(1).await;
    observer.settled(1).await;
    observer
        .until("the initial code", |l| l.code() == "start\n")
        .await;
    editor.insert(0, "// hello\n").await;
    observer
        .until("the editor's change", |l| l.code() == "// hello\nstart\n")
        .await;
    observer.insert(0, "EVIL").await;
    observer
        .until("the rejection", |l| {
            l.got.room.iter().any(|e| e["type"] == "rejected")
        })
        .await;
    editor.round_trip().await;
    assert_eq!(
        editor.code(),
        "// hello\nstart\n",
        "the observer's edit never spread"
    );
    let mut fresh = cell.connect(&dojo, &admin, "").await;
    fresh
        .until("a fresh sync", |l| l.code() == "// hello\nstart\n")
        .await;
}

#[tokio::test]
async fn chat_is_stored_broadcast_and_replayed_in_order() {
    let cell = Cell::start().await;
    let admin = cell.admin().await;
    let ada = cell.member(&admin, "ada@acme.test").await;
    let dojo = id(&cell.create_dojo(&admin, json!({})).await);
    let mut a = cell.connect(&dojo, &admin, "").await;
    let mut b = cell.connect(&dojo, &ada, "").await;
    a.settled(1).await;
    b.settled(1).await;
    for i in 0..5 {
        a.send_json(MSG_CHAT, &json!({ "text": format!("a says {i}") }))
            .await;
        b.send_json(MSG_CHAT, &json!({ "text": format!("b says {i}") }))
            .await;
    }
    a.until("ten chat messages", |l| l.got.chat.len() == 10)
        .await;
    b.until("ten chat messages", |l| l.got.chat.len() == 10)
        .await;
    let seqs = |l: &Live| {
        l.got
            .chat
            .iter()
            .map(|m| m["seq"].as_i64())
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(&a), seqs(&b), "everyone sees one order");
    let history = admin
        .dojo
        .get(&format!("/v1/dojos/{dojo}/chat?limit=6"))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(history["items"].as_array().map(Vec::len), Some(6));
    let rest = admin
        .dojo
        .get(&format!(
            "/v1/dojos/{dojo}/chat?after={}",
            history["next_after"]
        ))
        .await
        .assert_status(200)
        .clone();
    let replayed: Vec<_> = history["items"]
        .as_array()
        .into_iter()
        .chain(rest["items"].as_array())
        .flatten()
        .cloned()
        .collect();
    assert_eq!(
        replayed, a.got.chat,
        "history replays exactly what was broadcast"
    );
    // Bad chat is refused on the socket, which stays open, and the room keeps working.
    a.send_json(MSG_CHAT, &json!({ "text": "" })).await;
    a.send_json(MSG_CHAT, &json!({ "words": "x" })).await;
    a.send_json(MSG_CHAT, &json!({ "text": "nul \u{0} byte" }))
        .await;
    a.until("three rejections", |l| {
        l.got
            .room
            .iter()
            .filter(|e| e["type"] == "rejected")
            .count()
            == 3
    })
    .await;
    assert!(a.got.closed.is_none());
    b.send_json(MSG_CHAT, &json!({ "text": "still chatting" }))
        .await;
    a.until("the next message", |l| l.got.chat.len() == 11)
        .await;
}

#[tokio::test]
async fn a_signaling_message_reaches_only_its_target() {
    let cell = Cell::start().await;
    let admin = cell.admin().await;
    let ada = cell.member(&admin, "ada@acme.test").await;
    let bob = cell.member(&admin, "bob@acme.test").await;
    let dojo = id(&cell.create_dojo(&admin, json!({})).await);
    let mut a = cell.connect(&dojo, &admin, "").await;
    let mut b = cell.connect(&dojo, &ada, "").await;
    let mut c = cell.connect(&dojo, &bob, "").await;
    b.until("b's welcome", |l| {
        l.got.room.iter().any(|e| e["type"] == "welcome")
    })
    .await;
    let b_peer = b
        .got
        .room
        .iter()
        .find(|e| e["type"] == "welcome")
        .map(|e| e["you"]["peer"].clone());
    // Connections are admitted in any order: a knows the others from its welcome or a join.
    a.until("both other peers", |l| {
        let welcomed: usize = l
            .got
            .room
            .iter()
            .filter(|e| e["type"] == "welcome")
            .map(|e| e["peers"].as_array().map_or(0, Vec::len))
            .sum();
        welcomed + l.got.room.iter().filter(|e| e["type"] == "joined").count() == 2
    })
    .await;
    a.send_json(
        MSG_SIGNAL,
        &json!({ "to": b_peer, "signal": { "kind": "offer", "sdp": "v=0 offer" } }),
    )
    .await;
    b.until("the offer", |l| !l.got.signals.is_empty()).await;
    assert_eq!(b.got.signals[0]["signal"]["sdp"], "v=0 offer");
    assert_eq!(b.got.signals[0]["user_id"], admin.id.as_str());
    c.round_trip().await;
    a.round_trip().await;
    assert!(
        c.got.signals.is_empty() && a.got.signals.is_empty(),
        "nobody else hears it"
    );
    a.send_json(
        MSG_SIGNAL,
        &json!({ "to": 999_999, "signal": { "kind": "hangup" } }),
    )
    .await;
    a.until("a rejection", |l| {
        l.got.room.iter().any(|e| e["type"] == "rejected")
    })
    .await;
}

#[tokio::test]
async fn refusals_close_with_their_codes_without_disturbing_others() {
    let cell = Cell::start().await;
    let admin = cell.admin().await;
    let ada = cell.member(&admin, "ada@acme.test").await;
    let bob = cell.member(&admin, "bob@acme.test").await;
    let small = id(&cell
        .create_dojo(&admin, json!({ "max_participants": 2 }))
        .await);
    let mut a = cell.connect(&small, &admin, "").await;
    let mut b = cell.connect(&small, &ada, "").await;
    a.settled(1).await;
    b.settled(1).await;
    let mut full = cell.connect(&small, &bob, "").await;
    assert_eq!(full.closed_with().await, close::ROOM_FULL);
    a.insert(0, "still fine").await;
    b.until("a's edit", |l| l.code().starts_with("still fine"))
        .await;

    let url = |dojo: &str, q: &str| format!("ws://{}/v1/dojos/{dojo}/live{q}", cell.dojo_addr);
    let mut anonymous = Live::connect(&url(&small, ""), None).await;
    assert_eq!(anonymous.closed_with().await, close::UNAUTHENTICATED);
    let mut forged = Live::connect(&url(&small, "?token=not.a.jwt"), None).await;
    assert_eq!(forged.closed_with().await, close::UNAUTHENTICATED);
    let unknown = uuid::Uuid::new_v4().to_string();
    let mut missing = Live::connect(&url(&unknown, ""), Some(&ada.token)).await;
    assert_eq!(missing.closed_with().await, close::NOT_FOUND);
    let private = id(&cell.create_dojo(&admin, json!({ "private": true })).await);
    let mut outsider = cell.connect(&private, &bob, "").await;
    assert_eq!(outsider.closed_with().await, close::FORBIDDEN);
    // The header form of the token works too.
    let mut by_header = Live::connect(&url(&private, ""), Some(&admin.token)).await;
    by_header
        .until("a welcome", |l| !l.got.room.is_empty())
        .await;
    assert!(a.got.closed.is_none() && b.got.closed.is_none());
}

#[tokio::test]
async fn removed_participants_and_ended_dojos_are_disconnected() {
    let cell = Cell::start().await;
    let admin = cell.admin().await;
    let ada = cell.member(&admin, "ada@acme.test").await;
    let dojo = id(&cell.create_dojo(&admin, json!({})).await);
    let mut host = cell.connect(&dojo, &admin, "").await;
    let mut guest = cell.connect(&dojo, &ada, "").await;
    guest.until("welcome", |l| !l.got.room.is_empty()).await;
    admin
        .dojo
        .delete(&format!("/v1/dojos/{dojo}/participants/{}", ada.id))
        .await;
    assert_eq!(guest.closed_with().await, close::FORBIDDEN);
    let mut again = cell.connect(&dojo, &ada, "").await;
    assert_eq!(
        again.closed_with().await,
        close::FORBIDDEN,
        "removed stays removed"
    );
    admin
        .dojo
        .post(&format!("/v1/dojos/{dojo}/end"), &json!({}))
        .await
        .assert_status(200);
    assert_eq!(host.closed_with().await, close::ENDED);
    let mut late = cell.connect(&dojo, &admin, "").await;
    assert_eq!(late.closed_with().await, close::ENDED);
}

#[tokio::test]
async fn malformed_frames_close_only_that_connection() {
    let cell = Cell::start().await;
    let admin = cell.admin().await;
    let ada = cell.member(&admin, "ada@acme.test").await;
    let dojo = id(&cell
        .create_dojo(&admin, json!({ "initial_code": "" }))
        .await);
    let mut good = cell.connect(&dojo, &admin, "").await;
    let garbage: Vec<Vec<u8>> = vec![
        vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        vec![0, 2, 200, 1, 2, 3], // a sync update whose length overruns the frame
        vec![0, 9],               // an unknown sync step
        vec![0, 2, 3, 1, 2, 3],   // an update that does not decode
        vec![],
    ];
    for bytes in garbage {
        let mut bad = cell.connect(&dojo, &ada, "").await;
        bad.send_raw(bytes.clone()).await;
        assert_eq!(bad.closed_with().await, 1002, "frame {bytes:?}");
    }
    let mut text = cell.connect(&dojo, &ada, "").await;
    let _ = futures_util::SinkExt::send(
        &mut text.socket,
        tokio_tungstenite::tungstenite::Message::Text("hello".into()),
    )
    .await;
    assert_eq!(text.closed_with().await, 1003);
    good.insert(0, "alive").await;
    let mut check = cell.connect(&dojo, &admin, "").await;
    check
        .until("the good editor's text", |l| l.code() == "alive")
        .await;
    assert!(good.got.closed.is_none());
}

#[tokio::test]
async fn message_size_and_rate_limits_close_the_offender() {
    let cell = Cell::start_with(|c| {
        c.live.max_message_bytes = 4096;
        c.live.messages_per_sec = 5.0;
        c.live.message_burst = 10.0;
    })
    .await;
    let admin = cell.admin().await;
    let dojo = id(&cell.create_dojo(&admin, json!({})).await);
    let mut big = cell.connect(&dojo, &admin, "").await;
    big.send_raw(vec![7u8; 10_000]).await;
    assert_eq!(big.closed_with().await, 1009);
    let mut chatty = cell.connect(&dojo, &admin, "").await;
    for i in 0..40 {
        chatty
            .send_json(MSG_CHAT, &json!({ "text": format!("spam {i}") }))
            .await;
    }
    assert_eq!(chatty.closed_with().await, close::RATE_LIMITED);
}

#[tokio::test]
async fn acknowledged_updates_and_chat_survive_a_restart_and_clients_are_told_to_reconnect() {
    let mut cell = Cell::start_with(|c| c.live.compact_every = 7).await;
    let admin = cell.admin().await;
    let dojo = id(&cell
        .create_dojo(&admin, json!({ "initial_code": "" }))
        .await);
    let mut editor = cell.connect(&dojo, &admin, "&acks=true").await;
    for i in 0..20 {
        editor.insert(0, &format!("{i};")).await;
    }
    editor
        .send_json(MSG_CHAT, &json!({ "text": "before the restart" }))
        .await;
    editor
        .until("all 20 updates acknowledged", |l| {
            l.got.acks.iter().any(|a| a["updates"] == 20)
        })
        .await;
    editor
        .until("the chat echo", |l| !l.got.chat.is_empty())
        .await;
    let expected = editor.code();
    cell.start_dojo().await;
    // The stopping service told the client to reconnect (a restart, or the cell moving).
    assert_eq!(editor.closed_with().await, close::SERVICE_RESTART);
    let mut back = cell.connect(&dojo, &admin, "").await;
    back.until("the document after restart", |l| l.code() == expected)
        .await;
    let chat = admin_chat(&cell, &admin.token, &dojo).await;
    assert_eq!(chat, ["before the restart"]);
    let snapshots = cell
        .as_user(&admin)
        .get(&format!("/v1/dojos/{dojo}/snapshots"))
        .await
        .assert_status(200)
        .clone();
    assert!(
        snapshots["items"].as_array().map_or(0, Vec::len) >= 2,
        "compactions leave a code history: {snapshots}"
    );
}

async fn admin_chat(cell: &Cell, token: &str, dojo: &str) -> Vec<String> {
    let page = cell
        .dojo
        .with_token(token)
        .get(&format!("/v1/dojos/{dojo}/chat"))
        .await
        .assert_status(200)
        .clone();
    page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn sync_step_one_from_an_up_to_date_client_gets_an_empty_diff() {
    let cell = Cell::start().await;
    let admin = cell.admin().await;
    let dojo = id(&cell
        .create_dojo(&admin, json!({ "initial_code": "abc" }))
        .await);
    let mut client = cell.connect(&dojo, &admin, "").await;
    client.until("the code", |l| l.code() == "abc").await;
    let sv = client.state_vector();
    let replies = client.got.step2.len();
    client.send(Message::Sync(SyncMessage::SyncStep1(sv))).await;
    client
        .until("the server's step 2", |l| l.got.step2.len() > replies)
        .await;
    let reply = &client.got.step2[replies];
    let update =
        <yrs::Update as yrs::updates::decoder::Decode>::decode_v1(reply).expect("an update");
    assert!(update.is_empty(), "nothing the client lacks: {reply:?}");
    assert_eq!(client.code(), "abc");
}

/// Revocation with tokens that would live for minutes: only the re-check can close the socket,
/// and it must within the window even though requests trust cached answers for 30 s (the
/// defaults; the window is shortened to 2 s to keep the test short).
#[tokio::test]
async fn a_revoked_user_s_socket_closes_within_the_revocation_window() {
    let cell = Cell::start_full(
        |poc| poc.access_ttl = Duration::from_secs(300),
        |dojo| {
            dojo.live.revocation_window = Duration::from_secs(2);
            dojo.live.recheck_every = Duration::from_millis(500);
            dojo.peer.revocation_cache = Duration::from_secs(30);
        },
    )
    .await;
    let admin = cell.admin().await;
    let ada = cell.member(&admin, "ada@acme.test").await;
    let dojo = id(&cell.create_dojo(&admin, json!({})).await);
    // A request first, so the 30 s cache holds "Ada is fine".
    ada.dojo.get("/v1/dojos").await.assert_status(200);
    let mut revoked = cell.connect(&dojo, &ada, "").await;
    revoked.until("welcome", |l| !l.got.room.is_empty()).await;
    let mut bystander = cell.connect(&dojo, &admin, "").await;
    bystander.settled(1).await;
    // The admin disables Ada in poc-service: her token version changes.
    cell.poc
        .with_token(&admin.token)
        .patch(
            &format!("/v1/users/{}", ada.id),
            &json!({ "disabled": true }),
        )
        .await
        .assert_status(200);
    let started = std::time::Instant::now();
    assert_eq!(revoked.closed_with().await, close::UNAUTHENTICATED);
    assert_eq!(
        revoked.got.closed.as_ref().map(|c| c.1.as_str()),
        Some("token revoked")
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "closed after {:?}",
        started.elapsed()
    );
    bystander.round_trip().await;
    assert!(bystander.got.closed.is_none(), "others stay connected");
}

#[tokio::test]
async fn an_expiring_token_closes_the_socket_as_expired_not_revoked() {
    let cell = Cell::start_full(
        |poc| poc.access_ttl = Duration::from_secs(2),
        |dojo| dojo.live.recheck_every = Duration::from_millis(300),
    )
    .await;
    let admin = cell.admin().await;
    let dojo = id(&cell.create_dojo(&admin, json!({})).await);
    let mut expiring = cell.connect(&dojo, &admin, "").await;
    expiring.until("welcome", |l| !l.got.room.is_empty()).await;
    assert_eq!(expiring.closed_with().await, close::UNAUTHENTICATED);
    assert_eq!(
        expiring.got.closed.as_ref().map(|c| c.1.as_str()),
        Some("token expired")
    );
}

/// dojo's REST API refuses a disabled user's still-unexpired token once its cached answer
/// about the user runs out (1 s here, ≤ 30 s in production).
#[tokio::test]
async fn a_disabled_user_is_refused_by_the_rest_api_within_the_cache_ttl() {
    let cell = Cell::start_full(
        |poc| poc.access_ttl = Duration::from_secs(300),
        |dojo| dojo.peer.revocation_cache = Duration::from_secs(1),
    )
    .await;
    let admin = cell.admin().await;
    let ada = cell.member(&admin, "ada@acme.test").await;
    let dojo = id(&cell.create_dojo(&admin, json!({})).await);
    ada.dojo.get("/v1/dojos").await.assert_status(200);
    cell.poc
        .with_token(&admin.token)
        .patch(
            &format!("/v1/users/{}", ada.id),
            &json!({ "disabled": true }),
        )
        .await
        .assert_status(200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ada.dojo
        .get("/v1/dojos")
        .await
        .assert_error(401, "unauthenticated");
    ada.dojo
        .get(&format!("/v1/dojos/{dojo}/chat"))
        .await
        .assert_error(401, "unauthenticated");
    ada.dojo
        .post("/v1/dojos", &json!({}))
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn random_frames_never_crash_the_service_or_disturb_others() {
    let cell = Cell::start_with(|c| {
        c.live.messages_per_sec = 10_000.0;
        c.live.message_burst = 10_000.0;
    })
    .await;
    let admin = cell.admin().await;
    let ada = cell.member(&admin, "ada@acme.test").await;
    let dojo = id(&cell
        .create_dojo(&admin, json!({ "initial_code": "" }))
        .await);
    let mut good = cell.connect(&dojo, &admin, "").await;
    good.settled(0).await;
    // A reproducible stream of frames: random bytes, often behind a valid message tag.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut fuzzer = cell.connect(&dojo, &ada, "").await;
    let (mut sent, mut closes) = (0, 0);
    while sent < 400 {
        let len = (next() % 48) as usize;
        let mut frame: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match next() % 4 {
            0 => frame.insert(0, 0), // sync
            1 => frame.splice(0..0, [0, (next() % 3) as u8]).for_each(drop),
            2 => frame.insert(0, [1, 100, 101, 3][(next() % 4) as usize]),
            _ => {}
        }
        fuzzer.send_raw(frame).await;
        sent += 1;
        fuzzer.pump(Duration::from_millis(5)).await;
        if fuzzer.got.closed.is_some() {
            closes += 1;
            fuzzer = cell.connect(&dojo, &ada, "").await;
        }
    }
    assert!(
        closes > 10,
        "most random frames are protocol errors ({closes} closes)"
    );
    good.insert(0, "still here").await;
    let mut check = cell.connect(&dojo, &admin, "").await;
    check
        .until("the good editor's text", |l| {
            l.code().contains("still here")
        })
        .await;
    assert!(
        good.got.closed.is_none(),
        "the good editor was never disturbed"
    );
    cell.dojo.get("/healthz").await.assert_status(200);
    let metrics = reqwest::get(format!("http://{}/metrics", cell.dojo_addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "dojo_rooms_loaded",
        "dojo_connections",
        "dojo_updates_total",
        "dojo_fanout_seconds",
        "dojo_persist_seconds",
    ] {
        assert!(metrics.contains(name), "/metrics has {name}");
    }
}

#[tokio::test]
async fn awareness_reaches_everyone_including_a_lone_sender() {
    let cell = Cell::start().await;
    let admin = cell.admin().await;
    let ada = cell.member(&admin, "ada@acme.test").await;
    let dojo = id(&cell.create_dojo(&admin, json!({})).await);
    let mut alone = cell.connect(&dojo, &admin, "").await;
    alone.settled(0).await;
    // y-websocket clients reconnect after 30 s without any message; their own presence
    // renewals coming back is what keeps a lone client connected.
    let before = alone.got.awareness;
    alone
        .set_presence(&json!({ "user": { "name": "admin" }, "cursor": 3 }))
        .await;
    alone
        .until("its own presence back", |l| l.got.awareness > before)
        .await;
    let mut other = cell.connect(&dojo, &ada, "").await;
    other
        .until("the first client's presence", |l| l.got.awareness > 0)
        .await;
    // When the first client leaves, its presence is removed for the others.
    let seen = other.got.awareness;
    drop(alone);
    other
        .until("the departure", |l| {
            l.got.awareness > seen && l.got.room.iter().any(|e| e["type"] == "left")
        })
        .await;
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_dropped_and_live_ones_stay() {
    let cell = Cell::start_with(|c| c.live.ping_every = Duration::from_millis(200)).await;
    let admin = cell.admin().await;
    let ada = cell.member(&admin, "ada@acme.test").await;
    let dojo = id(&cell.create_dojo(&admin, json!({})).await);
    let mut watcher = cell.connect(&dojo, &admin, "").await;
    watcher.settled(0).await;
    // Connected, then never reads again: it cannot answer pings (a vanished phone, say).
    let _silent = cell.connect(&dojo, &ada, "").await;
    watcher
        .until("the silent peer to be dropped", |l| {
            l.got.room.iter().any(|e| e["type"] == "left")
        })
        .await;
    watcher.pump(Duration::from_millis(800)).await;
    assert!(
        watcher.got.closed.is_none(),
        "a client that reads answers pings and stays"
    );
}

/// Presence belongs to the socket that announced it: another member cannot overwrite or
/// erase it (a spoofed cursor, a fake "left").
#[tokio::test]
async fn awareness_may_only_change_the_senders_own_clients() {
    let cell = Cell::start().await;
    let admin = cell.admin().await;
    let ada = cell.member(&admin, "ada@acme.test").await;
    let dojo = id(&cell.create_dojo(&admin, json!({})).await);
    let mut owner = cell.connect(&dojo, &admin, "").await;
    owner.settled(0).await;
    owner
        .set_presence(&json!({ "user": { "name": "admin" }, "cursor": 3 }))
        .await;
    owner
        .until("its presence back", |l| l.got.awareness > 0)
        .await;
    let mut spoofer = cell.connect(&dojo, &ada, "").await;
    spoofer.settled(1).await;
    let victim = owner.doc.client_id();
    for (clock, state) in [(7, r#"{"user":{"name":"evil"},"cursor":0}"#), (8, "null")] {
        let spoof = yrs::sync::AwarenessUpdate {
            clients: [(
                victim,
                yrs::sync::awareness::AwarenessUpdateEntry {
                    clock,
                    json: state.into(),
                },
            )]
            .into_iter()
            .collect(),
        };
        spoofer.send(yrs::sync::Message::Awareness(spoof)).await;
    }
    spoofer
        .until("the refusals", |l| {
            l.got
                .room
                .iter()
                .filter(|e| e["type"] == "rejected")
                .count()
                == 2
        })
        .await;
    // A newcomer sees the owner's real presence.
    let mut newcomer = cell.connect(&dojo, &admin, "").await;
    newcomer.settled(2).await;
    let states = newcomer.presence();
    assert_eq!(
        states.get(&victim).map(|s| s["user"]["name"].clone()),
        Some(json!("admin")),
        "{states:?}"
    );
    // The spoofer's own presence is its to change.
    spoofer
        .set_presence(&json!({ "user": { "name": "ada" } }))
        .await;
    spoofer.round_trip().await;
    assert_eq!(
        spoofer
            .got
            .room
            .iter()
            .filter(|e| e["type"] == "rejected")
            .count(),
        2
    );
}

/// A standard y-websocket client (it asks for no extensions) receives only y-sync and
/// awareness messages, however busy the room: chat, signals and room events would be
/// "Unable to compute message" for it.
#[tokio::test]
async fn a_client_that_asks_for_no_extensions_gets_only_sync_and_awareness() {
    let cell = Cell::start().await;
    let admin = cell.admin().await;
    let ada = cell.member(&admin, "ada@acme.test").await;
    let dojo = id(&cell
        .create_dojo(&admin, json!({ "initial_code": "hi" }))
        .await);
    let mut plain = cell.connect(&dojo, &ada, "&custom=false").await;
    let mut app = cell.connect(&dojo, &admin, "").await;
    app.settled(1).await;
    app.send_json(100, &json!({ "text": "hello room" })).await;
    app.until("its chat back", |l| !l.got.chat.is_empty()).await;
    app.insert(2, "!").await;
    plain.until("the edit", |l| l.code() == "hi!").await;
    drop(app);
    plain.pump(Duration::from_millis(300)).await;
    assert!(
        plain.got.chat.is_empty() && plain.got.room.is_empty() && plain.got.signals.is_empty(),
        "custom messages reached a standard client: {:?}",
        plain.got
    );
}

async fn stored(cell: &Cell, dojo: &str) -> (i64, i64, i64, i64) {
    let pool = sqlx::PgPool::connect(&cell.dojo_url).await.expect("pool");
    let dojo: uuid::Uuid = dojo.parse().expect("uuid");
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM dojo_snapshots WHERE dojo_id = $1),
                (SELECT coalesce(max(octet_length(state)), 0)::bigint FROM dojo_snapshots WHERE dojo_id = $1),
                (SELECT count(*) FROM dojo_updates WHERE dojo_id = $1),
                (SELECT coalesce(sum(octet_length(update)), 0)::bigint FROM dojo_updates WHERE dojo_id = $1)",
    )
    .bind(dojo)
    .fetch_one(&pool)
    .await
    .expect("storage figures")
}

/// The attack: a member streams large edits from several sockets at once. Its user's write
/// budget closes them (4029) long before the database or the room's memory fills, nothing
/// another user had acknowledged is lost, and history keeps a bounded number of snapshots.
#[tokio::test]
async fn a_member_streaming_large_edits_is_stopped_and_storage_stays_bounded() {
    let mut cell = Cell::start_with(|c| {
        c.live.user_write_bytes_per_sec = 4.0 * 1024.0;
        c.live.user_write_burst = 64.0 * 1024.0;
        c.live.compact_every = 3;
        c.live.keep_snapshots = 3;
        c.live.messages_per_sec = 1000.0;
        c.live.message_burst = 1000.0;
    })
    .await;
    let admin = cell.admin().await;
    let mallory = cell.member(&admin, "mallory@acme.test").await;
    let dojo = id(&cell
        .create_dojo(&admin, json!({ "initial_code": "" }))
        .await);
    let mut honest = cell.connect(&dojo, &admin, "&acks=true").await;
    honest.settled(0).await;
    honest.insert(0, "keep me").await;
    honest
        .until("the edit stored", |l| !l.got.acks.is_empty())
        .await;

    let chunk = "x".repeat(16 * 1024);
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let mut s = cell.connect(&dojo, &mallory, "").await;
        s.until("welcome", |l| !l.got.room.is_empty()).await;
        sockets.push(s);
    }
    for _ in 0..8 {
        for s in &mut sockets {
            s.insert(0, &chunk).await;
        }
    }
    for s in &mut sockets {
        assert_eq!(s.closed_with().await, close::RATE_LIMITED);
    }
    honest.round_trip().await;
    assert!(honest.got.closed.is_none(), "the honest editor stays");
    let text = honest.code();
    assert!(text.contains("keep me"), "acknowledged work kept");
    assert!(
        text.len() <= 64 * 1024 + 16,
        "at most the attacker's burst got in: {} bytes",
        text.len()
    );
    // The room reloads from what was stored: the same text, from bounded storage.
    drop(honest);
    cell.start_dojo().await;
    let mut fresh = cell.connect(&dojo, &admin, "").await;
    fresh.until("the stored text", |l| l.code() == text).await;
    let (snapshots, _, updates, log_bytes) = stored(&cell, &dojo).await;
    assert!(snapshots <= 3, "{snapshots} snapshots kept");
    assert!(
        updates <= 3 && log_bytes <= 64 * 1024,
        "{updates} updates, {log_bytes} B of log"
    );
}

/// Past the document's size limit an edit closes its socket with 4013 and is not stored; the
/// edits acknowledged before it are all there.
#[tokio::test]
async fn an_edit_past_the_document_size_limit_is_refused_with_4013() {
    let cell = Cell::start_with(|c| c.live.max_document_bytes = 40 * 1024).await;
    let admin = cell.admin().await;
    let dojo = id(&cell
        .create_dojo(&admin, json!({ "initial_code": "" }))
        .await);
    let mut writer = cell.connect(&dojo, &admin, "&acks=true").await;
    writer.settled(0).await;
    let chunk = "y".repeat(8 * 1024);
    for _ in 0..8 {
        writer.insert(0, &chunk).await;
    }
    assert_eq!(writer.closed_with().await, close::DOCUMENT_FULL);
    let acked = writer
        .got
        .acks
        .iter()
        .filter_map(|a| a["updates"].as_u64())
        .max()
        .unwrap_or(0) as usize;
    assert!((3..8).contains(&acked), "{acked} edits acknowledged");
    let mut reader = cell.connect(&dojo, &admin, "").await;
    reader
        .until("every acknowledged edit", |l| {
            l.code().len() >= acked * chunk.len()
        })
        .await;
    assert!(reader.code().len() <= 40 * 1024, "{}", reader.code().len());
}

/// Storage fails (a trigger refuses every stored update). The edit reaches the other socket
/// at once (storing is off the fan-out path) but is never acknowledged; every socket closes
/// with 1011 and a new client gets the document as stored. Once storage is back, a client that
/// holds the edit (here the one that only received it) resyncs and the edit is stored: nothing
/// fanned out is lost.
#[tokio::test]
async fn a_storage_failure_closes_the_room_with_1011_and_acknowledges_nothing_unstored() {
    let cell = Cell::start().await;
    let admin = cell.admin().await;
    let dojo = id(&cell
        .create_dojo(&admin, json!({ "initial_code": "kept" }))
        .await);
    let mut author = cell.connect(&dojo, &admin, "&acks=true&custom=true").await;
    let mut other = cell.connect(&dojo, &admin, "&custom=true").await;
    author.settled(1).await;
    other.settled(1).await;

    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(&cell.dojo_url)
        .await
        .expect("db");
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_update() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'disk full'; END $$;
         CREATE TRIGGER refuse_update BEFORE INSERT ON dojo_updates
           FOR EACH ROW EXECUTE FUNCTION refuse_update();",
    )
    .execute(&mut db)
    .await
    .expect("trigger");
    author.insert(0, "lost? ").await;
    author
        .send_json(MSG_CHAT, &json!({ "text": "in the failed batch" }))
        .await;
    assert_eq!(author.closed_with().await, 1011);
    assert_eq!(other.closed_with().await, 1011);
    assert_eq!(other.code(), "lost? kept", "the edit was fanned out");
    assert!(
        author.got.acks.is_empty(),
        "nothing unstored was acknowledged"
    );
    assert!(
        author.got.chat.is_empty() && other.got.chat.is_empty(),
        "no unstored chat was shown"
    );

    sqlx::raw_sql("DROP TRIGGER refuse_update ON dojo_updates")
        .execute(&mut db)
        .await
        .expect("drop trigger");
    let mut fresh = cell.connect(&dojo, &admin, "").await;
    fresh
        .until("the stored document", |l| l.code() == "kept")
        .await;
    // The client that received the edit comes back with its document, as y-websocket does:
    // its sync stores the edit.
    let mut back = cell.connect(&dojo, &admin, "&acks=true").await;
    let update = {
        use yrs::{ReadTxn, Transact};
        other
            .doc
            .transact()
            .encode_state_as_update_v1(&yrs::StateVector::default())
    };
    back.send(Message::Sync(SyncMessage::Update(update))).await;
    back.until("the resync stored (acknowledged)", |l| {
        !l.got.acks.is_empty()
    })
    .await;
    fresh
        .until("the edit after the resync", |l| l.code() == "lost? kept")
        .await;
}
