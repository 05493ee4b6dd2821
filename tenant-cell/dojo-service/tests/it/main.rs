//! dojo-service integration tests: the real dojo-service and poc-service (which issues the
//! tokens and answers revocation checks) on port 0, real Postgres, real WebSocket clients
//! (tokio-tungstenite) holding real yrs documents.

mod fuzz;
mod handover;
mod harness;
mod live;
mod rest;
mod tickets;
mod yjs;
