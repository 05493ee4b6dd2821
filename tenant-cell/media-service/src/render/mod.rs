//! Turning PoCs into files: reports (PDF via Typst, CSV, JSON) and the yearly video (Typst
//! cards → PNG → ffmpeg).

pub mod report;
pub mod typeset;
pub mod video;

use std::collections::BTreeMap;

use wire_types::pocs::{KeyCount, Poc};

/// Counts by key, largest first (ties by key).
pub fn count_by<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<KeyCount> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for key in keys {
        *counts.entry(key).or_default() += 1;
    }
    let mut out: Vec<KeyCount> = counts
        .into_iter()
        .map(|(key, count)| KeyCount {
            key: key.to_owned(),
            count,
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    out
}

/// Distinct tags over PoCs.
pub fn distinct_tags(pocs: &[Poc]) -> usize {
    let mut tags: Vec<&str> = pocs
        .iter()
        .flat_map(|p| p.tags.iter().map(String::as_str))
        .collect();
    tags.sort_unstable();
    tags.dedup();
    tags.len()
}

/// `https://github.com/a/b` → `github.com/a/b`.
pub fn short_url(url: &str) -> &str {
    url.trim_start_matches("https://")
        .trim_start_matches("www.")
        .trim_end_matches('/')
}

/// `2026-03-04`.
pub fn day(t: time::OffsetDateTime) -> String {
    let d = t.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}
