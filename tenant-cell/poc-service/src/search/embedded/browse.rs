//! Browse-everything, newest first (the app's home screen), answered from a cache kept per
//! index generation.
//!
//! Without words or filters a search matches the whole cell, so counting it and its facets
//! costs a pass over every document (≈ 3.4 ms at 100k PoCs). What a viewer sees splits into
//! a part that is the same for every viewer and a small part that is theirs:
//!
//! - the tenant-wide PoCs (for members) or every PoC (for admins): counted, faceted and their
//!   newest [`CACHED_WINDOW`] found once per index generation, then shared;
//! - a member's own private PoCs: one term query on the owner, small.
//!
//! The page, total and facet counts are the two parts merged, ordered exactly as the full
//! search orders them (newest first, ties by ascending document address). A write reloads the
//! reader, which starts a new generation, so the cache is never stale.

use std::sync::{Arc, Mutex};

use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, Occur};
use tantivy::{DocAddress, Order, Searcher};

use super::facets::{self, Counts, TermCounts};
use super::{EmbeddedIndex, only_visible};
use crate::search::{SearchQuery, Sort, Viewer};

/// Pages reaching further than this many results take the full search.
pub(super) const CACHED_WINDOW: usize = 200;

/// Newest-first hits: the `created` value and the document.
type Newest = Vec<(i64, DocAddress)>;

/// What every viewer of one scope sees in one index generation.
pub(super) struct Shared {
    generation: u64,
    total: usize,
    facets: Counts,
    newest: Newest,
}

/// The shared parts: tenant-wide PoCs (members) and everything (admins).
#[derive(Default)]
pub(super) struct BrowseCache {
    tenant: Mutex<Option<Arc<Shared>>>,
    everything: Mutex<Option<Arc<Shared>>>,
}

/// A browse answer before its documents are read: page, total, facet counts.
pub(super) type Answer = (Vec<DocAddress>, usize, Counts);

impl EmbeddedIndex {
    /// The answer to `q` from the cache, or `None` when `q` is not a plain browse within the
    /// cached window (the caller runs the full search).
    pub(super) fn browse(
        &self,
        searcher: &Searcher,
        q: &SearchQuery,
    ) -> tantivy::Result<Option<Answer>> {
        let plain = q.language.is_none()
            && q.tags.is_empty()
            && q.owner.is_none()
            && q.sort == Sort::CreatedDesc
            && q.limit > 0
            && q.offset.saturating_add(q.limit) <= CACHED_WINDOW
            && self.tokens(&q.text).is_empty();
        if !plain {
            return Ok(None);
        }
        let (slot, own) = match q.viewer {
            Viewer::Everything => (&self.browse_cache.everything, None),
            Viewer::User(user) => (&self.browse_cache.tenant, Some(user)),
        };
        let shared = self.shared(slot, searcher, q.viewer)?;
        let Some(user) = own else {
            let page = shared.newest.iter().skip(q.offset).take(q.limit);
            let page = page.map(|(_, address)| *address).collect();
            return Ok(Some((page, shared.total, shared.facets.clone())));
        };
        // The member's own private PoCs.
        let f = self.fields;
        let private = BooleanQuery::new(vec![
            (Occur::Must, self.term(f.owner, &user.to_string())),
            (Occur::Must, self.term(f.visibility, "private")),
        ]);
        let top = TopDocs::with_limit(q.offset + q.limit)
            .order_by_fast_field::<i64>("created", Order::Desc);
        let (own, count, own_facets) =
            searcher.search(&private, &(top, Count, TermCounts { tag_field: f.tag }))?;
        let page = merge_newest(&shared.newest, &own, q.offset, q.limit);
        Ok(Some((
            page,
            shared.total + count,
            facets::merge([shared.facets.clone(), own_facets]),
        )))
    }

    /// The shared part for `viewer`'s scope in `searcher`'s generation, computed once.
    fn shared(
        &self,
        slot: &Mutex<Option<Arc<Shared>>>,
        searcher: &Searcher,
        viewer: Viewer,
    ) -> tantivy::Result<Arc<Shared>> {
        let generation = searcher.generation().generation_id();
        // Held while computing, so concurrent first browses wait for one pass instead of each
        // making their own.
        let mut slot = slot
            .lock()
            .map_err(|_| tantivy::TantivyError::InternalError("browse cache poisoned".into()))?;
        if let Some(shared) = slot.as_ref().filter(|s| s.generation == generation) {
            return Ok(shared.clone());
        }
        let top =
            TopDocs::with_limit(CACHED_WINDOW).order_by_fast_field::<i64>("created", Order::Desc);
        let facets = TermCounts {
            tag_field: self.fields.tag,
        };
        let (newest, total, facets) = match viewer {
            Viewer::Everything => searcher.search(&AllQuery, &(top, Count, facets))?,
            // Key 0: nobody's private PoCs, only the tenant-wide ones.
            Viewer::User(_) => {
                searcher.search(&AllQuery, &only_visible(Some(0), (top, Count, facets)))?
            }
        };
        let shared = Arc::new(Shared {
            generation,
            total,
            facets,
            newest,
        });
        *slot = Some(shared.clone());
        Ok(shared)
    }
}

