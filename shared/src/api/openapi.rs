//! The OpenAPI 3.1 document, generated from [`OPERATIONS`] — the one table of every route with
//! its method, path, scopes, success status, query parameters and request body. The table is
//! checked against the live router by the scope-matrix test (every route × no key / wrong scope
//! / right scope / admin), so the document cannot drift from what is served; `openapi.json` at
//! the repository root is this document, compared by a test (`CALSETA_UPDATE_OPENAPI=1`
//! rewrites it).

use serde_json::{json, Map, Value};

/// One operation of the API.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    /// Any one of these suffices (`admin` passes all); empty = no authentication.
    pub scopes: &'static [&'static str],
    pub summary: &'static str,
    pub tag: &'static str,
    pub status: u16,
    /// Query parameters: (name, JSON schema type, format or enum hint).
    pub query: &'static [(&'static str, &'static str)],
    /// Request body component name.
    pub body: Option<&'static str>,
    /// The response is a bare document (the agent payload), not the envelope. Unauthenticated
    /// operations (`/health`, `/openapi.json`) are bare too.
    pub bare: bool,
}

const fn op(
    method: &'static str,
    path: &'static str,
    scopes: &'static [&'static str],
    status: u16,
    tag: &'static str,
    summary: &'static str,
) -> Operation {
    Operation {
        method,
        path,
        scopes,
        summary,
        tag,
        status,
        query: &[],
        body: None,
        bare: false,
    }
}

const fn with_body(mut o: Operation, body: &'static str) -> Operation {
    o.body = Some(body);
    o
}

const fn with_query(mut o: Operation, q: &'static [(&'static str, &'static str)]) -> Operation {
    o.query = q;
    o
}

const PAGE: &[(&str, &str)] = &[("page", "integer"), ("page_size", "integer")];
const R: &[&str] = &["alerts:read"];
const W: &[&str] = &["alerts:write"];
const AR: &[&str] = &["agents:read"];
const AW: &[&str] = &["agents:write"];
const WR: &[&str] = &["workflows:read"];
const WW: &[&str] = &["workflows:write"];
const ER: &[&str] = &["enrichments:read"];
const ADMIN: &[&str] = &["admin"];

