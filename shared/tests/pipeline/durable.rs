//! Issue #17, items 3 and 4: no work lost on restart, retries that outlast outages.
//!
//! - The local queue of `calseta dev` keeps its messages in Postgres: a consumer that dies
//!   before acknowledging loses nothing, and a restarted stack picks the work up at once.
//! - The sweeper repairs what a crash or a lost message strands (pending links, completed alerts
//!   never dispatched, deliveries with no attempt, long retries that came due).
//! - Delivery retries follow a schedule of a day and more, per agent; a wait longer than SQS's
//!   15 minutes is re-scheduled by the sweeper.
//! - A database fault while recording a sent webhook retries in seconds and never sends the
//!   webhook a second time.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use calseta::enrich::engine::{Engine, EngineSettings};
use calseta::enrich::registry::ProviderSet;
use calseta::enrich::simulator;
use calseta::queue::memory::QueueSettings;
use calseta::queue::pg::PgQueue;
use calseta::queue::{self, OutgoingMessage, Queue, QueueName};
use calseta::sweep::{self, RepairSettings};
use calseta::testing::{TestApp, TestDb};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

// ---- a webhook receiver ------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Receiver {
    /// Per agent path: statuses to answer (front first; the last one repeats) and the webhook
    /// ids received, in order.
    script: Arc<Mutex<HashMap<String, Vec<u16>>>>,
    hits: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

impl Receiver {
    fn answer(&self, path: &str, statuses: &[u16]) {
        self.script.lock().unwrap().insert(path.into(), statuses.to_vec());
    }
    fn hits(&self, path: &str) -> Vec<String> {
        self.hits.lock().unwrap().get(path).cloned().unwrap_or_default()
    }
}

async fn receive(State(r): State<Receiver>, Path(agent): Path<String>, headers: HeaderMap) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let answered = {
        let mut script = r.script.lock().unwrap();
        let list = script.entry(agent.clone()).or_insert_with(|| vec![200]);
        if list.len() > 1 {
            list.remove(0)
        } else {
            list[0]
        }
    };
    r.hits.lock().unwrap().entry(agent).or_default().push(id);
    StatusCode::from_u16(answered).unwrap()
}

async fn start_receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/agents/{agent}", post(receive))
        .with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, base)
}

// ---- the stack ----------------------------------------------------------------------------------

async fn app_with_engine() -> (TestApp, Arc<Engine>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let sim = simulator::router_with(simulator::SimulatorOptions {
        rate_limit_every: None,
        retry_after_secs: 20,
    });
    tokio::spawn(async move { axum::serve(listener, sim).await });
    let providers = ProviderSet::simulated(&base, HashMap::new(), 16);
    TestApp::with_enrichment(providers, EngineSettings::default()).await
}

async fn admin(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    calseta::testing::call(app, &app.admin_key, method, path, body).await
}

async fn agent(app: &TestApp, body: Value) -> String {
    let (status, v) = admin(app, reqwest::Method::POST, "/v1/agents", Some(body)).await;
    assert_eq!(status, 201, "{v}");
    v["data"]["uuid"].as_str().unwrap().to_string()
}

async fn ingest(app: &TestApp, alert: Value) -> String {
    let (status, v) = admin(app, reqwest::Method::POST, "/v1/ingest/generic", Some(alert)).await;
    assert_eq!(status, 202, "{v}");
    v["data"]["items"][0]["alert_uuid"].as_str().unwrap().to_string()
}

