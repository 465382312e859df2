//! `rate_limits`: one row per bucket holding the count of its current one-minute window. Each
//! statement is a single upsert that starts a new window when the stored one is over, so the
//! counter row stays locked only for an instant.

use tokio_postgres::types::Type;

use super::stmt::{self, Cached};
use super::DbError;

/// A bucket's count after one request was added.
#[derive(Debug, Clone, Copy)]
pub struct Hit {
    pub count: i32,
    /// Whole seconds until the current window ends.
    pub retry_after: i32,
}

/// Counts one request against `bucket` in the current window.
pub async fn hit(client: &impl Cached, bucket: &str) -> Result<Hit, DbError> {
    let row = stmt::query_opt(
        client,
        "INSERT INTO rate_limits AS r (bucket, window_start, count)
             VALUES ($1, date_trunc('minute', now()), 1)
             ON CONFLICT (bucket) DO UPDATE SET
                count = CASE WHEN r.window_start = date_trunc('minute', now()) THEN r.count + 1 ELSE 1 END,
                window_start = date_trunc('minute', now())
             RETURNING count,
                ceil(extract(epoch FROM date_trunc('minute', now()) + interval '1 minute' - now()))::int AS retry_after",
        &[(&bucket, Type::TEXT)],
    )
    .await?;
    let row = row.ok_or_else(|| DbError::Config("rate limit upsert returned no row".into()))?;
    Ok(Hit {
        count: row.try_get("count")?,
        retry_after: row.try_get("retry_after")?,
    })
}

/// Adds `n` requests to `bucket` in the current window; returns the new count.
pub async fn add(client: &impl Cached, bucket: &str, n: i32) -> Result<i32, DbError> {
    let row = stmt::query_opt(
        client,
        "INSERT INTO rate_limits AS r (bucket, window_start, count)
             VALUES ($1, date_trunc('minute', now()), $2)
             ON CONFLICT (bucket) DO UPDATE SET
                count = CASE WHEN r.window_start = date_trunc('minute', now()) THEN r.count + $2 ELSE $2 END,
                window_start = date_trunc('minute', now())
             RETURNING count",
        &[(&bucket, Type::TEXT), (&n, Type::INT4)],
    )
    .await?;
    let row = row.ok_or_else(|| DbError::Config("rate limit upsert returned no row".into()))?;
    Ok(row.try_get("count")?)
}

/// Deletes at most `batch` windows that started more than `older_than_secs` ago; returns how
/// many. The outer condition is re-checked on a row a request just refreshed.
pub(crate) async fn purge_batch(client: &impl Cached, older_than_secs: f64, batch: i64) -> Result<u64, DbError> {
    use tokio_postgres::GenericClient;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&older_than_secs, &batch];
    let n = client
        .client()
        .execute(
            "DELETE FROM rate_limits
             WHERE window_start < now() - make_interval(secs => $1)
               AND bucket IN (SELECT bucket FROM rate_limits
                              WHERE window_start < now() - make_interval(secs => $1)
                              LIMIT $2)",
            &params,
        )
        .await?;
    Ok(n)
}
