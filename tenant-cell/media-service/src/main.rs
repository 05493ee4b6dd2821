//! `media-service`: serve (default) or print the OpenAPI document.

use clap::{Parser, Subcommand};
use media_service::{App, Config, openapi};
use service_kit::telemetry;

#[derive(Parser)]
#[command(
    name = "media-service",
    version,
    about = "The cell's media service (reports and the yearly video)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the public and internal listeners (the default).
    Serve,
    /// Print the OpenAPI document.
    Openapi,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let config = Config::from_env()?;
            telemetry::init("media-service", config.common.log_format);
            App::build(config)
                .await?
                .run_until_stopped(service_kit::serve::shutdown_signal())
                .await
        }
        Command::Openapi => {
            println!("{}", openapi::public_json());
            Ok(())
        }
    }
}