/// Every operation served by [`super::router`].
pub const OPERATIONS: &[Operation] = &[
    op(
        "get",
        "/health",
        &[],
        200,
        "health",
        "Health of the database, queue and providers",
    ),
    op("get", "/openapi.json", &[], 200, "health", "This OpenAPI document"),
    with_body(
        op(
            "post",
            "/v1/ingest/{source}",
            W,
            202,
            "ingest",
            "Ingest alerts in a SIEM's native format",
        ),
        "AnyJson",
    ),
    with_body(
        op("post", "/v1/alerts", W, 202, "ingest", "Ingest one source payload"),
        "AlertIngest",
    ),
    with_query(
        op("get", "/v1/alerts", R, 200, "alerts", "List alerts"),
        &[
            ("page", "integer"),
            ("page_size", "integer"),
            ("status", "string"),
            ("severity", "string"),
            ("source_name", "string"),
            ("enrichment_status", "string"),
            ("is_enriched", "boolean"),
            ("detection_rule_uuid", "uuid"),
            ("from_time", "date-time"),
            ("to_time", "date-time"),
            ("tags", "string"),
            ("sort_by", "string"),
            ("sort_order", "string"),
        ],
    ),
    op(
        "get",
        "/v1/alerts/{uuid}",
        R,
        200,
        "alerts",
        "An alert with its metadata (indicators carry their enrichment results)",
    ),
    with_body(
        op(
            "patch",
            "/v1/alerts/{uuid}",
            W,
            200,
            "alerts",
            "Update status, severity, classification, tags, malice",
        ),
        "AlertPatch",
    ),
    op("delete", "/v1/alerts/{uuid}", W, 204, "alerts", "Delete an alert"),
    Operation {
        bare: true,
        ..with_query(
            op(
                "get",
                "/v1/alerts/{uuid}/payload",
                R,
                200,
                "alerts",
                "The payload an agent receives",
            ),
            &[("max_bytes", "integer")],
        )
    },
    op(
        "get",
        "/v1/alerts/{uuid}/findings",
        R,
        200,
        "alerts",
        "Findings, oldest first",
    ),
    with_body(
        op("post", "/v1/alerts/{uuid}/findings", W, 201, "alerts", "Add a finding"),
        "FindingCreate",
    ),
    with_query(
        op(
            "get",
            "/v1/alerts/{uuid}/activity",
            R,
            200,
            "alerts",
            "Activity, latest first",
        ),
        PAGE,
    ),
    op(
        "get",
        "/v1/alerts/{uuid}/indicators",
        R,
        200,
        "alerts",
        "The alert's indicators with enrichment results",
    ),
    with_query(
        with_body(
            op(
                "post",
                "/v1/alerts/{uuid}/indicators",
                W,
                201,
                "alerts",
                "Add indicators to an alert",
            ),
            "IndicatorsAdd",
        ),
        &[("enrich", "boolean")],
    ),
    op(
        "get",
        "/v1/alerts/{uuid}/context",
        R,
        200,
        "alerts",
        "Context documents that apply",
    ),
    op(
        "post",
        "/v1/alerts/{uuid}/enrich",
        W,
        202,
        "alerts",
        "Re-enrich (cache first)",
    ),
    op(
        "post",
        "/v1/alerts/{uuid}/trigger-agents",
        AW,
        202,
        "agents",
        "Deliver to matching agents now",
    ),
    op(
        "get",
        "/v1/indicators/{uuid}",
        ER,
        200,
        "indicators",
        "An indicator with raw results",
    ),
    with_body(
        op(
            "patch",
            "/v1/indicators/{uuid}",
            W,
            200,
            "indicators",
            "Set or clear an analyst verdict",
        ),
        "IndicatorPatch",
    ),
    with_body(
        op(
            "post",
            "/v1/enrichments",
            ER,
            200,
            "enrichments",
            "Enrich one value now (not stored)",
        ),
        "EnrichmentRequest",
    ),
    op(
        "get",
        "/v1/enrichments/providers",
        ER,
        200,
        "enrichments",
        "Configured providers",
    ),
    with_query(
        op(
            "get",
            "/v1/detection-rules",
            R,
            200,
            "detection-rules",
            "List detection rules",
        ),
        &[
            ("page", "integer"),
            ("page_size", "integer"),
            ("source_name", "string"),
            ("severity", "string"),
            ("is_active", "boolean"),
            ("mitre_technique", "string"),
            ("sort_by", "string"),
            ("sort_order", "string"),
        ],
    ),
    with_body(
        op(
            "post",
            "/v1/detection-rules",
            ADMIN,
            201,
            "detection-rules",
            "Create a detection rule",
        ),
        "RuleWrite",
    ),
    op(
        "get",
        "/v1/detection-rules/{uuid}",
        R,
        200,
        "detection-rules",
        "A detection rule",
    ),
    with_body(
        op(
            "patch",
            "/v1/detection-rules/{uuid}",
            ADMIN,
            200,
            "detection-rules",
            "Update a detection rule",
        ),
        "RuleWrite",
    ),
    op(
        "delete",
        "/v1/detection-rules/{uuid}",
        ADMIN,
        204,
        "detection-rules",
        "Delete a detection rule",
    ),
    with_query(
        op(
            "get",
            "/v1/detection-rules/{uuid}/metrics",
            R,
            200,
            "detection-rules",
            "Metrics of one rule",
        ),
        &[("from", "date-time"), ("to", "date-time")],
    ),
    with_query(
        op(
            "get",
            "/v1/context-documents",
            R,
            200,
            "context-documents",
            "List context documents",
        ),
        &[
            ("page", "integer"),
            ("page_size", "integer"),
            ("document_type", "string"),
            ("is_global", "boolean"),
            ("sort_by", "string"),
            ("sort_order", "string"),
        ],
    ),
    with_body(
        op(
            "post",
            "/v1/context-documents",
            W,
            201,
            "context-documents",
            "Create a context document",
        ),
        "DocumentWrite",
    ),
    op(
        "get",
        "/v1/context-documents/{uuid}",
        R,
        200,
        "context-documents",
        "A context document",
    ),
    with_body(
        op(
            "patch",
            "/v1/context-documents/{uuid}",
            W,
            200,
            "context-documents",
            "Update a context document",
        ),
        "DocumentWrite",
    ),
    op(
        "delete",
        "/v1/context-documents/{uuid}",
        W,
        204,
        "context-documents",
        "Delete a context document",
    ),
    with_query(
        op("get", "/v1/workflows", WR, 200, "workflows", "List workflows"),
        &[
            ("page", "integer"),
            ("page_size", "integer"),
            ("workflow_type", "string"),
            ("state", "string"),
            ("risk_level", "string"),
            ("is_active", "boolean"),
            ("sort_by", "string"),
            ("sort_order", "string"),
        ],
    ),
    with_body(
        op("post", "/v1/workflows", WW, 201, "workflows", "Create a workflow"),
        "WorkflowWrite",
    ),
    op("get", "/v1/workflows/{uuid}", WR, 200, "workflows", "A workflow"),
    with_body(
        op(
            "patch",
            "/v1/workflows/{uuid}",
            WW,
            200,
            "workflows",
            "Update a workflow",
        ),
        "WorkflowWrite",
    ),
    op(
        "delete",
        "/v1/workflows/{uuid}",
        WW,
        204,
        "workflows",
        "Delete a workflow",
    ),
    with_query(op("get", "/v1/agents", AR, 200, "agents", "List agents"), PAGE),
    with_body(
        op(
            "post",
            "/v1/agents",
            AW,
            201,
            "agents",
            "Register an agent (signing secret shown once)",
        ),
        "AgentWrite",
    ),
    op("get", "/v1/agents/{uuid}", AR, 200, "agents", "An agent"),
    with_body(
        op(
            "patch",
            "/v1/agents/{uuid}",
            AW,
            200,
            "agents",
            "Update an agent or rotate its secret",
        ),
        "AgentWrite",
    ),
    op("delete", "/v1/agents/{uuid}", AW, 204, "agents", "Delete an agent"),
    op(
        "post",
        "/v1/agents/{uuid}/test",
        AW,
        200,
        "agents",
        "Send one synthetic payload",
    ),
    with_query(
        op(
            "get",
            "/v1/agents/{uuid}/deliveries",
            AR,
            200,
            "agents",
            "Deliveries of an agent",
        ),
        &[("page", "integer"), ("page_size", "integer"), ("status", "string")],
    ),
    op(
        "post",
        "/v1/deliveries/{uuid}/replay",
        AW,
        202,
        "agents",
        "Re-send a delivery with the same webhook id",
    ),
    with_query(
        op("get", "/v1/sources", R, 200, "sources", "List source settings"),
        PAGE,
    ),
    with_body(
        op("post", "/v1/sources", ADMIN, 201, "sources", "Create source settings"),
        "SourceWrite",
    ),
    op("get", "/v1/sources/{uuid}", R, 200, "sources", "Source settings"),
    with_body(
        op(
            "patch",
            "/v1/sources/{uuid}",
            ADMIN,
            200,
            "sources",
            "Update source settings",
        ),
        "SourceWrite",
    ),
    op(
        "delete",
        "/v1/sources/{uuid}",
        ADMIN,
        204,
        "sources",
        "Delete source settings (back to API keys)",
    ),
    with_query(
        op(
            "get",
            "/v1/api-keys",
            ADMIN,
            200,
            "api-keys",
            "List API keys (suspended included, revoked not)",
        ),
        PAGE,
    ),
    with_body(
        op(
            "post",
            "/v1/api-keys",
            ADMIN,
            201,
            "api-keys",
            "Create an API key (shown once)",
        ),
        "ApiKeyWrite",
    ),
    op("get", "/v1/api-keys/{uuid}", ADMIN, 200, "api-keys", "An API key"),
    with_body(
        op(
            "patch",
            "/v1/api-keys/{uuid}",
            ADMIN,
            200,
            "api-keys",
            "Update an API key (is_active suspends or restores it)",
        ),
        "ApiKeyWrite",
    ),
    op(
        "delete",
        "/v1/api-keys/{uuid}",
        ADMIN,
        204,
        "api-keys",
        "Revoke an API key",
    ),
    with_query(
        op(
            "get",
            "/v1/metrics/alerts",
            R,
            200,
            "metrics",
            "Alert metrics over a window",
        ),
        &[("from_time", "date-time"), ("to_time", "date-time")],
    ),
    op(
        "get",
        "/v1/metrics/summary",
        R,
        200,
        "metrics",
        "Platform summary (last 30 days)",
    ),
];

