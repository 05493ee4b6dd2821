//! `poc-service`: serve (default), bootstrap the first admin, or print the OpenAPI documents.

use cell_model::contract::{Secret, env as var};
use clap::{Parser, Subcommand};
use poc_service::{App, Config, MIGRATOR, bootstrap, openapi};
use service_kit::{config, telemetry};

#[derive(Parser)]
#[command(
    name = "poc-service",
    version,
    about = "The cell's PoC service (accounts, PoCs, search)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the public and internal listeners (the default).
    Serve,
    /// Create the one-time invite for the tenant's first admin and print it as JSON.
    /// Exit code 3: the cell already has an admin.
    BootstrapAdmin {
        #[arg(long)]
        email: String,
        /// File holding the invite secret to use (0600), for idempotent retries.
        #[arg(long)]
        token_file: Option<std::path::PathBuf>,
    },
    /// Create the cell's secrets in DIR (0600) unless they exist: the JWT key pair and `kid`
    /// (`jwt-private.pem`, `jwt-public.pem`, `jwt.kid`), the internal `service-token` and the
    /// `media-url-key` — the same generator both drivers use.
    InitSecrets {
        #[arg(long)]
        dir: std::path::PathBuf,
    },
    /// Print the OpenAPI document.
    Openapi {
        /// The internal API instead of the public one.
        #[arg(long)]
        internal: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let config = Config::from_env()?;
            telemetry::init("poc-service", config.common.log_format);
            let app = App::build(config).await?;
            let served = app
                .run_until_stopped(service_kit::serve::shutdown_signal())
                .await;
            telemetry::shutdown();
            served
        }
        Command::BootstrapAdmin { email, token_file } => {
            telemetry::init(
                "poc-service",
                config::optional(var::LOG_FORMAT)?.unwrap_or_default(),
            );
            let url = match config::secret_file(Secret::DatabaseUrl.env())? {
                Some(url) => url,
                None => {
                    secrecy::SecretString::from(config::required::<String>("MRBILL_DATABASE_URL")?)
                }
            };
            let token = match token_file {
                Some(path) => Some(
                    secrecy::ExposeSecret::expose_secret(&service_kit::secrets::read_secret(
                        &path,
                    )?)
                    .to_owned(),
                ),
                None => None,
            };
            let pool = service_kit::db::connect_and_migrate(
                &url,
                &MIGRATOR,
                2,
                std::time::Duration::from_secs(30),
            )
            .await?;
            match bootstrap::bootstrap_admin(&pool, &email, token).await {
                Ok(invite) => {
                    println!("{}", serde_json::to_string(&invite)?);
                    Ok(())
                }
                Err(bootstrap::BootstrapError::AlreadyBootstrapped) => {
                    eprintln!(
                        "poc-service: this cell already has an admin; bootstrap works only once"
                    );
                    std::process::exit(3);
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::InitSecrets { dir } => init_secrets(&dir),
        Command::Openapi { internal } => {
            println!(
                "{}",
                if internal {
                    openapi::internal_json()
                } else {
                    openapi::public_json()
                }
            );
            Ok(())
        }
    }
}

fn init_secrets(dir: &std::path::Path) -> anyhow::Result<()> {
    service_kit::cell_secrets::CellSecrets::write_missing(dir)
}
