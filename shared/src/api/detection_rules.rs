//! Detection rules (api spec §5.5): reading needs `alerts:read`; writing is `admin`. Ingest
//! auto-creates stub rules; here their documentation, MITRE mapping, false-positive tags and
//! blind spots are filled in — the payload's `detection_rule` block.

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;
use tokio_postgres::types::Type;

use super::alerts::manage::SOURCES;
use super::extract::{missing, res, Authorized, Id};
use super::fields::{self, err};
use super::list_query::ListQuery;
use super::page;
use super::{ApiError, AppState};
use crate::db::stmt;
use crate::domain::mitre::{classify_id, with_parent_techniques, MitreKind};
use crate::domain::severity::Severity;
use crate::service::catalog::{self, rule_json, RULE_COLUMNS as COLUMNS};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/detection-rules", get(list).post(create))
        .route("/v1/detection-rules/{uuid}", get(detail).patch(patch).delete(delete))
}

const LISTS: [&str; 6] = [
    "mitre_tactics",
    "mitre_techniques",
    "mitre_subtechniques",
    "data_sources",
    "false_positive_tags",
    "blind_spots",
];

fn severities() -> Vec<&'static str> {
    Severity::ALL.iter().map(|s| s.as_str()).collect()
}

async fn list(Authorized { client, .. }: Authorized, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let q = ListQuery::parse(q.as_deref())?;
    let page = q.page()?;
    let sources = q.list("source_name", &SOURCES)?;
    let sev = q.list("severity", &severities())?;
    let active = q.boolean("is_active")?;
    let techniques = technique_filter(&q)?;
    let sort = q.sort(
        &[
            ("name", "name"),
            ("source_name", "source_name"),
            ("severity", super::alerts::manage::SEVERITY_RANK_SQL),
            ("created_at", "created_at"),
        ],
        "created_at",
        "a.id",
    )?;
    let filter = catalog::RuleFilter {
        source_name: sources,
        severity: sev,
        is_active: active,
        mitre_technique: techniques,
        ..Default::default()
    };
    let listed = catalog::search_rules(&*client, &filter, &sort, page.page_size, page.offset()).await?;
    Ok(Json(page.envelope(listed.items, listed.total)))
}

/// `mitre_technique`: comma-separated (or repeated) technique or sub-technique ids.
fn technique_filter(q: &ListQuery) -> Result<Option<Vec<String>>, ApiError> {
    let Some(values) = q.all("mitre_technique") else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for v in values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        match classify_id(v) {
            Some((MitreKind::Technique | MitreKind::Subtechnique, id)) => out.push(id),
            _ => {
                return Err(ApiError::validation(
                    "query.mitre_technique",
                    &format!("{v:?} is not a technique id such as T1566 or T1566.002"),
                    "value_error",
                ))
            }
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

struct Input {
    name: Option<String>,
    severity: Option<Option<String>>,
    is_active: Option<bool>,
    lists: Vec<Option<Vec<String>>>,
    texts: Vec<Option<Option<String>>>,
}

const TEXTS: [(&str, usize); 4] = [
    ("run_frequency", 255),
    ("documentation", 100_000),
    ("goal", 10_000),
    ("priority", 255),
];

impl Input {
    fn parse(obj: &fields::Body, creating: bool) -> Result<Self, ApiError> {
        Ok(Self {
            name: fields::required_text(obj, "name", 500, creating)?,
            severity: fields::one_of(obj, "severity", &severities())?,
            is_active: fields::boolean(obj, "is_active")?,
            lists: LISTS
                .iter()
                .map(|f| fields::strings(obj, f))
                .collect::<Result<_, _>>()?,
            texts: TEXTS
                .iter()
                .map(|(f, max)| fields::text(obj, f, *max))
                .collect::<Result<_, _>>()?,
        })
    }
}

async fn create(Authorized { client, principal }: Authorized, body: Bytes) -> Result<Response, ApiError> {
    let obj = page::strict_body(&body, "RuleWrite")?;
    let i = Input::parse(&obj, true)?;
    let source = fields::one_of(&obj, "source_name", &SOURCES)?.flatten();
    let source_rule_id = fields::text(&obj, "source_rule_id", 500)?.flatten();
    let created_by = fields::text(&obj, "created_by", 255)?
        .flatten()
        .unwrap_or_else(|| principal.key_prefix.clone());
    let list = |k: usize| i.lists[k].clone().unwrap_or_default();
    let text = |k: usize| i.texts[k].clone().flatten();
    // A sub-technique brings its parent technique, as at ingest.
    let techniques = with_parent_techniques(&list(1), &list(2));
    let sql = format!(
        "INSERT INTO detection_rules (name, source_name, source_rule_id, severity, is_active, mitre_tactics, mitre_techniques,
             mitre_subtechniques, data_sources, false_positive_tags, blind_spots, run_frequency, documentation, goal,
             priority, created_by)
         VALUES ($1, $2, $3, $4, COALESCE($5, true), $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         ON CONFLICT (source_name, source_rule_id) DO NOTHING RETURNING {COLUMNS}"
    );
    let row = stmt::query_opt(
        &*client,
        &sql,
        &[
            (&i.name, Type::TEXT),
            (&source, Type::TEXT),
            (&source_rule_id, Type::TEXT),
            (&i.severity.clone().flatten(), Type::TEXT),
            (&i.is_active, Type::BOOL),
            (&list(0), Type::TEXT_ARRAY),
            (&techniques, Type::TEXT_ARRAY),
            (&list(2), Type::TEXT_ARRAY),
            (&list(3), Type::TEXT_ARRAY),
            (&list(4), Type::TEXT_ARRAY),
            (&list(5), Type::TEXT_ARRAY),
            (&text(0), Type::TEXT),
            (&text(1), Type::TEXT),
            (&text(2), Type::TEXT),
            (&text(3), Type::TEXT),
            (&created_by, Type::TEXT),
        ],
    )
    .await?
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "CONFLICT",
            "A detection rule with this source_name and source_rule_id exists",
        )
    })?;
    Ok((StatusCode::CREATED, Json(page::single(rule_json(&row)))).into_response())
}

