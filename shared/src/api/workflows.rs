//! The workflow catalog (api spec §5.7): documentation agents read — this product never runs
//! code. `workflows:read` / `workflows:write`; system workflows cannot be deleted. `code` and
//! execution settings are ignored if sent and never returned.

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;
use tokio_postgres::types::Type;

use super::extract::{missing, res, Authorized, Id};
use super::fields;
use super::list_query::ListQuery;
use super::page;
use super::{ApiError, AppState};
use crate::db::stmt;
use crate::domain::indicator::IndicatorType;
use crate::service::catalog::{self, wf_json, WORKFLOW_COLUMNS as COLUMNS};

pub const STATES: [&str; 3] = ["draft", "active", "inactive"];
pub const RISK_LEVELS: [&str; 4] = ["low", "medium", "high", "critical"];
pub const APPROVAL_MODES: [&str; 3] = ["always", "agent_only", "never"];
pub const WORKFLOW_TYPES: [&str; 2] = ["indicator", "alert"];

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
    let sql = format!(
        "INSERT INTO workflows (name, description, workflow_type, indicator_types, state, is_active, tags, risk_level,
             approval_mode, time_saved_minutes, documentation, targeting_rules)
         VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8, 'low'), COALESCE($9, 'always'), $10, $11, $12)
         RETURNING {COLUMNS}"
    );
    let row = stmt::query_opt(
        &*client,
        &sql,
        &[
            (&i.name, Type::TEXT),
            (&i.description.flatten(), Type::TEXT),
            (&i.workflow_type.flatten(), Type::TEXT),
            (&i.indicator_types.unwrap_or_default(), Type::TEXT_ARRAY),
            (&wf_state, Type::TEXT),
            (&is_active, Type::BOOL),
            (&i.tags.unwrap_or_default(), Type::TEXT_ARRAY),
            (&i.risk_level, Type::TEXT),
            (&i.approval_mode, Type::TEXT),
            (&i.time_saved_minutes.flatten(), Type::INT4),
            (&i.documentation.flatten(), Type::TEXT),
            (&i.targeting_rules.flatten(), Type::JSONB),
        ],
    )
    .await?
    .ok_or_else(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(page::single(wf_json(&row)))).into_response())
}

async fn detail(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Workflow>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(page::single(catalog::get_workflow(&*client, uuid).await?)))
}

async fn patch(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::Workflow>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let i = Input::parse(&page::strict_body(&body, "WorkflowWrite")?, false)?;
    let (set_desc, desc) = fields::split(i.description);
    let (set_type, wtype) = fields::split(i.workflow_type);
    let (set_saved, saved) = fields::split(i.time_saved_minutes);
    let (set_doc, doc) = fields::split(i.documentation);
    let (set_rules, rules) = fields::split(i.targeting_rules);
    let sql = format!(
        "UPDATE workflows SET name = COALESCE($2, name),
             description = CASE WHEN $3 THEN $4 ELSE description END,
             workflow_type = CASE WHEN $5 THEN $6 ELSE workflow_type END,
             indicator_types = COALESCE($7, indicator_types),
             state = COALESCE($8, state),
             is_active = COALESCE($9, CASE WHEN $8::text IS NULL THEN is_active ELSE $8 = 'active' END),
             tags = COALESCE($10, tags), risk_level = COALESCE($11, risk_level),
             approval_mode = COALESCE($12, approval_mode),
             time_saved_minutes = CASE WHEN $13 THEN $14 ELSE time_saved_minutes END,
             documentation = CASE WHEN $15 THEN $16 ELSE documentation END,
             targeting_rules = CASE WHEN $17 THEN $18 ELSE targeting_rules END,
             updated_at = now()
         WHERE uuid = $1 RETURNING {COLUMNS}"
    );
    let row = stmt::query_opt(
        &*client,
        &sql,
        &[
            (&uuid, Type::UUID),
            (&i.name, Type::TEXT),
            (&set_desc, Type::BOOL),
            (&desc, Type::TEXT),
            (&set_type, Type::BOOL),
            (&wtype, Type::TEXT),
            (&i.indicator_types, Type::TEXT_ARRAY),
            (&i.state, Type::TEXT),
            (&i.is_active, Type::BOOL),
            (&i.tags, Type::TEXT_ARRAY),
            (&i.risk_level, Type::TEXT),
            (&i.approval_mode, Type::TEXT),
            (&set_saved, Type::BOOL),
            (&saved, Type::INT4),
            (&set_doc, Type::BOOL),
            (&doc, Type::TEXT),
            (&set_rules, Type::BOOL),
            (&rules, Type::JSONB),
        ],
    )
    .await?
    .ok_or_else(missing::<res::Workflow>)?;
    Ok(Json(page::single(wf_json(&row))))
}

async fn delete(Authorized { client, .. }: Authorized, Id(uuid, _): Id<res::Workflow>) -> Result<StatusCode, ApiError> {
    let row = stmt::query_opt(
        &*client,
        "WITH d AS (DELETE FROM workflows WHERE uuid = $1 AND NOT is_system RETURNING id)
         SELECT (SELECT count(*) FROM d), (SELECT is_system FROM workflows WHERE uuid = $1)",
        &[(&uuid, Type::UUID)],
    )
    .await?
    .ok_or_else(missing::<res::Workflow>)?;
    match (row.get::<_, i64>(0), row.get::<_, Option<bool>>(1)) {
        (1, _) => Ok(StatusCode::NO_CONTENT),
        (_, Some(true)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "System workflows cannot be deleted",
        )),
        _ => Err(missing::<res::Workflow>()),
    }
}
