//! `GET /v1/dojos/{id}/live`: the WebSocket. Authenticates (bearer header, a one-time `ticket`
//! from `POST /v1/dojos/{id}/live-ticket`, or a short-lived access `token` in the query; never
//! logged), admits the caller to the room, then pumps frames both ways.
//! Every refusal happens after the upgrade, as a close code the client can act on
//! (`wire_types::dojos::close`), because WebSocket clients cannot read HTTP error bodies.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use service_kit::ApiError;
use service_kit::extract::ApiPath;
use service_kit::jwt::Claims;
use service_kit::revocation::{Refused as Revoked, authenticate};
use tokio::sync::mpsc;
use uuid::Uuid;
use wire_types::ErrorCode;
use wire_types::auth::Role;
use wire_types::dojos::{ParticipantRole, close};

use crate::room::{Extensions, Outbound, Refused};
use crate::state::AppState;
use crate::store;

/// Live document, chat and signaling of a dojo (y-websocket protocol; `serverUrl` =
/// `<endpoint>/v1/dojos/{id}`, room `live`).
#[utoipa::path(get, path = "/v1/dojos/{id}/live", tag = "dojos", security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Dojo id"),
        ("ticket" = Option<String>, Query, description = "One-time ticket from `POST /v1/dojos/{id}/live-ticket`, for clients that cannot set headers (browsers): keeps access tokens out of URLs"),
        ("token" = Option<String>, Query, description = "Access token (short-lived), for clients that can neither set headers nor fetch a ticket; prefer `ticket`"),
        ("observer" = Option<bool>, Query, description = "Join as an observer"),
        ("acks" = Option<bool>, Query, description = "Send MSG_ACK once your updates are stored"),
        ("custom" = Option<bool>, Query, description = "Send chat, signal and room-event messages (tags 100–102); standard y-websocket clients leave it out and get only y-sync and awareness"),
    ),
    responses(
        (status = 101, description = "Switching to the y-websocket protocol; refusals are close codes 4001/4003/4004/4005/4006"),
        (status = 400, body = wire_types::ErrorBody),
    ))]
pub async fn live(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        return ApiError::new(
            ErrorCode::InvalidParameter,
            "this endpoint speaks WebSocket only",
        )
        .into_response();
    };
    let credential = match (
        service_kit::auth::bearer_token(&headers).ok(),
        query.get("ticket"),
        query.get("token"),
    ) {
        (Some(token), _, _) => Some(Credential::Token(token.to_owned())),
        (None, Some(ticket), _) => Some(Credential::Ticket(ticket.clone())),
        (None, None, token) => token.cloned().map(Credential::Token),
    };
    let flag = |name: &str| query.get(name).is_some_and(|v| v == "true" || v == "1");
    let observer = flag("observer");
    let wants = Extensions {
        acks: flag("acks"),
        custom: flag("custom"),
    };
    let limit = state.config.live.max_message_bytes;
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        // tungstenite reads in 128 KiB chunks by default: most of an idle socket's memory.
        // Frames here are small; larger ones still arrive whole, over several reads.
        .read_buffer_size(4096)
        .on_upgrade(move |socket| session(state, id, credential, observer, wants, socket))
}

