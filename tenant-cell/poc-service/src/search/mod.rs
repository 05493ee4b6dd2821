//! The search index port and its engines.
//!
//! Postgres is the source of truth; an index is a derived, rebuildable view. Writes reach the
//! index only through the transactional change log ([`indexer`]), so an index that is down, slow or
//! deleted loses nothing: the log keeps the work and a rebuild restores everything.
//!
//! **Invariant:** every search is filtered to what the viewer may see *inside the engine*, so
//! totals and facet counts never include PoCs the caller cannot read.

pub mod embedded;
pub mod indexer;
pub mod meili;

use async_trait::async_trait;
use uuid::Uuid;
use wire_types::pocs::Facets;

pub use crate::domain::search::{PocDoc, Viewer};

/// Result order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    /// Best match first, then newest.
    Relevance,
    CreatedDesc,
    CreatedAsc,
    UpdatedDesc,
    UpdatedAsc,
    NameAsc,
    NameDesc,
}

/// A search request, already validated and normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchQuery {
    /// Free text; words of 5+ letters tolerate one typo, the last word matches as a prefix.
    pub text: String,
    pub language: Option<String>,
    /// Every tag must be present.
    pub tags: Vec<String>,
    pub owner: Option<Uuid>,
    pub viewer: Viewer,
    pub sort: Sort,
    pub offset: usize,
    pub limit: usize,
}

impl SearchQuery {
    /// Everything visible to `viewer`, newest first.
    pub fn browse(viewer: Viewer) -> Self {
        Self {
            text: String::new(),
            language: None,
            tags: Vec::new(),
            owner: None,
            viewer,
            sort: Sort::CreatedDesc,
            offset: 0,
            limit: 20,
        }
    }
}

/// Matching ids (in order) for one page, the total and facet counts over all matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchHits {
    pub ids: Vec<Uuid>,
    pub total: u64,
    pub facets: Facets,
}

/// Most facet values returned per facet.
pub const FACET_LIMIT: usize = 50;

/// A search engine holding the cell's PoC index.
#[async_trait]
pub trait SearchIndex: Send + Sync + 'static {
    /// `embedded` or `meilisearch`.
    fn engine(&self) -> &'static str;

    /// Applies one batch durably: when this returns `Ok`, the changes survive a restart and are
    /// visible to searches.
    async fn apply(&self, upserts: Vec<PocDoc>, deletes: Vec<Uuid>) -> anyhow::Result<()>;

    /// Removes every document (the first step of a rebuild).
    async fn clear(&self) -> anyhow::Result<()>;

    /// Number of documents in the index.
    async fn count(&self) -> anyhow::Result<u64>;

    async fn search(&self, query: &SearchQuery) -> anyhow::Result<SearchHits>;

    /// Housekeeping while no writes arrive (the embedded engine merges its segments, which
    /// makes every search cheaper). Engines that manage themselves do nothing.
    async fn optimize(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Sorts facet values by count (desc) then value, keeping the first [`FACET_LIMIT`].
pub fn top_facets(
    mut counts: Vec<wire_types::pocs::FacetCount>,
) -> Vec<wire_types::pocs::FacetCount> {
    counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    counts.truncate(FACET_LIMIT);
    counts
}
