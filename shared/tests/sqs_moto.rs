//! The SQS adapter and the batch runner against a real SQS API (moto's server mode).

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::{collections::HashMap, sync::Arc, time::Duration};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use calseta::{
    queue::{
        batch::{self, BatchRunner, HandlerError, PgParker},
        outbox::{self, NewMessage, Outbox},
        sqs::SqsQueue,
        Queue, QueueName,
    },
    testing::{sqs_client, TestDb},
};

async fn queue_pair() -> SqsQueue {
    let client = sqs_client();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let mut urls = HashMap::new();
    for q in QueueName::ALL {
        urls.insert(
            q,
            SqsQueue::ensure_queue(&client, &format!("t-{q}-{suffix}"))
                .await
                .expect("create queue"),
        );
    }
    SqsQueue::new(client, urls)
}

/// Receives everything currently visible, as Lambda would hand it over.
async fn drain(sqs: &SqsQueue, q: QueueName, visibility: i32) -> Vec<SqsMessage> {
    let mut all = Vec::new();
    loop {
        let out = sqs
            .sdk()
            .receive_message()
            .queue_url(sqs.url(q).expect("url"))
            .max_number_of_messages(10)
            .visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive");
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            return all;
        }
        for m in msgs {
            let mut r = SqsMessage::default();
            r.message_id = m.message_id.clone();
            r.receipt_handle = m.receipt_handle.clone();
            r.body = m.body.clone();
            for (k, v) in m.message_attributes.unwrap_or_default() {
                let mut a = SqsMessageAttribute::default();
                a.string_value = v.string_value().map(str::to_owned);
                a.data_type = Some(v.data_type().to_owned());
                r.message_attributes.insert(k, a);
            }
            all.push(r);
        }
    }
}

#[tokio::test]
async fn outbox_sends_25_messages_in_3_batches() {
    let db = TestDb::new().await;
    let sqs = queue_pair().await;
    let ob = Outbox::new(db.pool.clone(), Arc::new(sqs.clone()));
    let ids = {
        let mut c = db.pool.get().await.expect("client");
        let tx = c.transaction().await.expect("tx");
        let msgs: Vec<_> = (0..25)
            .map(|i| {
                NewMessage::json(QueueName::Enrich, &serde_json::json!({"n": i}))
                    .expect("json")
                    .with_attribute("alert_uuid", format!("a-{i}"))
            })
            .collect();
        let ids = outbox::enqueue(&*tx, &msgs).await.expect("enqueue");
        tx.commit().await.expect("commit");
        ids
    };
    let report = ob.send(&ids).await.expect("send");
    assert_eq!((report.sent, report.failed, report.batches), (25, 0, 3));
    let got = drain(&sqs, QueueName::Enrich, 60).await;
    assert_eq!(got.len(), 25);
    let mut ns: Vec<i64> = got
        .iter()
        .map(|m| {
            serde_json::from_str::<serde_json::Value>(m.body.as_deref().expect("body")).expect("json")["n"]
                .as_i64()
                .expect("n")
        })
        .collect();
    ns.sort();
    assert_eq!(ns, (0..25).collect::<Vec<_>>());
    assert!(got.iter().all(|m| m.message_attributes.contains_key("alert_uuid")
        && m.message_attributes.contains_key(outbox::OUTBOX_ID_ATTRIBUTE)));
    let depth = sqs.depth(QueueName::Enrich).await.expect("depth");
    assert_eq!(depth.in_flight, 25);
}

