//! Rate limits shared by every instance: fixed one-minute windows in Postgres (an upsert outside
//! the caller's transaction, so the counter row is locked only for an instant).
//!
//! [`check`] counts every request in Postgres (exact; used for failed authentications and other
//! low-volume buckets). [`Limiter`] serves the ingest hot path: each instance counts locally and
//! adds its count to the shared row in batches, so most requests pay no round trip and no commit
//! on a row every request would otherwise lock in turn.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use serde_json::json;

use super::ApiError;
use crate::db::rate_limits;

/// Counts one request against `bucket`; over `limit` per minute → 429 `RATE_LIMITED`.
/// A limit of 0 disables the check.
pub async fn check(client: &impl crate::db::stmt::Cached, bucket: &str, limit: u32) -> Result<(), ApiError> {
    if limit == 0 {
        return Ok(());
    }
    let hit = rate_limits::hit(client, bucket).await?;
    if hit.count as i64 > limit as i64 {
        return Err(limited(hit.retry_after.max(1) as u64));
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

/// A batch is sent at least this often, so other instances see this one's traffic promptly.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Requests an instance may admit between two syncs of a bucket: 1% of the limit (at least 1,
/// which makes limits under 200 a minute exact).
fn batch(limit: u32) -> u32 {
    (limit / 100).max(1)
}

/// Per-instance counters of [`Limiter`], reconciled with the shared rows.
///
/// Bound on error: an instance syncs a bucket after [`batch`] requests (1% of the limit) or
/// [`SYNC_EVERY`], whichever comes first, and decides on the shared total it last read plus its
/// own unsynced count. So across `n` instances at most `n × (batch - 1)` requests a minute pass
/// beyond the limit (60 per instance at the default 6,000/min), and other instances' traffic is
/// seen at most a second late. A flood is still stopped: once the shared total is over, every
/// instance refuses, locally, until the window ends. Counts not yet synced when an instance
/// stops are lost (at most `batch - 1`).
#[derive(Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<String, Local>>,
}

struct Local {
    /// Minute (Unix seconds / 60) the counts belong to.
    window: i64,
    /// The shared count as of the last sync (this instance's synced requests included).
    shared: i64,
    /// Admitted here and not yet added to the shared row.
    pending: u32,
    synced_at: Instant,
}

impl Limiter {
    /// Counts one request against `bucket`; over `limit` per minute → 429 `RATE_LIMITED`.
    /// A limit of 0 disables the check.
    pub async fn check(&self, client: &impl crate::db::stmt::Cached, bucket: &str, limit: u32) -> Result<(), ApiError> {
        if limit == 0 {
            return Ok(());
        }
        let now = chrono::Utc::now().timestamp();
        let (window, retry) = (now.div_euclid(60), (60 - now.rem_euclid(60)).max(1) as u64);
        let to_send = {
            let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() > 10_000 {
                map.retain(|_, l| l.window == window);
            }
            let l = map.entry(bucket.to_owned()).or_insert(Local {
                window,
                shared: 0,
                pending: 0,
                synced_at: Instant::now(),
            });
            if l.window != window {
                *l = Local {
                    window,
                    shared: 0,
                    pending: 0,
                    synced_at: Instant::now(),
                };
            }
            if l.shared >= limit as i64 {
                // Known over for this window: refused here without a round trip.
                return Err(limited(retry));
            }
            l.pending += 1;
            let over = l.shared + l.pending as i64 > limit as i64;
            if !over && l.pending < batch(limit) && l.synced_at.elapsed() < SYNC_EVERY {
                return Ok(());
            }
            let n = l.pending;
            l.pending = 0;
            l.synced_at = Instant::now();
            n
        };
        let total = add(client, bucket, to_send).await?;
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = map.get_mut(bucket).filter(|l| l.window == window) {
            l.shared = l.shared.max(total);
        }
        // This request is the last of the batch just added: it passes only if the total
        // (everyone's) is within the limit.
        if total > limit as i64 {
            return Err(limited(retry));
        }
        Ok(())
    }
}

/// Adds `n` requests to `bucket`'s shared row for the current minute; returns the new total.
async fn add(client: &impl crate::db::stmt::Cached, bucket: &str, n: u32) -> Result<i64, ApiError> {
    Ok(rate_limits::add(client, bucket, n as i32).await? as i64)
}
