//! Rendering: aligned tables for people, JSON for scripts. Results go to stdout; progress goes
//! to stderr, so `-o json` output stays parseable.

use cell_model::contract::Service;
use std::time::{Duration, Instant};

use serde::Serialize;
use wire_types::admin::{Cell, Placement, PlacementList, Tenant, TierList};

/// `println!` for results: a reader that went away (`mrbill status | head -1`) ends the
/// command quietly, as in other command-line tools, instead of a panic on a broken pipe.
macro_rules! say {
    () => { $crate::output::line(format_args!("")) };
    ($($arg:tt)*) => { $crate::output::line(format_args!($($arg)*)) };
}

mod backups;
mod migrations;
mod traces;

fn line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    quiet_on_broken_pipe(written);
}

/// `bytes` to stdout, as [`say!`] writes a line.
pub fn raw(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    quiet_on_broken_pipe(out.write_all(bytes).and_then(|()| out.flush()));
}

fn quiet_on_broken_pipe(written: std::io::Result<()>) {
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error[io]: writing to stdout: {e}");
            std::process::exit(74);
        }
    }
}
use crate::local::{Platform, Processes, Stopped};

#[derive(Debug)]
pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    fn json<T: Serialize>(&self, value: &T) {
        say!(
            "{}",
            serde_json::to_string_pretty(value).expect("output serializes")
        );
    }

    pub fn up(&self, p: &Platform) {
        if self.json {
            return self.json(p);
        }
        if p.started.is_empty() {
            say!("The platform was already running.");
        } else {
            say!("Started: {}.", p.started.join(", "));
        }
        table(&[
            vec!["home".into(), p.home.clone()],
            vec![
                "router".into(),
                format!("{}   (tenant endpoints: {}/t/<slug>)", p.router, p.router),
            ],
            vec!["control plane".into(), p.control_plane.clone()],
            vec![
                "prometheus".into(),
                p.prometheus
                    .clone()
                    .unwrap_or_else(|| "not asked for (mrbill up --with-prometheus)".into()),
            ],
            vec![
                "traces".into(),
                p.traces.as_ref().map_or_else(
                    || "not asked for (mrbill up --with-traces)".into(),
                    |url| format!("{url}   (mrbill traces)"),
                ),
            ],
        ]);
        say!(
            "\nOnboard a tenant: mrbill tenant create acme --name \"Acme\" --admin-email admin@acme.com --email-domain acme.com"
        );
    }

    pub fn down(&self, s: &Stopped) {
        if self.json {
            return self.json(s);
        }
        if s.stopped.is_empty() {
            say!("Nothing was running.");
        } else {
            say!("Stopped: {}.", s.stopped.join(", "));
        }
    }

    pub fn status(&self, p: &Processes, cells: Option<&wire_types::admin::CellList>) {
        if self.json {
            return self
                .json(&serde_json::json!({ "processes": p, "cells": cells.map(|c| &c.cells) }));
        }
        let or_down = |s: &Option<String>| s.clone().unwrap_or_else(|| "not running".into());
        table(&[
            vec!["home".into(), p.home.clone()],
            vec![
                "keeper".into(),
                p.keeper
                    .map_or_else(|| "not running".into(), |pid| format!("pid {pid}")),
            ],
            vec!["control plane".into(), or_down(&p.control_plane)],
            vec!["router".into(), or_down(&p.router)],
            vec!["prometheus".into(), or_down(&p.prometheus)],
            vec!["traces".into(), or_down(&p.traces)],
            vec![
                "catalog postgres".into(),
                if p.catalog_postgres {
                    "running".into()
                } else {
                    "not running".into()
                },
            ],
            vec!["cell supervisors".into(), p.cell_supervisors.to_string()],
        ]);
        if let Some(cells) = cells {
            say!();
            self.cells(&cells.cells);
        }
    }

    pub fn tiers(&self, t: &TierList) {
        if self.json {
            return self.json(t);
        }
        let mut header: Vec<String> = vec!["TIER".into(), "UNITS".into()];
        header.extend(Service::ALL.map(|s| s.name().to_ascii_uppercase()));
        header.extend(["DB CLASS".into(), "STORAGE GiB".into()]);
        let mut rows = vec![header];
        for tier in &t.tiers {
            let b = |s: &str| {
                format!(
                    "{}..{} ({})",
                    tier[s]["min"], tier[s]["max"], tier[s]["default"]
                )
            };
            let mut row = vec![
                tier["tier"].as_str().unwrap_or("?").into(),
                tier["units"].to_string(),
            ];
            row.extend(Service::ALL.map(|s| b(s.name())));
            row.extend([
                tier["db_class"].as_str().unwrap_or("?").into(),
                format!("{}..{}", tier["db_storage_gib"], tier["db_storage_max_gib"]),
            ]);
            rows.push(row);
        }
        table(&rows);
        say!();
        placement_table(&t.placements);
    }

    pub fn placements(&self, list: &PlacementList) {
        if self.json {
            return self.json(list);
        }
        placement_table(&list.placements);
    }

    pub fn placement(&self, p: &Placement) {
        if self.json {
            return self.json(p);
        }
        placement_table(std::slice::from_ref(p));
    }

    pub fn tenants(&self, tenants: &[Tenant]) {
        if self.json {
            return self.json(&serde_json::json!({ "tenants": tenants }));
        }
        let mut rows = vec![vec![
            "SLUG".into(),
            "NAME".into(),
            "TIER".into(),
            "STATE".into(),
            "PHASE".into(),
            "ENDPOINT".into(),
        ]];
        for t in tenants {
            rows.push(vec![
                t.slug.clone(),
                t.display_name.clone(),
                t.tier.clone(),
                t.state.as_str().into(),
                format!("{:?}", t.cell.status.phase),
                t.cell.status.endpoints.public.clone().unwrap_or_default(),
            ]);
        }
        table(&rows);
    }

    pub fn tenant(&self, t: &Tenant) {
        if self.json {
            return self.json(t);
        }
        let mut rows = vec![
            vec!["tenant".into(), format!("{} ({})", t.slug, t.display_name)],
            vec!["state".into(), t.state.as_str().into()],
            vec!["tier".into(), t.tier.clone()],
            vec![
                "endpoint".into(),
                t.cell.status.endpoints.public.clone().unwrap_or_default(),
            ],
            vec![
                "cell".into(),
                format!("{} — {:?}", t.cell.cell_id, t.cell.status.phase),
            ],
            vec!["admin".into(), t.admin_email.clone()],
            vec!["email domains".into(), t.email_domains.join(", ")],
        ];
        if let Some(b) = &t.backup_path {
            rows.push(vec!["backup".into(), b.clone()]);
        }
        table(&rows);
        self.operation(&t.cell);
    }

    fn operation(&self, cell: &Cell) {
        if let Some(op) = &cell.operation {
            let steps: Vec<String> = op
                .steps
                .iter()
                .map(|s| match s.duration_ms {
                    Some(ms) => format!("{} ✓ {ms} ms", s.name),
                    None => format!("{} …", s.name),
                })
                .collect();
            say!(
                "\n{} ({}): {}",
                op.name,
                if op.finished {
                    "finished"
                } else {
                    "in progress"
                },
                steps.join(" · ")
            );
            if let Some(e) = &op.last_error {
                say!("last error (retrying): {e}");
            }
        }
    }

    pub fn cells(&self, cells: &[Cell]) {
        if self.json {
            return self.json(&serde_json::json!({ "cells": cells }));
        }
        let mut rows = vec![vec![
            "CELL".into(),
            "TENANT".into(),
            "TIER".into(),
            "PLACEMENT".into(),
            "PHASE".into(),
            "GEN".into(),
        ]];
        for c in cells {
            rows.push(vec![
                c.cell_id.clone(),
                c.tenant.clone(),
                c.spec.tier.as_str().into(),
                c.placement.clone(),
                format!("{:?}", c.status.phase),
                c.generation.to_string(),
            ]);
        }
        table(&rows);
    }

    pub fn cell(&self, c: &Cell) {
        if self.json {
            return self.json(c);
        }
        let mut rows = vec![
            vec!["cell".into(), c.cell_id.clone()],
            vec!["tenant".into(), c.tenant.clone()],
            vec!["tier".into(), c.spec.tier.as_str().into()],
            vec!["placement".into(), c.placement.clone()],
            vec!["phase".into(), format!("{:?}", c.status.phase)],
            vec![
                "generation".into(),
                format!(
                    "{} (observed {})",
                    c.generation,
                    c.status
                        .observed_generation
                        .map(|g| g.to_string())
                        .unwrap_or_else(|| "-".into())
                ),
            ],
            vec![
                "database".into(),
                format!(
                    "{:?}, class {}, {} GiB",
                    c.spec.database.engine,
                    c.spec
                        .database
                        .class
                        .as_deref()
                        .unwrap_or(c.spec.tier.template().db_class),
                    c.spec.database.storage_gib
                ),
            ],
            vec!["search".into(), format!("{:?}", c.spec.search)],
            vec!["replicas".into(), replicas(c)],
            vec![
                "endpoint".into(),
                c.status.endpoints.public.clone().unwrap_or_default(),
            ],
        ];
        for (svc, url) in &c.status.endpoints.services {
            rows.push(vec![format!("  {svc}"), url.clone()]);
        }
        for cond in &c.status.conditions {
            rows.push(vec![
                format!("condition {}", cond.type_),
                format!("{:?} ({})", cond.status, cond.reason),
            ]);
        }
        if let Some(local) = &c.local {
            rows.push(vec!["supervisor pid".into(), local["pid"].to_string()]);
            rows.push(vec![
                "postgres port".into(),
                local["postgres_port"].to_string(),
            ]);
        }
        table(&rows);
        self.operation(c);
    }

    /// Prints the operation's steps finished since the last call; returns how many are shown.
    pub fn progress(&self, cell: &Cell, op: &str, shown: usize, started: Instant) -> usize {
        let Some(operation) = cell.operation.as_ref().filter(|o| o.name == op) else {
            return shown;
        };
        let done: Vec<_> = operation.steps.iter().filter(|s| s.done).collect();
        for step in done.iter().skip(shown) {
            eprintln!(
                "  ✓ {:<11} {:>6} ms   (t+{:.1} s)",
                step.name,
                step.duration_ms.unwrap_or(0),
                started.elapsed().as_secs_f64()
            );
        }
        done.len().max(shown)
    }

    pub fn created(&self, t: &Tenant, took: Duration) {
        if self.json {
            return self.json(t);
        }
        let endpoint = t.cell.status.endpoints.public.clone().unwrap_or_default();
        say!(
            "\nTenant {} is {:?} ({:.1} s).",
            t.slug,
            t.cell.status.phase,
            took.as_secs_f64()
        );
        table(&[
            vec!["endpoint".into(), endpoint.clone()],
            vec![
                "cell".into(),
                format!("{} ({}, {})", t.cell.cell_id, t.tier, t.cell.placement),
            ],
            vec!["admin".into(), t.admin_email.clone()],
        ]);
        if let Some(invite) = &t.admin_invite {
            say!(
                "\nOne-time admin invite for {} (expires {}):\n  {}",
                invite.email,
                invite.expires_at,
                invite.invite_token
            );
            say!(
                "Register:\n  curl -s {endpoint}/v1/auth/register -H 'content-type: application/json' \\\n    -d '{{\"email\":\"{}\",\"password\":\"<choose a long passphrase>\",\"invite_token\":\"{}\"}}'",
                invite.email,
                invite.invite_token
            );
        }
    }

    pub fn deleted(&self, t: &Tenant, took: Duration, waited: bool) {
        if self.json {
            return self.json(&serde_json::json!({ "tenant": t.slug, "deleted": waited, "backup_path": t.backup_path }));
        }
        if waited {
            say!("Tenant {} deleted ({:.1} s).", t.slug, took.as_secs_f64());
        } else {
            say!("Tenant {} is being deleted.", t.slug);
        }
        if let Some(b) = &t.backup_path {
            say!("Backup: {b}");
            say!(
                "`mrbill tenant restore {} --yes` brings the tenant back from it.",
                t.slug
            );
        }
    }

    pub fn mail(&self, mail: &[crate::local::Mail]) {
        if self.json {
            return self.json(&mail);
        }
        if mail.is_empty() {
            say!("no mail");
        }
        for m in mail {
            say!("─── {} · to {} · {}", m.subject, m.to, m.file);
            say!("{}", m.message.trim_end());
        }
    }
}

