//! Agent registry and deliveries (api spec §5.8): `GET/POST /v1/agents`,
//! `GET/PATCH/DELETE /v1/agents/{uuid}`, `POST /v1/agents/{uuid}/test`,
//! `GET /v1/agents/{uuid}/deliveries` and `POST /v1/deliveries/{uuid}/replay`
//! (`POST /v1/alerts/{uuid}/trigger-agents` is in [`super::alerts::trigger`]).
//!
//! Signing secrets are returned once (create, rotation); auth header values are write-only.
//! Every endpoint URL passes the outbound URL check on create and PATCH (and again at delivery).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde_json::{json, Map, Value};
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::extract::{missing, res, Authorized, Id};
use super::fields::{self, err};
use super::page;
use super::{ApiError, AppState};
use crate::db::stmt;
use crate::dispatch::{deliver, signing};
use crate::domain::severity::Severity;
use crate::enrich::providers::iso;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/agents", get(list_agents).post(create_agent))
        .route(
            "/v1/agents/{uuid}",
            get(get_agent).patch(patch_agent).delete(delete_agent),
        )
        .route("/v1/agents/{uuid}/test", post(test_agent))
        .route("/v1/agents/{uuid}/deliveries", get(list_deliveries))
        .route("/v1/deliveries/{uuid}/replay", post(replay_delivery))
}

const COLUMNS: &str = "uuid, name, description, endpoint_url, auth_header_name, trigger_on_sources,
    trigger_on_severities, trigger_filter, timeout_seconds, retry_count, max_payload_bytes, is_active,
    documentation, created_at, updated_at, retry_schedule";

/// Headers the delivery itself sets; an agent's auth header may not replace them.
const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
];

fn agent_json(r: &tokio_postgres::Row) -> Value {
    json!({
        "uuid": r.get::<_, Uuid>(0),
        "name": r.get::<_, String>(1),
        "description": r.get::<_, Option<String>>(2),
        "endpoint_url": masked_url(r.get::<_, &str>(3)),
        "auth_header_name": r.get::<_, Option<String>>(4),
        "trigger_on_sources": r.get::<_, Vec<String>>(5),
        "trigger_on_severities": r.get::<_, Vec<String>>(6),
        "trigger_filter": r.get::<_, Option<Value>>(7),
        "timeout_seconds": r.get::<_, i32>(8),
        "retry_count": r.get::<_, i32>(9),
        "retry_schedule": r.get::<_, Option<Vec<i32>>>(15),
        "max_payload_bytes": r.get::<_, Option<i32>>(10),
        "is_active": r.get::<_, bool>(11),
        "documentation": r.get::<_, Option<String>>(12),
        "created_at": iso(r.get(13)),
        "updated_at": iso(r.get(14)),
    })
}

/// Query parameters whose values are credentials (matched case-insensitively; names containing
/// `token`, `secret`, `key`, `sig`, `pass` or `auth` too).
const CREDENTIAL_PARAMS: &[&str] = &["code", "sig", "key"];
const CREDENTIAL_PARTS: &[&str] = &["token", "secret", "key", "sig", "pass", "auth"];

