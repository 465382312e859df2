//! Real SIEM payload forms through HTTP (issue #16): a Sentinel rule is named after its analytic
//! rule, not after the first incident's title; a URL's host is an indicator that the never-send
//! policy still guards; a sub-technique's parent reaches the auto-created rule.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::path::{Path, PathBuf};

use calseta::queue::{messages::EnrichRequest, QueueName};
use calseta::testing::{call, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

fn fixture(path: &str) -> Value {
    let p: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sources")
        .join(path);
    serde_json::from_slice(&std::fs::read(&p).expect("fixture")).expect("fixture json")
}

async fn ingest(app: &TestApp, source: &str, body: &Value) -> Value {
    let (st, v) = call(
        app,
        &app.admin_key,
        Method::POST,
        &format!("/v1/ingest/{source}"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(st, 202, "{v}");
    v
}

async fn rule_of(app: &TestApp, source_alert_id: &str) -> (String, String, String) {
    let c = app.db.pool.get().await.expect("client");
    let r = c
        .query_one(
            "SELECT a.title, r.source_rule_id, r.name FROM alerts a JOIN detection_rules r ON r.id = a.detection_rule_id
             WHERE a.source_alert_id = $1",
            &[&source_alert_id],
        )
        .await
        .expect("alert with rule");
    (r.get(0), r.get(1), r.get(2))
}

#[tokio::test]
async fn sentinel_incidents_of_one_analytic_rule_share_its_name_and_keep_their_titles() {
    let app = TestApp::start().await;
    let first = fixture("sentinel/incident_title_is_not_the_rule.json");
    let mut second = first.clone();
    second["name"] = json!("2a3b4c5d-6e7f-4081-9293-a4a5a6a7a8a9");
    second["properties"]["title"] = json!("Brute force against a.lee@contoso.com from 193.142.146.35");
    second["properties"]["incidentNumber"] = json!(4190);
    ingest(&app, "sentinel", &first).await;
    ingest(&app, "sentinel", &second).await;

    let rule_name = "Password spray / brute force on Entra ID sign-ins";
    let rule_id = "8b7c6d5e-4f3a-4291-b0c1-d2e3f4a5b6c7";
    assert_eq!(
        rule_of(&app, "1f0e2d3c-4b5a-4697-8877-665544332211").await,
        (
            "Brute force against j.smith@contoso.com from 45.155.205.233".to_owned(),
            rule_id.to_owned(),
            rule_name.to_owned()
        )
    );
    assert_eq!(
        rule_of(&app, "2a3b4c5d-6e7f-4081-9293-a4a5a6a7a8a9").await,
        (
            "Brute force against a.lee@contoso.com from 193.142.146.35".to_owned(),
            rule_id.to_owned(),
            rule_name.to_owned()
        )
    );
    let (st, v) = call(
        &app,
        &app.admin_key,
        Method::GET,
        "/v1/detection-rules?source_name=sentinel",
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let names: Vec<&str> = v["data"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, vec![rule_name], "one rule, named after the analytic rule");

    // An incident without its alerts: the rule id names the rule, never the incident title.
    let mut bare = first.clone();
    bare["name"] = json!("3b4c5d6e-7f80-4192-a3a4-b5b6b7b8b9c0");
    bare["properties"]["relatedAnalyticRuleIds"] = json!([
        "/subscriptions/x/providers/Microsoft.SecurityInsights/alertRules/c0ffee00-1111-4222-8333-444455556666"
    ]);
    bare["properties"].as_object_mut().expect("properties").remove("alerts");
    ingest(&app, "sentinel", &bare).await;
    let (title, id, name) = rule_of(&app, "3b4c5d6e-7f80-4192-a3a4-b5b6b7b8b9c0").await;
    assert_eq!(title, "Brute force against j.smith@contoso.com from 45.155.205.233");
    assert_eq!(
        (id.as_str(), name.as_str()),
        (
            "c0ffee00-1111-4222-8333-444455556666",
            "c0ffee00-1111-4222-8333-444455556666"
        )
    );
}

#[tokio::test]
async fn a_url_host_is_an_indicator_and_the_never_send_policy_still_guards_it() {
    let app = TestApp::start().await;
    let body = json!({
        "title": "Phishing URLs",
        "indicators": [
            {"type": "url", "value": "https://Login-Micros0ft.Secure-Mail.net/owa/?id=77ac"},
            {"type": "domain", "value": "login-micros0ft.secure-mail.net"},
            {"type": "url", "value": "http://10.1.2.3:8080/stage2.ps1"},
            {"type": "url", "value": "https://wiki.corp/page"}
        ]
    });
    ingest(&app, "generic", &body).await;
    let c = app.db.pool.get().await.expect("client");
    let rows = c
        .query(
            "SELECT i.type, i.value, l.enrichment_state FROM alert_indicators l JOIN indicators i ON i.id = l.indicator_id
             WHERE i.type IN ('domain', 'ip') ORDER BY i.type, i.value",
            &[],
        )
        .await
        .expect("rows");
    let got: Vec<(String, String, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(
        got,
        vec![
            (
                "domain".into(),
                "login-micros0ft.secure-mail.net".into(),
                "pending".into()
            ),
            ("domain".into(), "wiki.corp".into(), "skipped".into()),
            ("ip".into(), "10.1.2.3".into(), "skipped".into()),
        ],
        "hosts stored once each; private IP and internal domain never sent"
    );
    let sent: Vec<(String, String)> = app
        .queue
        .receive(QueueName::Enrich, 10)
        .iter()
        .map(|m| {
            let r: EnrichRequest = serde_json::from_str(m.body.as_deref().expect("body")).expect("enrich request");
            (r.indicator_type.as_str().to_owned(), r.value)
        })
        .filter(|(t, _)| t != "url")
        .collect();
    assert_eq!(
        sent,
        vec![("domain".to_owned(), "login-micros0ft.secure-mail.net".to_owned())]
    );
}

#[tokio::test]
async fn a_sub_technique_brings_its_parent_to_the_alert_and_the_auto_created_rule() {
    let app = TestApp::start().await;
    ingest(&app, "sentinel", &fixture("sentinel/rest_alert_product.json")).await;
    let c = app.db.pool.get().await.expect("client");
    let r = c
        .query_one(
            "SELECT r.name, r.mitre_techniques, r.mitre_subtechniques, a.title FROM detection_rules r
             JOIN alerts a ON a.detection_rule_id = r.id",
            &[],
        )
        .await
        .expect("rule");
    assert_eq!(r.get::<_, String>(0), "WindowsDefenderAtp");
    assert_eq!(r.get::<_, Vec<String>>(1), vec!["T1059", "T1027"]);
    assert_eq!(r.get::<_, Vec<String>>(2), vec!["T1059.001"]);
    assert_eq!(r.get::<_, String>(3), "Suspicious PowerShell command line");
}

#[tokio::test]
async fn detection_rules_written_through_the_api_get_parents_and_filter_by_technique() {
    let app = TestApp::start().await;
    let key = app.admin_key.clone();
    let (st, v) = call(
        &app,
        &key,
        Method::POST,
        "/v1/detection-rules",
        Some(json!({"name": "Spearphishing link", "mitre_subtechniques": ["T1566.002 - Spearphishing Link"]})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["data"]["mitre_techniques"], json!(["T1566"]));
    let uuid = v["data"]["uuid"].as_str().expect("uuid").to_owned();
    // PATCH: new sub-techniques bring their parents; a named parent is not repeated.
    let (st, v) = call(
        &app,
        &key,
        Method::PATCH,
        &format!("/v1/detection-rules/{uuid}"),
        Some(json!({"mitre_subtechniques": ["T1566.002", "t1204.002"]})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["mitre_techniques"], json!(["T1566", "T1204"]));
    let (st, v) = call(
        &app,
        &key,
        Method::PATCH,
        &format!("/v1/detection-rules/{uuid}"),
        Some(json!({"mitre_techniques": ["T1204 - User Execution"]})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["data"]["mitre_techniques"],
        json!(["T1204 - User Execution", "T1566"])
    );

    // A rule stored with only a sub-technique (as older rows are) is still found by its parent.
    let c = app.db.pool.get().await.expect("client");
    c.execute(
        "INSERT INTO detection_rules (name, mitre_subtechniques) VALUES ('Legacy row', ARRAY['T1059.001 - PowerShell'])",
        &[],
    )
    .await
    .expect("insert");
    for (q, want) in [
        ("T1566", vec!["Spearphishing link"]),
        ("t1566.002", vec!["Spearphishing link"]),
        ("T1566.001", vec![]),
        ("T1059", vec!["Legacy row"]),
        ("T1059,T1204", vec!["Legacy row", "Spearphishing link"]),
        ("T1078", vec![]),
    ] {
        let (st, v) = call(
            &app,
            &key,
            Method::GET,
            &format!("/v1/detection-rules?mitre_technique={q}&sort_by=name&sort_order=asc"),
            None,
        )
        .await;
        assert_eq!(st, 200, "{q}: {v}");
        let names: Vec<&str> = v["data"]
            .as_array()
            .expect("rules")
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert_eq!(names, want, "{q}");
        assert_eq!(v["meta"]["total"], json!(want.len()), "{q}");
    }
    let (st, v) = call(
        &app,
        &key,
        Method::GET,
        "/v1/detection-rules?mitre_technique=Phishing",
        None,
    )
    .await;
    assert_eq!(st, 422, "{v}");
}
