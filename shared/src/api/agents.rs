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
use serde::Serialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::extract::{missing, res, Authorized, Id};
use super::fields::{self, err};
use super::page;
use super::{ApiError, AppState};
use crate::db::agents::{self, AgentPatch, AgentRow, NewAgent};
use crate::db::deliveries::{self, DeliveryRow};
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

/// An agent as responses show it: no secret, the endpoint URL masked; `signing_secret` only
/// when one was just generated (create, rotation).
#[derive(Debug, Serialize)]
struct AgentBody {
    uuid: Uuid,
    name: String,
    description: Option<String>,
    endpoint_url: String,
    auth_header_name: Option<String>,
    trigger_on_sources: Vec<String>,
    trigger_on_severities: Vec<String>,
    trigger_filter: Option<Value>,
    timeout_seconds: i32,
    retry_count: i32,
    retry_schedule: Option<Vec<i32>>,
    max_payload_bytes: Option<i32>,
    is_active: bool,
    documentation: Option<String>,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    signing_secret: Option<String>,
}

impl From<AgentRow> for AgentBody {
    fn from(r: AgentRow) -> Self {
        Self {
            uuid: r.uuid,
            name: r.name,
            description: r.description,
            endpoint_url: masked_url(&r.endpoint_url),
            auth_header_name: r.auth_header_name,
            trigger_on_sources: r.trigger_on_sources,
            trigger_on_severities: r.trigger_on_severities,
            trigger_filter: r.trigger_filter,
            timeout_seconds: r.timeout_seconds,
            retry_count: r.retry_count,
            retry_schedule: r.retry_schedule,
            max_payload_bytes: r.max_payload_bytes,
            is_active: r.is_active,
            documentation: r.documentation,
            created_at: iso(r.created_at),
            updated_at: iso(r.updated_at),
            signing_secret: None,
        }
    }
}

/// Query parameters whose values are credentials (matched case-insensitively; names containing
/// `token`, `secret`, `key`, `sig`, `pass` or `auth` too).
const CREDENTIAL_PARAMS: &[&str] = &["code", "sig", "key"];
const CREDENTIAL_PARTS: &[&str] = &["token", "secret", "key", "sig", "pass", "auth"];

/// `endpoint_url` as shown in responses: userinfo and credential-like query values replaced by
/// `***`. The stored URL keeps them (deliveries need them); a reader with `agents:read` must
/// not learn a credential from it.
pub(crate) fn masked_url(raw: &str) -> String {
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
    let (rows, total) = agents::list(&*client, page.page_size, page.offset()).await?;
    let data = rows.into_iter().map(|r| json!(AgentBody::from(r))).collect();
    Ok(Json(page.envelope(data, total)))
}

async fn get_agent(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Agent>,
) -> Result<Json<Value>, ApiError> {
    let row = agents::get(&*client, uuid).await?.ok_or_else(missing::<res::Agent>)?;
    Ok(Json(page::single(json!(AgentBody::from(row)))))
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
    let description = input.description.flatten();
    let documentation = input.documentation.flatten();
    let schedule = input.retry_schedule.flatten();
    let row = agents::create(
        &*client,
        &NewAgent {
            name: input.name.as_deref(),
            description: description.as_deref(),
            endpoint_url: &url,
            auth_header_name: auth_name.as_deref(),
            auth_header_value_enc: auth_value.as_deref(),
            signing_secret_enc: &sealed_secret,
            trigger_on_sources: input.trigger_on_sources.as_deref().unwrap_or_default(),
            trigger_on_severities: input.trigger_on_severities.as_deref().unwrap_or_default(),
            trigger_filter: filter.as_ref(),
            timeout_seconds: input.timeout_seconds,
            retry_count: input.retry_count,
            max_payload_bytes: input.max_payload_bytes.flatten(),
            is_active: input.is_active,
            documentation: documentation.as_deref(),
            retry_schedule: schedule.as_deref(),
        },
    )
    .await?
    .ok_or_else(ApiError::internal)?;
    tracing::info!(agent_uuid = %row.uuid, "agent registered");
    let data = AgentBody {
        signing_secret: Some(secret.expose_secret().to_owned()),
        ..AgentBody::from(row)
    };
    Ok((StatusCode::CREATED, Json(page::single(json!(data)))).into_response())
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
        let current = agents::endpoint_url(&*client, uuid).await?;
        if current.is_some_and(|c| masked_url(&c) == url) {
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
        Some(Some((n, v))) => (true, Some(n.as_str()), Some(state.sealer.seal(v))),
    };
    let (set_description, description) = fields::split(input.description);
    let (set_trigger_filter, filter) = fields::split(input.trigger_filter);
    let (set_max_payload_bytes, max_payload_bytes) = fields::split(input.max_payload_bytes);
    let (set_documentation, documentation) = fields::split(input.documentation);
    let (set_retry_schedule, schedule) = fields::split(input.retry_schedule);
    let patch = AgentPatch {
        name: input.name.as_deref(),
        set_description,
        description: description.as_deref(),
        endpoint_url: input.endpoint_url.as_deref(),
        set_auth,
        auth_header_name: auth_name,
        auth_header_value_enc: auth_value.as_deref(),
        trigger_on_sources: input.trigger_on_sources.as_deref(),
        trigger_on_severities: input.trigger_on_severities.as_deref(),
        set_trigger_filter,
        trigger_filter: filter.as_ref(),
        timeout_seconds: input.timeout_seconds,
        retry_count: input.retry_count,
        set_max_payload_bytes,
        max_payload_bytes,
        is_active: input.is_active,
        set_documentation,
        documentation: documentation.as_deref(),
        signing_secret_enc: sealed_secret.as_deref(),
        set_retry_schedule,
        retry_schedule: schedule.as_deref(),
    };
    let row = agents::update(&*client, uuid, &patch)
        .await?
        .ok_or_else(missing::<res::Agent>)?;
    let data = AgentBody {
        signing_secret: secret.map(|s| s.expose_secret().to_owned()),
        ..AgentBody::from(row)
    };
    Ok(Json(page::single(json!(data))))
}

