//! Shared request state.

use std::sync::Arc;

use service_kit::peer::Authenticates;
use service_kit::peer::Peer;
use sqlx::PgPool;

use crate::config::Config;
use crate::room::Rooms;

/// Cheap to clone; handlers get it through `State`.
pub type AppState = service_kit::state::Shared<Inner>;

pub struct Inner {
    pub pool: PgPool,
    pub peer: Peer,
    pub config: Config,
    pub rooms: Arc<Rooms>,
    /// Set when the service stops: every live socket closes with `SERVICE_RESTART`; each holds
    /// a receiver, so the count of receivers is the count of sockets still open.
    pub closing: tokio::sync::watch::Sender<bool>,
}

impl Authenticates for Inner {
    fn peer(&self) -> &Peer {
        &self.peer
    }
}
