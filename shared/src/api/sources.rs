//! Source settings (api spec §5.9, sources spec §8): how each SIEM authenticates to ingest.
//! Reading needs `alerts:read`; writing is `admin`. Secrets go in the write-only `auth_config`
//! (`shared_secret`, `previous_shared_secret`, `hmac_secret`), are sealed with the app
//! encryption key and never returned — only `has_shared_secret` / `has_hmac_secret`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::alerts::manage::SOURCES;
use super::extract::{missing, res, Authorized, Id};
use super::fields::{self, err};
use super::page;
use super::{ApiError, AppState};
use crate::db::stmt;
use crate::domain::indicator::IndicatorType;
use crate::enrich::providers::iso;

pub const AUTH_TYPES: [&str; 4] = ["api_key", "shared_secret", "hmac", "none"];
/// Shortest secret accepted (sources spec §8.2: random, at least 32 bytes).
pub const MIN_SECRET_LEN: usize = 32;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sources", get(list).post(create))
        .route("/v1/sources/{uuid}", get(detail).patch(patch).delete(delete))
}

const COLUMNS: &str = "uuid, source_name, display_name, is_active, auth_type, url_token_allowed,
    shared_secret_enc IS NOT NULL, hmac_secret_enc IS NOT NULL, extra_indicator_fields, documentation, created_at,
    updated_at, previous_shared_secret_enc IS NOT NULL, hmac_body_only";

fn source_json(r: &tokio_postgres::Row) -> Value {
    json!({
        "uuid": r.get::<_, Uuid>(0),
        "source_name": r.get::<_, String>(1),
        "display_name": r.get::<_, Option<String>>(2),
        "is_active": r.get::<_, bool>(3),
        "auth_type": r.get::<_, String>(4),
        "url_token_allowed": r.get::<_, bool>(5),
        "hmac_body_only": r.get::<_, bool>(13),
        "has_shared_secret": r.get::<_, bool>(6),
        "has_previous_shared_secret": r.get::<_, bool>(12),
        "has_hmac_secret": r.get::<_, bool>(7),
        "extra_indicator_fields": r.get::<_, Value>(8),
        "documentation": r.get::<_, Option<String>>(9),
        "created_at": iso(r.get(10)),
        "updated_at": iso(r.get(11)),
    })
}

/// `extra_indicator_fields`: `{field path: indicator type}`.
fn extra_fields(obj: &fields::Body) -> Result<Option<Value>, ApiError> {
    match obj.get("extra_indicator_fields") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(json!({}))),
        Some(Value::Object(m)) => {
            let mut out = Map::new();
            for (path, t) in m {
                let kind = t
                    .as_str()
                    .and_then(|t| t.parse::<IndicatorType>().ok())
                    .ok_or_else(|| {
                        err(
                        &format!("extra_indicator_fields.{path}"),
                        "must be an indicator type (ip, domain, url, hash_md5, hash_sha1, hash_sha256, email, account)",
                        "enum",
                    )
                    })?;
                if path.is_empty() || path.len() > 255 {
                    return Err(err(
                        "extra_indicator_fields",
                        "field paths are 1 to 255 characters",
                        "value_error",
                    ));
                }
                out.insert(path.clone(), json!(kind.as_str()));
            }
            Ok(Some(Value::Object(out)))
        }
        Some(_) => Err(err(
            "extra_indicator_fields",
            "must be an object of path -> indicator type",
            "dict_type",
        )),
    }
}

/// One sealed secret to write: (given, value); `(true, None)` clears it.
type SecretWrite = (bool, Option<Vec<u8>>);

