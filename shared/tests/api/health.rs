//! `GET /health` and the router's common behaviour, through HTTP.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::sync::Arc;

use axum::{body::Body, http::Request};
use calseta::{
    api::{self, AppState},
    config::{AppSecrets, DbConfig, Limits},
    db,
    queue::memory::{InProcessQueue, QueueSettings},
    testing::TestDb,
};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

fn state(pool: db::Pool) -> AppState {
    AppState::new(
        pool,
        Arc::new(InProcessQueue::new(QueueSettings::default())),
        &AppSecrets::random(),
        Limits::default(),
    )
    .expect("state")
}

async fn call(app: axum::Router, req: Request<Body>) -> (u16, axum::http::HeaderMap, Value) {
    let resp = app.oneshot(req).await.expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn healthy_stack_reports_ok_with_security_headers() {
    let db = TestDb::new().await;
    let app = api::router(state(db.pool.clone()));
    let req = Request::get("/health")
        .header("x-request-id", "req-123")
        .body(Body::empty())
        .expect("req");
    let (status, headers, body) = call(app, req).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["queue"], "ok");
    assert_eq!(body["queue_depth"], 0);
    assert_eq!(headers["x-request-id"], "req-123");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["content-security-policy"], "default-src 'none'");
}

#[tokio::test]
async fn database_down_is_503() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut cfg = DbConfig::from_url(format!("postgres://calseta@127.0.0.1:{port}/calseta"));
    cfg.connect_timeout = std::time::Duration::from_millis(500);
    let pool = db::build_pool(&cfg).expect("pool");
    let app = api::router(state(pool));
    let (status, _, body) = call(app, Request::get("/health").body(Body::empty()).expect("req")).await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "down");
    assert_eq!(body["database"], "error");
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_error_envelope() {
    let db = TestDb::new().await;
    let app = api::router(state(db.pool.clone()));
    let (status, headers, body) = call(app.clone(), Request::get("/v1/nope").body(Body::empty()).expect("req")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    assert!(headers.contains_key("x-request-id"));
    let (status, _, body) = call(app, Request::post("/health").body(Body::empty()).expect("req")).await;
    assert_eq!(status, 405);
    assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED");
}

fn message(body: &str) -> calseta::queue::OutgoingMessage {
    calseta::queue::OutgoingMessage {
        entry_id: "m1".into(),
        body: body.into(),
        attributes: Default::default(),
        delay_seconds: 0,
    }
}

/// A message that exhausted its receives is counted per queue and in the total, so an operator
/// sees parked work in `/health` and `calseta status`.
#[tokio::test]
async fn dead_letters_are_reported_per_queue() {
    use calseta::queue::{Queue, QueueName};
    let db = TestDb::new().await;
    let queue = InProcessQueue::new(QueueSettings {
        visibility_timeout: std::time::Duration::ZERO,
        max_receives: 1,
        ..QueueSettings::default()
    });
    queue
        .send_batch(QueueName::Enrich, &[message("poison")])
        .await
        .expect("send");
    assert_eq!(queue.receive(QueueName::Enrich, 10).len(), 1);
    assert!(
        queue.receive(QueueName::Enrich, 10).is_empty(),
        "second receive dead-letters it"
    );
    let state = AppState::new(
        db.pool.clone(),
        Arc::new(queue),
        &AppSecrets::random(),
        Limits::default(),
    )
    .expect("state");
    let (status, _, body) = call(
        api::router(state),
        Request::get("/health").body(Body::empty()).expect("req"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["dead_letters"], 1, "{body}");
    assert_eq!(body["queues"]["enrich"]["dead_letters"], 1);
    assert_eq!(body["queues"]["dispatch"]["dead_letters"], 0);
    assert_eq!(body["queue_depth"], 0);
}

/// On SQS the DLQ depth comes from the DLQ's own attributes, when its URL is configured
/// (`ENRICH_DLQ_URL` / `DISPATCH_DLQ_URL`); without it the depth is unknown (null), not zero.
#[tokio::test]
async fn sqs_dead_letter_queue_depth_is_read_from_the_dlq() {
    use calseta::queue::{sqs::SqsQueue, QueueName};
    use std::collections::HashMap;
    let db = TestDb::new().await;
    let client = calseta::testing::sqs_client();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut urls = HashMap::new();
    let mut dlqs = HashMap::new();
    for q in QueueName::ALL {
        let (url, dlq) = calseta::esm::ensure_queue_with_dlq(
            &client,
            &format!("health-{q}-{tag}"),
            std::time::Duration::from_secs(30),
            3,
        )
        .await
        .expect("queue");
        urls.insert(q, url);
        dlqs.insert(q, dlq);
    }
    for _ in 0..2 {
        client
            .send_message()
            .queue_url(&dlqs[&QueueName::Dispatch])
            .message_body("{}")
            .send()
            .await
            .expect("send to dlq");
    }
    let without = SqsQueue::new(client.clone(), urls.clone());
    let with = SqsQueue::new(client, urls).with_dead_letter_urls(dlqs);
    for (queue, expect_dispatch, expect_total) in [(without, Value::Null, Value::Null), (with, 2.into(), 2.into())] {
        let state = AppState::new(
            db.pool.clone(),
            Arc::new(queue),
            &AppSecrets::random(),
            Limits::default(),
        )
        .expect("state");
        let (status, _, body) = call(
            api::router(state),
            Request::get("/health").body(Body::empty()).expect("req"),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["queue"], "ok", "{body}");
        assert_eq!(body["queues"]["dispatch"]["dead_letters"], expect_dispatch, "{body}");
        assert_eq!(body["dead_letters"], expect_total, "{body}");
    }
}
