//! `/v1/dojos`, one module per resource: the dojos themselves (create, list, read, join by
//! code, end), their participants, their chat and code history. Who sees what: public dojos
//! everyone in the tenant; invite-only dojos their participants; admins everything.

pub mod dojos;
pub mod history;
pub mod participants;

use axum::Router;
use axum::extract::State;
use axum::routing::{delete, get, post};
use service_kit::extract::ApiJson;

use crate::state::AppState;

pub fn public(state: AppState) -> Router {
    Router::new()
        .route("/v1/dojos", get(dojos::list_dojos).post(dojos::create_dojo))
        .route("/v1/dojos/join", post(dojos::join_dojo))
        .route("/v1/dojos/{id}", get(dojos::get_dojo))
        .route("/v1/dojos/{id}/end", post(dojos::end_dojo))
        .route(
            "/v1/dojos/{id}/participants/{user_id}",
            delete(participants::remove_participant),
        )
        .route("/v1/dojos/{id}/chat", get(history::chat_history))
        .route("/v1/dojos/{id}/snapshots", get(history::snapshots))
        .route("/v1/dojos/{id}/live", get(crate::live::live))
        .route(
            "/v1/dojos/{id}/live-ticket",
            post(crate::tickets::create_ticket),
        )
        .with_state(state)
}

/// Routes of the internal listener (service token only).
pub fn internal(state: AppState) -> Router {
    Router::new()
        .route("/internal/v1/rooms", get(rooms))
        .with_state(state)
}

/// What is loaded in this instance: rooms and live connections (for operators).
async fn rooms(State(state): State<AppState>) -> ApiJson<wire_types::dojos::RoomTotals> {
    let (rooms, connections) = state.rooms.totals().await;
    ApiJson(wire_types::dojos::RoomTotals {
        rooms: u64::try_from(rooms).unwrap_or(u64::MAX),
        connections,
    })
}
