//! The OpenAPI 3.1 document of the REST API (served at `/openapi.json`, reachable as
//! `/dojo/openapi.json` through the router), committed as `openapi.json`; a test fails when it
//! drifts. The live socket's protocol is described in `wire_types::dojos`.

use service_kit::openapi::Security;
use utoipa::OpenApi;

use crate::{live, routes, tickets};

/// The public API.
#[derive(OpenApi)]
#[openapi(
    info(title = "dojo-service", description = "Live dojos of one tenant cell: REST for dojos, participants, chat history and code snapshots; `/v1/dojos/{id}/live` is a y-websocket endpoint (Yjs documents, awareness, custom chat/signaling messages). Every error is `{code, message, details}`; request bodies reject unknown fields. Health (`GET /healthz`) and readiness (`GET /readyz`: 503 with `Retry-After` until the service can serve) are answered on the service's own port for probes; the router does not forward them, so they are not operations of this document."),
    paths(
        routes::dojos::create_dojo, routes::dojos::list_dojos, routes::dojos::get_dojo,
        routes::dojos::join_dojo, routes::dojos::end_dojo,
        routes::participants::remove_participant,
        routes::history::chat_history, routes::history::snapshots,
        live::live, tickets::create_ticket,
    ),
    modifiers(&Security),
    tags(
        (name = "dojos", description = "Dojos, participants, chat and code history"),
    )
)]
pub struct PublicApi;

/// Pretty JSON of the document (what is committed as `openapi.json`).
pub fn public_json() -> String {
    service_kit::openapi::json::<PublicApi>()
}