fn param_schema(kind: &str) -> Value {
    match kind {
        "integer" => json!({"type": "integer"}),
        "boolean" => json!({"type": "boolean"}),
        "uuid" => json!({"type": "string", "format": "uuid"}),
        "date-time" => json!({"type": "string", "format": "date-time"}),
        _ => json!({"type": "string"}),
    }
}

fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

fn nullable(t: &str) -> Value {
    json!({"type": [t, "null"]})
}

fn components() -> Value {
    let targeting = json!({"type": ["object", "null"], "properties": {
        "match_any": {"type": "array", "items": {"$ref": "#/components/schemas/Rule"}},
        "match_all": {"type": "array", "items": {"$ref": "#/components/schemas/Rule"}}}});
    json!({
        "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "cai_… API key"}},
        "responses": {"Error": {"description": "Error (standard envelope)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
                "required": ["code", "message", "details"], "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "object"}}}}},
            "Envelope": {"type": "object", "required": ["data", "meta"], "properties": {
                "data": {}, "meta": {"type": "object"}}},
            "AnyJson": {},
            "Rule": {"type": "object", "required": ["field", "op"], "properties": {
                "field": {"type": "string"}, "op": {"type": "string"}, "value": {}}},
            "AlertIngest": {"type": "object", "additionalProperties": false, "required": ["source_name", "payload"], "properties": {
                "source_name": {"type": "string", "enum": ["sentinel", "elastic", "splunk", "generic"]}, "payload": {}}},
            "AlertPatch": {"type": "object", "additionalProperties": false, "properties": {
                "status": {"type": "string", "enum": ["Open", "Triaging", "Escalated", "Closed"]},
                "severity": {"type": "string", "enum": ["Pending", "Informational", "Low", "Medium", "High", "Critical"]},
                "close_classification": {"type": "string", "enum": super::alerts::manage::CLASSIFICATIONS},
                "tags": strings(),
                "malice_override": {"type": "string", "enum": ["Pending", "Benign", "Suspicious", "Malicious"]},
                "reset_malice_override": {"type": "boolean"}}},
            "FindingCreate": {"type": "object", "additionalProperties": false, "required": ["agent_name", "summary"], "properties": {
                "agent_name": {"type": "string", "minLength": 1, "maxLength": 255},
                "summary": {"type": "string", "minLength": 1, "maxLength": 50000},
                "confidence": {"type": "string", "enum": ["low", "medium", "high"]},
                "recommended_action": {"type": "string"}, "evidence": {"type": "object"}}},
            "IndicatorsAdd": {"type": "object", "additionalProperties": false, "required": ["indicators"], "properties": {
                "indicators": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"type": "object", "additionalProperties": false,
                    "required": ["type", "value"], "properties": {
                        "type": {"type": "string", "enum": ["ip", "domain", "url", "hash_md5", "hash_sha1", "hash_sha256", "email", "account"]},
                        "value": {"type": "string", "minLength": 1, "maxLength": 2048}}}}}},
            "IndicatorPatch": {"type": "object", "additionalProperties": false, "required": ["malice"], "properties": {
                "malice": {"type": ["string", "null"], "enum": ["Pending", "Benign", "Suspicious", "Malicious", null]}}},
            "EnrichmentRequest": {"type": "object", "additionalProperties": false, "required": ["type", "value"], "properties": {
                "type": {"type": "string", "enum": ["ip", "domain", "url", "hash_md5", "hash_sha1", "hash_sha256", "email", "account"]},
                "value": {"type": "string", "minLength": 1, "maxLength": 2048},
                "indicator_type": {"type": "string", "description": "alias of type"},
                "indicator_value": {"type": "string", "description": "alias of value"}}},
            "RuleWrite": {"type": "object", "additionalProperties": false, "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 500},
                "source_name": {"type": "string", "enum": ["sentinel", "elastic", "splunk", "generic"]},
                "source_rule_id": nullable("string"), "severity": nullable("string"), "is_active": {"type": "boolean"},
                "mitre_tactics": strings(), "mitre_techniques": strings(), "mitre_subtechniques": strings(),
                "data_sources": strings(), "false_positive_tags": strings(), "blind_spots": strings(),
                "run_frequency": nullable("string"), "documentation": nullable("string"), "goal": nullable("string"),
                "priority": nullable("string"),
                "created_by": {"type": ["string", "null"], "description": "create only"}}},
            "DocumentWrite": {"type": "object", "additionalProperties": false, "properties": {
                "title": {"type": "string", "minLength": 1, "maxLength": 500},
                "document_type": {"type": "string", "enum": super::context_documents::DOCUMENT_TYPES},
                "is_global": {"type": "boolean"}, "description": nullable("string"),
                "content": {"type": "string", "minLength": 1}, "tags": strings(), "targeting_rules": targeting.clone()}},
            "WorkflowWrite": {"type": "object", "additionalProperties": false, "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 255}, "description": nullable("string"),
                "workflow_type": {"type": ["string", "null"], "enum": ["indicator", "alert", null]},
                "indicator_types": strings(), "state": {"type": "string", "enum": super::workflows::STATES},
                "is_active": {"type": "boolean"}, "tags": strings(),
                "risk_level": {"type": "string", "enum": super::workflows::RISK_LEVELS},
                "approval_mode": {"type": "string", "enum": super::workflows::APPROVAL_MODES},
                "time_saved_minutes": nullable("integer"), "documentation": nullable("string"),
                "targeting_rules": targeting.clone()}},
            "AgentWrite": {"type": "object", "additionalProperties": false, "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 255}, "description": nullable("string"),
                "endpoint_url": {"type": "string", "format": "uri"},
                "auth_header_name": nullable("string"), "auth_header_value": nullable("string"),
                "trigger_on_sources": strings(), "trigger_on_severities": strings(), "trigger_filter": targeting,
                "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 300},
                "retry_count": {"type": "integer", "minimum": 0, "maximum": 10},
                "retry_schedule": {"type": ["array", "null"], "items": {"type": "integer", "minimum": 1, "maximum": 604800},
                    "minItems": 1, "maxItems": 20,
                    "description": "seconds to wait before retry 1, 2, …; the last step repeats up to retry_count; null = the deployment's schedule (CALSETA_DELIVERY_RETRY_SCHEDULE, default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h)"},
                "max_payload_bytes": {"type": ["integer", "null"], "minimum": 256},
                "is_active": {"type": "boolean"}, "documentation": nullable("string"),
                "rotate_signing_secret": {"type": "boolean"}}},
            "SourceWrite": {"type": "object", "additionalProperties": false, "properties": {
                "source_name": {"type": "string", "enum": ["sentinel", "elastic", "splunk", "generic"]},
                "display_name": nullable("string"), "is_active": {"type": "boolean"},
                "auth_type": {"type": "string", "enum": super::sources::AUTH_TYPES},
                "url_token_allowed": {"type": "boolean"},
                "hmac_body_only": {"type": "boolean", "description": "accept HMAC signatures without X-Calseta-Timestamp (no replay protection; default false)"},
                "auth_config": {"type": "object", "description": "write-only", "additionalProperties": false, "properties": {
                    "shared_secret": nullable("string"), "previous_shared_secret": nullable("string"),
                    "hmac_secret": nullable("string")}},
                "extra_indicator_fields": {"type": "object", "additionalProperties": {"type": "string"}},
                "documentation": nullable("string")}},
            "ApiKeyWrite": {"type": "object", "additionalProperties": false, "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 255},
                "scopes": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "key_type": {"type": "string", "enum": ["human", "agent"]},
                "allowed_sources": {"type": ["array", "null"], "items": {"type": "string"}},
                "expires_at": {"type": ["string", "null"], "format": "date-time"},
                "is_active": {"type": "boolean", "description": "false suspends the key (reversible); DELETE revokes it for good"}}},
        }
    })
}

