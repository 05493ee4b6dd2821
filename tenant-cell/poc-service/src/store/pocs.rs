//! The `pocs` table. Writes never touch the search index: the table's trigger queues them in
//! `search_changes` (a row per search consumer) within the same transaction.

use sqlx::{FromRow, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::pocs::{Poc, Visibility};
use wire_types::{PocId, UserId};

use crate::domain::ValidPoc;
use crate::domain::search::{PocDoc, Viewer};

#[derive(Clone, Debug, FromRow)]
pub struct PocRow {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub description: String,
    pub repository_url: String,
    pub language: String,
    pub tags: Vec<String>,
    pub frameworks: Vec<String>,
    pub visibility: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub deleted_at: Option<OffsetDateTime>,
}

impl PocRow {
    pub fn visibility(&self) -> Visibility {
        // Unknown values cannot pass the CHECK constraint; default to the safer one anyway.
        Visibility::parse(&self.visibility).unwrap_or(Visibility::Private)
    }

    /// Whether `viewer` may read this PoC.
    pub fn visible_to(&self, viewer: Viewer) -> bool {
        match viewer {
            Viewer::Everything => true,
            Viewer::User(user) => self.owner_id == user || self.visibility() == Visibility::Tenant,
        }
    }

    pub fn to_wire(&self) -> Poc {
        Poc {
            id: PocId(self.id),
            owner_id: UserId(self.owner_id),
            name: self.name.clone(),
            description: self.description.clone(),
            repository_url: self.repository_url.clone(),
            language: self.language.clone(),
            tags: self.tags.clone(),
            frameworks: self.frameworks.clone(),
            visibility: self.visibility(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    pub fn to_doc(&self) -> PocDoc {
        PocDoc {
            id: self.id,
            owner_id: self.owner_id,
            name: self.name.clone(),
            description: self.description.clone(),
            language: self.language.clone(),
            tags: self.tags.clone(),
            frameworks: self.frameworks.clone(),
            visibility: self.visibility(),
            created_at: micros(self.created_at),
            updated_at: micros(self.updated_at),
        }
    }
}

fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

const COLUMNS: &str = "id, owner_id, name, description, repository_url, language, tags, frameworks, visibility, created_at, updated_at, deleted_at";

type PocQuery<'q> = sqlx::query::QueryAs<'q, sqlx::Postgres, PocRow, sqlx::postgres::PgArguments>;

/// Binds a PoC's editable fields in column order: name, description, repository_url, language,
/// tags, frameworks, visibility.
fn bind_fields<'q>(q: PocQuery<'q>, poc: &'q ValidPoc) -> PocQuery<'q> {
    q.bind(&poc.name)
        .bind(&poc.description)
        .bind(&poc.repository_url)
        .bind(&poc.language)
        .bind(&poc.tags)
        .bind(&poc.frameworks)
        .bind(poc.visibility.as_str())
}

pub async fn insert(ex: impl PgExecutor<'_>, owner: Uuid, poc: &ValidPoc) -> sqlx::Result<PocRow> {
    let sql = format!(
        "INSERT INTO pocs (id, owner_id, name, description, repository_url, language, tags, frameworks, visibility)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
    );
    bind_fields(sqlx::query_as(&sql).bind(Uuid::now_v7()).bind(owner), poc)
        .fetch_one(ex)
        .await
}

/// A live (not deleted) PoC.
pub async fn find_live(ex: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<PocRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM pocs WHERE id = $1 AND deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(ex)
    .await
}

/// A live PoC, locked for the rest of the transaction.
pub async fn lock_live(ex: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<PocRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM pocs WHERE id = $1 AND deleted_at IS NULL FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(ex)
    .await
}

pub async fn update(ex: impl PgExecutor<'_>, id: Uuid, poc: &ValidPoc) -> sqlx::Result<PocRow> {
    let sql = format!(
        "UPDATE pocs SET name = $2, description = $3, repository_url = $4, language = $5, tags = $6, frameworks = $7,
                visibility = $8, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    bind_fields(sqlx::query_as(&sql).bind(id), poc)
        .fetch_one(ex)
        .await
}

pub async fn soft_delete(ex: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE pocs SET deleted_at = now(), updated_at = now() WHERE id = $1 AND deleted_at IS NULL").bind(id).execute(ex).await.map(drop)
}

/// Live PoCs with these ids that `viewer` may see, in no particular order. Search results are
/// re-read here, so a stale index can never show a deleted or hidden PoC.
///
/// Looked up by primary key alone, the live and visibility checks made on the rows: with any
/// other condition in the query, a table without statistics yet (after a bulk load or a
/// restore, until autovacuum analyzes it) gets a plan that pairs the key lookup with a scan of
/// the whole `pocs_live_owner_idx` — 3 ms per page instead of 0.1 ms at 100k PoCs (measured,
/// `./x bench search-platform`).
pub async fn visible_by_ids(
    ex: impl PgExecutor<'_>,
    ids: &[Uuid],
    viewer: Viewer,
) -> sqlx::Result<Vec<PocRow>> {
    let rows = for_index(ex, ids).await?;
    Ok(rows
        .into_iter()
        .filter(|row| row.deleted_at.is_none() && row.visible_to(viewer))
        .collect())
}

/// Rows with these ids, deleted ones included, by key alone (the indexer; search re-reads its
/// pages with it).
pub async fn for_index(ex: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<PocRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM pocs WHERE id = ANY($1)"))
        .bind(ids)
        .fetch_all(ex)
        .await
}

/// Live PoCs after `after` in id order (a rebuild pages through all of them).
pub async fn live_page(
    ex: impl PgExecutor<'_>,
    after: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<PocRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM pocs WHERE id > $1 AND deleted_at IS NULL ORDER BY id LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(ex)
    .await
}

pub async fn count_live(ex: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM pocs WHERE deleted_at IS NULL")
        .fetch_one(ex)
        .await
}

/// Filters of the internal API (`visible_to` = `None` means everything, for admins).
#[derive(Clone, Debug, Default)]
pub struct ReportFilter {
    pub visible_to: Option<Uuid>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    /// All of these tags.
    pub tags: Vec<String>,
    /// None of these tags.
    pub exclude_tags: Vec<String>,
    /// Only this user's PoCs.
    pub owner: Option<Uuid>,
}

/// `WHERE` clause over `pocs` using binds `$1..=$6` in [`bind_filter`] order.
const FILTER: &str = "deleted_at IS NULL
    AND ($1::uuid IS NULL OR visibility = 'tenant' OR owner_id = $1)
    AND ($2::timestamptz IS NULL OR created_at >= $2)
    AND ($3::timestamptz IS NULL OR created_at < $3)
    AND tags @> $4::text[]
    AND NOT (tags && $5::text[])
    AND ($6::uuid IS NULL OR owner_id = $6)";

fn bind_filter<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    f: &'q ReportFilter,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    q.bind(f.visible_to)
        .bind(f.from)
        .bind(f.to)
        .bind(&f.tags)
        .bind(&f.exclude_tags)
        .bind(f.owner)
}

/// A page of matching PoCs in `(created_at, id)` order, after the keyset position `after`.
pub async fn report_page(
    ex: impl PgExecutor<'_>,
    f: &ReportFilter,
    after: Option<(OffsetDateTime, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<PocRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM pocs WHERE {FILTER}
           AND ($7::timestamptz IS NULL OR (created_at, id) > ($7, $8))
         ORDER BY created_at, id LIMIT $9"
    );
    bind_filter(sqlx::query_as(&sql), f)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit)
        .fetch_all(ex)
        .await
}

/// Counts by dimension over matching PoCs in one scan: `(dimension, key, count)` rows with
/// dimension `language`, `month` (`YYYY-MM`, UTC), `owner` or `tag`.
pub async fn report_aggregates(
    ex: impl PgExecutor<'_>,
    f: &ReportFilter,
) -> sqlx::Result<Vec<(String, String, i64)>> {
    let sql = format!(
        "WITH f AS MATERIALIZED (
             SELECT language, owner_id, date_trunc('month', created_at AT TIME ZONE 'UTC') AS month, tags
               FROM pocs WHERE {FILTER})
         SELECT 'language', language, count(*) FROM f GROUP BY language
         UNION ALL SELECT 'month', to_char(month, 'YYYY-MM'), count(*) FROM f GROUP BY month
         UNION ALL SELECT 'owner', owner_id::text, count(*) FROM f GROUP BY owner_id
         UNION ALL SELECT 'tag', t, count(*) FROM f, unnest(f.tags) AS t GROUP BY t"
    );
    bind_filter(sqlx::query_as(&sql), f).fetch_all(ex).await
}