#[tokio::test]
async fn batch_runner_reports_exactly_the_retryable_failures_and_parks_permanent_ones() {
    let db = TestDb::new().await;
    let sqs = queue_pair().await;
    let q: Arc<dyn Queue> = Arc::new(sqs.clone());
    let ob = Outbox::new(db.pool.clone(), q.clone());
    let c = db.pool.get().await.expect("client");
    let kinds = [
        "ok",
        "retry",
        "permanent",
        "ok",
        "retry-after",
        "permanent",
        "ok",
        "retry",
    ];
    let msgs: Vec<_> = kinds
        .iter()
        .map(|k| NewMessage {
            queue: QueueName::Dispatch,
            body: (*k).to_owned(),
            attributes: Default::default(),
            delay_seconds: 0,
        })
        .collect();
    let ids = outbox::enqueue(&**c, &msgs).await.expect("enqueue");
    ob.send(&ids).await.expect("send");
    let records = drain(&sqs, QueueName::Dispatch, 1).await;
    assert_eq!(records.len(), kinds.len());

    let expected_failures: Vec<String> = records
        .iter()
        .filter(|r| r.body.as_deref().is_some_and(|b| b.starts_with("retry")))
        .map(|r| r.message_id.clone().expect("id"))
        .collect();
    let permanent_ids: Vec<String> = records
        .iter()
        .filter(|r| r.body.as_deref() == Some("permanent"))
        .map(|r| r.message_id.clone().expect("id"))
        .collect();
    let retry_after_id = records
        .iter()
        .find(|r| r.body.as_deref() == Some("retry-after"))
        .and_then(|r| r.message_id.clone());

    let runner = BatchRunner::new(QueueName::Dispatch, q, Arc::new(PgParker(db.pool.clone())), 4);
    let mut event = SqsEvent::default();
    event.records = records;
    let response = runner
        .run(event, |m: SqsMessage| async move {
            match m.body.as_deref() {
                Some("ok") => Ok(()),
                Some("retry") => Err(HandlerError::retryable("provider timed out")),
                Some("retry-after") => Err(HandlerError::retry_after("429", Duration::from_secs(120))),
                _ => Err(HandlerError::permanent("alert was deleted")),
            }
        })
        .await;
    let mut failed: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    failed.sort();
    let mut want = expected_failures.clone();
    want.sort();
    assert_eq!(failed, want, "exactly the retryable messages are reported");

    let parked = batch::list_parked(&db.pool, QueueName::Dispatch, 10)
        .await
        .expect("parked");
    let mut parked_ids: Vec<String> = parked.iter().map(|p| p.message_id.clone()).collect();
    parked_ids.sort();
    let mut permanent_ids = permanent_ids;
    permanent_ids.sort();
    assert_eq!(parked_ids, permanent_ids);
    assert!(parked
        .iter()
        .all(|p| p.error == "alert was deleted" && p.body == "permanent"));

    // The plain retries come back after the runner's short backoff (first receive: at most 2 s,
    // whatever the queue's visibility timeout); the 429 one waits for its Retry-After (the
    // runner moved its visibility out to 120 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let again = drain(&sqs, QueueName::Dispatch, 30).await;
    let again_ids: Vec<String> = again.iter().filter_map(|m| m.message_id.clone()).collect();
    assert!(
        !again_ids.contains(retry_after_id.as_ref().expect("id")),
        "Retry-After honoured"
    );
    assert_eq!(again.iter().filter(|m| m.body.as_deref() == Some("retry")).count(), 2);
}

#[tokio::test]
async fn parking_is_idempotent_for_redelivered_messages() {
    let db = TestDb::new().await;
    let sqs = queue_pair().await;
    let runner = BatchRunner::new(QueueName::Enrich, Arc::new(sqs), Arc::new(PgParker(db.pool.clone())), 2);
    let mut m = SqsMessage::default();
    m.message_id = Some("m-1".into());
    m.body = Some("{not json".into());
    for _ in 0..2 {
        let mut event = SqsEvent::default();
        event.records = vec![m.clone()];
        let resp = runner
            .run(event, |_m| async { Err(HandlerError::permanent("body is not JSON")) })
            .await;
        assert!(resp.batch_item_failures.is_empty());
    }
    assert_eq!(
        batch::list_parked(&db.pool, QueueName::Enrich, 10)
            .await
            .expect("parked")
            .len(),
        1
    );
}

