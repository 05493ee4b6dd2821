//! The one-row `settings` table.

use sqlx::PgExecutor;
use wire_types::auth::{RegistrationMode, Settings};

fn parse(mode: &str) -> RegistrationMode {
    if mode == "open" {
        RegistrationMode::Open
    } else {
        RegistrationMode::InviteOnly
    }
}

pub async fn get(ex: impl PgExecutor<'_>) -> sqlx::Result<Settings> {
    let mode: String = sqlx::query_scalar("SELECT registration FROM settings")
        .fetch_one(ex)
        .await?;
    Ok(Settings {
        registration: parse(&mode),
    })
}

/// Reads the settings and locks the row, serialising registrations (first-user checks).
pub async fn lock(ex: impl PgExecutor<'_>) -> sqlx::Result<Settings> {
    let mode: String = sqlx::query_scalar("SELECT registration FROM settings FOR UPDATE")
        .fetch_one(ex)
        .await?;
    Ok(Settings {
        registration: parse(&mode),
    })
}

pub async fn set_registration(
    ex: impl PgExecutor<'_>,
    mode: RegistrationMode,
) -> sqlx::Result<Settings> {
    let mode: String =
        sqlx::query_scalar("UPDATE settings SET registration = $1 RETURNING registration")
            .bind(mode.as_str())
            .fetch_one(ex)
            .await?;
    Ok(Settings {
        registration: parse(&mode),
    })
}
