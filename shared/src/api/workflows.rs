//! The workflow catalog (api spec §5.7): documentation agents read — this product never runs
//! code. `workflows:read` / `workflows:write`; system workflows cannot be deleted. `code` and
//! execution settings are ignored if sent and never returned.

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::extract::{missing, res, Authorized, Id};
use super::fields;
use super::list_query::ListQuery;
use super::page;
use super::{ApiError, AppState};
use crate::db::catalog::{self as repo, NewWorkflow, WorkflowDeletion, WorkflowPatch};
use crate::domain::indicator::IndicatorType;
use crate::service::catalog::{self, Workflow};

pub(crate) const STATES: [&str; 3] = ["draft", "active", "inactive"];
pub(crate) const RISK_LEVELS: [&str; 4] = ["low", "medium", "high", "critical"];
pub(crate) const APPROVAL_MODES: [&str; 3] = ["always", "agent_only", "never"];
pub(crate) const WORKFLOW_TYPES: [&str; 2] = ["indicator", "alert"];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/workflows", get(list).post(create))
        .route("/v1/workflows/{uuid}", get(detail).patch(patch).delete(delete))
}

fn indicator_types() -> Vec<&'static str> {
    IndicatorType::ALL.iter().map(|t| t.as_str()).collect()
}

async fn list(Authorized { client, .. }: Authorized, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let q = ListQuery::parse(q.as_deref())?;
    let page = q.page()?;
    let kinds = q.list("workflow_type", &WORKFLOW_TYPES)?;
    let states = q.list("state", &STATES)?;
    let risks = q.list("risk_level", &RISK_LEVELS)?;
    let active = q.boolean("is_active")?;
    let sort = q.sort(
        &[
            ("name", "name"),
            ("state", "state"),
            (
                "risk_level",
                "CASE risk_level WHEN 'low' THEN 1 WHEN 'medium' THEN 2 WHEN 'high' THEN 3 ELSE 4 END",
            ),
            ("updated_at", "updated_at"),
            ("created_at", "created_at"),
        ],
        "created_at",
        "id",
    )?;
    let filter = catalog::WorkflowFilter {
        workflow_type: kinds,
        state: states,
        risk_level: risks,
        is_active: active,
    };
    let listed = catalog::list_workflows(&*client, &filter, &sort, page.page_size, page.offset()).await?;
    Ok(Json(page.envelope(listed.items, listed.total)))
}

struct Input {
    name: Option<String>,
    description: Option<Option<String>>,
    workflow_type: Option<Option<String>>,
    indicator_types: Option<Vec<String>>,
    state: Option<String>,
    is_active: Option<bool>,
    tags: Option<Vec<String>>,
    risk_level: Option<String>,
    approval_mode: Option<String>,
    time_saved_minutes: Option<Option<i32>>,
    documentation: Option<Option<String>>,
    targeting_rules: Option<Option<Value>>,
}

impl Input {
    fn parse(obj: &fields::Body, creating: bool) -> Result<Self, ApiError> {
        Ok(Self {
            name: fields::required_text(obj, "name", 255, creating)?,
            description: fields::text(obj, "description", 10_000)?,
            workflow_type: fields::one_of(obj, "workflow_type", &WORKFLOW_TYPES)?,
            indicator_types: fields::strings_of(obj, "indicator_types", &indicator_types())?,
            state: fields::non_null(fields::one_of(obj, "state", &STATES)?, "state", "enum")?,
            is_active: fields::boolean(obj, "is_active")?,
            tags: fields::strings(obj, "tags")?,
            risk_level: fields::non_null(fields::one_of(obj, "risk_level", &RISK_LEVELS)?, "risk_level", "enum")?,
            approval_mode: fields::non_null(
                fields::one_of(obj, "approval_mode", &APPROVAL_MODES)?,
                "approval_mode",
                "enum",
            )?,
            time_saved_minutes: fields::int(obj, "time_saved_minutes", 0, 100_000)?,
            documentation: fields::text(obj, "documentation", 100_000)?,
            targeting_rules: fields::targeting(obj, "targeting_rules")?,
        })
    }
}

async fn create(Authorized { client, .. }: Authorized, body: Bytes) -> Result<Response, ApiError> {
    let i = Input::parse(&page::strict_body(&body, "WorkflowWrite")?, true)?;
    let wf_state = i.state.clone().unwrap_or_else(|| "draft".into());
    // `is_active` follows the state unless given.
    let is_active = i.is_active.unwrap_or(wf_state == "active");
    let wf = NewWorkflow {
        name: i.name,
        description: i.description.flatten(),
        workflow_type: i.workflow_type.flatten(),
        indicator_types: i.indicator_types.unwrap_or_default(),
        state: wf_state,
        is_active,
        tags: i.tags.unwrap_or_default(),
        risk_level: i.risk_level,
        approval_mode: i.approval_mode,
        time_saved_minutes: i.time_saved_minutes.flatten(),
        documentation: i.documentation.flatten(),
        targeting_rules: i.targeting_rules.flatten(),
    };
    let row = repo::insert_workflow(&*client, &wf)
        .await?
        .ok_or_else(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(page::single(json!(Workflow::from(row))))).into_response())
}

async fn detail(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Workflow>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(page::single(json!(catalog::get_workflow(&*client, uuid).await?))))
}

async fn patch(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Workflow>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let i = Input::parse(&page::strict_body(&body, "WorkflowWrite")?, false)?;
    let change = WorkflowPatch {
        name: i.name,
        description: fields::split(i.description),
        workflow_type: fields::split(i.workflow_type),
        indicator_types: i.indicator_types,
        state: i.state,
        is_active: i.is_active,
        tags: i.tags,
        risk_level: i.risk_level,
        approval_mode: i.approval_mode,
        time_saved_minutes: fields::split(i.time_saved_minutes),
        documentation: fields::split(i.documentation),
        targeting_rules: fields::split(i.targeting_rules),
    };
    let row = repo::update_workflow(&*client, uuid, &change)
        .await?
        .ok_or_else(missing::<res::Workflow>)?;
    Ok(Json(page::single(json!(Workflow::from(row)))))
}

async fn delete(Authorized { client, .. }: Authorized, Id(uuid, _): Id<res::Workflow>) -> Result<StatusCode, ApiError> {
    let deletion = repo::delete_workflow(&*client, uuid)
        .await?
        .ok_or_else(missing::<res::Workflow>)?;
    match deletion {
        WorkflowDeletion { deleted: 1, .. } => Ok(StatusCode::NO_CONTENT),
        WorkflowDeletion {
            is_system: Some(true), ..
        } => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "System workflows cannot be deleted",
        )),
        _ => Err(missing::<res::Workflow>()),
    }
}
