//! poc-service's internal API (service token): the only way media sees PoCs. poc applies the
//! visibility rules (`visible_to`); media never filters for permissions itself.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;
use wire_types::ErrorBody;
use wire_types::pocs::{InternalPocPage, Poc, PocAggregates};

/// What to ask poc-service for.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub visible_to: Uuid,
    pub owner: Option<Uuid>,
    /// `YYYY-MM-DD` or RFC 3339 (poc-service validates).
    pub from: Option<String>,
    pub to: Option<String>,
    pub tags: Vec<String>,
    pub exclude_tags: Vec<String>,
}

impl Filter {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![("visible_to", self.visible_to.to_string())];
        if let Some(owner) = self.owner {
            q.push(("owner", owner.to_string()));
        }
        if let Some(from) = &self.from {
            q.push(("from", from.clone()));
        }
        if let Some(to) = &self.to {
            q.push(("to", to.clone()));
        }
        if !self.tags.is_empty() {
            q.push(("tags", self.tags.join(",")));
        }
        if !self.exclude_tags.is_empty() {
            q.push(("exclude_tags", self.exclude_tags.join(",")));
        }
        q
    }
}

/// Why poc-service gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum PocError {
    /// Not reachable, timed out or answered 5xx: try again later.
    #[error("poc-service is unavailable: {0}")]
    Unavailable(String),
    /// A definite refusal (4xx): the request itself is wrong (bad filter, disabled user).
    #[error("poc-service refused: {} {}", .status, .body.message)]
    Refused { status: u16, body: ErrorBody },
    /// More PoCs than the job may hold.
    #[error("more than {0} PoCs")]
    TooMany(usize),
}

#[derive(Clone, Debug)]
pub struct PocClient {
    http: reqwest::Client,
    base: String,
    token: SecretString,
}

impl PocClient {
    pub fn new(base: &str, token: SecretString) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client with default TLS-less settings"),
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// Whether poc-service's internal API answers at all (any HTTP status: it is listening).
    pub async fn listening(&self) -> bool {
        self.http
            .get(format!("{}/healthz", self.base))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok()
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&'static str, String)],
    ) -> Result<T, PocError> {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.token.expose_secret())
            .query(query);
        let res = service_kit::telemetry::trace::propagate(request)
            .send()
            .await
            .map_err(|e| PocError::Unavailable(e.to_string()))?;
        let status = res.status();
        if status.is_success() {
            return res
                .json()
                .await
                .map_err(|e| PocError::Unavailable(format!("unreadable answer: {e}")));
        }
        if status.is_client_error()
            && status.as_u16() != 429
            && let Ok(body) = res.json::<ErrorBody>().await
        {
            return Err(PocError::Refused {
                status: status.as_u16(),
                body,
            });
        }
        Err(PocError::Unavailable(format!("answered {status}")))
    }

    /// Totals and counts by language, tag, month and owner, computed by poc-service.
    pub async fn aggregates(&self, filter: &Filter) -> Result<PocAggregates, PocError> {
        self.get("/internal/v1/pocs/aggregates", &filter.query())
            .await
    }

    /// Every matching PoC, oldest first, in pages of 1,000; more than `max` → `TooMany`.
    pub async fn all(&self, filter: &Filter, max: usize) -> Result<Vec<Poc>, PocError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = filter.query();
            query.push(("limit", "1000".into()));
            if let Some(c) = cursor.take() {
                query.push(("cursor", c));
            }
            let page: InternalPocPage = self.get("/internal/v1/pocs", &query).await?;
            items.extend(page.items);
            if items.len() > max {
                return Err(PocError::TooMany(max));
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(items),
            }
        }
    }
}
