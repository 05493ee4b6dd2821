//! `mrbill tenant backup | backups | restore`.

use std::time::{Duration, Instant};

use cell_model::local::Home;
use wire_types::admin::{Backup, BackupList, RestorePlan, Tenant};

use crate::client::{CliResult, Client, Failure, exit};
use crate::output::Output;
use crate::{path_segment, wait};

/// How long `mrbill tenant backup` follows a backup (the control plane keeps going after).
const PATIENCE: Duration = Duration::from_secs(30 * 60);

pub fn take(home: &Home, out: &Output, slug: &str, no_wait: bool) -> CliResult<()> {
    let client = Client::connect(home)?;
    let segment = path_segment(slug)?;
    let started = Instant::now();
    let mut backup: Backup = client.post(
        &format!("/v1/tenants/{segment}/backups"),
        &serde_json::json!({}),
    )?;
    while !no_wait && matches!(backup.state.as_str(), "pending" | "running") {
        if started.elapsed() > PATIENCE {
            return Err(Failure::new(
                "timeout",
                format!("the backup of `{slug}` did not finish within 30 min"),
                exit::TIMEOUT,
            )
            .hint(format!("it goes on; see `mrbill tenant backups {slug}`")));
        }
        std::thread::sleep(Duration::from_millis(100));
        backup = client.get(&format!("/v1/tenants/{segment}/backups/{}", backup.id))?;
    }
    out.backup(&backup);
    if backup.state == "failed" {
        return Err(Failure::new(
            "backup_failed",
            backup.error.unwrap_or_else(|| "the backup failed".into()),
            exit::ERROR,
        ));
    }
    Ok(())
}

pub fn list(home: &Home, out: &Output, slug: &str) -> CliResult<()> {
    let client = Client::connect(home)?;
    let path = format!("/v1/tenants/{}/backups", path_segment(slug)?);
    out.backups(&client.get::<BackupList>(&path)?);
    Ok(())
}

pub fn restore(
    home: &Home,
    out: &Output,
    slug: &str,
    from: Option<String>,
    to_time: Option<String>,
    yes: bool,
    no_wait: bool,
) -> CliResult<()> {
    if !yes {
        return Err(Failure::new(
            "confirmation_required",
            format!("restoring `{slug}` replaces what it wrote after the backup"),
            exit::INVALID,
        )
        .hint(format!("run `mrbill tenant restore {slug} --yes`")));
    }
    let client = Client::connect(home)?;
    let started = Instant::now();
    let mut body = serde_json::Map::new();
    if let Some(from) = from {
        body.insert("from".into(), from.into());
    }
    if let Some(t) = to_time {
        body.insert("to_time".into(), t.into());
    }
    let plan: RestorePlan = client.post(
        &format!("/v1/tenants/{}/restore", path_segment(slug)?),
        &serde_json::Value::Object(body),
    )?;
    out.restore_plan(&plan, no_wait);
    if no_wait {
        return Ok(());
    }
    let tenant = wait(&client, out, slug, "restore", started)?;
    out.restored(&tenant, &plan, started.elapsed());
    Ok(())
}

/// Undoes the running restore (before its switch) and follows it until the cell as it was
/// serves again.
pub fn abort(home: &Home, out: &Output, slug: &str) -> CliResult<()> {
    let client = Client::connect(home)?;
    let started = Instant::now();
    let _: Tenant = client.post(
        &format!("/v1/tenants/{}/restore/abort", path_segment(slug)?),
        &serde_json::json!({}),
    )?;
    let tenant = wait(&client, out, slug, "unrestore", started)?;
    out.unrestored(&tenant, started.elapsed());
    Ok(())
}