/// The write-only secrets: for each of the three, absent = unchanged, `null` = cleared.
fn auth_config(obj: &fields::Body, state: &AppState) -> Result<[SecretWrite; 3], ApiError> {
    let cfg = match obj.get("auth_config") {
        None | Some(Value::Null) => return Ok([(false, None), (false, None), (false, None)]),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(err("auth_config", "must be an object", "dict_type")),
    };
    let one = |k: &str| -> Result<SecretWrite, ApiError> {
        match cfg.get(k) {
            None => Ok((false, None)),
            Some(Value::Null) => Ok((true, None)),
            Some(Value::String(s)) if s.len() >= MIN_SECRET_LEN && s.len() <= 1024 => {
                Ok((true, Some(state.sealer.seal(s))))
            }
            Some(Value::String(_)) => Err(err(
                &format!("auth_config.{k}"),
                &format!("a random secret of {MIN_SECRET_LEN} to 1024 characters"),
                "string_too_short",
            )),
            Some(_) => Err(err(&format!("auth_config.{k}"), "must be a string", "string_type")),
        }
    };
    Ok([
        one("shared_secret")?,
        one("previous_shared_secret")?,
        one("hmac_secret")?,
    ])
}

async fn list(
    Authorized { client, .. }: Authorized,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Result<Json<Value>, ApiError> {
    let page = super::list_query::ListQuery::parse(q.as_deref())?.page()?;
    let rows = stmt::query(
        &*client,
        &format!("SELECT {COLUMNS} FROM sources ORDER BY source_name LIMIT $1 OFFSET $2"),
        &[(&page.page_size, Type::INT8), (&page.offset(), Type::INT8)],
    )
    .await?;
    let total = stmt::query(&*client, "SELECT count(*) FROM sources", &[])
        .await?
        .first()
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0);
    Ok(Json(page.envelope(rows.iter().map(source_json).collect(), total)))
}

async fn detail(Authorized { client, .. }: Authorized, Id(uuid, _): Id<res::Source>) -> Result<Json<Value>, ApiError> {
    let row = stmt::query_opt(
        &*client,
        &format!("SELECT {COLUMNS} FROM sources WHERE uuid = $1"),
        &[(&uuid, Type::UUID)],
    )
    .await?
    .ok_or_else(missing::<res::Source>)?;
    Ok(Json(page::single(source_json(&row))))
}

async fn create(
    State(state): State<AppState>,
    Authorized { client, principal }: Authorized,
    body: Bytes,
) -> Result<Response, ApiError> {
    let obj = page::strict_body(&body, "SourceWrite")?;
    let source = match obj.get("source_name") {
        Some(Value::String(s)) => SOURCES
            .iter()
            .find(|x| x.eq_ignore_ascii_case(s.trim()))
            .map(|x| x.to_string())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_SOURCE",
                    format!("Unknown source {s:?}; one of {}", SOURCES.join(", ")),
                )
            })?,
        Some(_) => return Err(err("source_name", "must be a string", "string_type")),
        None => return Err(err("source_name", "field required", "missing")),
    };
    let auth_type = fields::one_of(&obj, "auth_type", &AUTH_TYPES)?
        .flatten()
        .unwrap_or_else(|| "api_key".into());
    let url_token = fields::boolean(&obj, "url_token_allowed")?.unwrap_or(source == "splunk");
    let [s, p, h] = auth_config(&obj, &state)?;
    let sql = format!(
        "INSERT INTO sources (source_name, display_name, is_active, auth_type, url_token_allowed, shared_secret_enc,
             previous_shared_secret_enc, hmac_secret_enc, extra_indicator_fields, documentation, hmac_body_only)
         VALUES ($1, $2, COALESCE($3, true), $4, $5, $6, $7, $8, COALESCE($9, '{{}}'::jsonb), $10, COALESCE($11, false))
         ON CONFLICT (source_name) DO NOTHING RETURNING {COLUMNS}"
    );
    let row = stmt::query_opt(
        &*client,
        &sql,
        &[
            (&source, Type::TEXT),
            (&fields::text(&obj, "display_name", 255)?.flatten(), Type::TEXT),
            (&fields::boolean(&obj, "is_active")?, Type::BOOL),
            (&auth_type, Type::TEXT),
            (&url_token, Type::BOOL),
            (&s.1, Type::BYTEA),
            (&p.1, Type::BYTEA),
            (&h.1, Type::BYTEA),
            (&extra_fields(&obj)?, Type::JSONB),
            (&fields::text(&obj, "documentation", 100_000)?.flatten(), Type::TEXT),
            (&fields::boolean(&obj, "hmac_body_only")?, Type::BOOL),
        ],
    )
    .await?
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "CONFLICT",
            format!("Settings for {source} exist; PATCH them"),
        )
    })?;
    // Ingest on this instance sees the change at once (others within the cache's TTL).
    state.auth_cache.clear();
    tracing::info!(source = %source, auth_type = %auth_type, by = %principal.key_prefix, "source settings created");
    Ok((StatusCode::CREATED, Json(page::single(source_json(&row)))).into_response())
}

