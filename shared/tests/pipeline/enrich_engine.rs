//! The enrichment engine end to end: alerts ingested through HTTP, the `enrich` queue drained
//! through the same handler the Lambda runs, providers answered by the provider simulator
//! (each provider's real paths, credentials checks and JSON shapes) behind a layer that counts
//! every upstream request and can inject faults (5xx, 401, 429 with `Retry-After`).

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use calseta::enrich::engine::{Engine, EngineSettings};
use calseta::enrich::governor::Budget;
use calseta::enrich::registry::ProviderSet;
use calseta::enrich::simulator::{self, SimulatorOptions, DEMO_URL, EICAR_MD5, EICAR_SHA1, EICAR_SHA256};
use calseta::queue::batch::{BatchRunner, PgParker};
use calseta::queue::messages::{DispatchRequest, EnrichRequest};
use calseta::queue::{Queue, QueueName};
use calseta::testing::TestApp;
use serde_json::{json, Value};
use url::Url;

// ---- the upstream: simulator + counting + faults ------------------------------------------

#[derive(Clone)]
enum Fault {
    /// Answer with this status (and `Retry-After`, if given) instead of the simulator.
    Status(u16, Option<u64>),
    /// Like `Status`, for the first `n` requests only.
    First(u64, u16, Option<u64>),
}

#[derive(Clone, Default)]
struct Upstream {
    calls: Arc<Mutex<Vec<(String, String, std::time::Instant)>>>,
    faults: Arc<Mutex<HashMap<String, Fault>>>,
}

impl Upstream {
    /// Requests seen per provider (first path segment), token requests included.
    fn count(&self, provider: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == provider)
            .count()
    }

    fn total(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    fn paths(&self) -> Vec<String> {
        self.calls.lock().unwrap().iter().map(|(_, p, _)| p.clone()).collect()
    }

    fn fault(&self, provider: &str, f: Fault) {
        self.faults.lock().unwrap().insert(provider.to_string(), f);
    }
}

