//! SQL, as functions over a pool or a transaction. No HTTP types here.

pub mod invites;
pub mod pocs;
pub mod registrations;
pub mod resets;
pub mod settings;
pub mod throttle;
pub mod tokens;
pub mod users;

/// Whether `err` is a unique-constraint violation (SQLSTATE 23505).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}