#[tokio::test]
async fn a_send_to_an_unreachable_sqs_fails_and_the_rows_stay() {
    let db = TestDb::new().await;
    use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(calseta::net::tls::aws_http_client())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("x", "x", None, None, "t"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .build();
    let mut urls = HashMap::new();
    urls.insert(QueueName::Enrich, format!("http://127.0.0.1:{port}/000000000000/nope"));
    let dead = SqsQueue::new(aws_sdk_sqs::Client::from_conf(conf), urls);
    let ob = Outbox::new(db.pool.clone(), Arc::new(dead));
    let c = db.pool.get().await.expect("client");
    let ids = outbox::enqueue(&**c, &[NewMessage::json(QueueName::Enrich, &1).expect("json")])
        .await
        .expect("enqueue");
    let r = ob.send(&ids).await.expect("send");
    assert_eq!((r.sent, r.failed), (0, 1));
    assert_eq!(ob.backlog().await.expect("backlog").unsent, 1);
}

#[tokio::test]
async fn the_local_poller_deletes_handled_messages_and_keeps_failed_ones() {
    use calseta::queue::{handler, OutgoingMessage};
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    let sqs = queue_pair().await;
    let msgs: Vec<OutgoingMessage> = ["ok-1", "fail-1", "ok-2"]
        .iter()
        .map(|b| OutgoingMessage {
            entry_id: b.to_string(),
            body: b.to_string(),
            attributes: BTreeMap::from([("alert_uuid".to_string(), "u".to_string())]),
            delay_seconds: 0,
        })
        .collect();
    sqs.send_batch(QueueName::Enrich, &msgs).await.expect("send");
    // (body, ApproximateReceiveCount, alert_uuid attribute) per delivery.
    type Seen = Vec<(String, String, Option<String>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let h = {
        let seen = seen.clone();
        handler(move |event: SqsEvent| {
            let seen = seen.clone();
            async move {
                let mut resp = aws_lambda_events::event::sqs::SqsBatchResponse::default();
                for r in event.records {
                    let body = r.body.clone().unwrap_or_default();
                    seen.lock().unwrap().push((
                        body.clone(),
                        r.attributes.get("ApproximateReceiveCount").cloned().unwrap_or_default(),
                        r.message_attributes
                            .get("alert_uuid")
                            .and_then(|a| a.string_value.clone()),
                    ));
                    if body.starts_with("fail") {
                        resp.add_failure(r.message_id.unwrap_or_default());
                    }
                }
                resp
            }
        })
    };
    let mut received = 0;
    for _ in 0..5 {
        received += sqs.poll_once(QueueName::Enrich, &h).await.expect("poll");
        if received >= 3 {
            break;
        }
    }
    assert_eq!(received, 3);
    {
        let seen = seen.lock().unwrap();
        assert!(
            seen.iter()
                .all(|(_, count, attr)| count == "1" && attr.as_deref() == Some("u")),
            "{seen:?}"
        );
    }
    // Handled messages are deleted; the failed one stays in flight until its visibility lapses.
    let depth = sqs.depth(QueueName::Enrich).await.expect("depth");
    assert_eq!((depth.visible, depth.in_flight), (0, 1), "{depth:?}");
}

/// X-Ray: the Lambda runtime's `_X_AMZN_TRACE_ID` leaves with every message as the
/// `AWSTraceHeader` system attribute, so the consumer's invocation continues the same trace.
#[tokio::test]
async fn the_invocation_trace_header_travels_as_aws_trace_header() {
    let sqs = queue_pair().await;
    let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    std::env::set_var("_X_AMZN_TRACE_ID", header);
    let msg = calseta::queue::OutgoingMessage {
        entry_id: "0".into(),
        body: "{}".into(),
        attributes: Default::default(),
        delay_seconds: 0,
    };
    let sent = sqs.send_batch(QueueName::Dispatch, &[msg]).await.expect("send");
    std::env::remove_var("_X_AMZN_TRACE_ID");
    assert_eq!(sent.sent, vec!["0".to_owned()]);
    let out = sqs
        .sdk()
        .receive_message()
        .queue_url(sqs.url(QueueName::Dispatch).expect("url"))
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive");
    let m = out.messages().first().expect("message");
    assert_eq!(
        m.message_attributes()
            .and_then(|a| a.get(calseta::queue::sqs::TRACE_ATTRIBUTE))
            .and_then(|v| v.string_value()),
        Some(header),
        "{m:?}"
    );
}
