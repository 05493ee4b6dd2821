//! The OpenAPI 3.1 document of the REST API (served at `/openapi.json`, reachable as
//! `/media/openapi.json` through the router), committed as `openapi.json`; a test fails when it
//! drifts.

use service_kit::openapi::Security;
use utoipa::OpenApi;

use crate::routes;

/// The public API.
#[derive(OpenApi)]
#[openapi(
    info(title = "media-service", description = "Reports and the yearly video of one tenant cell. `GET /v1/reports/dashboard` answers at once; reports and videos are jobs (`202` + `Location`) that move pending → processing → completed | failed | cancelled with `progress` 0–100, and carry signed, expiring download links once completed. Every error is `{code, message, details}`; request bodies reject unknown fields. Health (`GET /healthz`) and readiness (`GET /readyz`: 503 with `Retry-After` until the service can serve) are answered on the service's own port for probes; the router does not forward them, so they are not operations of this document."),
    paths(
        routes::dashboard::dashboard,
        routes::reports::create_report, routes::reports::list_reports,
        routes::reports::get_report, routes::reports::delete_report,
        routes::reports::cancel_report,
        routes::videos::create_video, routes::videos::list_videos, routes::videos::get_video,
        routes::videos::delete_video, routes::videos::cancel_video,
        routes::videos::download_video, routes::videos::video_thumbnail,
        routes::files::file,
    ),
    modifiers(&Security),
    tags(
        (name = "reports", description = "Dashboard figures and report jobs (PDF, CSV, JSON)"),
        (name = "videos", description = "Yearly video jobs"),
        (name = "files", description = "Downloads by signed link"),
    )
)]
pub struct PublicApi;

/// Pretty JSON of the document (what is committed as `openapi.json`).
pub fn public_json() -> String {
    service_kit::openapi::json::<PublicApi>()
}
