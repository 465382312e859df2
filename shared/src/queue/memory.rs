//! An in-process queue with SQS semantics, for `calseta dev` and tests: batches of up to 10,
//! per-message delay, visibility timeout, receive count, and dead-lettering once a message has
//! been received `max_receives` times without being deleted. Consumers hand the same
//! `SqsEvent`s to the same handlers the Lambdas run, and delete what the handler did not report
//! as failed, exactly like Lambda's SQS event source.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Handler, OutgoingMessage, Queue, QueueDepth, QueueError, QueueName, SendOutcome, MAX_BATCH};

/// Per-queue behaviour, mirroring the SQS queue + redrive policy settings.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    pub visibility_timeout: Duration,
    /// After this many receives without a delete, the next receive moves it to the dead letters.
    pub max_receives: u32,
    pub batch_size: usize,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            max_receives: 5,
            batch_size: MAX_BATCH,
        }
    }
}

/// A message that exhausted its receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub message_id: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    pub receive_count: u32,
    pub sent_at: SystemTime,
    pub dead_at: SystemTime,
}

#[derive(Debug)]
struct Stored {
    message_id: String,
    body: String,
    attributes: BTreeMap<String, String>,
    sent_at: SystemTime,
    visible_at: Instant,
    receive_count: u32,
    first_received_at: Option<SystemTime>,
    receipt: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    /// In send order; received messages are near the front, so deletes shift little.
    messages: VecDeque<Stored>,
    dead: Vec<DeadLetter>,
}

struct Inner {
    state: Mutex<HashMap<QueueName, State>>,
    settings: HashMap<QueueName, QueueSettings>,
    notify: HashMap<QueueName, Notify>,
}

/// Cheap to clone; all clones share the queues.
#[derive(Clone)]
pub struct InProcessQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for InProcessQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessQueue")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

fn epoch_millis(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        .to_string()
}

impl InProcessQueue {
    pub fn new(settings: QueueSettings) -> Self {
        Self::with_settings(QueueName::ALL.iter().map(|q| (*q, settings)).collect())
    }

