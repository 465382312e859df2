//! The local SQS event-source mapping against moto's SQS API and a function behind a real
//! invoke-API HTTP endpoint: partial batch failures stay on the queue and come back after the
//! visibility timeout, the redrive policy moves them to the DLQ after `maxReceiveCount`, a failed
//! invocation returns the whole batch, and `MaximumConcurrency` bounds batches in flight.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{extract::State, routing::post, Json, Router};
use calseta::{
    esm::{ensure_queue_with_dlq, BatchOutcome, Driver, Invoker, Mapping},
    testing::sqs_client,
};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Function {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    invocations: AtomicUsize,
}

/// Reports records whose body is "fail" as failures, crashes on a body "crash".
async fn invoke(State(f): State<Arc<Function>>, Json(event): Json<Value>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let now = f.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    f.max_in_flight.fetch_max(now, Ordering::SeqCst);
    f.invocations.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    f.in_flight.fetch_sub(1, Ordering::SeqCst);
    let records = event["Records"].as_array().cloned().unwrap_or_default();
    assert!(records
        .iter()
        .all(|r| r["eventSource"] == "aws:sqs" && r["receiptHandle"].is_string()));
    if records.iter().any(|r| r["body"] == "crash") {
        return (
            axum::http::StatusCode::OK,
            [("x-amz-function-error", "Unhandled")],
            Json(json!({"errorType": "Panic", "errorMessage": "boom"})),
        )
            .into_response();
    }
    let failures: Vec<Value> = records
        .iter()
        .filter(|r| r["body"] == "fail")
        .map(|r| json!({"itemIdentifier": r["messageId"]}))
        .collect();
    Json(json!({ "batchItemFailures": failures })).into_response()
}

async fn function() -> (String, Arc<Function>) {
    let f = Arc::new(Function::default());
    let app = Router::new()
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .with_state(f.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), f)
}

async fn setup(
    visibility: u64,
    max_receive: u32,
    batch: i32,
    concurrency: usize,
) -> (Driver, String, String, Arc<Function>) {
    let sqs = sqs_client();
    let name = format!("esm-{}", uuid::Uuid::new_v4().simple());
    let (url, dlq) = ensure_queue_with_dlq(&sqs, &name, Duration::from_secs(visibility), max_receive)
        .await
        .expect("queues");
    let (base, f) = function().await;
    let mapping = Mapping {
        function: "enrich".into(),
        queue_url: url.clone(),
        batch_size: batch,
        batching_window: Duration::ZERO,
        max_concurrency: concurrency,
        region: "us-east-1".into(),
    };
    let driver = Driver::new(
        sqs,
        Invoker::new(base, Duration::from_secs(10)).expect("invoker"),
        mapping,
    )
    .await
    .expect("driver");
    (driver, url, dlq, f)
}

async fn send(url: &str, body: &str) {
    sqs_client()
        .send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .expect("send");
}

async fn bodies(url: &str) -> Vec<String> {
    let out = sqs_client()
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive");
    out.messages()
        .iter()
        .filter_map(|m| m.body().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn reported_failures_reappear_after_the_visibility_timeout_then_go_to_the_dlq() {
    let (driver, url, dlq, _f) = setup(1, 2, 10, 1).await;
    for b in ["ok-1", "fail", "ok-2"] {
        send(&url, b).await;
    }
    let mut first = BatchOutcome::default();
    // moto may hand out fewer than all visible messages in one receive.
    while first.received < 3 {
        let o = driver.poll_once().await.expect("poll");
        first.received += o.received;
        first.deleted += o.deleted;
        first.failed += o.failed;
    }
    assert_eq!(
        first,
        BatchOutcome {
            received: 3,
            deleted: 2,
            failed: 1
        }
    );
    // Invisible until the timeout passes.
    assert_eq!(driver.poll_once().await.expect("poll").received, 0);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        driver.poll_once().await.expect("poll"),
        BatchOutcome {
            received: 1,
            deleted: 0,
            failed: 1
        },
        "second receive (maxReceiveCount 2)"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        driver.poll_once().await.expect("poll").received,
        0,
        "third receive redrives to the DLQ"
    );
    assert_eq!(bodies(&dlq).await, vec!["fail".to_owned()]);
}

#[tokio::test]
async fn a_failed_invocation_returns_the_whole_batch() {
    let (driver, url, _dlq, f) = setup(1, 5, 10, 1).await;
    send(&url, "crash").await;
    let o = driver.poll_once().await.expect("poll");
    assert_eq!(
        o,
        BatchOutcome {
            received: 1,
            deleted: 0,
            failed: 1
        }
    );
    assert_eq!(f.invocations.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(bodies(&url).await, vec!["crash".to_owned()], "still on the queue");
}

#[tokio::test]
async fn maximum_concurrency_bounds_batches_in_flight() {
    let (driver, url, _dlq, f) = setup(30, 5, 1, 3).await;
    for i in 0..24 {
        send(&url, &format!("ok-{i}")).await;
    }
    let stop = CancellationToken::new();
    let run = tokio::spawn(driver.run(stop.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while f.invocations.load(Ordering::SeqCst) < 24 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all messages were delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    run.await.expect("driver stops");
    let max = f.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=3).contains(&max), "max in flight {max}");
    assert!(bodies(&url).await.is_empty(), "every message was deleted");
}
