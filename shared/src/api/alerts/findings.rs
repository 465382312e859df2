//! What agents write back and read around an alert (api spec §5.2): findings (append-only),
//! the activity log, the alert's indicators with their enrichment results.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::manage::alert_id;
use crate::api::extract::{res, Authorized, Id};
use crate::api::page;
use crate::api::ApiError;
use crate::service::alerts::{self, NewFinding};
use crate::service::{Actor, ActorKind};

pub(crate) use crate::service::alerts::MAX_EVIDENCE_BYTES;

/// `GET /v1/alerts/{uuid}/findings`: oldest first.
pub async fn list(Authorized { client, .. }: Authorized, Id(uuid, _): Id<res::Alert>) -> Result<Json<Value>, ApiError> {
    let (id, _) = alert_id(&*client, uuid).await?;
    let findings = alerts::findings(&*client, id).await?;
    Ok(Json(json!({"data": findings, "meta": {}})))
}

fn text(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    max: usize,
    required: bool,
) -> Result<Option<String>, ApiError> {
    let f = format!("body.{field}");
    match obj.get(field) {
        None | Some(Value::Null) if required => Err(ApiError::validation(&f, "field required", "missing")),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() && required => {
            Err(ApiError::validation(&f, "must not be empty", "string_too_short"))
        }
        Some(Value::String(s)) if s.chars().count() > max => Err(ApiError::validation(
            &f,
            &format!("at most {max} characters"),
            "string_too_long",
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::validation(&f, "must be a string", "string_type")),
    }
}

/// `POST /v1/alerts/{uuid}/findings`.
pub async fn create(
    Authorized { mut client, principal }: Authorized,
    Id(uuid, _): Id<res::Alert>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let obj = page::strict_body(&body, "FindingCreate")?;
    let agent_name = text(&obj, "agent_name", 255, true)?;
    let summary = text(&obj, "summary", 50_000, true)?;
    let recommended = text(&obj, "recommended_action", 10_000, false)?;
    let confidence = match text(&obj, "confidence", 10, false)? {
        None => None,
        Some(c) => Some(
            ["low", "medium", "high"]
                .into_iter()
                .find(|x| x.eq_ignore_ascii_case(c.trim()))
                .ok_or_else(|| ApiError::validation("body.confidence", "must be one of low, medium, high", "enum"))?
                .to_string(),
        ),
    };
    let evidence = match obj.get("evidence") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => {
            if serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX) > MAX_EVIDENCE_BYTES {
                return Err(ApiError::validation("body.evidence", "at most 64 KB", "value_error"));
            }
            Some(v.clone())
        }
        Some(_) => return Err(ApiError::validation("body.evidence", "must be an object", "dict_type")),
    };
    let finding = NewFinding {
        agent_name: agent_name.unwrap_or_default(),
        summary: summary.unwrap_or_default(),
        confidence,
        recommended_action: recommended,
        evidence,
    };
    let actor = Actor {
        kind: ActorKind::Api,
        key_prefix: principal.key_prefix,
    };
    let f = alerts::add_finding(&mut client, &actor, uuid, &finding).await?;
    Ok((StatusCode::CREATED, Json(page::single(json!(f)))).into_response())
}

/// `GET /v1/alerts/{uuid}/activity`: latest first, paginated.
pub async fn activity(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Alert>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Result<Json<Value>, ApiError> {
    let page = crate::api::list_query::ListQuery::parse(q.as_deref())?.page()?;
    let (id, _) = alert_id(&*client, uuid).await?;
    let (events, total) = alerts::activity(&*client, id, page.page_size, page.offset()).await?;
    let data = events.into_iter().map(|e| json!(e)).collect();
    Ok(Json(page.envelope(data, total)))
}

/// `GET /v1/alerts/{uuid}/indicators`: with each provider's stored result (no raw response).
pub async fn indicators(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Alert>,
) -> Result<Json<Value>, ApiError> {
    let (id, _) = alert_id(&*client, uuid).await?;
    let data = alerts::indicators(&*client, id).await?;
    Ok(Json(json!({"data": data, "meta": {}})))
}