async fn patch(
    State(state): State<AppState>,
    Authorized { client, principal }: Authorized,
    Id(uuid, _): Id<res::Source>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let obj = page::strict_body(&body, "SourceWrite")?;
    if obj.contains_key("source_name") {
        return Err(err("source_name", "cannot be changed", "value_error"));
    }
    let auth_type = fields::non_null(fields::one_of(&obj, "auth_type", &AUTH_TYPES)?, "auth_type", "enum")?;
    let [s, p, h] = auth_config(&obj, &state)?;
    let (set_display, display) = fields::split(fields::text(&obj, "display_name", 255)?);
    let (set_doc, doc) = fields::split(fields::text(&obj, "documentation", 100_000)?);
    let sql = format!(
        "UPDATE sources SET
             display_name = CASE WHEN $2 THEN $3 ELSE display_name END,
             is_active = COALESCE($4, is_active), auth_type = COALESCE($5, auth_type),
             url_token_allowed = COALESCE($6, url_token_allowed),
             shared_secret_enc = CASE WHEN $7 THEN $8 ELSE shared_secret_enc END,
             previous_shared_secret_enc = CASE WHEN $9 THEN $10 ELSE previous_shared_secret_enc END,
             hmac_secret_enc = CASE WHEN $11 THEN $12 ELSE hmac_secret_enc END,
             extra_indicator_fields = COALESCE($13, extra_indicator_fields),
             documentation = CASE WHEN $14 THEN $15 ELSE documentation END,
             hmac_body_only = COALESCE($16, hmac_body_only),
             updated_at = now()
         WHERE uuid = $1 RETURNING {COLUMNS}"
    );
    let row = stmt::query_opt(
        &*client,
        &sql,
        &[
            (&uuid, Type::UUID),
            (&set_display, Type::BOOL),
            (&display, Type::TEXT),
            (&fields::boolean(&obj, "is_active")?, Type::BOOL),
            (&auth_type, Type::TEXT),
            (&fields::boolean(&obj, "url_token_allowed")?, Type::BOOL),
            (&s.0, Type::BOOL),
            (&s.1, Type::BYTEA),
            (&p.0, Type::BOOL),
            (&p.1, Type::BYTEA),
            (&h.0, Type::BOOL),
            (&h.1, Type::BYTEA),
            (&extra_fields(&obj)?, Type::JSONB),
            (&set_doc, Type::BOOL),
            (&doc, Type::TEXT),
            (&fields::boolean(&obj, "hmac_body_only")?, Type::BOOL),
        ],
    )
    .await?
    .ok_or_else(missing::<res::Source>)?;
    state.auth_cache.clear();
    tracing::info!(source = %row.get::<_, String>(1), by = %principal.key_prefix, "source settings updated");
    Ok(Json(page::single(source_json(&row))))
}

/// Deleting the row returns the source to the `api_key` default.
async fn delete(
    State(state): State<AppState>,
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Source>,
) -> Result<StatusCode, ApiError> {
    let r = page::delete_by_uuid(&*client, "sources", uuid, missing::<res::Source>).await;
    state.auth_cache.clear();
    r
}
