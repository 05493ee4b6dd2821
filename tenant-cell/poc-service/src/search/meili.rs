//! The Meilisearch engine (clusters): one index per cell on the cell's Meilisearch server,
//! driven through `meilisearch-sdk`.
//!
//! Settings mirror the embedded engine's behaviour: one typo from 5 letters (two typos are
//! effectively off), prefix search on the last word, filters on language / tags / owner /
//! visibility, facets on language and tags, and relevance then recency. Every write waits for
//! its task to finish, so `apply` returning `Ok` means the change is searchable.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use meilisearch_sdk::client::Client;
use meilisearch_sdk::search::Selectors;
use meilisearch_sdk::settings::{
    FacetingSettings, MinWordSizeForTypos, PaginationSetting, Settings, TypoToleranceSettings,
};
use meilisearch_sdk::task_info::TaskInfo;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use uuid::Uuid;
use wire_types::pocs::{FacetCount, Facets, Visibility};

use super::embedded::MAX_WINDOW;
use super::{FACET_LIMIT, PocDoc, SearchHits, SearchIndex, SearchQuery, Sort, Viewer, top_facets};

/// How long a write may wait for Meilisearch to process it.
const TASK_TIMEOUT: Duration = Duration::from_secs(30);
const TASK_POLL: Duration = Duration::from_millis(50);

/// The document shape stored in Meilisearch.
#[derive(Debug, Serialize, Deserialize)]
struct MeiliDoc {
    id: String,
    owner_id: String,
    name: String,
    name_sort: String,
    description: String,
    language: String,
    tags: Vec<String>,
    frameworks: Vec<String>,
    visibility: String,
    created_at: i64,
    updated_at: i64,
}

impl From<&PocDoc> for MeiliDoc {
    fn from(d: &PocDoc) -> Self {
        Self {
            id: d.id.to_string(),
            owner_id: d.owner_id.to_string(),
            name: d.name.clone(),
            name_sort: d.name.to_lowercase(),
            description: d.description.clone(),
            language: d.language.clone(),
            tags: d.tags.clone(),
            frameworks: d.frameworks.clone(),
            visibility: d.visibility.as_str().to_owned(),
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Debug, Deserialize)]
struct IdOnly {
    id: String,
}

/// The index settings this engine relies on.
pub fn settings() -> Settings {
    Settings::new()
        .with_searchable_attributes(["name", "tags", "language", "frameworks", "description"])
        .with_filterable_attributes(["language", "tags", "owner_id", "visibility"])
        .with_sortable_attributes(["created_at", "updated_at", "name_sort"])
        .with_ranking_rules([
            "words",
            "typo",
            "proximity",
            "attribute",
            "sort",
            "exactness",
            "created_at:desc",
        ])
        .with_typo_tolerance(TypoToleranceSettings {
            enabled: Some(true),
            disable_on_attributes: None,
            disable_on_words: None,
            min_word_size_for_typos: Some(MinWordSizeForTypos {
                one_typo: Some(5),
                two_typos: Some(255),
            }),
            disable_on_numbers: None,
        })
        .with_faceting(FacetingSettings {
            max_values_per_facet: FACET_LIMIT * 2,
            sort_facet_values_by: None,
        })
        .with_pagination(PaginationSetting {
            max_total_hits: MAX_WINDOW,
        })
}

/// A Meilisearch filter string literal.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The filter expression for a query (visibility first, so it is never forgotten).
pub fn filter(q: &SearchQuery) -> Option<String> {
    let mut parts = Vec::new();
    if let Viewer::User(user) = q.viewer {
        parts.push(format!(
            "(visibility = {} OR owner_id = {})",
            quoted(Visibility::Tenant.as_str()),
            quoted(&user.to_string())
        ));
    }
    if let Some(lang) = &q.language {
        parts.push(format!("language = {}", quoted(lang)));
    }
    for tag in &q.tags {
        parts.push(format!("tags = {}", quoted(tag)));
    }
    if let Some(owner) = q.owner {
        parts.push(format!("owner_id = {}", quoted(&owner.to_string())));
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(" AND "))
    }
}

fn sort_rule(sort: Sort) -> Option<&'static str> {
    match sort {
        Sort::Relevance => None,
        Sort::CreatedDesc => Some("created_at:desc"),
        Sort::CreatedAsc => Some("created_at:asc"),
        Sort::UpdatedDesc => Some("updated_at:desc"),
        Sort::UpdatedAsc => Some("updated_at:asc"),
        Sort::NameAsc => Some("name_sort:asc"),
        Sort::NameDesc => Some("name_sort:desc"),
    }
}

/// The Meilisearch-backed [`SearchIndex`].
pub struct MeiliIndex {
    client: Client,
    uid: String,
    configured: OnceCell<()>,
}

