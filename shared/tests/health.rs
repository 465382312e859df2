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
