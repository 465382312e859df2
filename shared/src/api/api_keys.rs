//! API keys (api spec §5.10, admin only): list, create (the key is shown once), get, PATCH
//! (`is_active: false` suspends a key at once, `true` restores it), DELETE (revokes for good).
//! Keys are `cai_` + 256 random bits, stored as a keyed SHA-256; only the 8-character prefix is
//! ever shown again. The last usable admin key cannot be demoted, suspended or revoked (409).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::alerts::manage::SOURCES;
use super::extract::{missing, res, Authorized, Id};
use super::fields::{self, err};
use super::page;
use super::{ApiError, AppState};
use crate::db::api_keys::{self, ApiKeyRow};
use crate::db::DbError;
use crate::enrich::providers::iso;
use crate::keys;

/// Scopes that grant something.
pub const SCOPES: [&str; 8] = [
    "alerts:read",
    "alerts:write",
    "enrichments:read",
    "workflows:read",
    "workflows:write",
    "agents:read",
    "agents:write",
    "admin",
];
/// Accepted for compatibility with the reference; they grant nothing here.
pub const INERT_SCOPES: [&str; 2] = ["workflows:execute", "approvals:write"];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/api-keys", get(list).post(create))
        .route("/v1/api-keys/{uuid}", get(detail).patch(patch).delete(delete))
}

/// A key as the API shows it (`key_hash` never leaves the database layer).
#[derive(Debug, Serialize)]
struct ApiKeyBody {
    uuid: Uuid,
    name: String,
    key_prefix: String,
    scopes: Vec<String>,
    key_type: String,
    allowed_sources: Option<Vec<String>>,
    expires_at: Option<String>,
    is_active: bool,
    last_used_at: Option<String>,
    is_system: bool,
    created_at: String,
}

impl From<ApiKeyRow> for ApiKeyBody {
    fn from(r: ApiKeyRow) -> Self {
        Self {
            uuid: r.uuid,
            name: r.name,
            key_prefix: r.key_prefix,
            scopes: r.scopes,
            key_type: r.key_type,
            allowed_sources: r.allowed_sources,
            expires_at: r.expires_at.map(iso),
            is_active: r.is_active,
            last_used_at: r.last_used_at.map(iso),
            is_system: r.is_system,
            created_at: iso(r.created_at),
        }
    }
}

/// The answer to a creation: the key itself, this once.
#[derive(Debug, Serialize)]
struct CreatedKey {
    #[serde(flatten)]
    row: ApiKeyBody,
    key: String,
    show_once: bool,
}

fn scopes(obj: &fields::Body, creating: bool) -> Result<Option<Vec<String>>, ApiError> {
    let all: Vec<&str> = SCOPES.iter().chain(INERT_SCOPES.iter()).copied().collect();
    let list = fields::strings_of(obj, "scopes", &all)?;
    match &list {
        None if creating => Err(err("scopes", "field required", "missing")),
        Some(l) if l.is_empty() => Err(err("scopes", "at least one scope", "too_short")),
        _ => Ok(list),
    }
}

