//! Room ownership across replicas. Routers pin every socket of a dojo to one replica, but the
//! replica set changes (scale, restart, a moved pod), so for a moment two replicas may each be
//! asked for the same room. Ownership keeps one writer:
//!
//! ```text
//! replica B loads the room ── take(): epoch 7 → 8, NOTIFY dojo_rooms '<dojo> 8' ── commit
//!                          └─ then reads the document (sees every batch A committed)
//! replica A, epoch 7 ──── next batch: fence() finds 8 → not stored, not acknowledged
//!                   └──── or hears the NOTIFY first → closes its sockets (1012, reconnect)
//! ```
//!
//! The fence shares the batch's transaction and locks the owner row (`FOR SHARE`), so a
//! takeover waits for a batch in flight and the new owner reads after it: no acknowledged
//! update is lost, and a taken-over room stores nothing more. The notification only makes the
//! old owner let go at once instead of at its next write; if it is missed (the listening
//! connection dropped), a recheck of every loaded room's epoch on reconnect catches up.
//!
//! The same channel carries what a REST request on one replica does to a room that may still
//! live on another for a moment: `end` and `kick` reach every replica.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::Rooms;

/// The channel takeovers are announced on.
pub const CHANNEL: &str = "dojo_rooms";

/// Why a batch was not stored.
#[derive(Debug)]
pub enum StoreError {
    /// Another replica took the room over; nothing of the batch was stored.
    Moved,
    Db(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e)
    }
}

/// Takes `dojo`'s room over for this process: the new epoch, announced on commit.
pub async fn take(pool: &PgPool, dojo: Uuid) -> Result<i64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let (epoch,): (i64,) = sqlx::query_as(
        "INSERT INTO dojo_room_owners (dojo_id, epoch) VALUES ($1, 1)
         ON CONFLICT (dojo_id) DO UPDATE SET epoch = dojo_room_owners.epoch + 1
         RETURNING epoch",
    )
    .bind(dojo)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(Note::Taken { dojo, epoch }.payload())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(epoch)
}

/// Fails with [`StoreError::Moved`] unless `epoch` still owns `dojo`; holds the owner row
/// until `tx` ends, so no takeover commits in between.
pub async fn fence(
    tx: &mut Transaction<'_, Postgres>,
    dojo: Uuid,
    epoch: i64,
) -> Result<(), StoreError> {
    let current: Option<(i64,)> =
        sqlx::query_as("SELECT epoch FROM dojo_room_owners WHERE dojo_id = $1 FOR SHARE")
            .bind(dojo)
            .fetch_optional(&mut **tx)
            .await?;
    match current {
        Some((now,)) if now == epoch => Ok(()),
        _ => Err(StoreError::Moved),
    }
}

/// The current epoch of each of `dojos`, and whether it has ended.
async fn owners(pool: &PgPool, dojos: &[Uuid]) -> Result<Vec<(Uuid, i64, bool)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT o.dojo_id, o.epoch, d.ended_at IS NOT NULL
         FROM dojo_room_owners o JOIN dojos d ON d.id = o.dojo_id
         WHERE o.dojo_id = ANY($1)",
    )
    .bind(dojos)
    .fetch_all(pool)
    .await
}

/// What one replica tells the others about a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note {
    /// A replica took the room over at this epoch.
    Taken { dojo: Uuid, epoch: i64 },
    /// The dojo ended.
    End { dojo: Uuid },
    /// The host removed `user`.
    Kick { dojo: Uuid, user: Uuid },
}

impl Note {
    fn payload(self) -> String {
        match self {
            Self::Taken { dojo, epoch } => format!("{dojo} {epoch}"),
            Self::End { dojo } => format!("{dojo} end"),
            Self::Kick { dojo, user } => format!("{dojo} kick {user}"),
        }
    }

    fn parse(payload: &str) -> Option<Self> {
        let mut words = payload.split(' ');
        let dojo = words.next()?.parse().ok()?;
        let note = match (words.next()?, words.next()) {
            ("end", None) => Self::End { dojo },
            ("kick", Some(user)) => Self::Kick {
                dojo,
                user: user.parse().ok()?,
            },
            (epoch, None) => Self::Taken {
                dojo,
                epoch: epoch.parse().ok()?,
            },
            _ => return None,
        };
        words.next().is_none().then_some(note)
    }
}

/// Tells every replica (this one included) about `note`, best effort: the caller has acted on
/// its own rooms already, and routers send a dojo's requests to the replica holding its room.
pub async fn announce(pool: &PgPool, note: Note) {
    if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(note.payload())
        .execute(pool)
        .await
    {
        tracing::warn!(?note, error = %e, "announcing to the other replicas failed");
    }
}

/// Listens for takeovers until `rooms` is dropped, letting go of every room another replica
/// took. After a lost connection it rechecks every loaded room (notifications in between are
/// gone).
pub fn listen(pool: PgPool, rooms: Weak<Rooms>) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "room takeover listener cannot connect; retrying");
                    if rooms.strong_count() == 0 {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if let Err(e) = listener.listen(CHANNEL).await {
                tracing::warn!(error = %e, "room takeover listener cannot listen; retrying");
                tokio::time::sleep(backoff).await;
                continue;
            }
            backoff = Duration::from_millis(100);
            let Some(live) = rooms.upgrade() else { return };
            recheck(&pool, &live).await;
            drop(live);
            loop {
                let next = tokio::time::timeout(Duration::from_secs(5), listener.try_recv()).await;
                let Some(live) = rooms.upgrade() else { return };
                match next {
                    // Quiet: look again whether the service is still running.
                    Err(_) => continue,
                    Ok(Ok(Some(note))) => match Note::parse(note.payload()) {
                        Some(Note::Taken { dojo, epoch }) => live.taken(dojo, epoch).await,
                        Some(Note::End { dojo }) => live.end_here(dojo).await,
                        Some(Note::Kick { dojo, user }) => live.kick_here(dojo, user).await,
                        None => tracing::warn!(payload = note.payload(), "unknown room note"),
                    },
                    // The connection dropped: anything announced meanwhile is lost.
                    Ok(Ok(None)) => recheck(&pool, &live).await,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "room takeover listener failed; reconnecting");
                        break;
                    }
                }
            }
        }
    });
}

/// Lets go of every loaded room whose epoch is no longer the current one, and ends the rooms
/// of ended dojos.
async fn recheck(pool: &PgPool, rooms: &Arc<Rooms>) {
    let loaded = rooms.epochs().await;
    if loaded.is_empty() {
        return;
    }
    let dojos: Vec<Uuid> = loaded.keys().copied().collect();
    match owners(pool, &dojos).await {
        Ok(current) => {
            for (dojo, epoch, ended) in current {
                rooms.taken(dojo, epoch).await;
                if ended {
                    rooms.end_here(dojo).await;
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "rechecking room owners failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_garbage_is_ignored() {
        let dojo = Uuid::from_u128(7);
        let user = Uuid::from_u128(9);
        for note in [
            Note::Taken { dojo, epoch: 12 },
            Note::End { dojo },
            Note::Kick { dojo, user },
        ] {
            assert_eq!(Note::parse(&note.payload()), Some(note));
        }
        for garbage in [
            "nonsense".to_owned(),
            format!("{dojo} x"),
            format!("{dojo} kick"),
            format!("{dojo} end now"),
            format!("{dojo} 12 13"),
        ] {
            assert_eq!(Note::parse(&garbage), None, "{garbage}");
        }
    }
}
