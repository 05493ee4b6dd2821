//! The command line every cell service binary shares: `serve` (the default) or `openapi`.
//! A service's `main` is one call to [`main`].

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// What the binary was asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Serve the public and internal listeners (the default).
    Serve,
    /// Print the public OpenAPI document.
    Openapi,
}

/// Parses the command line of the service binary `name` (`about` for `--help`).
pub fn command(name: &'static str, about: &'static str) -> Command {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command()
        .name(name)
        .about(about)
        .version(env!("CARGO_PKG_VERSION"))
        .get_matches();
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli.command.unwrap_or(Command::Serve),
        Err(e) => e.exit(),
    }
}

/// Runs the service binary `name`: logging set up from `MRBILL_LOG_FORMAT`, then `serve`
/// (read the config, build, run until a signal) or print `document`.
pub async fn main<F, Fut>(
    name: &'static str,
    about: &'static str,
    serve: F,
    document: fn() -> String,
) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    match command(name, about) {
        Command::Serve => {
            let format = crate::config::optional(cell_model::contract::env::LOG_FORMAT)?;
            crate::telemetry::init(name, format.unwrap_or_default());
            let served = serve().await;
            crate::telemetry::shutdown();
            served
        }
        Command::Openapi => {
            println!("{}", document());
            Ok(())
        }
    }
}