/// The component schemas, built once: strict request bodies are checked against them.
fn schemas() -> &'static Value {
    static SCHEMAS: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    &SCHEMAS.get_or_init(components)["schemas"]
}

/// The fields of `body` that request-body schema `schema` does not accept, as `body.a.b` /
/// `body.a[0].b` paths: a key absent from the `properties` of an object schema that sets
/// `additionalProperties: false`, at any depth. One table drives both the document and this
/// check, so a route's contract and its validation cannot disagree.
pub(crate) fn unknown_fields(schema: &str, body: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = schemas().get(schema) {
        walk_object(s, body, "body", &mut out);
    }
    out
}

fn walk_object(schema: &Value, m: &Map<String, Value>, at: &str, out: &mut Vec<String>) {
    let props = schema.get("properties").and_then(Value::as_object);
    let strict = schema.get("additionalProperties") == Some(&Value::Bool(false));
    for (k, x) in m {
        match props.and_then(|p| p.get(k)) {
            Some(s) => walk(s, x, &format!("{at}.{k}"), out),
            None if strict => out.push(format!("{at}.{k}")),
            None => {}
        }
    }
}

fn walk(schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => match r.strip_prefix("#/components/schemas/").and_then(|n| schemas().get(n)) {
            Some(s) => s,
            None => return,
        },
        None => schema,
    };
    match (v, schema.get("items")) {
        (Value::Object(m), _) => walk_object(schema, m, at, out),
        (Value::Array(xs), Some(items)) => {
            for (i, x) in xs.iter().enumerate() {
                walk(items, x, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn error_ref() -> Value {
    json!({"$ref": "#/components/responses/Error"})
}

/// The OpenAPI 3.1 document of [`OPERATIONS`].
pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for o in OPERATIONS {
        let mut params: Vec<Value> = Vec::new();
        if o.path.contains("{uuid}") {
            params.push(
                json!({"name": "uuid", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}),
            );
        }
        if o.path.contains("{source}") {
            params.push(json!({"name": "source", "in": "path", "required": true,
                               "schema": {"type": "string", "enum": ["sentinel", "elastic", "splunk", "generic"]}}));
        }
        for (name, kind) in o.query {
            params.push(json!({"name": name, "in": "query", "required": false, "schema": param_schema(kind)}));
        }
        let ok = if o.status == 204 {
            json!({"description": "No content"})
        } else if o.bare || o.scopes.is_empty() {
            json!({"description": "A bare JSON document (not the envelope)", "content": {"application/json": {"schema": {"type": "object"}}}})
        } else {
            json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}})
        };
        let mut responses = Map::new();
        responses.insert(o.status.to_string(), ok);
        let errors: &[u16] = if o.scopes.is_empty() {
            &[503]
        } else {
            &[400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 503]
        };
        for code in errors {
            responses.insert(code.to_string(), error_ref());
        }
        let mut operation = json!({
            "operationId": format!("{}_{}", o.method, o.path.trim_start_matches('/').replace(['/', '{', '}', '.', '-'], "_")),
            "summary": o.summary,
            "tags": [o.tag],
            "parameters": params,
            "responses": responses,
        });
        if !o.scopes.is_empty() {
            operation["security"] = json!([{"apiKey": []}]);
            operation["x-scopes"] = json!(o.scopes);
            operation["description"] = json!(format!("Scopes: any of {} (or admin).", o.scopes.join(", ")));
        } else {
            operation["security"] = json!([]);
        }
        if let Some(body) = o.body {
            operation["requestBody"] = json!({"required": true, "content": {"application/json": {
                "schema": {"$ref": format!("#/components/schemas/{body}")}}}});
            if o.method == "post" && o.path == "/v1/context-documents" {
                operation["requestBody"]["content"]["multipart/form-data"] = json!({"schema": {
                    "type": "object", "required": ["title", "document_type", "file"], "properties": {
                        "title": {"type": "string"}, "document_type": {"type": "string"},
                        "is_global": {"type": "string"}, "description": {"type": "string"},
                        "tags": {"type": "string", "description": "JSON array or comma list"},
                        "targeting_rules": {"type": "string", "description": "JSON"},
                        "file": {"type": "string", "contentMediaType": "text/markdown",
                                 "description": "UTF-8 .md, .markdown or .txt"}}}});
            }
        }
        paths
            .entry(o.path.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|m| m.insert(o.method.to_string(), operation));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Calseta API",
            "version": crate::VERSION,
            "description": "The data layer between SIEMs and security AI agents. Envelopes, errors, pagination and scopes: see the README and spec.",
        },
        "paths": paths,
        "components": components(),
    })
}

/// `GET /openapi.json`.
pub async fn serve() -> axum::Json<Value> {
    axum::Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_unique_and_documented() {
        let mut seen = std::collections::HashSet::new();
        for o in OPERATIONS {
            assert!(seen.insert((o.method, o.path)), "{} {} twice", o.method, o.path);
        }
        let doc = document();
        let n: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(n, OPERATIONS.len());
        for o in OPERATIONS {
            if let Some(b) = o.body {
                assert!(doc["components"]["schemas"].get(b).is_some(), "{b}");
            }
        }
    }

    /// The committed `openapi.json` is this document (`CALSETA_UPDATE_OPENAPI=1` rewrites it).
    #[test]
    fn the_committed_document_matches() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json");
        let generated = serde_json::to_string_pretty(&document()).unwrap() + "\n";
        if std::env::var("CALSETA_UPDATE_OPENAPI").is_ok() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "openapi.json is out of date: run `CALSETA_UPDATE_OPENAPI=1 cargo test -p calseta --lib openapi` and commit it"
        );
    }
}
