//! The scope matrix: every operation of the OpenAPI table (`calseta::api::openapi::OPERATIONS`)
//! against the live router × {no key, a key without the scope, a key with only the scope,
//! admin}. A route missing from the router, or guarded differently from its documentation,
//! fails here — so the served OpenAPI document cannot drift from the code.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::collections::HashMap;

use calseta::api::openapi::{Operation, OPERATIONS};
use calseta::testing::TestApp;
use reqwest::Method;
use serde_json::{json, Value};

async fn call(app: &TestApp, key: Option<&str>, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut req = app.http.request(m, app.url(path));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn body_for(op: &Operation, n: usize) -> Option<Value> {
    if op.method == "patch" && op.body != Some("AlertPatch") && op.body != Some("IndicatorPatch") {
        return Some(match op.body? {
            "ApiKeyWrite" | "WorkflowWrite" | "AgentWrite" => json!({"name": format!("renamed {n}")}),
            "SourceWrite" => json!({"display_name": format!("renamed {n}")}),
            "DocumentWrite" => json!({"title": format!("renamed {n}")}),
            _ => json!({"goal": format!("goal {n}")}),
        });
    }
    let b = match op.body? {
        "AnyJson" => json!({"title": format!("matrix {n}"), "source_alert_id": format!("mx-{n}")}),
        "AlertIngest" => {
            json!({"source_name": "generic", "payload": {"title": "m", "source_alert_id": format!("mxa-{n}")}})
        }
        "AlertPatch" => json!({"tags": ["matrix"]}),
        "FindingCreate" => json!({"agent_name": "matrix", "summary": "checked"}),
        "IndicatorPatch" => json!({"malice": "Suspicious"}),
        "IndicatorsAdd" => json!({"indicators": [{"type": "domain", "value": format!("added-{n}.example.com")}]}),
        "EnrichmentRequest" => json!({"type": "ip", "value": "8.8.8.8"}),
        "RuleWrite" => {
            json!({"name": format!("rule {n}"), "source_name": "generic", "source_rule_id": format!("mx-rule-{n}")})
        }
        "DocumentWrite" => json!({"title": format!("doc {n}"), "document_type": "sop", "content": "x"}),
        "WorkflowWrite" => json!({"name": format!("wf {n}")}),
        "AgentWrite" => json!({"name": format!("agent {n}"), "endpoint_url": "http://127.0.0.1:9/hook"}),
        "SourceWrite" => json!({"source_name": "elastic", "display_name": format!("s {n}")}),
        "ApiKeyWrite" => json!({"name": format!("key {n}"), "scopes": ["alerts:read"]}),
        other => panic!("no sample body for {other}"),
    };
    Some(b)
}

/// One of each resource, created through the API (and a dead delivery in SQL).
struct Fixtures {
    alert: String,
    indicator: String,
    rule: String,
    doc: String,
    wf: String,
    agent: String,
    source: String,
    key: String,
    delivery: uuid::Uuid,
}

impl Fixtures {
    async fn new(app: &TestApp) -> Self {
        let admin = app.admin_key.clone();
        // Fixtures through the API.
        let (_, v) = call(
            app,
            Some(&admin),
            "post",
            "/v1/ingest/generic",
            Some(&json!({"title": "fixture", "source_alert_id": "fx-1", "ip": "8.8.8.8"})),
        )
        .await;
        let alert = v["data"]["alert_uuid"].as_str().unwrap().to_string();
        let (_, v) = call(
            app,
            Some(&admin),
            "get",
            &format!("/v1/alerts/{alert}/indicators"),
            None,
        )
        .await;
        let indicator = v["data"][0]["uuid"].as_str().unwrap().to_string();
        let (_, v) = call(
            app,
            Some(&admin),
            "post",
            "/v1/detection-rules",
            Some(&json!({"name": "fx rule"})),
        )
        .await;
        let rule = v["data"]["uuid"].as_str().unwrap().to_string();
        let (_, v) = call(
            app,
            Some(&admin),
            "post",
            "/v1/context-documents",
            Some(&json!({"title": "fx", "document_type": "sop", "content": "x"})),
        )
        .await;
        let doc = v["data"]["uuid"].as_str().unwrap().to_string();
        let (_, v) = call(app, Some(&admin), "post", "/v1/workflows", Some(&json!({"name": "fx"}))).await;
        let wf = v["data"]["uuid"].as_str().unwrap().to_string();
        let (_, v) = call(
            app,
            Some(&admin),
            "post",
            "/v1/agents",
            Some(&json!({"name": "fx", "endpoint_url": "http://127.0.0.1:9/hook"})),
        )
        .await;
        let agent = v["data"]["uuid"].as_str().unwrap().to_string();
        let (_, v) = call(
            app,
            Some(&admin),
            "post",
            "/v1/sources",
            Some(&json!({"source_name": "sentinel"})),
        )
        .await;
        let source = v["data"]["uuid"].as_str().unwrap().to_string();
        let (_, v) = call(
            app,
            Some(&admin),
            "post",
            "/v1/api-keys",
            Some(&json!({"name": "fx", "scopes": ["alerts:read"]})),
        )
        .await;
        let key = v["data"]["uuid"].as_str().unwrap().to_string();
        let c = app.db.pool.get().await.unwrap();
        let delivery: uuid::Uuid = c
            .query_one(
                "INSERT INTO deliveries (alert_id, agent_id, status) SELECT a.id, g.id, 'dead' FROM alerts a, agents g
                 WHERE a.uuid = $1::text::uuid AND g.uuid = $2::text::uuid RETURNING uuid",
                &[&alert, &agent],
            )
            .await
            .unwrap()
            .get(0);
        Self {
            alert,
            indicator,
            rule,
            doc,
            wf,
            agent,
            source,
            key,
            delivery,
        }
    }

    /// The fixture's uuid for an operation path (deliveries: the first one).
    fn uuid_for(&self, path: &str) -> String {
        let table: [(&str, &str); 8] = [
            ("/v1/alerts/", &self.alert),
            ("/v1/indicators/", &self.indicator),
            ("/v1/detection-rules/", &self.rule),
            ("/v1/context-documents/", &self.doc),
            ("/v1/workflows/", &self.wf),
            ("/v1/agents/", &self.agent),
            ("/v1/sources/", &self.source),
            ("/v1/api-keys/", &self.key),
        ];
        if path.starts_with("/v1/deliveries/") {
            return self.delivery.to_string();
        }
        for (prefix, u) in table {
            if path.starts_with(prefix) {
                return u.to_string();
            }
        }
        panic!("no fixture for {path}")
    }
}

#[tokio::test]
async fn every_route_enforces_exactly_its_documented_scopes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, calseta::enrich::simulator::router()).await });
    let providers = calseta::enrich::registry::ProviderSet::simulated(&base, HashMap::new(), 4);
    let (app, _engine) = TestApp::with_enrichment(providers, Default::default()).await;
    let admin = app.admin_key.clone();
    let fx = Fixtures::new(&app).await;
    let c = app.db.pool.get().await.unwrap();
    let delivery = fx.delivery;
    let uuid_for = |path: &str| fx.uuid_for(path);

    // One key per scope (the only scope it holds).
    let scopes = [
        "alerts:read",
        "alerts:write",
        "enrichments:read",
        "workflows:read",
        "workflows:write",
        "agents:read",
        "agents:write",
    ];
    let mut keys: HashMap<&str, String> = HashMap::new();
    for s in scopes {
        keys.insert(s, app.create_key(s, &[s], None, None).await);
    }

    // Deletes last, so every other route sees its fixture.
    let mut ops: Vec<&Operation> = OPERATIONS.iter().collect();
    ops.sort_by_key(|o| o.method == "delete");
    let mut checked = 0;
    for (n, op) in ops.iter().enumerate() {
        // trigger-agents gives a delivery a new id (a new send): read the current one.
        let current_delivery: uuid::Uuid = c
            .query_opt("SELECT uuid FROM deliveries ORDER BY id LIMIT 1", &[])
            .await
            .unwrap()
            .map(|r| r.get(0))
            .unwrap_or(delivery);
        let id = if op.path.starts_with("/v1/deliveries/") {
            current_delivery.to_string()
        } else if op.path.contains("{uuid}") {
            uuid_for(op.path)
        } else {
            String::new()
        };
        let path = op.path.replace("{source}", "generic").replace("{uuid}", &id);
        let body = body_for(op, n);
        let label = format!("{} {}", op.method.to_uppercase(), op.path);
        if op.scopes.is_empty() {
            let (st, _) = call(&app, None, op.method, &path, None).await;
            assert_eq!(st, op.status, "{label} without a key");
            checked += 1;
            continue;
        }
        // No key.
        let (st, v) = call(&app, None, op.method, &path, body.as_ref()).await;
        assert_eq!(st, 401, "{label} without a key: {v}");
        // A key whose scopes do not include the route's.
        let wrong = scopes.iter().find(|s| !op.scopes.contains(s)).unwrap();
        let (st, v) = call(&app, Some(&keys[wrong]), op.method, &path, body.as_ref()).await;
        assert_eq!(st, 403, "{label} with {wrong}: {v}");
        assert_eq!(v["error"]["details"]["required_scopes"], json!(op.scopes), "{label}");
        // A key with only the documented scope (admin-only routes: admin itself).
        let right = if op.scopes == ["admin"] {
            admin.clone()
        } else {
            keys[op.scopes[0]].clone()
        };
        let (st, v) = call(&app, Some(&right), op.method, &path, body_for(op, n + 1000).as_ref()).await;
        assert!(
            st != 401 && st != 403 && st < 500,
            "{label} with {:?}: {st} {v}",
            op.scopes
        );
        if op.method != "delete" {
            assert_eq!(st, op.status, "{label} answers its documented status: {v}");
        }
        // Admin passes every scope check.
        let (st, v) = call(&app, Some(&admin), op.method, &path, body_for(op, n + 2000).as_ref()).await;
        assert!(st != 401 && st != 403 && st < 500, "{label} as admin: {st} {v}");
        checked += 4;
    }
    eprintln!("scope matrix: {} operations, {checked} checks", OPERATIONS.len());
    assert!(checked >= OPERATIONS.len() * 4 - 8);
}