async fn close_with(mut socket: WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

/// How a socket proves who it is.
enum Credential {
    /// An access token (header or `token` query parameter).
    Token(String),
    /// A one-time ticket (`ticket` query parameter).
    Ticket(String),
}

/// The caller behind `credential`: verified, unexpired and not revoked.
async fn identify(
    state: &AppState,
    dojo: Uuid,
    credential: Option<Credential>,
) -> Result<Claims, (u16, &'static str)> {
    let refused = |e: ApiError| {
        if e.code == ErrorCode::Unavailable {
            (1013, "cannot check the token right now")
        } else {
            (close::UNAUTHENTICATED, "invalid, expired or revoked token")
        }
    };
    match credential.ok_or((close::UNAUTHENTICATED, "missing token"))? {
        Credential::Token(token) => {
            authenticate(&token, &state.peer.verifier, &state.peer.revocation)
                .await
                .map_err(refused)
        }
        Credential::Ticket(ticket) => {
            let claims = crate::tickets::take(&state.pool, dojo, &ticket)
                .await
                .map_err(|_| (1013, "database unavailable"))?
                .ok_or((close::UNAUTHENTICATED, "invalid, used or expired ticket"))?;
            if claims.exp <= time::OffsetDateTime::now_utc().unix_timestamp() {
                return Err((close::UNAUTHENTICATED, "the ticket's token has expired"));
            }
            match state.peer.revocation.check(&claims).await {
                Ok(()) => Ok(claims),
                Err(Revoked::Unavailable) => Err((1013, "cannot check the token right now")),
                Err(Revoked::Revoked) => Err((close::UNAUTHENTICATED, "revoked token")),
            }
        }
    }
}

/// Who may enter, and as what; or the close code saying why not.
async fn admit(
    state: &AppState,
    dojo: Uuid,
    credential: Option<Credential>,
    observer: bool,
) -> Result<(Claims, store::DojoRow, ParticipantRole), (u16, &'static str)> {
    let claims = identify(state, dojo, credential).await?;
    let unavailable = |_| (1013, "database unavailable");
    let row = store::find(&state.pool, dojo)
        .await
        .map_err(unavailable)?
        .ok_or((close::NOT_FOUND, "no such dojo"))?;
    if row.ended_at.is_some() {
        return Err((close::ENDED, "the dojo has ended"));
    }
    let admin = claims.role == Role::Admin;
    let role = match store::membership(&state.pool, dojo, claims.sub.0)
        .await
        .map_err(unavailable)?
    {
        Some((_, true)) => return Err((close::FORBIDDEN, "removed from this dojo")),
        Some((role, false)) => role,
        None if row.private && !admin => {
            return Err((close::FORBIDDEN, "invite-only: join with the code first"));
        }
        None => {
            let wanted = if observer {
                ParticipantRole::Observer
            } else {
                ParticipantRole::Editor
            };
            store::join(&state.pool, dojo, claims.sub.0, wanted)
                .await
                .map_err(unavailable)?
                .0
        }
    };
    let role = if observer {
        ParticipantRole::Observer
    } else {
        role
    };
    Ok((claims, row, role))
}

async fn session(
    state: AppState,
    dojo: Uuid,
    credential: Option<Credential>,
    observer: bool,
    wants: Extensions,
    socket: WebSocket,
) {
    let (claims, row, role) = match admit(&state, dojo, credential, observer).await {
        Ok(admitted) => admitted,
        Err((code, reason)) => return close_with(socket, code, reason).await,
    };
    let max = u32::try_from(row.max_participants).unwrap_or(2);
    let admitted = match state.rooms.join(dojo, max, claims.sub.0, role, wants).await {
        Ok(admitted) => admitted,
        Err(Refused::Full) => return close_with(socket, close::ROOM_FULL, "room_full").await,
        Err(Refused::Unavailable) => return close_with(socket, 1013, "try again later").await,
    };
    let (peer, room, mut outbound) = (admitted.peer, admitted.room, admitted.outbound);
    let (mut sink, mut stream) = socket.split();
    // Closes decided here (expiry, limits) go through the writer, after what is queued.
    let (local, mut local_rx) = mpsc::channel::<Outbound>(1);
    let writer = tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                biased;
                next = local_rx.recv() => next,
                next = outbound.recv() => next,
            };
            let result = match next {
                Some(Outbound::Frames(frames)) => {
                    // This hand-over, and whatever else is already queued, in one write.
                    let mut result = Ok(());
                    let mut pending = Some(frames);
                    let mut handed = 0;
                    while let Some(frames) = pending.take() {
                        for frame in frames {
                            if result.is_ok() {
                                result = sink.feed(Message::Binary(frame)).await;
                            }
                        }
                        handed += 1;
                        if result.is_err() || handed >= 64 {
                            break;
                        }
                        match outbound.try_recv() {
                            Ok(Outbound::Frames(more)) => pending = Some(more),
                            Ok(Outbound::Ping) => {}
                            Ok(Outbound::Close(code, reason)) => {
                                let _ = sink
                                    .send(Message::Close(Some(CloseFrame {
                                        code,
                                        reason: reason.into(),
                                    })))
                                    .await;
                                return;
                            }
                            Err(_) => {}
                        }
                    }
                    match result {
                        Ok(()) => sink.flush().await,
                        Err(e) => Err(e),
                    }
                }
                Some(Outbound::Ping) => sink.send(Message::Ping(Default::default())).await,
                Some(Outbound::Close(code, reason)) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    break;
                }
                None => {
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            };
            if result.is_err() {
                break;
            }
        }
    });

    let limits = state.config.live;
    let mut tokens = limits.message_burst;
    let mut refilled = Instant::now();
    let expires = tokio::time::Instant::now()
        + Duration::from_secs(
            u64::try_from(claims.exp - time::OffsetDateTime::now_utc().unix_timestamp())
                .unwrap_or(0),
        );
    let mut recheck = tokio::time::interval(limits.recheck_every);
    recheck.tick().await;
    let mut ping = tokio::time::interval(limits.ping_every);
    ping.tick().await;
    let mut last_heard = Instant::now();
    let mut closing = state.closing.subscribe();
    let stop = |code, reason| {
        let _ = local.try_send(Outbound::Close(code, reason));
    };
    loop {
        tokio::select! {
            message = stream.next() => match message.inspect(|m| {
                if m.is_ok() {
                    last_heard = Instant::now();
                }
            }) {
                Some(Ok(Message::Binary(data))) => {
                    let now = Instant::now();
                    tokens = (tokens + now.duration_since(refilled).as_secs_f64() * limits.messages_per_sec)
                        .min(limits.message_burst);
                    refilled = now;
                    if tokens < 1.0 {
                        stop(close::RATE_LIMITED, "rate_limited");
                        break;
                    }
                    tokens -= 1.0;
                    if !room.frame(peer, data).await {
                        stop(1013, "room closed; reconnect");
                        break;
                    }
                }
                Some(Ok(Message::Text(_))) => {
                    stop(1003, "binary y-websocket frames only");
                    break;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(e)) => {
                    // tungstenite's capacity error: a message over `max_message_bytes`.
                    if format!("{e:#}").contains("Space limit exceeded") {
                        stop(1009, "message too big");
                    }
                    break;
                }
            },
            () = async { drop(closing.wait_for(|closing| *closing).await) } => {
                stop(close::SERVICE_RESTART, "service restart; reconnect");
                break;
            }
            () = tokio::time::sleep_until(expires) => {
                stop(close::UNAUTHENTICATED, "token expired");
                break;
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > limits.ping_every * 5 / 2 {
                    stop(1001, "no response to pings");
                    break;
                }
                let _ = local.try_send(Outbound::Ping);
            }
            _ = recheck.tick() => {
                let max_age = limits.revocation_window.saturating_sub(limits.recheck_every);
                if let Err(Revoked::Revoked) = state.peer.revocation.check_fresh(&claims, max_age).await {
                    stop(close::UNAUTHENTICATED, "token revoked");
                    break;
                }
            }
        }
    }
    room.leave(peer).await;
    drop(local);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}