async fn start_upstream(opts: SimulatorOptions) -> (Upstream, Url) {
    let up = Upstream::default();
    let layer_state = up.clone();
    let app = simulator::router_with(opts).layer(axum::middleware::from_fn(move |req: Request, next: Next| {
        let up = layer_state.clone();
        async move {
            let path = req.uri().path().to_string();
            let provider = path.trim_start_matches('/').split('/').next().unwrap_or("").to_string();
            let n = {
                let mut calls = up.calls.lock().unwrap();
                calls.push((provider.clone(), path.clone(), std::time::Instant::now()));
                calls.iter().filter(|(p, _, _)| *p == provider).count() as u64
            };
            let fault = up.faults.lock().unwrap().get(&provider).cloned();
            let injected = match fault {
                Some(Fault::Status(code, ra)) => Some((code, ra)),
                Some(Fault::First(k, code, ra)) if n <= k => Some((code, ra)),
                _ => None,
            };
            if let Some((code, ra)) = injected {
                let status = StatusCode::from_u16(code).unwrap();
                let mut r = (
                    status,
                    axum::Json(json!({"error": {"code": "InjectedError", "message": "injected by the test"}})),
                )
                    .into_response();
                if let Some(s) = ra {
                    r.headers_mut()
                        .insert("retry-after", HeaderValue::from_str(&s.to_string()).unwrap());
                }
                return r;
            }
            let r: Response = next.run(req).await;
            r
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (up, base)
}

fn quiet() -> SimulatorOptions {
    SimulatorOptions {
        rate_limit_every: None,
        retry_after_secs: 20,
    }
}

fn fast_settings() -> EngineSettings {
    EngineSettings {
        backoff_base: Duration::from_millis(5),
        ..EngineSettings::default()
    }
}

struct Rig {
    app: TestApp,
    engine: Arc<Engine>,
    up: Upstream,
    runner: BatchRunner,
}

async fn rig_with(budgets: HashMap<String, Budget>, opts: SimulatorOptions, settings: EngineSettings) -> Rig {
    let (up, base) = start_upstream(opts).await;
    let providers = ProviderSet::simulated(&base, budgets, 16);
    let (app, engine) = TestApp::with_enrichment(providers, settings).await;
    let runner = BatchRunner::new(
        QueueName::Enrich,
        Arc::new(app.queue.clone()),
        Arc::new(PgParker(app.db.pool.clone())),
        10,
    );
    Rig {
        app,
        engine,
        up,
        runner,
    }
}

async fn rig() -> Rig {
    rig_with(HashMap::new(), quiet(), fast_settings()).await
}

impl Rig {
    async fn ingest(&self, alerts: Value) -> Vec<String> {
        let r = self
            .app
            .http
            .post(self.app.url("/v1/ingest/generic"))
            .bearer_auth(&self.app.admin_key)
            .json(&alerts)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let body: Value = r.json().await.unwrap();
        body["data"]["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["alert_uuid"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Receives and handles enrich messages until none is visible; returns the number of
    /// messages that asked to come back later.
    async fn drain(&self) -> usize {
        let mut deferred = 0;
        loop {
            let records = self.app.queue.receive(QueueName::Enrich, 10);
            if records.is_empty() {
                return deferred;
            }
            let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
            let receipts: Vec<(String, String)> = records
                .iter()
                .map(|r| (r.message_id.clone().unwrap(), r.receipt_handle.clone().unwrap()))
                .collect();
            event.records = records;
            let resp = self.engine.handle_event(&self.runner, event).await;
            let failed: Vec<&str> = resp
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.as_str())
                .collect();
            deferred += failed.len();
            for (id, receipt) in &receipts {
                if !failed.contains(&id.as_str()) {
                    self.app.queue.delete(QueueName::Enrich, receipt);
                }
            }
        }
    }

    fn dispatches(&self) -> Vec<DispatchRequest> {
        let mut out = Vec::new();
        loop {
            let rs = self.app.queue.receive(QueueName::Dispatch, 10);
            if rs.is_empty() {
                return out;
            }
            for r in rs {
                out.push(serde_json::from_str(r.body.as_deref().unwrap()).unwrap());
                self.app
                    .queue
                    .delete(QueueName::Dispatch, r.receipt_handle.as_deref().unwrap());
            }
        }
    }

    async fn query(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        let c = self.app.db.pool.get().await.unwrap();
        c.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    async fn one(&self, sql: &str) -> Value {
        let rows = self.query(sql).await;
        assert_eq!(rows.len(), 1, "{sql}");
        rows[0].get(0)
    }

    /// `POST /v1/enrichments` as the admin, answered body.
    async fn enrich_now(&self, body: Value) -> Value {
        self.app
            .http
            .post(self.app.url("/v1/enrichments"))
            .bearer_auth(&self.app.admin_key)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `provider_status` of the (single) link of the alert with this source id.
    async fn link_status(&self, source_alert_id: &str) -> Value {
        self.one(&format!(
            "SELECT l.provider_status FROM alert_indicators l JOIN alerts a ON a.id = l.alert_id
             WHERE a.source_alert_id = '{source_alert_id}'"
        ))
        .await
    }

    async fn result_block(&self, kind: &str, value: &str, provider: &str) -> Value {
        let c = self.app.db.pool.get().await.unwrap();
        let row = c
            .query_opt(
                "SELECT r.block FROM enrichment_results r JOIN indicators i ON i.id = r.indicator_id
                 WHERE i.type = $1 AND i.value = $2 AND r.provider = $3",
                &[&kind, &value, &provider],
            )
            .await
            .unwrap();
        row.map(|r| r.get(0)).unwrap_or(Value::Null)
    }
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    k.sort();
    k
}

// ---- tests -----------------------------------------------------------------------------------

#[tokio::test]
async fn every_type_gets_the_right_blocks_and_the_alert_is_dispatched_once() {
    let rig = rig().await;
    let uuids = rig
        .ingest(json!({
            "title": "Phishing follow-up", "severity": "high", "source_alert_id": "e2e-1",
            "indicators": [
                {"type": "ip", "value": "185.220.101.47"},
                {"type": "domain", "value": "evil-login-portal.com"},
                {"type": "url", "value": DEMO_URL},
                {"type": "hash_md5", "value": EICAR_MD5},
                {"type": "hash_sha1", "value": EICAR_SHA1},
                {"type": "hash_sha256", "value": EICAR_SHA256},
                {"type": "account", "value": "nick.hathaway@calseta.com"},
                {"type": "email", "value": "nick.hathaway@calseta.com"},
                {"type": "ip", "value": "10.0.0.5"}
            ]
        }))
        .await;
    assert_eq!(uuids.len(), 1);
    assert_eq!(rig.drain().await, 0);

    // ip: all three threat-intel providers, with their compact blocks.
    let vt = rig.result_block("ip", "185.220.101.47", "virustotal").await;
    assert_eq!(vt["found"], json!(true));
    assert_eq!(vt["malicious"], json!(14));
    assert_eq!(vt["suspicious"], json!(2));
    assert_eq!(vt["malice"], json!("Malicious"));
    assert!(vt["score"].as_str().unwrap().starts_with("14/"), "{vt}");
    let abuse = rig.result_block("ip", "185.220.101.47", "abuseipdb").await;
    assert!(abuse["score"].is_u64(), "{abuse}");
    assert!(
        abuse["categories"].as_array().unwrap().iter().all(|c| c.is_string()),
        "{abuse}"
    );
    let gn = rig.result_block("ip", "185.220.101.47", "greynoise").await;
    for k in ["classification", "noise", "found", "malice"] {
        assert!(gn.get(k).is_some(), "greynoise block lacks {k}: {gn}");
    }
    // domain, url and hashes: VirusTotal only.
    for (kind, value) in [
        ("domain", "evil-login-portal.com"),
        ("url", DEMO_URL),
        ("hash_md5", EICAR_MD5),
        ("hash_sha1", EICAR_SHA1),
        ("hash_sha256", EICAR_SHA256),
    ] {
        let b = rig.result_block(kind, value, "virustotal").await;
        assert_eq!(b["found"], json!(true), "{kind}: {b}");
        assert!(b["malicious"].as_u64().unwrap() >= 2, "{kind}: {b}");
        assert_eq!(rig.result_block(kind, value, "abuseipdb").await, Value::Null);
    }
    // account: the identity providers, always Pending.
    let okta = rig.result_block("account", "nick.hathaway@calseta.com", "okta").await;
    assert_eq!(okta["found"], json!(true), "{okta}");
    assert_eq!(okta["malice"], json!("Pending"));
    assert!(okta.get("status").is_some() && okta.get("profile").is_some(), "{okta}");
    let entra = rig.result_block("account", "nick.hathaway@calseta.com", "entra").await;
    assert_eq!(entra["found"], json!(true), "{entra}");
    assert_eq!(
        rig.result_block("account", "nick.hathaway@calseta.com", "virustotal")
            .await,
        Value::Null
    );

    // Never sent: the private IP; never queued: the email.
    assert!(
        rig.up.paths().iter().all(|p| !p.contains("10.0.0.5")),
        "{:?}",
        rig.up.paths()
    );
    let states = rig
        .query("SELECT i.type || ':' || i.value, l.enrichment_state FROM alert_indicators l JOIN indicators i ON i.id = l.indicator_id")
        .await;
    let states: HashMap<String, String> = states.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(states["ip:10.0.0.5"], "skipped");
    assert_eq!(states["email:nick.hathaway@calseta.com"], "skipped");
    assert_eq!(states["ip:185.220.101.47"], "done");

    // Indicator and alert verdicts; the summary; one dispatch.
    assert_eq!(
        rig.one("SELECT to_jsonb(malice) FROM indicators WHERE value = '185.220.101.47'")
            .await,
        json!("Malicious")
    );
    assert_eq!(
        rig.one("SELECT to_jsonb(malice) FROM indicators WHERE type = 'account'")
            .await,
        json!("Pending")
    );
    let alert = rig
        .one("SELECT jsonb_build_object('status', enrichment_status, 'malice', malice, 'enriched', is_enriched, 'summary', enrichment_summary) FROM alerts")
        .await;
    assert_eq!(alert["status"], json!("Enriched"));
    assert_eq!(alert["malice"], json!("Malicious"));
    assert_eq!(alert["enriched"], json!(true));
    assert_eq!(keys(&json!({"a": alert["summary"]["succeeded"]}))[0], "a".to_string());
    let mut succeeded: Vec<String> = serde_json::from_value(alert["summary"]["succeeded"].clone()).unwrap();
    succeeded.sort();
    assert_eq!(succeeded, vec!["abuseipdb", "entra", "greynoise", "okta", "virustotal"]);
    assert_eq!(alert["summary"]["failed"], json!([]));
    let d = rig.dispatches();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].reason, "enriched");
    assert_eq!(d[0].alert_uuid.to_string(), uuids[0]);
    assert_eq!(
        rig.app
            .scalar_i64("SELECT count(*) FROM activity_events WHERE event_type = 'alert_enrichment_completed'")
            .await,
        1
    );
    // No lease is left in flight: each one is held exactly until its cached result expires.
    assert_eq!(
        rig.app
            .scalar_i64(
                "SELECT count(*) FROM enrichment_leases l WHERE NOT EXISTS (
                    SELECT 1 FROM enrichment_results r WHERE r.provider = l.provider
                       AND r.indicator_id = l.indicator_id AND r.expires_at = l.lease_until)"
            )
            .await,
        0
    );
    assert_eq!(
        rig.app.scalar_i64("SELECT count(*) FROM enrichment_leases").await,
        rig.app.scalar_i64("SELECT count(*) FROM enrichment_results").await
    );
}

#[tokio::test]
async fn repeat_lookups_hit_the_cache_with_their_age() {
    let rig = rig().await;
    rig.ingest(
        json!({"title": "a", "source_alert_id": "c-1", "indicators": [{"type": "ip", "value": "45.155.205.233"}]}),
    )
    .await;
    rig.drain().await;
    let first = rig.up.total();
    assert_eq!(first, 3, "virustotal, abuseipdb, greynoise: {:?}", rig.up.paths());
    rig.ingest(
        json!({"title": "b", "source_alert_id": "c-2", "indicators": [{"type": "ip", "value": "45.155.205.233"}]}),
    )
    .await;
    rig.drain().await;
    assert_eq!(rig.up.total(), first, "the second alert is served from the cache");
    let ps = rig.link_status("c-2").await;
    for p in ["virustotal", "abuseipdb", "greynoise"] {
        assert_eq!(ps[p]["status"], json!("success"), "{ps}");
        assert_eq!(ps[p]["cache_hit"], json!(true), "{ps}");
    }
    assert_eq!(rig.dispatches().len(), 2);

    // On demand: cache first, with provenance.
    let r = rig.enrich_now(json!({"type": "ip", "value": "45.155.205.233"})).await;
    let vt = &r["data"]["results"]["virustotal"];
    assert_eq!(vt["cache_hit"], json!(true), "{r}");
    assert!(vt["age_seconds"].as_i64().unwrap() >= 0);
    assert!(vt["enriched_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(vt["status"], json!("success"));
    assert_eq!(vt["extracted"]["malicious"], json!(6));
    assert_eq!(rig.up.total(), first, "on-demand lookups are cache-first");
}

#[tokio::test]
async fn values_that_must_never_leave_make_no_upstream_call() {
    let rig = rig().await;
    let private = [
        "10.1.2.3",
        "192.168.1.20",
        "172.16.5.4",
        "127.0.0.1",
        "169.254.169.254",
        "100.64.1.1",
        "192.0.2.10",
        "198.51.100.7",
        "203.0.113.9",
        "fe80::1",
        "fd12:3456::1",
        "2001:db8::1",
    ];
    let mut inds: Vec<Value> = private.iter().map(|v| json!({"type": "ip", "value": v})).collect();
    for d in [
        "fileserver.corp",
        "dc01.acme.local",
        "www.example.com",
        "printer.home.arpa",
    ] {
        inds.push(json!({"type": "domain", "value": d}));
    }
    inds.push(json!({"type": "hash_md5", "value": "d41d8cd98f00b204e9800998ecf8427e"}));
    inds.push(json!({"type": "account", "value": "nt authority\\system"}));
    rig.ingest(json!({"title": "internal only", "source_alert_id": "p-1", "indicators": inds}))
        .await;
    rig.drain().await;
    assert_eq!(rig.up.total(), 0, "{:?}", rig.up.paths());
    // Nothing to enrich: dispatched straight away.
    let d = rig.dispatches();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].reason, "no_indicators");

    // A message for such a value (e.g. queued before INTERNAL_CIDRS changed) is skipped too.
    let c = rig.app.db.pool.get().await.unwrap();
    let row = c
        .query_one(
            "SELECT a.id, a.uuid, i.id FROM alerts a, indicators i WHERE i.value = '10.1.2.3'",
            &[],
        )
        .await
        .unwrap();
    c.execute(
        "UPDATE alert_indicators SET enrichment_state = 'pending' WHERE indicator_id = $1",
        &[&row.get::<_, i64>(2)],
    )
    .await
    .unwrap();
    c.execute("UPDATE alerts SET enrichment_status = 'Pending'", &[])
        .await
        .unwrap();
    let req = EnrichRequest {
        v: 1,
        alert_id: row.get(0),
        alert_uuid: row.get(1),
        indicator_id: row.get(2),
        indicator_type: calseta::domain::indicator::IndicatorType::Ip,
        value: "10.1.2.3".into(),
    };
    let out = rig.engine.process(&[(req, 1)]).await.unwrap();
    assert!(out[0].is_ok());
    assert_eq!(rig.up.total(), 0);
    let ps = rig
        .one("SELECT provider_status FROM alert_indicators l JOIN indicators i ON i.id = l.indicator_id WHERE i.value = '10.1.2.3'")
        .await;
    assert_eq!(ps["_validation"]["status"], json!("skipped"));
    assert_eq!(ps["_validation"]["error_code"], json!("private_ip"));

    // On demand: only `_validation`.
    let r = rig
        .enrich_now(json!({"indicator_type": "ip", "indicator_value": "192.168.0.1"}))
        .await;
    assert_eq!(keys(&r["data"]["results"]), vec!["_validation"]);
    assert_eq!(r["data"]["results"]["_validation"]["status"], json!("skipped"));
    assert_eq!(rig.up.total(), 0);
}

#[tokio::test]
async fn a_burst_never_exceeds_the_per_minute_budget() {
    let mut budgets = HashMap::new();
    budgets.insert(
        "virustotal".to_string(),
        Budget {
            per_minute: Some(4),
            per_day: Some(500),
        },
    );
    let rig = rig_with(budgets, quiet(), fast_settings()).await;
    let alerts: Vec<Value> = (0..20)
        .map(|i| json!({"title": format!("burst {i}"), "source_alert_id": format!("b-{i}"), "domain": format!("burst-{i}.example-threat.net")}))
        .collect();
    rig.ingest(json!(alerts)).await;
    let deferred = rig.drain().await;
    assert_eq!(rig.up.count("virustotal"), 4, "only the minute's budget is spent");
    assert_eq!(deferred, 16, "the rest come back later");
    // They wait for the window, invisibly (no busy loop).
    let depth = rig.app.queue.depth(QueueName::Enrich).await.unwrap();
    assert_eq!(depth.in_flight + depth.delayed + depth.visible, 16);
    assert_eq!(depth.visible, 0);
    assert_eq!(
        rig.app
            .scalar_i64("SELECT count(*) FROM alert_indicators WHERE enrichment_state = 'pending'")
            .await,
        16
    );
    assert_eq!(rig.dispatches().len(), 4);
    // The deferral is about the minute window: under 60 s.
    let wait: f64 = {
        let c = rig.app.db.pool.get().await.unwrap();
        c.query_one(
            "SELECT wait_seconds FROM calseta_take_provider_token('virustotal', 4, 500, 300)",
            &[],
        )
        .await
        .unwrap()
        .get(0)
    };
    assert!(wait > 0.0 && wait <= 60.0, "{wait}");
}

#[tokio::test]
async fn a_daily_quota_ends_the_run_instead_of_deferring() {
    let mut budgets = HashMap::new();
    budgets.insert(
        "virustotal".to_string(),
        Budget {
            per_minute: None,
            per_day: Some(2),
        },
    );
    let rig = rig_with(budgets, quiet(), fast_settings()).await;
    let alerts: Vec<Value> = (0..4)
        .map(|i| json!({"title": format!("q {i}"), "source_alert_id": format!("q-{i}"), "domain": format!("q-{i}.example-threat.net")}))
        .collect();
    rig.ingest(json!(alerts)).await;
    let deferred = rig.drain().await;
    assert_eq!(rig.up.count("virustotal"), 2);
    // Midnight UTC is usually more than 15 minutes away: quota_exhausted, final, dispatched.
    let now = chrono::Utc::now();
    let to_midnight = calseta::enrich::provider::until_next_utc_midnight(now);
    if to_midnight > Duration::from_secs(900) {
        assert_eq!(deferred, 0);
        let codes = rig
            .query("SELECT provider_status->'virustotal'->>'error_code' FROM alert_indicators WHERE enrichment_state = 'failed'")
            .await;
        assert_eq!(codes.len(), 2);
        assert!(codes
            .iter()
            .all(|r| r.get::<_, Option<String>>(0).as_deref() == Some("quota_exhausted")));
        assert_eq!(rig.dispatches().len(), 4);
    }
}

#[tokio::test]
async fn after_a_429_no_call_is_made_before_retry_after() {
    let rig = rig().await;
    rig.up.fault("virustotal", Fault::First(1, 429, Some(30)));
    rig.ingest(json!({"title": "x", "source_alert_id": "r-1", "domain": "first.example-threat.net"}))
        .await;
    assert_eq!(rig.drain().await, 1, "the message comes back after Retry-After");
    assert_eq!(rig.up.count("virustotal"), 1);
    let pause: f64 = match rig
        .one("SELECT to_jsonb(EXTRACT(EPOCH FROM retry_after - now())::float8) FROM provider_quotas WHERE provider = 'virustotal'")
        .await
    {
        Value::Number(n) => n.as_f64().unwrap(),
        other => panic!("{other}"),
    };
    assert!((25.0..=31.0).contains(&pause), "{pause}");
    // Another alert meanwhile: no call, deferred too.
    rig.ingest(json!({"title": "y", "source_alert_id": "r-2", "domain": "second.example-threat.net"}))
        .await;
    assert_eq!(rig.drain().await, 1);
    assert_eq!(rig.up.count("virustotal"), 1, "paused until Retry-After");
    // The in-process queue holds both messages invisible for the wait (change_visibility).
    let depth = rig.app.queue.depth(QueueName::Enrich).await.unwrap();
    assert_eq!(depth.visible, 0);
    assert_eq!(depth.total(), 2);
    assert!(rig.dispatches().is_empty());
}

#[tokio::test]
async fn a_provider_that_is_down_does_not_hold_alerts_back() {
    let rig = rig().await;
    rig.up.fault("virustotal", Fault::Status(503, None));
    rig.ingest(json!({"title": "down", "source_alert_id": "d-1", "ip": "185.220.101.47"}))
        .await;
    assert_eq!(rig.drain().await, 0);
    assert_eq!(rig.up.count("virustotal"), 3, "1 call + 2 retries");
    let summary = rig.one("SELECT enrichment_summary FROM alerts").await;
    assert_eq!(summary["failed"], json!(["virustotal"]), "{summary}");
    assert_eq!(summary["succeeded"], json!(["abuseipdb", "greynoise"]), "{summary}");
    let ps = rig.one("SELECT provider_status FROM alert_indicators").await;
    assert_eq!(ps["virustotal"]["error_code"], json!("upstream_error"));
    let d = rig.dispatches();
    assert_eq!(d.len(), 1);
    // Four more failing lookups open the circuit (five in a row); then no calls at all.
    let alerts: Vec<Value> = (0..4)
        .map(|i| json!({"title": format!("down {i}"), "source_alert_id": format!("d-x{i}"), "domain": format!("down-{i}.example-threat.net")}))
        .collect();
    rig.ingest(json!(alerts)).await;
    rig.drain().await;
    assert_eq!(rig.up.count("virustotal"), 15);
    rig.ingest(json!({"title": "after", "source_alert_id": "d-after", "domain": "after.example-threat.net"}))
        .await;
    assert_eq!(rig.drain().await, 0);
    assert_eq!(rig.up.count("virustotal"), 15, "circuit open: no call");
    let ps = rig.link_status("d-after").await;
    assert_eq!(ps["virustotal"]["status"], json!("failed"));
    assert!(
        ps["virustotal"]["error_message"].as_str().unwrap().contains("circuit"),
        "{ps}"
    );
    assert_eq!(rig.dispatches().len(), 5);
}

#[tokio::test]
async fn rejected_credentials_mark_the_provider_misconfigured_without_retry_storms() {
    let rig = rig().await;
    rig.up.fault("abuseipdb", Fault::Status(401, None));
    let alerts: Vec<Value> = ["45.155.205.233", "67.180.201.3", "8.8.8.8"]
        .iter()
        .enumerate()
        .map(|(i, ip)| json!({"title": format!("a {i}"), "source_alert_id": format!("m-{i}"), "ip": ip}))
        .collect();
    rig.ingest(json!(alerts[0])).await;
    rig.drain().await;
    assert_eq!(rig.up.count("abuseipdb"), 1, "a 401 is not retried");
    rig.ingest(json!([alerts[1], alerts[2]])).await;
    rig.drain().await;
    assert_eq!(rig.up.count("abuseipdb"), 1, "misconfigured: not called again");
    let health: Value = rig
        .app
        .http
        .get(rig.app.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["enrichment_providers"]["abuseipdb"],
        json!("misconfigured"),
        "{health}"
    );
    assert_eq!(health["enrichment_providers"]["virustotal"], json!("configured"));
    let codes = rig
        .query("SELECT provider_status->'abuseipdb'->>'error_code' FROM alert_indicators")
        .await;
    assert!(codes
        .iter()
        .all(|r| r.get::<_, Option<String>>(0).as_deref() == Some("auth_failed")));
    // Every alert still went out.
    assert_eq!(rig.dispatches().len(), 3);
}

#[tokio::test]
async fn duplicate_messages_neither_double_call_nor_double_complete() {
    let rig = rig().await;
    rig.ingest(json!({"title": "dup", "source_alert_id": "dup-1", "ip": "67.180.201.3", "domain": "microsoft.com"}))
        .await;
    // Every message delivered twice, and the two copies handled concurrently by two consumers.
    let originals = rig.app.queue.receive(QueueName::Enrich, 10);
    assert_eq!(originals.len(), 2);
    let copies = originals.clone();
    let (a, b) = tokio::join!(rig.engine.handle_records(originals), rig.engine.handle_records(copies));
    assert!(a.iter().chain(&b).all(|r| r.is_ok()), "{a:?} {b:?}");
    // ip → 3 providers, domain → virustotal: 4 calls, not 8.
    assert_eq!(rig.up.total(), 4, "{:?}", rig.up.paths());
    assert_eq!(rig.dispatches().len(), 1);
    // A late third delivery changes nothing.
    let late = rig.app.queue.receive(QueueName::Enrich, 10);
    let again = rig.engine.handle_records(late).await;
    assert!(again.iter().all(|r| r.is_ok()));
    assert_eq!(rig.up.total(), 4);
    assert!(rig.dispatches().is_empty());
    assert_eq!(
        rig.app
            .scalar_i64("SELECT count(*) FROM activity_events WHERE event_type = 'alert_enrichment_completed'")
            .await,
        1
    );
}

#[tokio::test]
async fn concurrent_alerts_sharing_indicators_fetch_each_once() {
    let rig = rig().await;
    let alerts: Vec<Value> = (0..30)
        .map(|i| json!({"title": format!("s {i}"), "source_alert_id": format!("s-{i}"), "ip": "185.220.101.47", "domain": "evil-login-portal.com", "user": "jane.doe@calseta.com"}))
        .collect();
    rig.ingest(json!(alerts)).await;
    // Four consumers at once, as four Lambda instances would.
    let mut batches = Vec::new();
    loop {
        let b = rig.app.queue.receive(QueueName::Enrich, 10);
        if b.is_empty() {
            break;
        }
        batches.push(b);
    }
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 90);
    let results = futures::future::join_all(batches.into_iter().map(|b| rig.engine.handle_records(b))).await;
    assert!(results.iter().flatten().all(|r| r.is_ok()));
    // ip × 3 + domain × 1 + account × (okta user, factors, groups, manager + entra token, user,
    // manager, memberOf, methods) — each distinct lookup exactly once.
    assert_eq!(rig.up.count("virustotal"), 2, "{:?}", rig.up.paths());
    assert_eq!(rig.up.count("abuseipdb"), 1);
    assert_eq!(rig.up.count("greynoise"), 1);
    let okta_user_calls = rig
        .up
        .paths()
        .iter()
        .filter(|p| p.starts_with("/okta/api/v1/users/") && p.matches('/').count() == 5)
        .count();
    assert_eq!(okta_user_calls, 1, "{:?}", rig.up.paths());
    assert_eq!(rig.dispatches().len(), 30);
}

#[tokio::test]
async fn the_deadline_dispatches_with_what_is_there_and_late_results_do_not_redispatch() {
    let mut budgets = HashMap::new();
    budgets.insert(
        "virustotal".to_string(),
        Budget {
            per_minute: Some(1),
            per_day: None,
        },
    );
    let rig = rig_with(budgets, quiet(), fast_settings()).await;
    rig.ingest(json!({"title": "t1", "source_alert_id": "t-1", "domain": "one.example-threat.net"}))
        .await;
    assert_eq!(rig.drain().await, 0, "t1 takes the minute's only VirusTotal call");
    rig.ingest(json!({"title": "t2", "source_alert_id": "t-2", "domain": "two.example-threat.net", "ip": "8.8.8.8"}))
        .await;
    assert_eq!(
        rig.drain().await,
        2,
        "t2's domain and ip wait for VirusTotal's next minute"
    );
    assert_eq!(rig.dispatches().len(), 1);
    // The deadline passes.
    let c = rig.app.db.pool.get().await.unwrap();
    c.execute(
        "UPDATE alerts SET enrichment_deadline_at = now() - interval '1 second' WHERE enrichment_status = 'Pending'",
        &[],
    )
    .await
    .unwrap();
    let report = calseta::sweep::run_once(&rig.app.state.outbox, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(report.overdue_completed, 1);
    let d = rig.dispatches();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].reason, "deadline");
    let summary = rig
        .one("SELECT enrichment_summary FROM alerts WHERE source_alert_id = 't-2'")
        .await;
    assert_eq!(summary["completed_by"], json!("deadline"));
    assert_eq!(summary["pending_indicators"], json!(2));
    // Dispatched with two indicators still pending: honestly `Partial`, not `Enriched`.
    assert_eq!(
        rig.one(
            "SELECT to_jsonb(array[enrichment_status, is_enriched::text]) FROM alerts WHERE source_alert_id = 't-2'"
        )
        .await,
        json!(["Partial", "false"])
    );
    assert_eq!(
        rig.one(
            "SELECT to_jsonb(array[enrichment_status, is_enriched::text]) FROM alerts WHERE source_alert_id = 't-1'"
        )
        .await,
        json!(["Enriched", "true"])
    );
    // The budget frees up and the messages come back: links complete, no second dispatch.
    c.execute("UPDATE provider_quotas SET recent_calls = '{}'", &[])
        .await
        .unwrap();
    let rows = c
        .query(
            "SELECT l.alert_id, a.uuid, l.indicator_id, i.type, i.value FROM alert_indicators l
             JOIN alerts a ON a.id = l.alert_id JOIN indicators i ON i.id = l.indicator_id
             WHERE l.enrichment_state = 'pending' ORDER BY i.type",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    // One at a time (the budget is one a minute): the domain first.
    let req = |r: &tokio_postgres::Row| EnrichRequest {
        v: 1,
        alert_id: r.get(0),
        alert_uuid: r.get(1),
        indicator_id: r.get(2),
        indicator_type: serde_json::from_value(json!(r.get::<_, String>(3))).unwrap(),
        value: r.get(4),
    };
    let out = rig.engine.process(&[(req(&rows[0]), 2)]).await.unwrap();
    assert!(out[0].is_ok());
    assert_eq!(
        rig.app
            .scalar_i64("SELECT count(*) FROM alert_indicators WHERE enrichment_state = 'pending'")
            .await,
        1
    );
    assert!(rig.dispatches().is_empty(), "already dispatched by the deadline");
    // The last one, past its deferral allowance: finished with what it has.
    let out = rig.engine.process(&[(req(&rows[1]), 99)]).await.unwrap();
    assert!(out[0].is_ok());
    let ps = rig
        .one("SELECT provider_status FROM alert_indicators l JOIN indicators i ON i.id = l.indicator_id WHERE i.value = '8.8.8.8'")
        .await;
    assert_eq!(ps["virustotal"]["error_code"], json!("rate_limited"), "{ps}");
    assert_eq!(ps["abuseipdb"]["status"], json!("success"), "{ps}");
    assert!(rig.dispatches().is_empty());
}

#[tokio::test]
async fn on_demand_enrichment_and_the_provider_list_through_http() {
    let rig = rig().await;
    let url = rig.app.url("/v1/enrichments");
    let http = &rig.app.http;
    // Auth and scopes.
    let r = http
        .post(&url)
        .json(&json!({"type": "ip", "value": "8.8.8.8"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let reader = rig.app.create_key("alerts-only", &["alerts:read"], None, None).await;
    let r = http
        .post(&url)
        .bearer_auth(&reader)
        .json(&json!({"type": "ip", "value": "8.8.8.8"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let key = rig.app.create_key("enricher", &["enrichments:read"], None, None).await;
    // Bad input.
    for (body, status) in [
        (json!({"type": "ip", "value": "999.1.1.1"}), 422),
        (json!({"type": "ipv9", "value": "1.1.1.1"}), 422),
        (json!({"value": "1.1.1.1"}), 422),
        (json!({"type": "ip"}), 422),
    ] {
        let r = http.post(&url).bearer_auth(&key).json(&body).send().await.unwrap();
        assert_eq!(r.status(), status, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], json!("VALIDATION_ERROR"), "{e}");
    }
    let r = http
        .post(&url)
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A real lookup: normalized first, every provider for the type, nothing stored.
    let r = http
        .post(&url)
        .bearer_auth(&key)
        .json(&json!({"type": "ip", "value": " 185.220.101.47 "}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["value"], json!("185.220.101.47"));
    assert_eq!(
        keys(&body["data"]["results"]),
        vec!["abuseipdb", "greynoise", "virustotal"]
    );
    let vt = &body["data"]["results"]["virustotal"];
    assert_eq!(vt["cache_hit"], json!(false));
    assert_eq!(vt["success"], json!(true));
    assert_eq!(vt["extracted"]["malice"], json!("Malicious"));
    assert!(vt.get("raw").is_none());
    assert_eq!(rig.app.scalar_i64("SELECT count(*) FROM enrichment_results").await, 0);
    // Email: no provider takes it.
    let body: Value = http
        .post(&url)
        .bearer_auth(&key)
        .json(&json!({"type": "email", "value": "a@b.io"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"]["results"], json!({}));

    // Providers.
    let body: Value = http
        .get(rig.app.url("/v1/enrichments/providers"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = body["data"].as_array().unwrap();
    assert_eq!(list.len(), 5);
    let vt = list.iter().find(|p| p["provider_name"] == "virustotal").unwrap();
    assert_eq!(vt["is_configured"], json!(true));
    assert_eq!(vt["display_name"], json!("VirusTotal"));
    assert_eq!(vt["cache_ttl_by_type"]["hash_sha256"]["found"], json!(86_400));
    assert_eq!(
        list.iter().find(|p| p["provider_name"] == "greynoise").unwrap()["cache_ttl_by_type"]["ip"]["found"],
        json!(86_400)
    );
    let r = http
        .get(rig.app.url("/v1/enrichments/providers"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn unreadable_messages_are_parked_not_retried() {
    let rig = rig().await;
    let mut bad = aws_lambda_events::event::sqs::SqsMessage::default();
    bad.message_id = Some("m-bad".into());
    bad.body = Some("{\"v\":1,\"alert_id\":\"x\"}".into());
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    event.records = vec![bad];
    let resp = rig.engine.handle_event(&rig.runner, event).await;
    assert!(resp.batch_item_failures.is_empty(), "parked and acknowledged");
    assert_eq!(
        rig.app
            .scalar_i64("SELECT count(*) FROM parked_messages WHERE queue = 'enrich'")
            .await,
        1
    );
}

#[tokio::test]
async fn the_sample_lambda_event_is_handled_like_a_queue_delivery() {
    let rig = rig().await;
    rig.ingest(json!({"title": "event", "source_alert_id": "ev-1", "ip": "185.220.101.47"}))
        .await;
    // The queued message is what the sample event carries; point the sample at our rows.
    let queued = rig.app.queue.receive(QueueName::Enrich, 10);
    assert_eq!(queued.len(), 1);
    let real: EnrichRequest = serde_json::from_str(queued[0].body.as_deref().unwrap()).unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../events/enrich-sqs.json")).unwrap();
    let mut event: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_str(&text).unwrap();
    let sample: EnrichRequest = serde_json::from_str(event.records[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(
        (sample.indicator_type, sample.value.as_str()),
        (real.indicator_type, real.value.as_str())
    );
    event.records[0].body = Some(serde_json::to_string(&real).unwrap());
    let resp = rig.engine.handle_event(&rig.runner, event).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(rig.dispatches().len(), 1);
    assert_eq!(rig.up.total(), 3);
}

#[tokio::test]
async fn an_analyst_verdict_survives_new_enrichment() {
    let rig = rig().await;
    // An analyst already judged this (known-bad to the providers) address benign.
    {
        let c = rig.app.db.pool.get().await.unwrap();
        c.execute(
            "INSERT INTO indicators (type, value, malice, malice_source, malice_overridden_at)
             VALUES ('ip', '185.220.101.47', 'Benign', 'analyst', now())",
            &[],
        )
        .await
        .unwrap();
    }
    rig.ingest(json!({"title": "override", "source_alert_id": "o-1", "ip": "185.220.101.47", "domain": "evil-login-portal.com"}))
        .await;
    rig.drain().await;
    // The results are stored and shown, the verdict stays the analyst's…
    assert_eq!(
        rig.result_block("ip", "185.220.101.47", "virustotal").await["malice"],
        json!("Malicious")
    );
    let ind = rig
        .one("SELECT jsonb_build_object('malice', malice, 'source', malice_source, 'enriched', is_enriched) FROM indicators WHERE value = '185.220.101.47'")
        .await;
    assert_eq!(ind, json!({"malice": "Benign", "source": "analyst", "enriched": true}));
    // …while the domain's provider verdict counts: the alert is as bad as its worst indicator.
    assert_eq!(
        rig.one("SELECT to_jsonb(malice) FROM indicators WHERE value = 'evil-login-portal.com'")
            .await,
        json!("Malicious")
    );
    assert_eq!(rig.one("SELECT to_jsonb(malice) FROM alerts").await, json!("Malicious"));
}

#[tokio::test]
async fn the_agent_payload_has_every_block_and_past_alerts_sharing_an_account() {
    use calseta::context::payload::{self, PayloadOptions};
    let rig = rig().await;
    let first = rig
        .ingest(
            json!({"title": "Impossible Travel Detected", "severity": "high", "source_alert_id": "pa-1",
                       "occurred_at": "2025-01-10T08:00:00Z", "rule_id": "impossible-travel-v1",
                       "rule_name": "Impossible Travel", "mitre_tactics": ["TA0001"], "mitre_techniques": ["T1078"],
                       "user": "nick.hathaway@calseta.com", "ip": "45.155.205.233", "tags": ["identity"]}),
        )
        .await;
    let second = rig
        .ingest(
            json!({"title": "Impossible Travel Detected", "severity": "high", "source_alert_id": "pa-2",
                       "occurred_at": "2025-01-15T03:42:18Z", "rule_id": "impossible-travel-v1",
                       "rule_name": "Impossible Travel", "mitre_tactics": ["TA0001"], "mitre_techniques": ["T1078"],
                       "user": "nick.hathaway@calseta.com", "ip": "185.220.101.47", "tags": ["identity"]}),
        )
        .await;
    rig.drain().await;
    let c = rig.app.db.pool.get().await.unwrap();
    c.batch_execute(&format!(
        "UPDATE alerts SET status = 'Closed', close_classification = 'True Positive - Suspicious Activity',
                closed_at = '2025-01-11T09:00:00Z' WHERE uuid = '{}';
         INSERT INTO findings (alert_id, agent_name, summary)
            SELECT id, 'analyst', 'Confirmed malicious. Sessions revoked. INC-2847.' FROM alerts WHERE uuid = '{}';
         UPDATE detection_rules SET priority = 'High', goal = 'Detect credential compromise.',
                documentation = '## Overview\nGeo-velocity.', false_positive_tags = '{{vpn}}', blind_spots = '{{proxies}}';
         INSERT INTO context_documents (title, document_type, is_global, content) VALUES
            ('Company IR Plan', 'ir_plan', true, '## IR plan ' || repeat('Contain the affected accounts. ', 200)),
            ('Unscoped note', 'other', false, 'never attached'),
            ('Account Compromise Runbook', 'runbook', false, '## Isolate the account');
         UPDATE context_documents SET targeting_rules =
            '{{\"match_all\": [{{\"field\": \"tags\", \"op\": \"contains\", \"value\": \"identity\"}},
                              {{\"field\": \"severity\", \"op\": \"gte\", \"value\": \"Medium\"}}]}}'
            WHERE title = 'Account Compromise Runbook';
         INSERT INTO context_documents (title, document_type, is_global, content, targeting_rules) VALUES
            ('Splunk SOP', 'sop', false, 'x', '{{\"match_any\": [{{\"field\": \"source_name\", \"op\": \"eq\", \"value\": \"splunk\"}}]}}');
         INSERT INTO workflows (name, description, indicator_types, state, documentation) VALUES
            ('Revoke User Sessions', 'Terminate all active sessions.', '{{account}}', 'active', 'Call revoke.'),
            ('Quarantine File', 'Quarantine a file everywhere.', '{{hash_sha256}}', 'active', NULL),
            ('Draft Playbook', 'Not ready.', '{{}}', 'draft', NULL);",
        first[0], first[0]
    ))
    .await
    .unwrap();
    let id: i64 = c
        .query_one("SELECT id FROM alerts WHERE uuid = $1::text::uuid", &[&second[0]])
        .await
        .unwrap()
        .get(0);
    let p = payload::build(&*c, id, &PayloadOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p["event"], json!("alert.enriched"));
    assert_eq!(p["alert"]["uuid"], json!(second[0]));
    assert_eq!(p["alert"]["severity"], json!("High"));
    assert_eq!(p["alert"]["source"], json!("generic"));
    assert_eq!(p["alert"]["malice"], json!("Malicious"));
    // Indicators: provider blocks, geo, first/last seen, verdict, provenance; no raw JSON.
    let ip = p["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["value"] == "185.220.101.47")
        .unwrap();
    assert_eq!(ip["virustotal"]["malicious"], json!(14));
    assert!(ip["abuseipdb"]["score"].is_u64());
    assert!(ip["greynoise"]["classification"].is_string());
    assert_eq!(ip["geo"]["country_code"], json!("DE"));
    assert_eq!(ip["geo"]["country"], json!("Germany"));
    assert_eq!(ip["malice"], json!("Malicious"));
    assert!(ip["first_seen"].as_str().unwrap().ends_with('Z'));
    // Provenance of a success: the provider's verdict and fetch time (age only once not fresh).
    assert_eq!(ip["enrichment"]["virustotal"]["malice"], json!("Malicious"));
    assert!(ip["enrichment"]["virustotal"]["enriched_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert!(ip["enrichment"]["virustotal"].get("status").is_none());
    let acct = p["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "account")
        .unwrap();
    assert_eq!(acct["okta"]["status"], json!("ACTIVE"), "{acct}");
    assert!(acct["okta"]["mfa_factors"].is_array());
    assert!(!p.to_string().contains("last_analysis_results"), "no raw vendor JSON");
    assert!(!p.to_string().contains(":null"), "no nulls");
    // Detection rule.
    let r = &p["detection_rule"];
    assert_eq!(r["name"], json!("Impossible Travel"));
    assert_eq!(r["rule_id"], json!("impossible-travel-v1"));
    assert_eq!(r["priority"], json!("High"));
    assert_eq!(r["false_positive_tags"], json!(["vpn"]));
    assert_eq!(r["blind_spots"], json!(["proxies"]));
    assert_eq!(r["goal"], json!("Detect credential compromise."));
    assert!(r["documentation"].as_str().unwrap().starts_with("## Overview"));
    // Past alerts: the first alert, with its outcome and the shared account only.
    let past = p["past_alerts"].as_array().unwrap();
    assert_eq!(past.len(), 1);
    assert_eq!(past[0]["uuid"], json!(first[0]));
    assert_eq!(past[0]["status"], json!("Closed"));
    assert_eq!(past[0]["classification"], json!("True Positive - Suspicious Activity"));
    assert_eq!(past[0]["closed_at"], json!("2025-01-11T09:00:00.000Z"));
    assert_eq!(past[0]["indicators"], json!(["nick.hathaway@calseta.com"]));
    assert!(past[0]["analyst_notes"].as_str().unwrap().contains("INC-2847"));
    // Context documents: global first, then targeted; nothing else.
    let titles: Vec<&str> = p["context_documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, vec!["Company IR Plan", "Account Compromise Runbook"]);
    assert_eq!(p["context_documents"][1]["type"], json!("runbook"));
    // Workflows: active and relevant to the indicator types present.
    let names: Vec<&str> = p["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Revoke User Sessions"]);
    // The first alert has no past alerts (the second one is later).
    let first_id: i64 = c
        .query_one("SELECT id FROM alerts WHERE uuid = $1::text::uuid", &[&first[0]])
        .await
        .unwrap()
        .get(0);
    let p1 = payload::build(&*c, first_id, &PayloadOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert!(p1.get("past_alerts").is_none());
    // Deterministic.
    let again = payload::build(&*c, id, &PayloadOptions::default())
        .await
        .unwrap()
        .unwrap();
    let strip = |mut v: Value| {
        for i in v["indicators"].as_array_mut().unwrap() {
            for (_, e) in i["enrichment"].as_object_mut().unwrap() {
                e.as_object_mut().unwrap().remove("age_seconds");
            }
        }
        v
    };
    assert_eq!(strip(again), strip(p.clone()));

    // A byte budget trims bodies first and keeps ids and verdicts.
    let full = p.to_string().len();
    let small = payload::build(
        &*c,
        id,
        &PayloadOptions {
            max_bytes: Some(full / 2),
        },
    )
    .await
    .unwrap()
    .unwrap();
    let trimmed: Vec<&str> = small["_trimmed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(trimmed.first(), Some(&"context_documents.content"), "{trimmed:?}");
    assert_eq!(small["alert"]["uuid"], p["alert"]["uuid"]);
    assert_eq!(
        small["indicators"].as_array().unwrap().len(),
        p["indicators"].as_array().unwrap().len()
    );
    assert_eq!(small["indicators"][0]["malice"], p["indicators"][0]["malice"]);
    assert!(payload::build(&*c, 999_999, &PayloadOptions::default())
        .await
        .unwrap()
        .is_none());

    // The same payload through HTTP (not wrapped in the envelope), behind alerts:read.
    let url = rig.app.url(&format!("/v1/alerts/{}/payload", second[0]));
    let http = &rig.app.http;
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let enricher = rig.app.create_key("enricher", &["enrichments:read"], None, None).await;
    assert_eq!(
        http.get(&url).bearer_auth(&enricher).send().await.unwrap().status(),
        403
    );
    let reader = rig.app.create_key("reader", &["alerts:read"], None, None).await;
    let r = http.get(&url).bearer_auth(&reader).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let over_http: Value = r.json().await.unwrap();
    assert_eq!(strip(over_http), strip(p.clone()));
    let r = http
        .get(format!("{url}?max_bytes={}", full / 2))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert!(r.json::<Value>().await.unwrap()["_trimmed"].is_array());
    let r = http
        .get(format!("{url}?max_bytes=ten"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let missing = rig.app.url(&format!("/v1/alerts/{}/payload", uuid::Uuid::new_v4()));
    assert_eq!(
        http.get(&missing).bearer_auth(&reader).send().await.unwrap().status(),
        404
    );
    let garbage = rig.app.url("/v1/alerts/not-a-uuid/payload");
    assert_eq!(
        http.get(&garbage).bearer_auth(&reader).send().await.unwrap().status(),
        404
    );
}
