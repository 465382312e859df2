//! Amazon SQS adapter (aws-sdk-sqs). Queue URLs come from config; `SQS_ENDPOINT_URL` points the
//! client at an emulator (moto) for local runs and tests.

use std::collections::HashMap;

use aws_sdk_sqs::{
    error::DisplayErrorContext,
    types::{MessageAttributeValue, QueueAttributeName, SendMessageBatchRequestEntry},
    Client,
};

use super::{OutgoingMessage, Queue, QueueDepth, QueueError, QueueName, SendOutcome, MAX_BATCH};

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    urls: HashMap<QueueName, String>,
}

impl SqsQueue {
    pub fn new(client: Client, urls: HashMap<QueueName, String>) -> Self {
        Self { client, urls }
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
        Ok(Self::new(Self::client(sdk, cfg.endpoint_url.as_deref()), urls))
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
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(self.url(queue)?)
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

    fn kind(&self) -> &'static str {
        "sqs"
    }
}