/// `endpoint_url` as shown in responses: userinfo and credential-like query values replaced by
/// `***`. The stored URL keeps them (deliveries need them); a reader with `agents:read` must
/// not learn a credential from it.
pub fn masked_url(raw: &str) -> String {
    let Ok(mut u) = url::Url::parse(raw) else {
        return raw.to_owned();
    };
    if !u.username().is_empty() {
        let _ = u.set_username("***");
    }
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let name = k.to_ascii_lowercase();
                let secret =
                    CREDENTIAL_PARAMS.contains(&name.as_str()) || CREDENTIAL_PARTS.iter().any(|p| name.contains(p));
                (
                    k.into_owned(),
                    if secret && !v.is_empty() {
                        "***".to_owned()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// A delivery error as a caller may see it. The text may quote the target's response body (a
/// read-back and port-probing oracle), so only admins get a short excerpt; everyone else gets
/// the status or the generic reason (`HTTP 500`, `connection failed`, `timed out`).
fn visible_error(error: Option<String>, admin: bool) -> Option<String> {
    let e = error?;
    Some(if admin {
        let mut short: String = e.chars().take(ADMIN_ERROR_CHARS).collect();
        if e.chars().count() > ADMIN_ERROR_CHARS {
            short.push('…');
        }
        short
    } else {
        e.split(':').next().unwrap_or_default().trim().to_owned()
    })
}
const ADMIN_ERROR_CHARS: usize = 120;

/// `retry_schedule`: 1–20 waits of 1 s to 7 days (`null` = the deployment's schedule).
fn retry_schedule(obj: &Map<String, Value>) -> Result<Option<Option<Vec<i32>>>, ApiError> {
    let max = deliver::MAX_RETRY_DELAY_SECONDS;
    match obj.get("retry_schedule") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Array(xs)) if (1..=20).contains(&xs.len()) => xs
            .iter()
            .map(|x| match x.as_i64() {
                Some(n) if (1..=i64::from(max)).contains(&n) => Ok(n as i32),
                _ => Err(err(
                    "retry_schedule",
                    &format!("every step is a whole number of seconds from 1 to {max}"),
                    "value_error",
                )),
            })
            .collect::<Result<Vec<i32>, _>>()
            .map(|v| Some(Some(v))),
        Some(Value::Array(_)) => Err(err("retry_schedule", "1 to 20 steps", "list_type")),
        Some(_) => Err(err("retry_schedule", "must be a list of seconds", "list_type")),
    }
}

/// The validated, writable fields of a create or PATCH body (absent = `None`; for nullable
/// fields, `Some(None)` = set to null).
#[derive(Default)]
struct AgentInput {
    name: Option<String>,
    description: Option<Option<String>>,
    endpoint_url: Option<String>,
    auth: Option<Option<(String, String)>>,
    trigger_on_sources: Option<Vec<String>>,
    trigger_on_severities: Option<Vec<String>>,
    trigger_filter: Option<Option<Value>>,
    timeout_seconds: Option<i32>,
    retry_count: Option<i32>,
    /// Seconds before retry 1, 2, …; `Some(None)` = back to the deployment's schedule.
    retry_schedule: Option<Option<Vec<i32>>>,
    max_payload_bytes: Option<Option<i32>>,
    is_active: Option<bool>,
    documentation: Option<Option<String>>,
    rotate_signing_secret: bool,
}

impl AgentInput {
    fn parse(obj: &Map<String, Value>, creating: bool) -> Result<Self, ApiError> {
        let mut a = AgentInput {
            name: fields::required_text(obj, "name", 255, creating)?,
            description: fields::text(obj, "description", 10_000)?,
            endpoint_url: fields::required_text(obj, "endpoint_url", 2048, creating)?,
            trigger_on_sources: fields::strings(obj, "trigger_on_sources")?,
            trigger_on_severities: fields::strings(obj, "trigger_on_severities")?,
            timeout_seconds: fields::non_null(
                fields::int(obj, "timeout_seconds", 1, 300)?,
                "timeout_seconds",
                "int_type",
            )?,
            retry_count: fields::non_null(fields::int(obj, "retry_count", 0, 10)?, "retry_count", "int_type")?,
            retry_schedule: retry_schedule(obj)?,
            max_payload_bytes: fields::int(obj, "max_payload_bytes", 256, i64::from(i32::MAX))?,
            documentation: fields::text(obj, "documentation", 100_000)?,
            is_active: fields::boolean(obj, "is_active")?,
            rotate_signing_secret: fields::boolean(obj, "rotate_signing_secret")?.unwrap_or(false),
            trigger_filter: fields::targeting(obj, "trigger_filter")?,
            ..Default::default()
        };
        // Exact labels: triggers match case-sensitively (api spec §5.8).
        if let Some(sev) = &a.trigger_on_severities {
            if let Some(bad) = sev
                .iter()
                .find(|s| !Severity::ALL.iter().any(|x| x.as_str() == s.as_str()))
            {
                return Err(err(
                    "trigger_on_severities",
                    &format!("{bad:?} is not a severity (Pending, Informational, Low, Medium, High, Critical)"),
                    "enum",
                ));
            }
        }
        let name = fields::text(obj, "auth_header_name", 255)?;
        let value = fields::text(obj, "auth_header_value", 8192)?;
        a.auth = match (name, value) {
            (None, None) => None,
            (Some(None), None) | (Some(None), Some(None)) | (None, Some(None)) => Some(None),
            (Some(Some(n)), Some(Some(v))) => {
                let valid_name = axum::http::HeaderName::from_bytes(n.as_bytes()).is_ok();
                if !valid_name || RESERVED_HEADERS.contains(&n.to_ascii_lowercase().as_str()) {
                    return Err(err("auth_header_name", "not a usable HTTP header name", "value_error"));
                }
                if axum::http::HeaderValue::from_str(&v).is_err() || v.is_empty() {
                    return Err(err("auth_header_value", "not a valid HTTP header value", "value_error"));
                }
                Some(Some((n, v)))
            }
            _ => {
                return Err(err(
                    "auth_header_value",
                    "auth_header_name and auth_header_value are set together",
                    "value_error",
                ))
            }
        };
        Ok(a)
    }
}

async fn check_url(state: &AppState, url: &str) -> Result<(), ApiError> {
    let dispatcher = state
        .dispatch
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("dispatch"))?;
    dispatcher.check_endpoint(url).await.map(|_| ()).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_ENDPOINT_URL",
            format!(
                "endpoint_url is not allowed: {e}. An agent on this machine or a private network \
                 (e.g. http://host.docker.internal:9000/...) needs its host allow-listed: set \
                 CALSETA_OUTBOUND_ALLOW_HOSTS=host.docker.internal (OutboundAllowHosts in the stack); \
                 see docs/receiving-webhooks.md"
            ),
        )
    })
}

