//! SQL: dojos, participants, the document's update log and snapshots, chat.

use sqlx::{FromRow, PgExecutor, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::dojos::{ChatMessage, CodeSnapshot, Dojo, DojoStatus, ParticipantRole};
use wire_types::{DojoId, UserId};

use crate::room::owner::{self, StoreError};

#[derive(Clone, Debug, FromRow)]
pub struct DojoRow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub language: String,
    pub host_id: Uuid,
    pub max_participants: i32,
    pub private: bool,
    pub join_code: String,
    pub scheduled_start: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub ended_at: Option<OffsetDateTime>,
}

impl DojoRow {
    pub fn status(&self) -> DojoStatus {
        if self.ended_at.is_some() {
            DojoStatus::Ended
        } else if self.scheduled_start > OffsetDateTime::now_utc() {
            DojoStatus::Upcoming
        } else {
            DojoStatus::Active
        }
    }

    /// The dojo as `caller` sees it: the join code only for participants and admins.
    pub fn to_wire(&self, my_role: Option<ParticipantRole>, admin: bool, online: u32) -> Dojo {
        Dojo {
            id: DojoId(self.id),
            name: self.name.clone(),
            description: self.description.clone(),
            language: self.language.clone(),
            host_id: UserId(self.host_id),
            max_participants: u32::try_from(self.max_participants).unwrap_or(0),
            private: self.private,
            status: self.status(),
            join_code: (my_role.is_some() || admin).then(|| self.join_code.clone()),
            my_role,
            online,
            scheduled_start: self.scheduled_start,
            created_at: self.created_at,
            ended_at: self.ended_at,
        }
    }
}

pub fn role_str(role: ParticipantRole) -> &'static str {
    match role {
        ParticipantRole::Host => "host",
        ParticipantRole::Editor => "editor",
        ParticipantRole::Observer => "observer",
    }
}

pub fn parse_role(role: &str) -> ParticipantRole {
    match role {
        "host" => ParticipantRole::Host,
        "editor" => ParticipantRole::Editor,
        // Unknown values cannot pass the CHECK constraint; the least privilege anyway.
        _ => ParticipantRole::Observer,
    }
}

/// A new dojo, its host as participant, and the document's first snapshot, in one transaction.
pub async fn create(
    pool: &PgPool,
    row: &DojoRow,
    initial_state: &[u8],
    initial_code: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO dojos (id, name, description, language, host_id, max_participants, private,
                            join_code, scheduled_start, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(row.id)
    .bind(&row.name)
    .bind(&row.description)
    .bind(&row.language)
    .bind(row.host_id)
    .bind(row.max_participants)
    .bind(row.private)
    .bind(&row.join_code)
    .bind(row.scheduled_start)
    .bind(row.created_at)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO dojo_participants (dojo_id, user_id, role) VALUES ($1, $2, 'host')")
        .bind(row.id)
        .bind(row.host_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO dojo_snapshots (dojo_id, seq, state, code) VALUES ($1, 0, $2, $3)")
        .bind(row.id)
        .bind(initial_state)
        .bind(initial_code)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

const DOJO_COLUMNS: &str = "id, name, description, language, host_id, max_participants, private,
    join_code, scheduled_start, created_at, ended_at";

pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<DojoRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {DOJO_COLUMNS} FROM dojos WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

pub async fn find_by_code(
    db: impl PgExecutor<'_>,
    code: &str,
) -> Result<Option<DojoRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {DOJO_COLUMNS} FROM dojos WHERE join_code = $1"
    ))
    .bind(code)
    .fetch_optional(db)
    .await
}

/// A user's membership: `(role, removed)`.
pub async fn membership(
    db: impl PgExecutor<'_>,
    dojo: Uuid,
    user: Uuid,
) -> Result<Option<(ParticipantRole, bool)>, sqlx::Error> {
    let row: Option<(String, bool)> = sqlx::query_as(
        "SELECT role, removed FROM dojo_participants WHERE dojo_id = $1 AND user_id = $2",
    )
    .bind(dojo)
    .bind(user)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(role, removed)| (parse_role(&role), removed)))
}

/// Adds a participant unless they are one (or were removed); returns the membership held.
pub async fn join(
    db: impl PgExecutor<'_>,
    dojo: Uuid,
    user: Uuid,
    role: ParticipantRole,
) -> Result<(ParticipantRole, bool), sqlx::Error> {
    let (role, removed): (String, bool) = sqlx::query_as(
        "INSERT INTO dojo_participants (dojo_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (dojo_id, user_id) DO UPDATE SET role = dojo_participants.role
         RETURNING role, removed",
    )
    .bind(dojo)
    .bind(user)
    .bind(role_str(role))
    .fetch_one(db)
    .await?;
    Ok((parse_role(&role), removed))
}