    pub fn with_settings(settings: HashMap<QueueName, QueueSettings>) -> Self {
        let mut state = HashMap::new();
        let mut notify = HashMap::new();
        let mut all = HashMap::new();
        for q in QueueName::ALL {
            state.insert(q, State::default());
            notify.insert(q, Notify::new());
            all.insert(q, settings.get(&q).copied().unwrap_or_default());
        }
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                settings: all,
                notify,
            }),
        }
    }

    fn settings(&self, queue: QueueName) -> QueueSettings {
        self.inner.settings.get(&queue).copied().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<QueueName, State>> {
        // A panic while holding the lock cannot leave the maps half-updated in a harmful way.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Receives up to `max` visible messages, making them invisible for the visibility timeout.
    pub fn receive(&self, queue: QueueName, max: usize) -> Vec<SqsMessage> {
        let settings = self.settings(queue);
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut guard = self.lock();
        let state = guard.entry(queue).or_default();
        let mut out = Vec::new();
        let mut i = 0;
        while i < state.messages.len() && out.len() < max.min(MAX_BATCH) {
            if state.messages[i].visible_at > now {
                i += 1;
                continue;
            }
            if state.messages[i].receive_count >= settings.max_receives {
                let Some(m) = state.messages.remove(i) else { break };
                tracing::warn!(queue = %queue, message_id = %m.message_id, receives = m.receive_count, "message dead-lettered");
                state.dead.push(DeadLetter {
                    message_id: m.message_id,
                    body: m.body,
                    attributes: m.attributes,
                    receive_count: m.receive_count,
                    sent_at: m.sent_at,
                    dead_at: wall,
                });
                continue;
            }
            let m = &mut state.messages[i];
            m.receive_count += 1;
            m.first_received_at.get_or_insert(wall);
            let receipt = uuid::Uuid::new_v4().to_string();
            m.receipt = Some(receipt.clone());
            m.visible_at = now + settings.visibility_timeout;
            let mut msg = SqsMessage::default();
            msg.message_id = Some(m.message_id.clone());
            msg.receipt_handle = Some(receipt);
            msg.body = Some(m.body.clone());
            msg.event_source = Some("aws:sqs".into());
            msg.event_source_arn = Some(format!("arn:aws:sqs:local:000000000000:calseta-{queue}"));
            msg.attributes
                .insert("ApproximateReceiveCount".into(), m.receive_count.to_string());
            msg.attributes.insert("SentTimestamp".into(), epoch_millis(m.sent_at));
            if let Some(first) = m.first_received_at {
                msg.attributes
                    .insert("ApproximateFirstReceiveTimestamp".into(), epoch_millis(first));
            }
            for (k, v) in &m.attributes {
                let mut a = SqsMessageAttribute::default();
                a.data_type = Some("String".into());
                a.string_value = Some(v.clone());
                msg.message_attributes.insert(k.clone(), a);
            }
            out.push(msg);
            i += 1;
        }
        out
    }

    /// Deletes a received message; a stale receipt handle is ignored, as in SQS.
    pub fn delete(&self, queue: QueueName, receipt_handle: &str) -> bool {
        let mut guard = self.lock();
        let state = guard.entry(queue).or_default();
        match state
            .messages
            .iter()
            .position(|m| m.receipt.as_deref() == Some(receipt_handle))
        {
            Some(pos) => state.messages.remove(pos).is_some(),
            None => false,
        }
    }

    /// Messages that exhausted their receives, oldest first.
    pub fn dead_letters(&self, queue: QueueName) -> Vec<DeadLetter> {
        self.lock().get(&queue).map(|s| s.dead.clone()).unwrap_or_default()
    }

    /// Moves every dead letter back to its queue with a fresh receive count; returns how many.
    pub fn redrive(&self, queue: QueueName) -> usize {
        let now = Instant::now();
        let n = {
            let mut guard = self.lock();
            let state = guard.entry(queue).or_default();
            let dead = std::mem::take(&mut state.dead);
            let n = dead.len();
            state.messages.extend(dead.into_iter().map(|d| Stored {
                message_id: d.message_id,
                body: d.body,
                attributes: d.attributes,
                sent_at: d.sent_at,
                visible_at: now,
                receive_count: 0,
                first_received_at: None,
                receipt: None,
            }));
            n
        };
        self.wake(queue);
        n
    }

    /// Time until the next message becomes visible (None when the queue is empty).
    fn next_visible_in(&self, queue: QueueName) -> Option<Duration> {
        let now = Instant::now();
        self.lock()
            .get(&queue)?
            .messages
            .iter()
            .map(|m| m.visible_at.saturating_duration_since(now))
            .min()
    }

    fn wake(&self, queue: QueueName) {
        if let Some(n) = self.inner.notify.get(&queue) {
            n.notify_waiters();
        }
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
            let records = self.receive(queue, batch_size);
            if records.is_empty() {
                let wait = self
                    .next_visible_in(queue)
                    .unwrap_or(Duration::from_millis(500))
                    .min(Duration::from_millis(500));
                let notified = self.inner.notify.get(&queue).map(|n| n.notified());
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {}
                    _ = async { if let Some(n) = notified { n.await } else { std::future::pending().await } } => {}
                }
                continue;
            }
            let receipts: Vec<(Option<String>, Option<String>)> = records
                .iter()
                .map(|r| (r.message_id.clone(), r.receipt_handle.clone()))
                .collect();
            let mut event = SqsEvent::default();
            event.records = records;
            let response = handler(event).await;
            let failed: HashSet<&str> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.as_str())
                .collect();
            for (id, receipt) in &receipts {
                if let (Some(id), Some(receipt)) = (id, receipt) {
                    if !failed.contains(id.as_str()) {
                        self.delete(queue, receipt);
                    }
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Queue for InProcessQueue {
    async fn send_batch(&self, queue: QueueName, messages: &[OutgoingMessage]) -> Result<SendOutcome, QueueError> {
        if messages.len() > MAX_BATCH {
            return Err(QueueError::Refused(format!(
                "{} messages in one batch (max {MAX_BATCH})",
                messages.len()
            )));
        }
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut outcome = SendOutcome::default();
        {
            let mut guard = self.lock();
            let state = guard.entry(queue).or_default();
            for m in messages {
                state.messages.push_back(Stored {
                    message_id: uuid::Uuid::new_v4().to_string(),
                    body: m.body.clone(),
                    attributes: m.attributes.clone(),
                    sent_at: wall,
                    visible_at: now + Duration::from_secs(m.delay_seconds.min(super::MAX_DELAY_SECONDS).into()),
                    receive_count: 0,
                    first_received_at: None,
                    receipt: None,
                });
                outcome.sent.push(m.entry_id.clone());
            }
        }
        self.wake(queue);
        Ok(outcome)
    }

    async fn change_visibility(&self, queue: QueueName, receipt_handle: &str, seconds: u32) -> Result<(), QueueError> {
        let mut guard = self.lock();
        let state = guard.entry(queue).or_default();
        match state
            .messages
            .iter_mut()
            .find(|m| m.receipt.as_deref() == Some(receipt_handle))
        {
            Some(m) => {
                m.visible_at = Instant::now() + Duration::from_secs(seconds.into());
                Ok(())
            }
            None => Err(QueueError::Refused("receipt handle is not in flight".into())),
        }
    }

    async fn depth(&self, queue: QueueName) -> Result<QueueDepth, QueueError> {
        let now = Instant::now();
        let guard = self.lock();
        let mut d = QueueDepth::default();
        if let Some(state) = guard.get(&queue) {
            for m in &state.messages {
                if m.visible_at <= now {
                    d.visible += 1;
                } else if m.receipt.is_some() {
                    d.in_flight += 1;
                } else {
                    d.delayed += 1;
                }
            }
        }
        Ok(d)
    }

    async fn dead_letter_depth(&self, queue: QueueName) -> Result<Option<u64>, QueueError> {
        Ok(Some(self.lock().get(&queue).map_or(0, |s| s.dead.len() as u64)))
    }

    fn kind(&self) -> &'static str {
        "in-process"
    }
}