async fn exec(app: &TestApp, sql: &str) {
    let c = app.db.pool.get().await.unwrap();
    c.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Receives and deletes every visible message of `queue`: the work a crash took with it.
fn lose_messages(app: &TestApp, queue: QueueName) -> usize {
    let mut n = 0;
    loop {
        let batch = app.queue.receive(queue, 10);
        if batch.is_empty() {
            return n;
        }
        for m in batch {
            app.queue.delete(queue, m.receipt_handle.as_deref().unwrap());
            n += 1;
        }
    }
}

async fn wait_for(app: &TestApp, what: &str, sql: &str, want: i64, secs: u64) {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = app.scalar_i64(sql).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < until, "{what}: {got}, want {want} ({sql})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn repair_now() -> RepairSettings {
    RepairSettings {
        after: Duration::from_secs(60),
        batch: 200,
    }
}

// ---- the durable local queue ------------------------------------------------------------------

fn out(i: usize) -> OutgoingMessage {
    OutgoingMessage {
        entry_id: format!("e{i}"),
        body: format!("m{i}"),
        attributes: [("k".to_string(), format!("v{i}"))].into_iter().collect(),
        delay_seconds: 0,
    }
}

#[tokio::test]
async fn the_local_queue_keeps_unfinished_messages_across_a_crash() {
    let db = TestDb::new().await;
    let settings: HashMap<QueueName, QueueSettings> = QueueName::ALL
        .iter()
        .map(|q| {
            (
                *q,
                QueueSettings {
                    // Long: only the restart's release may bring in-flight messages back quickly.
                    visibility_timeout: Duration::from_secs(300),
                    max_receives: 5,
                    batch_size: 10,
                },
            )
        })
        .collect();
    let first = PgQueue::new(db.pool.clone(), settings.clone());
    first
        .send_batch(QueueName::Enrich, &(0..10).map(out).collect::<Vec<_>>())
        .await
        .expect("send");
    first
        .send_batch(QueueName::Enrich, &(10..12).map(out).collect::<Vec<_>>())
        .await
        .expect("send");
    assert!(
        first
            .send_batch(QueueName::Enrich, &(0..11).map(out).collect::<Vec<_>>())
            .await
            .is_err(),
        "SQS takes at most 10 per batch"
    );
    // A consumer takes ten, finishes three, and the process dies with seven in flight.
    let taken = first.receive(QueueName::Enrich, 50).await.expect("receive");
    assert_eq!(taken.len(), 10);
    assert_eq!(taken[0].body.as_deref(), Some("m0"), "oldest first");
    assert_eq!(taken[0].message_attributes["k"].string_value.as_deref(), Some("v0"));
    assert_eq!(taken[0].attributes["ApproximateReceiveCount"], "1");
    let d = first.depth(QueueName::Enrich).await.expect("depth");
    assert_eq!((d.visible, d.in_flight, d.delayed), (2, 10, 0));
    let done: Vec<String> = taken[..3].iter().map(|m| m.receipt_handle.clone().unwrap()).collect();
    assert_eq!(first.delete(QueueName::Enrich, &done).await.expect("delete"), 3);
    assert_eq!(
        first.delete(QueueName::Enrich, &done).await.expect("delete"),
        0,
        "a stale receipt is ignored"
    );
    assert_eq!(first.receive(QueueName::Enrich, 10).await.expect("receive").len(), 2);
    drop(first);

    // The restarted stack: the predecessor's in-flight messages are released at once, and
    // everything not finished is handled (the consumers delete what the handler acknowledged).
    let second = PgQueue::new(db.pool.clone(), settings);
    assert_eq!(second.release_orphans().await.expect("release"), 9);
    let seen = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let handler = {
        let seen = seen.clone();
        queue::handler(move |event: aws_lambda_events::event::sqs::SqsEvent| {
            let seen = seen.clone();
            async move {
                for r in event.records {
                    seen.lock().unwrap().push((
                        r.body.unwrap_or_default(),
                        r.attributes["ApproximateReceiveCount"].clone(),
                    ));
                }
                aws_lambda_events::event::sqs::SqsBatchResponse::default()
            }
        })
    };
    let cancel = CancellationToken::new();
    second.spawn_consumers(QueueName::Enrich, handler, 2, cancel.clone());
    let until = Instant::now() + Duration::from_secs(20);
    while second.depth(QueueName::Enrich).await.expect("depth").total() > 0 {
        assert!(Instant::now() < until, "the queue never drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    let seen = seen.lock().unwrap().clone();
    let bodies: HashSet<String> = seen.iter().map(|(b, _)| b.clone()).collect();
    let want: HashSet<String> = (3..12).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, want, "every unfinished message, and only those");
    assert_eq!(seen.len(), 9, "each once");
    assert!(seen.iter().all(|(_, n)| n == "2"), "receive counts survive: {seen:?}");
}

#[tokio::test]
async fn the_local_queue_delays_hides_and_dead_letters_like_sqs() {
    let db = TestDb::new().await;
    let q = PgQueue::new(
        db.pool.clone(),
        [(
            QueueName::Dispatch,
            QueueSettings {
                visibility_timeout: Duration::from_millis(200),
                max_receives: 2,
                batch_size: 10,
            },
        )]
        .into_iter()
        .collect(),
    );
    let mut delayed = out(1);
    delayed.delay_seconds = 2;
    q.send_batch(QueueName::Dispatch, &[delayed, out(2)])
        .await
        .expect("send");
    let d = q.depth(QueueName::Dispatch).await.expect("depth");
    assert_eq!((d.visible, d.delayed), (1, 1));
    let m = q.receive(QueueName::Dispatch, 10).await.expect("receive");
    assert_eq!(m.len(), 1, "the delayed message is not visible yet");
    assert_eq!(m[0].body.as_deref(), Some("m2"));
    // Not deleted: back after the visibility timeout, then dead-lettered after max receives.
    assert!(q.receive(QueueName::Dispatch, 10).await.expect("receive").is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = q.receive(QueueName::Dispatch, 10).await.expect("receive");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attributes["ApproximateReceiveCount"], "2");
    let receipt = again[0].receipt_handle.clone().unwrap();
    q.change_visibility(QueueName::Dispatch, &receipt, 0)
        .await
        .expect("change visibility");
    assert!(q
        .change_visibility(QueueName::Dispatch, "00000000-0000-0000-0000-000000000000", 0)
        .await
        .is_err());
    assert!(q.receive(QueueName::Dispatch, 10).await.expect("receive").is_empty());
    let c = db.pool.get().await.unwrap();
    let parked = c
        .query(
            "SELECT body, receive_count, error FROM parked_messages WHERE queue = 'dispatch'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].get::<_, String>(0), "m2");
    assert_eq!(parked[0].get::<_, Option<i32>>(1), Some(2));
    assert!(parked[0].get::<_, String>(2).contains("dead letter"));
    // `/health` reports it as the dispatch queue's dead letter.
    assert_eq!(
        q.dead_letter_depth(QueueName::Dispatch).await.expect("dlq depth"),
        Some(1)
    );
    assert_eq!(
        q.dead_letter_depth(QueueName::Enrich).await.expect("dlq depth"),
        Some(0)
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let late = q.receive(QueueName::Dispatch, 10).await.expect("receive");
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].body.as_deref(), Some("m1"));
}

// ---- the sweeper's repair duty ------------------------------------------------------------------

/// Every stranded state a crash leaves, made in a real database, then one sweep pass: each is
/// queued again once (not again on the next pass), and the consumers finish the work with one
/// webhook per alert.
#[tokio::test]
async fn the_sweeper_re_drives_what_a_crash_strands() {
    let (app, engine) = app_with_engine().await;
    let (rx, base) = start_receiver().await;
    let agent_uuid = agent(
        &app,
        json!({"name": "repair", "endpoint_url": format!("{base}/agents/repair"), "timeout_seconds": 2}),
    )
    .await;

    // 1. Enrichment lost: an alert with two indicators whose enrich messages are gone.
    let lost_enrich = ingest(
        &app,
        json!({"title": "lost enrich", "source_alert_id": "r-1", "ip": "185.220.101.47", "user": "jdoe@example.com"}),
    )
    .await;
    // 2. Dispatch lost: an alert without indicators (complete at ingest) whose dispatch message is
    //    gone.
    let lost_dispatch = ingest(&app, json!({"title": "lost dispatch", "source_alert_id": "r-2"})).await;
    let links = app
        .scalar_i64("SELECT count(*) FROM alert_indicators WHERE enrichment_state = 'pending'")
        .await as usize;
    assert!(links >= 2, "{links}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(lose_messages(&app, QueueName::Enrich), links);
    assert_eq!(lose_messages(&app, QueueName::Dispatch), 1);
    // 3. A delivery row whose first attempt never happened, and 4. a retry longer than SQS can
    //    delay that is now due (its last attempt failed an hour ago).
    let no_attempt = ingest(&app, json!({"title": "no attempt", "source_alert_id": "r-3"})).await;
    let due_retry = ingest(&app, json!({"title": "due retry", "source_alert_id": "r-4"})).await;
    assert_eq!(lose_messages(&app, QueueName::Dispatch), 2);
    exec(
        &app,
        &format!(
            "UPDATE alert_indicators SET created_at = now() - interval '1 hour';
             UPDATE alerts SET enriched_at = now() - interval '1 hour' WHERE uuid = '{lost_dispatch}';
             UPDATE alerts SET dispatched_at = now() WHERE uuid IN ('{no_attempt}', '{due_retry}');
             INSERT INTO deliveries (alert_id, agent_id, redrive_at)
                 SELECT a.id, g.id, now() - interval '1 minute' FROM alerts a, agents g
                 WHERE a.uuid = '{no_attempt}' AND g.uuid = '{agent_uuid}';
             INSERT INTO deliveries (alert_id, agent_id, status, attempts, last_status_code, next_attempt_at, redrive_at)
                 SELECT a.id, g.id, 'failed', 1, 503, now() - interval '1 second', now() - interval '1 second'
                 FROM alerts a, agents g WHERE a.uuid = '{due_retry}' AND g.uuid = '{agent_uuid}';"
        ),
    )
    .await;

    let report = sweep::run_with(&app.state.outbox, Duration::ZERO, repair_now())
        .await
        .expect("sweep");
    assert_eq!(report.links_redriven, links, "{report:?}");
    assert_eq!(report.alerts_redispatched, 1, "{report:?}");
    assert_eq!(report.deliveries_redriven, 2, "{report:?}");
    assert_eq!(
        app.queue.depth(QueueName::Enrich).await.unwrap().visible as usize,
        links
    );
    assert_eq!(app.queue.depth(QueueName::Dispatch).await.unwrap().visible, 3);
    // Marked: the next pass re-drives nothing (idempotent, bounded).
    let again = sweep::run_with(&app.state.outbox, Duration::ZERO, repair_now())
        .await
        .expect("sweep");
    assert_eq!(
        (
            again.links_redriven,
            again.alerts_redispatched,
            again.deliveries_redriven
        ),
        (0, 0, 0),
        "{again:?}"
    );

    // The consumers finish everything: each alert reaches the agent exactly once.
    let cancel = app.spawn_consumers(Some(&engine));
    wait_for(
        &app,
        "links still pending",
        "SELECT count(*) FROM alert_indicators WHERE enrichment_state = 'pending'",
        0,
        30,
    )
    .await;
    wait_for(
        &app,
        "alerts delivered",
        "SELECT count(*) FROM deliveries WHERE status = 'delivered'",
        4,
        30,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cancel.cancel();
    let hits = rx.hits("repair");
    assert_eq!(hits.len(), 4, "{hits:?}");
    assert_eq!(hits.iter().collect::<HashSet<_>>().len(), 4, "one webhook id each");
    assert_eq!(
        app.scalar_i64(&format!(
            "SELECT count(*) FROM alerts WHERE uuid = '{lost_enrich}' AND enrichment_status = 'Enriched'"
        ))
        .await,
        1,
        "the alert whose enrichment was lost is enriched, not dispatched half-done"
    );
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM alerts WHERE dispatched_at IS NULL")
            .await,
        0
    );
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM deliveries WHERE redrive_at IS NOT NULL")
            .await,
        0,
        "finished deliveries are not re-driven"
    );
}

// ---- the retry schedule -------------------------------------------------------------------------

#[tokio::test]
async fn retries_follow_the_agent_schedule_and_long_waits_come_back_through_the_sweeper() {
    let app = TestApp::start().await;
    let (rx, base) = start_receiver().await;

    // The defaults span more than a day; a schedule is per agent, validated, and resettable.
    let plain = agent(
        &app,
        json!({"name": "plain", "endpoint_url": format!("{base}/agents/plain")}),
    )
    .await;
    let (_, v) = admin(&app, reqwest::Method::GET, &format!("/v1/agents/{plain}"), None).await;
    assert_eq!(v["data"]["retry_count"], json!(7));
    assert_eq!(v["data"]["retry_schedule"], Value::Null);
    for bad in [
        json!([]),
        json!([0]),
        json!([604801]),
        json!(["5"]),
        json!(5),
        json!(vec![5; 21]),
    ] {
        let (status, v) = admin(
            &app,
            reqwest::Method::PATCH,
            &format!("/v1/agents/{plain}"),
            Some(json!({"retry_schedule": bad})),
        )
        .await;
        assert_eq!(status, 422, "{bad}: {v}");
        assert_eq!(v["error"]["code"], json!("VALIDATION_ERROR"), "{v}");
    }
    let (status, v) = admin(
        &app,
        reqwest::Method::PATCH,
        &format!("/v1/agents/{plain}"),
        Some(json!({"retry_schedule": [60, 3600]})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["retry_schedule"], json!([60, 3600]));
    let (_, v) = admin(
        &app,
        reqwest::Method::PATCH,
        &format!("/v1/agents/{plain}"),
        Some(json!({"retry_schedule": null, "is_active": false})),
    )
    .await;
    assert_eq!(v["data"]["retry_schedule"], Value::Null);

    // An agent down for longer than SQS can delay a message: the retry waits 2000 s as a due
    // time, with no queue message; the sweeper queues it once due; same webhook id.
    agent(
        &app,
        json!({"name": "slow", "endpoint_url": format!("{base}/agents/slow"), "retry_schedule": [2000]}),
    )
    .await;
    rx.answer("slow", &[503, 200]);
    let cancel = app.spawn_consumers(None);
    let alert = ingest(&app, json!({"title": "agent down", "source_alert_id": "s-1"})).await;
    wait_for(
        &app,
        "failed deliveries",
        "SELECT count(*) FROM deliveries WHERE status = 'failed'",
        1,
        20,
    )
    .await;
    let c = app.db.pool.get().await.unwrap();
    let row = c
        .query_one(
            "SELECT EXTRACT(EPOCH FROM next_attempt_at - now())::float8, EXTRACT(EPOCH FROM redrive_at - next_attempt_at)::float8
             FROM deliveries",
            &[],
        )
        .await
        .unwrap();
    let (wait, redrive_gap): (f64, f64) = (row.get(0), row.get(1));
    assert!(
        (1700.0..=2000.0).contains(&wait),
        "waits the schedule's step (less jitter): {wait}"
    );
    assert!(redrive_gap.abs() < 1.0, "the sweeper takes it when due: {redrive_gap}");
    let d = app.queue.depth(QueueName::Dispatch).await.unwrap();
    assert_eq!(d.total(), 0, "no message can wait that long: {d:?}");
    let report = sweep::run_with(&app.state.outbox, Duration::ZERO, repair_now())
        .await
        .expect("sweep");
    assert_eq!(report.deliveries_redriven, 0, "not due yet");

    // Time passes.
    exec(
        &app,
        "UPDATE deliveries SET next_attempt_at = now() - interval '1 second', redrive_at = now() - interval '1 second'",
    )
    .await;
    let report = sweep::run_with(&app.state.outbox, Duration::ZERO, repair_now())
        .await
        .expect("sweep");
    assert_eq!(report.deliveries_redriven, 1);
    wait_for(
        &app,
        "delivered",
        "SELECT count(*) FROM deliveries WHERE status = 'delivered' AND attempts = 2",
        1,
        20,
    )
    .await;
    cancel.cancel();
    let hits = rx.hits("slow");
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0], hits[1], "the webhook id stays the same across retries");
    let _ = alert;
}

// ---- database faults while recording ----------------------------------------------------------

/// A fault that fails the statement recording an attempt (attempts goes up) with a transient
/// error (serialization failure) while `test_fault.active` is true.
async fn install_record_fault(app: &TestApp) {
    exec(
        app,
        "CREATE TABLE test_fault (active boolean NOT NULL);
         INSERT INTO test_fault VALUES (false);
         CREATE FUNCTION test_fail_record() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.attempts > OLD.attempts AND (SELECT active FROM test_fault) THEN
                 RAISE EXCEPTION 'injected fault' USING ERRCODE = '40001';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER test_fail_record BEFORE UPDATE ON deliveries
             FOR EACH ROW EXECUTE FUNCTION test_fail_record();",
    )
    .await;
}

/// Sends one alert to `agent_path` with the fault on, lifts it `outage` after the webhook
/// arrived, and returns how long delivery took and the webhook ids the agent saw.
async fn deliver_through_fault(
    app: &TestApp,
    rx: &Receiver,
    agent_path: &str,
    source_alert_id: &str,
    outage: Duration,
) -> (Duration, Vec<String>) {
    exec(app, "UPDATE test_fault SET active = true").await;
    let started = Instant::now();
    ingest(app, json!({"title": "db fault", "source_alert_id": source_alert_id})).await;
    let until = Instant::now() + Duration::from_secs(20);
    while rx.hits(agent_path).is_empty() {
        assert!(Instant::now() < until, "no webhook");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(outage).await;
    exec(app, "UPDATE test_fault SET active = false").await;
    wait_for(
        app,
        "delivered",
        &format!(
            "SELECT count(*) FROM deliveries d JOIN alerts a ON a.id = d.alert_id
             WHERE a.source_alert_id = '{source_alert_id}' AND d.status = 'delivered'"
        ),
        1,
        25,
    )
    .await;
    let took = started.elapsed();
    // A second send would come once the claim (timeout 1 s + 30 s) ran out; wait past the
    // in-process retries to be sure none is coming sooner.
    tokio::time::sleep(Duration::from_secs(3)).await;
    (took, rx.hits(agent_path))
}

#[tokio::test]
async fn a_database_fault_after_the_send_retries_in_seconds_and_never_sends_twice() {
    let app = TestApp::start().await;
    install_record_fault(&app).await;
    let (rx, base) = start_receiver().await;
    agent(
        &app,
        json!({"name": "once", "endpoint_url": format!("{base}/agents/once"), "timeout_seconds": 1}),
    )
    .await;
    let cancel = app.spawn_consumers(None);

    // A blip shorter than the in-handler retries.
    let (took, hits) = deliver_through_fault(&app, &rx, "once", "f-1", Duration::from_millis(800)).await;
    assert_eq!(hits.len(), 1, "sent once: {hits:?}");
    assert!(took < Duration::from_secs(10), "recorded within seconds: {took:?}");

    // An outage longer than them: the outcome is kept and recorded by the redelivered message
    // (after a short backoff, not the 30 s visibility timeout), without a second send.
    exec(
        &app,
        "UPDATE agents SET name = 'once-2', endpoint_url = replace(endpoint_url, '/once', '/twice')",
    )
    .await;
    let (took, hits) = deliver_through_fault(&app, &rx, "twice", "f-2", Duration::from_secs(9)).await;
    cancel.cancel();
    assert_eq!(hits.len(), 1, "sent once: {hits:?}");
    assert!(
        took < Duration::from_secs(25),
        "recorded soon after the outage: {took:?}"
    );
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM deliveries WHERE status = 'delivered' AND attempts = 1")
            .await,
        2
    );
}
