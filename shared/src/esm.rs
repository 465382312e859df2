//! A local SQS event-source mapping: what AWS does between a queue and a function, for the
//! Lambda-mode local stack (`scripts/lambda-local`) and its end-to-end test. It receives batches
//! (batch size and batching window as in `template.yaml`), invokes the function through the
//! Lambda invoke API (`POST /2015-03-31/functions/<name>/invocations`, served by `cargo lambda
//! watch`), deletes every message except the reported `batchItemFailures`, and leaves failures
//! alone so they reappear after the visibility timeout; the queue's redrive policy moves a
//! message to its DLQ after `maxReceiveCount` receives. At most `max_concurrency` batches are in
//! flight (`ScalingConfig.MaximumConcurrency`).

use std::{collections::HashSet, time::Duration};

use aws_sdk_sqs::{
    error::DisplayErrorContext,
    types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName},
    Client,
};
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum EsmError {
    #[error("sqs: {0}")]
    Sqs(String),
    #[error("invoke {function}: {problem}")]
    Invoke { function: String, problem: String },
}

fn sqs_err<E: std::error::Error + 'static>(e: E) -> EsmError {
    EsmError::Sqs(DisplayErrorContext(e).to_string())
}

/// One mapping (an `AWS::Serverless::Function` `SQS` event).
#[derive(Debug, Clone)]
pub struct Mapping {
    /// Function name in the invoke API.
    pub function: String,
    pub queue_url: String,
    /// `BatchSize` (1..=10 here: one ReceiveMessage call).
    pub batch_size: i32,
    /// `MaximumBatchingWindowInSeconds`.
    pub batching_window: Duration,
    /// `ScalingConfig.MaximumConcurrency`.
    pub max_concurrency: usize,
    pub region: String,
}

/// Invokes functions through the Lambda invoke API of an emulator (or a real endpoint).
#[derive(Debug, Clone)]
pub struct Invoker {
    http: reqwest::Client,
    base: String,
}

impl Invoker {
    /// `base` is e.g. `http://127.0.0.1:9000` (cargo lambda watch).
    pub fn new(base: impl Into<String>, timeout: Duration) -> Result<Self, EsmError> {
        crate::net::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| EsmError::Invoke {
                function: String::new(),
                problem: e.to_string(),
            })?;
        Ok(Self {
            http,
            base: base.into().trim_end_matches('/').to_owned(),
        })
    }

    /// A synchronous (`RequestResponse`) invocation; a function error is an `Err`.
    pub async fn invoke(&self, function: &str, payload: &Value) -> Result<Value, EsmError> {
        let fail = |problem: String| EsmError::Invoke {
            function: function.to_owned(),
            problem,
        };
        let resp = self
            .http
            .post(format!("{}/2015-03-31/functions/{function}/invocations", self.base))
            .json(payload)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let function_error = resp.headers().contains_key("x-amz-function-error");
        let body = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
        let value: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        };
        if !status.is_success() || function_error || value.get("errorType").is_some() {
            return Err(fail(format!("status {status}: {value}")));
        }
        Ok(value)
    }
}

/// What one poll did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub received: usize,
    pub deleted: usize,
    /// Left on the queue (reported failures, or the whole batch when the invocation failed).
    pub failed: usize,
}

/// The event AWS delivers for a batch (the `aws:sqs` record format).
pub(crate) fn sqs_event(messages: &[Message], queue_arn: &str, region: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone())))
                        .collect()
                })
                .unwrap_or_default();
            let message_attributes: Map<String, Value> = m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                json!({
                                    "stringValue": v.string_value(),
                                    "stringListValues": [],
                                    "binaryListValues": [],
                                    "dataType": v.data_type(),
                                }),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The message ids a function reported in `batchItemFailures`.
