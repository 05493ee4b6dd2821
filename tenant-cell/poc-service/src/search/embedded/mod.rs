//! The embedded engine: a tantivy index in the poc-service process (the default).
//!
//! One writer (behind a mutex) commits each batch and reloads the reader, so a batch is
//! searchable as soon as `apply` returns. The embedded engine serves one poc-service replica;
//! clusters use Meilisearch.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use async_trait::async_trait;

use tantivy::collector::{Collector, Count, FilterCollector, TopDocs};
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, TermQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Searcher, SegmentReader,
    TantivyDocument, Term,
};
use uuid::Uuid;
use wire_types::pocs::{FacetCount, Facets, Visibility};

use super::{PocDoc, SearchHits, SearchIndex, SearchQuery, Sort, Viewer, top_facets};

mod browse;
mod facets;
use facets::TermCounts;

const TOKENIZER: &str = "folded";
/// At most this many words of a query are used.
const MAX_QUERY_WORDS: usize = 10;
/// Deep pagination is bounded: offset + limit may not exceed this.
pub const MAX_WINDOW: usize = 10_000;

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    owner: Field,
    visibility: Field,
    lang: Field,
    tag: Field,
    name: Field,
    description: Field,
    language_text: Field,
    tags_text: Field,
    frameworks: Field,
    /// Every searchable word of the document, for typo and prefix matching: one automaton walk
    /// per word instead of one per field.
    all: Field,
    name_sort: Field,
    created: Field,
    updated: Field,
    /// 0 for tenant-wide PoCs, [`owner_key`] of the owner for private ones.
    hidden: Field,
}

/// A non-zero 64-bit key for a user id, for the `hidden` fast field. (A collision could only
/// miscount a facet: rows shown are re-checked against Postgres.)
fn owner_key(user: Uuid) -> u64 {
    let v = user.as_u128();
    ((v >> 64) as u64 ^ v as u64).max(1)
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        owner: b.add_text_field("owner", STRING),
        visibility: b.add_text_field("visibility", STRING),
        lang: b.add_text_field("lang", STRING | FAST),
        tag: b.add_text_field("tag", STRING | FAST),
        name: b.add_text_field("name", text.clone()),
        description: b.add_text_field("description", text.clone()),
        language_text: b.add_text_field("language_text", text.clone()),
        tags_text: b.add_text_field("tags_text", text.clone()),
        frameworks: b.add_text_field("frameworks", text.clone()),
        all: b.add_text_field("all", text),
        name_sort: b.add_text_field("name_sort", TextOptions::default().set_fast(None)),
        created: b.add_i64_field("created", INDEXED | FAST),
        updated: b.add_i64_field("updated", FAST),
        hidden: b.add_u64_field("hidden", FAST),
    };
    (b.build(), fields)
}

/// The tantivy-backed [`SearchIndex`].
pub struct EmbeddedIndex {
    index: Index,
    reader: IndexReader,
    writer: Arc<Mutex<IndexWriter>>,
    fields: Fields,
    browse_cache: browse::BrowseCache,
}

