//! The platform's keeper (`mrbill keep`, started by `mrbill up`, stopped first by `mrbill
//! down`): keeps the control plane, the router and (asked for) Prometheus and the trace
//! collector running, as cells' supervisors keep their services.
//!
//! A component that dies of a crash — killed, a panic, a non-zero exit — is started again at
//! once, then after 0.2, 0.4 … ≤ 5 s while it keeps failing within 30 s of its start. One that
//! stopped cleanly (SIGTERM: someone wanted it stopped) stays stopped. Components already
//! running when the keeper starts (a previous keeper's) are adopted and watched by pid: gone
//! while their ready file still names them is a crash, since a clean stop removes the file.
//! With nothing left to keep, the keeper exits.
//!
//! ```text
//! own child    exited, failure ──► restart after backoff      exited, success ──► released
//! adopted pid  gone, ready file names it ──► restart           gone, no file ──► released
//! ```

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use cell_model::local::{Home, pid_alive};

use crate::client::read_ready;

const TICK: Duration = Duration::from_millis(50);
/// A component alive this long after its start is healthy again: its next crash restarts it
/// at once.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How soon a component that could not be started is tried again.
const START_RETRY: Duration = Duration::from_millis(250);

/// Where the keeper writes its pid.
pub fn pid_file(home: &Home) -> PathBuf {
    home.root().join("keeper.pid")
}

/// The running keeper's pid (a live process that is a keeper: a pid file outlives its
/// process, and pids are reused).
pub fn running(home: &Home) -> Option<u32> {
    std::fs::read_to_string(pid_file(home))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|pid| pid_alive(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                args.contains(&&b"keep"[..]) && args.contains(&&b"--public-url"[..])
            })
        })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    ControlPlane,
    Router,
    /// The local Prometheus (`mrbill up --with-prometheus`); its ready file is written for it.
    Prometheus,
    /// The local trace collector (`mrbill up --with-traces`, `traces.rs`).
    Traces,
}

impl Part {
    /// What the keeper keeps, in start order (the trace collector first: the others send to
    /// it from their start).
    pub fn kept(with_prometheus: bool, with_traces: bool) -> Vec<Part> {
        let mut parts = Vec::new();
        if with_traces {
            parts.push(Part::Traces);
        }
        parts.extend([Part::ControlPlane, Part::Router]);
        if with_prometheus {
            parts.push(Part::Prometheus);
        }
        parts
    }

    pub fn name(self) -> &'static str {
        match self {
            Part::ControlPlane => "control-plane",
            Part::Router => "router",
            Part::Prometheus => "prometheus",
            Part::Traces => "traces",
        }
    }

    pub fn ready(self, home: &Home) -> PathBuf {
        match self {
            Part::ControlPlane => home.control_plane_ready(),
            Part::Router => home.router_ready(),
            Part::Prometheus => crate::prometheus::ready(home),
            Part::Traces => crate::traces::ready(home),
        }
    }
}

enum State {
    Own { child: Child, since: Instant },
    Adopted(u32),
    Waiting(Instant),
    Released,
}

struct Component {
    part: Part,
    state: State,
    /// Crashes in a row, each within [`HEALTHY_AFTER`] of its start.
    failures: u32,
    /// Failed starts since the last one that worked.
    start_errors: u32,
}

fn log(message: &str) {
    let now = time::OffsetDateTime::now_utc();
    eprintln!("{now} keeper: {message}");
}

/// Runs until nothing is left to keep. `start(part)` starts a component (its own child).
pub fn run(
    home: &Home,
    parts: Vec<Part>,
    start: impl Fn(Part) -> anyhow::Result<Child>,
) -> anyhow::Result<()> {
    std::fs::write(pid_file(home), std::process::id().to_string())?;
    let mut parts: Vec<Component> = parts
        .into_iter()
        .map(|part| Component {
            part,
            state: match read_ready(&part.ready(home)).filter(|r| pid_alive(r.pid)) {
                Some(r) => State::Adopted(r.pid),
                None => State::Waiting(Instant::now()),
            },
            failures: 0,
            start_errors: 0,
        })
        .collect();
    loop {
        for c in &mut parts {
            let name = c.part.name();
            let ready = c.part.ready(home);
            match &mut c.state {
                State::Own { child, since } => match child.try_wait() {
                    Ok(Some(status)) if status.success() => {
                        log(&format!("{name} stopped ({status}); leaving it stopped"));
                        c.state = State::Released;
                    }
                    Ok(Some(status)) => {
                        c.failures = match since.elapsed() > HEALTHY_AFTER {
                            true => 1,
                            false => c.failures + 1,
                        };
                        let delay = backoff(c.failures);
                        log(&format!(
                            "{name} died ({status}); starting it again in {} ms",
                            delay.as_millis()
                        ));
                        c.state = State::Waiting(Instant::now() + delay);
                    }
                    Ok(None) => {}
                    Err(e) => log(&format!("{name}: {e}")),
                },
                State::Adopted(pid) if !pid_alive(*pid) => {
                    let crashed = read_ready(&ready).is_some_and(|r| r.pid == *pid);
                    if crashed {
                        log(&format!("{name} (pid {pid}) died; starting it again"));
                        c.state = State::Waiting(Instant::now());
                    } else {
                        log(&format!("{name} (pid {pid}) stopped; leaving it stopped"));
                        c.state = State::Released;
                    }
                }
                State::Waiting(at) if Instant::now() >= *at => {
                    let _ = std::fs::remove_file(&ready);
                    match start(c.part) {
                        Ok(child) => {
                            log(&format!("{name} started (pid {})", child.id()));
                            c.start_errors = 0;
                            c.state = State::Own {
                                child,
                                since: Instant::now(),
                            };
                        }
                        Err(e) => {
                            // E.g. the router before the control plane listens: soon again,
                            // said once in a while.
                            if c.start_errors % 40 == 0 {
                                log(&format!("{name} cannot start yet: {e:#}"));
                            }
                            c.start_errors += 1;
                            c.state = State::Waiting(Instant::now() + START_RETRY);
                        }
                    }
                }
                _ => {}
            }
        }
        if parts.iter().all(|c| matches!(c.state, State::Released)) {
            log("nothing left to keep");
            let _ = std::fs::remove_file(pid_file(home));
            return Ok(());
        }
        std::thread::sleep(TICK);
    }
}

/// At once after the first crash, then 0.2 s doubling to [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    match failures {
        0 | 1 => Duration::ZERO,
        n => (Duration::from_millis(100) * 2u32.saturating_pow((n - 1).min(6))).min(MAX_BACKOFF),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_crash_restarts_at_once_and_repeated_ones_back_off() {
        let delays: Vec<u128> = (1..=8).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(delays, [0, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }
}
