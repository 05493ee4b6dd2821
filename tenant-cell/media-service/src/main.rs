//! `media-service`: serve (default) or print the OpenAPI document.

use media_service::{App, Config, openapi};
use service_kit::cli::{self, Command};
use service_kit::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match cli::command(
        "media-service",
        "The cell's media service (reports and the yearly video)",
    ) {
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