impl EmbeddedIndex {
    /// Opens the index in `dir`, creating it if missing. An index with another schema (from an
    /// older release) is wiped: the indexer notices the empty index and rebuilds it.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (schema, fields) = schema();
        let directory =
            tantivy::directory::MmapDirectory::open(dir).context("opening the index directory")?;
        let index = match Index::open_or_create(directory, schema.clone()) {
            Ok(index) => index,
            Err(tantivy::TantivyError::SchemaError(_)) => {
                tracing::warn!(dir = %dir.display(), "search index schema changed; recreating it");
                std::fs::remove_dir_all(dir)?;
                std::fs::create_dir_all(dir)?;
                Index::create_in_dir(dir, schema)?
            }
            Err(e) => return Err(e).context("opening the search index"),
        };
        Self::with_index(index, fields)
    }

    /// A RAM-only index (tests, benchmarks).
    pub fn in_memory() -> anyhow::Result<Self> {
        let (schema, fields) = schema();
        Self::with_index(Index::create_in_ram(schema), fields)
    }

    fn with_index(index: Index, fields: Fields) -> anyhow::Result<Self> {
        let analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(40))
            .filter(LowerCaser)
            .filter(AsciiFoldingFilter)
            .build();
        index.tokenizers().register(TOKENIZER, analyzer);
        let writer: IndexWriter = index
            .writer_with_num_threads(1, 20_000_000)
            .context("opening the index writer")?;
        // Every segment adds a fixed cost (term-dictionary walks for typo and prefix matching) to
        // every search, so merge eagerly: a PoC index is small and writes are light.
        let mut policy = tantivy::merge_policy::LogMergePolicy::default();
        policy.set_min_num_segments(2);
        policy.set_min_layer_size(1_000);
        writer.set_merge_policy(Box::new(policy));
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            index,
            reader,
            writer: Arc::new(Mutex::new(writer)),
            fields,
            browse_cache: Default::default(),
        })
    }

    /// Number of index segments (each adds a fixed cost to every search).
    pub fn segments(&self) -> usize {
        self.reader.searcher().segment_readers().len()
    }

    /// Merges all segments into one and waits for it.
    pub fn merge_all(&self) -> anyhow::Result<()> {
        merge_all(&self.index, &self.writer, &self.reader)
    }

    fn document(&self, d: &PocDoc) -> TantivyDocument {
        let f = self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.id, d.id.to_string());
        doc.add_text(f.owner, d.owner_id.to_string());
        doc.add_text(f.visibility, d.visibility.as_str());
        doc.add_text(f.lang, &d.language);
        for tag in &d.tags {
            doc.add_text(f.tag, tag);
            doc.add_text(f.tags_text, tag.replace('-', " "));
        }
        doc.add_text(f.name, &d.name);
        doc.add_text(f.description, &d.description);
        doc.add_text(f.language_text, &d.language);
        for fw in &d.frameworks {
            doc.add_text(f.frameworks, fw);
        }
        doc.add_text(f.name_sort, d.name.to_lowercase());
        let all = [
            d.name.as_str(),
            &d.tags.join(" ").replace('-', " "),
            &d.language,
            &d.frameworks.join(" "),
            &d.description,
        ]
        .join(" ");
        doc.add_text(f.all, all);
        doc.add_i64(f.created, d.created_at);
        doc.add_i64(f.updated, d.updated_at);
        let hidden = match d.visibility {
            Visibility::Private => owner_key(d.owner_id),
            Visibility::Tenant => 0,
        };
        doc.add_u64(f.hidden, hidden);
        doc
    }

    fn tokens(&self, text: &str) -> Vec<String> {
        let Ok(mut analyzer) = self.index.tokenizer_for_field(self.fields.name) else {
            return Vec::new();
        };
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() && out.len() < MAX_QUERY_WORDS {
            out.push(stream.token().text.clone());
        }
        out
    }

    fn term(&self, field: Field, value: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, value),
            IndexRecordOption::Basic,
        ))
    }

    fn build_query(&self, q: &SearchQuery) -> Box<dyn Query> {
        let f = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let words = self.tokens(&q.text);
        let searchable = [
            (f.name, 3.0),
            (f.tags_text, 2.0),
            (f.language_text, 2.0),
            (f.frameworks, 1.5),
            (f.description, 1.0),
        ];
        for (i, word) in words.iter().enumerate() {
            let last = i + 1 == words.len();
            let typo: u8 = if word.chars().count() >= 5 { 1 } else { 0 };
            let mut any_field: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for (field, boost) in searchable {
                let term = Term::from_field_text(field, word);
                // Exact matches score by BM25 and outrank typo / prefix matches.
                let exact = TermQuery::new(term.clone(), IndexRecordOption::WithFreqs);
                any_field.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(Box::new(exact), boost * 2.0)),
                ));
                let loose = match (last, typo) {
                    (true, _) => Some(FuzzyTermQuery::new_prefix(term, typo, true)),
                    (false, 1) => Some(FuzzyTermQuery::new(term, 1, true)),
                    (false, _) => None,
                };
                if let Some(loose) = loose {
                    any_field.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(Box::new(loose), boost)),
                    ));
                }
            }
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(any_field))));
        }
        let mut filters: Vec<Box<dyn Query>> = Vec::new();
        if let Some(lang) = &q.language {
            filters.push(self.term(f.lang, lang));
        }
        for tag in &q.tags {
            filters.push(self.term(f.tag, tag));
        }
        if let Some(owner) = q.owner {
            filters.push(self.term(f.owner, &owner.to_string()));
        }
        // Filters restrict; they must not change relevance.
        for filter in filters {
            clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(filter, 0.0))));
        }
        if clauses.is_empty() {
            Box::new(AllQuery)
        } else {
            Box::new(BooleanQuery::new(clauses))
        }
    }

    fn search_sync(&self, q: &SearchQuery) -> anyhow::Result<SearchHits> {
        let searcher = self.reader.searcher();
        let answer = match self.browse(&searcher, q)? {
            Some(answer) => answer,
            None => self.search_full(&searcher, q)?,
        };
        self.hits(&searcher, answer)
    }

    /// Runs `q` over the whole index: the page, the total and facet counts.
    fn search_full(&self, searcher: &Searcher, q: &SearchQuery) -> tantivy::Result<browse::Answer> {
        let query = self.build_query(q);
        let limit = q.limit.clamp(1, MAX_WINDOW);
        let offset = q.offset.min(MAX_WINDOW.saturating_sub(limit));
        let facet_collector = TermCounts {
            tag_field: self.fields.tag,
        };
        let top = TopDocs::with_limit(limit).and_offset(offset);
        // Visibility is checked per matching document on a fast field, before any collector
        // sees it: cheaper than intersecting postings, and totals and facets stay exact.
        let viewer_key = match q.viewer {
            Viewer::Everything => None,
            Viewer::User(user) => Some(owner_key(user)),
        };

        let (addresses, total, facet_counts): (Vec<DocAddress>, usize, _) = match q.sort {
            Sort::Relevance => {
                let collector = top.tweak_score(move |segment: &SegmentReader| {
                    let created = segment
                        .fast_fields()
                        .i64("created")
                        .map(|c| c.first_or_default_col(0));
                    move |doc, score: tantivy::Score| {
                        (score, created.as_ref().map_or(0, |c| c.get_val(doc)))
                    }
                });
                let (hits, count, facets) = searcher.search(
                    &query,
                    &only_visible(viewer_key, (collector, Count, facet_collector)),
                )?;
                (hits.into_iter().map(|(_, a)| a).collect(), count, facets)
            }
            Sort::CreatedDesc | Sort::CreatedAsc | Sort::UpdatedDesc | Sort::UpdatedAsc => {
                let (field, order) = match q.sort {
                    Sort::CreatedDesc => ("created", Order::Desc),
                    Sort::CreatedAsc => ("created", Order::Asc),
                    Sort::UpdatedDesc => ("updated", Order::Desc),
                    _ => ("updated", Order::Asc),
                };
                let collector = top.order_by_fast_field::<i64>(field, order);
                let (hits, count, facets) = searcher.search(
                    &query,
                    &only_visible(viewer_key, (collector, Count, facet_collector)),
                )?;
                (hits.into_iter().map(|(_, a)| a).collect(), count, facets)
            }
            Sort::NameAsc | Sort::NameDesc => {
                let order = if q.sort == Sort::NameAsc {
                    Order::Asc
                } else {
                    Order::Desc
                };
                let collector = top.order_by_string_fast_field("name_sort", order);
                let (hits, count, facets) = searcher.search(
                    &query,
                    &only_visible(viewer_key, (collector, Count, facet_collector)),
                )?;
                (hits.into_iter().map(|(_, a)| a).collect(), count, facets)
            }
        };
        Ok((addresses, total, facet_counts))
    }

    /// Reads the page's ids and names the facet counts.
    fn hits(&self, searcher: &Searcher, answer: browse::Answer) -> anyhow::Result<SearchHits> {
        let (addresses, total, facet_counts) = answer;
        let mut ids = Vec::with_capacity(addresses.len());
        for address in addresses {
            let doc: TantivyDocument = searcher.doc(address)?;
            let id = doc
                .get_first(self.fields.id)
                .and_then(|v| v.as_str())
                .context("document without id")?;
            ids.push(id.parse()?);
        }
        let [language, tags] = facet_counts.map(|counts| {
            top_facets(
                counts
                    .into_iter()
                    .map(|(value, count)| FacetCount { value, count })
                    .collect(),
            )
        });
        Ok(SearchHits {
            ids,
            total: total as u64,
            facets: Facets { language, tags },
        })
    }
}

