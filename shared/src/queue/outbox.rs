//! Transactional outbox: the only way work enters a queue.
//!
//! A handler writes its state and the messages it wants sent in ONE transaction
//! ([`enqueue`]), commits, then asks [`Outbox::send`] to send those rows; sent rows are marked
//! `sent_at`. A crash or queue outage between commit and send leaves rows unsent, and the
//! sweeper ([`Outbox::sweep`]) sends them later. A rolled-back transaction leaves no rows, so it
//! sends nothing. Rows are locked with `FOR UPDATE SKIP LOCKED` while being sent, so concurrent
//! senders never send the same row at the same moment; consumers are idempotent anyway
//! (delivery is at least once).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use serde::Serialize;
use tokio_postgres::GenericClient;

use super::{OutgoingMessage, Queue, QueueName, MAX_BATCH};
use crate::db::DbError;

/// Message attribute carrying the outbox row id (tracing and de-duplication by consumers).
pub const OUTBOX_ID_ATTRIBUTE: &str = "calseta-outbox-id";

/// A message to write in the caller's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub queue: QueueName,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    pub delay_seconds: u32,
}

impl NewMessage {
    /// A message whose body is `body` serialized as JSON.
    pub fn json(queue: QueueName, body: &impl Serialize) -> Result<Self, serde_json::Error> {
        Ok(Self {
            queue,
            body: serde_json::to_string(body)?,
            attributes: BTreeMap::new(),
            delay_seconds: 0,
        })
    }

    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// Adds the trace header and ingest request id current for `alert` (see
    /// [`correlation`](super::correlation)), so the message continues the alert's trace.
    pub fn correlated(mut self, alert: uuid::Uuid) -> Self {
        let ids = super::correlation::current(alert);
        if let Some(t) = ids.trace_header {
            self.attributes.insert(super::correlation::TRACE_ATTRIBUTE.into(), t);
        }
        if let Some(r) = ids.request_id {
            self.attributes
                .insert(super::correlation::REQUEST_ID_ATTRIBUTE.into(), r);
        }
        self
    }

    pub fn with_delay(mut self, seconds: u32) -> Self {
        self.delay_seconds = seconds.min(super::MAX_DELAY_SECONDS);
        self
    }
}

/// Writes `messages` as outbox rows in the caller's transaction; returns their ids, to pass to
/// [`Outbox::send`] after the commit.
pub async fn enqueue(tx: &impl GenericClient, messages: &[NewMessage]) -> Result<Vec<i64>, DbError> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let queues: Vec<&str> = messages.iter().map(|m| m.queue.as_str()).collect();
    let bodies: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
    let attrs: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| serde_json::to_value(&m.attributes).unwrap_or_default())
        .collect();
    let delays: Vec<i32> = messages.iter().map(|m| m.delay_seconds as i32).collect();
    use tokio_postgres::types::Type;
    let rows = tx
        .query_typed(
            "INSERT INTO outbox (queue, body, attributes, delay_seconds)
             SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int[])
             RETURNING id",
            &[
                (&queues, Type::TEXT_ARRAY),
                (&bodies, Type::TEXT_ARRAY),
                (&attrs, Type::JSONB_ARRAY),
                (&delays, Type::INT4_ARRAY),
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, tokio_postgres::Error>>()?)
}

/// What one send pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendReport {
    pub sent: usize,
    pub failed: usize,
    /// Batch calls made to the queue (≤ 10 messages each).
    pub batches: usize,
}

impl std::ops::AddAssign for SendReport {
    fn add_assign(&mut self, o: Self) {
        self.sent += o.sent;
        self.failed += o.failed;
        self.batches += o.batches;
    }
}

/// Counts for `/health` and the metrics summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct Backlog {
    pub unsent: i64,
    pub oldest_unsent_age_seconds: Option<f64>,
}

/// Sends outbox rows. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    pool: Pool,
    queue: Arc<dyn Queue>,
}

impl Outbox {
    pub fn new(pool: Pool, queue: Arc<dyn Queue>) -> Self {
        Self { pool, queue }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.queue
    }

    /// Sends the given rows (just committed by the caller). Rows already sent, or being sent by
    /// someone else, are skipped. Failures leave rows unsent for the sweeper.
    pub async fn send(&self, ids: &[i64]) -> Result<SendReport, DbError> {
        if ids.is_empty() {
            return Ok(SendReport::default());
        }
        self.send_where(
            "SELECT id, queue, body, attributes, delay_seconds FROM outbox
             WHERE id = ANY($1) AND sent_at IS NULL ORDER BY id FOR UPDATE SKIP LOCKED",
            &[&ids],
        )
        .await
    }

    /// Sends rows the caller has just committed, from memory (no re-read), then marks them sent
    /// in one statement. Rows whose send failed stay unsent for the sweeper, which leaves rows
    /// younger than its minimum age alone, so the two do not race in the normal case.
    pub async fn send_committed(
        &self,
        client: &impl crate::db::stmt::Cached,
        rows: &[(i64, NewMessage)],
    ) -> Result<SendReport, DbError> {
        let mut by_queue: BTreeMap<QueueName, Vec<OutgoingMessage>> = BTreeMap::new();
        for (id, m) in rows {
            let mut attributes = m.attributes.clone();
            attributes.insert(OUTBOX_ID_ATTRIBUTE.into(), id.to_string());
            by_queue.entry(m.queue).or_default().push(OutgoingMessage {
                entry_id: format!("o{id}"),
                body: m.body.clone(),
                attributes,
                delay_seconds: m.delay_seconds,
            });
        }
        let (report, sent, failed) = self.send_grouped(by_queue).await;
        self.mark(client, &sent, &failed).await?;
        Ok(report)
    }

