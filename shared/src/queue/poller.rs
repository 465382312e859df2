//! Polls a real SQS queue and feeds the same handler a Lambda event source mapping would: used
//! by `calseta dev` when `SQS_ENDPOINT_URL` points at an SQS API (e.g. moto).

use std::collections::HashSet;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use tokio_util::sync::CancellationToken;

use super::{sqs::SqsQueue, Handler, QueueName, MAX_BATCH};

/// Receives batches (long polling) until `cancel` fires; deletes what the handler did not fail.
pub async fn poll(sqs: SqsQueue, queue: QueueName, handler: Handler, cancel: CancellationToken) {
    let Ok(url) = sqs.url(queue).map(str::to_owned) else {
        tracing::error!(%queue, "no queue URL; poller not started");
        return;
    };
    while !cancel.is_cancelled() {
        let received = tokio::select! {
            _ = cancel.cancelled() => break,
            r = sqs.sdk()
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(MAX_BATCH as i32)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send() => r,
        };
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(%queue, error = %aws_sdk_sqs::error::DisplayErrorContext(e), "receive failed");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let mut event = SqsEvent::default();
        for m in &messages {
            let mut r = SqsMessage::default();
            r.message_id = m.message_id.clone();
            r.receipt_handle = m.receipt_handle.clone();
            r.body = m.body.clone();
            r.event_source = Some("aws:sqs".into());
            if let Some(attrs) = &m.attributes {
                for (k, v) in attrs {
                    r.attributes.insert(k.as_str().to_owned(), v.clone());
                }
            }
            if let Some(attrs) = &m.message_attributes {
                for (k, v) in attrs {
                    let mut a = SqsMessageAttribute::default();
                    a.data_type = Some(v.data_type().to_owned());
                    a.string_value = v.string_value().map(str::to_owned);
                    r.message_attributes.insert(k.clone(), a);
                }
            }
            event.records.push(r);
        }
        let response = handler(event).await;
        let failed: HashSet<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.message_id.as_ref().is_some_and(|id| !failed.contains(id)))
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("d{i}"))
                    .receipt_handle(m.receipt_handle.clone()?)
                    .build()
                    .ok()
            })
            .collect();
        if !entries.is_empty() {
            if let Err(e) = sqs
                .sdk()
                .delete_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                tracing::warn!(%queue, error = %aws_sdk_sqs::error::DisplayErrorContext(e), "delete failed; messages will be re-delivered");
            }
        }
    }
}
