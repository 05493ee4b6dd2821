//! Reports: the PoCs a user may see over a date range, as PDF (title, summary figures, a bar
//! chart of the chosen grouping, PoCs per month, the table), CSV (one row per PoC) or JSON.
//! Summary figures are computed from the same rows as the table, so they always agree.

use serde::Serialize;
use serde_json::json;
use wire_types::media::{CreateReport, GroupBy, ReportFormat};
use wire_types::pocs::{KeyCount, Poc};

use super::{count_by, day, distinct_tags, short_url};

/// Groups drawn in the chart; the rest are summarised as "… and N more".
const CHART_GROUPS: usize = 15;
/// Months drawn in the per-month chart (the latest ones).
const CHART_MONTHS: usize = 36;

/// What the report is about, as shown on it.
#[derive(Clone, Debug)]
pub struct Meta {
    pub tenant: String,
    pub request: CreateReport,
    pub generated_at: time::OffsetDateTime,
}

fn group_label(g: GroupBy) -> &'static str {
    match g {
        GroupBy::Language => "language",
        GroupBy::Tag => "tag",
        GroupBy::Month => "month",
        GroupBy::User => "contributor",
    }
}

fn month(p: &Poc) -> String {
    let d = p.created_at.date();
    format!("{:04}-{:02}", d.year(), u8::from(d.month()))
}

/// Counts of the chosen grouping.
pub fn groups(pocs: &[Poc], by: GroupBy) -> Vec<KeyCount> {
    match by {
        GroupBy::Language => count_by(pocs.iter().map(|p| p.language.as_str())),
        GroupBy::Tag => count_by(pocs.iter().flat_map(|p| p.tags.iter().map(String::as_str))),
        GroupBy::Month => {
            let months: Vec<String> = pocs.iter().map(month).collect();
            let mut out = count_by(months.iter().map(String::as_str));
            out.sort_by(|a, b| a.key.cmp(&b.key));
            out
        }
        GroupBy::User => {
            let owners: Vec<String> = pocs.iter().map(|p| p.owner_id.to_string()).collect();
            count_by(owners.iter().map(String::as_str))
        }
    }
}

fn period(r: &CreateReport, generated: time::OffsetDateTime) -> String {
    match (&r.from, &r.to) {
        (Some(f), Some(t)) => format!("{f} – {t}"),
        (Some(f), None) => format!("{f} – {}", day(generated)),
        (None, Some(t)) => format!("until {t}"),
        (None, None) => format!("all time until {}", day(generated)),
    }
}

fn scope(r: &CreateReport) -> String {
    let mut parts = Vec::new();
    if !r.tags.is_empty() {
        parts.push(format!("tagged {}", r.tags.join(" + ")));
    }
    if !r.exclude_tags.is_empty() {
        parts.push(format!("without {}", r.exclude_tags.join(", ")));
    }
    if parts.is_empty() {
        "all tags".into()
    } else {
        parts.join(" · ")
    }
}

#[derive(Serialize)]
struct Totals {
    pocs: usize,
    languages: usize,
    tags: usize,
    users: usize,
}

fn totals(pocs: &[Poc]) -> Totals {
    let languages = count_by(pocs.iter().map(|p| p.language.as_str())).len();
    let owners: Vec<String> = pocs.iter().map(|p| p.owner_id.to_string()).collect();
    Totals {
        pocs: pocs.len(),
        languages,
        tags: distinct_tags(pocs),
        users: count_by(owners.iter().map(String::as_str)).len(),
    }
}

/// A CSV or JSON report; `None` for PDF, which `media-render` typesets from [`pdf_data`].
pub fn render(meta: &Meta, pocs: &[Poc]) -> anyhow::Result<Option<Vec<u8>>> {
    Ok(match meta.request.format {
        ReportFormat::Pdf => None,
        ReportFormat::Csv => Some(csv(pocs)?),
        ReportFormat::Json => Some(serde_json::to_vec_pretty(&json_report(meta, pocs))?),
    })
}

/// What `templates/report.typ` reads.
pub fn pdf_data(meta: &Meta, pocs: &[Poc]) -> serde_json::Value {
    let r = &meta.request;
    let all_groups = groups(pocs, r.group_by);
    let shown: Vec<KeyCount> = all_groups
        .iter()
        .take(CHART_GROUPS)
        .map(|g| KeyCount {
            // Contributor ids are long; their first block identifies them on a chart.
            key: if r.group_by == GroupBy::User {
                g.key.chars().take(8).collect()
            } else {
                g.key.clone()
            },
            count: g.count,
        })
        .collect();
    let months = groups(pocs, GroupBy::Month);
    let months = &months[months.len().saturating_sub(CHART_MONTHS)..];
    json!({
        "title": "PoC report",
        "tenant": meta.tenant,
        "period": period(r, meta.generated_at),
        "scope": scope(r),
        "generated_at": day(meta.generated_at),
        "group_label": group_label(r.group_by),
        "totals": totals(pocs),
        "groups": shown,
        "groups_more": all_groups.len().saturating_sub(CHART_GROUPS),
        "months": months,
        "pocs": pocs.iter().map(|p| json!({
            "name": p.name,
            "language": p.language,
            "tags": p.tags,
            "created": day(p.created_at),
            "repository": short_url(&p.repository_url),
        })).collect::<Vec<_>>(),
    })
}

/// Spreadsheet programs run cells that start with these as formulas; such cells get a leading
/// apostrophe (OWASP's advice against CSV injection).
fn cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

fn csv(pocs: &[Poc]) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "id",
        "name",
        "language",
        "tags",
        "frameworks",
        "visibility",
        "owner_id",
        "repository_url",
        "created_at",
    ])?;
    for p in pocs {
        w.write_record([
            p.id.to_string(),
            cell(&p.name),
            cell(&p.language),
            cell(&p.tags.join(";")),
            cell(&p.frameworks.join(";")),
            p.visibility.as_str().to_owned(),
            p.owner_id.to_string(),
            cell(&p.repository_url),
            p.created_at
                .format(&time::format_description::well_known::Rfc3339)?,
        ])?;
    }
    Ok(w.into_inner()?)
}

fn json_report(meta: &Meta, pocs: &[Poc]) -> serde_json::Value {
    let r = &meta.request;
    json!({
        "tenant": meta.tenant,
        "generated_at": meta.generated_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "from": r.from,
        "to": r.to,
        "tags": r.tags,
        "exclude_tags": r.exclude_tags,
        "group_by": r.group_by,
        "totals": totals(pocs),
        "groups": groups(pocs, r.group_by),
        "by_month": groups(pocs, GroupBy::Month),
        "pocs": pocs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_like_cells_are_defused() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("plain"), "plain");
    }
}
