//! The durable local queue of `calseta dev`: SQS semantics (batches of up to 10, per-message
//! delay, visibility timeout, receive count, dead letters after `max_receives`) with every
//! message a row of `local_queue`. A message leaves the table only when its consumer finished
//! (the handler did not report it failed), so a crash or `kill -9` loses nothing: after a restart
//! against the same database, unfinished messages come back once their visibility timeout ends,
//! exactly as SQS would redeliver them. Consumers run in this process and call the same
//! handlers the Lambdas run, with the same `SqsEvent`s. Dead letters go to `parked_messages`,
//! where operators already look (`calseta parked`).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use deadpool_postgres::Pool;
use tokio::sync::Notify;
use tokio_postgres::types::Type;
use tokio_util::sync::CancellationToken;

use super::{
    memory::QueueSettings, Handler, OutgoingMessage, Queue, QueueDepth, QueueError, QueueName, SendOutcome, MAX_BATCH,
    MAX_DELAY_SECONDS,
};
use crate::db::{stmt, DbError};

/// How long an idle consumer waits before looking again (a send in this process wakes it
/// sooner; delayed messages and visibility changes are found by this poll).
const IDLE_POLL: Duration = Duration::from_millis(500);
/// Pause after a failed receive (database down) before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Cheap to clone; all clones share the pool and the wake-ups.
#[derive(Clone)]
pub struct PgQueue {
    pool: Pool,
    /// This process: receives are stamped with it (see [`PgQueue::release_orphans`]).
    owner: uuid::Uuid,
    settings: Arc<HashMap<QueueName, QueueSettings>>,
    notify: Arc<HashMap<QueueName, Notify>>,
}

impl std::fmt::Debug for PgQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgQueue")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl Into<DbError>) -> QueueError {
    QueueError::Unavailable(e.into().to_string())
}

fn epoch_millis(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        .to_string()
}

impl PgQueue {
    pub fn new(pool: Pool, settings: HashMap<QueueName, QueueSettings>) -> Self {
        let settings = QueueName::ALL
            .iter()
            .map(|q| (*q, settings.get(q).copied().unwrap_or_default()))
            .collect();
        let notify = QueueName::ALL.iter().map(|q| (*q, Notify::new())).collect();
        Self {
            pool,
            owner: uuid::Uuid::new_v4(),
            settings: Arc::new(settings),
            notify: Arc::new(notify),
        }
    }

    fn settings(&self, queue: QueueName) -> QueueSettings {
        self.settings.get(&queue).copied().unwrap_or_default()
    }

    fn wake(&self, queue: QueueName) {
        if let Some(n) = self.notify.get(&queue) {
            n.notify_waiters();
        }
    }

