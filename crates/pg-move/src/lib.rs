//! The SQL of moving a database from one Postgres to another by logical replication, shared
//! by the local driver (the control plane, as each cluster's superuser) and the Kubernetes
//! operator (as each service's role, on CloudNativePG clusters): how far a subscription's
//! initial copy is, whether two databases hold the same rows, and the sequences logical
//! replication does not carry.
//!
//! Every query reads only catalogs open to the database's owner and the owner's own tables,
//! so it works as the service's role.

use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool};

/// Tables of subscription `name` whose initial copy has not finished (0: streaming).
pub async fn copying(db: &PgPool, name: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM pg_subscription_rel r
         JOIN pg_subscription s ON s.oid = r.srsubid
         WHERE s.subname = $1 AND r.srsubstate <> 'r'",
    )
    .bind(name)
    .fetch_one(db)
    .await?)
}

/// Whether subscription `name` exists here.
pub async fn subscribed(db: &PgPool, name: &str) -> anyhow::Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)")
            .bind(name)
            .fetch_one(db)
            .await?,
    )
}

/// Makes `publication` publish every table of the database, once: each table by name (which
/// needs only ownership of them — a superuser, or a member of their owner as RDS's master is —
/// where `FOR ALL TABLES` needs a superuser). Tables without a primary key replicate updates
/// and deletes by the whole row. Refuses unless the server writes logical WAL.
pub async fn publish(db: &PgPool, publication: &str) -> anyhow::Result<()> {
    let level: String = sqlx::query_scalar("SHOW wal_level").fetch_one(db).await?;
    anyhow::ensure!(
        level == "logical",
        "the source's Postgres runs with wal_level={level}, not logical (it needs a restart \
         with logical replication on: wal_level, or rds.logical_replication on RDS)"
    );
    let keyless: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND c.relreplident = 'd'
           AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)",
    )
    .fetch_all(db)
    .await?;
    for table in keyless {
        sqlx::raw_sql(&format!("ALTER TABLE {table} REPLICA IDENTITY FULL"))
            .execute(db)
            .await?;
    }
    let published: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)")
            .bind(publication)
            .fetch_one(db)
            .await?;
    if !published {
        let create: String = sqlx::query_scalar(
            "SELECT format('CREATE PUBLICATION %I', $1::text)
                 || coalesce(' FOR TABLE ' || string_agg(format('%I.%I', schemaname, tablename), ', '), '')
             FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
        )
        .bind(publication)
        .fetch_one(db)
        .await?;
        sqlx::raw_sql(&create).execute(db).await?;
    }
    Ok(())
}

/// Subscribes this database to `publication` at `conninfo` (libpq's `key=value` words) as
/// subscription `name`, its slot on the source also `name` (slots are per server: one name
/// per database), copying the rows there first. Once: an existing subscription is kept.
pub async fn subscribe(
    db: &PgPool,
    name: &str,
    conninfo: &str,
    publication: &str,
) -> anyhow::Result<()> {
    if subscribed(db, name).await? {
        return Ok(());
    }
    // Quoted by the server (`format`'s %I and %L): utility statements take no parameters.
    let create: String = sqlx::query_scalar(
        "SELECT format('CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %I
                        WITH (copy_data = true, slot_name = %L)', $1::text, $2::text, $3::text, $1::text)",
    )
    .bind(name)
    .bind(conninfo)
    .bind(publication)
    .fetch_one(db)
    .await?;
    sqlx::raw_sql(&create).execute(db).await?;
    Ok(())
}

