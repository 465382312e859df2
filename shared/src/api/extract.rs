//! Extractors that keep handlers thin: [`Authorized`] checks the API key against the scopes
//! of the matched route in the one operations table ([`super::openapi::OPERATIONS`]), so the
//! scopes are written once and the scope-matrix test checks that very table.

use super::{
    auth::{self, Principal},
    openapi::{Operation, OPERATIONS},
    ApiError, AppState,
};
use axum::{
    extract::{FromRequestParts, MatchedPath},
    http::{request::Parts, Method},
};

/// The operation served at this method and route template (`HEAD` is served by `GET`).
pub fn operation(method: &Method, route: &str) -> Option<&'static Operation> {
    let method = if method == Method::HEAD { "get" } else { method.as_str() };
    OPERATIONS
        .iter()
        .find(|op| op.path == route && op.method.eq_ignore_ascii_case(method))
}

/// A caller holding one of the route's scopes (`admin` passes all), with the database
/// connection the check used, for the handler to go on with.
pub struct Authorized {
    pub client: deadpool_postgres::Object,
    pub principal: Principal,
}

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let route = parts.extensions.get::<MatchedPath>().map(|m| m.as_str().to_owned());
        // A route missing from the table is a programming error: refuse, never serve it open.
        let op = route
            .as_deref()
            .and_then(|r| operation(&parts.method, r))
            .ok_or_else(|| {
                tracing::error!(route = ?route, method = %parts.method, "route has no entry in OPERATIONS");
                ApiError::internal()
            })?;
        let client = state.pool.get().await?;
        let principal = auth::require_key(state, &*client, &parts.headers).await?;
        principal.require(op.scopes)?;
        Ok(Self { client, principal })
    }
}
