//! `mrbill`: Mr. Bill's CLI. Runs the platform locally (`up`, `down`, `status`), onboards and
//! manages tenants, and shows cells, through the control plane's admin API.

mod backup;
mod client;
mod drain;
mod keeper;
mod local;
mod migrate;
mod output;
mod progress;
mod prometheus;
mod traces;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cell_model::local::Home;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use wire_types::admin::{
    Cell, CellList, MigrationList, Placement, PlacementList, Tenant, TenantList, TenantState,
    TierList,
};

use crate::client::{CliResult, Client, Failure, exit};
use crate::output::Output;

const EXIT_CODES: &str = "Exit codes: 0 ok · 1 error · 2 usage · 3 not found · 4 conflict (slug, email domain, capacity, cordoned or busy placement, state) · 5 invalid input · 6 control plane not reachable · 7 timed out";

#[derive(Parser)]
#[command(name = "mrbill", version, about = "Mr. Bill's cell platform: tenants, cells, and the local platform", after_help = EXIT_CODES)]
struct Cli {
    /// State root of the local platform (tokens, catalog, cells, logs).
    #[arg(long, global = true, env = "MRBILL_HOME")]
    home: Option<std::path::PathBuf>,
    /// Tables for people, JSON for scripts.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum TracesCmd {
    /// One trace as a tree of its spans, with when each started and how long it took.
    Show {
        /// The trace id (its first 8 characters will do).
        trace: String,
    },
    /// The local collector (started by the keeper; not by hand).
    #[command(hide = true)]
    Collect,
}

