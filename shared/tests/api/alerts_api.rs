//! The alert surface agents act through, black-box over HTTP: list (filters, sort, pagination),
//! detail with `_metadata`, PATCH lifecycle rules, findings, activity, indicators, DELETE — and
//! the agent payload reflecting what analysts and agents wrote back.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use calseta::enrich::engine::EngineSettings;
use calseta::enrich::registry::ProviderSet;
use calseta::enrich::simulator;
use calseta::testing::TestApp;
use reqwest::Method;
use serde_json::{json, Value};

struct Stack {
    app: TestApp,
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
    Stack { app, cancel }
}

impl Stack {
    async fn call_with(&self, key: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        calseta::testing::call(&self.app, key, method, path, body).await
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let key = self.app.admin_key.clone();
        self.call_with(&key, method, path, body).await
    }

    async fn ingest(&self, alert: Value) -> String {
        let (s, v) = self.call(Method::POST, "/v1/ingest/generic", Some(alert)).await;
        assert_eq!(s, 202, "{v}");
        v["data"]["alert_uuid"].as_str().unwrap().to_string()
    }

    async fn until_enriched(&self, uuid: &str) -> Value {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let (s, v) = self.call(Method::GET, &format!("/v1/alerts/{uuid}"), None).await;
            assert_eq!(s, 200, "{v}");
            if v["data"]["enrichment_status"] == "Enriched" {
                return v;
            }
            assert!(Instant::now() < until, "never enriched: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn closing_needs_a_classification_and_the_next_payload_shows_the_outcome_and_notes() {
    let s = stack().await;
    let first = s
        .ingest(json!({"title": "Impossible Travel Detected", "severity": "High", "source_alert_id": "lc-1",
                       "occurred_at": "2025-01-10T08:00:00Z", "user": "nick.hathaway@calseta.com", "ip": "45.155.205.233"}))
        .await;
    s.until_enriched(&first).await;
    let path = format!("/v1/alerts/{first}");

    // Closing without a classification is refused, with the field named.
    let (st, v) = s.call(Method::PATCH, &path, Some(json!({"status": "Closed"}))).await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(
        v["error"]["details"]["errors"][0]["field"],
        json!("body.close_classification")
    );
    // A classification alone is refused while the alert is open.
    let (st, _) = s
        .call(
            Method::PATCH,
            &path,
            Some(json!({"close_classification": "Undetermined"})),
        )
        .await;
    assert_eq!(st, 422);
    let (st, v) = s
        .call(
            Method::PATCH,
            &path,
            Some(json!({"status": "Triaging", "severity": "Critical"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let triaged = v["data"]["triaged_at"].clone();
    assert!(triaged.is_string() && v["data"]["acknowledged_at"].is_string());
    assert_eq!(v["data"]["severity"], json!("Critical"));
    assert_eq!(v["data"]["severity_original"], json!("High"), "the original stays");
    let (st, v) = s
        .call(
            Method::PATCH,
            &path,
            Some(
                json!({"status": "Closed", "close_classification": "True Positive - Suspicious Activity",
                        "malice_override": "Malicious"}),
            ),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let closed_at = v["data"]["closed_at"].clone();
    assert!(closed_at.is_string());
    assert_eq!(v["data"]["malice"], json!("Malicious"));
    assert_eq!(v["data"]["malice_override_source"], json!("analyst"));
    // Re-opening keeps the write-once stamps and the classification.
    let (_, v) = s.call(Method::PATCH, &path, Some(json!({"status": "Open"}))).await;
    assert_eq!(v["data"]["closed_at"], closed_at);
    assert_eq!(v["data"]["triaged_at"], triaged);
    assert_eq!(
        v["data"]["close_classification"],
        json!("True Positive - Suspicious Activity")
    );
    let (_, v) = s
        .call(
            Method::PATCH,
            &path,
            Some(
                json!({"status": "Closed", "close_classification": "True Positive - Suspicious Activity",
                        "reset_malice_override": true}),
            ),
        )
        .await;
    assert_eq!(v["data"]["closed_at"], closed_at, "write-once");
    assert!(v["data"]["malice_override"].is_null());

    // An agent writes back a finding.
    let (st, v) = s
        .call(
            Method::POST,
            &format!("/v1/alerts/{first}/findings"),
            Some(
                json!({"agent_name": "triage-agent", "summary": "Confirmed malicious. Sessions revoked. INC-2847.",
                        "confidence": "high", "evidence": {"sessions_revoked": 3}}),
            ),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["data"]["confidence"], json!("high"));
    for bad in [
        json!({"summary": "x"}),
        json!({"agent_name": "a", "summary": ""}),
        json!({"agent_name": "a", "summary": "x", "confidence": "certain"}),
        json!({"agent_name": "a", "summary": "x", "evidence": [1]}),
    ] {
        let (st, v) = s
            .call(Method::POST, &format!("/v1/alerts/{first}/findings"), Some(bad))
            .await;
        assert_eq!(st, 422, "{v}");
    }
    let (_, v) = s.call(Method::GET, &format!("/v1/alerts/{first}/findings"), None).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);

    // A later alert sharing the account: its payload lists the first with outcome and notes.
    let second = s
        .ingest(json!({"title": "Impossible Travel Detected", "severity": "High", "source_alert_id": "lc-2",
                       "occurred_at": "2025-01-15T03:42:18Z", "user": "nick.hathaway@calseta.com", "ip": "185.220.101.47"}))
        .await;
    s.until_enriched(&second).await;
    let (st, p) = s.call(Method::GET, &format!("/v1/alerts/{second}/payload"), None).await;
    assert_eq!(st, 200);
    let past = &p["past_alerts"][0];
    assert_eq!(past["uuid"], json!(first));
    assert_eq!(past["status"], json!("Closed"));
    assert_eq!(past["classification"], json!("True Positive - Suspicious Activity"));
    assert_eq!(past["closed_at"], closed_at);
    assert_eq!(past["indicators"], json!(["nick.hathaway@calseta.com"]));
    assert_eq!(
        past["analyst_notes"],
        json!("Confirmed malicious. Sessions revoked. INC-2847.")
    );

    // The activity log, latest first, names the key that acted (prefix only).
    let (_, v) = s.call(Method::GET, &format!("/v1/alerts/{first}/activity"), None).await;
    let types: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    for t in [
        "alert_ingested",
        "alert_status_updated",
        "alert_severity_updated",
        "alert_closed",
        "alert_malice_updated",
        "alert_finding_added",
    ] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    assert_eq!(types[0], "alert_finding_added");
    let prefix = &s.app.admin_key[..8];
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor_type"] == "api")
        .all(|e| e["actor_key_prefix"] == json!(prefix)));
    assert!(!v.to_string().contains(&s.app.admin_key));
}

#[tokio::test]
async fn the_list_filters_sorts_and_pages_and_the_detail_carries_metadata() {
    let s = stack().await;
    let mut uuids = Vec::new();
    for (i, sev) in ["Low", "High", "Critical", "Medium", "High"].iter().enumerate() {
        uuids.push(
            s.ingest(json!({"title": format!("alert {i}"), "severity": sev, "source_alert_id": format!("ls-{i}"),
                            "occurred_at": format!("2025-01-1{i}T00:00:00Z"), "tags": if i % 2 == 0 { json!(["a", "b"]) } else { json!(["a"]) },
                            "ip": "185.220.101.47"}))
                .await,
        );
    }
    for u in &uuids {
        s.until_enriched(u).await;
    }
    let (st, v) = s.call(Method::GET, "/v1/alerts?severity=High,Critical", None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["meta"]["total"], json!(3));
    let (_, v) = s
        .call(
            Method::GET,
            "/v1/alerts?sort_by=severity&sort_order=asc&page_size=2",
            None,
        )
        .await;
    assert_eq!(
        v["meta"],
        json!({"total": 5, "page": 1, "page_size": 2, "total_pages": 3})
    );
    assert_eq!(v["data"][0]["severity"], json!("Low"));
    assert_eq!(v["data"][1]["severity"], json!("Medium"));
    let (_, v) = s.call(Method::GET, "/v1/alerts?page=9&page_size=2", None).await;
    assert_eq!(v["data"], json!([]));
    assert_eq!(v["meta"]["total"], json!(5));
    // Default: occurred_at desc.
    let (_, v) = s.call(Method::GET, "/v1/alerts", None).await;
    assert_eq!(v["data"][0]["uuid"], json!(uuids[4]));
    let (_, v) = s.call(Method::GET, "/v1/alerts?tags=a&tags=b", None).await;
    assert_eq!(v["meta"]["total"], json!(3), "tags means has all of them");
    let (_, v) = s
        .call(
            Method::GET,
            "/v1/alerts?from_time=2025-01-11T00:00:00Z&to_time=2025-01-13T00:00:00Z&status=open",
            None,
        )
        .await;
    assert_eq!(v["meta"]["total"], json!(3), "both bounds inclusive: {v}");
    let (st, v) = s.call(Method::GET, "/v1/alerts?sort_by=bogus", None).await;
    assert_eq!((st, v["error"]["code"].clone()), (400, json!("VALIDATION_ERROR")));
    for bad in [
        "severity=Huge",
        "page_size=501",
        "page=0",
        "from_time=yesterday",
        "is_enriched=maybe",
    ] {
        let (st, v) = s.call(Method::GET, &format!("/v1/alerts?{bad}"), None).await;
        assert_eq!(st, 422, "{bad}: {v}");
    }

    let (st, v) = s.call(Method::GET, &format!("/v1/alerts/{}", uuids[1]), None).await;
    assert_eq!(st, 200);
    let d = &v["data"];
    assert_eq!(d["raw_payload"]["source_alert_id"], json!("ls-1"));
    assert_eq!(d["indicators"][0]["value"], json!("185.220.101.47"));
    assert_eq!(d["malice"], json!("Malicious"));
    // The reference's agents read per-provider results from the detail (no raw bodies there).
    assert_eq!(
        d["indicators"][0]["enrichment_results"]["virustotal"]["status"],
        json!("found")
    );
    assert!(!d["indicators"].to_string().contains("last_analysis_results"));
    // Metadata keys sit directly in `meta`, as in the reference.
    let m = &v["meta"];
    assert!(m.get("_metadata").is_none());
    assert_eq!(m["alert_source"], json!("generic"));
    assert_eq!(m["indicator_count"], json!(1));
    assert!(m["enrichment"]["succeeded"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "virustotal"));
    let (_, v) = s
        .call(Method::GET, &format!("/v1/alerts/{}/indicators", uuids[1]), None)
        .await;
    let results = &v["data"][0]["enrichment_results"];
    assert_eq!(results["virustotal"]["status"], json!("found"));
    assert_eq!(results["virustotal"]["extracted"]["malicious"], json!(14));
    assert!(
        !v.to_string().contains("last_analysis_results"),
        "no raw responses here"
    );

    // Delete frees the idempotency key.
    let (st, _) = s.call(Method::DELETE, &format!("/v1/alerts/{}", uuids[0]), None).await;
    assert_eq!(st, 204);
    let (st, v) = s.call(Method::GET, &format!("/v1/alerts/{}", uuids[0]), None).await;
    assert_eq!((st, v["error"]["code"].clone()), (404, json!("NOT_FOUND")));
    let again = s
        .ingest(json!({"title": "alert 0", "severity": "Low", "source_alert_id": "ls-0"}))
        .await;
    assert_ne!(again, uuids[0]);
    let (st, _) = s.call(Method::GET, "/v1/alerts/not-a-uuid", None).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn scopes_gate_every_alert_route() {
    let s = stack().await;
    let a = s.ingest(json!({"title": "scoped", "source_alert_id": "sc-1"})).await;
    let reader = s.app.create_key("reader", &["alerts:read"], None, None).await;
    let writer = s.app.create_key("writer", &["alerts:write"], None, None).await;
    let agents = s.app.create_key("agents", &["agents:read"], None, None).await;
    let routes: Vec<(Method, String, Option<Value>, &str)> = vec![
        (Method::GET, "/v1/alerts".into(), None, "alerts:read"),
        (Method::GET, format!("/v1/alerts/{a}"), None, "alerts:read"),
        (Method::GET, format!("/v1/alerts/{a}/findings"), None, "alerts:read"),
        (Method::GET, format!("/v1/alerts/{a}/activity"), None, "alerts:read"),
        (Method::GET, format!("/v1/alerts/{a}/indicators"), None, "alerts:read"),
        (Method::GET, format!("/v1/alerts/{a}/payload"), None, "alerts:read"),
        (
            Method::PATCH,
            format!("/v1/alerts/{a}"),
            Some(json!({"tags": ["x"]})),
            "alerts:write",
        ),
        (
            Method::POST,
            format!("/v1/alerts/{a}/findings"),
            Some(json!({"agent_name": "a", "summary": "s"})),
            "alerts:write",
        ),
        (
            Method::POST,
            format!("/v1/alerts/{a}/trigger-agents"),
            None,
            "agents:write",
        ),
    ];
    for (method, path, body, scope) in &routes {
        let (st, _) = s.call_with("", method.clone(), path, body.clone()).await;
        assert_eq!(st, 401, "{method} {path} without a key");
        for (key, holds) in [
            (&reader, "alerts:read"),
            (&writer, "alerts:write"),
            (&agents, "agents:read"),
        ] {
            let (st, v) = s.call_with(key, method.clone(), path, body.clone()).await;
            if holds == *scope {
                assert!(st < 300, "{method} {path} with {holds}: {st} {v}");
            } else {
                assert_eq!(st, 403, "{method} {path} with {holds}: {v}");
                assert_eq!(v["error"]["details"]["required_scopes"], json!([scope]));
            }
        }
        let (st, v) = s.call(method.clone(), path, body.clone()).await;
        assert!(st < 300, "admin passes {method} {path}: {st} {v}");
    }
    let (st, _) = s
        .call_with(&writer, Method::DELETE, &format!("/v1/alerts/{a}"), None)
        .await;
    assert_eq!(st, 204);
}

#[tokio::test]
async fn an_analyst_indicator_verdict_moves_the_alert_and_re_enrichment_keeps_it() {
    let s = stack().await;
    let a = s
        .ingest(json!({"title": "DNS", "severity": "Low", "source_alert_id": "iv-1", "ip": "8.8.8.8"}))
        .await;
    s.until_enriched(&a).await;
    let (_, v) = s.call(Method::GET, &format!("/v1/alerts/{a}/indicators"), None).await;
    let ind = v["data"][0]["uuid"].as_str().unwrap().to_string();
    let (st, v) = s.call(Method::GET, &format!("/v1/indicators/{ind}"), None).await;
    assert_eq!(st, 200);
    assert_eq!(v["data"]["malice"], json!("Benign"));
    assert!(
        v["data"]["enrichment_results"]["virustotal"]["raw"].is_object(),
        "raw is kept here"
    );

    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("/v1/indicators/{ind}"),
            Some(json!({"malice": "Malicious"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["malice_source"], json!("analyst"));
    let (_, al) = s.call(Method::GET, &format!("/v1/alerts/{a}"), None).await;
    assert_eq!(
        al["data"]["malice"],
        json!("Malicious"),
        "the alert follows its indicators"
    );

    // Re-enrichment (cache first) keeps the analyst's verdict and completes the alert again.
    let (st, v) = s.call(Method::POST, &format!("/v1/alerts/{a}/enrich"), None).await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["data"]["message"], json!("Enrichment queued"));
    let al = s.until_enriched(&a).await;
    assert_eq!(al["data"]["malice"], json!("Malicious"));

    // null: back to what the providers said.
    let (_, v) = s
        .call(
            Method::PATCH,
            &format!("/v1/indicators/{ind}"),
            Some(json!({"malice": null})),
        )
        .await;
    assert_eq!(v["data"]["malice"], json!("Benign"));
    assert_eq!(v["data"]["malice_source"], json!("enrichment"));
    let (_, al) = s.call(Method::GET, &format!("/v1/alerts/{a}"), None).await;
    assert_eq!(al["data"]["malice"], json!("Benign"));
    let (st, _) = s
        .call(
            Method::PATCH,
            &format!("/v1/indicators/{ind}"),
            Some(json!({"malice": "Evil"})),
        )
        .await;
    assert_eq!(st, 422);
    let (st, _) = s
        .call(Method::PATCH, &format!("/v1/indicators/{ind}"), Some(json!({})))
        .await;
    assert_eq!(st, 422);
    let (_, v) = s.call(Method::GET, &format!("/v1/alerts/{a}/activity"), None).await;
    assert!(v.to_string().contains("indicator_malice_updated"));
    let reader = s.app.create_key("r", &["alerts:read"], None, None).await;
    assert_eq!(
        s.call_with(&reader, Method::GET, &format!("/v1/indicators/{ind}"), None)
            .await
            .0,
        403
    );
    let enr = s.app.create_key("e", &["enrichments:read"], None, None).await;
    assert_eq!(
        s.call_with(&enr, Method::GET, &format!("/v1/indicators/{ind}"), None)
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn metrics_follow_the_spec_definitions() {
    let s = stack().await;
    let mut uuids = Vec::new();
    for i in 0..4 {
        uuids.push(
            s.ingest(
                json!({"title": format!("m{i}"), "severity": if i < 2 { "High" } else { "Low" },
                            "source_alert_id": format!("m-{i}"), "rule_id": "r-1", "rule_name": "Rule one",
                            "occurred_at": "2025-01-01T00:00:00Z", "ip": "185.220.101.47"}),
            )
            .await,
        );
    }
    for u in &uuids {
        s.until_enriched(u).await;
    }
    for (u, c) in [
        (&uuids[0], "False Positive - Inaccurate Data"),
        (&uuids[1], "True Positive - Suspicious Activity"),
    ] {
        let (st, v) = s
            .call(
                Method::PATCH,
                &format!("/v1/alerts/{u}"),
                Some(json!({"status": "Closed", "close_classification": c})),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }
    let (st, v) = s.call(Method::GET, "/v1/metrics/alerts", None).await;
    assert_eq!(st, 200, "{v}");
    let d = &v["data"];
    assert_eq!(d["total_alerts"], json!(4));
    assert_eq!(d["false_positive_rate"], json!(0.5));
    assert_eq!(d["alerts_by_status"], json!({"Open": 2, "Closed": 2}));
    assert_eq!(d["active_alerts_by_severity"], json!({"Low": 2}));
    assert_eq!(d["enrichment_coverage"], json!(1.0));
    assert!(d["mean_time_to_acknowledge"].as_f64().unwrap() >= 0.0);
    assert!(d["mean_time_to_triage"].is_null(), "nobody triaged");
    assert!(
        d["mean_time_to_detect"].as_f64().unwrap() > 86400.0,
        "occurred long before ingest"
    );
    assert_eq!(d["top_detection_rules"][0]["count"], json!(4));
    let (st, v) = s.call(Method::GET, "/v1/metrics/summary", None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["period"], json!("last_30_days"));
    assert_eq!(v["data"]["alerts"]["active"], json!(2));
    assert_eq!(v["data"]["platform"]["detection_rules"], json!(1));
    assert_eq!(v["data"]["platform"]["enrichment_providers"], json!(5));
    let (_, detail) = s.call(Method::GET, &format!("/v1/alerts/{}", uuids[0]), None).await;
    let rule = detail["data"]["detection_rule_uuid"].as_str().unwrap().to_string();
    let (st, v) = s
        .call(Method::GET, &format!("/v1/detection-rules/{rule}/metrics"), None)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["total_alerts"], json!(4));
    assert_eq!(v["data"]["true_positive_rate"], json!(0.5));
    assert_eq!(v["data"]["top_indicators"][0]["value"], json!("185.220.101.47"));
    assert_eq!(v["data"]["top_indicators"][0]["count"], json!(4));
    let (st, _) = s
        .call(
            Method::GET,
            "/v1/metrics/alerts?from_time=2030-01-01T00:00:00Z&to_time=2020-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(st, 422);
    let (_, v) = s
        .call(
            Method::GET,
            "/v1/metrics/alerts?from_time=2020-01-01T00:00:00Z&to_time=2020-02-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(v["data"]["total_alerts"], json!(0));
    assert!(v["data"]["mean_time_to_enrich"].is_null());
}

#[tokio::test]
async fn indicators_added_through_the_api_are_normalized_and_enriched() {
    let s = stack().await;
    let a = s.ingest(json!({"title": "manual", "source_alert_id": "add-1"})).await;
    s.until_enriched(&a).await;
    let (st, v) = s
        .call(
            Method::POST,
            &format!("/v1/alerts/{a}/indicators"),
            Some(json!({"indicators": [{"type": "ip", "value": " 185.220.101.47 "}, {"type": "domain", "value": "EVIL-LOGIN-PORTAL.com."},
                                       {"type": "ip", "value": "10.0.0.1"}, {"type": "IP", "value": "185.220.101.47"}]})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        v["data"]["added_count"],
        json!(3),
        "normalized duplicates collapse: {v}"
    );
    assert_eq!(v["data"]["enrich_requested"], json!(true));
    let states: Vec<(&str, &str)> = v["data"]["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["value"].as_str().unwrap(), i["enrichment_state"].as_str().unwrap()))
        .collect();
    assert!(states.contains(&("evil-login-portal.com", "pending")), "{states:?}");
    assert!(
        states.contains(&("10.0.0.1", "skipped")),
        "private addresses never leave: {states:?}"
    );
    let al = s.until_enriched(&a).await;
    assert_eq!(al["data"]["malice"], json!("Malicious"));
    // Again: nothing new.
    let (_, v) = s
        .call(
            Method::POST,
            &format!("/v1/alerts/{a}/indicators?enrich=false"),
            Some(json!({"indicators": [{"type": "ip", "value": "185.220.101.47"}]})),
        )
        .await;
    assert_eq!(v["data"]["added_count"], json!(0));
    // A URL brings its host, as at ingest; an internal host is linked but never sent.
    let (st, v) = s
        .call(
            Method::POST,
            &format!("/v1/alerts/{a}/indicators?enrich=false"),
            Some(
                json!({"indicators": [{"type": "url", "value": "https://Phish.Example.org/login?x=1"},
                                       {"type": "url", "value": "http://192.168.1.20:8080/a"}]}),
            ),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let added: Vec<(&str, &str)> = v["data"]["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["type"].as_str().unwrap(), i["value"].as_str().unwrap()))
        .collect();
    assert!(added.contains(&("domain", "phish.example.org")), "{added:?}");
    assert!(added.contains(&("ip", "192.168.1.20")), "{added:?}");
    assert_eq!(v["data"]["added_count"], json!(4), "{v}");
    for bad in [
        json!({"indicators": []}),
        json!({"indicators": [{"type": "mac", "value": "x"}]}),
        json!({"indicators": [{"type": "ip", "value": "999.1.1.1"}]}),
        json!({}),
    ] {
        let (st, v) = s
            .call(Method::POST, &format!("/v1/alerts/{a}/indicators"), Some(bad))
            .await;
        assert_eq!(st, 422, "{v}");
    }
    let (_, v) = s.call(Method::GET, &format!("/v1/alerts/{a}/activity"), None).await;
    assert!(v.to_string().contains("alert_indicators_added"));
}