    /// Sends unsent rows older than `min_age` (younger rows are probably being sent by the
    /// handler that wrote them), oldest first, `limit` per pass, until none are left.
    pub async fn sweep(&self, min_age: Duration, limit: i64) -> Result<SendReport, DbError> {
        let mut total = SendReport::default();
        let age = min_age.as_secs_f64();
        loop {
            let r = self
                .send_where(
                    "SELECT id, queue, body, attributes, delay_seconds FROM outbox
                     WHERE sent_at IS NULL AND created_at <= now() - make_interval(secs => $1)
                     ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED",
                    &[&age, &limit],
                )
                .await?;
            total += r;
            // Stop when a pass found little, or when sending fails (the queue is down).
            if r.sent + r.failed < limit as usize || r.sent == 0 {
                return Ok(total);
            }
        }
    }

    /// Unsent row count and the age of the oldest.
    pub async fn backlog(&self) -> Result<Backlog, DbError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT count(*) AS unsent, extract(epoch FROM now() - min(created_at))::float8 AS oldest_age
                 FROM outbox WHERE sent_at IS NULL",
                &[],
            )
            .await?;
        Ok(Backlog {
            unsent: row.try_get("unsent")?,
            oldest_unsent_age_seconds: row.try_get("oldest_age")?,
        })
    }

    /// Deletes rows sent longer ago than `older_than`; returns how many.
    pub async fn purge_sent(&self, older_than: Duration) -> Result<u64, DbError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < now() - make_interval(secs => $1)",
                &[&older_than.as_secs_f64()],
            )
            .await?)
    }

    async fn send_where(
        &self,
        select: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<SendReport, DbError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let rows = tx.query(select, params).await?;
        let mut by_queue: BTreeMap<QueueName, Vec<OutgoingMessage>> = BTreeMap::new();
        let mut unknown = Vec::new();
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let queue: String = row.try_get("queue")?;
            let Some(queue) = QueueName::parse(&queue) else {
                unknown.push(id);
                continue;
            };
            let attrs: serde_json::Value = row.try_get("attributes")?;
            let mut attributes: BTreeMap<String, String> = serde_json::from_value(attrs).unwrap_or_default();
            attributes.insert(OUTBOX_ID_ATTRIBUTE.into(), id.to_string());
            by_queue.entry(queue).or_default().push(OutgoingMessage {
                entry_id: format!("o{id}"),
                body: row.try_get("body")?,
                attributes,
                delay_seconds: row.try_get::<_, i32>("delay_seconds")?.max(0) as u32,
            });
        }
        let (mut report, sent, mut failed) = self.send_grouped(by_queue).await;
        failed.extend(unknown.into_iter().map(|id| (id, "unknown queue".to_owned())));
        report.failed = failed.len();
        self.mark(&tx, &sent, &failed).await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Sends messages in batches of ten per queue; returns the report, the sent row ids and the
    /// failed ones with their errors.
    async fn send_grouped(
        &self,
        by_queue: BTreeMap<QueueName, Vec<OutgoingMessage>>,
    ) -> (SendReport, Vec<i64>, Vec<(i64, String)>) {
        let mut report = SendReport::default();
        let mut sent: Vec<i64> = Vec::new();
        let mut failed: Vec<(i64, String)> = Vec::new();
        for (queue, messages) in by_queue {
            for chunk in messages.chunks(MAX_BATCH) {
                report.batches += 1;
                let id_of = |entry: &str| entry.strip_prefix('o').and_then(|s| s.parse::<i64>().ok());
                match self.queue.send_batch(queue, chunk).await {
                    Ok(outcome) => {
                        sent.extend(outcome.sent.iter().filter_map(|e| id_of(e)));
                        failed.extend(
                            outcome
                                .failed
                                .iter()
                                .filter_map(|(e, why)| Some((id_of(e)?, why.clone()))),
                        );
                    }
                    Err(e) => {
                        let why = e.to_string();
                        failed.extend(chunk.iter().filter_map(|m| Some((id_of(&m.entry_id)?, why.clone()))));
                    }
                }
            }
        }
        report.sent = sent.len();
        report.failed = failed.len();
        (report, sent, failed)
    }

    /// Records the outcome of a send: sent rows get `sent_at`, failed ones their error.
    async fn mark(
        &self,
        client: &impl crate::db::stmt::Cached,
        sent: &[i64],
        failed: &[(i64, String)],
    ) -> Result<(), DbError> {
        use tokio_postgres::types::Type;
        if !sent.is_empty() {
            crate::db::stmt::execute(
                client,
                "UPDATE outbox SET sent_at = coalesce(sent_at, now()), attempts = attempts + 1 WHERE id = ANY($1)",
                &[(&sent, Type::INT8_ARRAY)],
            )
            .await?;
        }
        if !failed.is_empty() {
            let ids: Vec<i64> = failed.iter().map(|(id, _)| *id).collect();
            let errors: Vec<&str> = failed.iter().map(|(_, e)| e.as_str()).collect();
            crate::db::stmt::execute(
                client,
                "UPDATE outbox o SET attempts = o.attempts + 1, last_error = f.error
                     FROM unnest($1::bigint[], $2::text[]) AS f(id, error) WHERE o.id = f.id",
                &[(&ids, Type::INT8_ARRAY), (&errors, Type::TEXT_ARRAY)],
            )
            .await?;
            tracing::warn!(failed = failed.len(), first_error = %failed[0].1, "outbox send failed; rows stay unsent");
        }
        Ok(())
    }
}
