//! Migrations and drains, for people and for scripts.

use std::time::Duration;

use wire_types::admin::{Migration, MigrationList, MigrationPlan};

use super::{Output, table};
use crate::drain::Moved;

impl Output {
    /// The plan; in JSON only when it is the answer (a dry run, or not followed).
    pub fn migration_plan(&self, plan: &MigrationPlan, answer: bool) {
        if self.json {
            if answer {
                self.json(plan);
            }
            return;
        }
        let verb = if plan.dry_run { "Would move" } else { "Moving" };
        eprintln!(
            "{verb} {} (cell {}, {} units) from {} to {}: {}",
            plan.tenant,
            plan.cell_id,
            plan.units,
            plan.from,
            plan.to,
            plan.steps.join(" → ")
        );
    }

    /// Prints the steps done since the last call; returns how many are shown.
    pub fn migration(&self, m: &Migration, took: Duration) {
        if self.json {
            return self.json(m);
        }
        match m.freeze_ms {
            Some(freeze) => say!(
                "Migration {} of cell {}: {} → {} is {} ({:.1} s); requests were held for {freeze} ms.",
                m.id,
                m.cell_id,
                m.from,
                m.to,
                m.state,
                took.as_secs_f64()
            ),
            None => say!(
                "Migration {} of cell {}: {} → {} is {} ({:.1} s); the tenant stays on {}.",
                m.id,
                m.cell_id,
                m.from,
                m.to,
                m.state,
                took.as_secs_f64(),
                m.from
            ),
        }
    }

    pub fn migrations(&self, list: &MigrationList) {
        if self.json {
            return self.json(list);
        }
        let mut rows = vec![vec![
            "ID".into(),
            "FROM".into(),
            "TO".into(),
            "STATE".into(),
            "FREEZE".into(),
            "STARTED".into(),
        ]];
        for m in &list.migrations {
            rows.push(vec![
                m.id.clone(),
                m.from.clone(),
                m.to.clone(),
                m.state.clone(),
                m.freeze_ms
                    .map(|ms| format!("{ms} ms"))
                    .unwrap_or_else(|| "-".into()),
                m.started_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
            ]);
        }
        table(&rows);
    }

    pub fn drained(&self, placement: &str, moved: &[Moved], took: Duration) {
        if self.json {
            return self.json(&serde_json::json!({ "placement": placement, "moved": moved }));
        }
        self.drain_report(moved);
        say!(
            "Placement {placement} is drained ({} cells moved in {:.1} s); it stays cordoned.",
            moved.len(),
            took.as_secs_f64()
        );
    }

    /// What a drain moved so far.
    pub fn drain_report(&self, moved: &[Moved]) {
        if self.json || moved.is_empty() {
            return;
        }
        let mut rows = vec![vec![
            "TENANT".into(),
            "TO".into(),
            "STATE".into(),
            "FREEZE".into(),
            "TOOK".into(),
        ]];
        for m in moved {
            rows.push(vec![
                m.tenant.clone(),
                m.to.clone(),
                m.state.clone(),
                m.freeze_ms
                    .map(|f| format!("{f} ms"))
                    .unwrap_or_else(|| "-".into()),
                format!("{:.1} s", m.seconds),
            ]);
        }
        table(&rows);
    }
}
