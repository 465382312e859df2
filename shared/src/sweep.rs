//! The sweeper (EventBridge, every minute; every few seconds in `calseta dev`): re-sends outbox
//! rows that were committed but never sent (crash, queue outage) and purges old sent rows.
//! It also completes alerts whose enrichment deadline has passed, so they are dispatched with
//! whatever enrichment they have (`enrich::engine::complete_overdue`), and deletes idle
//! rate-limit windows.
//!
//! And it repairs what a crash, a lost or dead-lettered message can strand (the same in AWS and
//! locally), each case bounded per pass and idempotent (consumers de-duplicate):
//! - deliveries whose `redrive_at` passed with no live claim: a first attempt never made, a
//!   retry whose message was lost, or a retry longer than SQS's 15-minute delay that is now due
//!   → the attempt's message is queued again;
//! - completed alerts without their dispatch (`dispatched_at` unset) well after completion →
//!   their dispatch message is queued again;
//! - indicator links still pending well after the alert was stored → their enrich message is
//!   queued again, unless the enrich queue has a backlog that explains the wait.

use std::time::Duration;

use serde::Serialize;

use crate::{
    db::{deliveries, DbError},
    dispatch::deliver::{DeliverRequest, REDRIVE_AFTER_SECONDS},
    domain::indicator::IndicatorType,
    queue::{
        messages::{DispatchRequest, EnrichRequest},
        outbox::{self, NewMessage, Outbox},
        QueueName,
    },
};

/// Rows younger than this are left to the handler that wrote them.
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(5);
/// Sent rows are kept this long for forensics, then deleted.
pub(crate) const SENT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Rate-limit windows last a minute; a row idle this long only takes space (one per key,
/// source and client address that ever failed authentication).
pub(crate) const RATE_LIMIT_RETENTION: Duration = Duration::from_secs(3600);
/// Rows deleted per statement, and statements per pass: a flood of distinct addresses is
/// cleared over a few passes without one long-held lock.
const RATE_LIMIT_PURGE_BATCH: i64 = 5000;
const RATE_LIMIT_PURGE_PASSES: usize = 10;
/// An alert completed, or a link stored, this long ago without progress is repaired.
pub(crate) const REPAIR_AFTER: Duration = Duration::from_secs(REDRIVE_AFTER_SECONDS as u64);
/// Items re-driven per repair case and pass.
pub(crate) const REPAIR_BATCH: i64 = 200;
/// Pending links are not re-driven while the enrich queue holds at least this many messages:
/// the backlog explains the wait, and re-sending would only grow it.
pub(crate) const LINK_REPAIR_MAX_BACKLOG: u64 = 1_000;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub overdue_completed: usize,
    pub outbox_sent: usize,
    pub outbox_failed: usize,
    pub outbox_purged: u64,
    pub rate_limits_purged: u64,
    /// Deliveries whose attempt was queued again (due long retries included).
    pub deliveries_redriven: usize,
    /// Completed alerts whose dispatch was queued again.
    pub alerts_redispatched: usize,
    /// Pending links whose enrich message was queued again.
    pub links_redriven: usize,
}

/// What the repair duty does per pass.
#[derive(Debug, Clone, Copy)]
pub struct RepairSettings {
    pub after: Duration,
    pub batch: i64,
}

impl Default for RepairSettings {
    fn default() -> Self {
        Self {
            after: REPAIR_AFTER,
            batch: REPAIR_BATCH,
        }
    }
}

/// What one repair pass re-drove.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RepairReport {
    pub deliveries: usize,
    pub alerts: usize,
    pub links: usize,
}

/// One sweep pass.
pub async fn run_once(outbox: &Outbox, min_age: Duration) -> Result<SweepReport, DbError> {
    run_with(outbox, min_age, RepairSettings::default()).await
}