/// Marks a participant removed; `false` if they were not one.
pub async fn remove(db: impl PgExecutor<'_>, dojo: Uuid, user: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE dojo_participants SET removed = true
         WHERE dojo_id = $1 AND user_id = $2 AND role <> 'host'",
    )
    .bind(dojo)
    .bind(user)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Active participants, in joining order.
pub async fn participants(
    db: impl PgExecutor<'_>,
    dojo: Uuid,
) -> Result<Vec<(Uuid, ParticipantRole, OffsetDateTime)>, sqlx::Error> {
    let rows: Vec<(Uuid, String, OffsetDateTime)> = sqlx::query_as(
        "SELECT user_id, role, joined_at FROM dojo_participants
         WHERE dojo_id = $1 AND NOT removed ORDER BY joined_at, user_id",
    )
    .bind(dojo)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(u, r, at)| (u, parse_role(&r), at))
        .collect())
}

/// Ends a dojo; `false` if it had ended already.
pub async fn end(db: impl PgExecutor<'_>, dojo: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE dojos SET ended_at = now() WHERE id = $1 AND ended_at IS NULL")
        .bind(dojo)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A listed dojo and the caller's role in it.
#[derive(FromRow)]
struct Listed {
    #[sqlx(flatten)]
    dojo: DojoRow,
    role: Option<String>,
}

/// Which dojos a listing wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    Active,
    Upcoming,
    /// Active and upcoming.
    Open,
}

/// Open dojos visible to `user` (public ones, private ones they take part in; admins: all),
/// soonest first, after the cursor `(scheduled_start, id)`.
pub async fn list(
    db: impl PgExecutor<'_>,
    user: Uuid,
    admin: bool,
    listing: Listing,
    language: Option<&str>,
    after: Option<(OffsetDateTime, Uuid)>,
    limit: i64,
) -> Result<Vec<(DojoRow, Option<ParticipantRole>)>, sqlx::Error> {
    let rows: Vec<Listed> = sqlx::query_as(
        "SELECT d.id, d.name, d.description, d.language, d.host_id, d.max_participants,
                    d.private, d.join_code, d.scheduled_start, d.created_at, d.ended_at, p.role
             FROM dojos d
             LEFT JOIN dojo_participants p
               ON p.dojo_id = d.id AND p.user_id = $1 AND NOT p.removed
             WHERE d.ended_at IS NULL
               AND ($2 OR NOT d.private OR p.role IS NOT NULL)
               AND ($3 <> 'active' OR d.scheduled_start <= now())
               AND ($3 <> 'upcoming' OR d.scheduled_start > now())
               AND ($4::text IS NULL OR d.language = $4)
               AND ($5::timestamptz IS NULL OR (d.scheduled_start, d.id) > ($5, $6))
             ORDER BY d.scheduled_start, d.id
             LIMIT $7",
    )
    .bind(user)
    .bind(admin)
    .bind(match listing {
        Listing::Active => "active",
        Listing::Upcoming => "upcoming",
        Listing::Open => "open",
    })
    .bind(language)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.dojo, r.role.as_deref().map(parse_role)))
        .collect())
}