async fn list_agents(
    Authorized { client, .. }: Authorized,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Result<Json<Value>, ApiError> {
    let page = super::list_query::ListQuery::parse(q.as_deref())?.page()?;
    let sql =
        format!("SELECT {COLUMNS}, count(*) OVER () FROM agents ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2");
    let rows = stmt::query(
        &*client,
        &sql,
        &[(&page.page_size, Type::INT8), (&page.offset(), Type::INT8)],
    )
    .await?;
    let total = page::total(&*client, &rows, 16, "SELECT count(*) FROM agents", &[]).await?;
    Ok(Json(page.envelope(rows.iter().map(agent_json).collect(), total)))
}

async fn get_agent(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Agent>,
) -> Result<Json<Value>, ApiError> {
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE uuid = $1");
    let row = stmt::query_opt(&*client, &sql, &[(&uuid, Type::UUID)])
        .await?
        .ok_or_else(missing::<res::Agent>)?;
    Ok(Json(page::single(agent_json(&row))))
}

async fn create_agent(
    State(state): State<AppState>,
    Authorized { client, .. }: Authorized,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input = AgentInput::parse(&page::strict_body(&body, "AgentWrite")?, true)?;
    let url = input.endpoint_url.clone().unwrap_or_default();
    check_url(&state, &url).await?;
    let secret = signing::generate_secret();
    let sealed_secret = state.sealer.seal(secret.expose_secret());
    let (auth_name, auth_value) = match input.auth.flatten() {
        Some((n, v)) => (Some(n), Some(state.sealer.seal(&v))),
        None => (None, None),
    };
    let filter = input.trigger_filter.flatten();
    let sql = format!(
        "INSERT INTO agents (name, description, endpoint_url, auth_header_name, auth_header_value_enc, signing_secret_enc,
             trigger_on_sources, trigger_on_severities, trigger_filter, timeout_seconds, retry_count, max_payload_bytes,
             is_active, documentation, retry_schedule)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE($10, 30), COALESCE($11, 7), $12, COALESCE($13, true), $14, $15)
         RETURNING {COLUMNS}"
    );
    let row = stmt::query_opt(
        &*client,
        &sql,
        &[
            (&input.name, Type::TEXT),
            (&input.description.flatten(), Type::TEXT),
            (&url, Type::TEXT),
            (&auth_name, Type::TEXT),
            (&auth_value, Type::BYTEA),
            (&sealed_secret, Type::BYTEA),
            (&input.trigger_on_sources.unwrap_or_default(), Type::TEXT_ARRAY),
            (&input.trigger_on_severities.unwrap_or_default(), Type::TEXT_ARRAY),
            (&filter, Type::JSONB),
            (&input.timeout_seconds, Type::INT4),
            (&input.retry_count, Type::INT4),
            (&input.max_payload_bytes.flatten(), Type::INT4),
            (&input.is_active, Type::BOOL),
            (&input.documentation.flatten(), Type::TEXT),
            (&input.retry_schedule.clone().flatten(), Type::INT4_ARRAY),
        ],
    )
    .await?
    .ok_or_else(ApiError::internal)?;
    let mut data = agent_json(&row);
    data["signing_secret"] = Value::String(secret.expose_secret().to_owned());
    tracing::info!(agent_uuid = %row.get::<_, Uuid>(0), "agent registered");
    Ok((StatusCode::CREATED, Json(page::single(data))).into_response())
}