/// One sweep pass with explicit repair settings.
pub async fn run_with(
    outbox: &Outbox,
    min_age: Duration,
    repair_settings: RepairSettings,
) -> Result<SweepReport, DbError> {
    // Overdue alerts first: their dispatch rows are sent right away by the same pass.
    let mut overdue = 0;
    loop {
        let n = crate::enrich::engine::complete_overdue(outbox, 200).await?;
        overdue += n;
        if n < 200 {
            break;
        }
    }
    // Repairs write outbox rows and send them at once; a failed send is left to the pass below.
    let repaired = repair(outbox, repair_settings).await?;
    let sent = outbox.sweep(min_age, 500).await?;
    let purged = outbox.purge_sent(SENT_RETENTION).await?;
    let rate_limits_purged = purge_rate_limits(outbox.pool(), RATE_LIMIT_RETENTION).await?;
    let report = SweepReport {
        overdue_completed: overdue,
        outbox_sent: sent.sent,
        outbox_failed: sent.failed,
        outbox_purged: purged,
        rate_limits_purged,
        deliveries_redriven: repaired.deliveries,
        alerts_redispatched: repaired.alerts,
        links_redriven: repaired.links,
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
    let backlog = outbox.backlog().await?;
    let (backlog, oldest) = (backlog.unsent, backlog.oldest_unsent_age_seconds.unwrap_or(0.0));
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
pub(crate) async fn purge_rate_limits(pool: &crate::db::Pool, older_than: Duration) -> Result<u64, DbError> {
    let client = pool.get().await?;
    let mut total = 0;
    for _ in 0..RATE_LIMIT_PURGE_PASSES {
        let n = crate::db::rate_limits::purge_batch(&*client, older_than.as_secs_f64(), RATE_LIMIT_PURGE_BATCH).await?;
        total += n;
        if (n as i64) < RATE_LIMIT_PURGE_BATCH {
            break;
        }
    }
    Ok(total)
}

/// The repair duty: re-drives stranded deliveries, dispatches and enrichments (module docs).
/// Each case marks what it re-drove in the same transaction as the outbox rows it writes, so it
/// is not re-driven again before `settings.after`.
pub async fn repair(outbox: &Outbox, settings: RepairSettings) -> Result<RepairReport, DbError> {
    let deliveries = redrive(outbox, Case::Deliveries, settings).await?;
    let alerts = redrive(outbox, Case::Alerts, settings).await?;
    let backlog = match outbox.queue().depth(QueueName::Enrich).await {
        Ok(d) => d.visible + d.delayed,
        // Unknown depth: assume a backlog rather than risk flooding a queue we cannot see.
        Err(e) => {
            tracing::warn!(error = %e, "enrich queue depth unknown; pending links not re-driven this pass");
            u64::MAX
        }
    };
    let links = if backlog >= LINK_REPAIR_MAX_BACKLOG {
        0
    } else {
        redrive(outbox, Case::Links, settings).await?
    };
    Ok(RepairReport {
        deliveries,
        alerts,
        links,
    })
}

#[derive(Debug, Clone, Copy)]
enum Case {
    Deliveries,
    Alerts,
    Links,
}

/// Runs one repair case: marks the rows it re-drives, writes their messages to the outbox in
/// the same transaction, and sends them after the commit.
async fn redrive(outbox: &Outbox, case: Case, settings: RepairSettings) -> Result<usize, DbError> {
    let mut client = outbox.pool().get().await?;
    let tx = client.transaction().await?;
    let msgs = due_messages(&tx, case, settings).await?;
    if msgs.is_empty() {
        return Ok(0);
    }
    let ids = outbox::enqueue(&*tx, &msgs).await?;
    tx.commit().await?;
    let n = msgs.len();
    let rows: Vec<(i64, NewMessage)> = ids.into_iter().zip(msgs).collect();
    if let Err(e) = outbox.send_committed(&*client, &rows).await {
        tracing::warn!(error = %e, "repair messages left for the outbox sweep");
    }
    Ok(n)
}

/// The messages of one repair case's due items (marked as re-driven in `tx`).
async fn due_messages(
    tx: &deadpool_postgres::Transaction<'_>,
    case: Case,
    settings: RepairSettings,
) -> Result<Vec<NewMessage>, DbError> {
    let after = settings.after.as_secs_f64();
    let limit = settings.batch;
    Ok(match case {
        Case::Deliveries => due_deliveries(tx, limit, after).await?,
        Case::Alerts => due_alerts(tx, limit, after).await?,
        Case::Links => due_links(tx, limit, after).await?,
    })
}

/// Deliveries due or without progress → their attempt's message.
async fn due_deliveries(
    tx: &deadpool_postgres::Transaction<'_>,
    limit: i64,
    after: f64,
) -> Result<Vec<NewMessage>, DbError> {
    Ok(deliveries::redrive_due(tx, limit, after)
        .await?
        .into_iter()
        .map(|d| {
            tracing::warn!(alert_id = d.alert_id, alert_uuid = %d.alert_uuid,
                delivery_uuid = %d.uuid, attempt = d.attempts + 1,
                "delivery due or made no progress; its attempt is queued again");
            DeliverRequest {
                v: 1,
                delivery_id: d.id,
                delivery_uuid: d.uuid,
                alert_uuid: d.alert_uuid,
                attempt: d.attempts,
            }
            .to_message(0)
        })
        .collect())
}

/// Completed alerts never dispatched → their dispatch message.
async fn due_alerts(
    tx: &deadpool_postgres::Transaction<'_>,
    limit: i64,
    after: f64,
) -> Result<Vec<NewMessage>, DbError> {
    let rows = crate::db::alerts::claim_undispatched(tx, limit, after).await?;
    let mut msgs = Vec::with_capacity(rows.len());
    for (alert_id, alert_uuid) in rows {
        tracing::warn!(alert_id, alert_uuid = %alert_uuid,
            "completed alert was never dispatched; its dispatch is queued again");
        msgs.push(
            DispatchRequest {
                v: 1,
                alert_id,
                alert_uuid,
                reason: "repair".into(),
            }
            .to_message(),
        );
    }
    Ok(msgs)
}

/// Indicator links still pending long after the alert was stored → their enrich message.
async fn due_links(
    tx: &deadpool_postgres::Transaction<'_>,
    limit: i64,
    after: f64,
) -> Result<Vec<NewMessage>, DbError> {
    let rows = crate::db::indicators::claim_stale_links(tx, limit, after).await?;
    let mut msgs = Vec::with_capacity(rows.len());
    for r in rows {
        // An unknown stored type cannot be enriched; it is skipped.
        let Ok(indicator_type) = r.indicator_type.parse::<IndicatorType>() else {
            continue;
        };
        msgs.push(
            EnrichRequest {
                v: 1,
                alert_id: r.alert_id,
                alert_uuid: r.alert_uuid,
                indicator_id: r.indicator_id,
                indicator_type,
                value: r.value,
            }
            .to_message(),
        );
    }
    if !msgs.is_empty() {
        tracing::warn!(
            links = msgs.len(),
            "indicator links still pending; their enrich messages are queued again"
        );
    }
    Ok(msgs)
}