/// Strict bodies: every operation of the table that takes a JSON object body refuses an unknown
/// field and a read-only one with 422 naming it (standard envelope), instead of ignoring them.
/// Driven from `OPERATIONS`, so a new route is covered as soon as it is documented.
#[tokio::test]
async fn every_writable_route_refuses_unknown_and_read_only_fields() {
    let app = TestApp::start().await;
    let admin = app.admin_key.clone();
    let fx = Fixtures::new(&app).await;
    let mut checked = 0;
    for (n, op) in OPERATIONS.iter().enumerate() {
        // Native SIEM payloads have the SIEM's shape: not ours to restrict.
        if op.body.is_none() || op.body == Some("AnyJson") {
            continue;
        }
        let path = if op.path.contains("{uuid}") {
            op.path.replace("{uuid}", &fx.uuid_for(op.path))
        } else {
            op.path.to_string()
        };
        for (extra, kind) in [
            ("no_such_field", "extra_forbidden"),
            ("uuid", "read_only"),
            ("created_at", "read_only"),
        ] {
            let mut body = body_for(op, n + 3000).unwrap();
            body[extra] = json!("2026-01-01T00:00:00Z");
            let label = format!("{} {} + {extra}", op.method.to_uppercase(), op.path);
            let (st, v) = call(&app, Some(&admin), op.method, &path, Some(&body)).await;
            assert_eq!(st, 422, "{label}: {v}");
            assert_eq!(v["error"]["code"], json!("VALIDATION_ERROR"), "{label}: {v}");
            assert_eq!(
                v["error"]["details"]["errors"][0],
                json!({"field": format!("body.{extra}"), "message": if kind == "read_only" { "is read-only" } else { "is not a field of this resource" }, "type": kind}),
                "{label}"
            );
            checked += 1;
        }
    }
    // Nested strict objects too.
    let (st, v) = call(
        &app,
        Some(&admin),
        "post",
        &format!("/v1/alerts/{}/indicators", fx.alert),
        Some(&json!({"indicators": [{"type": "ip", "value": "1.2.3.4", "malice": "Malicious"}]})),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(
        v["error"]["details"]["errors"][0]["field"],
        json!("body.indicators[0].malice")
    );
    eprintln!("strict bodies: {checked} checks");
    assert!(checked >= 3 * 18, "{checked}");
}

/// Every `{uuid}` route: without a key, 401 even for a malformed uuid (auth comes first);
/// with the admin key, a malformed uuid and an unknown one get the same 404 naming the
/// resource (`Id<R>`), so neither reveals more than the other.
#[tokio::test]
async fn uuid_routes_answer_a_malformed_uuid_as_their_resources_404_after_auth() {
    let app = TestApp::start().await;
    let admin = app.admin_key.clone();
    let name = |path: &str| match path.trim_start_matches("/v1/").split('/').next().unwrap_or("") {
        "alerts" => "Alert",
        "agents" => "Agent",
        "api-keys" => "API key",
        "context-documents" => "Context document",
        "deliveries" => "Delivery",
        "detection-rules" => "Detection rule",
        "indicators" => "Indicator",
        "sources" => "Source",
        "workflows" => "Workflow",
        other => panic!("no resource name for {other}"),
    };
    let mut checked = 0;
    for (n, op) in OPERATIONS
        .iter()
        .enumerate()
        .filter(|(_, op)| op.path.contains("{uuid}"))
    {
        let body = body_for(op, 900 + n);
        for (label, id) in [
            ("malformed", "not-a-uuid"),
            ("unknown", "00000000-0000-4000-8000-000000000000"),
        ] {
            let path = op.path.replace("{uuid}", id);
            let (status, _) = call(&app, None, op.method, &path, body.as_ref()).await;
            assert_eq!(status, 401, "{} {path} without a key", op.method);
            let (status, v) = call(&app, Some(&admin), op.method, &path, body.as_ref()).await;
            assert_eq!(status, 404, "{} {path} ({label}): {v}", op.method);
            assert_eq!(v["error"]["code"], "NOT_FOUND", "{} {path}: {v}", op.method);
            assert_eq!(
                v["error"]["message"],
                format!("{} not found", name(op.path)),
                "{} {path}: {v}",
                op.method
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 60,
        "only {checked} checks: the {{uuid}} routes went missing from OPERATIONS"
    );
}
