//! Work queues. One [`Queue`] trait with three implementations: Amazon SQS ([`sqs::SqsQueue`]);
//! the durable local queue of `calseta dev`, whose messages are rows that survive a crash
//! ([`pg::PgQueue`]); and an in-memory queue with the same SQS semantics for tests and benches
//! ([`memory::InProcessQueue`]). Work only enters a queue through the transactional [`outbox`];
//! consumers run the same handlers the Lambdas run, through the [`batch`] runner.

pub mod batch;
pub mod correlation;
pub mod memory;
pub mod messages;
pub mod outbox;
pub mod pg;
pub mod sqs;

use std::{collections::BTreeMap, future::Future, pin::Pin, sync::Arc};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

/// The queues of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueueName {
    /// One message per (alert, indicator) to enrich.
    Enrich,
    /// One message per alert to contextualize and deliver (and per delivery retry).
    Dispatch,
}

impl QueueName {
    pub const ALL: [QueueName; 2] = [QueueName::Enrich, QueueName::Dispatch];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Enrich => "enrich",
            QueueName::Dispatch => "dispatch",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.as_str() == s)
    }
}

impl std::fmt::Display for QueueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SQS takes at most 10 entries per batch call.
pub const MAX_BATCH: usize = 10;
/// SQS's longest per-message delay.
pub(crate) const MAX_DELAY_SECONDS: u32 = 900;

/// A message to send. `entry_id` identifies it within one batch call (SQS: 1–80 chars of
/// `[A-Za-z0-9_-]`); the outbox uses `o<row id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub entry_id: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    pub delay_seconds: u32,
}

/// The result of one batch send: which entries were accepted and which were refused.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SendOutcome {
    pub sent: Vec<String>,
    pub failed: Vec<(String, String)>,
}

/// Approximate counts, as SQS reports them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

impl QueueDepth {
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight + self.delayed
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue service could not be reached or failed; try again later.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// A request the service will never accept (unknown queue, bad entry).
    #[error("queue request refused: {0}")]
    Refused(String),
}

/// Sending side of a queue, as the outbox and handlers use it.
#[async_trait::async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Sends at most [`MAX_BATCH`] messages in one call.
    async fn send_batch(&self, queue: QueueName, messages: &[OutgoingMessage]) -> Result<SendOutcome, QueueError>;

    /// Makes a received message visible again after `seconds` (used to honour a provider's
    /// `Retry-After`, or to retry a delivery later, without sleeping inside a handler).
    async fn change_visibility(&self, queue: QueueName, receipt_handle: &str, seconds: u32) -> Result<(), QueueError>;

    async fn depth(&self, queue: QueueName) -> Result<QueueDepth, QueueError>;

    /// Messages parked in the queue's dead-letter queue, or `None` when this backend does not
    /// know its DLQ (a deployed function without the DLQ URL in its environment).
    async fn dead_letter_depth(&self, _queue: QueueName) -> Result<Option<u64>, QueueError> {
        Ok(None)
    }

    /// Human name of the backend, for `/health` and logs.
    fn kind(&self) -> &'static str;
}

/// A consumer of one queue: exactly the function a Lambda's SQS event source calls.
pub type Handler = Arc<dyn Fn(SqsEvent) -> Pin<Box<dyn Future<Output = SqsBatchResponse> + Send>> + Send + Sync>;

/// Wraps an async fn as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(SqsEvent) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = SqsBatchResponse> + Send + 'static,
{
    Arc::new(move |event| Box::pin(f(event)))
}
