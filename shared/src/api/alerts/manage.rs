//! `GET /v1/alerts`, `GET/PATCH/DELETE /v1/alerts/{uuid}` (api spec §5.2).

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::api::extract::{missing, res, Authorized, Id};
use crate::api::list_query::ListQuery;
use crate::api::page;
use crate::api::ApiError;
use crate::db::stmt;
use crate::domain::malice::Malice;
use crate::domain::severity::Severity;
use crate::service::{alerts, Actor, ActorKind};

pub(crate) use crate::service::alerts::{CLASSIFICATIONS, ENRICHMENT_STATUSES, SEVERITY_RANK_SQL, SOURCES, STATUSES};

/// The alert's internal id; an unknown uuid is 404.
pub(super) async fn alert_id(client: &impl stmt::Cached, uuid: Uuid) -> Result<(i64, Uuid), ApiError> {
    Ok(alerts::alert_id(client, uuid).await?)
}

/// `GET /v1/alerts`.
pub async fn list(Authorized { client, .. }: Authorized, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let q = ListQuery::parse(q.as_deref())?;
    let page = q.page()?;
    let severities: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
    let status = q.list("status", &STATUSES)?;
    let severity = q.list("severity", &severities)?;
    let source = q.list("source_name", &SOURCES)?;
    let enrichment = q.list("enrichment_status", &ENRICHMENT_STATUSES)?;
    let is_enriched = q.boolean("is_enriched")?;
    let rule = q.uuid("detection_rule_uuid")?;
    let from = q.timestamp("from_time")?;
    let to = q.timestamp("to_time")?;
    let tags = q.all("tags");
    let order = q.sort(&alerts::SORTS, "occurred_at", "a.id")?;
    let filter = alerts::AlertFilter {
        status,
        severity,
        source_name: source,
        enrichment_status: enrichment,
        is_enriched,
        detection_rule_uuid: rule,
        from_time: from,
        to_time: to,
        tags,
    };
    let listed = alerts::search(&*client, &filter, &order, page.page_size, page.offset()).await?;
    let items = listed.items.iter().map(|a| json!(a)).collect();
    Ok(Json(page.envelope(items, listed.total)))
}

/// The full alert and its metadata (shared by GET and PATCH).
async fn full(client: &impl stmt::Cached, id: i64) -> Result<Value, ApiError> {
    let (data, meta) = alerts::detail(client, id).await?;
    Ok(json!({"data": data, "meta": meta}))
}

/// `GET /v1/alerts/{uuid}`.
pub async fn detail(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Alert>,
) -> Result<Json<Value>, ApiError> {
    let (id, _) = alert_id(&*client, uuid).await?;
    Ok(Json(full(&*client, id).await?))
}

fn enum_field(obj: &Map<String, Value>, field: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(s.trim()))
            .map(|a| Some(a.to_string()))
            .ok_or_else(|| {
                ApiError::validation(
                    &format!("body.{field}"),
                    &format!("must be one of {}", allowed.join(", ")),
                    "enum",
                )
            }),
        Some(_) => Err(ApiError::validation(
            &format!("body.{field}"),
            "must be a string",
            "string_type",
        )),
    }
}

/// `PATCH /v1/alerts/{uuid}`.
pub async fn patch(
    Authorized { mut client, principal }: Authorized,
    Id(uuid, _): Id<res::Alert>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let obj = page::strict_body(&body, "AlertPatch")?;
    let severities: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
    let malices: Vec<&str> = Malice::ALL.iter().map(|m| m.as_str()).collect();
    let status = enum_field(&obj, "status", &STATUSES)?;
    let severity = enum_field(&obj, "severity", &severities)?;
    let classification = enum_field(&obj, "close_classification", &CLASSIFICATIONS)?;
    let malice_override = enum_field(&obj, "malice_override", &malices)?;
    let reset = match obj.get("reset_malice_override") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => {
            return Err(ApiError::validation(
                "body.reset_malice_override",
                "must be true or false",
                "bool_type",
            ))
        }
    };
    let tags: Option<Vec<String>> = match obj.get("tags") {
        None | Some(Value::Null) => None,
        Some(Value::Array(xs)) => {
            let mut out: Vec<String> = Vec::new();
            for x in xs {
                let Some(t) = x.as_str().map(str::trim).filter(|t| !t.is_empty() && t.len() <= 255) else {
                    return Err(ApiError::validation(
                        "body.tags",
                        "must be a list of non-empty strings",
                        "list_type",
                    ));
                };
                if !out.iter().any(|o| o == t) {
                    out.push(t.to_string());
                }
            }
            Some(out)
        }
        Some(_) => {
            return Err(ApiError::validation(
                "body.tags",
                "must be a list of strings",
                "list_type",
            ))
        }
    };
    let change = alerts::AlertChange {
        status,
        severity,
        close_classification: classification,
        tags,
        malice_override,
        reset_malice_override: reset,
    };
    let actor = Actor {
        kind: ActorKind::Api,
        key_prefix: principal.key_prefix,
    };
    let updated = alerts::update(&mut client, &actor, uuid, &change).await?;
    Ok(Json(full(&*client, updated.id).await?))
}

/// `DELETE /v1/alerts/{uuid}`: indicator links go, indicators stay; the idempotency key is freed.
pub async fn delete(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Alert>,
) -> Result<StatusCode, ApiError> {
    if crate::db::alerts::delete(&*client, uuid).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(missing::<res::Alert>())
    }
}
