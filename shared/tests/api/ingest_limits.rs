//! Ingest limits (issue 17), through HTTP against the real router and a fresh Postgres: one
//! request cannot flood the pipeline (indicator cap, recorded), over-long fields are a 422
//! naming the field (never a 500 from an index row), one bad alert does not sink its batch,
//! and an alert whose detection rule cannot be created is still stored.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use calseta::{config::Limits, testing::TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn post(app: &TestApp, body: &Value) -> (StatusCode, Value) {
    let resp = app
        .http
        .post(app.url("/v1/ingest/generic"))
        .bearer_auth(&app.admin_key)
        .json(body)
        .send()
        .await
        .expect("send");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn one(app: &TestApp, sql: &str) -> Value {
    let c = app.db.pool.get().await.expect("client");
    let v: Option<Value> = c.query_one(sql, &[]).await.expect(sql).get(0);
    v.unwrap_or(Value::Null)
}

/// `n` pseudo-random hex characters. Index tuples are compressed, so a repeated character would
/// fit the B-tree row limit where a real (random) id of the same length does not.
fn noise(n: usize, seed: u64) -> String {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_digit((x % 16) as u32, 16).unwrap_or('0')
        })
        .collect()
}

/// `n` pseudo-random CJK characters (three bytes each in UTF-8).
fn wide_noise(n: usize, seed: u64) -> String {
    noise(n * 4, seed)
        .as_bytes()
        .chunks(4)
        .map(|c| {
            let v = u32::from_str_radix(std::str::from_utf8(c).unwrap_or("0"), 16).unwrap_or(0);
            char::from_u32(0x4E00 + v % 0x5000).unwrap_or('中')
        })
        .collect()
}

/// `n` distinct public IPv4 addresses (none in a special-purpose range).
fn public_ips(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("45.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255))
        .collect()
}

#[tokio::test]
async fn a_flood_alert_is_capped_recorded_and_keeps_its_raw_payload() {
    let app = TestApp::start().await;
    // 12,000 addresses: past the extraction ceiling (10,000) and far past the cap (100). Two
    // internal ones come first: public (enrichable) ones are preferred over them.
    let mut ips = vec!["10.1.1.1".to_string(), "192.168.1.1".to_string()];
    ips.extend(public_ips(12_000));
    let list: Vec<Value> = ips.iter().map(|v| json!({"type": "ip", "value": v})).collect();
    let body = json!({"title": "flood", "source_alert_id": "flood-1", "indicators": list});
    let (s, b) = post(&app, &body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["data"]["status"], "queued");

    assert_eq!(app.scalar_i64("SELECT count(*) FROM alert_indicators").await, 100);
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM outbox WHERE queue = 'enrich'")
            .await,
        100,
        "one enrich message per kept indicator"
    );
    // The first 100 public addresses were kept; the internal ones were not.
    assert_eq!(
        app.scalar_i64(
            "SELECT count(*) FROM alert_indicators l JOIN indicators i ON i.id = l.indicator_id
             WHERE i.value LIKE '45.0.%' AND (split_part(i.value, '.', 4))::int < 100"
        )
        .await,
        100
    );
    let record = json!({"limit": 100, "found": 10_000, "kept": 100, "unexamined": 2002});
    assert_eq!(
        one(&app, "SELECT extra -> 'indicator_truncation' FROM alerts").await,
        record
    );
    assert_eq!(
        one(
            &app,
            "SELECT to_jsonb(jsonb_array_length(raw_payload -> 'indicators')) FROM alerts"
        )
        .await,
        json!(12_002),
        "the raw payload is whole"
    );
    assert_eq!(
        one(
            &app,
            "SELECT \"references\" FROM activity_events WHERE event_type = 'alert_indicators_truncated'"
        )
        .await,
        record
    );
    // The alert detail and the agent payload both say so.
    let uuid = b["data"]["alert_uuid"].as_str().expect("uuid");
    let detail: Value = app
        .http
        .get(app.url(&format!("/v1/alerts/{uuid}")))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .expect("detail")
        .json()
        .await
        .expect("json");
    assert_eq!(detail["data"]["extra"]["indicator_truncation"], record, "{detail}");
    let payload: Value = app
        .http
        .get(app.url(&format!("/v1/alerts/{uuid}/payload")))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .expect("payload")
        .json()
        .await
        .expect("json");
    assert_eq!(payload["alert"]["indicators_truncated"], record, "{payload}");
}

