//! API-key authentication (api spec §2): `Bearer` form → `cai_` shape → an active key with this
//! prefix → constant-time comparison of the keyed hash → expiry → `last_used_at` (at most once a
//! minute). Scopes are checked per route; `admin` satisfies any requirement.

use axum::http::{header, HeaderMap, StatusCode};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::{keys, ApiError, AppState};

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: i64,
    pub key_prefix: String,
    pub scopes: Vec<String>,
    pub allowed_sources: Option<Vec<String>>,
}

impl Principal {
    /// True when the key holds any of `required` (or `admin`).
    pub fn has_any(&self, required: &[&str]) -> bool {
        self.scopes
            .iter()
            .any(|s| s == "admin" || required.contains(&s.as_str()))
    }

    pub fn require(&self, required: &[&str]) -> Result<(), ApiError> {
        if self.has_any(required) {
            Ok(())
        } else {
            Err(
                ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", "The API key lacks a required scope")
                    .with_details(json!({ "required_scopes": required })),
            )
        }
    }
}

pub fn unauthorized() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "A valid API key is required")
}

/// The `Bearer` token of the Authorization header, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Verifies a presented API key, on the caller's connection.
pub async fn verify_key(
    state: &AppState,
    client: &impl crate::db::stmt::Cached,
    presented: &str,
) -> Result<Principal, ApiError> {
    if !keys::is_well_formed(presented) {
        return Err(unauthorized());
    }
    let prefix = keys::lookup_prefix(presented);
    let row = crate::db::stmt::query_opt(
        client,
        "SELECT id, key_hash, scopes, allowed_sources, expires_at <= now(),
                    last_used_at IS NULL OR last_used_at < now() - interval '1 minute'
             FROM api_keys WHERE key_prefix = $1 AND is_active AND revoked_at IS NULL",
        &[(&prefix, tokio_postgres::types::Type::TEXT)],
    )
    .await
    .map_err(crate::db::DbError::from)?;
    let Some(row) = row else { return Err(unauthorized()) };
    let stored: Vec<u8> = row.get(1);
    let computed = state.hasher.hash(presented);
    if !bool::from(stored.ct_eq(&computed)) {
        return Err(unauthorized());
    }
    if row.get::<_, Option<bool>>(4) == Some(true) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "KEY_EXPIRED",
            "The API key has expired",
        ));
    }
    let key_id: i64 = row.get(0);
    if row.get::<_, bool>(5) {
        // Best effort, off the request path: a lost update only delays the timestamp.
        let pool = state.pool.clone();
        tokio::spawn(async move {
            if let Ok(c) = pool.get().await {
                let _ = c
                    .execute("UPDATE api_keys SET last_used_at = now() WHERE id = $1", &[&key_id])
                    .await;
            }
        });
    }
    Ok(Principal {
        key_id,
        key_prefix: prefix.to_owned(),
        scopes: row.get(2),
        allowed_sources: row.get(3),
    })
}

/// Authenticates a request that must carry an API key.
pub async fn require_key(
    state: &AppState,
    client: &impl crate::db::stmt::Cached,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    match bearer(headers) {
        Some(token) => verify_key(state, client, token).await,
        None => Err(unauthorized()),
    }
}
