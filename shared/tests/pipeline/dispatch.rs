//! Dispatch end to end: alerts ingested through HTTP run through the enrich and dispatch queue
//! consumers (the Lambda handlers), providers answered by the simulator, and agents registered
//! through the API receive signed webhooks at a local receiver that verifies every signature
//! the way an agent would (Standard Webhooks) and counts what it accepted.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use calseta::dispatch::{signing, DispatchSettings, Dispatcher};
use calseta::enrich::engine::{Engine, EngineSettings};
use calseta::enrich::registry::ProviderSet;
use calseta::enrich::simulator;
use calseta::net::ssrf::OutboundPolicy;
use calseta::queue::messages::DispatchRequest;
use calseta::testing::TestApp;
use secrecy::SecretString;
use serde_json::{json, Value};

// ---- the agent side --------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Hit {
    webhook_id: String,
    signature_ok: bool,
    answered: u16,
    body: Value,
}

#[derive(Clone, Default)]
struct Receiver {
    /// Per agent path: the signing secrets it accepts, the statuses to answer (front first;
    /// the last one repeats), and what it received.
    secrets: Arc<Mutex<HashMap<String, Vec<SecretString>>>>,
    script: Arc<Mutex<HashMap<String, Vec<u16>>>>,
    hits: Arc<Mutex<HashMap<String, Vec<Hit>>>>,
}

impl Receiver {
    fn answer(&self, path: &str, statuses: &[u16]) {
        self.script.lock().unwrap().insert(path.into(), statuses.to_vec());
    }
    fn trust(&self, path: &str, secret: &str) {
        self.secrets
            .lock()
            .unwrap()
            .entry(path.into())
            .or_default()
            .push(SecretString::from(secret.to_string()));
    }
    fn hits(&self, path: &str) -> Vec<Hit> {
        self.hits.lock().unwrap().get(path).cloned().unwrap_or_default()
    }
    /// Deliveries the agent accepted (2xx), by webhook id.
    fn accepted(&self, path: &str) -> Vec<Hit> {
        self.hits(path).into_iter().filter(|h| h.answered < 300).collect()
    }
}

