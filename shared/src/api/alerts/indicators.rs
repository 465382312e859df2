//! An alert's indicators, written (api spec §5.2):
//!
//! - `POST /v1/alerts/{uuid}/indicators` (`alerts:write`): links more indicators to an alert,
//!   normalized as at ingest; `?enrich=false` skips enrichment.
//! - `POST /v1/alerts/{uuid}/enrich` (`alerts:write`, 60/min per key): re-queues the alert's
//!   enrichable indicators (cache first). Completing again does not re-deliver to agents.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::api::extract::{res, Authorized, Id};
use crate::api::fields::err;
use crate::api::page;
use crate::api::{rate_limit, ApiError, AppState};
use crate::service::indicators::{self, EnrichmentWork};
use crate::service::{Actor, ActorKind};

/// `POST /v1/alerts/{uuid}/enrich` per key per minute (api spec §1).
pub(crate) const REENRICH_PER_MINUTE: u32 = 60;

pub(super) async fn reenrich(
    State(state): State<AppState>,
    Authorized { mut client, principal }: Authorized,
    Id(uuid, _): Id<res::Alert>,
) -> Result<Response, ApiError> {
    rate_limit::check(
        &*client,
        &format!("key:{}:reenrich", principal.key_prefix),
        REENRICH_PER_MINUTE,
    )
    .await?;
    indicators::reenrich(&mut client, &work(&state), uuid).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(page::single(json!({"message": "Enrichment queued"}))),
    )
        .into_response())
}

fn work(state: &AppState) -> EnrichmentWork<'_> {
    EnrichmentWork {
        outbox: &state.outbox,
        never_send: &state.never_send,
        deadline: state.limits.enrichment_deadline,
    }
}

/// Most indicators one request may add.
pub(crate) const MAX_ADDED: usize = 100;

pub(super) async fn add(
    State(state): State<AppState>,
    Authorized { mut client, principal }: Authorized,
    Id(uuid, _): Id<res::Alert>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    use crate::domain::indicator::{self, IndicatorType};
    let enrich = crate::api::list_query::ListQuery::parse(raw.as_deref())?
        .boolean("enrich")?
        .unwrap_or(true);
    let obj = page::strict_body(&body, "IndicatorsAdd")?;
    let items = match obj.get("indicators") {
        Some(Value::Array(xs)) if !xs.is_empty() && xs.len() <= MAX_ADDED => xs,
        Some(Value::Array(_)) => return Err(err("indicators", "1 to 100 items", "too_long")),
        Some(_) => return Err(err("indicators", "must be a list of {type, value}", "list_type")),
        None => return Err(err("indicators", "field required", "missing")),
    };
    // Normalized as at ingest; an invalid value is a 422 naming the item.
    let mut wanted: Vec<(IndicatorType, String)> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let f = |k: &str| format!("indicators[{i}].{k}");
        let kind = match it.get("type").and_then(Value::as_str) {
            Some(t) => t.trim().to_ascii_lowercase().parse::<IndicatorType>().map_err(|_| {
                err(
                    &f("type"),
                    "one of ip, domain, url, hash_md5, hash_sha1, hash_sha256, email, account",
                    "enum",
                )
            })?,
            None => return Err(err(&f("type"), "field required", "missing")),
        };
        let value = match it.get("value").and_then(Value::as_str) {
            Some(v) if !v.is_empty() && v.len() <= indicator::MAX_VALUE_LEN => v,
            Some(_) => return Err(err(&f("value"), "1 to 2048 characters", "string_length")),
            None => return Err(err(&f("value"), "field required", "missing")),
        };
        let normalized =
            indicator::normalize(kind, value).map_err(|e| err(&f("value"), &e.to_string(), "value_error"))?;
        // A URL brings its host too, as at ingest (reputation services know domains better).
        let hosts: Vec<_> = normalized
            .iter()
            .filter(|(t, _)| *t == IndicatorType::Url)
            .filter_map(|(_, v)| indicator::url_host_indicator(v))
            .collect();
        for n in normalized.into_iter().chain(hosts) {
            if !wanted.contains(&n) {
                wanted.push(n);
            }
        }
    }
    if wanted.is_empty() {
        return Err(err("indicators", "no valid indicator", "value_error"));
    }
    let actor = Actor {
        kind: ActorKind::Api,
        key_prefix: principal.key_prefix,
    };
    let added = indicators::add_to_alert(&mut client, &work(&state), &actor, uuid, wanted, enrich).await?;
    Ok((StatusCode::CREATED, Json(page::single(json!(added)))).into_response())
}