#[async_trait]
impl SearchIndex for EmbeddedIndex {
    fn engine(&self) -> &'static str {
        "embedded"
    }

    async fn apply(&self, upserts: Vec<PocDoc>, deletes: Vec<Uuid>) -> anyhow::Result<()> {
        let docs: Vec<(Uuid, TantivyDocument)> =
            upserts.iter().map(|d| (d.id, self.document(d))).collect();
        let writer = self.writer.clone();
        let reader = self.reader.clone();
        let id_field = self.fields.id;
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut writer = writer
                .lock()
                .map_err(|_| anyhow::anyhow!("index writer poisoned"))?;
            for (id, doc) in docs {
                writer.delete_term(Term::from_field_text(id_field, &id.to_string()));
                writer.add_document(doc)?;
            }
            for id in deletes {
                writer.delete_term(Term::from_field_text(id_field, &id.to_string()));
            }
            writer.commit()?;
            reader.reload()?;
            Ok(())
        })
        .await?
    }

    async fn clear(&self) -> anyhow::Result<()> {
        let writer = self.writer.clone();
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut writer = writer
                .lock()
                .map_err(|_| anyhow::anyhow!("index writer poisoned"))?;
            writer.delete_all_documents()?;
            writer.commit()?;
            reader.reload()?;
            Ok(())
        })
        .await?
    }

    async fn count(&self) -> anyhow::Result<u64> {
        Ok(self.reader.searcher().num_docs())
    }

    async fn optimize(&self) -> anyhow::Result<()> {
        if self.segments() <= 1 {
            return Ok(());
        }
        let index = self.index.clone();
        let writer = self.writer.clone();
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || merge_all(&index, &writer, &reader)).await?
    }

    async fn search(&self, query: &SearchQuery) -> anyhow::Result<SearchHits> {
        // Searches take about a millisecond; run them inline rather than paying a thread hop.
        self.search_sync(query)
    }
}