#[derive(Subcommand)]
enum Command {
    /// Keep the control plane and the router running (started by `up`; not by hand).
    #[command(hide = true)]
    Keep {
        /// The router's public URL.
        #[arg(long)]
        public_url: String,
        /// Keep the local Prometheus too.
        #[arg(long)]
        with_prometheus: bool,
        /// Keep the local trace collector too.
        #[arg(long)]
        with_traces: bool,
    },
    /// Start the control plane and the router on this machine (idempotent).
    Up {
        /// Where the router listens; tenant endpoints are http://<addr>/t/<slug>. Port 0 or a
        /// taken default port picks a free one.
        #[arg(long, default_value = "127.0.0.1:8080")]
        router_addr: SocketAddr,
        /// Run a Prometheus too (Debian `prometheus`), scraping every cell as it becomes ready
        /// and evaluating the platform's alert rules.
        #[arg(long)]
        with_prometheus: bool,
        /// Collect traces too: every request, job and operation as a trace of spans across the
        /// router, the services and the control plane (`mrbill traces`).
        #[arg(long)]
        with_traces: bool,
    },
    /// Recent traces (`up --with-traces`), newest first, or one drawn as a tree.
    Traces {
        #[command(subcommand)]
        command: Option<TracesCmd>,
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Stop the router, the control plane, every cell and the catalog database (idempotent).
    Down {
        /// Leave the cells running (only the control plane and router stop).
        #[arg(long)]
        keep_cells: bool,
    },
    /// What runs, and every cell's phase.
    Status,
    /// Onboard, list, suspend, resume and delete tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Inspect cells.
    #[command(subcommand)]
    Cell(CellCmd),
    /// Tiers (templates with defaults and bounds) and placement capacity.
    Tiers,
    /// Where cells run: list, add, remove, cordon (admit nothing new) and uncordon placements.
    #[command(subcommand)]
    Placement(PlacementCmd),
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum TenantCmd {
    /// Onboard a tenant: admit it, provision its cell, print its endpoint and admin invite.
    Create {
        /// DNS label (3–40 of a-z, 0-9, '-'): the tenant's id and endpoint name.
        slug: String,
        /// Company name shown to people.
        #[arg(long)]
        name: String,
        /// The tenant's first admin; gets a one-time invite.
        #[arg(long)]
        admin_email: String,
        /// Email domain of the tenant's people (repeatable); unique across tenants, no webmail.
        #[arg(long = "email-domain")]
        email_domains: Vec<String>,
        /// small, standard or large.
        #[arg(long, default_value = "small")]
        tier: String,
        /// Where the cell runs (default: the control plane's first placement).
        #[arg(long, conflicts_with = "region")]
        placement: Option<String>,
        /// The region the tenant's data must stay in: the roomiest open placement there.
        #[arg(long)]
        region: Option<String>,
        /// Return once admitted, without waiting for the cell.
        #[arg(long)]
        no_wait: bool,
    },
    /// All tenants.
    List,
    /// One tenant with its cell, steps and admin invite.
    Show { slug: String },
    /// Mail the tenant's cell sent (password-reset codes), oldest first. Local cells only:
    /// they have no mail server, so messages stay in the cell's mailbox.
    Mail { slug: String },
    /// Block the tenant's traffic (403) and stop its services; data is kept.
    Suspend {
        slug: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Restart a suspended tenant's services and route its traffic again.
    Resume {
        slug: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Back up the tenant's database, objects and secrets, then remove its cell. The backup
    /// stays (`final` in `mrbill tenant backups`); `mrbill tenant restore` brings the tenant
    /// back from it (local cells).
    Delete {
        slug: String,
        /// Required: the cell is removed (its backup stays).
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        no_wait: bool,
    },
    /// Back up the tenant's cell now: every service's database as one moment (with its
    /// checksums), its objects and its identity. Scheduled backups run by the tier's plan.
    Backup {
        slug: String,
        /// Return once queued.
        #[arg(long)]
        no_wait: bool,
    },
    /// The tenant's backups, newest first.
    Backups { slug: String },
    /// Bring the tenant back to a backup, in a fresh cell with the same identity (tokens and
    /// links stay valid); requests are held, then answered by the restored cell. Without
    /// --from or --to-time: the newest completed backup. A deleted tenant comes back as it was
    /// (same slug, domains, placement and cell), from the backup its delete took (a deleted
    /// rds cell: from its final snapshot only).
    Restore {
        slug: String,
        /// A backup's id (`mrbill tenant backups`).
        #[arg(long, conflicts_with = "to_time")]
        from: Option<String>,
        /// RFC 3339: the moment to bring back (Kubernetes: the archive or RDS's logs replayed to
        /// exactly it; local: the newest completed backup taken at or before it).
        #[arg(long)]
        to_time: Option<String>,
        /// Required: what the tenant wrote after the backup is replaced.
        #[arg(long)]
        yes: bool,
        /// Undo the running restore (before its switch; not a deleted tenant's return, which
        /// is undone by deleting the tenant again): the cell as it was serves again.
        #[arg(long, conflicts_with_all = ["from", "to_time"])]
        abort: bool,
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Subcommand)]
enum PlacementCmd {
    /// Every placement: region, cells, units used of its capacity, cordon.
    List,
    /// Add a placement.
    Add {
        /// DNS label (3–40 of a-z, 0-9, '-').
        name: String,
        /// Region label, e.g. sa-east-1 (data residency is per region).
        #[arg(long)]
        region: String,
        /// Capacity in units (small = 1, standard = 2, large = 4).
        #[arg(long)]
        capacity: u32,
    },
    /// Remove a placement that holds no cell.
    Remove { name: String },
    /// Admit no new cells there (its cells keep running).
    Cordon { name: String },
    /// Admit new cells there again.
    Uncordon { name: String },
    /// Cordon, then move every cell to the roomiest open placement of the same region, in
    /// waves; stops at the first failure with a report, and resumes when run again.
    Drain {
        name: String,
        /// Cells moved at once.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=32))]
        parallel: u16,
    },
}

#[derive(Subcommand)]
enum CellCmd {
    /// All cells.
    List,
    /// One cell (by cell id or tenant slug): spec, status, conditions, endpoints, processes.
    Show { id: String },
    /// Move a tenant's cell to another placement: same identity (tokens and signed links keep
    /// working), data replicated while it serves, requests held only for the cut-over.
    Migrate {
        /// The tenant.
        slug: String,
        /// The placement to move to.
        #[arg(long, required_unless_present = "abort")]
        to: Option<String>,
        /// Only check that it can start and show the plan.
        #[arg(long, conflicts_with = "abort")]
        dry_run: bool,
        /// Stop the running migration (before its switch): the tenant stays where it was.
        #[arg(long)]
        abort: bool,
        /// Return once started, without following the steps.
        #[arg(long)]
        no_wait: bool,
    },
    /// A tenant's migrations, newest first, with their steps and freeze.
    Migrations { slug: String },
    /// Run more or fewer replicas of a tenant's services, within its tier's bounds
    /// (`mrbill tiers`); the router spreads requests over them.
    Scale {
        slug: String,
        /// `service=replicas`, repeatable: `--service poc=2 --service media=2`.
        #[arg(long = "service", value_parser = parse_replicas,
              required_unless_present_any = ["db_class", "db_storage"])]
        services: Vec<(String, u32)>,
        /// The database's class: one of the tier's (`mrbill tiers`).
        #[arg(long)]
        db_class: Option<String>,
        /// The database's storage in GiB (it only grows).
        #[arg(long)]
        db_storage: Option<u32>,
        #[arg(long)]
        no_wait: bool,
    },
}

/// `poc=2` → (`poc`, 2).
fn parse_replicas(s: &str) -> Result<(String, u32), String> {
    let (service, n) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not service=replicas"))?;
    if cell_model::contract::Service::parse(service).is_none() {
        return Err(format!("`{service}` is not a service (poc, dojo, media)"));
    }
    let n = n
        .parse()
        .map_err(|_| format!("`{n}` is not a number of replicas"))?;
    Ok((service.to_owned(), n))
}

fn main() {
    let cli = Cli::parse();
    let home = cli
        .home
        .clone()
        .map(Home::new)
        .unwrap_or_else(Home::from_env);
    let out = Output::new(cli.output == Format::Json);
    if let Err(f) = run(cli.command, &home, &out) {
        let hint = f.hint.map(|h| format!(" — hint: {h}")).unwrap_or_default();
        eprintln!("error[{}]: {}{hint}", f.code, f.message);
        std::process::exit(f.exit);
    }
}

fn run(command: Command, home: &Home, out: &Output) -> CliResult<()> {
    match command {
        Command::Up {
            router_addr,
            with_prometheus,
            with_traces,
        } => {
            let platform = local::up(home, router_addr, with_prometheus, with_traces)?;
            out.up(&platform);
        }
        Command::Keep {
            public_url,
            with_prometheus,
            with_traces,
        } => {
            let parts = keeper::Part::kept(with_prometheus, with_traces);
            keeper::run(home, parts, |part| {
                local::start(home, part, &public_url, with_traces)
            })?;
        }
        Command::Traces {
            command: Some(TracesCmd::Collect),
            ..
        } => traces::collect(home)?,
        Command::Traces {
            command: Some(TracesCmd::Show { trace }),
            ..
        } => out.trace(&traces::tree(&traces::load(home), &trace)),
        Command::Traces {
            command: None,
            tenant,
            limit,
        } => out.traces(&traces::summaries(
            &traces::load(home),
            tenant.as_deref(),
            limit,
        )),
        Command::Down { keep_cells } => {
            let stopped = local::down(home, keep_cells)?;
            out.down(&stopped);
        }
        Command::Status => {
            let processes = local::processes(home);
            let cells = Client::connect(home)
                .and_then(|c| c.get::<CellList>("/v1/cells"))
                .ok();
            out.status(&processes, cells.as_ref());
        }
        Command::Tiers => out.tiers(&Client::connect(home)?.get::<TierList>("/v1/tiers")?),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mrbill", &mut script);
            output::raw(&script);
        }
        Command::Tenant(cmd) => tenant(cmd, home, out)?,
        Command::Placement(cmd) => placement(cmd, home, out)?,
        Command::Cell(CellCmd::List) => {
            out.cells(&Client::connect(home)?.get::<CellList>("/v1/cells")?.cells);
        }
        Command::Cell(CellCmd::Show { id }) => {
            out.cell(
                &Client::connect(home)?
                    .get::<Cell>(&format!("/v1/cells/{}", path_segment(&id)?))?,
            );
        }
        Command::Cell(CellCmd::Migrate {
            slug,
            to,
            dry_run,
            abort,
            no_wait,
        }) => migrate::run(home, out, &slug, to, dry_run, abort, no_wait)?,
        Command::Cell(CellCmd::Scale {
            slug,
            services,
            db_class,
            db_storage,
            no_wait,
        }) => {
            let client = Client::connect(home)?;
            let started = Instant::now();
            let mut body: serde_json::Map<String, serde_json::Value> = services
                .into_iter()
                .map(|(s, n)| (s, serde_json::json!(n)))
                .collect();
            if let Some(class) = db_class {
                body.insert("db_class".into(), serde_json::json!(class));
            }
            if let Some(gib) = db_storage {
                body.insert("db_storage_gib".into(), serde_json::json!(gib));
            }
            let path = format!("/v1/tenants/{}/scale", path_segment(&slug)?);
            let tenant: Tenant = client.post(&path, &serde_json::Value::Object(body))?;
            let tenant = if no_wait {
                tenant
            } else {
                wait(&client, out, &slug, "scale", started)?
            };
            out.tenant(&tenant);
        }
        Command::Cell(CellCmd::Migrations { slug }) => {
            let path = format!("/v1/tenants/{}/migrations", path_segment(&slug)?);
            out.migrations(&Client::connect(home)?.get::<MigrationList>(&path)?);
        }
    }
    Ok(())
}

fn placement(cmd: PlacementCmd, home: &Home, out: &Output) -> CliResult<()> {
    let client = Client::connect(home)?;
    let one = |p: &Placement| out.placement(p);
    match cmd {
        PlacementCmd::List => out.placements(&client.get::<PlacementList>("/v1/placements")?),
        PlacementCmd::Add {
            name,
            region,
            capacity,
        } => one(&client.post(
            "/v1/placements",
            &serde_json::json!({ "name": name, "region": region, "capacity": capacity }),
        )?),
        PlacementCmd::Remove { name } => {
            one(&client.delete(&format!("/v1/placements/{}", path_segment(&name)?))?)
        }
        PlacementCmd::Cordon { name } => one(&client.post(
            &format!("/v1/placements/{}/cordon", path_segment(&name)?),
            &serde_json::json!({}),
        )?),
        PlacementCmd::Drain { name, parallel } => {
            drain::run(home, out, &name, usize::from(parallel))?
        }
        PlacementCmd::Uncordon { name } => one(&client.post(
            &format!("/v1/placements/{}/uncordon", path_segment(&name)?),
            &serde_json::json!({}),
        )?),
    }
    Ok(())
}

fn tenant(cmd: TenantCmd, home: &Home, out: &Output) -> CliResult<()> {
    match cmd {
        TenantCmd::Backup { slug, no_wait } => backup::take(home, out, &slug, no_wait)?,
        TenantCmd::Backups { slug } => backup::list(home, out, &slug)?,
        TenantCmd::Restore {
            slug, abort: true, ..
        } => backup::abort(home, out, &slug)?,
        TenantCmd::Restore {
            slug,
            from,
            to_time,
            yes,
            no_wait,
            ..
        } => backup::restore(home, out, &slug, from, to_time, yes, no_wait)?,
        TenantCmd::Create {
            slug,
            name,
            admin_email,
            email_domains,
            tier,
            placement,
            region,
            no_wait,
        } => {
            let client = Client::connect(home)?;
            let started = Instant::now();
            let body = serde_json::json!({
                "slug": slug, "display_name": name, "admin_email": admin_email,
                "email_domains": email_domains, "tier": tier, "placement": placement, "region": region,
            });
            let tenant: Tenant = client.post("/v1/tenants", &body)?;
            let tenant = if no_wait {
                tenant
            } else {
                wait(&client, out, &tenant.slug, "provision", started)?
            };
            out.created(&tenant, started.elapsed());
        }
        TenantCmd::List => out.tenants(
            &Client::connect(home)?
                .get::<TenantList>("/v1/tenants")?
                .tenants,
        ),
        TenantCmd::Show { slug } => {
            out.tenant(
                &Client::connect(home)?
                    .get::<Tenant>(&format!("/v1/tenants/{}", path_segment(&slug)?))?,
            );
        }
        TenantCmd::Mail { slug } => {
            let tenant = Client::connect(home)?
                .get::<Tenant>(&format!("/v1/tenants/{}", path_segment(&slug)?))?;
            let dir = home
                .cell(&tenant.cell.placement, &tenant.cell.cell_id)
                .mailbox_dir();
            out.mail(&local::mailbox(&dir)?);
        }
        TenantCmd::Suspend { slug, no_wait } => change(home, out, &slug, "suspend", no_wait)?,
        TenantCmd::Resume { slug, no_wait } => change(home, out, &slug, "resume", no_wait)?,
        TenantCmd::Delete { slug, yes, no_wait } => {
            if !yes {
                return Err(Failure::new(
                    "confirmation_required",
                    format!("deleting `{slug}` removes its cell (a backup is kept)"),
                    exit::INVALID,
                )
                .hint(format!("run `mrbill tenant delete {slug} --yes`")));
            }
            let client = Client::connect(home)?;
            let started = Instant::now();
            let segment = path_segment(&slug)?;
            let tenant: Tenant = client.delete(&format!("/v1/tenants/{segment}"))?;
            if !no_wait {
                // Done when the tenant is gone.
                let mut shown = 0;
                loop {
                    match client.get::<Tenant>(&format!("/v1/tenants/{segment}")) {
                        Ok(t) => {
                            shown = out.progress(&t.cell, "delete", shown, started);
                            if started.elapsed() > Duration::from_secs(180) {
                                return Err(timeout(&slug));
                            }
                        }
                        Err(f) if f.exit == exit::NOT_FOUND => break,
                        Err(f) => return Err(f),
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            out.deleted(&tenant, started.elapsed(), !no_wait);
        }
    }
    Ok(())
}

fn change(home: &Home, out: &Output, slug: &str, action: &str, no_wait: bool) -> CliResult<()> {
    let client = Client::connect(home)?;
    let started = Instant::now();
    let tenant: Tenant = client.post(
        &format!("/v1/tenants/{}/{action}", path_segment(slug)?),
        &serde_json::json!({}),
    )?;
    let tenant = if no_wait {
        tenant
    } else {
        wait(&client, out, slug, action, started)?
    };
    out.tenant(&tenant);
    Ok(())
}

/// Polls the tenant until its cell has no operation in progress, printing steps as they finish.
fn wait(
    client: &Client,
    out: &Output,
    slug: &str,
    op: &str,
    started: Instant,
) -> CliResult<Tenant> {
    let mut shown = 0;
    let path = format!("/v1/tenants/{}", path_segment(slug)?);
    loop {
        let tenant: Tenant = client.get(&path)?;
        shown = out.progress(&tenant.cell, op, shown, started);
        let settled = tenant.cell.operation.as_ref().is_none_or(|o| o.finished);
        let wanted = match tenant.state {
            TenantState::Suspended => cell_model::Phase::Suspended,
            _ => cell_model::Phase::Ready,
        };
        if settled && tenant.cell.status.phase == wanted {
            return Ok(tenant);
        }
        if started.elapsed() > Duration::from_secs(180) {
            return Err(timeout(slug));
        }
        std::thread::sleep(Duration::from_millis(50));
        let _ = std::io::stderr().flush();
    }
}

fn timeout(slug: &str) -> Failure {
    Failure::new(
        "timeout",
        format!("`{slug}` did not settle within 180 s"),
        exit::TIMEOUT,
    )
    .hint(format!(
        "the control plane keeps trying; see `mrbill cell show {slug}`"
    ))
}

/// A slug or id as one URL path segment (no '/', no '..').
fn path_segment(s: &str) -> CliResult<String> {
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Failure::new(
            "invalid_argument",
            format!("`{s}` is not a tenant slug or cell id"),
            exit::INVALID,
        )
        .hint("slugs are DNS labels like `acme`; cell ids look like `c-acme-1a2b3c4d`"));
    }
    Ok(s.to_owned())
}