#[tokio::test]
async fn the_cap_is_configurable_and_small_alerts_are_untouched() {
    let app = TestApp::with_limits(Limits {
        max_indicators_per_alert: 3,
        ..Limits::default()
    })
    .await;
    let (s, b) = post(
        &app,
        &json!({"title": "small", "source_alert_id": "s-1", "src_ip": "8.8.8.8", "domain": "example.org"}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let list: Vec<Value> = public_ips(5)
        .iter()
        .map(|v| json!({"type": "ip", "value": v}))
        .collect();
    let (s, b) = post(
        &app,
        &json!({"title": "big", "source_alert_id": "b-1", "indicators": list}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(
        one(
            &app,
            "SELECT jsonb_agg(extra -> 'indicator_truncation' ORDER BY id) FROM alerts"
        )
        .await,
        json!([null, {"limit": 3, "found": 5, "kept": 3, "unexamined": 0}])
    );
    assert_eq!(app.scalar_i64("SELECT count(*) FROM alert_indicators").await, 2 + 3);
}

#[tokio::test]
async fn over_long_fields_are_422_naming_the_field_never_500() {
    let app = TestApp::start().await;
    // An indicator of 2,000 multibyte characters does not sink the alert: that indicator is
    // dropped and counted, the rest stored.
    let (s, b) = post(
        &app,
        &json!({"title": "t", "source_alert_id": "i-1", "user": wide_noise(2000, 11), "src_ip": "8.8.8.8"}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(
        one(&app, "SELECT extra -> 'dropped_indicator_count' FROM alerts").await,
        json!(1)
    );
    assert_eq!(app.scalar_i64("SELECT count(*) FROM alert_indicators").await, 1);
    // Over the B-tree row limit (about 2,700 bytes) of the idempotency key and the rule key.
    let long = noise(3000, 7);
    for (field, body) in [
        (
            "source_alert_id",
            json!({"title": "t", "source_alert_id": long.clone()}),
        ),
        (
            "rule_id",
            json!({"title": "t", "source_alert_id": "r-1", "rule_id": long.clone()}),
        ),
        // 1,000 three-byte characters: under 1,024 characters, over 1,024 bytes.
        (
            "source_alert_id",
            json!({"title": "t", "source_alert_id": wide_noise(1000, 9)}),
        ),
    ] {
        let (s, b) = post(&app, &body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {b}");
        assert_eq!(b["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(b["error"]["details"]["errors"][0]["field"], field, "{b}");
        assert!(
            !b.to_string().contains(&long[..100]),
            "the rejected input is not echoed"
        );
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM alerts").await, 1, "only the first");
}

#[tokio::test]
async fn one_bad_alert_does_not_sink_its_batch() {
    let app = TestApp::start().await;
    let mut batch: Vec<Value> = (0..99)
        .map(|i| json!({"title": format!("good {i}"), "source_alert_id": format!("g-{i}"), "src_ip": "8.8.8.8"}))
        .collect();
    batch.insert(41, json!({"title": "bad", "source_alert_id": noise(3000, 13)}));
    let (s, b) = post(&app, &json!(batch)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let items = b["data"]["items"].as_array().expect("items");
    assert_eq!(items.len(), 100);
    assert_eq!(items[41]["status"], "rejected");
    assert_eq!(items[41]["alert_uuid"], Value::Null);
    let error = &items[41]["error"];
    assert_eq!(error["code"], "VALIDATION_ERROR", "{error}");
    assert!(error["message"].is_string());
    assert_eq!(error["details"]["errors"][0]["field"], "source_alert_id");
    assert_eq!(error["details"]["errors"][0]["index"], 41);
    assert!(items
        .iter()
        .enumerate()
        .all(|(i, it)| i == 41 || it["status"] == "queued"));
    // The first accepted alert still fills the top-level fields (compatible response).
    assert_eq!(b["data"]["status"], "queued");
    assert_eq!(b["data"]["alert_uuid"], items[0]["alert_uuid"]);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM alerts").await, 99);
    // The archive keeps the whole body, bad alert included.
    assert_eq!(app.scalar_i64("SELECT count(*) FROM ingest_archive").await, 1);
}

#[tokio::test]
async fn alerts_per_request_are_capped_by_configuration() {
    let app = TestApp::with_limits(Limits {
        max_alerts_per_request: 5,
        ..Limits::default()
    })
    .await;
    let batch: Vec<Value> = (0..6)
        .map(|i| json!({"title": "t", "source_alert_id": format!("c-{i}")}))
        .collect();
    let (s, b) = post(&app, &json!(batch)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["code"], "INVALID_PAYLOAD");
    let msg = b["error"]["details"]["errors"][0]["message"].as_str().unwrap_or("");
    assert!(msg.contains("at most 5"), "{msg}");
    assert_eq!(app.scalar_i64("SELECT count(*) FROM alerts").await, 0);
    let (s, b) = post(&app, &json!(batch[..5])).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
}

#[tokio::test]
async fn an_alert_whose_rule_cannot_be_created_is_stored_without_it() {
    let app = TestApp::start().await;
    // A rule insert that fails inside the database (as a constraint or a full disk would).
    let c = app.db.pool.get().await.expect("client");
    c.batch_execute("ALTER TABLE detection_rules ADD CONSTRAINT test_no_boom CHECK (source_rule_id <> 'boom')")
        .await
        .expect("constraint");
    let (s, b) = post(
        &app,
        &json!({"title": "t", "source_alert_id": "rule-1", "rule_id": "boom", "src_ip": "8.8.8.8"}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(
        one(
            &app,
            "SELECT to_jsonb(detection_rule_id) FROM alerts WHERE source_alert_id = 'rule-1'"
        )
        .await,
        Value::Null
    );
    assert_eq!(app.scalar_i64("SELECT count(*) FROM alert_indicators").await, 1);
    // The connection is healthy afterwards and a good rule is still created.
    let (s, b) = post(
        &app,
        &json!({"title": "t", "source_alert_id": "rule-2", "rule_id": "fine"}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM alerts a JOIN detection_rules r ON r.id = a.detection_rule_id WHERE r.source_rule_id = 'fine'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_big_request_releases_its_enrichment_work_gradually() {
    let app = TestApp::with_limits(Limits {
        enrich_release_per_second: 100,
        ..Limits::default()
    })
    .await;
    let batch: Vec<Value> = (0..3)
        .map(|a| {
            let ips: Vec<String> = public_ips(400).into_iter().skip(a * 100).take(100).collect();
            json!({"title": "big", "source_alert_id": format!("big-{a}"), "src_ip": ips})
        })
        .collect();
    let (s, b) = post(&app, &json!(batch)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let (s, b) = post(
        &app,
        &json!({"title": "small", "source_alert_id": "small-1", "src_ip": "8.8.8.8"}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    // 100 messages a second, in order: the big request's first alert now, the others after
    // 1 and 2 s; the next request's message is not queued behind them.
    assert_eq!(
        one(
            &app,
            "SELECT jsonb_agg(x ORDER BY x) FROM (
                SELECT jsonb_build_array(a.source_alert_id, o.delay_seconds, count(*)) AS x
                FROM outbox o JOIN alerts a ON a.id = (o.body::jsonb ->> 'alert_id')::bigint
                WHERE o.queue = 'enrich' GROUP BY a.source_alert_id, o.delay_seconds) t"
        )
        .await,
        json!([
            ["big-0", 0, 100],
            ["big-1", 1, 100],
            ["big-2", 2, 100],
            ["small-1", 0, 1]
        ])
    );
    // Each alert's deadline covers its release delay.
    assert_eq!(
        one(
            &app,
            "SELECT jsonb_agg(round(extract(epoch FROM enrichment_deadline_at - ingested_at)) ORDER BY id) FROM alerts"
        )
        .await,
        json!([60, 61, 62, 60])
    );
}

#[tokio::test]
async fn an_alert_the_database_refuses_is_rejected_alone() {
    let app = TestApp::start().await;
    // A refusal no check foresaw (as an index row or a new constraint would).
    let c = app.db.pool.get().await.expect("client");
    c.batch_execute("ALTER TABLE alerts ADD CONSTRAINT test_no_poison CHECK (title <> 'poison')")
        .await
        .expect("constraint");
    let batch = json!([
        {"title": "good 0", "source_alert_id": "p-0", "src_ip": "8.8.8.8"},
        {"title": "poison", "source_alert_id": "p-1"},
        {"title": "good 2", "source_alert_id": "p-2", "src_ip": "8.8.4.4"},
    ]);
    let (s, b) = post(&app, &batch).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let items = b["data"]["items"].as_array().expect("items");
    let statuses: Vec<&str> = items.iter().map(|i| i["status"].as_str().unwrap_or("")).collect();
    assert_eq!(statuses, ["queued", "rejected", "queued"]);
    assert_eq!(items[1]["error"]["code"], "VALIDATION_ERROR");
    assert_eq!(items[1]["error"]["details"]["errors"][0]["index"], 1);
    assert!(!b.to_string().contains("test_no_poison"), "no internals in the answer");
    assert_eq!(app.scalar_i64("SELECT count(*) FROM alerts").await, 2);
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM ingest_archive").await,
        1,
        "the body once"
    );
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM outbox WHERE queue = 'enrich'")
            .await,
        2
    );
    // Alone, the refused alert is a 422, not a 500.
    let (s, b) = post(&app, &json!({"title": "poison", "source_alert_id": "p-3"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
}
