//! The MCP resources (api spec §6): read-only JSON documents under `calseta://`.

use rmcp::model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate};
use rmcp::ErrorData;
use serde_json::{json, Value};

use crate::api::auth::Principal;
use crate::api::enrichments::ON_DEMAND_PER_MINUTE as ENRICH_PER_MINUTE;
use crate::api::{rate_limit, AppState};
use crate::service::{alerts, catalog, enrichments, metrics, parse_uuid, ServiceError};

const JSON: &str = "application/json";

/// The MCP `calseta://alerts` count and the catalog lists' bounds (api spec §6).
const RECENT_ALERTS: i64 = 50;
const CATALOG_LIMIT: i64 = 500;
const ACTIVITY_LIMIT: i64 = 100;

pub(super) fn listed() -> Vec<Resource> {
    let r = |uri: &str, name: &str, desc: &str| Resource::new(uri, name).with_description(desc).with_mime_type(JSON);
    vec![
        r(
            "calseta://alerts",
            "Recent alerts",
            "The 50 most recent alerts by occurred_at (summaries) and their count. Needs alerts:read.",
        ),
        r(
            "calseta://detection-rules",
            "Detection rules",
            "Up to 500 detection rules with a 200-character documentation summary. Needs alerts:read.",
        ),
        r(
            "calseta://context-documents",
            "Context documents",
            "Up to 500 runbooks, IR plans, SOPs and other documents, without their content. Needs alerts:read.",
        ),
        r(
            "calseta://workflows",
            "Workflow catalog",
            "Up to 500 documented workflows (documentation only; nothing runs). Needs workflows:read.",
        ),
        r(
            "calseta://metrics/summary",
            "Metrics summary",
            "Alert and platform metrics over the last 30 days. Needs alerts:read.",
        ),
    ]
}

pub(super) fn templates() -> Vec<ResourceTemplate> {
    let t = |uri: &str, name: &str, desc: &str| {
        ResourceTemplate::new(uri, name)
            .with_description(desc)
            .with_mime_type(JSON)
    };
    vec![
        t(
            "calseta://alerts/{uuid}",
            "Alert",
            "One alert with its indicators and their enrichment results (no raw provider responses), detection \
             rule, applicable context documents and findings. Needs alerts:read.",
        ),
        t(
            "calseta://alerts/{uuid}/context",
            "Alert context documents",
            "The context documents that apply to an alert, with their content. Needs alerts:read.",
        ),
        t(
            "calseta://alerts/{uuid}/activity",
            "Alert activity",
            "Up to 100 newest activity events of an alert. Needs alerts:read.",
        ),
        t(
            "calseta://detection-rules/{uuid}",
            "Detection rule",
            "One detection rule in full. Needs alerts:read.",
        ),
        t(
            "calseta://context-documents/{uuid}",
            "Context document",
            "One context document with content and targeting rules. Needs alerts:read.",
        ),
        t(
            "calseta://workflows/{uuid}",
            "Workflow",
            "One workflow catalog entry in full. Needs workflows:read.",
        ),
        t(
            "calseta://enrichments/{type}/{value}",
            "On-demand enrichment",
            "Enriches an indicator now: type is one of ip, domain, url, hash_md5, hash_sha1, hash_sha256, email, \
             account; value is URL-encoded. Needs enrichments:read.",
        ),
    ]
}

fn text(uri: &str, v: &Value) -> ReadResourceResult {
    let body = serde_json::to_string_pretty(v).unwrap_or_default();
    ReadResourceResult::new(vec![ResourceContents::text(body, uri).with_mime_type(JSON)])
}

fn failed(uri: &str, e: ServiceError) -> Result<ReadResourceResult, ErrorData> {
    match e {
        ServiceError::NotFound(what) => Err(ErrorData::resource_not_found(
            format!("{what} not found"),
            Some(json!({"uri": uri})),
        )),
        ServiceError::Invalid { field, message, .. } => Err(ErrorData::invalid_params(
            format!("{field}: {message}"),
            Some(json!({"uri": uri})),
        )),
        ServiceError::Unavailable(what) => Err(ErrorData::internal_error(format!("{what} is unavailable"), None)),
        ServiceError::Db(e) => {
            tracing::error!(error = %e, detail = ?e, "mcp resource database error");
            Err(ErrorData::internal_error("An unexpected error occurred", None))
        }
    }
}

