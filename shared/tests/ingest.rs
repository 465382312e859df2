//! Ingest through HTTP against the real router, a fresh Postgres per test and the in-process
//! queue: every golden fixture is stored exactly as expected, repeats are deduplicated, every row
//! of the bad-input table answers as specified, and nothing is half-written.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
};

use calseta::{
    config::Limits,
    db::sources::{self, AuthType, SourceWrite},
    ingest::credentials,
    queue::{messages::EnrichRequest, Queue, QueueName},
    sources::SourceName,
    testing::TestApp,
};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};

// ---- log capture: secrets must never reach a log line --------------------------------------

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let c = Captured::default();
        let writer = c.clone();
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter("debug")
            .with_writer(move || writer.clone())
            .try_init();
        c
    })
}

// ---- helpers ----------------------------------------------------------------------------------

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sources")
}

async fn post(app: &TestApp, source: &str, key: Option<&str>, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
    let mut r = app.http.post(app.url(&format!("/v1/ingest/{source}"))).body(body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let resp = r.send().await.expect("send");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn counts(app: &TestApp) -> (i64, i64, i64, i64) {
    (
        app.scalar_i64("SELECT count(*) FROM alerts").await,
        app.scalar_i64("SELECT count(*) FROM outbox").await,
        app.scalar_i64("SELECT count(*) FROM ingest_archive").await,
        app.scalar_i64("SELECT count(*) FROM indicators").await,
    )
}

async fn set_source(app: &TestApp, source: SourceName, w: SourceWrite) {
    let c = app.db.pool.get().await.expect("client");
    sources::upsert(&**c, &app.state.sealer, source, &w)
        .await
        .expect("upsert source");
}

fn source_write(auth: AuthType) -> SourceWrite {
    SourceWrite {
        display_name: None,
        is_active: true,
        auth_type: auth,
        url_token_allowed: false,
        shared_secret: None,
        previous_shared_secret: None,
        hmac_secret: None,
        extra_indicator_fields: json!({}),
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

// ---- every fixture, stored -------------------------------------------------------------------

#[tokio::test]
async fn every_fixture_is_stored_as_expected_and_redelivery_is_deduplicated() {
    let mut checked = 0;
    for source in ["sentinel", "elastic", "splunk", "generic"] {
        let dir = fixtures().join(source);
        let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("fixtures")
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                n.ends_with(".json") && !n.ends_with(".expected.json") && !n.ends_with(".context.json")
            })
            .collect();
        cases.sort();
        for case in cases {
            let stem = case.file_stem().and_then(|s| s.to_str()).expect("stem").to_owned();
            let body = std::fs::read(&case).expect("body");
            let expected: Value =
                serde_json::from_slice(&std::fs::read(dir.join(format!("{stem}.expected.json"))).expect("expected"))
                    .expect("expected json");
            let app = TestApp::start().await;
            let ctx_path = dir.join(format!("{stem}.context.json"));
            if ctx_path.exists() {
                let ctx: Value = serde_json::from_slice(&std::fs::read(&ctx_path).expect("ctx")).expect("ctx json");
                let mut fields = serde_json::Map::new();
                for pair in ctx["extra_indicator_fields"].as_array().cloned().unwrap_or_default() {
                    fields.insert(pair[0].as_str().expect("path").to_owned(), pair[1].clone());
                }
                let mut w = source_write(AuthType::ApiKey);
                w.extra_indicator_fields = Value::Object(fields);
                set_source(&app, source.parse().expect("source"), w).await;
            }
            let (status, resp) = post(&app, source, Some(&app.admin_key), body.clone()).await;
            let label = format!("{source}/{stem}");
            if expected.get("error").is_some() {
                assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{label}: {resp}");
                assert_eq!(code(&resp), "INVALID_PAYLOAD", "{label}");
                assert_eq!(counts(&app).await, (0, 0, 0, 0), "{label}: nothing written");
                checked += 1;
                continue;
            }
            assert_eq!(status, StatusCode::ACCEPTED, "{label}: {resp}");
            let items = expected["items"].as_array().expect("items");
            let got = resp["data"]["items"].as_array().expect("response items");
            assert_eq!(got.len(), items.len(), "{label}");
            let body_json: Value = serde_json::from_slice(&body).expect("body json");
            let mut accepted = Vec::new();
            for (i, (want, got)) in items.iter().zip(got).enumerate() {
                match want["status"].as_str() {
                    Some("alert") => {
                        assert_eq!(got["status"], "queued", "{label}[{i}]");
                        accepted.push((want.clone(), got["alert_uuid"].as_str().expect("uuid").to_owned()));
                    }
                    Some("skipped") => assert_eq!(got["status"], "skipped", "{label}[{i}]"),
                    Some("rejected") => assert_eq!(got["status"], "rejected", "{label}[{i}]"),
                    other => panic!("{label}: unexpected status {other:?}"),
                }
            }
            assert_eq!(
                app.scalar_i64("SELECT count(*) FROM alerts").await,
                accepted.len() as i64,
                "{label}"
            );
            let c = app.db.pool.get().await.expect("client");
            for (want, uuid) in &accepted {
                let uuid: uuid::Uuid = uuid.parse().expect("uuid");
                let row = c
                    .query_one(
                        "SELECT a.source_alert_id, a.title, a.severity, a.severity_original, a.description, a.tags,
                                a.deep_link, a.mitre, a.extra, a.occurred_at_inferred, a.raw_payload,
                                a.occurred_at,
                                r.source_rule_id, r.name, a.enrichment_status
                         FROM alerts a LEFT JOIN detection_rules r ON r.id = a.detection_rule_id WHERE a.uuid = $1",
                        &[&uuid],
                    )
                    .await
                    .expect("row");
                assert_eq!(json!(row.get::<_, String>(0)), want["source_alert_id"], "{label}");
                assert_eq!(json!(row.get::<_, String>(1)), want["title"], "{label}");
                assert_eq!(json!(row.get::<_, String>(2)), want["severity"], "{label}");
                assert_eq!(
                    json!(row.get::<_, Option<String>>(3)),
                    want["severity_original"],
                    "{label}"
                );
                assert_eq!(json!(row.get::<_, Option<String>>(4)), want["description"], "{label}");
                assert_eq!(json!(row.get::<_, Vec<String>>(5)), want["tags"], "{label}");
                assert_eq!(json!(row.get::<_, Option<String>>(6)), want["deep_link"], "{label}");
                assert_eq!(row.get::<_, Value>(7), want["mitre"], "{label}");
                assert_eq!(row.get::<_, Value>(8), want["extra"], "{label}");
                assert_eq!(json!(row.get::<_, bool>(9)), want["occurred_at_inferred"], "{label}");
                if want["occurred_at_inferred"] == json!(false) {
                    let want_at: chrono::DateTime<chrono::Utc> = want["occurred_at"]
                        .as_str()
                        .expect("occurred_at")
                        .parse()
                        .expect("timestamp");
                    // Postgres keeps microseconds; Sentinel sends 100 ns ticks.
                    let got_at = row.get::<_, chrono::DateTime<chrono::Utc>>(11);
                    assert_eq!(got_at.timestamp_micros(), want_at.timestamp_micros(), "{label}");
                }
                // Raw payload: the body itself, or the batch element it came from.
                let raw: Value = row.get(10);
                let is_body_or_element = raw == body_json
                    || body_json.as_array().is_some_and(|a| a.contains(&raw))
                    || body_json["alerts"].as_array().is_some_and(|a| a.contains(&raw))
                    || raw == body_json["_source"];
                assert!(is_body_or_element, "{label}: raw payload is not the received JSON");
                match want.get("detection_rule_ref").filter(|r| !r.is_null()) {
                    Some(rule) => {
                        assert_eq!(json!(row.get::<_, Option<String>>(12)), rule["id"], "{label}");
                        assert_eq!(json!(row.get::<_, Option<String>>(13)), rule["name"], "{label}");
                    }
                    None => assert!(row.get::<_, Option<String>>(12).is_none(), "{label}"),
                }
                let links = c
                    .query(
                        "SELECT i.type, i.value, l.source_field FROM alert_indicators l
                         JOIN indicators i ON i.id = l.indicator_id JOIN alerts a ON a.id = l.alert_id
                         WHERE a.uuid = $1 ORDER BY i.type, i.value",
                        &[&uuid],
                    )
                    .await
                    .expect("links");
                let mut got_inds: Vec<Value> = links
                    .iter()
                    .map(|r| json!({"type": r.get::<_, String>(0), "value": r.get::<_, String>(1), "source_field": r.get::<_, String>(2)}))
                    .collect();
                let mut want_inds = want["indicators"].as_array().cloned().unwrap_or_default();
                let key = |v: &Value| format!("{}|{}", v["type"], v["value"]);
                got_inds.sort_by_key(key);
                want_inds.sort_by_key(key);
                assert_eq!(got_inds, want_inds, "{label}: indicators");
            }
            // Enrichment work: one message per (alert, enrichable indicator), plus one dispatch
            // for each alert with nothing to enrich.
            let pending = app
                .scalar_i64("SELECT count(*) FROM alert_indicators WHERE enrichment_state = 'pending'")
                .await;
            let enrich_msgs = app
                .scalar_i64("SELECT count(*) FROM outbox WHERE queue = 'enrich'")
                .await;
            assert_eq!(pending, enrich_msgs, "{label}");
            let no_work = app
                .scalar_i64(
                    "SELECT count(*) FROM alerts a WHERE NOT EXISTS (SELECT 1 FROM alert_indicators l
                     WHERE l.alert_id = a.id AND l.enrichment_state = 'pending')",
                )
                .await;
            assert_eq!(
                app.scalar_i64("SELECT count(*) FROM outbox WHERE queue = 'dispatch'")
                    .await,
                no_work,
                "{label}"
            );
            assert_eq!(
                app.scalar_i64("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                    .await,
                0,
                "{label}: sent"
            );

            // Redelivery: same uuids, deduplicated, nothing new enqueued or extracted.
            let before = counts(&app).await;
            let (status, again) = post(&app, source, Some(&app.admin_key), body).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{label}");
            for (i, item) in again["data"]["items"].as_array().expect("items").iter().enumerate() {
                if item["status"] == "deduplicated" {
                    assert_eq!(item["alert_uuid"], got[i]["alert_uuid"], "{label}");
                    assert_eq!(item["duplicate_count"], 1, "{label}");
                    assert_eq!(item["is_duplicate"], true);
                }
            }
            let after = counts(&app).await;
            assert_eq!(
                (after.0, after.1, after.3),
                (before.0, before.1, before.3),
                "{label}: repeat adds nothing"
            );
            assert_eq!(after.2, before.2 + 1, "{label}: the repeat is archived");
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} fixtures checked");
}

// ---- bad input (sources spec §9) ------------------------------------------------------------

#[tokio::test]
async fn bad_input_table() {
    let app = TestApp::with_limits(Limits {
        ingest_body_bytes: 64 * 1024,
        ..Limits::default()
    })
    .await;
    let admin = app.admin_key.clone();
    let good = r#"{"title": "x", "src_ip": "185.220.101.47"}"#;

    // 1: too large, counted on bytes received (chunked body without Content-Length).
    let big = vec![b' '; 65 * 1024];
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(big)]);
    let (s, b) = post(&app, "generic", Some(&admin), reqwest::Body::wrap_stream(stream)).await;
    assert_eq!((s, code(&b)), (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"));
    assert_eq!(b["error"]["details"]["limit_bytes"], 64 * 1024);
    // 2: unknown and inactive sources.
    let (s, b) = post(&app, "qradar", Some(&admin), good).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "UNKNOWN_SOURCE"));
    assert_eq!(b["error"]["details"]["source_name"], "qradar");
    let mut off = source_write(AuthType::ApiKey);
    off.is_active = false;
    set_source(&app, SourceName::Sentinel, off).await;
    let (s, b) = post(&app, "sentinel", Some(&admin), good).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "UNKNOWN_SOURCE"));
    // 3: no key, unknown key, malformed key, expired key.
    let (s, b) = post(&app, "generic", None, good).await;
    assert_eq!((s, code(&b)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"));
    let (s, b) = post(
        &app,
        "generic",
        Some("cai_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        good,
    )
    .await;
    assert_eq!((s, code(&b)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"));
    let (s, b) = post(&app, "generic", Some("cai_short"), good).await;
    assert_eq!((s, code(&b)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"));
    let wrong = format!("{}x", &admin[..admin.len() - 1]);
    let (s, _) = post(&app, "generic", Some(&wrong), good).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "same prefix, wrong key");
    let expired = app
        .create_key(
            "old",
            &["alerts:write"],
            None,
            Some(chrono::Utc::now() - chrono::Duration::hours(1)),
        )
        .await;
    let (s, b) = post(&app, "generic", Some(&expired), good).await;
    assert_eq!((s, code(&b)), (StatusCode::UNAUTHORIZED, "KEY_EXPIRED"));
    let revoked = app.create_key("revoked", &["alerts:write"], None, None).await;
    app.db
        .pool
        .get()
        .await
        .expect("c")
        .execute("UPDATE api_keys SET is_active = false WHERE name = 'revoked'", &[])
        .await
        .expect("revoke");
    let (s, _) = post(&app, "generic", Some(&revoked), good).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // 4: scope.
    let reader = app.create_key("reader", &["alerts:read"], None, None).await;
    let (s, b) = post(&app, "generic", Some(&reader), good).await;
    assert_eq!((s, code(&b)), (StatusCode::FORBIDDEN, "FORBIDDEN"));
    assert_eq!(b["error"]["details"]["required_scopes"], json!(["alerts:write"]));
    // 5: allowed_sources.
    let elastic_only = app
        .create_key("elastic-only", &["alerts:write"], Some(&["elastic"]), None)
        .await;
    let (s, b) = post(&app, "generic", Some(&elastic_only), good).await;
    assert_eq!((s, code(&b)), (StatusCode::FORBIDDEN, "SOURCE_NOT_ALLOWED"));
    // 8: not JSON, empty, not UTF-8.
    for bad in [&b"{not json"[..], b"", b"   ", &[0xff, 0xfe, 0x7b, 0x7d]] {
        let (s, b) = post(&app, "generic", Some(&admin), bad.to_vec()).await;
        assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "INVALID_JSON"), "{bad:?}");
    }
    // 9: wrong shape, with field errors that never echo the input.
    let (s, b) = post(
        &app,
        "generic",
        Some(&admin),
        r#"{"severity": "High", "secretish": "hunter2"}"#,
    )
    .await;
    assert_eq!((s, code(&b)), (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_PAYLOAD"));
    assert!(b["error"]["details"]["errors"]
        .as_array()
        .is_some_and(|e| !e.is_empty()));
    assert!(!b.to_string().contains("hunter2"));
    let many: Vec<Value> = (0..101).map(|i| json!({"title": format!("a{i}")})).collect();
    let (s, b) = post(&app, "generic", Some(&admin), serde_json::to_vec(&many).expect("json")).await;
    assert_eq!((s, code(&b)), (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_PAYLOAD"));
    // Nothing of the refused requests was written.
    assert_eq!(counts(&app).await, (0, 0, 0, 0));
    // A good request still works.
    let (s, _) = post(&app, "generic", Some(&admin), good).await;
    assert_eq!(s, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn rate_limits_per_key_and_per_source() {
    let app = TestApp::with_limits(Limits {
        ingest_per_key_per_minute: 3,
        ingest_per_source_per_minute: 2,
        ..Limits::default()
    })
    .await;
    for i in 0..3 {
        let (s, _) = post(&app, "generic", Some(&app.admin_key), format!(r#"{{"title": "t{i}"}}"#)).await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    let resp = app
        .http
        .post(app.url("/v1/ingest/generic"))
        .bearer_auth(&app.admin_key)
        .body(r#"{"title": "t9"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("h")
        .parse()
        .expect("secs");
    assert!((1..=60).contains(&retry));
    let b: Value = resp.json().await.expect("json");
    assert_eq!(code(&b), "RATE_LIMITED");
    assert_eq!(b["error"]["details"]["retry_after_seconds"], retry);
    // Another key has its own budget.
    let other = app.create_key("other", &["alerts:write"], None, None).await;
    assert_eq!(
        post(&app, "generic", Some(&other), r#"{"title": "o"}"#).await.0,
        StatusCode::ACCEPTED
    );
    // Secret-authenticated calls count per source.
    let mut w = source_write(AuthType::SharedSecret);
    w.shared_secret = Some(SecretString::from("s3cret-s3cret-s3cret-s3cret-s3cret"));
    set_source(&app, SourceName::Elastic, w).await;
    let send = || {
        app.http
            .post(app.url("/v1/ingest/elastic"))
            .header("x-calseta-source-secret", "s3cret-s3cret-s3cret-s3cret-s3cret")
            .body(r#"{"kibana.alert.rule.name": "r", "kibana.alert.uuid": "u"}"#)
            .send()
    };
    assert_eq!(send().await.expect("1").status(), StatusCode::ACCEPTED);
    assert_eq!(send().await.expect("2").status(), StatusCode::ACCEPTED);
    assert_eq!(send().await.expect("3").status(), StatusCode::TOO_MANY_REQUESTS);
}

// ---- source auth modes (§8) -----------------------------------------------------------------

#[tokio::test]
async fn shared_secret_modes_and_splunk_url_token_is_never_logged() {
    let logs = logs();
    let app = TestApp::start().await;
    let secret = "Zq8f1uT3vQ0xk2NbC7dRa9LmW4yHs6Pe";
    let old = "previous-previous-previous-previous";
    let mut w = source_write(AuthType::SharedSecret);
    w.url_token_allowed = true;
    w.shared_secret = Some(SecretString::from(secret));
    w.previous_shared_secret = Some(SecretString::from(old));
    set_source(&app, SourceName::Splunk, w).await;
    let body = std::fs::read(fixtures().join("splunk/stock_webhook.json")).expect("fixture");

    let r = app
        .http
        .post(app.url(&format!("/v1/ingest/splunk?token={secret}")))
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let ok_headers = [
        ("x-calseta-source-secret", secret.to_owned()),
        ("x-splunk-webhook-secret", old.to_owned()),
        ("authorization", format!("Bearer {secret}")),
        (
            "authorization",
            format!("Basic {}", base64_encode(&format!("splunk:{secret}"))),
        ),
    ];
    for (h, v) in ok_headers {
        let r = app
            .http
            .post(app.url("/v1/ingest/splunk"))
            .header(h, v)
            .body(body.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{h}");
    }
    // An API key is accepted too in shared_secret mode.
    assert_eq!(
        post(&app, "splunk", Some(&app.admin_key), body.clone()).await.0,
        StatusCode::ACCEPTED
    );
    for (req, reason) in [
        (
            app.http.post(app.url("/v1/ingest/splunk?token=wrong")),
            "secret_mismatch",
        ),
        (app.http.post(app.url("/v1/ingest/splunk")), "missing_credentials"),
    ] {
        let r = req.body(body.clone()).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let b: Value = r.json().await.expect("json");
        assert_eq!(
            (code(&b), b["error"]["details"]["reason"].as_str()),
            ("INVALID_SIGNATURE", Some(reason))
        );
    }
    // URL tokens only where allowed.
    let mut w = source_write(AuthType::SharedSecret);
    w.shared_secret = Some(SecretString::from(secret));
    set_source(&app, SourceName::Elastic, w).await;
    let r = app
        .http
        .post(app.url(&format!("/v1/ingest/elastic?token={secret}")))
        .body(r#"{"kibana.alert.rule.name": "r"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Secret not configured: fails closed.
    set_source(&app, SourceName::Generic, source_write(AuthType::SharedSecret)).await;
    let r = app
        .http
        .post(app.url("/v1/ingest/generic"))
        .header("x-calseta-source-secret", secret)
        .body(r#"{"title":"x"}"#)
        .send()
        .await
        .expect("send");
    let b: Value = r.json().await.expect("json");
    assert_eq!(b["error"]["details"]["reason"], "not_configured");

    // Neither the logs nor the archive hold any secret.
    let text = String::from_utf8_lossy(&logs.0.lock().expect("logs")).to_string();
    assert!(!text.is_empty(), "log capture works");
    assert!(
        !text.contains(secret) && !text.contains(old),
        "a secret reached the logs"
    );
    let c = app.db.pool.get().await.expect("client");
    for row in c
        .query("SELECT headers::text FROM ingest_archive", &[])
        .await
        .expect("archive")
    {
        let h: String = row.get(0);
        assert!(
            !h.contains(secret) && !h.contains(old) && !h.contains(&app.admin_key),
            "{h}"
        );
    }
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn hmac_mode_requires_a_valid_signature_even_with_an_api_key() {
    let app = TestApp::start().await;
    let secret = SecretString::from("hmac-secret-hmac-secret-hmac-secret!");
    let mut w = source_write(AuthType::Hmac);
    w.hmac_secret = Some(secret.clone());
    set_source(&app, SourceName::Generic, w).await;
    let body = br#"{"title": "signed", "src_ip": "185.220.101.47"}"#.to_vec();
    let now = chrono::Utc::now().timestamp();
    let sig = credentials::sign(&secret, Some(now), &body);
    let r = app
        .http
        .post(app.url("/v1/ingest/generic"))
        .header("x-calseta-signature", &sig)
        .header("x-calseta-timestamp", now.to_string())
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let cases = [
        (None, None, "missing_credentials"),
        (
            Some(credentials::sign(&secret, Some(now), b"{}")),
            Some(now),
            "bad_signature",
        ),
        (
            Some(credentials::sign(&secret, Some(now - 600), &body)),
            Some(now - 600),
            "stale_timestamp",
        ),
    ];
    for (sig, ts, reason) in cases {
        let mut r = app
            .http
            .post(app.url("/v1/ingest/generic"))
            .bearer_auth(&app.admin_key)
            .body(body.clone());
        if let Some(s) = sig {
            r = r.header("x-calseta-signature", s);
        }
        if let Some(t) = ts {
            r = r.header("x-calseta-timestamp", t.to_string());
        }
        let resp = r.send().await.expect("send");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{reason}");
        let b: Value = resp.json().await.expect("json");
        assert_eq!(b["error"]["details"]["reason"], reason);
    }
    // `none` lets anything in (explicit opt-in).
    set_source(&app, SourceName::Elastic, source_write(AuthType::None)).await;
    let (s, _) = post(&app, "elastic", None, r#"{"kibana.alert.rule.name": "open"}"#).await;
    assert_eq!(s, StatusCode::ACCEPTED);
}

// ---- idempotency under concurrency, rules, enrichment work ------------------------------------

/// Many requests sharing new indicators at once: one row per indicator, and every alert linked
/// to all of them (a row another request committed after a statement's snapshot is still found).
/// `last_seen` of an indicator seen again is refreshed once it is over a minute old.
#[tokio::test]
async fn concurrent_alerts_sharing_new_indicators_all_link_them() {
    let app = TestApp::start().await;
    let mut handles = Vec::new();
    for i in 0..24 {
        let (http, url, key) = (app.http.clone(), app.url("/v1/ingest/generic"), app.admin_key.clone());
        handles.push(tokio::spawn(async move {
            let body = format!(
                r#"{{"title": "Shared {i}", "source_alert_id": "shared-{i}", "src_ip": "185.220.101.{}", "domain": "hot-{}.example-threat.net", "user": "u{}@corp.example", "md5": "44d88612fea8a8f36de82e1278abb02f"}}"#,
                i % 3,
                i % 2,
                i % 4
            );
            http.post(url).bearer_auth(key).body(body).send().await.expect("send").status()
        }));
    }
    for h in handles {
        assert_eq!(h.await.expect("join"), StatusCode::ACCEPTED);
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM alerts").await, 24);
    // 3 ips + 2 domains + 4 accounts + 1 hash.
    assert_eq!(app.scalar_i64("SELECT count(*) FROM indicators").await, 10);
    assert_eq!(
        app.scalar_i64(
            "SELECT count(*) FROM alerts a WHERE (SELECT count(*) FROM alert_indicators l WHERE l.alert_id = a.id) <> 4"
        )
        .await,
        0,
        "every alert links its ip, domain, account and hash"
    );

    let c = app.db.pool.get().await.expect("c");
    c.execute(
        "UPDATE indicators SET last_seen = now() - interval '2 hours' WHERE value = 'hot-0.example-threat.net'",
        &[],
    )
    .await
    .expect("age");
    // Another request in flight holds the key-share lock its link's foreign-key check takes.
    let mut other = app.db.pool.get().await.expect("c");
    let in_flight = other.transaction().await.expect("tx");
    in_flight
        .execute(
            "SELECT 1 FROM indicators WHERE value = 'hot-0.example-threat.net' FOR KEY SHARE",
            &[],
        )
        .await
        .expect("key share");
    let body = r#"{"title": "Again", "source_alert_id": "shared-again", "domain": "hot-0.example-threat.net"}"#;
    let r = app
        .http
        .post(app.url("/v1/ingest/generic"))
        .bearer_auth(&app.admin_key)
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        app.scalar_i64(
            "SELECT count(*) FROM indicators WHERE value = 'hot-0.example-threat.net' AND last_seen > now() - interval '1 minute'"
        )
        .await,
        1,
        "last_seen refreshed"
    );
    in_flight.rollback().await.expect("rollback");
}

#[tokio::test]
async fn concurrent_duplicates_create_one_alert_and_one_rule() {
    let app = TestApp::start().await;
    let body = r#"{"title": "Same", "source_alert_id": "dup-1", "rule_id": "r-1", "rule_name": "Rule One", "src_ip": "185.220.101.47"}"#;
    let mut handles = Vec::new();
    for _ in 0..20 {
        let (http, url, key) = (app.http.clone(), app.url("/v1/ingest/generic"), app.admin_key.clone());
        handles.push(tokio::spawn(async move {
            let r = http.post(url).bearer_auth(key).body(body).send().await.expect("send");
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            r.json::<Value>().await.expect("json")
        }));
    }
    let mut uuids = std::collections::HashSet::new();
    let mut queued = 0;
    for h in handles {
        let b = h.await.expect("join");
        uuids.insert(b["data"]["alert_uuid"].as_str().expect("uuid").to_owned());
        if b["data"]["status"] == "queued" {
            queued += 1;
        }
    }
    assert_eq!(uuids.len(), 1);
    assert_eq!(queued, 1);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM alerts").await, 1);
    assert_eq!(app.scalar_i64("SELECT duplicate_count::bigint FROM alerts").await, 19);
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM activity_events WHERE event_type = 'alert_deduplicated'")
            .await,
        19
    );
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM activity_events WHERE event_type = 'alert_ingested'")
            .await,
        1
    );
    assert_eq!(
        app.scalar_i64(
            "SELECT count(*) FROM activity_events WHERE actor_type = 'api' AND actor_key_prefix = left((SELECT key_prefix FROM api_keys WHERE name = 'test-admin'), 8)"
        )
        .await,
        20
    );
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM outbox WHERE queue = 'enrich'")
            .await,
        1
    );
    // Different alerts of one new rule, concurrently: one rule.
    let mut handles = Vec::new();
    for i in 0..10 {
        let (http, url, key) = (app.http.clone(), app.url("/v1/ingest/generic"), app.admin_key.clone());
        handles.push(tokio::spawn(async move {
            let body = format!(
                r#"{{"title": "A{i}", "source_alert_id": "a-{i}", "rule_id": "new-rule", "mitre_tactics": ["TA0001"]}}"#
            );
            http.post(url)
                .bearer_auth(key)
                .body(body)
                .send()
                .await
                .expect("send")
                .status()
        }));
    }
    for h in handles {
        assert_eq!(h.await.expect("join"), StatusCode::ACCEPTED);
    }
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM detection_rules WHERE source_rule_id = 'new-rule'")
            .await,
        1
    );
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM alerts a JOIN detection_rules r ON r.id = a.detection_rule_id WHERE r.source_rule_id = 'new-rule'").await,
        10
    );
    let c = app.db.pool.get().await.expect("c");
    let tactics: Vec<String> = c
        .query_one(
            "SELECT mitre_tactics FROM detection_rules WHERE source_rule_id = 'new-rule'",
            &[],
        )
        .await
        .expect("r")
        .get(0);
    assert_eq!(tactics, vec!["TA0001 - Initial Access".to_owned()]);
}

#[tokio::test]
async fn enrichment_messages_skip_values_that_never_leave_and_reach_the_queue() {
    let app = TestApp::start().await;
    let body = json!({
        "title": "Mixed",
        "indicators": [
            {"type": "ip", "value": "185.220.101.47"},
            {"type": "ip", "value": "10.1.2.3"},
            {"type": "domain", "value": "printer.corp"},
            {"type": "hash_sha256", "value": "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B85A"},
            {"type": "account", "value": "Nick.Hathaway@Calseta.com"}
        ]
    });
    let (s, b) = post(&app, "generic", Some(&app.admin_key), body.to_string()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(app.scalar_i64("SELECT count(*) FROM indicators").await, 5);
    let msgs = app.queue.receive(QueueName::Enrich, 10);
    let mut got: Vec<(String, String)> = msgs
        .iter()
        .map(|m| {
            let r: EnrichRequest = serde_json::from_str(m.body.as_deref().expect("body")).expect("enrich request");
            (r.indicator_type.as_str().to_owned(), r.value)
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("account".to_owned(), "nick.hathaway@calseta.com".to_owned()),
            (
                "hash_sha256".to_owned(),
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85a".to_owned()
            ),
            ("ip".to_owned(), "185.220.101.47".to_owned()),
        ]
    );
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM alert_indicators WHERE enrichment_state = 'skipped'")
            .await,
        2
    );
    // No indicators at all: enrichment is finished at once and dispatch is queued.
    let (_, b) = post(
        &app,
        "generic",
        Some(&app.admin_key),
        r#"{"title": "Nothing to enrich"}"#,
    )
    .await;
    let uuid = b["data"]["alert_uuid"].as_str().expect("uuid");
    let d = app.queue.depth(QueueName::Dispatch).await.expect("depth");
    assert_eq!(d.visible, 1);
    let status = app
        .scalar_i64(&format!(
            "SELECT count(*) FROM alerts WHERE uuid = '{uuid}' AND enrichment_status = 'Enriched'"
        ))
        .await;
    assert_eq!(status, 1);
}

#[tokio::test]
async fn raw_payload_keeps_numbers_exact_and_the_archive_keeps_bytes() {
    let app = TestApp::start().await;
    let body = r#"[{"title": "big", "risk": 12345678901234567890.123456789012 },
                   {"title": "second", "x": 0.1000000000000000055511151231257827}]"#;
    let (s, b) = post(&app, "generic", Some(&app.admin_key), body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let c = app.db.pool.get().await.expect("c");
    let rows = c
        .query("SELECT raw_payload::text FROM alerts ORDER BY id", &[])
        .await
        .expect("rows");
    let raws: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert!(raws[0].contains("12345678901234567890.123456789012"), "{}", raws[0]);
    assert!(raws[1].contains("0.1000000000000000055511151231257827"), "{}", raws[1]);
    let archived: Vec<u8> = c
        .query_one("SELECT body FROM ingest_archive", &[])
        .await
        .expect("a")
        .get(0);
    assert_eq!(archived, body.as_bytes());
    // NUL characters (refused by Postgres text) do not lose the alert.
    let (s, _) = post(
        &app,
        "generic",
        Some(&app.admin_key),
        r#"{"title": "nul\u0000inside", "user": "a\u0000b"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn post_alerts_wraps_a_source_payload() {
    let app = TestApp::start().await;
    let payload: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("elastic/nested_single.json")).expect("f"))
            .expect("json");
    let send = |body: Value, key: String| {
        let (http, url) = (app.http.clone(), app.url("/v1/alerts"));
        async move {
            let r = http.post(url).bearer_auth(key).json(&body).send().await.expect("send");
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, b) = send(
        json!({"source_name": "elastic", "payload": payload}),
        app.admin_key.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["data"]["status"], "queued");
    let (s, b) = send(
        json!({"source_name": "elastic", "payload": payload}),
        app.admin_key.clone(),
    )
    .await;
    assert_eq!(
        (s, b["data"]["status"].as_str()),
        (StatusCode::ACCEPTED, Some("deduplicated"))
    );
    let (s, b) = send(json!({"source_name": "qradar", "payload": {}}), app.admin_key.clone()).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "UNKNOWN_SOURCE"));
    let (s, b) = send(json!({"payload": {}}), app.admin_key.clone()).await;
    assert_eq!((s, code(&b)), (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR"));
    assert_eq!(b["error"]["details"]["errors"][0]["field"], "body.source_name");
    let (s, b) = send(
        json!({"source_name": "elastic", "payload": {"foo": 1}}),
        app.admin_key.clone(),
    )
    .await;
    assert_eq!((s, code(&b)), (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_PAYLOAD"));
    let elastic_only = app.create_key("e", &["alerts:write"], Some(&["elastic"]), None).await;
    let (s, b) = send(
        json!({"source_name": "generic", "payload": {"title": "x"}}),
        elastic_only,
    )
    .await;
    assert_eq!((s, code(&b)), (StatusCode::FORBIDDEN, "SOURCE_NOT_ALLOWED"));
    let r = app
        .http
        .post(app.url("/v1/alerts"))
        .body(r#"{"source_name": "generic"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn database_unavailable_is_503_with_retry_after() {
    use calseta::{
        api::{self, AppState},
        config::{AppSecrets, DbConfig},
        db,
        queue::memory::InProcessQueue,
    };
    use tower::ServiceExt;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut cfg = DbConfig::from_url(format!("postgres://calseta@127.0.0.1:{port}/calseta"));
    cfg.connect_timeout = std::time::Duration::from_millis(300);
    let pool = db::build_pool(&cfg).expect("pool");
    let state = AppState::new(
        pool,
        Arc::new(InProcessQueue::new(Default::default())),
        &AppSecrets::random(),
        Limits::default(),
    )
    .expect("state");
    let req = axum::http::Request::post("/v1/ingest/generic")
        .header(
            "authorization",
            "Bearer cai_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .body(axum::body::Body::from(r#"{"title": "x"}"#))
        .expect("request");
    let resp = api::ingest_router(state).oneshot(req).await.expect("response");
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(code(&v), "SERVICE_UNAVAILABLE");
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_through_this_instance_and_within_the_cache_ttl_otherwise() {
    let app = TestApp::start().await;
    let body = r#"{"title": "t"}"#;
    // Revoked behind this instance's back (another instance, or SQL): the key row this instance
    // read is trusted for at most the cache's TTL.
    let key = app.create_key("elsewhere", &["alerts:write"], None, None).await;
    assert_eq!(post(&app, "generic", Some(&key), body).await.0, StatusCode::ACCEPTED);
    let c = app.db.pool.get().await.expect("c");
    c.execute(
        "UPDATE api_keys SET is_active = false, revoked_at = now() WHERE name = 'elsewhere'",
        &[],
    )
    .await
    .expect("revoke");
    tokio::time::sleep(calseta::api::cache::AUTH_CACHE_TTL + std::time::Duration::from_millis(100)).await;
    assert_eq!(
        post(&app, "generic", Some(&key), body).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Revoked through this instance's API: refused on the very next request.
    let key = app.create_key("here", &["alerts:write"], None, None).await;
    assert_eq!(post(&app, "generic", Some(&key), body).await.0, StatusCode::ACCEPTED);
    let uuid: String = c
        .query_one("SELECT uuid::text FROM api_keys WHERE name = 'here'", &[])
        .await
        .expect("uuid")
        .get(0);
    let r = app
        .http
        .delete(app.url(&format!("/v1/api-keys/{uuid}")))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        post(&app, "generic", Some(&key), body).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A source switched to a shared secret through the API: API-key-less calls refused at once.
    let r = app
        .http
        .post(app.url("/v1/sources"))
        .bearer_auth(&app.admin_key)
        .json(&json!({"source_name": "generic", "auth_type": "shared_secret",
                      "auth_config": {"shared_secret": "s3cret-s3cret-s3cret-s3cret-s3cret"}}))
        .send()
        .await
        .expect("source");
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap_or_default()
    );
    let r = app
        .http
        .post(app.url("/v1/ingest/generic"))
        .header("x-calseta-source-secret", "wrong-wrong-wrong-wrong-wrong-wrong")
        .body(body)
        .send()
        .await
        .expect("send");
    let status = r.status();
    let b: Value = r.json().await.expect("json");
    assert_eq!((status, code(&b)), (StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE"));
}

#[tokio::test]
async fn batched_ingest_rate_limits_stay_within_their_bound_across_instances_and_stop_a_flood() {
    let app = TestApp::start().await;
    // Counts are per minute: keep the run inside one window.
    let second = chrono::Utc::now().timestamp() % 60;
    if second > 45 {
        tokio::time::sleep(std::time::Duration::from_secs((61 - second) as u64)).await;
    }
    let c = app.db.pool.get().await.expect("c");
    // Two instances sharing one bucket; the limit gives batches of 10.
    let instances = [
        calseta::api::rate_limit::Limiter::default(),
        calseta::api::rate_limit::Limiter::default(),
    ];
    let (limit, batch) = (1000u32, 10usize);
    let mut admitted = 0usize;
    let mut last_admitted = 0usize;
    for i in 0..1600 {
        if instances[i % 2].check(&*c, "key:bound:ingest", limit).await.is_ok() {
            admitted += 1;
            last_admitted = i;
        }
    }
    let bound = instances.len() * (batch - 1);
    assert!(
        admitted <= limit as usize + bound && admitted + bound >= limit as usize,
        "admitted {admitted}, limit {limit} ± {bound}"
    );
    assert!(last_admitted < 1100, "still admitting at attempt {last_admitted}");
    // The shared row saw every instance's traffic (batches), not one write per request only.
    let shared: i32 = c
        .query_one("SELECT count FROM rate_limits WHERE bucket = 'key:bound:ingest'", &[])
        .await
        .expect("row")
        .get(0);
    assert!(shared as u32 > limit, "shared count {shared}");
}