async fn list(
    Authorized { client, .. }: Authorized,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Result<Json<Value>, ApiError> {
    let page = super::list_query::ListQuery::parse(q.as_deref())?.page()?;
    let (rows, total) = api_keys::list(&*client, page.page_size, page.offset()).await?;
    let data = rows.into_iter().map(|r| json!(ApiKeyBody::from(r))).collect();
    Ok(Json(page.envelope(data, total)))
}

async fn create(
    State(state): State<AppState>,
    Authorized { client, principal }: Authorized,
    body: Bytes,
) -> Result<Response, ApiError> {
    let obj = page::strict_body(&body, "ApiKeyWrite")?;
    let name = fields::required_text(&obj, "name", 255, true)?.unwrap_or_default();
    let scopes = scopes(&obj, true)?.unwrap_or_default();
    let key_type = fields::one_of(&obj, "key_type", &["human", "agent"])?
        .flatten()
        .unwrap_or_else(|| "human".into());
    let allowed = fields::strings_of(&obj, "allowed_sources", &SOURCES)?;
    let expires_at = fields::timestamp(&obj, "expires_at")?.flatten();
    if expires_at.is_some_and(|e| e <= chrono::Utc::now()) {
        return Err(err("expires_at", "must be in the future", "value_error"));
    }
    let is_active = fields::boolean(&obj, "is_active")?.unwrap_or(true);
    let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let allowed_refs: Option<Vec<&str>> = allowed.as_ref().map(|a| a.iter().map(String::as_str).collect());
    // The prefix is unique; a collision (1 in 16M per pair) just draws again.
    let mut attempt = 0;
    let (key, uuid) = loop {
        let key = keys::generate();
        let r = api_keys::insert(
            &**client,
            &state.hasher,
            &key,
            &api_keys::NewApiKey {
                name: &name,
                scopes: &scope_refs,
                key_type: &key_type,
                allowed_sources: allowed_refs.as_deref(),
                expires_at,
                is_system: false,
                created_by: Some(&principal.key_prefix),
            },
        )
        .await;
        match r {
            Ok(uuid) => break (key, uuid),
            Err(DbError::Query(e))
                if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) && attempt < 3 =>
            {
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    };
    // Created suspended on request (prepared for later hand-over).
    let row = api_keys::set_active(&*client, uuid, is_active)
        .await?
        .ok_or_else(ApiError::internal)?;
    tracing::info!(key_prefix = %row.key_prefix, by = %principal.key_prefix, "API key created");
    let data = CreatedKey {
        row: row.into(),
        key: key.expose_secret().to_owned(),
        show_once: true,
    };
    Ok((StatusCode::CREATED, Json(page::single(json!(data)))).into_response())
}

async fn detail(Authorized { client, .. }: Authorized, Id(uuid, _): Id<res::ApiKey>) -> Result<Json<Value>, ApiError> {
    let row = api_keys::get(&*client, uuid)
        .await?
        .ok_or_else(missing::<res::ApiKey>)?;
    Ok(Json(page::single(json!(ApiKeyBody::from(row)))))
}

async fn patch(
    State(state): State<AppState>,
    Authorized { mut client, principal }: Authorized,
    Id(uuid, _): Id<res::ApiKey>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let obj = page::strict_body(&body, "ApiKeyWrite")?;
    let name = fields::required_text(&obj, "name", 255, false)?;
    let scopes = scopes(&obj, false)?;
    let (set_allowed, allowed) = if obj.contains_key("allowed_sources") && obj["allowed_sources"].is_null() {
        (true, None)
    } else {
        let a = fields::strings_of(&obj, "allowed_sources", &SOURCES)?;
        (a.is_some(), a)
    };
    let (set_expiry, expires_at) = fields::split(fields::timestamp(&obj, "expires_at")?);
    let is_active = fields::boolean(&obj, "is_active")?;
    let tx = client.transaction().await?;
    // Would this change leave the key unable to administer? Then it must not be the last admin.
    let disarms = scopes.as_ref().is_some_and(|s| !s.iter().any(|x| x == "admin"))
        || is_active == Some(false)
        || expires_at.is_some_and(|e| e <= chrono::Utc::now());
    if disarms {
        keep_an_admin(&tx, uuid).await?;
    }
    let update = api_keys::KeyUpdate {
        name,
        scopes,
        set_allowed_sources: set_allowed,
        allowed_sources: allowed,
        set_expires_at: set_expiry,
        expires_at,
        is_active,
    };
    let row = api_keys::update(&tx, uuid, &update)
        .await?
        .ok_or_else(missing::<res::ApiKey>)?;
    tx.commit().await?;
    // Revocation, suspension and re-scoping take effect here at once (other instances within
    // the auth cache's TTL).
    state.auth_cache.clear();
    if let Some(active) = is_active {
        tracing::info!(key_prefix = %row.key_prefix, by = %principal.key_prefix, active, "API key switched");
    }
    Ok(Json(page::single(json!(ApiKeyBody::from(row)))))
}

/// 409 when the key `uuid` is the last usable admin key (active, not revoked, not expired):
/// demoting, suspending or revoking it would lock every administrator out. The usable admin
/// keys are locked first, so two concurrent requests cannot each remove "the other" admin.
async fn keep_an_admin(tx: &deadpool_postgres::Transaction<'_>, uuid: Uuid) -> Result<(), ApiError> {
    let admins = api_keys::lock_usable_admins(tx).await?;
    if admins.contains(&uuid) && admins.len() == 1 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "LAST_ADMIN_KEY",
            "This is the last active admin key: create another admin key before demoting, deactivating or revoking it",
        ));
    }
    Ok(())
}

async fn delete(
    State(state): State<AppState>,
    Authorized { mut client, principal }: Authorized,
    Id(uuid, _): Id<res::ApiKey>,
) -> Result<StatusCode, ApiError> {
    let tx = client.transaction().await?;
    keep_an_admin(&tx, uuid).await?;
    let key_prefix = api_keys::revoke(&tx, uuid).await?.ok_or_else(missing::<res::ApiKey>)?;
    tx.commit().await?;
    // Revocation, suspension and re-scoping take effect here at once (other instances within
    // the auth cache's TTL).
    state.auth_cache.clear();
    tracing::info!(key_prefix = %key_prefix, by = %principal.key_prefix, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}
