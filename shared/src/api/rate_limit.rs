//! Rate limits shared by every instance: fixed one-minute windows in Postgres (one upsert per
//! request, outside the caller's transaction so the counter row is locked only for an instant).

use axum::http::StatusCode;
use serde_json::json;

use super::ApiError;
use crate::db::DbError;

/// Counts one request against `bucket`; over `limit` per minute → 429 `RATE_LIMITED`.
/// A limit of 0 disables the check.
pub async fn check(client: &impl crate::db::stmt::Cached, bucket: &str, limit: u32) -> Result<(), ApiError> {
    if limit == 0 {
        return Ok(());
    }
    let row = crate::db::stmt::query_opt(
        client,
        "INSERT INTO rate_limits AS r (bucket, window_start, count)
             VALUES ($1, date_trunc('minute', now()), 1)
             ON CONFLICT (bucket) DO UPDATE SET
                count = CASE WHEN r.window_start = date_trunc('minute', now()) THEN r.count + 1 ELSE 1 END,
                window_start = date_trunc('minute', now())
             RETURNING count,
                ceil(extract(epoch FROM date_trunc('minute', now()) + interval '1 minute' - now()))::int",
        &[(&bucket, tokio_postgres::types::Type::TEXT)],
    )
    .await?;
    let row = row.ok_or_else(|| DbError::Config("rate limit upsert returned no row".into()))?;
    let count: i32 = row.get(0);
    if count as i64 > limit as i64 {
        return Err(limited(row.get::<_, i32>(1).max(1) as u64));
    }
    Ok(())
}

/// 429 `RATE_LIMITED` with `Retry-After: retry` seconds.
pub fn limited(retry: u64) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        "Rate limit exceeded; retry later",
    )
    .with_details(json!({ "retry_after_seconds": retry }));
    e.retry_after = Some(retry);
    e
}
