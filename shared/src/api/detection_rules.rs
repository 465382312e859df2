//! Detection rules (api spec §5.5): reading needs `alerts:read`; writing is `admin`. Ingest
//! auto-creates stub rules; here their documentation, MITRE mapping, false-positive tags and
//! blind spots are filled in — the payload's `detection_rule` block.

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::alerts::manage::SOURCES;
use super::extract::{missing, res, Authorized, Id};
use super::fields::{self, err};
use super::list_query::ListQuery;
use super::page;
use super::{ApiError, AppState};
use crate::db::catalog::{self as repo, DetectionRulePatch, NewDetectionRule};
use crate::domain::mitre::{classify_id, with_parent_techniques, MitreKind};
use crate::domain::severity::Severity;
use crate::service::catalog::{self, DetectionRule};

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
    /// In the order of [`LISTS`].
    lists: [Option<Vec<String>>; 6],
    /// In the order of [`TEXTS`].
    texts: [Option<Option<String>>; 4],
}

const TEXTS: [(&str, usize); 4] = [
    ("run_frequency", 255),
    ("documentation", 100_000),
    ("goal", 10_000),
    ("priority", 255),
];

impl Input {
    fn parse(obj: &fields::Body, creating: bool) -> Result<Self, ApiError> {
        // Fields are checked in this order; the first invalid one is reported.
        let name = fields::required_text(obj, "name", 500, creating)?;
        let severity = fields::one_of(obj, "severity", &severities())?;
        let is_active = fields::boolean(obj, "is_active")?;
        let mut lists: [Option<Vec<String>>; 6] = Default::default();
        for (slot, f) in lists.iter_mut().zip(LISTS) {
            *slot = fields::strings(obj, f)?;
        }
        let mut texts: [Option<Option<String>>; 4] = Default::default();
        for (slot, (f, max)) in texts.iter_mut().zip(TEXTS) {
            *slot = fields::text(obj, f, max)?;
        }
        Ok(Self {
            name,
            severity,
            is_active,
            lists,
            texts,
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
    let rule = NewDetectionRule {
        name: i.name,
        source_name: source,
        source_rule_id,
        severity: i.severity.flatten(),
        is_active: i.is_active,
        mitre_tactics: list(0),
        mitre_techniques: techniques,
        mitre_subtechniques: list(2),
        data_sources: list(3),
        false_positive_tags: list(4),
        blind_spots: list(5),
        run_frequency: text(0),
        documentation: text(1),
        goal: text(2),
        priority: text(3),
        created_by,
    };
    let row = repo::insert_rule(&*client, &rule).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "CONFLICT",
            "A detection rule with this source_name and source_rule_id exists",
        )
    })?;
    Ok((StatusCode::CREATED, Json(page::single(json!(DetectionRule::from(row))))).into_response())
}

async fn detail(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::DetectionRule>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(page::single(json!(catalog::get_rule(&*client, uuid).await?))))
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
    let [tactics, techniques, subtechniques, data_sources, fp_tags, blind_spots] = i.lists;
    let [run_frequency, documentation, goal, priority] = i.texts.map(fields::split);
    let change = DetectionRulePatch {
        name: i.name,
        severity: fields::split(i.severity),
        is_active: i.is_active,
        mitre_tactics: tactics,
        mitre_techniques: techniques,
        mitre_subtechniques: subtechniques,
        data_sources,
        false_positive_tags: fp_tags,
        blind_spots,
        run_frequency,
        documentation,
        goal,
        priority,
    };
    let row = repo::update_rule(&*client, uuid, &change)
        .await?
        .ok_or_else(missing::<res::DetectionRule>)?;
    Ok(Json(page::single(json!(DetectionRule::from(row)))))
}

async fn delete(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::DetectionRule>,
) -> Result<StatusCode, ApiError> {
    if repo::delete_rule(&*client, uuid).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(missing::<res::DetectionRule>())
    }
}