fn reported_failures(response: &Value) -> HashSet<String> {
    response
        .get("batchItemFailures")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get("itemIdentifier").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls one queue for one function.
#[derive(Debug, Clone)]
pub struct Driver {
    sqs: Client,
    invoker: Invoker,
    mapping: Mapping,
    queue_arn: String,
}

impl Driver {
    pub async fn new(sqs: Client, invoker: Invoker, mapping: Mapping) -> Result<Self, EsmError> {
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&mapping.queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(sqs_err)?;
        let queue_arn = attrs
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .unwrap_or_default();
        Ok(Self {
            sqs,
            invoker,
            mapping,
            queue_arn,
        })
    }

    /// Receives up to one batch (waiting at most the batching window, at least one second of
    /// long polling), invokes the function and deletes what succeeded.
    pub async fn poll_once(&self) -> Result<BatchOutcome, EsmError> {
        let m = &self.mapping;
        let started = tokio::time::Instant::now();
        let mut messages: Vec<Message> = Vec::new();
        loop {
            let left = m.batching_window.saturating_sub(started.elapsed());
            let wait = left.as_secs().clamp(1, 20) as i32;
            let out = self
                .sqs
                .receive_message()
                .queue_url(&m.queue_url)
                .max_number_of_messages((m.batch_size - messages.len() as i32).clamp(1, 10))
                .wait_time_seconds(wait)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(sqs_err)?;
            messages.extend(out.messages.unwrap_or_default());
            if messages.len() as i32 >= m.batch_size || started.elapsed() >= m.batching_window {
                break;
            }
        }
        if messages.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let received = messages.len();
        let event = sqs_event(&messages, &self.queue_arn, &m.region);
        let failures = match self.invoker.invoke(&m.function, &event).await {
            Ok(response) => reported_failures(&response),
            Err(e) => {
                // As on AWS: a failed invocation returns the whole batch to the queue.
                tracing::warn!(function = %m.function, error = %e, messages = received, "invocation failed");
                return Ok(BatchOutcome {
                    received,
                    deleted: 0,
                    failed: received,
                });
            }
        };
        let done: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter(|(_, msg)| !failures.contains(msg.message_id().unwrap_or_default()))
            .filter_map(|(i, msg)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(msg.receipt_handle().unwrap_or_default())
                    .build()
                    .ok()
            })
            .collect();
        let deleted = done.len();
        if !done.is_empty() {
            self.sqs
                .delete_message_batch()
                .queue_url(&m.queue_url)
                .set_entries(Some(done))
                .send()
                .await
                .map_err(sqs_err)?;
        }
        Ok(BatchOutcome {
            received,
            deleted,
            failed: received - deleted,
        })
    }

    /// Runs `max_concurrency` pollers until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let mut pollers = tokio::task::JoinSet::new();
        for _ in 0..self.mapping.max_concurrency.max(1) {
            let (driver, stop) = (self.clone(), stop.clone());
            pollers.spawn(async move {
                while !stop.is_cancelled() {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        r = driver.poll_once() => match r {
                            Err(e) => {
                                tracing::warn!(function = %driver.mapping.function, error = %e, "poll failed");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                            // The function is failing as a whole: back off like Lambda's poller does.
                            Ok(o) if o.received > 0 && o.deleted == 0 => tokio::time::sleep(Duration::from_secs(1)).await,
                            Ok(_) => {}
                        },
                    }
                }
            });
        }
        while pollers.join_next().await.is_some() {}
    }
}

/// Creates (or finds) a queue with a visibility timeout and, when given, a DLQ receiving
/// messages after `max_receive_count` receives (the template's `RedrivePolicy`). Returns the
/// queue URL and the DLQ URL.
pub async fn ensure_queue_with_dlq(
    sqs: &Client,
    name: &str,
    visibility_timeout: Duration,
    max_receive_count: u32,
) -> Result<(String, String), EsmError> {
    let dlq_url = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .map_err(sqs_err)?
        .queue_url
        .unwrap_or_default();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(sqs_err)?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .unwrap_or_default();
    let redrive = json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count }).to_string();
    let url = sqs
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout.as_secs().to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .map_err(sqs_err)?
        .queue_url
        .unwrap_or_default();
    Ok((url, dlq_url))
}
