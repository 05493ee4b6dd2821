//! The SQL of moving a database from one Postgres to another by logical replication, shared
//! by the local driver (the control plane, as each cluster's superuser) and the Kubernetes
//! operator (as each service's role, on CloudNativePG clusters): how far a subscription's
//! initial copy is, whether two databases hold the same rows, and the sequences logical
//! replication does not carry.
//!
//! Every query reads only catalogs open to the database's owner and the owner's own tables,
//! so it works as the service's role.

use sqlx::PgPool;

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

/// Per table (schema-qualified, in order): row count and an order-independent checksum of
/// its rows.
pub async fn checksums(db: &PgPool) -> anyhow::Result<Vec<(String, String)>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    )
    .fetch_all(db)
    .await?;
    let mut sums = Vec::with_capacity(tables.len());
    for table in tables {
        let sum: String = sqlx::query_scalar(&format!(
            "SELECT count(*) || ':' || coalesce(md5(string_agg(h, '' ORDER BY h)), '')
             FROM (SELECT md5(t::text) AS h FROM {table} t) rows"
        ))
        .fetch_one(db)
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
}
