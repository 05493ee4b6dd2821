//! Backups and restores, for people and for scripts.

use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use wire_types::admin::{Backup, BackupList, RestorePlan, Tenant};

use super::{Output, table};

impl Output {
    pub fn backup(&self, b: &Backup) {
        if self.json {
            return self.json(b);
        }
        match b.state.as_str() {
            "done" => say!(
                "Backup {} of {} (cell {}): {} in {:.1} s, as of {}\n  {}",
                b.id,
                b.tenant,
                b.cell_id,
                size(b.bytes),
                b.duration_ms.unwrap_or(0) as f64 / 1000.0,
                when(b.taken_at),
                b.path.as_deref().unwrap_or("-")
            ),
            state => say!(
                "Backup {} of {} (cell {}) is {state}{}",
                b.id,
                b.tenant,
                b.cell_id,
                b.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        }
    }

    pub fn backups(&self, list: &BackupList) {
        if self.json {
            return self.json(list);
        }
        let mut rows = vec![vec![
            "ID".into(),
            "KIND".into(),
            "STATE".into(),
            "TAKEN AT".into(),
            "SIZE".into(),
            "TOOK".into(),
        ]];
        for b in &list.backups {
            rows.push(vec![
                b.id.clone(),
                b.kind.clone(),
                b.state.clone(),
                when(b.taken_at),
                size(b.bytes),
                b.duration_ms
                    .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        table(&rows);
    }

    /// The plan goes to stderr (the answer is the tenant once restored), or is the JSON
    /// answer when not followed.
    pub fn restore_plan(&self, plan: &RestorePlan, answer: bool) {
        if self.json {
            if answer {
                self.json(plan);
            }
            return;
        }
        eprintln!(
            "Restoring {} (cell {}) to backup {} as of {}: {}",
            plan.tenant,
            plan.cell_id,
            plan.backup.id,
            when(plan.backup.taken_at),
            plan.steps.join(" → ")
        );
    }

    pub fn restored(&self, t: &Tenant, plan: &RestorePlan, took: Duration) {
        if self.json {
            return self.json(t);
        }
        say!(
            "Restored {} to its backup as of {} in {:.1} s; it serves at {}.",
            t.slug,
            when(plan.backup.taken_at),
            took.as_secs_f64(),
            t.cell.status.endpoints.public.as_deref().unwrap_or("-")
        );
    }
}

impl Output {
    pub fn unrestored(&self, t: &Tenant, took: Duration) {
        if self.json {
            return self.json(t);
        }
        say!(
            "The restore of {} is undone ({:.1} s): the cell as it was serves at {}.",
            t.slug,
            took.as_secs_f64(),
            t.cell.status.endpoints.public.as_deref().unwrap_or("-")
        );
    }
}

fn when(t: Option<time::OffsetDateTime>) -> String {
    t.and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}

fn size(bytes: Option<u64>) -> String {
    match bytes {
        None => "-".into(),
        Some(b) if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        Some(b) if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        Some(b) => format!("{:.1} KiB", b as f64 / 1024.0),
    }
}
