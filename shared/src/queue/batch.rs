//! The SQS batch runner shared by every queue consumer (enrich, dispatch): runs one handler per
//! record, concurrently, and turns the results into an `SqsBatchResponse` with per-message
//! failures (`ReportBatchItemFailures`).
//!
//! - `Ok` → the message is deleted.
//! - [`HandlerError::Retryable`] → reported as failed, and made visible again after
//!   `retry_after`, or — when the handler did not say (a database blip) — after a short backoff
//!   that grows with the receive count ([`retry_backoff`]: 2 s, 6 s, 18 s, … up to 5 min),
//!   instead of the whole visibility timeout (6 minutes on the dispatch queue).
//! - [`HandlerError::Permanent`] → the message can never succeed (bad JSON, alert deleted):
//!   it is parked in `parked_messages` and acknowledged, not retried forever. If parking itself
//!   fails, it is reported as failed so nothing is lost.

use std::{future::Future, sync::Arc, time::Duration};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use deadpool_postgres::Pool;
use futures::StreamExt;
use tracing::Instrument;

use super::{
    correlation::{self, Correlation, Ids},
    Queue, QueueName,
};
use crate::db::DbError;

/// What a record handler reports.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    #[error("{reason}")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    #[error("{0}")]
    Permanent(String),
}

impl HandlerError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        Self::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(reason: impl Into<String>, after: Duration) -> Self {
        Self::Retryable {
            reason: reason.into(),
            retry_after: Some(after),
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::Permanent(reason.into())
    }
}

impl From<DbError> for HandlerError {
    fn from(e: DbError) -> Self {
        if e.is_transient() {
            Self::retryable(e.to_string())
        } else {
            // A non-transient database error (constraint, bad data) will fail the same way again.
            Self::permanent(e.to_string())
        }
    }
}

impl From<tokio_postgres::Error> for HandlerError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::from(e).into()
    }
}

impl From<deadpool_postgres::PoolError> for HandlerError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DbError::from(e).into()
    }
}

/// The wait before a retryable failure that named no time is tried again, after `receives`
/// receives: 2 s · 3^(receives-1), at most 5 minutes, less up to a quarter at random.
pub(crate) fn retry_backoff(receives: u32) -> Duration {
    let full = 2u64
        .saturating_mul(3u64.saturating_pow(receives.saturating_sub(1).min(10)))
        .min(300);
    Duration::from_secs((full - rand::random_range(0..=full / 4)).max(1))
}

/// Where permanently failing messages go.
#[async_trait::async_trait]
pub trait Parker: Send + Sync {
    async fn park(&self, queue: QueueName, message: &SqsMessage, error: &str) -> Result<(), String>;
}

/// Parks messages in the `parked_messages` table (idempotent per message id).
#[derive(Clone)]
pub struct PgParker(pub Pool);

#[async_trait::async_trait]
impl Parker for PgParker {
    async fn park(&self, queue: QueueName, message: &SqsMessage, error: &str) -> Result<(), String> {
        let client = self.0.get().await.map_err(|e| e.to_string())?;
        let attrs: serde_json::Map<String, serde_json::Value> = message
            .message_attributes
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), serde_json::Value::String(v.string_value.clone()?))))
            .collect();
        let receives: Option<i32> = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|v| v.parse().ok());
        client
            .execute(
                "INSERT INTO parked_messages (queue, message_id, body, attributes, error, receive_count)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (queue, message_id) DO NOTHING",
                &[
                    &queue.as_str(),
                    &message.message_id.as_deref().unwrap_or(""),
                    &message.body.as_deref().unwrap_or(""),
                    &serde_json::Value::Object(attrs),
                    &error,
                    &receives,
                ],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// A parked message, as listed for operators.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ParkedMessage {
    pub queue: String,
    pub message_id: String,
    pub body: String,
    pub error: String,
    pub parked_at: chrono::DateTime<chrono::Utc>,
}

