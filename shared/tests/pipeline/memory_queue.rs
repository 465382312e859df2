//! The in-process queue's SQS semantics, driven through the same batch runner the Lambdas use.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use aws_lambda_events::event::sqs::SqsEvent;
use calseta::queue::{
    self,
    memory::{InProcessQueue, QueueSettings},
    OutgoingMessage, Queue, QueueName,
};
use tokio_util::sync::CancellationToken;

fn out(i: usize) -> OutgoingMessage {
    OutgoingMessage {
        entry_id: format!("e{i}"),
        body: format!("m{i}"),
        attributes: Default::default(),
        delay_seconds: 0,
    }
}

fn fast(max_receives: u32) -> InProcessQueue {
    InProcessQueue::new(QueueSettings {
        visibility_timeout: Duration::from_millis(30),
        max_receives,
        batch_size: 10,
    })
}

#[tokio::test]
async fn batches_hold_at_most_ten_and_visibility_hides_in_flight() {
    let q = fast(5);
    for chunk in (0..25).collect::<Vec<_>>().chunks(10) {
        q.send_batch(QueueName::Dispatch, &chunk.iter().map(|i| out(*i)).collect::<Vec<_>>())
            .await
            .expect("send");
    }
    assert!(q
        .send_batch(QueueName::Dispatch, &(0..11).map(out).collect::<Vec<_>>())
        .await
        .is_err());
    let first = q.receive(QueueName::Dispatch, 50);
    assert_eq!(first.len(), 10);
    let d = q.depth(QueueName::Dispatch).await.expect("depth");
    assert_eq!((d.visible, d.in_flight), (15, 10));
    // Deleted messages are gone; undeleted ones come back after the visibility timeout.
    for m in &first[..5] {
        assert!(q.delete(QueueName::Dispatch, m.receipt_handle.as_deref().expect("receipt")));
    }
    assert_eq!(q.receive(QueueName::Dispatch, 50).len(), 10);
    assert_eq!(q.receive(QueueName::Dispatch, 50).len(), 5);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let again = q.receive(QueueName::Dispatch, 50);
    assert_eq!(again.len(), 10);
    assert!(again
        .iter()
        .any(|m| m.attributes.get("ApproximateReceiveCount").map(String::as_str) == Some("2")));
}

#[tokio::test]
async fn change_visibility_delays_redelivery() {
    let q = fast(5);
    q.send_batch(QueueName::Enrich, &[out(1)]).await.expect("send");
    let m = q.receive(QueueName::Enrich, 1).remove(0);
    q.change_visibility(QueueName::Enrich, m.receipt_handle.as_deref().expect("receipt"), 1)
        .await
        .expect("cv");
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(q.receive(QueueName::Enrich, 1).is_empty(), "still invisible");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(q.receive(QueueName::Enrich, 1).len(), 1);
}

#[tokio::test]
async fn message_failing_n_times_is_dead_lettered_and_can_be_redriven() {
    let q = fast(3);
    q.send_batch(QueueName::Enrich, &[out(1), out(2)]).await.expect("send");
    let attempts: Arc<HashMap<String, AtomicUsize>> = Arc::new(
        ["m1", "m2"]
            .iter()
            .map(|b| (b.to_string(), AtomicUsize::new(0)))
            .collect(),
    );
    // The handler fails every "m1" and accepts "m2".
    let seen = attempts.clone();
    let handler = queue::handler(move |event: SqsEvent| {
        let seen = seen.clone();
        async move {
            let mut resp = aws_lambda_events::event::sqs::SqsBatchResponse::default();
            for r in event.records {
                let body = r.body.clone().unwrap_or_default();
                seen[&body].fetch_add(1, Ordering::SeqCst);
                if body == "m1" {
                    resp.add_failure(r.message_id.expect("id"));
                }
            }
            resp
        }
    });
    let cancel = CancellationToken::new();
    let tasks = q.spawn_consumers(QueueName::Enrich, handler, 2, cancel.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while q.dead_letters(QueueName::Enrich).is_empty() {
        assert!(std::time::Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cancel.cancel();
    for t in tasks {
        t.await.expect("consumer");
    }
    let dead = q.dead_letters(QueueName::Enrich);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "m1");
    assert_eq!(dead[0].receive_count, 3);
    assert_eq!(attempts["m1"].load(Ordering::SeqCst), 3);
    assert_eq!(
        attempts["m2"].load(Ordering::SeqCst),
        1,
        "a success is deleted, never redelivered"
    );
    assert_eq!(q.depth(QueueName::Enrich).await.expect("depth").total(), 0);

    assert_eq!(q.redrive(QueueName::Enrich), 1);
    assert!(q.dead_letters(QueueName::Enrich).is_empty());
    assert_eq!(q.receive(QueueName::Enrich, 10).len(), 1);
}

#[tokio::test]
async fn delayed_messages_wait() {
    let q = fast(5);
    let mut m = out(1);
    m.delay_seconds = 1;
    q.send_batch(QueueName::Enrich, &[m]).await.expect("send");
    assert!(q.receive(QueueName::Enrich, 10).is_empty());
    assert_eq!(q.depth(QueueName::Enrich).await.expect("depth").delayed, 1);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(q.receive(QueueName::Enrich, 10).len(), 1);
}
