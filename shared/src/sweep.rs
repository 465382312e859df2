//! The sweeper (EventBridge, every minute; every few seconds in `calseta dev`): re-sends outbox
//! rows that were committed but never sent (crash, queue outage) and purges old sent rows.
//! It also completes alerts whose enrichment deadline has passed, so they are dispatched with
//! whatever enrichment they have (`enrich::engine::complete_overdue`), and deletes idle
//! rate-limit windows.

use std::time::Duration;

use serde::Serialize;

use crate::{db::DbError, queue::outbox::Outbox};

/// Rows younger than this are left to the handler that wrote them.
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(5);
/// Sent rows are kept this long for forensics, then deleted.
pub const SENT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Rate-limit windows last a minute; a row idle this long only takes space (one per key,
/// source and client address that ever failed authentication).
pub const RATE_LIMIT_RETENTION: Duration = Duration::from_secs(3600);
/// Rows deleted per statement, and statements per pass: a flood of distinct addresses is
/// cleared over a few passes without one long-held lock.
const RATE_LIMIT_PURGE_BATCH: i64 = 5000;
const RATE_LIMIT_PURGE_PASSES: usize = 10;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub overdue_completed: usize,
    pub outbox_sent: usize,
    pub outbox_failed: usize,
    pub outbox_purged: u64,
    pub rate_limits_purged: u64,
}

/// One sweep pass.
pub async fn run_once(outbox: &Outbox, min_age: Duration) -> Result<SweepReport, DbError> {
    // Overdue alerts first: their dispatch rows are sent right away by the same pass.
    let mut overdue = 0;
    loop {
        let n = crate::enrich::engine::complete_overdue(outbox, 200).await?;
        overdue += n;
        if n < 200 {
            break;
        }
    }
    let sent = outbox.sweep(min_age, 500).await?;
    let purged = outbox.purge_sent(SENT_RETENTION).await?;
    let rate_limits_purged = purge_rate_limits(outbox.pool(), RATE_LIMIT_RETENTION).await?;
    let report = SweepReport {
        overdue_completed: overdue,
        outbox_sent: sent.sent,
        outbox_failed: sent.failed,
        outbox_purged: purged,
        rate_limits_purged,
    };
    if report != SweepReport::default() {
        tracing::info!(?report, "sweep");
    }
    // After the pass: what is still unsent (the alarm-worthy backlog), as CloudWatch EMF.
    let client = outbox.pool().get().await?;
    let row = client
        .query_one(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0)
             FROM outbox WHERE sent_at IS NULL",
            &[],
        )
        .await?;
    let (backlog, oldest): (i64, f64) = (row.get(0), row.get(1));
    crate::metrics::emit(
        &[],
        &[
            ("OutboxBacklog", backlog as f64, crate::metrics::Unit::Count),
            ("OutboxOldestAge", oldest, crate::metrics::Unit::Seconds),
        ],
    );
    Ok(report)
}

/// Deletes rate-limit windows that started more than `older_than` ago, in bounded batches.
pub async fn purge_rate_limits(pool: &crate::db::Pool, older_than: Duration) -> Result<u64, DbError> {
    let client = pool.get().await?;
    let mut total = 0;
    for _ in 0..RATE_LIMIT_PURGE_PASSES {
        let n = client
            .execute(
                // The outer condition is re-checked on a row a request just refreshed.
                "DELETE FROM rate_limits
                 WHERE window_start < now() - make_interval(secs => $1)
                   AND bucket IN (SELECT bucket FROM rate_limits
                                  WHERE window_start < now() - make_interval(secs => $1)
                                  LIMIT $2)",
                &[&older_than.as_secs_f64(), &RATE_LIMIT_PURGE_BATCH],
            )
            .await?;
        total += n;
        if (n as i64) < RATE_LIMIT_PURGE_BATCH {
            break;
        }
    }
    Ok(total)
}