async fn receive(State(r): State<Receiver>, Path(agent): Path<String>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (id, ts, sig) = (h("webhook-id"), h("webhook-timestamp"), h("webhook-signature"));
    let now = chrono::Utc::now().timestamp();
    let secrets = r.secrets.lock().unwrap().get(&agent).cloned().unwrap_or_default();
    let signature_ok = ts.parse::<i64>().is_ok_and(|ts| {
        secrets
            .iter()
            .any(|s| signing::verify(s, &id, ts, &sig, &body, now).is_ok())
    });
    let answered = {
        let mut script = r.script.lock().unwrap();
        let list = script.entry(agent.clone()).or_insert_with(|| vec![200]);
        if list.len() > 1 {
            list.remove(0)
        } else {
            list[0]
        }
    };
    // An agent refuses what it cannot verify.
    let answered = if signature_ok { answered } else { 401 };
    r.hits.lock().unwrap().entry(agent).or_default().push(Hit {
        webhook_id: id,
        signature_ok,
        answered,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    StatusCode::from_u16(answered).unwrap()
}

fn receiver_app(r: Receiver) -> Router {
    Router::new().route("/agents/{agent}", post(receive)).with_state(r)
}

async fn start_receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = receiver_app(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, base)
}

// ---- the stack ---------------------------------------------------------------------------------

struct Stack {
    app: TestApp,
    _engine: Arc<Engine>,
    cancel: tokio_util::sync::CancellationToken,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn stack() -> Stack {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let sim = simulator::router_with(simulator::SimulatorOptions {
        rate_limit_every: None,
        retry_after_secs: 20,
    });
    tokio::spawn(async move { axum::serve(listener, sim).await });
    let providers = ProviderSet::simulated(&base, HashMap::new(), 16);
    let (app, engine) = TestApp::with_enrichment(providers, EngineSettings::default()).await;
    let cancel = app.spawn_consumers(Some(&engine));
    Stack {
        app,
        _engine: engine,
        cancel,
    }
}

impl Stack {
    async fn call(&self, method: reqwest::Method, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
        calseta::testing::call(&self.app, key, method, path, body).await
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let key = self.app.admin_key.clone();
        self.call(method, path, &key, body).await
    }

    /// Registers an agent; returns (uuid, signing secret).
    async fn agent(&self, body: Value) -> (String, String) {
        let (status, v) = self.admin(reqwest::Method::POST, "/v1/agents", Some(body)).await;
        assert_eq!(status, 201, "{v}");
        let secret = v["data"]["signing_secret"].as_str().unwrap().to_string();
        assert!(secret.starts_with("whsec_"));
        (v["data"]["uuid"].as_str().unwrap().to_string(), secret)
    }

    async fn ingest(&self, alert: Value) -> String {
        let (status, v) = self
            .admin(reqwest::Method::POST, "/v1/ingest/generic", Some(alert))
            .await;
        assert_eq!(status, 202, "{v}");
        v["data"]["items"][0]["alert_uuid"].as_str().unwrap().to_string()
    }

    async fn deliveries(&self, agent: &str) -> Vec<Value> {
        let (status, v) = self
            .admin(reqwest::Method::GET, &format!("/v1/agents/{agent}/deliveries"), None)
            .await;
        assert_eq!(status, 200, "{v}");
        v["data"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `cond` holds on the agent's deliveries (or fails after `secs`).
    async fn wait_deliveries(&self, agent: &str, secs: u64, cond: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            let d = self.deliveries(agent).await;
            if cond(&d) {
                return d;
            }
            assert!(
                Instant::now() < until,
                "deliveries never reached the expected state: {d:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn status_of(d: &[Value], alert: &str) -> Option<String> {
    d.iter()
        .find(|x| x["alert_uuid"] == alert)
        .and_then(|x| x["status"].as_str())
        .map(str::to_string)
}

fn alert(id: &str, ip: &str, user: &str) -> Value {
    json!({"title": "Impossible Travel Detected", "severity": "high", "source_alert_id": id,
           "rule_id": "impossible-travel-v1", "rule_name": "Impossible Travel",
           "mitre_tactics": ["TA0001"], "mitre_techniques": ["T1078"], "user": user, "ip": ip,
           "tags": ["identity"]})
}

// ---- tests -------------------------------------------------------------------------------------

#[tokio::test]
async fn a_matching_agent_gets_one_signed_payload_and_re_enrichment_does_not_redeliver() {
    let s = stack().await;
    let (rx, base) = start_receiver().await;
    let (triage, secret) = s
        .agent(
            json!({"name": "triage", "endpoint_url": format!("{base}/agents/triage"),
                      "trigger_on_sources": ["generic"], "trigger_on_severities": ["High", "Critical"],
                      "auth_header_name": "X-Agent-Token", "auth_header_value": "agent-token-1"}),
        )
        .await;
    rx.trust("triage", &secret);
    let (other, other_secret) = s
        .agent(
            json!({"name": "splunk-only", "endpoint_url": format!("{base}/agents/other"),
                      "trigger_on_sources": ["splunk"]}),
        )
        .await;
    rx.trust("other", &other_secret);

    let first = s.ingest(alert("d-1", "45.155.205.233", "jdoe@example.com")).await;
    let d = s
        .wait_deliveries(&triage, 20, |d| status_of(d, &first).as_deref() == Some("delivered"))
        .await;
    let got = rx.accepted("triage");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].signature_ok);
    // The webhook id is the delivery id, so agents can de-duplicate.
    assert_eq!(json!(got[0].webhook_id), d[0]["uuid"]);
    assert_eq!(d[0]["attempts"], json!(1));
    assert_eq!(d[0]["last_status_code"], json!(200));
    let body = &got[0].body;
    assert_eq!(body["event"], json!("alert.enriched"));
    assert_eq!(body["alert"]["uuid"], json!(first));
    assert!(body["indicators"].as_array().is_some_and(|i| !i.is_empty()));
    assert!(body["detection_rule"]["mitre_tactics"].is_array());
    assert_eq!(body["alert"]["enrichment_status"], json!("Enriched"));
    // The agent's auth header went along; the non-matching agent got nothing.
    assert!(rx.hits("other").is_empty());
    assert!(s.deliveries(&other).await.is_empty());
    let events = s
        .app
        .scalar_i64("SELECT count(*) FROM activity_events WHERE event_type = 'agent_webhook_dispatched'")
        .await;
    assert_eq!(events, 1);

    // A second alert sharing the IP lists the first in past_alerts.
    let second = s.ingest(alert("d-2", "45.155.205.233", "asmith@example.com")).await;
    s.wait_deliveries(&triage, 20, |d| status_of(d, &second).as_deref() == Some("delivered"))
        .await;
    let got = rx.accepted("triage");
    let p2 = &got.iter().find(|h| h.body["alert"]["uuid"] == second).unwrap().body;
    let past = p2["past_alerts"].as_array().unwrap();
    assert_eq!(past[0]["uuid"], json!(first));
    assert_eq!(past[0]["indicators"], json!(["45.155.205.233"]));

    // Enrichment completing again (a re-enrich, a duplicate message) does not re-deliver.
    let alert_id = s
        .app
        .scalar_i64(&format!("SELECT id FROM alerts WHERE uuid = '{first}'"))
        .await;
    s.app
        .dispatcher
        .dispatch_alert(&DispatchRequest {
            v: 1,
            alert_id,
            alert_uuid: first.parse().unwrap(),
            reason: "enriched".into(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.accepted("triage").len(), 2);

    // So does re-enrichment through the API: the alert completes again, nothing is re-sent.
    let (status, v) = s
        .admin(reqwest::Method::POST, &format!("/v1/alerts/{first}/enrich"), None)
        .await;
    assert_eq!(status, 202, "{v}");
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = s
            .admin(reqwest::Method::GET, &format!("/v1/alerts/{first}"), None)
            .await;
        if v["data"]["enrichment_status"] == "Enriched" {
            break;
        }
        assert!(Instant::now() < until, "re-enrichment never completed: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.accepted("triage").len(), 2, "re-enrichment does not re-deliver");

    // trigger-agents re-sends on request, as a new delivery id.
    let (status, v) = s
        .admin(
            reqwest::Method::POST,
            &format!("/v1/alerts/{first}/trigger-agents"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["data"], json!({"queued_agent_count": 1, "agent_names": ["triage"]}));
    let until = Instant::now() + Duration::from_secs(20);
    while rx.accepted("triage").len() < 3 {
        assert!(Instant::now() < until, "trigger-agents never delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids: Vec<String> = rx.accepted("triage").iter().map(|h| h.webhook_id.clone()).collect();
    assert_ne!(ids[0], ids[2], "a triggered send is a new delivery");
    assert!(rx.accepted("triage").iter().all(|h| h.signature_ok));
}

#[tokio::test]
async fn a_receiver_that_is_down_then_up_gets_the_delivery_exactly_once() {
    let s = stack().await;
    // A port with nothing listening yet.
    let spare = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = spare.local_addr().unwrap();
    drop(spare);
    let (agent, secret) = s
        .agent(json!({"name": "flaky", "endpoint_url": format!("http://{addr}/agents/flaky"), "retry_count": 5}))
        .await;
    let a = s.ingest(alert("down-1", "185.220.101.47", "jdoe@example.com")).await;
    let d = s
        .wait_deliveries(&agent, 20, |d| status_of(d, &a).as_deref() == Some("failed"))
        .await;
    assert!(d[0]["last_error"].as_str().unwrap().contains("connection"), "{d:#?}");
    assert!(d[0]["next_attempt_at"].is_string());

    // The agent comes up on the same address.
    let rx = Receiver::default();
    rx.trust("flaky", &secret);
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let app = receiver_app(rx.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let d = s
        .wait_deliveries(&agent, 30, |d| status_of(d, &a).as_deref() == Some("delivered"))
        .await;
    // Let any duplicate or stale message run out before counting.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = rx.accepted("flaky");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(json!(got[0].webhook_id), d[0]["uuid"]);
    assert!(d[0]["attempts"].as_i64().unwrap() >= 2);
    assert_eq!(s.deliveries(&agent).await[0]["status"], json!("delivered"));
}

#[tokio::test]
async fn client_errors_dead_letter_at_once_server_errors_retry_and_a_replay_keeps_the_webhook_id() {
    let s = stack().await;
    let (rx, base) = start_receiver().await;
    let (rejecting, s1) = s
        .agent(json!({"name": "rejecting", "endpoint_url": format!("{base}/agents/rejecting"), "retry_count": 3}))
        .await;
    let (failing, s2) = s
        .agent(json!({"name": "failing", "endpoint_url": format!("{base}/agents/failing"), "retry_count": 1}))
        .await;
    rx.trust("rejecting", &s1);
    rx.trust("failing", &s2);
    rx.answer("rejecting", &[422]);
    rx.answer("failing", &[503]);
    let a = s.ingest(alert("e-1", "45.155.205.233", "jdoe@example.com")).await;

    // 4xx: the same request would be refused again → dead after one attempt.
    let d = s
        .wait_deliveries(&rejecting, 20, |d| status_of(d, &a).as_deref() == Some("dead"))
        .await;
    assert_eq!(d[0]["attempts"], json!(1));
    assert_eq!(d[0]["last_status_code"], json!(422));
    // 5xx: retried (retry_count 1 → two attempts), then dead.
    let d = s
        .wait_deliveries(&failing, 20, |d| status_of(d, &a).as_deref() == Some("dead"))
        .await;
    assert_eq!(d[0]["attempts"], json!(2));
    assert_eq!(d[0]["last_status_code"], json!(503));
    assert!(d[0]["last_error"].as_str().unwrap().starts_with("HTTP 503"));
    assert_eq!(rx.hits("failing").len(), 2);
    assert_eq!(rx.hits("rejecting").len(), 1);

    // Dead deliveries are listed by status and replayable with the same webhook id.
    let (status, dead) = s
        .admin(
            reqwest::Method::GET,
            &format!("/v1/agents/{failing}/deliveries?status=dead"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(dead["meta"]["total"], json!(1));
    let delivery = dead["data"][0]["uuid"].as_str().unwrap().to_string();
    rx.answer("failing", &[200]);
    let (status, v) = s
        .admin(
            reqwest::Method::POST,
            &format!("/v1/deliveries/{delivery}/replay"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{v}");
    let d = s
        .wait_deliveries(&failing, 20, |d| status_of(d, &a).as_deref() == Some("delivered"))
        .await;
    assert_eq!(d[0]["replays"], json!(1));
    let hits = rx.hits("failing");
    assert_eq!(hits.len(), 3);
    assert!(
        hits.iter().all(|h| h.webhook_id == delivery),
        "every attempt and the replay share the id"
    );
    let (status, _) = s
        .admin(
            reqwest::Method::GET,
            &format!("/v1/agents/{failing}/deliveries?status=sideways"),
            None,
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = s
        .admin(
            reqwest::Method::POST,
            "/v1/deliveries/00000000-0000-0000-0000-000000000000/replay",
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn every_acknowledged_alert_reaches_its_agent() {
    let s = stack().await;
    let (rx, base) = start_receiver().await;
    let (agent, secret) = s
        .agent(json!({"name": "all", "endpoint_url": format!("{base}/agents/all")}))
        .await;
    rx.trust("all", &secret);
    // Concurrent ingests, with and without indicators, some sharing indicators.
    let n = 40;
    let mut tasks = Vec::new();
    for i in 0..n {
        let body = if i % 4 == 0 {
            json!({"title": format!("No indicators {i}"), "severity": "low", "source_alert_id": format!("ack-{i}")})
        } else {
            alert(
                &format!("ack-{i}"),
                &format!("45.155.205.{}", i % 7 + 1),
                &format!("u{}@example.com", i % 3),
            )
        };
        let http = s.app.http.clone();
        let url = s.app.url("/v1/ingest/generic");
        let key = s.app.admin_key.clone();
        tasks.push(tokio::spawn(async move {
            let r = http.post(url).bearer_auth(key).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 202);
            let v: Value = r.json().await.unwrap();
            v["data"]["items"][0]["alert_uuid"].as_str().unwrap().to_string()
        }));
    }
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.push(t.await.unwrap());
    }
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let got: std::collections::HashSet<String> = rx
            .accepted("all")
            .iter()
            .filter_map(|h| h.body["alert"]["uuid"].as_str().map(str::to_string))
            .collect();
        if acknowledged.iter().all(|a| got.contains(a)) {
            break;
        }
        let missing: Vec<&String> = acknowledged.iter().filter(|a| !got.contains(*a)).collect();
        assert!(
            Instant::now() < until,
            "{} acknowledged alerts never reached the agent: {missing:?}",
            missing.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rx.accepted("all").len(), n, "each alert exactly once");
    let (_, v) = s
        .admin(
            reqwest::Method::GET,
            &format!("/v1/agents/{agent}/deliveries?status=delivered&page_size=1"),
            None,
        )
        .await;
    assert_eq!(v["meta"]["total"], json!(n));
    assert_eq!(v["meta"]["total_pages"], json!(n));
}

#[tokio::test]
async fn agents_through_http_validation_secrets_rotation_test_and_scopes() {
    let s = stack().await;
    let (rx, base) = start_receiver().await;
    let post = reqwest::Method::POST;
    // Validation: the standard envelope, field paths.
    for (body, field) in [
        (json!({"endpoint_url": format!("{base}/agents/x")}), "body.name"),
        (json!({"name": "x"}), "body.endpoint_url"),
        (
            json!({"name": "x", "endpoint_url": format!("{base}/agents/x"), "trigger_on_severities": ["high"]}),
            "body.trigger_on_severities",
        ),
        (
            json!({"name": "x", "endpoint_url": format!("{base}/agents/x"), "timeout_seconds": 301}),
            "body.timeout_seconds",
        ),
        (
            json!({"name": "x", "endpoint_url": format!("{base}/agents/x"), "auth_header_name": "X-Token"}),
            "body.auth_header_value",
        ),
        (
            json!({"name": "x", "endpoint_url": format!("{base}/agents/x"), "auth_header_name": "webhook-id", "auth_header_value": "v"}),
            "body.auth_header_name",
        ),
        (
            json!({"name": "x", "endpoint_url": format!("{base}/agents/x"), "trigger_filter": {"match_any": [{"field": "nope", "op": "eq", "value": 1}]}}),
            "body.trigger_filter.match_any[0]",
        ),
    ] {
        let (status, v) = s.admin(post.clone(), "/v1/agents", Some(body)).await;
        assert_eq!(status, 422, "{v}");
        assert_eq!(v["error"]["code"], json!("VALIDATION_ERROR"));
        let f = v["error"]["details"]["errors"][0]["field"].as_str().unwrap();
        assert!(f.starts_with(field), "{f} vs {field}");
    }
    let (status, v) = s
        .admin(
            post.clone(),
            "/v1/agents",
            Some(json!({"name": "x", "endpoint_url": "ftp://example.com/"})),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (400, json!("INVALID_ENDPOINT_URL"))
    );
    let (status, v) = s
        .admin(
            post.clone(),
            "/v1/agents",
            Some(json!({"name": "x", "endpoint_url": "http://169.254.169.254/latest/meta-data/"})),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (400, json!("INVALID_ENDPOINT_URL"))
    );

    // Create: the secret once; the auth header value never comes back.
    let (uuid, secret) = s
        .agent(
            json!({"name": "responder", "endpoint_url": format!("{base}/agents/responder"),
                      "auth_header_name": "Authorization", "auth_header_value": "Bearer agent-secret-value",
                      "max_payload_bytes": 4096, "documentation": "Handles identity alerts."}),
        )
        .await;
    let (status, v) = s.admin(reqwest::Method::GET, &format!("/v1/agents/{uuid}"), None).await;
    assert_eq!(status, 200);
    let text = v.to_string();
    assert!(!text.contains("signing_secret") && !text.contains("agent-secret-value") && !text.contains(&secret));
    assert_eq!(v["data"]["auth_header_name"], json!("Authorization"));
    assert_eq!(v["data"]["timeout_seconds"], json!(30));
    assert_eq!(v["data"]["retry_count"], json!(7), "the default schedule spans a day");

    // Test delivery: signed, not stored, reported.
    rx.trust("responder", &secret);
    let (status, v) = s.admin(post.clone(), &format!("/v1/agents/{uuid}/test"), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["delivered"], json!(true));
    assert_eq!(v["data"]["status_code"], json!(200));
    let hit = &rx.hits("responder")[0];
    assert!(hit.signature_ok && hit.body["test"] == json!(true));
    assert!(s.deliveries(&uuid).await.is_empty());

    // Rotation: a new secret once; for 24 h both sign, so an agent with either verifies.
    let (status, v) = s
        .admin(
            reqwest::Method::PATCH,
            &format!("/v1/agents/{uuid}"),
            Some(json!({"rotate_signing_secret": true, "description": "rotated"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let new_secret = v["data"]["signing_secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    assert_eq!(v["data"]["description"], json!("rotated"));
    let only_new = Receiver::default();
    only_new.trust("responder", &new_secret);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let new_base = format!("http://{}", listener.local_addr().unwrap());
    let app = receiver_app(only_new.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (status, _) = s
        .admin(
            reqwest::Method::PATCH,
            &format!("/v1/agents/{uuid}"),
            Some(json!({"endpoint_url": format!("{new_base}/agents/responder")})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, v) = s.admin(post.clone(), &format!("/v1/agents/{uuid}/test"), None).await;
    assert_eq!(v["data"]["delivered"], json!(true), "{v}");
    let sig = &only_new.hits("responder")[0];
    assert!(sig.signature_ok);
    // The old secret still verifies the same request too (two signatures in the header).
    let (_, v) = s
        .admin(
            reqwest::Method::PATCH,
            &format!("/v1/agents/{uuid}"),
            Some(json!({"endpoint_url": format!("{base}/agents/responder")})),
        )
        .await;
    assert!(v["data"]["uuid"].is_string());
    let (_, v) = s.admin(post.clone(), &format!("/v1/agents/{uuid}/test"), None).await;
    assert_eq!(v["data"]["delivered"], json!(true), "old secret still valid: {v}");

    // A refused test reports the status without retrying.
    rx.answer("responder", &[500]);
    let (_, v) = s.admin(post.clone(), &format!("/v1/agents/{uuid}/test"), None).await;
    assert_eq!(v["data"]["delivered"], json!(false));
    assert_eq!(v["data"]["status_code"], json!(500));
    assert!(v["data"]["error"].as_str().unwrap().starts_with("HTTP 500"));

    // Scopes: agents:read lists but cannot write; alerts:read sees nothing here.
    let reader = s.app.create_key("reader", &["agents:read"], None, None).await;
    let (status, v) = s.call(reqwest::Method::GET, "/v1/agents", &reader, None).await;
    assert_eq!(status, 200);
    assert_eq!(v["meta"]["total"], json!(1));
    let (status, v) = s
        .call(
            post.clone(),
            "/v1/agents",
            &reader,
            Some(json!({"name": "n", "endpoint_url": format!("{base}/x")})),
        )
        .await;
    assert_eq!((status, v["error"]["code"].clone()), (403, json!("FORBIDDEN")));
    let alerts_only = s.app.create_key("alerts", &["alerts:read"], None, None).await;
    let (status, _) = s.call(reqwest::Method::GET, "/v1/agents", &alerts_only, None).await;
    assert_eq!(status, 403);
    let (status, _) = s.call(reqwest::Method::GET, "/v1/agents", "cai_nope", None).await;
    assert_eq!(status, 401);

    // Delete.
    let (status, _) = s
        .admin(reqwest::Method::DELETE, &format!("/v1/agents/{uuid}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, v) = s.admin(reqwest::Method::GET, &format!("/v1/agents/{uuid}"), None).await;
    assert_eq!((status, v["error"]["code"].clone()), (404, json!("NOT_FOUND")));
}

#[tokio::test]
async fn a_payload_budget_trims_but_keeps_ids_and_verdicts() {
    let s = stack().await;
    let (rx, base) = start_receiver().await;
    let c = s.app.db.pool.get().await.unwrap();
    c.batch_execute(&format!(
        "INSERT INTO context_documents (title, document_type, is_global, content) VALUES
            ('Company IR Plan', 'ir_plan', true, '{}')",
        "Contain the affected accounts. ".repeat(400)
    ))
    .await
    .unwrap();
    let (agent, secret) = s
        .agent(json!({"name": "small", "endpoint_url": format!("{base}/agents/small"), "max_payload_bytes": 3000}))
        .await;
    rx.trust("small", &secret);
    let a = s.ingest(alert("b-1", "185.220.101.47", "jdoe@example.com")).await;
    let d = s
        .wait_deliveries(&agent, 20, |d| status_of(d, &a).as_deref() == Some("delivered"))
        .await;
    let got = rx.accepted("small");
    let body = &got[0].body;
    let bytes = serde_json::to_vec(body).unwrap().len();
    assert!(bytes <= 3000, "{bytes} bytes: {body:#}");
    assert_eq!(d[0]["payload_bytes"], json!(bytes));
    assert!(body["_trimmed"].as_array().is_some_and(|t| !t.is_empty()), "{body}");
    assert_eq!(body["alert"]["uuid"], json!(a));
    assert!(body["alert"]["malice"].is_string());
    for i in body["indicators"].as_array().unwrap() {
        assert!(i["value"].is_string() && i["malice"].is_string(), "{i}");
    }
}

#[tokio::test]
async fn a_deployed_dispatcher_refuses_loopback_agents_at_delivery() {
    let s = stack().await;
    let (rx, base) = start_receiver().await;
    // Registered through the dev-style API (loopback allowed), delivered by a strict dispatcher.
    let (agent, secret) = s
        .agent(json!({"name": "local", "endpoint_url": format!("{base}/agents/local")}))
        .await;
    rx.trust("local", &secret);
    s.cancel.cancel();
    let strict = Dispatcher::new(
        s.app.db.pool.clone(),
        s.app.state.outbox.clone(),
        s.app.state.sealer.clone(),
        DispatchSettings {
            policy: OutboundPolicy::strict(),
            retry_schedule: vec![1],
        },
    );
    assert!(strict.check_endpoint(&format!("{base}/agents/local")).await.is_err());
    assert!(strict.check_endpoint("http://localhost:1/").await.is_err());
    let a = s
        .ingest(json!({"title": "t", "severity": "low", "source_alert_id": "ssrf-1"}))
        .await;
    let alert_id = s
        .app
        .scalar_i64(&format!("SELECT id FROM alerts WHERE uuid = '{a}'"))
        .await;
    strict
        .dispatch_alert(&DispatchRequest {
            v: 1,
            alert_id,
            alert_uuid: a.parse().unwrap(),
            reason: "enriched".into(),
        })
        .await
        .unwrap();
    let d = s.deliveries(&agent).await;
    assert_eq!(d[0]["status"], json!("dead"), "{d:#?}");
    assert!(d[0]["last_error"].as_str().unwrap().contains("outbound URL check"));
    assert!(rx.hits("local").is_empty(), "nothing reached the loopback address");
}

#[tokio::test]
async fn the_sample_lambda_event_is_handled_like_a_queue_delivery() {
    // events/dispatch-sqs.json: a dispatch request and a delivery retry whose rows do not exist
    // here — both are acknowledged (nothing to do), nothing is parked.
    let s = stack().await;
    s.cancel.cancel();
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(include_str!("../../../events/dispatch-sqs.json")).unwrap();
    assert_eq!(event.records.len(), 2);
    let runner = calseta::queue::batch::BatchRunner::new(
        calseta::queue::QueueName::Dispatch,
        Arc::new(s.app.queue.clone()),
        Arc::new(calseta::queue::batch::PgParker(s.app.db.pool.clone())),
        10,
    );
    let resp = s.app.dispatcher.handle_event(&runner, event).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(s.app.scalar_i64("SELECT count(*) FROM parked_messages").await, 0);
    // An unreadable body is parked, not retried.
    let mut bad = aws_lambda_events::event::sqs::SqsEvent::default();
    let mut m = aws_lambda_events::event::sqs::SqsMessage::default();
    m.message_id = Some("bad-1".into());
    m.body = Some("{not json".into());
    bad.records = vec![m];
    let resp = s.app.dispatcher.handle_event(&runner, bad).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(
        s.app
            .scalar_i64("SELECT count(*) FROM parked_messages WHERE queue = 'dispatch'")
            .await,
        1
    );
}

#[tokio::test]
async fn the_ingest_requests_trace_and_id_follow_the_alert_through_enrich_dispatch_and_retries() {
    // Ingest → enrich message (stored) → enrich → dispatch message (sent) → dispatch → a retry
    // message (stored): the retry still carries the ingest request's trace header and id, so
    // the chain passed them on at every hop.
    let s = stack().await;
    let (rx, base) = start_receiver().await;
    let (agent, secret) = s
        .agent(json!({"name": "flaky", "endpoint_url": format!("{base}/agents/flaky"), "retry_count": 2}))
        .await;
    rx.trust("flaky", &secret);
    rx.answer("flaky", &[503, 200]);
    let header = "Root=1-6753a1b2-00112233445566778899aabb;Parent=53995c3f42cd8ad8;Sampled=1";
    let resp = s
        .app
        .http
        .post(s.app.url("/v1/ingest/generic"))
        .bearer_auth(&s.app.admin_key)
        .header("x-request-id", "req-corr-1")
        .header("x-amzn-trace-id", header)
        .json(&alert("corr-1", "45.155.205.233", "jdoe@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["x-request-id"], "req-corr-1");
    let v: Value = resp.json().await.unwrap();
    let uuid = v["data"]["items"][0]["alert_uuid"].as_str().unwrap().to_owned();
    s.wait_deliveries(&agent, 30, |d| status_of(d, &uuid).as_deref() == Some("delivered"))
        .await;
    let carried = |queue: &str, body: &str| {
        format!(
            "SELECT count(*) FROM outbox WHERE queue = '{queue}' AND body LIKE '%{body}%'
               AND attributes->>'alert_uuid' = '{uuid}' AND attributes->>'request_id' = 'req-corr-1'
               AND attributes->>'trace_header' = '{header}'"
        )
    };
    assert!(
        s.app.scalar_i64(&carried("enrich", "indicator_id")).await >= 1,
        "enrich messages"
    );
    assert_eq!(
        s.app.scalar_i64(&carried("dispatch", "delivery_id")).await,
        1,
        "the retry message"
    );
}