    /// Receives up to `max` visible messages, making them invisible for the visibility timeout.
    /// Messages already received `max_receives` times are parked instead (the dead letters).
    pub async fn receive(&self, queue: QueueName, max: usize) -> Result<Vec<SqsMessage>, DbError> {
        let settings = self.settings(queue);
        let limit = max.clamp(1, MAX_BATCH) as i64;
        let max_receives = settings.max_receives as i32;
        let visibility = settings.visibility_timeout.as_secs_f64();
        let client = self.pool.get().await?;
        // One statement: pick visible rows (skipping rows another consumer is taking), park
        // the exhausted ones, and stamp the rest with a new receipt.
        let rows = stmt::query(
            &*client,
            "WITH due AS (
                 SELECT id FROM local_queue WHERE queue = $1 AND visible_at <= now()
                 ORDER BY visible_at, id LIMIT $2 FOR UPDATE SKIP LOCKED),
             dead AS (
                 DELETE FROM local_queue q USING due WHERE q.id = due.id AND q.receive_count >= $3
                 RETURNING q.queue, q.message_id, q.body, q.attributes, q.receive_count),
             parked AS (
                 INSERT INTO parked_messages (queue, message_id, body, attributes, error, receive_count)
                 SELECT queue, message_id::text, body, attributes,
                        'dead letter: received ' || receive_count || ' times without success', receive_count
                 FROM dead ON CONFLICT (queue, message_id) DO NOTHING
                 RETURNING message_id),
             upd AS (
                 UPDATE local_queue q SET receive_count = q.receive_count + 1, receipt = gen_random_uuid(), owner = $5,
                        first_received_at = COALESCE(q.first_received_at, now()),
                        visible_at = now() + make_interval(secs => $4)
                 FROM due WHERE q.id = due.id AND q.receive_count < $3
                 RETURNING q.id, q.message_id, q.receipt, q.body, q.attributes, q.receive_count, q.sent_at,
                           q.first_received_at)
             SELECT message_id, receipt, body, attributes, receive_count, sent_at, first_received_at
             FROM (SELECT * FROM upd ORDER BY id) u
             UNION ALL
             SELECT message_id, NULL::uuid, NULL::text, NULL::jsonb, receive_count, NULL::timestamptz,
                    NULL::timestamptz FROM dead",
            &[
                (&queue.as_str(), Type::TEXT),
                (&limit, Type::INT8),
                (&max_receives, Type::INT4),
                (&visibility, Type::FLOAT8),
                (&self.owner, Type::UUID),
            ],
        )
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut dead = 0usize;
        for r in &rows {
            let message_id: uuid::Uuid = r.try_get("message_id")?;
            let Some(receipt) = r.try_get::<_, Option<uuid::Uuid>>("receipt")? else {
                dead += 1;
                continue;
            };
            let attrs: Option<serde_json::Value> = r.try_get("attributes")?;
            let receive_count: i32 = r.try_get("receive_count")?;
            let sent_at: Option<SystemTime> = r.try_get("sent_at")?;
            let first: Option<SystemTime> = r.try_get("first_received_at")?;
            let mut msg = SqsMessage::default();
            msg.message_id = Some(message_id.to_string());
            msg.receipt_handle = Some(receipt.to_string());
            msg.body = r.try_get("body")?;
            msg.event_source = Some("aws:sqs".into());
            msg.event_source_arn = Some(format!("arn:aws:sqs:local:000000000000:calseta-{queue}"));
            msg.attributes
                .insert("ApproximateReceiveCount".into(), receive_count.to_string());
            msg.attributes
                .insert("SentTimestamp".into(), epoch_millis(sent_at.unwrap_or(UNIX_EPOCH)));
            if let Some(first) = first {
                msg.attributes
                    .insert("ApproximateFirstReceiveTimestamp".into(), epoch_millis(first));
            }
            if let Some(serde_json::Value::Object(map)) = attrs {
                for (k, v) in map {
                    if let serde_json::Value::String(s) = v {
                        let mut a = SqsMessageAttribute::default();
                        a.data_type = Some("String".into());
                        a.string_value = Some(s);
                        msg.message_attributes.insert(k, a);
                    }
                }
            }
            out.push(msg);
        }
        if dead > 0 {
            tracing::warn!(queue = %queue, dead, "messages dead-lettered (parked)");
        }
        Ok(out)
    }

    /// Makes the in-flight messages of an earlier process (crashed or stopped before its
    /// consumers finished) visible now, rather than after their visibility timeout; their
    /// receive counts stay. Called once at start by a stack that is the only consumer of its
    /// database (`calseta dev`). Returns how many were released.
    pub async fn release_orphans(&self) -> Result<u64, DbError> {
        let client = self.pool.get().await?;
        let rows = stmt::query(
            &*client,
            "UPDATE local_queue SET visible_at = now()
             WHERE receipt IS NOT NULL AND visible_at > now() AND owner IS DISTINCT FROM $1 RETURNING 1",
            &[(&self.owner, Type::UUID)],
        )
        .await?;
        Ok(rows.len() as u64)
    }

    /// Deletes received messages by receipt handle; stale handles are ignored, as in SQS.
    /// Returns how many were deleted.
    pub async fn delete(&self, queue: QueueName, receipts: &[String]) -> Result<u64, DbError> {
        let ids: Vec<uuid::Uuid> = receipts.iter().filter_map(|r| r.parse().ok()).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let client = self.pool.get().await?;
        let gone = stmt::query(
            &*client,
            "DELETE FROM local_queue WHERE queue = $1 AND receipt = ANY($2) RETURNING 1",
            &[(&queue.as_str(), Type::TEXT), (&ids, Type::UUID_ARRAY)],
        )
        .await?;
        Ok(gone.len() as u64)
    }

    /// Runs `consumers` polling loops on `queue` until `cancel` fires. Each loop receives a batch,
    /// calls `handler`, and deletes every message not listed in `batch_item_failures`.
    pub fn spawn_consumers(
        &self,
        queue: QueueName,
        handler: Handler,
        consumers: usize,
        cancel: CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..consumers.max(1))
            .map(|_| {
                let q = self.clone();
                let handler = handler.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move { q.consume(queue, handler, cancel).await })
            })
            .collect()
    }

    async fn consume(self, queue: QueueName, handler: Handler, cancel: CancellationToken) {
        let batch_size = self.settings(queue).batch_size;
        while !cancel.is_cancelled() {
            let notified = self.notify.get(&queue).map(|n| n.notified());
            let wait = match self.receive(queue, batch_size).await {
                Ok(records) if !records.is_empty() => {
                    self.run_batch(queue, &handler, records).await;
                    continue;
                }
                Ok(_) => IDLE_POLL,
                Err(e) => {
                    tracing::warn!(queue = %queue, error = %e, "local queue receive failed; retrying");
                    ERROR_PAUSE
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
                _ = async { if let Some(n) = notified { n.await } else { std::future::pending().await } } => {}
            }
        }
    }

    async fn run_batch(&self, queue: QueueName, handler: &Handler, records: Vec<SqsMessage>) {
        let receipts: Vec<(Option<String>, Option<String>)> = records
            .iter()
            .map(|r| (r.message_id.clone(), r.receipt_handle.clone()))
            .collect();
        let mut event = SqsEvent::default();
        event.records = records;
        let response = handler(event).await;
        let failed: std::collections::HashSet<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let done: Vec<String> = receipts
            .into_iter()
            .filter_map(|(id, receipt)| match (id, receipt) {
                (Some(id), Some(receipt)) if !failed.contains(id.as_str()) => Some(receipt),
                _ => None,
            })
            .collect();
        // A failed delete only means the messages come back after their visibility timeout;
        // handlers are idempotent, so that is a duplicate, never a loss.
        let mut pause = Duration::from_millis(200);
        for _ in 0..5 {
            match self.delete(queue, &done).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(queue = %queue, error = %e, "local queue delete failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Queue for PgQueue {
    async fn send_batch(&self, queue: QueueName, messages: &[OutgoingMessage]) -> Result<SendOutcome, QueueError> {
        if messages.len() > MAX_BATCH {
            return Err(QueueError::Refused(format!(
                "{} messages in one batch (max {MAX_BATCH})",
                messages.len()
            )));
        }
        if messages.is_empty() {
            return Ok(SendOutcome::default());
        }
        let bodies: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
        let attrs: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| serde_json::to_value(&m.attributes).unwrap_or_default())
            .collect();
        let delays: Vec<f64> = messages
            .iter()
            .map(|m| f64::from(m.delay_seconds.min(MAX_DELAY_SECONDS)))
            .collect();
        let client = self.pool.get().await.map_err(unavailable)?;
        stmt::execute(
            &*client,
            "INSERT INTO local_queue (queue, body, attributes, visible_at)
             SELECT $1, b, a, now() + make_interval(secs => d)
             FROM unnest($2::text[], $3::jsonb[], $4::float8[]) AS t(b, a, d)",
            &[
                (&queue.as_str(), Type::TEXT),
                (&bodies, Type::TEXT_ARRAY),
                (&attrs, Type::JSONB_ARRAY),
                (&delays, Type::FLOAT8_ARRAY),
            ],
        )
        .await
        .map_err(unavailable)?;
        self.wake(queue);
        Ok(SendOutcome {
            sent: messages.iter().map(|m| m.entry_id.clone()).collect(),
            failed: Vec::new(),
        })
    }

    async fn change_visibility(&self, queue: QueueName, receipt_handle: &str, seconds: u32) -> Result<(), QueueError> {
        let Ok(receipt) = receipt_handle.parse::<uuid::Uuid>() else {
            return Err(QueueError::Refused("not a receipt handle of this queue".into()));
        };
        let client = self.pool.get().await.map_err(unavailable)?;
        let changed = stmt::query_opt(
            &*client,
            "UPDATE local_queue SET visible_at = now() + make_interval(secs => $3)
             WHERE queue = $1 AND receipt = $2 RETURNING 1",
            &[
                (&queue.as_str(), Type::TEXT),
                (&receipt, Type::UUID),
                (&f64::from(seconds), Type::FLOAT8),
            ],
        )
        .await
        .map_err(unavailable)?;
        if changed.is_none() {
            return Err(QueueError::Refused("receipt handle is not in flight".into()));
        }
        Ok(())
    }

    async fn depth(&self, queue: QueueName) -> Result<QueueDepth, QueueError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let row = stmt::query_opt(
            &*client,
            "SELECT count(*) FILTER (WHERE visible_at <= now()),
                    count(*) FILTER (WHERE visible_at > now() AND receipt IS NOT NULL),
                    count(*) FILTER (WHERE visible_at > now() AND receipt IS NULL)
             FROM local_queue WHERE queue = $1",
            &[(&queue.as_str(), Type::TEXT)],
        )
        .await
        .map_err(unavailable)?
        .ok_or_else(|| QueueError::Unavailable("no depth row".into()))?;
        let n = |i: usize| row.get::<_, i64>(i).max(0) as u64;
        Ok(QueueDepth {
            visible: n(0),
            in_flight: n(1),
            delayed: n(2),
        })
    }

    /// Messages this queue dead-lettered (handler-parked messages are not counted: an SQS DLQ
    /// does not hold those either).
    async fn dead_letter_depth(&self, queue: QueueName) -> Result<Option<u64>, QueueError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let row = stmt::query_opt(
            &*client,
            "SELECT count(*) AS dead FROM parked_messages WHERE queue = $1 AND error LIKE 'dead letter:%'",
            &[(&queue.as_str(), Type::TEXT)],
        )
        .await
        .map_err(unavailable)?;
        Ok(Some(row.map_or(0, |r| r.get::<_, i64>("dead").max(0) as u64)))
    }

    fn kind(&self) -> &'static str {
        "local (postgres)"
    }
}
