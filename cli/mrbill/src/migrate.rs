//! `mrbill cell migrate`: start (or abort) a migration and follow its steps until it is done.

use std::time::{Duration, Instant};

use cell_model::local::Home;
use wire_types::admin::{Migration, MigrationList, MigrationPlan};

use crate::client::{CliResult, Client, Failure, exit};
use crate::output::Output;
use crate::path_segment;
use crate::progress::MigrationProgress;

/// How long `mrbill` follows a migration (the control plane keeps going after that).
const PATIENCE: Duration = Duration::from_secs(30 * 60);

pub fn run(
    home: &Home,
    out: &Output,
    slug: &str,
    to: Option<String>,
    dry_run: bool,
    abort: bool,
    no_wait: bool,
) -> CliResult<()> {
    let client = Client::connect(home)?;
    let segment = path_segment(slug)?;
    let started = Instant::now();
    let id = if abort {
        let list: MigrationList = client.post(
            &format!("/v1/tenants/{segment}/migration/abort"),
            &serde_json::json!({}),
        )?;
        list.migrations.first().map(|m| m.id.clone())
    } else {
        let to = to.ok_or_else(|| {
            Failure::new(
                "invalid_argument",
                "--to <placement> is required",
                exit::INVALID,
            )
        })?;
        let plan: MigrationPlan = client.post(
            &format!("/v1/tenants/{segment}/migrate"),
            &serde_json::json!({ "to": to, "dry_run": dry_run }),
        )?;
        out.migration_plan(&plan, dry_run || no_wait);
        if dry_run {
            return Ok(());
        }
        plan.id
    };
    if no_wait {
        return Ok(());
    }
    let mut progress = MigrationProgress::new(out.is_json(), started);
    loop {
        let list: MigrationList = client.get(&format!("/v1/tenants/{segment}/migrations"))?;
        let current = list
            .migrations
            .into_iter()
            .find(|m| Some(&m.id) == id.as_ref())
            .ok_or_else(|| Failure::new("not_found", "the migration is gone", exit::NOT_FOUND))?;
        progress.update(&current);
        if finished(&current) {
            progress.finish();
            out.migration(&current, started.elapsed());
            return Ok(());
        }
        if started.elapsed() > PATIENCE {
            return Err(Failure::new(
                "timeout",
                format!(
                    "the migration of `{slug}` did not finish within {} min",
                    PATIENCE.as_secs() / 60
                ),
                exit::TIMEOUT,
            )
            .hint(format!(
                "the control plane keeps going; see `mrbill cell migrations {slug}`"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Aborted, or done with every step recorded (the last one marks it done, then is recorded).
fn finished(m: &Migration) -> bool {
    m.state == "aborted" || (m.state == "done" && m.steps.iter().all(|s| s.done))
}
