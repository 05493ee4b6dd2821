//! OpenAPI pieces shared by the services' documents.

use utoipa::Modify;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

/// The security schemes every service documents: `bearer` (access tokens) and
/// `service_token` (the internal listener).
pub struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "Access token from /v1/auth/login (EdDSA, ≤ 5 min, this cell only)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "service_token",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The cell's service token (internal listener only)"))
                    .build(),
            ),
        );
    }
}

/// A service's document as pretty JSON (what `openapi.json` and the committed copy hold).
pub fn json<T: utoipa::OpenApi>() -> String {
    T::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
}

/// `GET /openapi.json` answering `document`.
pub fn route<S: Clone + Send + Sync + 'static>(document: fn() -> String) -> axum::Router<S> {
    axum::Router::new().route(
        "/openapi.json",
        axum::routing::get(move || async move {
            (
                [(http::header::CONTENT_TYPE, "application/json")],
                document(),
            )
        }),
    )
}
