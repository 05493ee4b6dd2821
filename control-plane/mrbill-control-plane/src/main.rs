//! `mrbill-control-plane`: serve the admin API and reconcile cells (default), or supervise one
//! local cell (`supervise`, started by the local driver — not by hand).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mrbill_control_plane::{App, Config};
use service_kit::telemetry;

#[derive(Parser)]
#[command(
    name = "mrbill-control-plane",
    version,
    about = "Mr. Bill's control plane: tenants, cells, the route feed"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the admin API and run the reconciler (the default).
    Serve {
        /// Test switch: exit right after this reconciler step's effects, before recording it
        /// (`step` or `op:step`, e.g. `provision:databases`).
        #[arg(long)]
        crash_after_step: Option<String>,
        /// Test switch: after recording this step (`op:step`), wait until another operation
        /// replaces this one (e.g. an abort) instead of going on.
        #[arg(long)]
        pause_after_step: Option<String>,
    },
    /// Supervise one local cell: its Postgres and services. Started detached by the local driver.
    Supervise {
        #[arg(long)]
        cell_dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve {
        crash_after_step: None,
        pause_after_step: None,
    }) {
        Command::Serve {
            crash_after_step,
            pause_after_step,
        } => {
            let mut config = Config::from_env()?;
            if crash_after_step.is_some() {
                config.crash_after_step = crash_after_step;
            }
            config.pause_after_step = pause_after_step;
            telemetry::init("mrbill-control-plane", config.log_format);
            let served = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let app = App::build(config).await?;
                    app.run_until_stopped(service_kit::serve::shutdown_signal())
                        .await
                });
            telemetry::shutdown();
            served
        }
        Command::Supervise { cell_dir } => {
            telemetry::init(
                "cell-supervisor",
                service_kit::config::optional("MRBILL_LOG_FORMAT")?.unwrap_or_default(),
            );
            // One thread: a supervisor mostly sleeps, and every cell has one.
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(mrbill_control_plane::driver::local::supervisor::run(
                    cell_model::local::CellDir::new(cell_dir),
                ))
        }
    }
}