async fn patch_agent(
    State(state): State<AppState>,
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Agent>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let mut input = AgentInput::parse(&page::strict_body(&body, "AgentWrite")?, false)?;
    // The masked URL a client read back (e.g. a whole-object PATCH) means "unchanged": storing
    // it would replace the credentials with `***`.
    if let Some(url) = input.endpoint_url.as_deref().filter(|u| u.contains("***")) {
        let current = stmt::query_opt(
            &*client,
            "SELECT endpoint_url FROM agents WHERE uuid = $1",
            &[(&uuid, Type::UUID)],
        )
        .await?;
        if current.is_some_and(|r| masked_url(r.get::<_, &str>(0)) == url) {
            input.endpoint_url = None;
        }
    }
    if let Some(url) = &input.endpoint_url {
        check_url(&state, url).await?;
    }
    let secret = input.rotate_signing_secret.then(signing::generate_secret);
    let sealed_secret = secret.as_ref().map(|s| state.sealer.seal(s.expose_secret()));
    let (set_auth, auth_name, auth_value) = match &input.auth {
        None => (false, None, None),
        Some(None) => (true, None, None),
        Some(Some((n, v))) => (true, Some(n.clone()), Some(state.sealer.seal(v))),
    };
    let (set_desc, desc) = fields::split(input.description);
    let (set_filter, filter) = fields::split(input.trigger_filter);
    let (set_max, max) = fields::split(input.max_payload_bytes);
    let (set_doc, doc) = fields::split(input.documentation);
    let (set_schedule, schedule) = fields::split(input.retry_schedule);
    // The old secret stays valid for 24 h after a rotation (signatures carry both).
    let sql = format!(
        "UPDATE agents SET
             name = COALESCE($2, name),
             description = CASE WHEN $3 THEN $4 ELSE description END,
             endpoint_url = COALESCE($5, endpoint_url),
             auth_header_name = CASE WHEN $6 THEN $7 ELSE auth_header_name END,
             auth_header_value_enc = CASE WHEN $6 THEN $8 ELSE auth_header_value_enc END,
             trigger_on_sources = COALESCE($9, trigger_on_sources),
             trigger_on_severities = COALESCE($10, trigger_on_severities),
             trigger_filter = CASE WHEN $11 THEN $12 ELSE trigger_filter END,
             timeout_seconds = COALESCE($13, timeout_seconds),
             retry_count = COALESCE($14, retry_count),
             max_payload_bytes = CASE WHEN $15 THEN $16 ELSE max_payload_bytes END,
             is_active = COALESCE($17, is_active),
             documentation = CASE WHEN $18 THEN $19 ELSE documentation END,
             previous_signing_secret_enc = CASE WHEN $20::bytea IS NULL THEN previous_signing_secret_enc ELSE signing_secret_enc END,
             previous_secret_expires_at = CASE WHEN $20::bytea IS NULL THEN previous_secret_expires_at ELSE now() + interval '24 hours' END,
             signing_secret_enc = COALESCE($20, signing_secret_enc),
             retry_schedule = CASE WHEN $21 THEN $22 ELSE retry_schedule END,
             updated_at = now()
         WHERE uuid = $1 RETURNING {COLUMNS}"
    );
    let row = stmt::query_opt(
        &*client,
        &sql,
        &[
            (&uuid, Type::UUID),
            (&input.name, Type::TEXT),
            (&set_desc, Type::BOOL),
            (&desc, Type::TEXT),
            (&input.endpoint_url, Type::TEXT),
            (&set_auth, Type::BOOL),
            (&auth_name, Type::TEXT),
            (&auth_value, Type::BYTEA),
            (&input.trigger_on_sources, Type::TEXT_ARRAY),
            (&input.trigger_on_severities, Type::TEXT_ARRAY),
            (&set_filter, Type::BOOL),
            (&filter, Type::JSONB),
            (&input.timeout_seconds, Type::INT4),
            (&input.retry_count, Type::INT4),
            (&set_max, Type::BOOL),
            (&max, Type::INT4),
            (&input.is_active, Type::BOOL),
            (&set_doc, Type::BOOL),
            (&doc, Type::TEXT),
            (&sealed_secret, Type::BYTEA),
            (&set_schedule, Type::BOOL),
            (&schedule, Type::INT4_ARRAY),
        ],
    )
    .await?
    .ok_or_else(missing::<res::Agent>)?;
    let mut data = agent_json(&row);
    if let Some(s) = secret {
        data["signing_secret"] = Value::String(s.expose_secret().to_owned());
    }
    Ok(Json(page::single(data)))
}

