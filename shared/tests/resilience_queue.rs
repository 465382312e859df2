//! The resilience suite's queue scenario (scripts/resilience, docs/resilience.md): SQS delivers
//! at least once and in any order, so every enrich and dispatch message is handed to the real
//! handlers twice at the same time — once in a batch in reverse order, once in a second batch
//! in order — as two consumers would get it after a visibility timeout. Alerts come in through
//! HTTP, providers are the simulator, and a local agent verifies every signature and counts
//! webhook ids. Nothing may be lost, left unenriched or undelivered, and no webhook id may
//! arrive twice. Prints one `RESILIENCE {json}` line that the suite puts in its table.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use calseta::dispatch::signing;
use calseta::enrich::engine::EngineSettings;
use calseta::enrich::registry::ProviderSet;
use calseta::enrich::simulator;
use calseta::queue::batch::{BatchRunner, PgParker};
use calseta::queue::{Handler, Queue, QueueName};
use calseta::testing::TestApp;
use secrecy::SecretString;
use serde_json::{json, Value};

/// What the agent accepted: (webhook id, alert uuid) per verified request.
#[derive(Clone, Default)]
struct Agent {
    secret: Arc<Mutex<Option<SecretString>>>,
    got: Arc<Mutex<Vec<(String, String)>>>,
    bad: Arc<Mutex<u32>>,
}

async fn webhook(State(a): State<Agent>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (id, sig) = (h("webhook-id"), h("webhook-signature"));
    let now = chrono::Utc::now().timestamp();
    let secret = a.secret.lock().unwrap().clone();
    let ok = h("webhook-timestamp")
        .parse::<i64>()
        .is_ok_and(|ts| secret.is_some_and(|s| signing::verify(&s, &id, ts, &sig, &body, now).is_ok()));
    if !ok {
        *a.bad.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let alert = v["alert"]["uuid"].as_str().unwrap_or("").to_string();
    a.got.lock().unwrap().push((id, alert));
    StatusCode::NO_CONTENT
}

fn event(records: &[SqsMessage]) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = records.to_vec();
    e
}

