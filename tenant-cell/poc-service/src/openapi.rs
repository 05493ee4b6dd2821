//! OpenAPI 3.1 documents generated from the code: the public API (served at `/openapi.json`,
//! reachable as `/poc/openapi.json` through the router) and the internal API. Both are committed
//! next to `Cargo.toml` and a test fails when they drift.

use service_kit::openapi::Security;
use utoipa::OpenApi;

use crate::routes;

/// The public API.
#[derive(OpenApi)]
#[openapi(
    info(title = "poc-service", description = "Accounts, PoCs and search of one tenant cell. Every error is `{code, message, details}`; request bodies reject unknown fields. Health (`GET /healthz`) and readiness (`GET /readyz`: 503 with `Retry-After` until the service can serve) are answered on the service's own port for probes; the router does not forward them, so they are not operations of this document."),
    paths(
        routes::register, routes::confirm_email, routes::login, routes::refresh, routes::logout,
        routes::me, routes::update_profile, routes::change_password,
        routes::list_users, routes::get_user, routes::update_user, routes::issue_reset,
        routes::reset_password, routes::forgot_password,
        routes::create_invite, routes::list_invites, routes::revoke_invite,
        routes::get_settings, routes::update_settings,
        routes::search_pocs, routes::create_poc, routes::get_poc, routes::replace_poc, routes::patch_poc, routes::delete_poc,
        routes::search_status, routes::reindex,
    ),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Register, sign in, refresh and sign out"),
        (name = "users", description = "The caller's account and user administration"),
        (name = "invites", description = "Invitations (admins)"),
        (name = "settings", description = "Cell-wide account settings"),
        (name = "pocs", description = "PoCs and search"),
        (name = "admin", description = "Cell administration"),
    )
)]
pub struct PublicApi;

/// The internal API (internal listener, service token).
#[derive(OpenApi)]
#[openapi(
    info(title = "poc-service internal API", description = "Served on the internal listener only; the router never forwards to it."),
    paths(routes::token_version, routes::internal_pocs, routes::internal_aggregates),
    modifiers(&Security),
)]
pub struct InternalApi;

/// Pretty JSON of the public document (what is committed as `openapi.json`).
pub fn public_json() -> String {
    service_kit::openapi::json::<PublicApi>()
}

/// Pretty JSON of the internal document (committed as `openapi.internal.json`).
pub fn internal_json() -> String {
    service_kit::openapi::json::<InternalApi>()
}