async fn delete_agent(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Agent>,
) -> Result<StatusCode, ApiError> {
    page::delete_by_uuid(&*client, "agents", uuid, missing::<res::Agent>).await
}

async fn test_agent(
    State(state): State<AppState>,
    Authorized { client, principal }: Authorized,
    Id(uuid, _): Id<res::Agent>,
) -> Result<Json<Value>, ApiError> {
    drop(client);
    let dispatcher = state
        .dispatch
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("dispatch"))?;
    let mut result = dispatcher
        .test_delivery(uuid)
        .await?
        .ok_or_else(missing::<res::Agent>)?;
    result.error = visible_error(result.error, principal.has_any(&["admin"]));
    Ok(Json(page::single(json!(result))))
}

const DELIVERY_STATUSES: [&str; 4] = ["pending", "delivered", "failed", "dead"];

async fn list_deliveries(
    Authorized { client, principal }: Authorized,
    Id(uuid, _): Id<res::Agent>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<Json<Value>, ApiError> {
    let admin = principal.has_any(&["admin"]);
    let q = super::list_query::ListQuery::parse(raw.as_deref())?;
    let page = q.page()?;
    let statuses: Vec<String> = match q.one("status").map(str::trim).filter(|s| !s.is_empty()) {
        None => DELIVERY_STATUSES.iter().map(|s| s.to_string()).collect(),
        Some(s) => {
            let list: Vec<String> = s.split(',').map(|x| x.trim().to_string()).collect();
            if let Some(bad) = list.iter().find(|x| !DELIVERY_STATUSES.contains(&x.as_str())) {
                return Err(ApiError::validation(
                    "query.status",
                    &format!("{bad:?} is not one of pending, delivered, failed, dead"),
                    "enum",
                ));
            }
            list
        }
    };
    let agent = stmt::query_opt(
        &*client,
        "SELECT id FROM agents WHERE uuid = $1",
        &[(&uuid, Type::UUID)],
    )
    .await?
    .ok_or_else(missing::<res::Agent>)?;
    let agent_id: i64 = agent.get(0);
    let rows = stmt::query(
        &*client,
        "SELECT d.uuid, a.uuid, d.status, d.attempts, d.last_status_code, d.last_error, d.next_attempt_at,
                d.delivered_at, d.created_at, d.payload_bytes, d.trigger, d.replays, count(*) OVER ()
         FROM deliveries d JOIN alerts a ON a.id = d.alert_id
         WHERE d.agent_id = $1 AND d.status = ANY($2)
         ORDER BY d.created_at DESC, d.id DESC LIMIT $3 OFFSET $4",
        &[
            (&agent_id, Type::INT8),
            (&statuses, Type::TEXT_ARRAY),
            (&page.page_size, Type::INT8),
            (&page.offset(), Type::INT8),
        ],
    )
    .await?;
    let total = page::total(
        &*client,
        &rows,
        12,
        "SELECT count(*) FROM deliveries WHERE agent_id = $1 AND status = ANY($2)",
        &[(&agent_id, Type::INT8), (&statuses, Type::TEXT_ARRAY)],
    )
    .await?;
    let ts = |v: Option<chrono::DateTime<chrono::Utc>>| v.map(iso);
    let data = rows
        .iter()
        .map(|r| {
            json!({
                "uuid": r.get::<_, Uuid>(0),
                "alert_uuid": r.get::<_, Uuid>(1),
                "status": r.get::<_, String>(2),
                "attempts": r.get::<_, i32>(3),
                "last_status_code": r.get::<_, Option<i32>>(4),
                "last_error": visible_error(r.get(5), admin),
                "next_attempt_at": ts(r.get(6)),
                "delivered_at": ts(r.get(7)),
                "created_at": iso(r.get(8)),
                "payload_bytes": r.get::<_, Option<i32>>(9),
                "trigger": r.get::<_, String>(10),
                "replays": r.get::<_, i32>(11),
            })
        })
        .collect();
    Ok(Json(page.envelope(data, total)))
}

async fn replay_delivery(
    State(state): State<AppState>,
    Authorized { mut client, .. }: Authorized,
    Id(uuid, _): Id<res::Delivery>,
) -> Result<Response, ApiError> {
    let tx = client.transaction().await?;
    // Same row, same uuid (the webhook-id), a fresh attempt budget.
    let row = stmt::query_opt(
        &tx,
        "UPDATE deliveries d SET status = 'pending', attempts = 0, replays = replays + 1, next_attempt_at = now(),
                redrive_at = now() + make_interval(secs => $2), updated_at = now()
         FROM alerts a WHERE d.uuid = $1 AND a.id = d.alert_id
         RETURNING d.id, d.uuid, a.uuid",
        &[(&uuid, Type::UUID), (&deliver::REDRIVE_AFTER_SECONDS, Type::INT4)],
    )
    .await?
    .ok_or_else(missing::<res::Delivery>)?;
    let rows = deliver::enqueue_attempts(&*tx, &[(row.get(0), row.get(1), row.get(2))]).await?;
    tx.commit().await?;
    if let Err(e) = state.outbox.send_committed(&*client, &rows).await {
        tracing::warn!(error = %e, "replay message left for the sweeper");
    }
    tracing::info!(delivery_uuid = %uuid, "delivery replay queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(page::single(json!({"uuid": uuid, "status": "pending"}))),
    )
        .into_response())
}