/// The page `offset..offset + limit` of two newest-first lists merged, in the full search's
/// order: `created` descending, then document address ascending.
fn merge_newest(a: &Newest, b: &Newest, offset: usize, limit: usize) -> Vec<DocAddress> {
    let mut merged: Newest = a.iter().chain(b).copied().collect();
    merged.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
    merged
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(_, address)| address)
        .collect()
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;
    use wire_types::pocs::Visibility;

    use super::*;
    use crate::search::{PocDoc, SearchIndex};

    fn doc(n: u128, owner: Uuid) -> PocDoc {
        PocDoc {
            id: Uuid::from_u128(n + 1),
            owner_id: owner,
            name: format!("poc {n}"),
            description: String::new(),
            language: ["rust", "go", "zig"][n as usize % 3].into(),
            tags: (0..n % 4).map(|t| format!("tag{t}")).collect(),
            frameworks: Vec::new(),
            visibility: if n.is_multiple_of(3) {
                Visibility::Private
            } else {
                Visibility::Tenant
            },
            // Ties, so the order between equal timestamps is checked too.
            created_at: (n / 4) as i64,
            updated_at: 0,
        }
    }

    /// Every viewer and page of a plain browse gets from the cache exactly what the full search
    /// finds: the same documents in the same order, total and facet counts.
    #[tokio::test]
    async fn browse_answers_exactly_as_the_full_search() {
        let index = EmbeddedIndex::in_memory().expect("index");
        let owners = [
            Uuid::from_u128(70),
            Uuid::from_u128(80),
            Uuid::from_u128(90),
        ];
        // Two batches: two segments, so addresses from both are merged.
        for batch in [0..300u128, 300..600] {
            let docs = batch.map(|n| doc(n, owners[n as usize % 3])).collect();
            index.apply(docs, Vec::new()).await.expect("apply");
        }
        let nobody = Uuid::from_u128(5);
        let viewers = [
            Viewer::Everything,
            Viewer::User(owners[0]),
            Viewer::User(owners[1]),
            Viewer::User(nobody),
        ];
        for viewer in viewers {
            for (offset, limit) in [(0, 20), (7, 13), (0, 200), (180, 20)] {
                let mut q = SearchQuery::browse(viewer);
                (q.offset, q.limit) = (offset, limit);
                let searcher = index.reader.searcher();
                let cached = index.browse(&searcher, &q).expect("browse");
                let cached = cached.expect("a plain browse is cached");
                let full = index.search_full(&searcher, &q).expect("search");
                assert_eq!(cached.0, full.0, "{viewer:?} {offset}+{limit}: page");
                assert_eq!(cached.1, full.1, "{viewer:?}: total");
                assert_eq!(cached.2, full.2, "{viewer:?}: facets");
            }
        }
        let everything = index.search(&SearchQuery::browse(Viewer::Everything)).await;
        assert_eq!(everything.expect("search").total, 600);
        let member = index
            .search(&SearchQuery::browse(Viewer::User(nobody)))
            .await;
        assert_eq!(member.expect("search").total, 400, "only tenant-wide PoCs");
    }

    /// A write starts a new index generation: the next browse sees it.
    #[tokio::test]
    async fn a_write_is_browsed_at_once() {
        let index = EmbeddedIndex::in_memory().expect("index");
        let owner = Uuid::from_u128(70);
        let docs = (0..50u128).map(|n| doc(n * 3 + 1, owner)).collect();
        index.apply(docs, Vec::new()).await.expect("apply");
        let viewer = Viewer::User(Uuid::from_u128(5));
        let before = index.search(&SearchQuery::browse(viewer)).await;
        assert_eq!(before.expect("search").total, 50);
        let mut newest = doc(1_000, owner);
        newest.visibility = Visibility::Tenant;
        let id = newest.id;
        index.apply(vec![newest], Vec::new()).await.expect("apply");
        let after = index
            .search(&SearchQuery::browse(viewer))
            .await
            .expect("search");
        assert_eq!((after.total, after.ids[0]), (51, id));
        index.apply(Vec::new(), vec![id]).await.expect("delete");
        let deleted = index
            .search(&SearchQuery::browse(viewer))
            .await
            .expect("search");
        assert_eq!(deleted.total, 50);
        assert_ne!(deleted.ids[0], id);
    }

    /// Words, filters, another order, an empty page or a page beyond the window take the full
    /// search.
    #[test]
    fn only_plain_browses_are_cached() {
        let index = EmbeddedIndex::in_memory().expect("index");
        let searcher = index.reader.searcher();
        let viewer = Viewer::User(Uuid::from_u128(5));
        let plain = SearchQuery::browse(viewer);
        let mut not_plain = Vec::new();
        for change in 0..6 {
            let mut q = plain.clone();
            match change {
                0 => q.text = "kubernetes".into(),
                1 => q.language = Some("rust".into()),
                2 => q.tags = vec!["a".into()],
                3 => q.sort = Sort::NameAsc,
                // An empty page is the full search's to clamp.
                4 => q.limit = 0,
                _ => q.offset = CACHED_WINDOW,
            }
            not_plain.push(q);
        }
        let mut punctuation = plain.clone();
        punctuation.text = " - ".into();
        assert!(index.browse(&searcher, &plain).expect("browse").is_some());
        assert!(
            index
                .browse(&searcher, &punctuation)
                .expect("browse")
                .is_some()
        );
        for q in not_plain {
            assert!(
                index.browse(&searcher, &q).expect("browse").is_none(),
                "{q:?}"
            );
        }
    }
}
