//! Amazon SQS adapter (aws-sdk-sqs). Queue URLs come from config; `SQS_ENDPOINT_URL` points the
//! client at an emulator (moto) for local runs and tests.

use std::collections::HashMap;

use aws_sdk_sqs::{
    error::DisplayErrorContext,
    types::{
        MessageAttributeValue, MessageSystemAttributeNameForSends, MessageSystemAttributeValue, QueueAttributeName,
        SendMessageBatchRequestEntry,
    },
    Client,
};

use super::{OutgoingMessage, Queue, QueueDepth, QueueError, QueueName, SendOutcome, MAX_BATCH};

/// Message attribute carrying the producer's X-Ray trace header.
pub use super::correlation::TRACE_ATTRIBUTE;

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    urls: HashMap<QueueName, String>,
    dlq_urls: HashMap<QueueName, String>,
}

impl SqsQueue {
    pub fn new(client: Client, urls: HashMap<QueueName, String>) -> Self {
        Self {
            client,
            urls,
            dlq_urls: HashMap::new(),
        }
    }

    /// Adds the dead-letter queues whose depth `/health` reports.
    pub fn with_dead_letter_urls(mut self, dlq_urls: HashMap<QueueName, String>) -> Self {
        self.dlq_urls = dlq_urls;
        self
    }

    /// Builds the client from the shared SDK config, with an optional endpoint override.
    pub fn client(sdk: &aws_config::SdkConfig, endpoint_url: Option<&str>) -> Client {
        let mut b = aws_sdk_sqs::config::Builder::from(sdk);
        if let Some(url) = endpoint_url {
            b = b.endpoint_url(url);
        }
        Client::from_conf(b.build())
    }

    /// The adapter for a deployed stack: both queue URLs from the environment are required.
    pub fn from_config(
        sdk: &aws_config::SdkConfig,
        cfg: &crate::config::QueueConfig,
    ) -> Result<Self, crate::config::ConfigError> {
        use crate::config::ConfigError;
        let mut urls = HashMap::new();
        urls.insert(
            QueueName::Enrich,
            cfg.enrich_url.clone().ok_or(ConfigError::Missing("ENRICH_QUEUE_URL"))?,
        );
        urls.insert(
            QueueName::Dispatch,
            cfg.dispatch_url
                .clone()
                .ok_or(ConfigError::Missing("DISPATCH_QUEUE_URL"))?,
        );
        let mut dlq_urls = HashMap::new();
        for (q, url) in [
            (QueueName::Enrich, &cfg.enrich_dlq_url),
            (QueueName::Dispatch, &cfg.dispatch_dlq_url),
        ] {
            if let Some(url) = url {
                dlq_urls.insert(q, url.clone());
            }
        }
        Ok(Self::new(Self::client(sdk, cfg.endpoint_url.as_deref()), urls).with_dead_letter_urls(dlq_urls))
    }

    pub fn url(&self, queue: QueueName) -> Result<&str, QueueError> {
        self.urls
            .get(&queue)
            .map(String::as_str)
            .ok_or_else(|| QueueError::Refused(format!("no URL configured for the {queue} queue")))
    }

    pub fn sdk(&self) -> &Client {
        &self.client
    }

    /// Approximate message counts of one queue (SQS's own attributes).
    async fn attributes(&self, url: &str) -> Result<QueueDepth, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(unavailable)?;
        let attrs = out.attributes();
        let get = |name: QueueAttributeName| {
            attrs
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(QueueDepth {
            visible: get(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        })
    }

    /// Creates (or finds) a queue by name and returns its URL: the local stack and tests use it
    /// against an emulator; deployed stacks get URLs from the template.
    pub async fn ensure_queue(client: &Client, name: &str) -> Result<String, QueueError> {
        let out = client
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| QueueError::Unavailable(DisplayErrorContext(e).to_string()))?;
        out.queue_url()
            .map(str::to_owned)
            .ok_or_else(|| QueueError::Refused("CreateQueue returned no URL".into()))
    }
}

