//! The organizational context through HTTP — detection rules, context documents, workflows —
//! CRUD with validation and scopes, and what of it reaches an alert's agent payload.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use calseta::testing::{call, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn documents_workflows_and_rules_are_managed_over_http_and_shape_the_payload() {
    let app = TestApp::start().await;
    let admin = app.admin_key.clone();
    let a = |m, p: &str, b| {
        let admin = admin.clone();
        let app = &app;
        let p = p.to_string();
        async move { call(app, &admin, m, &p, b).await }
    };

    // Detection rule: created by an admin, conflict on the same source key.
    let rule = json!({"name": "Impossible Travel", "source_name": "generic", "source_rule_id": "impossible-travel-v1",
                      "severity": "high", "mitre_tactics": ["TA0001 - Initial Access"], "mitre_techniques": ["T1078"],
                      "false_positive_tags": ["vpn"], "blind_spots": ["proxies"], "goal": "Catch stolen credentials.",
                      "documentation": "## Overview\nGeo-velocity.", "priority": "High"});
    let (st, v) = a(Method::POST, "/v1/detection-rules", Some(rule.clone())).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["data"]["severity"], json!("High"));
    assert_eq!(v["data"]["created_by"], json!(&admin[..8]));
    let rule_uuid = v["data"]["uuid"].as_str().unwrap().to_string();
    let (st, v) = a(Method::POST, "/v1/detection-rules", Some(rule)).await;
    assert_eq!((st, v["error"]["code"].clone()), (409, json!("CONFLICT")));
    let (st, _) = a(
        Method::PATCH,
        &format!("/v1/detection-rules/{rule_uuid}"),
        Some(json!({"source_rule_id": "x"})),
    )
    .await;
    assert_eq!(st, 422, "the source key is fixed");
    let (st, v) = a(
        Method::PATCH,
        &format!("/v1/detection-rules/{rule_uuid}"),
        Some(json!({"blind_spots": ["proxies", "same-region travel"], "goal": null})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["data"]["goal"].is_null());
    let (_, v) = a(
        Method::GET,
        "/v1/detection-rules?source_name=generic&sort_by=severity",
        None,
    )
    .await;
    assert_eq!(v["meta"]["total"], json!(1));
    let (st, _) = a(Method::GET, "/v1/detection-rules?sort_by=nope", None).await;
    assert_eq!(st, 400);

    // Context documents: a global plan, a targeted runbook, one that never applies.
    let (st, v) = a(
        Method::POST,
        "/v1/context-documents",
        Some(json!({"title": "IR Plan", "document_type": "ir_plan", "is_global": true, "content": "## Plan v1"})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["data"]["version"], json!(1));
    let plan = v["data"]["uuid"].as_str().unwrap().to_string();
    let (st, v) = a(
        Method::POST,
        "/v1/context-documents",
        Some(json!({"title": "Account Runbook", "document_type": "RUNBOOK", "content": "## Revoke sessions",
                    "targeting_rules": {"match_all": [{"field": "severity", "op": "gte", "value": "High"},
                                                      {"field": "indicator_type", "op": "contains", "value": "account"}]}})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let runbook = v["data"]["uuid"].as_str().unwrap().to_string();
    let (st, _) = a(
        Method::POST,
        "/v1/context-documents",
        Some(json!({"title": "Splunk SOP", "document_type": "sop", "content": "x",
                    "targeting_rules": {"match_any": [{"field": "source_name", "op": "eq", "value": "splunk"}]}})),
    )
    .await;
    assert_eq!(st, 201);
    for (body, field) in [
        (json!({"document_type": "sop", "content": "x"}), "body.title"),
        (
            json!({"title": "t", "document_type": "memo", "content": "x"}),
            "body.document_type",
        ),
        (json!({"title": "t", "document_type": "sop"}), "body.content"),
        (
            json!({"title": "t", "document_type": "sop", "content": "x", "targeting_rules": {"match_any": [{"field": "colour", "op": "eq", "value": "red"}]}}),
            "body.targeting_rules.match_any[0]",
        ),
    ] {
        let (st, v) = a(Method::POST, "/v1/context-documents", Some(body)).await;
        assert_eq!(st, 422, "{v}");
        assert!(
            v["error"]["details"]["errors"][0]["field"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{v}"
        );
    }
    // A content change bumps the version; a title change does not.
    let (_, v) = a(
        Method::PATCH,
        &format!("/v1/context-documents/{plan}"),
        Some(json!({"title": "IR Plan (2025)"})),
    )
    .await;
    assert_eq!(v["data"]["version"], json!(1));
    let (_, v) = a(
        Method::PATCH,
        &format!("/v1/context-documents/{plan}"),
        Some(json!({"content": "## Plan v2"})),
    )
    .await;
    assert_eq!(v["data"]["version"], json!(2));
    let (_, v) = a(
        Method::GET,
        "/v1/context-documents?document_type=ir_plan,runbook&sort_by=title&sort_order=asc",
        None,
    )
    .await;
    assert_eq!(v["meta"]["total"], json!(2));
    assert!(v["data"][0].get("content").is_none(), "list items leave out content");

    // Workflows.
    let (st, v) = a(
        Method::POST,
        "/v1/workflows",
        Some(
            json!({"name": "Revoke User Sessions", "workflow_type": "indicator", "indicator_types": ["account"],
                    "state": "active", "risk_level": "medium", "approval_mode": "agent_only",
                    "description": "Terminate sessions.", "code": "print('never stored')", "timeout_seconds": 5}),
        ),
    )
    .await;
    // Execution settings are refused by name, not silently dropped: nothing here runs code.
    assert_eq!(st, 422, "{v}");
    let refused: Vec<&str> = v["error"]["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(refused, ["body.code", "body.timeout_seconds"]);
    let (st, v) = a(
        Method::POST,
        "/v1/workflows",
        Some(
            json!({"name": "Revoke User Sessions", "workflow_type": "indicator", "indicator_types": ["account"],
                    "state": "active", "risk_level": "medium", "approval_mode": "agent_only",
                    "description": "Terminate sessions."}),
        ),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["data"]["is_active"], json!(true), "follows the state");
    assert!(v["data"].get("code").is_none() && v["data"].get("timeout_seconds").is_none());
    let wf = v["data"]["uuid"].as_str().unwrap().to_string();
    let (st, _) = a(Method::POST, "/v1/workflows", Some(json!({"name": "Draft thing"}))).await;
    assert_eq!(st, 201);
    let (st, v) = a(
        Method::POST,
        "/v1/workflows",
        Some(json!({"name": "x", "indicator_types": ["mac"]})),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    let (_, v) = a(Method::GET, "/v1/workflows?state=active", None).await;
    assert_eq!(v["meta"]["total"], json!(1));
    let (_, v) = a(
        Method::PATCH,
        &format!("/v1/workflows/{wf}"),
        Some(json!({"documentation": "Call revoke."})),
    )
    .await;
    assert_eq!(v["data"]["documentation"], json!("Call revoke."));

    // The payload of a matching alert carries the rule, the applicable documents, the workflow.
    let (st, v) = a(
        Method::POST,
        "/v1/ingest/generic",
        Some(
            json!({"title": "Impossible travel", "severity": "High", "source_alert_id": "cat-1",
                    "rule_id": "impossible-travel-v1", "rule_name": "Impossible Travel", "user": "jdoe@example.com"}),
        ),
    )
    .await;
    assert_eq!(st, 202, "{v}");
    let alert = v["data"]["alert_uuid"].as_str().unwrap().to_string();
    let (_, p) = a(Method::GET, &format!("/v1/alerts/{alert}/payload"), None).await;
    assert_eq!(p["detection_rule"]["uuid"], json!(rule_uuid));
    assert_eq!(
        p["detection_rule"]["blind_spots"],
        json!(["proxies", "same-region travel"])
    );
    let titles: Vec<&str> = p["context_documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        vec!["IR Plan (2025)", "Account Runbook"],
        "global first, then targeted"
    );
    assert_eq!(p["context_documents"][0]["content"], json!("## Plan v2"));
    let names: Vec<&str> = p["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Revoke User Sessions"], "active only");
    let (_, ctx) = a(Method::GET, &format!("/v1/alerts/{alert}/context"), None).await;
    let uuids: Vec<&str> = ctx["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(uuids, vec![plan.as_str(), runbook.as_str()]);
    assert!(ctx["data"][1]["targeting_rules"]["match_all"].is_array());

    // Scopes: workflows need workflows:*; documents alerts:*; rule writes admin.
    let reader = app.create_key("r", &["alerts:read"], None, None).await;
    let writer = app
        .create_key("w", &["alerts:write", "workflows:write"], None, None)
        .await;
    assert_eq!(
        call(&app, &reader, Method::GET, "/v1/context-documents", None).await.0,
        200
    );
    assert_eq!(
        call(&app, &reader, Method::GET, "/v1/detection-rules", None).await.0,
        200
    );
    assert_eq!(call(&app, &reader, Method::GET, "/v1/workflows", None).await.0, 403);
    assert_eq!(call(&app, &writer, Method::GET, "/v1/workflows", None).await.0, 403);
    assert_eq!(
        call(
            &app,
            &writer,
            Method::DELETE,
            &format!("/v1/detection-rules/{rule_uuid}"),
            None
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &app,
            &writer,
            Method::DELETE,
            &format!("/v1/context-documents/{runbook}"),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(&app, &writer, Method::DELETE, &format!("/v1/workflows/{wf}"), None)
            .await
            .0,
        204
    );
    // System workflows stay.
    let c = app.db.pool.get().await.unwrap();
    let sys: uuid::Uuid = c
        .query_one(
            "INSERT INTO workflows (name, is_system) VALUES ('Built in', true) RETURNING uuid",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (st, v) = call(&app, &writer, Method::DELETE, &format!("/v1/workflows/{sys}"), None).await;
    assert_eq!((st, v["error"]["code"].clone()), (403, json!("FORBIDDEN")));
    // Deleting the rule leaves the alert with no rule.
    assert_eq!(
        a(Method::DELETE, &format!("/v1/detection-rules/{rule_uuid}"), None)
            .await
            .0,
        204
    );
    let (_, v) = a(Method::GET, &format!("/v1/alerts/{alert}"), None).await;
    assert!(v["data"]["detection_rule_uuid"].is_null());
}

fn form(parts: &[(&str, Option<&str>, &str)]) -> (String, Vec<u8>) {
    let boundary = "calsetaBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, file, value) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: text/markdown\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(value.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn a_markdown_file_can_be_uploaded_as_a_document_other_formats_are_refused() {
    let app = TestApp::start().await;
    let post = |ct: String, body: Vec<u8>| {
        let app = &app;
        async move {
            let r = app
                .http
                .post(app.url("/v1/context-documents"))
                .bearer_auth(&app.admin_key)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (ct, body) = form(&[
        ("title", None, "Phishing SOP"),
        ("document_type", None, "sop"),
        ("is_global", None, "false"),
        ("tags", None, "email, phishing"),
        (
            "targeting_rules",
            None,
            r#"{"match_any": [{"field": "tags", "op": "contains", "value": "phishing"}]}"#,
        ),
        (
            "file",
            Some("phishing.md"),
            "# Phishing SOP\n\n1. Pull the message from every mailbox.",
        ),
    ]);
    let (st, v) = post(ct, body).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        v["data"]["content"],
        json!("# Phishing SOP\n\n1. Pull the message from every mailbox.")
    );
    assert_eq!(v["data"]["tags"], json!(["email", "phishing"]));
    assert!(v["data"]["targeting_rules"]["match_any"].is_array());
    let (ct, body) = form(&[
        ("title", None, "Slides"),
        ("document_type", None, "other"),
        ("file", Some("deck.pdf"), "%PDF-1.7"),
    ]);
    let (st, v) = post(ct, body).await;
    assert_eq!((st, v["error"]["code"].clone()), (422, json!("UNSUPPORTED_FORMAT")));
    let (ct, body) = form(&[("title", None, "No file"), ("document_type", None, "sop")]);
    let (st, v) = post(ct, body).await;
    assert_eq!(st, 422);
    assert_eq!(v["error"]["details"]["errors"][0]["field"], json!("body.content"));
}