/// Prints rows with aligned columns.
fn placement_table(placements: &[Placement]) {
    let mut rows = vec![
        ["PLACEMENT", "REGION", "CELLS", "USED", "CAPACITY", "STATE"]
            .map(String::from)
            .to_vec(),
    ];
    for p in placements {
        rows.push(vec![
            p.name.clone(),
            p.region.clone(),
            p.cells.to_string(),
            p.used.to_string(),
            p.capacity.to_string(),
            if p.cordoned { "cordoned" } else { "open" }.into(),
        ]);
    }
    table(&rows);
}

fn table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == row.len() {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        say!("{}", line.join("  ").trim_end());
    }
}

/// Desired replicas per service, and how many answer where the cell reports its instances
/// (`poc`, `poc-2`, …): `poc 2 (2 running) · dojo 1 (1 running) · media 1`.
fn replicas(c: &Cell) -> String {
    Service::ALL
        .iter()
        .map(|service| {
            let bounds = c.spec.tier.template().bounds(*service);
            let desired = c.spec.replicas.get(*service).unwrap_or(bounds.default);
            let running = c
                .status
                .endpoints
                .services
                .keys()
                .filter(|key| {
                    key.split_once('-').map_or(key.as_str(), |(n, _)| n) == service.name()
                })
                .count();
            match running {
                0 => format!("{} {desired}", service.name()),
                n => format!("{} {desired} ({n} running)", service.name()),
            }
        })
        .collect::<Vec<_>>()
        .join(" · ")
}
