//! `dojo-service`: serve (default) or print the OpenAPI document.

use dojo_service::{App, Config, openapi};
use service_kit::cli::{self, Command};
use service_kit::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match cli::command(
        "dojo-service",
        "The cell's dojo service (live collaborative coding, chat, voice signaling)",
    ) {
        Command::Serve => {
            let config = Config::from_env()?;
            telemetry::init("dojo-service", config.common.log_format);
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