fn merge_all(
    index: &Index,
    writer: &Mutex<IndexWriter>,
    reader: &IndexReader,
) -> anyhow::Result<()> {
    let ids = index.searchable_segment_ids()?;
    if ids.len() > 1 {
        let mut writer = writer
            .lock()
            .map_err(|_| anyhow::anyhow!("index writer poisoned"))?;
        match writer.merge(&ids).wait() {
            Ok(_) => {}
            // A background merge took some of these segments first: the index is already
            // converging; the next quiet period tries again.
            Err(tantivy::TantivyError::InvalidArgument(reason)) => {
                tracing::debug!(%reason, "index merge skipped");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        writer.commit()?;
        drop(writer);
        reader.reload()?;
    }
    Ok(())
}

/// Wraps `collector` so it only sees documents `viewer_key` may see (`None`: everything).
fn only_visible<C>(
    viewer_key: Option<u64>,
    collector: C,
) -> FilterCollector<C, impl Fn(u64) -> bool + Clone + Send + Sync + 'static, u64>
where
    C: Collector + Send + Sync,
{
    let visible = move |hidden: u64| hidden == 0 || viewer_key.is_none_or(|me| me == hidden);
    FilterCollector::new("hidden".to_owned(), visible, collector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_with_an_older_schema_is_recreated_empty() {
        let dir = std::env::temp_dir().join(format!("poc-index-schema-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        {
            let mut b = Schema::builder();
            b.add_text_field("something_else", STRING);
            let old = Index::create_in_dir(&dir, b.build()).expect("old index");
            let mut writer: IndexWriter =
                old.writer_with_num_threads(1, 15_000_000).expect("writer");
            writer.commit().expect("commit");
        }
        let index = EmbeddedIndex::open(&dir).expect("reopened with the current schema");
        assert_eq!(
            index.reader.searcher().num_docs(),
            0,
            "the indexer will rebuild it from Postgres"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    /// Facet counts are the same whichever counting path a query takes (posting lists for
    /// broad matches, the tag column for narrow ones).
    #[tokio::test]
    async fn facet_counts_agree_for_narrow_and_broad_matches() {
        let index = EmbeddedIndex::in_memory().expect("index");
        let docs: Vec<PocDoc> = (0..64u128)
            .map(|n| PocDoc {
                id: Uuid::from_u128(n + 1),
                owner_id: Uuid::from_u128(1000),
                name: if n < 2 {
                    format!("rare thing {n}")
                } else {
                    format!("common thing {n}")
                },
                description: String::new(),
                language: if n % 2 == 0 {
                    "rust".into()
                } else {
                    "go".into()
                },
                tags: if n % 3 == 0 {
                    vec!["a".into(), "b".into()]
                } else {
                    vec!["b".into()]
                },
                frameworks: Vec::new(),
                visibility: Visibility::Tenant,
                created_at: n as i64,
                updated_at: n as i64,
            })
            .collect();
        index.apply(docs, Vec::new()).await.expect("apply");
        let count = |hits: &SearchHits, facet: &str| -> Vec<(String, u64)> {
            let values = if facet == "tags" {
                &hits.facets.tags
            } else {
                &hits.facets.language
            };
            values.iter().map(|f| (f.value.clone(), f.count)).collect()
        };
        // Narrow: 2 of 64 documents ("rare thing 0" and "rare thing 1").
        let mut q = SearchQuery::browse(Viewer::Everything);
        q.text = "rare".into();
        let narrow = index.search(&q).await.expect("search");
        assert_eq!(narrow.total, 2);
        assert_eq!(
            count(&narrow, "tags"),
            [("b".to_owned(), 2), ("a".to_owned(), 1)]
        );
        assert_eq!(
            count(&narrow, "language"),
            [("go".to_owned(), 1), ("rust".to_owned(), 1)]
        );
        // Broad: everything.
        let broad = index
            .search(&SearchQuery::browse(Viewer::Everything))
            .await
            .expect("search");
        assert_eq!(broad.total, 64);
        assert_eq!(
            count(&broad, "tags"),
            [("b".to_owned(), 64), ("a".to_owned(), 22)]
        );
        assert_eq!(
            count(&broad, "language"),
            [("go".to_owned(), 32), ("rust".to_owned(), 32)]
        );
    }

    #[test]
    fn owner_keys_are_never_zero() {
        assert_ne!(owner_key(Uuid::nil()), 0);
        assert_ne!(owner_key(Uuid::from_u128(1)), owner_key(Uuid::from_u128(2)));
    }
}
