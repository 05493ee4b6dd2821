//! Shared request state.

use service_kit::peer::Authenticates;
use service_kit::peer::Peer;
use sqlx::PgPool;

use crate::artifacts::Artifacts;
use crate::config::Config;
use crate::poc::PocClient;

/// Cheap to clone; handlers and workers get it.
pub type AppState = service_kit::state::Shared<Inner>;

pub struct Inner {
    pub pool: PgPool,
    pub peer: Peer,
    pub config: Config,
    pub poc: PocClient,
    pub artifacts: Artifacts,
}

impl Authenticates for Inner {
    fn peer(&self) -> &Peer {
        &self.peer
    }
}