impl MeiliIndex {
    pub fn new(url: &str, api_key: Option<&str>, uid: &str) -> anyhow::Result<Self> {
        let client = Client::new(url, api_key).context("creating the Meilisearch client")?;
        Ok(Self {
            client,
            uid: uid.to_owned(),
            configured: OnceCell::new(),
        })
    }

    async fn wait(&self, task: TaskInfo) -> anyhow::Result<()> {
        let task = task
            .wait_for_completion(&self.client, Some(TASK_POLL), Some(TASK_TIMEOUT))
            .await
            .context("waiting for a Meilisearch task")?;
        if task.is_failure() {
            anyhow::bail!("Meilisearch task failed: {}", task.unwrap_failure());
        }
        Ok(())
    }

    /// Applies the settings once per process (creating the index if it does not exist).
    async fn configure(&self) -> anyhow::Result<()> {
        self.configured
            .get_or_try_init(|| async {
                let task = self
                    .client
                    .index(&self.uid)
                    .set_settings(&settings())
                    .await
                    .context("updating index settings")?;
                self.wait(task).await
            })
            .await
            .map(drop)
    }
}

#[async_trait]
impl SearchIndex for MeiliIndex {
    fn engine(&self) -> &'static str {
        "meilisearch"
    }

    async fn apply(&self, upserts: Vec<PocDoc>, deletes: Vec<Uuid>) -> anyhow::Result<()> {
        self.configure().await?;
        let index = self.client.index(&self.uid);
        if !upserts.is_empty() {
            let docs: Vec<MeiliDoc> = upserts.iter().map(MeiliDoc::from).collect();
            self.wait(index.add_or_replace(&docs, Some("id")).await?)
                .await?;
        }
        if !deletes.is_empty() {
            let ids: Vec<String> = deletes.iter().map(Uuid::to_string).collect();
            self.wait(index.delete_documents(&ids).await?).await?;
        }
        Ok(())
    }

    async fn clear(&self) -> anyhow::Result<()> {
        self.configure().await?;
        self.wait(self.client.index(&self.uid).delete_all_documents().await?)
            .await
    }

    async fn count(&self) -> anyhow::Result<u64> {
        self.configure().await?;
        Ok(self
            .client
            .index(&self.uid)
            .get_stats()
            .await?
            .number_of_documents as u64)
    }

    async fn search(&self, q: &SearchQuery) -> anyhow::Result<SearchHits> {
        self.configure().await?;
        let index = self.client.index(&self.uid);
        let filter = filter(q);
        let sort = sort_rule(q.sort).map(|s| [s]);
        let limit = q.limit.clamp(1, MAX_WINDOW);
        let mut search = index.search();
        // Page mode makes Meilisearch count matches exhaustively (up to maxTotalHits).
        search
            .with_query(&q.text)
            .with_page(q.offset / limit + 1)
            .with_hits_per_page(limit)
            .with_facets(Selectors::Some(&["language", "tags"]))
            .with_attributes_to_retrieve(Selectors::Some(&["id"]));
        if let Some(filter) = &filter {
            search.with_filter(filter);
        }
        if let Some(sort) = &sort {
            search.with_sort(sort);
        }
        let results = search
            .execute::<IdOnly>()
            .await
            .context("searching Meilisearch")?;
        let ids = results
            .hits
            .iter()
            .map(|h| h.result.id.parse())
            .collect::<Result<Vec<Uuid>, _>>()?;
        let total = results
            .total_hits
            .or(results.estimated_total_hits)
            .unwrap_or(ids.len()) as u64;
        let distribution = results.facet_distribution.unwrap_or_default();
        let counts = |name: &str| -> Vec<FacetCount> {
            top_facets(
                distribution
                    .get(name)
                    .unwrap_or(&HashMap::new())
                    .iter()
                    .map(|(value, count)| FacetCount {
                        value: value.clone(),
                        count: *count as u64,
                    })
                    .collect(),
            )
        };
        Ok(SearchHits {
            ids,
            total,
            facets: Facets {
                language: counts("language"),
                tags: counts("tags"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_always_start_with_visibility_and_quote_values() {
        let mut q = SearchQuery::browse(Viewer::User(Uuid::nil()));
        q.language = Some("c\"++".into());
        q.tags = vec!["a".into(), "b".into()];
        assert_eq!(
            filter(&q).expect("filter"),
            r#"(visibility = "tenant" OR owner_id = "00000000-0000-0000-0000-000000000000") AND language = "c\"++" AND tags = "a" AND tags = "b""#
        );
        assert_eq!(filter(&SearchQuery::browse(Viewer::Everything)), None);
    }
}
