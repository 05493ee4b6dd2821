//! Exact facet counts over every match: the collector the embedded engine counts `lang` and
//! `tag` values with.

use std::sync::Arc;

use std::collections::HashMap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::StrColumn;
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, SegmentOrdinal, SegmentReader};

/// Counts `lang` and `tag` values over every match (exact facet counts).
///
/// `lang` holds one value per document and is counted per match from its fast field. `tag`
/// holds several; for broad matches (more than 1/16 of the segment) they are counted from the
/// inverted index instead: each tag's posting list is checked against a bitset of the matches,
/// which costs a few nanoseconds per posting instead of a multi-valued column lookup per match.
pub(super) struct TermCounts {
    pub(super) tag_field: Field,
}

pub(super) const FACET_FIELDS: [&str; 2] = ["lang", "tag"];

pub(super) type Counts = [HashMap<String, u64>; 2];

pub(super) struct SegmentTermCounts {
    lang: Option<StrColumn>,
    lang_counts: Vec<u32>,
    tags: Option<StrColumn>,
    tag_index: Arc<tantivy::InvertedIndexReader>,
    max_doc: DocId,
    docs: Vec<DocId>,
}

impl Collector for TermCounts {
    type Fruit = Counts;
    type Child = SegmentTermCounts;

    fn for_segment(
        &self,
        _segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentTermCounts> {
        let [lang, tag] = FACET_FIELDS;
        let lang = reader.fast_fields().str(lang)?;
        let lang_counts = vec![0u32; lang.as_ref().map_or(0, |c| c.num_terms())];
        Ok(SegmentTermCounts {
            lang,
            lang_counts,
            tags: reader.fast_fields().str(tag)?,
            tag_index: reader.inverted_index(self.tag_field)?,
            max_doc: reader.max_doc(),
            docs: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Counts>) -> tantivy::Result<Counts> {
        Ok(merge(fruits))
    }
}

/// Counts of several parts (segments, or the browse cache's shared and own parts) added up.
pub(super) fn merge(parts: impl IntoIterator<Item = Counts>) -> Counts {
    let mut total: Counts = Default::default();
    for part in parts {
        for (into, from) in total.iter_mut().zip(part) {
            for (value, count) in from {
                *into.entry(value).or_default() += count;
            }
        }
    }
    total
}

impl SegmentTermCounts {
    /// Tag counts from posting lists intersected with the matches; `None` on a read error.
    fn tags_from_postings(&self) -> Option<HashMap<String, u64>> {
        let mut matched = vec![0u64; self.max_doc as usize / 64 + 1];
        for &doc in &self.docs {
            matched[doc as usize / 64] |= 1 << (doc % 64);
        }
        let mut out = HashMap::new();
        let mut terms = self.tag_index.terms().stream().ok()?;
        while terms.advance() {
            let mut postings = self
                .tag_index
                .read_postings_from_terminfo(terms.value(), IndexRecordOption::Basic)
                .ok()?;
            let mut count = 0u64;
            let mut doc = postings.doc();
            while doc != tantivy::TERMINATED {
                count += (matched[doc as usize / 64] >> (doc % 64)) & 1;
                doc = postings.advance();
            }
            if count > 0 {
                out.insert(String::from_utf8_lossy(terms.key()).into_owned(), count);
            }
        }
        Some(out)
    }

    fn tags_from_column(&self) -> HashMap<String, u64> {
        let mut out = HashMap::new();
        let Some(column) = &self.tags else { return out };
        let mut counts = vec![0u32; column.num_terms()];
        for &doc in &self.docs {
            for ord in column.ords().values_for_doc(doc) {
                counts[ord as usize] += 1;
            }
        }
        resolve(column, counts, &mut out);
        out
    }
}

/// Names the non-zero ordinal counts of `column` into `out`.
fn resolve(column: &StrColumn, counts: Vec<u32>, out: &mut HashMap<String, u64>) {
    for (ord, count) in counts.into_iter().enumerate().filter(|(_, c)| *c > 0) {
        let mut value = String::new();
        if column.ord_to_str(ord as u64, &mut value).unwrap_or(false) {
            out.insert(value, u64::from(count));
        }
    }
}

impl SegmentCollector for SegmentTermCounts {
    type Fruit = Counts;

    fn collect(&mut self, doc: DocId, _score: tantivy::Score) {
        if let Some(lang) = &self.lang
            && let Some(ord) = lang.ords().first(doc)
        {
            self.lang_counts[ord as usize] += 1;
        }
        self.docs.push(doc);
    }

    fn harvest(mut self) -> Counts {
        let mut languages = HashMap::new();
        if let Some(column) = &self.lang {
            resolve(
                column,
                std::mem::take(&mut self.lang_counts),
                &mut languages,
            );
        }
        let broad = self.docs.len() * 16 > self.max_doc as usize;
        let tags = match broad.then(|| self.tags_from_postings()).flatten() {
            Some(tags) => tags,
            None => self.tags_from_column(),
        };
        [languages, tags]
    }
}
