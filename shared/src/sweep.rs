//! The sweeper (EventBridge, every minute; every few seconds in `calseta dev`): re-sends outbox
//! rows that were committed but never sent (crash, queue outage) and purges old sent rows.
//! It also completes alerts whose enrichment deadline has passed, so they are dispatched with
//! whatever enrichment they have (`enrich::engine::complete_overdue`).

use std::time::Duration;

use serde::Serialize;

use crate::{db::DbError, queue::outbox::Outbox};

/// Rows younger than this are left to the handler that wrote them.
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(5);
/// Sent rows are kept this long for forensics, then deleted.
pub const SENT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub overdue_completed: usize,
    pub outbox_sent: usize,
    pub outbox_failed: usize,
    pub outbox_purged: u64,
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
    let report = SweepReport {
        overdue_completed: overdue,
        outbox_sent: sent.sent,
        outbox_failed: sent.failed,
        outbox_purged: purged,
    };
    if report != SweepReport::default() {
        tracing::info!(
            overdue_completed = report.overdue_completed,
            outbox_sent = report.outbox_sent,
            outbox_failed = report.outbox_failed,
            outbox_purged = report.outbox_purged,
            "sweep"
        );
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
