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
use serde::Serialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::alerts::manage::SOURCES;
use super::extract::{missing, res, Authorized, Id};
use super::fields::{self, err};
use super::page;
use super::{ApiError, AppState};
use crate::db::sources::{self, NewSource, SecretWrite, SourceRow, SourceUpdate};
use crate::domain::indicator::IndicatorType;
use crate::enrich::providers::iso;

pub(crate) const AUTH_TYPES: [&str; 4] = ["api_key", "shared_secret", "hmac", "none"];
/// Shortest secret accepted (sources spec §8.2: random, at least 32 bytes).
pub(crate) const MIN_SECRET_LEN: usize = 32;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sources", get(list).post(create))
        .route("/v1/sources/{uuid}", get(detail).patch(patch).delete(delete))
}

/// A source's settings as the API shows them: secrets only as whether they are set.
#[derive(Debug, Serialize)]
struct SourceBody {
    uuid: Uuid,
    source_name: String,
    display_name: Option<String>,
    is_active: bool,
    auth_type: String,
    url_token_allowed: bool,
    hmac_body_only: bool,
    has_shared_secret: bool,
    has_previous_shared_secret: bool,
    has_hmac_secret: bool,
    extra_indicator_fields: Value,
    documentation: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<SourceRow> for SourceBody {
    fn from(r: SourceRow) -> Self {
        Self {
            uuid: r.uuid,
            source_name: r.source_name,
            display_name: r.display_name,
            is_active: r.is_active,
            auth_type: r.auth_type,
            url_token_allowed: r.url_token_allowed,
            hmac_body_only: r.hmac_body_only,
            has_shared_secret: r.has_shared_secret,
            has_previous_shared_secret: r.has_previous_shared_secret,
            has_hmac_secret: r.has_hmac_secret,
            extra_indicator_fields: r.extra_indicator_fields,
            documentation: r.documentation,
            created_at: iso(r.created_at),
            updated_at: iso(r.updated_at),
        }
    }
}

fn source_body(r: SourceRow) -> Value {
    json!(SourceBody::from(r))
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
    let (rows, total) = sources::list(&*client, page.page_size, page.offset()).await?;
    Ok(Json(page.envelope(rows.into_iter().map(source_body).collect(), total)))
}

async fn detail(Authorized { client, .. }: Authorized, Id(uuid, _): Id<res::Source>) -> Result<Json<Value>, ApiError> {
    let row = sources::by_uuid(&*client, uuid)
        .await?
        .ok_or_else(missing::<res::Source>)?;
    Ok(Json(page::single(source_body(row))))
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
    // Read in the order the fields were always validated (the first error is the one reported).
    let new = NewSource {
        display_name: fields::text(&obj, "display_name", 255)?.flatten(),
        is_active: fields::boolean(&obj, "is_active")?,
        url_token_allowed: url_token,
        shared_secret_enc: s.1,
        previous_shared_secret_enc: p.1,
        hmac_secret_enc: h.1,
        extra_indicator_fields: extra_fields(&obj)?,
        documentation: fields::text(&obj, "documentation", 100_000)?.flatten(),
        hmac_body_only: fields::boolean(&obj, "hmac_body_only")?,
        source_name: source,
        auth_type,
    };
    let row = sources::create(&*client, &new).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "CONFLICT",
            format!("Settings for {} exist; PATCH them", new.source_name),
        )
    })?;
    // Ingest on this instance sees the change at once (others within the cache's TTL).
    state.auth_cache.clear();
    tracing::info!(source = %new.source_name, auth_type = %new.auth_type, by = %principal.key_prefix, "source settings created");
    Ok((StatusCode::CREATED, Json(page::single(source_body(row)))).into_response())
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
    // Read in the order the fields were always validated (the first error is the one reported).
    let update = SourceUpdate {
        set_display_name: set_display,
        display_name: display,
        set_documentation: set_doc,
        documentation: doc,
        is_active: fields::boolean(&obj, "is_active")?,
        auth_type,
        url_token_allowed: fields::boolean(&obj, "url_token_allowed")?,
        shared_secret_enc: s,
        previous_shared_secret_enc: p,
        hmac_secret_enc: h,
        extra_indicator_fields: extra_fields(&obj)?,
        hmac_body_only: fields::boolean(&obj, "hmac_body_only")?,
    };
    let row = sources::update(&*client, uuid, &update)
        .await?
        .ok_or_else(missing::<res::Source>)?;
    state.auth_cache.clear();
    tracing::info!(source = %row.source_name, by = %principal.key_prefix, "source settings updated");
    Ok(Json(page::single(source_body(row))))
}

/// Deleting the row returns the source to the `api_key` default.
async fn delete(
    State(state): State<AppState>,
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Source>,
) -> Result<StatusCode, ApiError> {
    let r = sources::delete(&*client, uuid).await;
    state.auth_cache.clear();
    match r? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(missing::<res::Source>()),
    }
}