impl SqsQueue {
    /// Runs `consumers` long-polling loops on `queue` until `cancel` fires, doing what Lambda's
    /// SQS event source does: receive up to 10, call `handler` with an `SqsEvent`, delete every
    /// message not reported in `batch_item_failures`. Used by `calseta dev` against SQS or moto.
    pub fn spawn_consumers(
        &self,
        queue: QueueName,
        handler: super::Handler,
        consumers: usize,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..consumers.max(1))
            .map(|_| {
                let q = self.clone();
                let handler = handler.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    while !cancel.is_cancelled() {
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            r = q.poll_once(queue, &handler) => {
                                if let Err(e) = r {
                                    tracing::warn!(queue = %queue, error = %e, "SQS poll failed; retrying");
                                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                                }
                            }
                        }
                    }
                })
            })
            .collect()
    }

    /// One receive → handle → delete round. Returns how many messages were received.
    pub async fn poll_once(&self, queue: QueueName, handler: &super::Handler) -> Result<usize, QueueError> {
        use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
        use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
        let url = self.url(queue)?.to_owned();
        let out = self
            .client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(MAX_BATCH as i32)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(unavailable)?;
        let received = out.messages();
        if received.is_empty() {
            return Ok(0);
        }
        let mut event = SqsEvent::default();
        for m in received {
            let mut msg = SqsMessage::default();
            msg.message_id = m.message_id().map(str::to_owned);
            msg.receipt_handle = m.receipt_handle().map(str::to_owned);
            msg.body = m.body().map(str::to_owned);
            if let Some(attrs) = m.attributes() {
                for (k, v) in attrs {
                    msg.attributes.insert(k.as_str().to_owned(), v.clone());
                }
            }
            if let Some(attrs) = m.message_attributes() {
                for (k, v) in attrs {
                    let mut a = SqsMessageAttribute::default();
                    a.string_value = v.string_value().map(str::to_owned);
                    a.data_type = Some(v.data_type().to_owned());
                    msg.message_attributes.insert(k.clone(), a);
                }
            }
            event.records.push(msg);
        }
        let n = event.records.len();
        let receipts: Vec<(String, String)> = event
            .records
            .iter()
            .filter_map(|r| Some((r.message_id.clone()?, r.receipt_handle.clone()?)))
            .collect();
        let response = handler(event).await;
        let failed: std::collections::HashSet<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let entries: Vec<DeleteMessageBatchRequestEntry> = receipts
            .iter()
            .enumerate()
            .filter(|(_, (id, _))| !failed.contains(id.as_str()))
            .filter_map(|(i, (_, receipt))| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("d{i}"))
                    .receipt_handle(receipt)
                    .build()
                    .ok()
            })
            .collect();
        if !entries.is_empty() {
            self.client
                .delete_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(n)
    }
}

fn unavailable<E: std::error::Error + 'static>(e: aws_sdk_sqs::error::SdkError<E>) -> QueueError {
    QueueError::Unavailable(DisplayErrorContext(e).to_string())
}

#[async_trait::async_trait]
impl Queue for SqsQueue {
    async fn send_batch(&self, queue: QueueName, messages: &[OutgoingMessage]) -> Result<SendOutcome, QueueError> {
        if messages.is_empty() {
            return Ok(SendOutcome::default());
        }
        if messages.len() > MAX_BATCH {
            return Err(QueueError::Refused(format!(
                "{} messages in one batch (max {MAX_BATCH})",
                messages.len()
            )));
        }
        let url = self.url(queue)?;
        // X-Ray: a message continues the trace it was written in (the `trace_header` attribute
        // the outbox stored, see `correlation`), else the current invocation's trace (set per
        // invocation by the Lambda runtime). It travels as the AWSTraceHeader system attribute
        // (AWS continues the trace into the consumer) and as a message attribute (the
        // consumers' logs, and emulators that drop system attributes).
        let invocation_trace = std::env::var("_X_AMZN_TRACE_ID").ok();
        let mut entries = Vec::with_capacity(messages.len());
        for m in messages {
            let mut e = SendMessageBatchRequestEntry::builder()
                .id(&m.entry_id)
                .message_body(&m.body)
                .delay_seconds(m.delay_seconds.min(super::MAX_DELAY_SECONDS) as i32);
            for (k, v) in &m.attributes {
                let attr = MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(v)
                    .build()
                    .map_err(|e| QueueError::Refused(e.to_string()))?;
                e = e.message_attributes(k, attr);
            }
            let trace = m
                .attributes
                .get(TRACE_ATTRIBUTE)
                .or(invocation_trace.as_ref())
                .filter(|t| !t.is_empty() && t.len() <= 1024);
            if let Some(t) = trace {
                let system = MessageSystemAttributeValue::builder()
                    .data_type("String")
                    .string_value(t)
                    .build()
                    .map_err(|e| QueueError::Refused(e.to_string()))?;
                e = e.message_system_attributes(MessageSystemAttributeNameForSends::AwsTraceHeader, system);
                if !m.attributes.contains_key(TRACE_ATTRIBUTE) {
                    let attr = MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(t)
                        .build()
                        .map_err(|e| QueueError::Refused(e.to_string()))?;
                    e = e.message_attributes(TRACE_ATTRIBUTE, attr);
                }
            }
            entries.push(e.build().map_err(|e| QueueError::Refused(e.to_string()))?);
        }
        let out = self
            .client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(SendOutcome {
            sent: out.successful().iter().map(|s| s.id().to_owned()).collect(),
            failed: out
                .failed()
                .iter()
                .map(|f| {
                    (
                        f.id().to_owned(),
                        format!("{}: {}", f.code(), f.message().unwrap_or("")),
                    )
                })
                .collect(),
        })
    }

    async fn change_visibility(&self, queue: QueueName, receipt_handle: &str, seconds: u32) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(self.url(queue)?)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds.min(43_200) as i32)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn depth(&self, queue: QueueName) -> Result<QueueDepth, QueueError> {
        self.attributes(self.url(queue)?).await
    }

    async fn dead_letter_depth(&self, queue: QueueName) -> Result<Option<u64>, QueueError> {
        match self.dlq_urls.get(&queue) {
            Some(url) => Ok(Some(self.attributes(url).await?.total())),
            None => Ok(None),
        }
    }

    fn kind(&self) -> &'static str {
        "sqs"
    }
}