async fn detail(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::DetectionRule>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(page::single(catalog::get_rule(&*client, uuid).await?)))
}

async fn patch(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::DetectionRule>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let obj = page::strict_body(&body, "RuleWrite")?;
    for fixed in ["source_name", "source_rule_id", "created_by"] {
        if obj.contains_key(fixed) {
            return Err(err(fixed, "cannot be changed", "value_error"));
        }
    }
    let i = Input::parse(&obj, false)?;
    let (set_sev, sev) = fields::split(i.severity);
    let t: Vec<(bool, Option<String>)> = i.texts.into_iter().map(fields::split).collect();
    let sql = format!(
        "UPDATE detection_rules SET name = COALESCE($2, name),
             severity = CASE WHEN $3 THEN $4 ELSE severity END, is_active = COALESCE($5, is_active),
             mitre_tactics = COALESCE($6, mitre_tactics),
             mitre_techniques = COALESCE($7, mitre_techniques) || {PARENTS_OF_SUBTECHNIQUES},
             mitre_subtechniques = COALESCE($8, mitre_subtechniques), data_sources = COALESCE($9, data_sources),
             false_positive_tags = COALESCE($10, false_positive_tags), blind_spots = COALESCE($11, blind_spots),
             run_frequency = CASE WHEN $12 THEN $13 ELSE run_frequency END,
             documentation = CASE WHEN $14 THEN $15 ELSE documentation END,
             goal = CASE WHEN $16 THEN $17 ELSE goal END,
             priority = CASE WHEN $18 THEN $19 ELSE priority END,
             updated_at = now()
         WHERE uuid = $1 RETURNING {COLUMNS}"
    );
    let row = stmt::query_opt(
        &*client,
        &sql,
        &[
            (&uuid, Type::UUID),
            (&i.name, Type::TEXT),
            (&set_sev, Type::BOOL),
            (&sev, Type::TEXT),
            (&i.is_active, Type::BOOL),
            (&i.lists[0], Type::TEXT_ARRAY),
            (&i.lists[1], Type::TEXT_ARRAY),
            (&i.lists[2], Type::TEXT_ARRAY),
            (&i.lists[3], Type::TEXT_ARRAY),
            (&i.lists[4], Type::TEXT_ARRAY),
            (&i.lists[5], Type::TEXT_ARRAY),
            (&t[0].0, Type::BOOL),
            (&t[0].1, Type::TEXT),
            (&t[1].0, Type::BOOL),
            (&t[1].1, Type::TEXT),
            (&t[2].0, Type::BOOL),
            (&t[2].1, Type::TEXT),
            (&t[3].0, Type::BOOL),
            (&t[3].1, Type::TEXT),
        ],
    )
    .await?
    .ok_or_else(missing::<res::DetectionRule>)?;
    Ok(Json(page::single(rule_json(&row))))
}

/// SQL for the parents of the sub-techniques a PATCH leaves on a rule (given or stored) that its
/// technique list (given or stored) lacks; the UPDATE's SET sees the stored values.
const PARENTS_OF_SUBTECHNIQUES: &str = "ARRAY(
    SELECT DISTINCT p FROM (
        SELECT upper(substring(s from '^\\s*([Tt][0-9]{4})\\.[0-9]{3}')) AS p
        FROM unnest(COALESCE($8, mitre_subtechniques) || COALESCE($7, mitre_techniques)) s) subs
    WHERE p IS NOT NULL AND p NOT IN (
        SELECT coalesce(upper(substring(t from '^\\s*([Tt][0-9]{4})($|[^.0-9])')), '')
        FROM unnest(COALESCE($7, mitre_techniques)) t))";

async fn delete(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::DetectionRule>,
) -> Result<StatusCode, ApiError> {
    page::delete_by_uuid(&*client, "detection_rules", uuid, missing::<res::DetectionRule>).await
}
