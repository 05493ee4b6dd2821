//! `dojo-service`: serve (default) or print the OpenAPI document.

use dojo_service::{App, Config, openapi};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let serve = || async {
        let app = App::build(Config::from_env()?).await?;
        app.run_until_stopped(service_kit::serve::shutdown_signal())
            .await
    };
    let about = "The cell's dojo service (live collaborative coding, chat, voice signaling)";
    service_kit::cli::main("dojo-service", about, serve, openapi::public_json).await
}
