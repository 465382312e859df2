//! Extractors that keep handlers thin: [`Authorized`] checks the API key against the scopes
//! of the matched route in the one operations table ([`super::openapi::OPERATIONS`]), so the
//! scopes are written once and the scope-matrix test checks that very table; [`Id`] is the
//! route's `{uuid}`, a malformed one answered as the resource's 404.

use super::{
    auth::{self, Principal},
    openapi::{Operation, OPERATIONS},
    ApiError, AppState,
};
use crate::service::ServiceError;
use axum::{
    extract::{FromRequestParts, MatchedPath, Path},
    http::{request::Parts, Method},
};
use std::marker::PhantomData;
use uuid::Uuid;

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

/// What a 404 calls a resource routes name by uuid.
pub trait Resource {
    const NAME: &'static str;
}

macro_rules! resources {
    ($($ty:ident = $name:literal),* $(,)?) => {$(
        pub enum $ty {}
        impl Resource for $ty {
            const NAME: &'static str = $name;
        }
    )*};
}

/// The resources of the `{uuid}` routes (marker types for [`Id`]).
pub mod res {
    use super::Resource;
    resources!(
        Agent = "Agent",
        Alert = "Alert",
        ApiKey = "API key",
        ContextDocument = "Context document",
        Delivery = "Delivery",
        DetectionRule = "Detection rule",
        Indicator = "Indicator",
        Source = "Source",
        Workflow = "Workflow",
    );
}

/// `R`'s 404 (`"<name> not found"`), for a uuid the database does not have.
pub fn missing<R: Resource>() -> ApiError {
    ServiceError::NotFound(R::NAME).into()
}

/// The route's `{uuid}` naming an `R`. A malformed uuid is `R`'s 404, the same answer as an
/// unknown one (nothing to learn from the difference). Put it after [`Authorized`]: a caller
/// without a key gets 401 before any 404.
pub struct Id<R>(pub Uuid, pub PhantomData<R>);

impl<R: Resource, S: Send + Sync> FromRequestParts<S> for Id<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(e.status(), "BAD_REQUEST", e.body_text()))?;
        Ok(Self(crate::service::parse_uuid(&raw, R::NAME)?, PhantomData))
    }
}
