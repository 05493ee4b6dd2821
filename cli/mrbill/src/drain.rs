//! `mrbill placement drain`: cordon a placement, then move every cell off it in waves, each to
//! the roomiest open placement of the same region (data stays in its region). Stops at the
//! first failure with a report; running it again resumes (it follows migrations already under
//! way and starts the rest).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cell_model::local::Home;
use wire_types::admin::{Cell, CellList, MigrationList, MigrationPlan, Placement, PlacementList};

use crate::client::{CliResult, Client, Failure, exit};
use crate::output::Output;
use crate::path_segment;

/// A migration that makes no progress for this long while failing stops the drain.
const STUCK: Duration = Duration::from_secs(120);

/// One tenant's move, as the drain reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Moved {
    pub tenant: String,
    pub to: String,
    pub state: String,
    pub freeze_ms: Option<u64>,
    pub seconds: f64,
}

pub fn run(home: &Home, out: &Output, name: &str, parallel: usize) -> CliResult<()> {
    let client = Client::connect(home)?;
    let segment = path_segment(name)?;
    let source: Placement = client.post(
        &format!("/v1/placements/{segment}/cordon"),
        &serde_json::json!({}),
    )?;
    eprintln!(
        "Draining {name} ({} cells), {parallel} at a time.",
        source.cells
    );
    let started = Instant::now();
    // Tenant → (when its move started here, last progress seen).
    let mut running: BTreeMap<String, (Instant, usize, Instant)> = BTreeMap::new();
    let mut moved: Vec<Moved> = Vec::new();
    // Why no more moves start; the drain stops once the moves under way have finished.
    let mut halted: Option<(String, String)> = None;
    loop {
        let cells = client.get::<CellList>("/v1/cells")?.cells;
        let leaving: Vec<&Cell> = cells.iter().filter(|c| c.placement == name).collect();
        if running.is_empty()
            && let Some((tenant, why)) = &halted
        {
            return Err(stopped(tenant, why, &moved, out));
        }
        if leaving.is_empty() && running.is_empty() {
            break;
        }
        // Follow the moves under way (ours, or a previous run's).
        for cell in &leaving {
            let migrating = cell
                .operation
                .as_ref()
                .is_some_and(|o| o.name == "migrate" && !o.finished);
            if migrating && !running.contains_key(&cell.tenant) {
                running.insert(cell.tenant.clone(), (Instant::now(), 0, Instant::now()));
            }
        }
        for (tenant, (since, progress, last)) in running.clone() {
            let path = format!("/v1/tenants/{}/migrations", path_segment(&tenant)?);
            let Some(m) = client
                .get::<MigrationList>(&path)?
                .migrations
                .into_iter()
                .next()
            else {
                continue;
            };
            let done = m.steps.iter().filter(|s| s.done).count();
            let finished = m.state == "aborted" || (m.state == "done" && done == m.steps.len());
            if finished {
                running.remove(&tenant);
                eprintln!(
                    "  {} {tenant} → {} ({}): {}",
                    mark(&m.state),
                    m.to,
                    m.state,
                    m.freeze_ms
                        .map(|f| format!("held {f} ms"))
                        .unwrap_or_default()
                );
                moved.push(Moved {
                    tenant: tenant.clone(),
                    to: m.to.clone(),
                    state: m.state.clone(),
                    freeze_ms: m.freeze_ms,
                    seconds: since.elapsed().as_secs_f64(),
                });
                if m.state == "aborted" {
                    return Err(stopped(&tenant, "its migration was aborted", &moved, out));
                }
            } else if done > progress {
                running.insert(tenant, (since, done, Instant::now()));
            } else if last.elapsed() > STUCK {
                let error = cells
                    .iter()
                    .find(|c| c.tenant == tenant)
                    .and_then(|c| c.operation.as_ref()?.last_error.clone())
                    .unwrap_or_else(|| "no progress".into());
                return Err(stopped(
                    &tenant,
                    &format!("its migration is stuck: {error}"),
                    &moved,
                    out,
                ));
            }
        }
        // Start more, up to `parallel` at once.
        for cell in leaving
            .iter()
            .filter(|c| c.operation.as_ref().is_none_or(|o| o.finished))
        {
            if running.len() >= parallel || halted.is_some() {
                break;
            }
            if running.contains_key(&cell.tenant) {
                continue;
            }
            let placements = client.get::<PlacementList>("/v1/placements")?.placements;
            let Some(to) = destination(&placements, &source, cell.spec.tier.units()) else {
                let why = format!(
                    "no open placement in region {} has {} free units",
                    source.region,
                    cell.spec.tier.units()
                );
                halted = Some((cell.tenant.clone(), why));
                break;
            };
            let path = format!("/v1/tenants/{}/migrate", path_segment(&cell.tenant)?);
            match client.post::<MigrationPlan>(&path, &serde_json::json!({ "to": to })) {
                Ok(_) => {
                    eprintln!("  … {} → {to}", cell.tenant);
                    running.insert(cell.tenant.clone(), (Instant::now(), 0, Instant::now()));
                }
                Err(f) => {
                    halted = Some((cell.tenant.clone(), f.message));
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    out.drained(name, &moved, started.elapsed());
    Ok(())
}

/// The uncordoned placement of the source's region (not the source) with the most free units,
/// if it has `units` free.
fn destination(placements: &[Placement], source: &Placement, units: u32) -> Option<String> {
    placements
        .iter()
        .filter(|p| p.name != source.name && p.region == source.region && !p.cordoned)
        .map(|p| (p.capacity.saturating_sub(p.used), p))
        .filter(|(free, _)| *free >= units)
        .max_by(|(a, p), (b, q)| a.cmp(b).then_with(|| q.name.cmp(&p.name)))
        .map(|(_, p)| p.name.clone())
}

fn mark(state: &str) -> &'static str {
    if state == "done" { "✓" } else { "✗" }
}

fn stopped(tenant: &str, why: &str, moved: &[Moved], out: &Output) -> Failure {
    out.drain_report(moved);
    Failure::new(
        "drain_stopped",
        format!(
            "the drain stopped at {tenant}: {why} ({} moved before)",
            moved.len()
        ),
        exit::CONFLICT,
    )
    .hint("fix the cause, then run the same `mrbill placement drain` again: it resumes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(name: &str, region: &str, capacity: u32, used: u32, cordoned: bool) -> Placement {
        Placement {
            name: name.into(),
            region: region.into(),
            capacity,
            used,
            cordoned,
            cells: used,
        }
    }

    #[test]
    fn the_destination_is_the_roomiest_open_placement_of_the_region() {
        let source = placement("sao-1", "sa-east-1", 10, 4, true);
        let all = [
            source.clone(),
            placement("sao-2", "sa-east-1", 10, 8, false),
            placement("sao-3", "sa-east-1", 10, 2, false),
            placement("sao-4", "sa-east-1", 20, 2, true),
            placement("use-1", "us-east-1", 100, 0, false),
        ];
        assert_eq!(destination(&all, &source, 1).as_deref(), Some("sao-3"));
        assert_eq!(destination(&all, &source, 9), None, "never another region");
    }
}