/// Every visible message of `queue`, handled twice concurrently (reversed, and in order);
/// deleted when neither handling asked for it back. Returns how many were handled.
async fn drain_twice(app: &TestApp, queue: QueueName, handler: &Handler) -> usize {
    let mut msgs = Vec::new();
    loop {
        let got = app.queue.receive(queue, 10);
        if got.is_empty() {
            break;
        }
        msgs.extend(got);
    }
    if msgs.is_empty() {
        return 0;
    }
    let reversed: Vec<SqsMessage> = msgs.iter().rev().cloned().collect();
    let mut runs = Vec::new();
    for chunk in reversed.chunks(10).chain(msgs.chunks(10)) {
        runs.push((handler)(event(chunk)));
    }
    let mut failed = HashSet::new();
    for resp in futures::future::join_all(runs).await {
        failed.extend(resp.batch_item_failures.into_iter().map(|f| f.item_identifier));
    }
    for m in &msgs {
        let id = m.message_id.clone().unwrap_or_default();
        if !failed.contains(&id) {
            app.queue.delete(queue, m.receipt_handle.as_deref().unwrap_or(""));
        }
    }
    msgs.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicated_and_reordered_queue_messages_lose_nothing_and_send_nothing_twice() {
    // Providers: the simulator without its periodic 429s (faults are another scenario).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let sim = simulator::router_with(simulator::SimulatorOptions {
        rate_limit_every: None,
        retry_after_secs: 1,
    });
    tokio::spawn(async move { axum::serve(listener, sim).await });
    let providers = ProviderSet::simulated(&base, HashMap::new(), 16);
    let (app, engine) = TestApp::with_enrichment(providers, EngineSettings::default()).await;

    let agent = Agent::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_url = format!("http://{}/hook", listener.local_addr().unwrap());
    let rx = Router::new().route("/hook", post(webhook)).with_state(agent.clone());
    tokio::spawn(async move { axum::serve(listener, rx).await });
    let (st, v) = calseta::testing::call(
        &app,
        &app.admin_key,
        reqwest::Method::POST,
        "/v1/agents",
        Some(json!({"name": "resilience", "endpoint_url": agent_url})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    *agent.secret.lock().unwrap() = Some(SecretString::from(
        v["data"]["signing_secret"].as_str().unwrap().to_string(),
    ));

    // Alerts sharing indicators (fan-in over shared links), and some without any.
    let n = 30;
    let mut acked = Vec::new();
    for i in 0..n {
        let body = if i % 5 == 0 {
            json!({"title": format!("no indicators {i}"), "severity": "Low", "source_alert_id": format!("q-{i}")})
        } else {
            json!({"title": format!("queue {i}"), "severity": "High", "source_alert_id": format!("q-{i}"),
                   "src_ip": format!("45.155.205.{}", 1 + i % 6), "user": format!("u{}@example.com", i % 4)})
        };
        let (st, v) = calseta::testing::call(
            &app,
            &app.admin_key,
            reqwest::Method::POST,
            "/v1/ingest/generic",
            Some(body),
        )
        .await;
        assert_eq!(st, 202, "{v}");
        acked.push(v["data"]["items"][0]["alert_uuid"].as_str().unwrap().to_string());
    }

    let queue: Arc<dyn Queue> = Arc::new(app.queue.clone());
    let parker = Arc::new(PgParker(app.db.pool.clone()));
    let enrich = engine.handler(BatchRunner::new(
        QueueName::Enrich,
        queue.clone(),
        parker.clone(),
        calseta::queue::MAX_BATCH,
    ));
    let dispatch = app.dispatcher.handler(BatchRunner::new(
        QueueName::Dispatch,
        queue,
        parker,
        calseta::queue::MAX_BATCH,
    ));
    let (mut handled_enrich, mut handled_dispatch) = (0, 0);
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        handled_enrich += drain_twice(&app, QueueName::Enrich, &enrich).await;
        handled_dispatch += drain_twice(&app, QueueName::Dispatch, &dispatch).await;
        let got: HashSet<String> = agent.got.lock().unwrap().iter().map(|(_, a)| a.clone()).collect();
        if acked.iter().all(|a| got.contains(a)) || Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Late duplicates: whatever is still queued (retries) goes through the same doubling.
    tokio::time::sleep(Duration::from_secs(1)).await;
    handled_dispatch += drain_twice(&app, QueueName::Dispatch, &dispatch).await;

    let client = app.db.pool.get().await.unwrap();
    let rows = client
        .query(
            "SELECT uuid::text, enrichment_status FROM alerts WHERE uuid::text = ANY($1)",
            &[&acked],
        )
        .await
        .unwrap();
    let status: HashMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let got = agent.got.lock().unwrap().clone();
    let delivered: HashSet<&str> = got.iter().map(|(_, a)| a.as_str()).collect();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for (id, _) in &got {
        *per_id.entry(id.as_str()).or_default() += 1;
    }
    let lost = acked.iter().filter(|a| !status.contains_key(*a)).count();
    let never_enriched = status.values().filter(|s| *s == "Pending").count();
    let never_delivered = acked
        .iter()
        .filter(|a| status.contains_key(*a) && !delivered.contains(a.as_str()))
        .count();
    let duplicates: usize = per_id.values().map(|n| n - 1).sum();
    let bad = *agent.bad.lock().unwrap();
    println!(
        "RESILIENCE {}",
        json!({"acked": acked.len(), "lost": lost, "never_enriched": never_enriched,
               "never_delivered": never_delivered, "duplicates": duplicates,
               "note": format!("each of {handled_enrich} enrich and {handled_dispatch} dispatch messages handled twice at once (reversed + in order); {bad} bad signatures")})
    );
    assert_eq!(bad, 0, "webhooks with a bad signature");
    assert_eq!(
        (lost, never_enriched, never_delivered, duplicates),
        (0, 0, 0, 0),
        "lost / never enriched / never delivered / duplicate webhook ids"
    );
}
