//! Ingest (pipeline step 1): authenticate the source, parse and normalize the SIEM's body
//! (`crate::sources`), store everything in one transaction (`store`), then send the outbox
//! messages that start enrichment. Processing order and errors follow sources spec §6 and §9.

pub mod credentials;
pub mod limits;
pub mod store;

use std::borrow::Cow;

use axum::http::{HeaderMap, StatusCode};
use secrecy::SecretString;
use serde::Serialize;
use serde_json::{json, value::RawValue, Value};
use uuid::Uuid;

use crate::{
    api::{
        auth::{self, Principal},
        ApiError, AppState,
    },
    db::{self, sources::AuthType, DbError},
    sources::{source_for, ParseContext, ParsedItem, SourceName},
};
use credentials::Refusal;
use store::{Actor, AlertToStore, Archive, Stored};

/// One item of the 202 response.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ItemResult {
    pub index: usize,
    pub alert_uuid: Option<Uuid>,
    pub status: &'static str,
    pub is_duplicate: bool,
    pub duplicate_count: Option<i32>,
    pub error: Option<Value>,
}

/// The 202 response body's `data`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IngestResult {
    pub alert_uuid: Option<Uuid>,
    pub status: &'static str,
    pub is_duplicate: bool,
    pub duplicate_count: Option<i32>,
    pub items: Vec<ItemResult>,
}

/// A native SIEM delivery to `POST /v1/ingest/{source}`.
pub struct NativeRequest<'a> {
    pub source: &'a str,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    pub request_id: &'a str,
}

fn unknown_source(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "UNKNOWN_SOURCE",
        "Unknown or inactive alert source",
    )
    .with_details(json!({ "source_name": name }))
}

fn invalid_signature(r: Refusal) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "INVALID_SIGNATURE",
        "Source credential missing or invalid",
    )
    .with_details(json!({ "reason": r.reason() }))
}

fn source_allowed(p: &Principal, source: SourceName) -> Result<(), ApiError> {
    match &p.allowed_sources {
        Some(list) if !list.iter().any(|s| s == source.as_str()) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "SOURCE_NOT_ALLOWED",
            "This API key may not ingest for this source",
        )
        .with_details(json!({ "source_name": source.as_str() }))),
        _ => Ok(()),
    }
}

/// Headers worth archiving: everything except credentials.
fn archived_headers(headers: &HeaderMap) -> Value {
    const SECRET: &[&str] = &[
        "authorization",
        "cookie",
        "x-calseta-source-secret",
        "x-splunk-webhook-secret",
        "proxy-authorization",
        "x-api-key",
    ];
    let mut m = serde_json::Map::new();
    for (k, v) in headers {
        if SECRET.contains(&k.as_str()) {
            continue;
        }
        if let Ok(v) = v.to_str() {
            m.insert(k.as_str().to_owned(), Value::String(v.to_owned()));
        }
    }
    Value::Object(m)
}

/// A source's settings, from the per-instance cache when read less than
/// [`AUTH_CACHE_TTL`](crate::api::cache::AUTH_CACHE_TTL) ago.
async fn source_settings(
    state: &AppState,
    client: &impl db::stmt::Cached,
    source: SourceName,
) -> Result<db::sources::SourceSettings, DbError> {
    if let Some(s) = state.auth_cache.sources.get(&source) {
        return Ok(s);
    }
    let s = db::sources::get(client, source).await?;
    state.auth_cache.sources.put(source, s.clone());
    Ok(s)
}