/// The document as stored: the latest snapshot `(seq, state)` and the updates after it.
pub async fn load_document(
    pool: &PgPool,
    dojo: Uuid,
) -> Result<(i64, Vec<u8>, Vec<(i64, Vec<u8>)>), sqlx::Error> {
    let (seq, state): (i64, Vec<u8>) = sqlx::query_as(
        "SELECT seq, state FROM dojo_snapshots WHERE dojo_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(dojo)
    .fetch_optional(pool)
    .await?
    .unwrap_or((0, Vec::new()));
    let updates = sqlx::query_as(
        "SELECT seq, update FROM dojo_updates WHERE dojo_id = $1 AND seq > $2 ORDER BY seq",
    )
    .bind(dojo)
    .bind(seq)
    .fetch_all(pool)
    .await?;
    Ok((seq, state, updates))
}

/// The last chat sequence number of a dojo (0 without messages).
pub async fn last_chat_seq(db: impl PgExecutor<'_>, dojo: Uuid) -> Result<i64, sqlx::Error> {
    let (seq,): (Option<i64>,) =
        sqlx::query_as("SELECT max(seq) FROM dojo_chat WHERE dojo_id = $1")
            .bind(dojo)
            .fetch_one(db)
            .await?;
    Ok(seq.unwrap_or(0))
}

/// A chat message to store.
pub struct NewChat {
    pub seq: i64,
    pub user: Uuid,
    pub text: String,
    pub sent_at: OffsetDateTime,
}

/// Stores a batch of document updates and chat messages in one transaction, if the room of
/// `epoch` still owns the dojo.
pub async fn append(
    pool: &PgPool,
    dojo: Uuid,
    epoch: i64,
    updates: &[(i64, Vec<u8>)],
    chat: &[NewChat],
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    owner::fence(&mut tx, dojo, epoch).await?;
    if !updates.is_empty() {
        let seqs: Vec<i64> = updates.iter().map(|u| u.0).collect();
        let bodies: Vec<&[u8]> = updates.iter().map(|u| u.1.as_slice()).collect();
        sqlx::query(
            "INSERT INTO dojo_updates (dojo_id, seq, update)
             SELECT $1, * FROM UNNEST($2::bigint[], $3::bytea[])",
        )
        .bind(dojo)
        .bind(&seqs)
        .bind(&bodies)
        .execute(&mut *tx)
        .await?;
    }
    if !chat.is_empty() {
        let seqs: Vec<i64> = chat.iter().map(|c| c.seq).collect();
        let users: Vec<Uuid> = chat.iter().map(|c| c.user).collect();
        let texts: Vec<&str> = chat.iter().map(|c| c.text.as_str()).collect();
        let sent: Vec<OffsetDateTime> = chat.iter().map(|c| c.sent_at).collect();
        sqlx::query(
            "INSERT INTO dojo_chat (dojo_id, seq, user_id, text, sent_at)
             SELECT $1, * FROM UNNEST($2::bigint[], $3::uuid[], $4::text[], $5::timestamptz[])",
        )
        .bind(dojo)
        .bind(&seqs)
        .bind(&users)
        .bind(&texts)
        .bind(&sent)
        .execute(&mut *tx)
        .await?;
    }
    Ok(tx.commit().await?)
}

/// Folds the log up to `seq` into a snapshot, removes those updates and all but the newest
/// `keep` snapshots (if the room of `epoch` still owns the dojo).
pub async fn compact(
    pool: &PgPool,
    (dojo, epoch): (Uuid, i64),
    seq: i64,
    state: &[u8],
    code: &str,
    keep: u32,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    owner::fence(&mut tx, dojo, epoch).await?;
    sqlx::query(
        "INSERT INTO dojo_snapshots (dojo_id, seq, state, code) VALUES ($1, $2, $3, $4)
         ON CONFLICT (dojo_id, seq) DO NOTHING",
    )
    .bind(dojo)
    .bind(seq)
    .bind(state)
    .bind(code)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM dojo_updates WHERE dojo_id = $1 AND seq <= $2")
        .bind(dojo)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DELETE FROM dojo_snapshots WHERE dojo_id = $1 AND seq < (
           SELECT seq FROM dojo_snapshots WHERE dojo_id = $1 ORDER BY seq DESC OFFSET $2 LIMIT 1)",
    )
    .bind(dojo)
    .bind(i64::from(keep.max(1)) - 1)
    .execute(&mut *tx)
    .await?;
    Ok(tx.commit().await?)
}

/// Chat messages after `after`, oldest first.
pub async fn chat_page(
    db: impl PgExecutor<'_>,
    dojo: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<ChatMessage>, sqlx::Error> {
    let rows: Vec<(i64, Uuid, String, OffsetDateTime)> = sqlx::query_as(
        "SELECT seq, user_id, text, sent_at FROM dojo_chat
         WHERE dojo_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(dojo)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, user, text, sent_at)| ChatMessage {
            seq,
            user_id: UserId(user),
            text,
            sent_at,
        })
        .collect())
}

/// Snapshots before `before`, newest first.
pub async fn snapshot_page(
    db: impl PgExecutor<'_>,
    dojo: Uuid,
    before: i64,
    limit: i64,
) -> Result<Vec<CodeSnapshot>, sqlx::Error> {
    let rows: Vec<(i64, String, OffsetDateTime)> = sqlx::query_as(
        "SELECT seq, code, taken_at FROM dojo_snapshots
         WHERE dojo_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
    )
    .bind(dojo)
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, code, taken_at)| CodeSnapshot {
            seq,
            code,
            taken_at,
        })
        .collect())
}