async fn delete_agent(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Agent>,
) -> Result<StatusCode, ApiError> {
    if agents::delete(&*client, uuid).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(missing::<res::Agent>())
    }
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

/// One delivery as listed (`last_error` as this caller may see it).
#[derive(Debug, Serialize)]
struct DeliveryBody {
    uuid: Uuid,
    alert_uuid: Uuid,
    status: String,
    attempts: i32,
    last_status_code: Option<i32>,
    last_error: Option<String>,
    next_attempt_at: Option<String>,
    delivered_at: Option<String>,
    created_at: String,
    payload_bytes: Option<i32>,
    trigger: String,
    replays: i32,
}

impl DeliveryBody {
    fn new(r: DeliveryRow, admin: bool) -> Self {
        Self {
            uuid: r.uuid,
            alert_uuid: r.alert_uuid,
            status: r.status,
            attempts: r.attempts,
            last_status_code: r.last_status_code,
            last_error: visible_error(r.last_error, admin),
            next_attempt_at: r.next_attempt_at.map(iso),
            delivered_at: r.delivered_at.map(iso),
            created_at: iso(r.created_at),
            payload_bytes: r.payload_bytes,
            trigger: r.trigger,
            replays: r.replays,
        }
    }
}

/// `?status=` as a list of delivery statuses (all when absent or blank).
fn statuses(q: &super::list_query::ListQuery) -> Result<Vec<String>, ApiError> {
    match q.one("status").map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(DELIVERY_STATUSES.iter().map(|s| s.to_string()).collect()),
        Some(s) => {
            let list: Vec<String> = s.split(',').map(|x| x.trim().to_string()).collect();
            if let Some(bad) = list.iter().find(|x| !DELIVERY_STATUSES.contains(&x.as_str())) {
                return Err(ApiError::validation(
                    "query.status",
                    &format!("{bad:?} is not one of pending, delivered, failed, dead"),
                    "enum",
                ));
            }
            Ok(list)
        }
    }
}

async fn list_deliveries(
    Authorized { client, principal }: Authorized,
    Id(uuid, _): Id<res::Agent>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<Json<Value>, ApiError> {
    let admin = principal.has_any(&["admin"]);
    let q = super::list_query::ListQuery::parse(raw.as_deref())?;
    let page = q.page()?;
    let statuses = statuses(&q)?;
    let agent_id = agents::id_of(&*client, uuid).await?.ok_or_else(missing::<res::Agent>)?;
    let (rows, total) =
        deliveries::list_for_agent(&*client, agent_id, &statuses, page.page_size, page.offset()).await?;
    let data = rows.into_iter().map(|r| json!(DeliveryBody::new(r, admin))).collect();
    Ok(Json(page.envelope(data, total)))
}

/// What a replay answers.
#[derive(Debug, Serialize)]
struct ReplayBody {
    uuid: Uuid,
    status: &'static str,
}

async fn replay_delivery(
    State(state): State<AppState>,
    Authorized { mut client, .. }: Authorized,
    Id(uuid, _): Id<res::Delivery>,
) -> Result<Response, ApiError> {
    let tx = client.transaction().await?;
    // Same row, same uuid (the webhook-id), a fresh attempt budget.
    let d = deliveries::replay(&tx, uuid, deliver::REDRIVE_AFTER_SECONDS)
        .await?
        .ok_or_else(missing::<res::Delivery>)?;
    let rows = deliver::enqueue_attempts(&*tx, &[(d.id, d.uuid, d.alert_uuid)]).await?;
    tx.commit().await?;
    if let Err(e) = state.outbox.send_committed(&*client, &rows).await {
        tracing::warn!(error = %e, "replay message left for the sweeper");
    }
    tracing::info!(delivery_uuid = %uuid, "delivery replay queued");
    let data = ReplayBody {
        uuid,
        status: "pending",
    };
    Ok((StatusCode::ACCEPTED, Json(page::single(json!(data)))).into_response())
}
