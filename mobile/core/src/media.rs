//! Reports and yearly videos: start one, watch its progress until it is done, and open its
//! files through absolute, signed, expiring links.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use wire_types::media::{CreateReport, CreateVideo, Download, JobState, JobStatus, Report, Video};

use crate::client::MrBill;
use crate::error::CoreError;

/// How often a watched job is asked for.
const POLL: Duration = Duration::from_millis(500);

/// Progress of a report or video the app watches.
#[uniffi::export(with_foreign)]
pub trait JobListener: Send + Sync {
    /// `progress` is 0–100.
    fn on_progress(&self, state: JobState, progress: u8);
}

#[uniffi::export(async_runtime = "tokio")]
impl MrBill {
    /// Queues a report (PDF, CSV or JSON) of the PoCs the user may see.
    pub async fn start_report(&self, request: CreateReport) -> Result<Report, CoreError> {
        let body = crate::client::to_json(&request)?;
        let report: Report = self.authed(Method::POST, "/v1/reports", Some(body)).await?;
        Ok(self.absolute_report(report))
    }

    pub async fn report(&self, id: String) -> Result<Report, CoreError> {
        let id = job_id(&id)?;
        let report: Report = self
            .authed(Method::GET, &format!("/v1/reports/{id}"), None)
            .await?;
        Ok(self.absolute_report(report))
    }

    /// Asks for the report every half second, telling `listener` each change, until it is
    /// completed, failed or cancelled; returns it then (with its download link when completed).
    pub async fn watch_report(
        &self,
        id: String,
        listener: Arc<dyn JobListener>,
    ) -> Result<Report, CoreError> {
        watch(&*listener, || self.report(id.clone()), |r| &r.status).await
    }

    /// Queues the yearly video (an MP4 of the year's PoCs, with a thumbnail).
    pub async fn start_video(&self, request: CreateVideo) -> Result<Video, CoreError> {
        let body = crate::client::to_json(&request)?;
        let video: Video = self.authed(Method::POST, "/v1/videos", Some(body)).await?;
        Ok(self.absolute_video(video))
    }

    pub async fn video(&self, id: String) -> Result<Video, CoreError> {
        let id = job_id(&id)?;
        let video: Video = self
            .authed(Method::GET, &format!("/v1/videos/{id}"), None)
            .await?;
        Ok(self.absolute_video(video))
    }

    /// Like [`MrBill::watch_report`], for a video.
    pub async fn watch_video(
        &self,
        id: String,
        listener: Arc<dyn JobListener>,
    ) -> Result<Video, CoreError> {
        watch(&*listener, || self.video(id.clone()), |v| &v.status).await
    }

    /// Stops a report that has not finished.
    pub async fn cancel_report(&self, id: String) -> Result<Report, CoreError> {
        let id = job_id(&id)?;
        let report: Report = self
            .authed(Method::POST, &format!("/v1/reports/{id}/cancel"), None)
            .await?;
        Ok(self.absolute_report(report))
    }

    /// Stops a video that has not finished.
    pub async fn cancel_video(&self, id: String) -> Result<Video, CoreError> {
        let id = job_id(&id)?;
        let video: Video = self
            .authed(Method::POST, &format!("/v1/videos/{id}/cancel"), None)
            .await?;
        Ok(self.absolute_video(video))
    }
}

impl MrBill {
    fn absolute_report(&self, mut report: Report) -> Report {
        report.download = report.download.map(|d| self.absolute(d));
        report
    }

    fn absolute_video(&self, mut video: Video) -> Video {
        video.download = video.download.map(|d| self.absolute(d));
        video.thumbnail = video.thumbnail.map(|d| self.absolute(d));
        video
    }

    /// A link as the apps open it: the services answer path-absolute links
    /// (`/t/<tenant>/v1/media/files/…?expires=…&sig=…`), resolved against the router.
    fn absolute(&self, mut download: Download) -> Download {
        if download.url.starts_with('/') {
            download.url = format!("{}{}", self.router_origin(), download.url);
        }
        download
    }
}

/// Asks for a job every [`POLL`], telling `listener` each change of state or progress, until
/// it is completed, failed or cancelled; returns it then.
async fn watch<T, F>(
    listener: &dyn JobListener,
    mut fetch: impl FnMut() -> F,
    status: impl Fn(&T) -> &JobStatus,
) -> Result<T, CoreError>
where
    F: std::future::Future<Output = Result<T, CoreError>>,
{
    let mut last = None;
    loop {
        let job = fetch().await?;
        let now = (status(&job).state, status(&job).progress);
        if last != Some(now) {
            listener.on_progress(now.0, now.1);
            last = Some(now);
        }
        if now.0.is_final() {
            return Ok(job);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A job id as the API takes it (a uuid), or the field error saying it is not one.
fn job_id(id: &str) -> Result<uuid::Uuid, CoreError> {
    id.parse().map_err(|_| CoreError::Validation {
        fields: vec![wire_types::FieldError::new(
            "id",
            "invalid_format",
            "not a job id",
        )],
    })
}
