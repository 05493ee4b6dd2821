//! Media API DTOs (media-service `/v1/reports`, `/v1/videos`, `/v1/media`).
//!
//! Reports and videos are **jobs**: `POST` answers 202 with the job, which moves
//! `pending → processing → completed | failed | cancelled` with `progress` 0–100. A completed
//! job carries short-lived signed download links (`/v1/media/files/…?expires=…&sig=…`, relative
//! to the endpoint the client called; no token needed, so players and browsers can fetch them).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::UserId;
use crate::pocs::KeyCount;

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Processing => "processing",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => JobState::Pending,
            "processing" => JobState::Processing,
            "completed" => JobState::Completed,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }

    /// Completed, failed and cancelled jobs never change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A report's file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum ReportFormat {
    Pdf,
    Csv,
    Json,
}

impl ReportFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ReportFormat::Pdf => "pdf",
            ReportFormat::Csv => "csv",
            ReportFormat::Json => "json",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ReportFormat::Pdf => "application/pdf",
            ReportFormat::Csv => "text/csv; charset=utf-8",
            ReportFormat::Json => "application/json",
        }
    }
}

/// How a report's summary table groups PoCs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    #[default]
    Language,
    Tag,
    Month,
    User,
}

/// `POST /v1/reports`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[serde(deny_unknown_fields)]
pub struct CreateReport {
    pub format: ReportFormat,
    /// First day included (`YYYY-MM-DD`, UTC); default: no lower bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = Date, pattern = r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"))]
    pub from: Option<String>,
    /// Last day included (`YYYY-MM-DD`, UTC); default: today.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = Date, pattern = r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"))]
    pub to: Option<String>,
    /// Only PoCs carrying all of these tags.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 20, value_type = Vec<crate::rules::Tag>))]
    pub tags: Vec<String>,
    /// Leave out PoCs carrying any of these tags.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 20, value_type = Vec<crate::rules::Tag>))]
    pub exclude_tags: Vec<String>,
    #[serde(default)]
    pub group_by: GroupBy,
}

/// `POST /v1/videos`: the caller's PoCs of one year as a video.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
#[serde(deny_unknown_fields)]
pub struct CreateVideo {
    #[serde(deserialize_with = "crate::de::integral_i32")]
    #[cfg_attr(feature = "openapi", schema(minimum = 2000, maximum = 2100))]
    pub year: i32,
    /// Shown on the intro card; default "<year> in PoCs".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 80,
            pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
        )
    )]
    pub title: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 20, value_type = Vec<crate::rules::Tag>))]
    pub tags: Vec<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 20, value_type = Vec<crate::rules::Tag>))]
    pub exclude_tags: Vec<String>,
}

/// A downloadable file of a completed job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Download {
    /// Signed link, relative to the endpoint the client called; valid until `expires_at`.
    pub url: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: OffsetDateTime,
    pub content_type: String,
    pub bytes: u64,
}

/// Why a job failed, or why its last attempt did (while it waits to retry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct JobError {
    /// Stable: `poc_unavailable`, `render_failed`, `storage_failed`, `no_pocs`, `too_many_pocs`.
    pub code: String,
    pub message: String,
}

/// What every job shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct JobStatus {
    pub state: JobState,
    /// 0–100.
    pub progress: u8,
    /// Attempts started so far (a job is retried with backoff after transient failures).
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub finished_at: Option<OffsetDateTime>,
}

/// A report job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Report {
    pub id: uuid::Uuid,
    pub owner_id: UserId,
    pub format: ReportFormat,
    pub group_by: GroupBy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub tags: Vec<String>,
    pub exclude_tags: Vec<String>,
    #[serde(flatten)]
    pub status: JobStatus,
    /// When completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<Download>,
}

/// A yearly video job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Video {
    pub id: uuid::Uuid,
    pub owner_id: UserId,
    pub year: i32,
    pub title: String,
    pub tags: Vec<String>,
    pub exclude_tags: Vec<String>,
    /// PoC cards in the video (known once rendering started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cards: Option<u32>,
    /// Seconds (3 s intro + 2 s per card + 3 s outro), once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u32>,
    #[serde(flatten)]
    pub status: JobStatus,
    /// The MP4, when completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<Download>,
    /// A JPEG of the intro card, when completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<Download>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportPage {
    /// Newest first.
    pub items: Vec<Report>,
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VideoPage {
    /// Newest first.
    pub items: Vec<Video>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/reports/dashboard`: figures over the PoCs the caller may see.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Dashboard {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub total: u64,
    pub languages: u64,
    pub by_language: Vec<KeyCount>,
    pub by_tag: Vec<KeyCount>,
    /// `YYYY-MM` of creation, oldest first.
    pub by_month: Vec<KeyCount>,
    /// Owner user ids.
    pub by_user: Vec<KeyCount>,
}

/// `GET /internal/v1/jobs` (operators): jobs by state (`pending`, `processing`, …).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QueueDepth(pub std::collections::BTreeMap<String, u64>);

crate::wire!(Report, Video, ReportPage, VideoPage, Dashboard, QueueDepth);
