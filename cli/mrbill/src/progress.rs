//! A migration followed step by step: on a terminal, a bar over its steps with the step under
//! way and how long it has run, and a line per finished step with its duration; elsewhere
//! (logs, pipes, `-o json`) only the lines, on stderr.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wire_types::admin::Migration;

/// The steps between these two hold the tenant's requests at the routers.
const FROZEN: (&str, &str) = ("freeze", "switch");

const TEMPLATE: &str = "{spinner} [{bar:30}] {pos}/{len} steps  {msg}  ({elapsed})";

fn styled(target: ProgressDrawTarget) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), target);
    bar.set_style(
        ProgressStyle::with_template(TEMPLATE)
            .expect("a valid template (unit-tested)")
            .progress_chars("=> "),
    );
    bar
}

pub struct MigrationProgress {
    bar: Option<ProgressBar>,
    shown: usize,
    started: Instant,
    /// The step under way and when it was first seen so.
    current: Option<(String, Instant)>,
}

impl MigrationProgress {
    pub fn new(quiet: bool, started: Instant) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = styled(ProgressDrawTarget::stderr());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Self::with_bar(bar, started)
    }

    fn with_bar(bar: Option<ProgressBar>, started: Instant) -> Self {
        Self {
            bar,
            shown: 0,
            started,
            current: None,
        }
    }

    /// Shows what `m` has done since the last call.
    pub fn update(&mut self, m: &Migration) {
        let done: Vec<_> = m.steps.iter().filter(|s| s.done).collect();
        for step in done.iter().skip(self.shown) {
            let line = format!(
                "  ✓ {:<9} {:>7} ms   (t+{:.1} s)",
                step.name,
                step.duration_ms.unwrap_or(0),
                self.started.elapsed().as_secs_f64()
            );
            match &self.bar {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            }
        }
        self.shown = self.shown.max(done.len());
        let Some(bar) = &self.bar else { return };
        let next = m.steps.iter().find(|s| !s.done).map(|s| s.name.clone());
        match (&next, &self.current) {
            (Some(name), Some((seen, _))) if name == seen => {}
            (Some(name), _) => self.current = Some((name.clone(), Instant::now())),
            (None, _) => self.current = None,
        }
        bar.set_length(m.steps.len() as u64);
        bar.set_position(done.len() as u64);
        let names: Vec<&str> = m.steps.iter().map(|s| s.name.as_str()).collect();
        let frozen = match (
            names.iter().position(|n| *n == FROZEN.0),
            names.iter().position(|n| *n == FROZEN.1),
        ) {
            (Some(from), Some(to)) => (from..=to).contains(&done.len()) && done.len() > from,
            _ => false,
        };
        if let Some((name, since)) = &self.current {
            bar.set_message(format!(
                "{name} {:.1} s{}",
                since.elapsed().as_secs_f64(),
                if frozen { "  · requests held" } else { "" }
            ));
        }
    }

    /// Clears the bar (the finished lines stay).
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migration(done: usize) -> Migration {
        let steps: Vec<_> = [
            "target", "copy", "catch-up", "freeze", "fence", "sync", "verify", "start", "switch",
            "retire",
        ]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            serde_json::json!({ "name": name, "done": i < done,
                "duration_ms": (i < done).then_some(10 * i as u64) })
        })
        .collect();
        serde_json::from_value(serde_json::json!({
            "id": "m-1", "cell_id": "c-acme-1", "from": "a", "to": "b", "state": "running",
            "steps": steps, "started_at": "2026-12-05T10:00:00Z",
        }))
        .expect("a migration")
    }

    #[test]
    fn the_bar_follows_the_steps_and_says_when_requests_are_held() {
        let bar = styled(ProgressDrawTarget::hidden());
        let mut progress = MigrationProgress::with_bar(Some(bar.clone()), Instant::now());
        progress.update(&migration(2));
        assert_eq!((bar.position(), bar.length()), (2, Some(10)));
        assert!(bar.message().starts_with("catch-up "), "{}", bar.message());
        assert!(!bar.message().contains("held"));
        progress.update(&migration(5));
        assert_eq!(bar.position(), 5);
        assert!(bar.message().starts_with("sync "), "{}", bar.message());
        assert!(bar.message().contains("requests held"), "{}", bar.message());
        progress.update(&migration(9));
        assert!(!bar.message().contains("held"), "{}", bar.message());
        progress.finish();
    }
}
