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
