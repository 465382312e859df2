//! The catalog agents read around alerts (api spec §5.5–5.7): detection rules, context
//! documents, workflow documentation. Reads only; the REST adapter owns the admin writes.

use serde_json::{json, Value};
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::alerts::Listed;
use super::ServiceError;
use crate::db::stmt::{self, Cached};
use crate::enrich::providers::iso;

pub const RULE_COLUMNS: &str =
    "uuid, name, source_rule_id, source_name, severity, is_active, mitre_tactics, mitre_techniques,
    mitre_subtechniques, data_sources, run_frequency, created_by, documentation, goal, priority, false_positive_tags,
    blind_spots, is_system, created_at, updated_at";

pub fn rule_json(r: &tokio_postgres::Row) -> Value {
    json!({
        "uuid": r.get::<_, Uuid>(0),
        "name": r.get::<_, String>(1),
        "source_rule_id": r.get::<_, Option<String>>(2),
        "source_name": r.get::<_, Option<String>>(3),
        "severity": r.get::<_, Option<String>>(4),
        "is_active": r.get::<_, bool>(5),
        "mitre_tactics": r.get::<_, Vec<String>>(6),
        "mitre_techniques": r.get::<_, Vec<String>>(7),
        "mitre_subtechniques": r.get::<_, Vec<String>>(8),
        "data_sources": r.get::<_, Vec<String>>(9),
        "run_frequency": r.get::<_, Option<String>>(10),
        "created_by": r.get::<_, Option<String>>(11),
        "documentation": r.get::<_, Option<String>>(12),
        "goal": r.get::<_, Option<String>>(13),
        "priority": r.get::<_, Option<String>>(14),
        "false_positive_tags": r.get::<_, Vec<String>>(15),
        "blind_spots": r.get::<_, Vec<String>>(16),
        "is_system": r.get::<_, bool>(17),
        "created_at": iso(r.get(18)),
        "updated_at": iso(r.get(19)),
    })
}

pub const DOC_COLUMNS: &str =
    "uuid, title, document_type, is_global, description, tags, version, is_system, created_at,
    updated_at, content, targeting_rules";

pub fn doc_json(r: &tokio_postgres::Row, full: bool) -> Value {
    let mut v = json!({
        "uuid": r.get::<_, Uuid>(0),
        "title": r.get::<_, String>(1),
        "document_type": r.get::<_, String>(2),
        "is_global": r.get::<_, bool>(3),
        "description": r.get::<_, Option<String>>(4),
        "tags": r.get::<_, Vec<String>>(5),
        "version": r.get::<_, i32>(6),
        "is_system": r.get::<_, bool>(7),
        "created_at": iso(r.get(8)),
        "updated_at": iso(r.get(9)),
    });
    if full {
        v["content"] = json!(r.get::<_, String>(10));
        v["targeting_rules"] = r.get::<_, Option<Value>>(11).unwrap_or(Value::Null);
    }
    v
}

pub const WORKFLOW_COLUMNS: &str =
    "uuid, name, description, workflow_type, indicator_types, state, is_active, is_system, tags,
    risk_level, approval_mode, time_saved_minutes, documentation, targeting_rules, created_at, updated_at";

pub fn wf_json(r: &tokio_postgres::Row) -> Value {
    json!({
        "uuid": r.get::<_, Uuid>(0),
        "name": r.get::<_, String>(1),
        "description": r.get::<_, Option<String>>(2),
        "workflow_type": r.get::<_, Option<String>>(3),
        "indicator_types": r.get::<_, Vec<String>>(4),
        "state": r.get::<_, String>(5),
        "is_active": r.get::<_, bool>(6),
        "is_system": r.get::<_, bool>(7),
        "tags": r.get::<_, Vec<String>>(8),
        "risk_level": r.get::<_, String>(9),
        "approval_mode": r.get::<_, String>(10),
        "time_saved_minutes": r.get::<_, Option<i32>>(11),
        "documentation": r.get::<_, Option<String>>(12),
        "targeting_rules": r.get::<_, Option<Value>>(13),
        "created_at": iso(r.get(14)),
        "updated_at": iso(r.get(15)),
    })
}