/// A libpq connection string of `key=value` words, every value quoted (a password may hold
/// spaces or quotes).
pub fn conninfo(words: &[(&str, &str)]) -> String {
    words
        .iter()
        .map(|(key, value)| {
            let value = value.replace('\\', "\\\\").replace('\'', "\\'");
            format!("{key}='{value}'")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Drops subscription `name` here without reaching its source: its slot there stays until
/// [`drop_slot`] (a source that is gone must not keep the target from starting).
pub async fn unsubscribe(db: &PgPool, name: &str) -> anyhow::Result<()> {
    if !subscribed(db, name).await? {
        return Ok(());
    }
    for verb in [
        "ALTER SUBSCRIPTION %I DISABLE",
        "ALTER SUBSCRIPTION %I SET (slot_name = NONE)",
        "DROP SUBSCRIPTION %I",
    ] {
        let sql: String = sqlx::query_scalar("SELECT format($1, $2::text)")
            .bind(verb)
            .bind(name)
            .fetch_one(db)
            .await?;
        sqlx::raw_sql(&sql).execute(db).await?;
    }
    Ok(())
}

/// Drops replication slot `name` on the source once no walsender holds it (one of a
/// just-disabled subscription may hold it a moment longer); waits up to `wait`.
pub async fn drop_slot(src: &PgPool, name: &str, wait: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        let active: Option<bool> =
            sqlx::query_scalar("SELECT active FROM pg_replication_slots WHERE slot_name = $1")
                .bind(name)
                .fetch_optional(src)
                .await?;
        match active {
            None => return Ok(()),
            Some(false) => {
                // Gone meanwhile is as good as dropped.
                sqlx::query(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                     WHERE slot_name = $1 AND NOT active",
                )
                .bind(name)
                .execute(src)
                .await?;
                return Ok(());
            }
            Some(true) if Instant::now() > deadline => {
                anyhow::bail!("replication slot {name} is still in use")
            }
            Some(true) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Drops `publication` (if any).
pub async fn unpublish(src: &PgPool, publication: &str) -> anyhow::Result<()> {
    let sql: String =
        sqlx::query_scalar("SELECT format('DROP PUBLICATION IF EXISTS %I', $1::text)")
            .bind(publication)
            .fetch_one(src)
            .await?;
    sqlx::raw_sql(&sql).execute(src).await?;
    Ok(())
}

/// Per table (schema-qualified, in order): row count and an order-independent checksum of
/// its rows.
pub async fn checksums(db: &PgPool) -> anyhow::Result<Vec<(String, String)>> {
    checksums_in(&mut *db.acquire().await?).await
}

/// [`checksums`] on one connection: inside a transaction, of its snapshot (a backup sums the
/// snapshot it dumps).
pub async fn checksums_in(conn: &mut PgConnection) -> anyhow::Result<Vec<(String, String)>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut sums = Vec::with_capacity(tables.len());
    for table in tables {
        let sum: String = sqlx::query_scalar(&format!(
            "SELECT count(*) || ':' || coalesce(md5(string_agg(h, '' ORDER BY h)), '')
             FROM (SELECT md5(t::text) AS h FROM {table} t) rows"
        ))
        .fetch_one(&mut *conn)
        .await?;
        sums.push((table, sum));
    }
    Ok(sums)
}

/// The tables of `expected` whose rows `got` does not match (missing tables included).
pub fn differing<'a>(expected: &'a [(String, String)], got: &[(String, String)]) -> Vec<&'a str> {
    expected
        .iter()
        .filter(|(t, sum)| got.iter().all(|(u, s)| u != t || s != sum))
        .map(|(t, _)| t.as_str())
        .collect()
}

/// Sets every sequence of `dst` to its value in `src`: the target continues where the source
/// stopped (logical replication carries rows, not sequences).
pub async fn copy_sequences(src: &PgPool, dst: &PgPool) -> anyhow::Result<()> {
    let sequences: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences",
    )
    .fetch_all(src)
    .await?;
    for (sequence, last) in sequences {
        if let Some(last) = last {
            sqlx::query("SELECT setval($1::regclass, $2, true)")
                .bind(&sequence)
                .bind(last)
                .execute(dst)
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_differs_when_its_sum_or_presence_does() {
        let row = |t: &str, s: &str| (t.to_owned(), s.to_owned());
        let expected = [
            row("public.a", "1:x"),
            row("public.b", "2:y"),
            row("public.c", "0:"),
        ];
        let got = [row("public.a", "1:x"), row("public.b", "2:z")];
        assert_eq!(differing(&expected, &got), ["public.b", "public.c"]);
        assert!(differing(&expected, &expected).is_empty());
    }

    #[test]
    fn connection_words_are_quoted() {
        assert_eq!(
            conninfo(&[("host", "db.example"), ("password", r"it's a\pass")]),
            r"host='db.example' password='it\'s a\\pass'"
        );
    }
}
