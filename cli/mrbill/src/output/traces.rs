//! `mrbill traces`: the recent traces, and one drawn as a tree.

use super::{Output, table};
use crate::traces::{SpanRecord, TraceSummary};

impl Output {
    pub fn traces(&self, list: &[TraceSummary]) {
        if self.json {
            return self.json(&list);
        }
        if list.is_empty() {
            say!("No traces yet (mrbill up --with-traces, then use the platform).");
            return;
        }
        let mut rows = vec![vec![
            "TRACE".into(),
            "STARTED".into(),
            "MS".into(),
            "SPANS".into(),
            "ERRORS".into(),
            "TENANT".into(),
            "ROOT".into(),
        ]];
        for t in list {
            rows.push(vec![
                t.trace_id.clone(),
                started(t.start_ns),
                format!("{:.1}", t.duration_ms),
                t.spans.to_string(),
                t.errors.to_string(),
                t.tenant.clone().unwrap_or_else(|| "-".into()),
                format!("{} ({})", t.root, t.service),
            ]);
        }
        table(&rows);
        say!("\nOne drawn as a tree: mrbill traces show <trace>");
    }

    pub fn trace(&self, spans: &[(usize, SpanRecord)]) {
        if self.json {
            let list: Vec<&SpanRecord> = spans.iter().map(|(_, s)| s).collect();
            return self.json(&list);
        }
        let Some(start) = spans.iter().map(|(_, s)| s.start_ns).min() else {
            say!("No such trace (give at least its first 8 characters).");
            return;
        };
        let mut rows = vec![vec![
            "AT MS".into(),
            "MS".into(),
            "SERVICE".into(),
            "SPAN".into(),
        ]];
        for (depth, s) in spans {
            let mut name = format!("{}{}", "  ".repeat(*depth), s.name);
            if s.error {
                name.push_str("  ✗ error");
            }
            if depth == &0
                && let Some(tenant) = &s.tenant
            {
                name.push_str(&format!("  [{tenant}]"));
            }
            rows.push(vec![
                format!("{:.1}", (s.start_ns.saturating_sub(start)) as f64 / 1e6),
                format!("{:.1}", s.duration_ms()),
                s.service.clone(),
                name,
            ]);
        }
        table(&rows);
    }
}

/// A span's start, local to UTC, to the millisecond.
fn started(ns: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]"
            ))
            .ok()
        })
        .unwrap_or_else(|| "-".into())
}
