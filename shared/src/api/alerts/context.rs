//! `GET /v1/alerts/{uuid}/context` (api spec §5.6): the context documents that apply to the
//! alert, in payload order.

use axum::Json;
use serde_json::{json, Value};

use super::manage::alert_id;
use crate::api::extract::{res, Authorized, Id};
use crate::api::ApiError;
use crate::service::catalog;

/// `GET /v1/alerts/{uuid}/context`: the documents that apply to the alert, in payload order,
/// with `content` and `targeting_rules`.
pub(super) async fn for_alert(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Alert>,
) -> Result<Json<Value>, ApiError> {
    let (id, _) = alert_id(&*client, uuid).await?;
    let docs = catalog::documents_for_alert(&*client, id).await?;
    Ok(Json(json!({"data": docs, "meta": {}})))
}