/// `POST /v1/ingest/{source}`. The body has already passed the size check.
pub async fn ingest_native(state: &AppState, req: NativeRequest<'_>) -> Result<IngestResult, ApiError> {
    let source: SourceName = req.source.parse().map_err(|_| unknown_source(req.source))?;
    // One connection for the whole request.
    let mut client = state.pool.get().await.map_err(DbError::from)?;
    // Source settings and the API key (a `cai_` bearer is always an API key, never falls
    // through to other checks) are read together: one round trip.
    let key = auth::bearer(req.headers).filter(|t| t.starts_with(crate::api::keys::KEY_PREFIX));
    let (settings, principal) = tokio::join!(source_settings(state, &*client, source), async {
        match key {
            Some(token) => auth::verify_key(state, &*client, req.headers, token).await.map(Some),
            None => Ok(None),
        }
    });
    let settings = settings?;
    if !settings.is_active {
        return Err(unknown_source(req.source));
    }
    let principal = principal?;
    if let Some(p) = &principal {
        p.require(&["alerts:write"])?;
        source_allowed(p, source)?;
    }
    let open = |sealed: &Option<Vec<u8>>| -> Result<Option<SecretString>, ApiError> {
        match sealed {
            None => Ok(None),
            Some(b) => state.sealer.open(b).map(Some).map_err(|e| {
                tracing::error!(error = %e, source = source.as_str(), "source secret cannot be decrypted");
                ApiError::unavailable("The secret store")
            }),
        }
    };
    match settings.auth_type {
        AuthType::ApiKey => {
            if principal.is_none() {
                return Err(auth::unauthorized());
            }
        }
        AuthType::SharedSecret if principal.is_some() => {}
        AuthType::SharedSecret => {
            let configured: Vec<SecretString> =
                [open(&settings.shared_secret)?, open(&settings.previous_shared_secret)?]
                    .into_iter()
                    .flatten()
                    .collect();
            let presented = credentials::presented_secret(req.headers, req.query, source, settings.url_token_allowed);
            credentials::check_shared_secret(presented.as_ref(), &configured).map_err(invalid_signature)?;
        }
        AuthType::Hmac => {
            let secret = open(&settings.hmac_secret)?;
            credentials::check_hmac(
                req.headers,
                req.body,
                source,
                secret.as_ref(),
                chrono::Utc::now().timestamp(),
                settings.hmac_body_only,
            )
            .map_err(invalid_signature)?;
        }
        AuthType::None => {
            tracing::warn!(source = source.as_str(), "unauthenticated ingest (auth_type none)");
        }
    }
    match &principal {
        Some(p) => {
            state
                .limiter
                .check(
                    &*client,
                    &format!("key:{}:ingest", p.key_prefix),
                    state.limits.ingest_per_key_per_minute,
                )
                .await?
        }
        None => {
            state
                .limiter
                .check(
                    &*client,
                    &format!("source:{}", source.as_str()),
                    state.limits.ingest_per_source_per_minute,
                )
                .await?
        }
    }

    let text = std::str::from_utf8(req.body).map_err(|_| ApiError::invalid_json())?;
    let archive = Archive {
        request_id: req.request_id,
        source,
        headers: archived_headers(req.headers),
        body: req.body,
        write: true,
    };
    process(
        state,
        &mut client,
        source,
        &settings.extra_indicator_fields,
        text,
        principal.as_ref(),
        &archive,
    )
    .await
}

/// `POST /v1/alerts`: `{source_name, payload}` with an API key holding `alerts:write`.
pub async fn ingest_wrapped(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
) -> Result<IngestResult, ApiError> {
    let mut client = state.pool.get().await.map_err(DbError::from)?;
    let principal = auth::require_key(state, &*client, headers).await?;
    principal.require(&["alerts:write"])?;
    state
        .limiter
        .check(
            &*client,
            &format!("key:{}:ingest", principal.key_prefix),
            state.limits.ingest_per_key_per_minute,
        )
        .await?;
    let text = std::str::from_utf8(body).map_err(|_| ApiError::invalid_json())?;
    #[derive(serde::Deserialize)]
    struct Wrapped<'a> {
        source_name: Option<Value>,
        #[serde(borrow)]
        payload: Option<&'a RawValue>,
    }
    let w: Wrapped = serde_json::from_str(text).map_err(|_| ApiError::invalid_json())?;
    // Any other top-level field is refused (422 naming it), never silently ignored.
    let keys: std::collections::BTreeMap<String, serde::de::IgnoredAny> =
        serde_json::from_str(text).map_err(|_| ApiError::invalid_json())?;
    let top: serde_json::Map<String, Value> = keys.into_keys().map(|k| (k, Value::Null)).collect();
    crate::api::fields::strict(&top, "AlertIngest")?;
    let missing = |field: &str| ApiError::validation(&format!("body.{field}"), "field required", "missing");
    let name = match &w.source_name {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(ApiError::validation(
                "body.source_name",
                "must be a string",
                "string_type",
            ))
        }
        None => return Err(missing("source_name")),
    };
    let payload = w.payload.ok_or_else(|| missing("payload"))?;
    let source: SourceName = name.parse().map_err(|_| unknown_source(&name))?;
    let settings = source_settings(state, &*client, source).await?;
    if !settings.is_active {
        return Err(unknown_source(&name));
    }
    source_allowed(&principal, source)?;
    let archive = Archive {
        request_id,
        source,
        headers: archived_headers(headers),
        body,
        write: true,
    };
    process(
        state,
        &mut client,
        source,
        &settings.extra_indicator_fields,
        payload.get(),
        Some(&principal),
        &archive,
    )
    .await
}

