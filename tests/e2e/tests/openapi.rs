//! Every operation of the cell services' OpenAPI documents says how it is authenticated: a
//! bearer token, or it is one of the few that are public on purpose (listed here, so a new
//! public endpoint is a decision, not an accident). Clients and the isolation checks read the
//! documents, so an operation that needs a token and does not say so is a defect.

/// Public on purpose: signing in and up (the mailed code is the credential of confirming an
/// address; the refresh token that of refresh and logout), password resets (the reset token is the credential;
/// asking for one is rate limited and answers the same for any address), and downloads by
/// signed link.
const PUBLIC: &[(&str, &str, &str)] = &[
    ("poc", "post", "/v1/auth/register"),
    ("poc", "post", "/v1/auth/confirm-email"),
    ("poc", "post", "/v1/auth/login"),
    ("poc", "post", "/v1/auth/refresh"),
    ("poc", "post", "/v1/auth/logout"),
    ("poc", "post", "/v1/auth/password-reset"),
    ("poc", "post", "/v1/auth/forgot-password"),
    ("media", "get", "/v1/media/files/{id}/{file}"),
];

#[test]
fn every_operation_declares_bearer_auth_unless_public_on_purpose() {
    let mut missing = Vec::new();
    for (service, doc) in e2e_tests::openapi_documents() {
        assert!(
            doc["components"]["securitySchemes"]["bearer"].is_object(),
            "{service}: no bearer scheme"
        );
        for (route, ops) in doc["paths"].as_object().expect("paths") {
            for (method, op) in ops.as_object().expect("operations") {
                let public = PUBLIC.contains(&(service, method.as_str(), route.as_str()));
                let bearer = op["security"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
                if public == bearer {
                    missing.push(format!(
                        "{service} {} {route}: {}",
                        method.to_uppercase(),
                        if public {
                            "public, but declares a bearer token"
                        } else {
                            "declares no bearer token"
                        }
                    ));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}
