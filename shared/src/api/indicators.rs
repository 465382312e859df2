//! Indicators (api spec §5.3).
//!
//! - `GET /v1/indicators/{uuid}` (`enrichments:read`): one global indicator with every provider
//!   result, raw responses included.
//! - `PATCH /v1/indicators/{uuid}` (`alerts:write`): `{malice}` sets an analyst verdict that later
//!   enrichment keeps; `null` recomputes from stored results. Linked alerts' malice follows.
//!
//! An alert's own indicators (list, add, re-enrich) are served from [`super::alerts`].

use axum::body::Bytes;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::extract::{res, Authorized, Id};
use super::fields::{self, err};
use super::page;
use super::{ApiError, AppState};
use crate::domain::malice::Malice;
use crate::service::{Actor, ActorKind};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/indicators/{uuid}", get(detail).patch(patch))
}

async fn detail(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Indicator>,
) -> Result<Json<Value>, ApiError> {
    let v = crate::service::indicators::get(&*client, uuid).await?;
    Ok(Json(page::single(serde_json::json!(v))))
}

async fn patch(
    Authorized { mut client, principal }: Authorized,
    Id(uuid, _): Id<res::Indicator>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let obj = page::strict_body(&body, "IndicatorPatch")?;
    let malices: Vec<&str> = Malice::ALL.iter().map(|m| m.as_str()).collect();
    let malice = match fields::one_of(&obj, "malice", &malices)? {
        None => {
            return Err(err(
                "malice",
                "field required (a verdict, or null to recompute)",
                "missing",
            ))
        }
        Some(m) => m,
    };
    let actor = Actor {
        kind: ActorKind::Api,
        key_prefix: principal.key_prefix,
    };
    let v = crate::service::indicators::set_malice(&mut client, &actor, uuid, malice.as_deref()).await?;
    Ok(Json(page::single(serde_json::json!(v))))
}