async fn total(
    client: &impl Cached,
    rows: &[tokio_postgres::Row],
    col: usize,
    count_sql: &str,
    params: &[stmt::Param<'_>],
) -> Result<i64, ServiceError> {
    if let Some(r) = rows.first() {
        return Ok(r.get(col));
    }
    // Past the last page there is no row to carry the window count.
    Ok(stmt::query(client, count_sql, params)
        .await?
        .first()
        .map(|r| r.get(0))
        .unwrap_or(0))
}

/// Filters of a rule search; `None` means "any".
#[derive(Debug, Default, Clone)]
pub struct RuleFilter {
    /// Case-insensitive substring of the name.
    pub name: Option<String>,
    /// A MITRE tactic id or name the rule lists (case-insensitive).
    pub mitre_tactic: Option<String>,
    /// Technique ids matched against techniques and sub-techniques (a parent matches its
    /// sub-techniques: `T1566` finds a rule naming only `T1566.002`, rules written before parents
    /// were derived included).
    pub mitre_technique: Option<Vec<String>>,
    pub source_name: Option<Vec<String>>,
    pub severity: Option<Vec<String>>,
    pub is_active: Option<bool>,
}

/// `sort_by` names of rule searches and their SQL (alias `a`).
pub const RULE_SORTS: [(&str, &str); 4] = [
    ("name", "a.name"),
    ("source_name", "a.source_name"),
    ("severity", super::alerts::SEVERITY_RANK_SQL),
    ("created_at", "a.created_at"),
];

/// Rules matching `f`, ordered by `order` (SQL over alias `a`, ending with a tiebreak).
pub async fn search_rules(
    client: &impl Cached,
    f: &RuleFilter,
    order: &str,
    limit: i64,
    offset: i64,
) -> Result<Listed, ServiceError> {
    let name = f
        .name
        .as_deref()
        .map(|n| format!("%{}%", n.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
    let tactic = f.mitre_tactic.as_deref().map(str::trim);
    let techniques: Option<Vec<String>> = f
        .mitre_technique
        .as_ref()
        .map(|ts| ts.iter().map(|t| t.trim().to_uppercase()).collect());
    let filter = "($1::text[] IS NULL OR a.source_name = ANY($1)) AND ($2::text[] IS NULL OR a.severity = ANY($2))
         AND ($3::bool IS NULL OR a.is_active = $3)
         AND ($4::text IS NULL OR a.name ILIKE $4)
         AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM unnest(a.mitre_tactics) t WHERE lower(t) = lower($5)))
         AND ($6::text[] IS NULL OR EXISTS (
             SELECT 1 FROM unnest(a.mitre_techniques || a.mitre_subtechniques) t,
                 LATERAL (SELECT upper(substring(t from '^\\s*([Tt][0-9]{4}(\\.[0-9]{3})?)')) AS id) x
             WHERE x.id = ANY($6) OR left(x.id, 5) = ANY($6)))";
    let sql = format!(
        "SELECT {RULE_COLUMNS}, count(*) OVER () FROM detection_rules a WHERE {filter} ORDER BY {order} LIMIT $7 OFFSET $8"
    );
    let params: [stmt::Param<'_>; 8] = [
        (&f.source_name, Type::TEXT_ARRAY),
        (&f.severity, Type::TEXT_ARRAY),
        (&f.is_active, Type::BOOL),
        (&name, Type::TEXT),
        (&tactic, Type::TEXT),
        (&techniques, Type::TEXT_ARRAY),
        (&limit, Type::INT8),
        (&offset, Type::INT8),
    ];
    let rows = stmt::query(client, &sql, &params).await?;
    let total = total(
        client,
        &rows,
        20,
        &format!("SELECT count(*) FROM detection_rules a WHERE {filter}"),
        &params[..6],
    )
    .await?;
    Ok(Listed {
        items: rows.iter().map(rule_json).collect(),
        total,
    })
}

pub async fn get_rule(client: &impl Cached, uuid: Uuid) -> Result<Value, ServiceError> {
    let row = stmt::query_opt(
        client,
        &format!("SELECT {RULE_COLUMNS} FROM detection_rules WHERE uuid = $1"),
        &[(&uuid, Type::UUID)],
    )
    .await?
    .ok_or(ServiceError::NotFound("Detection rule"))?;
    Ok(rule_json(&row))
}

/// Context documents (without content), filtered by type and globality.
pub async fn list_documents(
    client: &impl Cached,
    types: Option<Vec<String>>,
    is_global: Option<bool>,
    order: &str,
    limit: i64,
    offset: i64,
) -> Result<Listed, ServiceError> {
    let filter = "($1::text[] IS NULL OR document_type = ANY($1)) AND ($2::bool IS NULL OR is_global = $2)";
    let sql = format!(
        "SELECT {DOC_COLUMNS}, count(*) OVER () FROM context_documents WHERE {filter} ORDER BY {order} LIMIT $3 OFFSET $4"
    );
    let params: [stmt::Param<'_>; 4] = [
        (&types, Type::TEXT_ARRAY),
        (&is_global, Type::BOOL),
        (&limit, Type::INT8),
        (&offset, Type::INT8),
    ];
    let rows = stmt::query(client, &sql, &params).await?;
    let total = total(
        client,
        &rows,
        12,
        &format!("SELECT count(*) FROM context_documents WHERE {filter}"),
        &params[..2],
    )
    .await?;
    Ok(Listed {
        items: rows.iter().map(|r| doc_json(r, false)).collect(),
        total,
    })
}

/// One document with `content` and `targeting_rules`.
pub async fn get_document(client: &impl Cached, uuid: Uuid) -> Result<Value, ServiceError> {
    let sql = format!("SELECT {DOC_COLUMNS} FROM context_documents WHERE uuid = $1");
    let row = stmt::query_opt(client, &sql, &[(&uuid, Type::UUID)])
        .await?
        .ok_or(ServiceError::NotFound("Context document"))?;
    Ok(doc_json(&row, true))
}

/// The documents that apply to alert `alert_id`, in payload order, full.
pub async fn documents_for_alert(client: &impl Cached, alert_id: i64) -> Result<Vec<Value>, ServiceError> {
    let uuids: Vec<Uuid> = super::alerts::applicable_documents(client, alert_id)
        .await?
        .into_iter()
        .map(|d| d.uuid)
        .collect();
    let sql = format!(
        "SELECT {DOC_COLUMNS} FROM context_documents d JOIN unnest($1::uuid[]) WITH ORDINALITY AS o(u, n) ON o.u = d.uuid ORDER BY o.n"
    );
    let rows = stmt::query(client, &sql, &[(&uuids, Type::UUID_ARRAY)]).await?;
    Ok(rows.iter().map(|r| doc_json(r, true)).collect())
}

/// Filters of the workflow catalog; `None` means "any".
#[derive(Debug, Default, Clone)]
pub struct WorkflowFilter {
    pub workflow_type: Option<Vec<String>>,
    pub state: Option<Vec<String>>,
    pub risk_level: Option<Vec<String>>,
    pub is_active: Option<bool>,
}

pub async fn list_workflows(
    client: &impl Cached,
    f: &WorkflowFilter,
    order: &str,
    limit: i64,
    offset: i64,
) -> Result<Listed, ServiceError> {
    let filter = "($1::text[] IS NULL OR workflow_type = ANY($1)) AND ($2::text[] IS NULL OR state = ANY($2))
         AND ($3::text[] IS NULL OR risk_level = ANY($3)) AND ($4::bool IS NULL OR is_active = $4)";
    let sql = format!(
        "SELECT {WORKFLOW_COLUMNS}, count(*) OVER () FROM workflows WHERE {filter} ORDER BY {order} LIMIT $5 OFFSET $6"
    );
    let params: [stmt::Param<'_>; 6] = [
        (&f.workflow_type, Type::TEXT_ARRAY),
        (&f.state, Type::TEXT_ARRAY),
        (&f.risk_level, Type::TEXT_ARRAY),
        (&f.is_active, Type::BOOL),
        (&limit, Type::INT8),
        (&offset, Type::INT8),
    ];
    let rows = stmt::query(client, &sql, &params).await?;
    let total = total(
        client,
        &rows,
        16,
        &format!("SELECT count(*) FROM workflows WHERE {filter}"),
        &params[..4],
    )
    .await?;
    Ok(Listed {
        items: rows.iter().map(wf_json).collect(),
        total,
    })
}

pub async fn get_workflow(client: &impl Cached, uuid: Uuid) -> Result<Value, ServiceError> {
    let row = stmt::query_opt(
        client,
        &format!("SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE uuid = $1"),
        &[(&uuid, Type::UUID)],
    )
    .await?
    .ok_or(ServiceError::NotFound("Workflow"))?;
    Ok(wf_json(&row))
}
