//! WebSocket upgrades through the router: a real WebSocket client (tokio-tungstenite) talks to
//! a real WebSocket server (axum) standing in for the dojo service.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::routing::any;
use cell_model::routes::{RouteEntry, RouteEvent, RouteState, RouteTable, ServiceUrls};
use futures_util::{SinkExt, StreamExt};
use mrbill_router::{AppState, Config, app};
use tokio_tungstenite::tungstenite;

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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn websocket_sessions_pass_through_the_router() {
    let dojo = echo_ws().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state =
        AppState::new(Config::new(addr, "mrbill.test", &format!("http://{addr}"))).expect("state");
    let route = RouteEntry {
        tenant: "acme".into(),
        cell_id: "c-acme".into(),
        generation: 1,
        state: RouteState::Active,
        services: ServiceUrls {
            poc: "http://127.0.0.1:1".into(),
            dojo: Some(dojo),
            media: None,
        },
        email_domains: Vec::new(),
    };
    let mut table = RouteTable::default();
    table.apply(RouteEvent::Snapshot {
        revision: 1,
        routes: vec![route],
    });
    state.set_table(table).expect("table");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let (mut socket, response) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/t/acme/v1/dojos/42/live"))
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