/// `documentation_summary`: the first 200 characters and "..." when longer.
fn summarize_rule(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        let doc = m.remove("documentation").and_then(|d| d.as_str().map(str::to_owned));
        let summary = doc.map(|d| {
            if d.chars().count() > 200 {
                format!("{}...", d.chars().take(200).collect::<String>())
            } else {
                d
            }
        });
        m.insert("documentation_summary".into(), json!(summary));
    }
    v
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("v={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Reads `uri` for `who`; a missing scope answers the spec's error document.
#[allow(
    clippy::too_many_lines,
    reason = "long but linear; a split along its phases is issue #11's next step"
)]
pub(super) async fn read(
    state: &AppState,
    client: &deadpool_postgres::Object,
    who: &Principal,
    uri: &str,
) -> Result<ReadResourceResult, ErrorData> {
    let Some(path) = uri.strip_prefix("calseta://") else {
        return Err(unknown(uri));
    };
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let scope = match parts.first().copied() {
        Some("workflows") => "workflows:read",
        Some("enrichments") => "enrichments:read",
        _ => "alerts:read",
    };
    if !who.has_any(&[scope]) {
        return Ok(text(
            uri,
            &json!({"error": format!("Insufficient scope. Required: {scope}")}),
        ));
    }
    let c = &**client;
    let out: Result<Value, ServiceError> = match parts.as_slice() {
        ["alerts", rest @ ..] => match alert_resource(c, rest).await {
            Some(r) => r,
            None => return Err(unknown(uri)),
        },
        ["detection-rules"] => catalog::search_rules(c, &Default::default(), "a.name ASC, a.id ASC", CATALOG_LIMIT, 0)
            .await
            .map(|l| {
                let rules: Vec<Value> = l.items.iter().map(|r| summarize_rule(json!(r))).collect();
                json!({"detection_rules": rules, "count": rules.len(), "total": l.total})
            }),
        ["detection-rules", uuid] => async { catalog::get_rule(c, parse_uuid(uuid, "Detection rule")?).await }
            .await
            .map(|r| json!(r)),
        ["context-documents"] => catalog::list_documents(c, None, None, "title ASC, id ASC", CATALOG_LIMIT, 0)
            .await
            .map(|l| json!({"context_documents": l.items, "count": l.items.len(), "total": l.total})),
        ["context-documents", uuid] => async { catalog::get_document(c, parse_uuid(uuid, "Context document")?).await }
            .await
            .map(|r| json!(r)),
        ["workflows"] => catalog::list_workflows(c, &Default::default(), "name ASC, id ASC", CATALOG_LIMIT, 0)
            .await
            .map(|l| json!({"workflows": l.items, "count": l.items.len(), "total": l.total})),
        ["workflows", uuid] => async { catalog::get_workflow(c, parse_uuid(uuid, "Workflow")?).await }
            .await
            .map(|r| json!(r)),
        ["metrics", "summary"] => metrics::summary(c, state.enrichment.as_deref()).await,
        ["enrichments", kind, value] => enrichment(state, c, who, uri, kind, value).await?,
        _ => return Err(unknown(uri)),
    };
    match out {
        Ok(v) => Ok(text(uri, &v)),
        Err(e) => failed(uri, e),
    }
}

fn unknown(uri: &str) -> ErrorData {
    ErrorData::resource_not_found("Unknown resource", Some(json!({"uri": uri})))
}

/// `calseta://alerts` and the resources under one alert; `None` for an unknown path.
async fn alert_resource(c: &impl crate::db::stmt::Cached, rest: &[&str]) -> Option<Result<Value, ServiceError>> {
    Some(match rest {
        [] => alerts::recent(c, RECENT_ALERTS)
            .await
            .map(|a| json!({"alerts": a, "count": a.len()})),
        [uuid] => match alert(c, uuid).await {
            Ok((id, _)) => alerts::detail(c, id).await.map(|(data, meta)| {
                let mut d = json!(data);
                d["_metadata"] = json!(meta);
                d
            }),
            Err(e) => Err(e),
        },
        [uuid, "context"] => match alert(c, uuid).await {
            Ok((id, _)) => catalog::documents_for_alert(c, id).await.map(|docs| {
                let keep = [
                    "uuid",
                    "title",
                    "document_type",
                    "is_global",
                    "description",
                    "content",
                    "tags",
                ];
                let docs: Vec<Value> = docs
                    .into_iter()
                    .map(|d| match json!(d) {
                        Value::Object(m) => {
                            Value::Object(m.into_iter().filter(|(k, _)| keep.contains(&k.as_str())).collect())
                        }
                        other => other,
                    })
                    .collect();
                json!({"context_documents": docs, "count": docs.len()})
            }),
            Err(e) => Err(e),
        },
        [uuid, "activity"] => match alert(c, uuid).await {
            Ok((id, _)) => alerts::activity(c, id, ACTIVITY_LIMIT, 0)
                .await
                .map(|(events, total)| json!({"activity": events, "count": events.len(), "total": total})),
            Err(e) => Err(e),
        },
        _ => return None,
    })
}

/// `calseta://enrichments/{type}/{value}`: an on-demand lookup under the caller's per-key
/// bucket (shared with `POST /v1/enrichments` and `enrich_indicator`).
async fn enrichment(
    state: &AppState,
    c: &impl crate::db::stmt::Cached,
    who: &Principal,
    uri: &str,
    kind: &str,
    value: &str,
) -> Result<Result<Value, ServiceError>, ErrorData> {
    Ok(match state.enrichment.as_deref() {
        // The per-key bucket of `POST /v1/enrichments` and `enrich_indicator`.
        Some(_)
            if rate_limit::check(c, &format!("key:{}:enrich", who.key_prefix), ENRICH_PER_MINUTE)
                .await
                .is_err() =>
        {
            return Err(ErrorData::invalid_request(
                "Rate limit exceeded for on-demand enrichment; retry in a minute",
                Some(json!({"uri": uri})),
            ))
        }
        Some(engine) => enrichments::enrich_now(engine, kind, &decode(value))
            .await
            .map(|mut v| {
                let n = v.get("results").and_then(Value::as_object).map_or(0, |r| r.len());
                v["provider_count"] = json!(n);
                v
            }),
        None => Err(ServiceError::Unavailable("On-demand enrichment")),
    })
}

/// The alert a resource URI names.
async fn alert(c: &impl crate::db::stmt::Cached, uuid: &str) -> Result<(i64, uuid::Uuid), ServiceError> {
    alerts::alert_id(c, parse_uuid(uuid, "Alert")?).await
}