/// Stores each alert in its own transaction (the body is archived with the first one stored).
/// Returns what was stored, in order, and the positions in `to_store` the database refused.
async fn store_each(
    state: &AppState,
    client: &mut deadpool_postgres::Client,
    to_store: &[AlertToStore<'_>],
    archive: &Archive<'_>,
    actor: &Actor<'_>,
    release: store::Release,
) -> Result<(store::StoreResult, Vec<usize>), ApiError> {
    let mut all = store::StoreResult {
        stored: Vec::new(),
        outbox: Vec::new(),
    };
    let mut failed = Vec::new();
    for (j, one) in to_store.iter().enumerate() {
        let archive = Archive {
            request_id: archive.request_id,
            source: archive.source,
            headers: archive.headers.clone(),
            body: archive.body,
            write: all.stored.is_empty(),
        };
        let outcome = async {
            let tx = client.transaction().await?;
            let r = store::store(
                &tx,
                std::slice::from_ref(one),
                &archive,
                actor,
                &state.never_send,
                release,
            )
            .await?;
            tx.commit().await?;
            Ok::<_, DbError>(r)
        }
        .await;
        match outcome {
            Ok(r) => {
                all.stored.extend(r.stored);
                all.outbox.extend(r.outbox);
            }
            Err(e) if e.is_bad_data() => {
                tracing::warn!(error = %e, index = j, "alert refused by the database");
                failed.push(j);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((all, failed))
}

/// A batch item's `error`: the standard error object (api spec §3) of what a request holding
/// only that alert would have answered.
fn item_error(code: &str, message: &str, errors: Vec<Value>) -> Value {
    json!({ "code": code, "message": message, "details": { "errors": errors } })
}

/// Replaces NUL characters (which Postgres text and jsonb refuse) in every string and key.
fn without_nul(v: Value) -> Value {
    match v {
        Value::String(s) if s.contains('\0') => Value::String(s.replace('\0', "\u{FFFD}")),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nul).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (k.replace('\0', "\u{FFFD}"), without_nul(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The exact text of each batch element, when the body is an array or an `{"alerts": [...]}`.
fn element_texts(text: &str) -> Option<Vec<&str>> {
    if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(text) {
        return Some(items.iter().map(|r| r.get()).collect());
    }
    #[derive(serde::Deserialize)]
    struct Batch<'a> {
        #[serde(borrow)]
        alerts: Vec<&'a RawValue>,
    }
    serde_json::from_str::<Batch>(text)
        .ok()
        .map(|b| b.alerts.iter().map(|r| r.get()).collect())
}

/// The exact JSON text of `raw` as it appeared in the body (numbers keep every digit), or a
/// serialization of it when it cannot be located.
fn raw_text<'a>(
    raw: &Value,
    whole: &'a str,
    whole_value: &Value,
    elements: &Option<Vec<&'a str>>,
    index: usize,
    exact: bool,
) -> Cow<'a, str> {
    if exact {
        if raw == whole_value {
            return Cow::Borrowed(whole);
        }
        if let Some(t) = elements.as_ref().and_then(|e| e.get(index)) {
            if serde_json::from_str::<Value>(t).is_ok_and(|v| &v == raw) {
                return Cow::Borrowed(t);
            }
        }
    }
    Cow::Owned(raw.to_string())
}

async fn process(
    state: &AppState,
    client: &mut deadpool_postgres::Client,
    source: SourceName,
    extra_fields: &[(String, crate::domain::indicator::IndicatorType)],
    text: &str,
    principal: Option<&Principal>,
    archive: &Archive<'_>,
) -> Result<IngestResult, ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::invalid_json());
    }
    let mut value: Value = serde_json::from_str(text).map_err(|_| ApiError::invalid_json())?;
    let exact = !text.contains("\\u0000");
    if !exact {
        value = without_nul(value);
    }
    let mut ctx = ParseContext::new(chrono::Utc::now());
    ctx.extra_indicator_fields = extra_fields.to_vec();
    let mut items = source_for(source).parse(&value, &ctx).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_PAYLOAD",
            "The body is not a valid alert for this source",
        )
        .with_details(json!({ "errors": e.errors() }))
    })?;
    let max_alerts = state.limits.max_alerts_per_request;
    if items.len() > max_alerts {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_PAYLOAD",
            "Too many alerts in one request",
        )
        .with_details(json!({ "errors": [{
            "field": "$",
            "message": format!("{} alerts in one request; at most {max_alerts} are accepted", items.len()),
        }] })));
    }
    // Per-alert limits: an alert with a field too long to store is refused alone (the rest of a
    // batch is stored); the others keep at most the configured number of indicators.
    let batch = items.len() > 1;
    let mut refused: Vec<Option<Vec<Value>>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            ParsedItem::Alert(a) => {
                let mut errors = limits::field_errors(a);
                if batch {
                    for e in &mut errors {
                        e["index"] = json!(i);
                    }
                }
                (!errors.is_empty()).then_some(errors)
            }
            _ => None,
        })
        .collect();
    let accepted = items
        .iter()
        .zip(&refused)
        .any(|(item, r)| r.is_none() && !matches!(item, ParsedItem::Rejected { .. }));
    if !accepted {
        if let Some(first) = refused.iter().flatten().next() {
            let errors: Vec<Value> = refused.iter().flatten().flatten().cloned().collect();
            tracing::info!(source = source.as_str(), field = %first[0]["field"], "alert refused: field too long");
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_ERROR",
                "Alert fields exceed their limits",
            )
            .with_details(json!({ "errors": errors })));
        }
    }
    let cap = state.limits.max_indicators_per_alert;
    for (i, item) in items.iter_mut().enumerate() {
        if let (ParsedItem::Alert(a), None) = (item, &refused[i]) {
            if let Some(t) = limits::cap_indicators(a, cap, &state.never_send) {
                tracing::info!(source = source.as_str(), index = i, truncation = %t, "indicators capped");
            }
        }
    }

    let elements = if exact && items.len() > 1 {
        element_texts(text)
    } else {
        None
    };
    let raws: Vec<(usize, Cow<str>)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| match item {
            ParsedItem::Alert(a) if refused[i].is_none() => {
                Some((i, raw_text(&a.raw_payload, text, &value, &elements, i, exact)))
            }
            _ => None,
        })
        .collect();
    let to_store: Vec<AlertToStore> = raws
        .iter()
        .filter_map(|(i, raw)| match &items[*i] {
            ParsedItem::Alert(a) => Some(AlertToStore {
                alert: a,
                raw_json: raw.as_ref(),
            }),
            _ => None,
        })
        .collect();
    let actor = Actor {
        actor_type: "api",
        key_prefix: principal.map(|p| p.key_prefix.as_str()),
    };

    let release = store::Release {
        deadline_secs: state.limits.enrichment_deadline.as_secs_f64(),
        per_second: state.limits.enrich_release_per_second,
    };
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        let outcome = async {
            let tx = client.transaction().await?;
            let r = store::store(&tx, &to_store, archive, &actor, &state.never_send, release).await?;
            tx.commit().await?;
            Ok::<_, DbError>(r)
        }
        .await;
        match outcome {
            Ok(r) => break r,
            // Deadlocks and serialization failures between concurrent batches: run it again.
            Err(e) if e.is_transient() && attempt < 3 => {
                tracing::warn!(error = %e, attempt, "ingest transaction retried");
                continue;
            }
            // Something in one alert the checks above did not foresee: store the alerts one by
            // one so the rest of the batch is kept and only that alert is refused.
            Err(e) if e.is_bad_data() => {
                tracing::warn!(error = %e, alerts = to_store.len(), "batch refused by the database; storing alerts one by one");
                let (r, failed) = store_each(state, client, &to_store, archive, &actor, release).await?;
                for j in failed {
                    let mut e = json!({
                        "field": "$",
                        "message": "the alert could not be stored (a value exceeds a storage limit)",
                        "type": "storage_limit",
                    });
                    if batch {
                        e["index"] = json!(raws[j].0);
                    }
                    refused[raws[j].0] = Some(vec![e]);
                }
                if r.stored.is_empty() {
                    let errors: Vec<Value> = refused.iter().flatten().flatten().cloned().collect();
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "VALIDATION_ERROR",
                        "Alert fields exceed their limits",
                    )
                    .with_details(json!({ "errors": errors })));
                }
                break r;
            }
            Err(e) => return Err(e.into()),
        }
    };
    if !result.outbox.is_empty() {
        if let Err(e) = state.outbox.send_committed(&**client, &result.outbox).await {
            // Committed; the sweeper sends these rows later.
            tracing::warn!(error = %e, "outbox send after ingest failed; sweeper will retry");
        }
    }

    let mut stored = result.stored.into_iter();
    let mut out_items = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        out_items.push(match item {
            ParsedItem::Alert(_) if refused[index].is_some() => ItemResult {
                index,
                alert_uuid: None,
                status: "rejected",
                is_duplicate: false,
                duplicate_count: None,
                error: Some(item_error(
                    "VALIDATION_ERROR",
                    "Alert fields exceed their limits",
                    refused[index].clone().unwrap_or_default(),
                )),
            },
            ParsedItem::Alert(a) => match stored.next() {
                Some(Stored::Created { uuid, .. }) => {
                    tracing::info!(alert_uuid = %uuid, source = source.as_str(), indicators = a.indicators.len(), "alert ingested");
                    ItemResult { index, alert_uuid: Some(uuid), status: "queued", is_duplicate: false, duplicate_count: None, error: None }
                }
                Some(Stored::Duplicate { uuid, duplicate_count, .. }) => {
                    tracing::info!(alert_uuid = %uuid, duplicate_count, "duplicate delivery");
                    ItemResult { index, alert_uuid: Some(uuid), status: "deduplicated", is_duplicate: true, duplicate_count: Some(duplicate_count), error: None }
                }
                None => return Err(ApiError::internal()),
            },
            ParsedItem::Skipped { reason } => ItemResult {
                index,
                alert_uuid: None,
                status: "skipped",
                is_duplicate: false,
                duplicate_count: None,
                error: Some(json!({ "reason": reason })),
            },
            ParsedItem::Rejected { errors } => ItemResult {
                index,
                alert_uuid: None,
                status: "rejected",
                is_duplicate: false,
                duplicate_count: None,
                error: Some(item_error(
                    "INVALID_PAYLOAD",
                    "The alert is not valid for this source",
                    errors.iter().map(|e| json!(e)).collect(),
                )),
            },
        });
    }
    // CloudWatch EMF (inside Lambda): counts per source and rejection reason.
    let tally = |status: &str| out_items.iter().filter(|i| i.status == status).count() as u64;
    crate::metrics::count("AlertsIngested", Some(("source", source.as_str())), tally("queued"));
    crate::metrics::count(
        "AlertsDeduplicated",
        Some(("source", source.as_str())),
        tally("deduplicated"),
    );
    crate::metrics::count("AlertsRejected", Some(("reason", "invalid_alert")), tally("rejected"));
    crate::metrics::count("AlertsSkipped", Some(("source", source.as_str())), tally("skipped"));
    let first = out_items
        .iter()
        .find(|i| i.status == "queued" || i.status == "deduplicated")
        .cloned();
    Ok(IngestResult {
        alert_uuid: first.as_ref().and_then(|f| f.alert_uuid),
        status: first.as_ref().map(|f| f.status).unwrap_or("skipped"),
        is_duplicate: first.as_ref().is_some_and(|f| f.is_duplicate),
        duplicate_count: first.and_then(|f| f.duplicate_count),
        items: out_items,
    })
}
