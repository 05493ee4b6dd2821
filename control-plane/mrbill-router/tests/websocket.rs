//! WebSocket upgrades through the router: a real WebSocket client (tokio-tungstenite) talks to
//! a real WebSocket server (axum) standing in for the dojo service.

mod common;

use axum::Router;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::routing::any;
use cell_model::route_feed::RouteState;
use common::{route, router};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite;

/// A dojo stand-in: echoes text frames, prefixed with the `X-Cell-Id` it was given.
async fn echo_ws() -> String {
    let app = Router::new().route(
        "/v1/dojos/{id}/live",
        any(
            |ws: WebSocketUpgrade, headers: axum::http::HeaderMap| async move {
                let cell = headers
                    .get("x-cell-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                ws.on_upgrade(move |mut socket| async move {
                    while let Some(Ok(Message::Text(text))) = socket.recv().await {
                        if socket
                            .send(Message::Text(format!("{cell}:{text}").into()))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                })
            },
        ),
    );
    common::serve(app).await
}

#[tokio::test]
async fn websocket_sessions_pass_through_the_router() {
    let mut acme = route("acme", RouteState::Active, "http://127.0.0.1:1");
    acme.services
        .insert(cell_model::contract::Service::Dojo, echo_ws().await);
    let (api, _) = router(vec![acme], None).await;

    let url = format!(
        "{}/t/acme/v1/dojos/42/live",
        api.base.replacen("http://", "ws://", 1)
    );
    let (mut socket, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("handshake through the router");
    assert_eq!(response.status(), 101);
    for text in ["hello", "second message"] {
        socket
            .send(tungstenite::Message::Text(text.into()))
            .await
            .expect("send");
        let reply = socket.next().await.expect("a reply").expect("a frame");
        assert_eq!(
            reply.into_text().expect("text").as_str(),
            format!("c-acme:{text}")
        );
    }
    socket.close(None).await.expect("close");
}

/// A dojo replica stand-in that echoes text frames prefixed with its own name.
async fn named_ws(name: &'static str) -> String {
    let app = Router::new().route(
        "/v1/dojos/{id}/live",
        any(move |ws: WebSocketUpgrade| async move {
            ws.on_upgrade(move |mut socket| async move {
                while let Some(Ok(Message::Text(text))) = socket.recv().await {
                    let reply = Message::Text(format!("{name}:{text}").into());
                    if socket.send(reply).await.is_err() {
                        break;
                    }
                }
            })
        }),
    );
    common::serve(app).await
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends `text` and returns the replica that answered, `None` if the socket is gone.
async fn ask(socket: &mut Socket, text: &str) -> Option<String> {
    socket
        .send(tungstenite::Message::Text(text.into()))
        .await
        .ok()?;
    let reply = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
        .await
        .expect("an answer or a close in time")?
        .ok()?;
    let text = reply.into_text().ok()?;
    text.split_once(':').map(|(name, _)| name.to_owned())
}

/// When the dojo replica set changes, a socket whose room now belongs to another replica is
/// closed with 1012 (its client reconnects there and the room is handed over); the others stay.
#[tokio::test]
async fn a_dojo_socket_follows_its_room_when_the_replica_set_changes() {
    use cell_model::contract::Service;
    let (d1, d2) = (named_ws("d1").await, named_ws("d2").await);
    let mut acme = route("acme", RouteState::Active, "http://127.0.0.1:1");
    acme.services.insert(Service::Dojo, d1.clone());
    let (api, state) = router(vec![acme.clone()], None).await;
    let url = |dojo: usize| {
        format!(
            "{}/t/acme/v1/dojos/0190e0c4-0000-7000-8000-{dojo:012}/live",
            api.base.replacen("http://", "ws://", 1)
        )
    };
    let mut sockets = Vec::new();
    for dojo in 0..12 {
        let (mut socket, _) = tokio_tungstenite::connect_async(url(dojo))
            .await
            .expect("handshake");
        assert_eq!(ask(&mut socket, "hi").await.as_deref(), Some("d1"));
        sockets.push(socket);
    }

    acme.replicas = [(Service::Dojo, vec![d1, d2])].into_iter().collect();
    acme.generation += 1;
    let mut table = cell_model::route_feed::RouteTable::default();
    table.apply(cell_model::route_feed::RouteEvent::Snapshot {
        revision: 2,
        routes: vec![acme],
    });
    state.set_table(table).expect("table");

    let mut moved = 0;
    for (dojo, socket) in sockets.iter_mut().enumerate() {
        // Where a fresh socket for this dojo goes now.
        let (mut fresh, _) = tokio_tungstenite::connect_async(url(dojo))
            .await
            .expect("handshake");
        let owner = ask(&mut fresh, "where").await.expect("an owner");
        match owner.as_str() {
            "d1" => assert_eq!(ask(socket, "still").await.as_deref(), Some("d1"), "{dojo}"),
            _ => {
                let close = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
                    .await
                    .expect("closed in time");
                match close {
                    Some(Ok(tungstenite::Message::Close(Some(frame)))) => {
                        assert_eq!(u16::from(frame.code), 1012, "{dojo}: {frame:?}");
                    }
                    other => panic!("{dojo} moved: {other:?}"),
                }
                assert_eq!(ask(socket, "still").await, None, "{dojo} moved but stayed");
                moved += 1;
            }
        }
    }
    assert!(
        (1..12).contains(&moved),
        "{moved} of 12 rooms moved to the new replica"
    );
}