/// Parked messages of a queue, newest first.
pub async fn list_parked(pool: &Pool, queue: QueueName, limit: i64) -> Result<Vec<ParkedMessage>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT queue, message_id, body, error, parked_at FROM parked_messages
             WHERE queue = $1 ORDER BY parked_at DESC, id DESC LIMIT $2",
            &[&queue.as_str(), &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            Ok(ParkedMessage {
                queue: r.try_get("queue")?,
                message_id: r.try_get("message_id")?,
                body: r.try_get("body")?,
                error: r.try_get("error")?,
                parked_at: r.try_get("parked_at")?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()?)
}

/// Runs handlers over a batch. Built once per function in `main`.
#[derive(Clone)]
pub struct BatchRunner {
    queue_name: QueueName,
    queue: Arc<dyn Queue>,
    parker: Arc<dyn Parker>,
    concurrency: usize,
}

impl BatchRunner {
    pub fn new(queue_name: QueueName, queue: Arc<dyn Queue>, parker: Arc<dyn Parker>, concurrency: usize) -> Self {
        Self {
            queue_name,
            queue,
            parker,
            concurrency: concurrency.max(1),
        }
    }

    pub async fn run<F, Fut>(&self, event: SqsEvent, handle: F) -> SqsBatchResponse
    where
        F: Fn(SqsMessage) -> Fut,
        Fut: Future<Output = Result<(), HandlerError>>,
    {
        let handle = &handle;
        let correlation = Correlation::from_records(&event.records);
        let work = futures::stream::iter(event.records)
            .map(|record| {
                // Every line logged while handling the record names its alert, trace and request.
                let span = record_span(&record);
                async move {
                    let result = handle(record.clone()).await;
                    (record, result)
                }
                .instrument(span)
            })
            .buffer_unordered(self.concurrency)
            .collect();
        let outcomes: Vec<(SqsMessage, Result<(), HandlerError>)> = correlation::scope(correlation, work).await;
        self.finish(outcomes).await
    }

    /// Like [`BatchRunner::run`] for handlers that take the whole batch at once (to share
    /// reads and writes across records); `handle` returns one result per record, in order.
    /// The batch's correlation ids are current, per alert, while `handle` runs.
    pub async fn run_all<F, Fut>(&self, event: SqsEvent, handle: F) -> SqsBatchResponse
    where
        F: FnOnce(Vec<SqsMessage>) -> Fut,
        Fut: Future<Output = Vec<Result<(), HandlerError>>>,
    {
        let records = event.records;
        let correlation = Correlation::from_records(&records);
        let mut results = correlation::scope(correlation, handle(records.clone()))
            .await
            .into_iter();
        let outcomes = records
            .into_iter()
            .map(|r| {
                let res = results
                    .next()
                    .unwrap_or_else(|| Err(HandlerError::retryable("handler returned no result for this record")));
                (r, res)
            })
            .collect();
        self.finish(outcomes).await
    }

    async fn finish(&self, outcomes: Vec<(SqsMessage, Result<(), HandlerError>)>) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for (record, result) in outcomes {
            // The retry and park lines name the record's alert, trace and request too.
            let span = record_span(&record);
            if let Some(failed) = self.settle(record, result).instrument(span).await {
                response.add_failure(failed);
            }
        }
        response
    }

    /// Acts on one record's result; returns its message id when it must be reported as failed.
    async fn settle(&self, record: SqsMessage, result: Result<(), HandlerError>) -> Option<String> {
        let id = record.message_id.clone().unwrap_or_default();
        match result {
            Ok(()) => None,
            Err(HandlerError::Retryable { reason, retry_after }) => {
                let receives: u32 = record
                    .attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                let after = retry_after.unwrap_or_else(|| retry_backoff(receives));
                tracing::warn!(queue = %self.queue_name, message_id = %id, error = %reason,
                    retry_in_seconds = after.as_secs(), "message will be retried");
                if let Some(receipt) = record.receipt_handle.as_deref() {
                    let secs = after.as_secs().clamp(1, 43_200) as u32;
                    if let Err(e) = self.queue.change_visibility(self.queue_name, receipt, secs).await {
                        tracing::warn!(queue = %self.queue_name, message_id = %id, error = %e, "could not delay the retry");
                    }
                }
                (!id.is_empty()).then_some(id)
            }
            Err(HandlerError::Permanent(reason)) => match self.parker.park(self.queue_name, &record, &reason).await {
                Ok(()) => {
                    tracing::error!(queue = %self.queue_name, message_id = %id, error = %reason, "message can never succeed; parked");
                    None
                }
                Err(park_error) => {
                    tracing::error!(queue = %self.queue_name, message_id = %id, error = %reason, %park_error, "could not park message; it will be retried");
                    (!id.is_empty()).then_some(id)
                }
            },
        }
    }
}

/// The span of one record: its alert (from the `alert_uuid` attribute) and correlation ids.
fn record_span(record: &SqsMessage) -> tracing::Span {
    correlation::span(correlation::record_alert_uuid(record), &Ids::from_record(record))
}
