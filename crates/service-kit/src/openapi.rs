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
