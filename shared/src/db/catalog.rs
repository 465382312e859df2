//! The catalog agents read around alerts: `detection_rules`, `context_documents` and
//! `workflows` (api spec §5.5–5.7). Searches, reads by uuid and the admin writes; rows are read
//! by column name.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::types::Type;
use tokio_postgres::{Error, Row};
use uuid::Uuid;

use crate::db::stmt::{self, Cached, Param};

/// The window count of a page's first row, or a count of its own past the last page, where no
/// row carries it.
async fn total(client: &impl Cached, rows: &[Row], count_sql: &str, params: &[Param<'_>]) -> Result<i64, Error> {
    match rows.first() {
        Some(r) => r.try_get("total"),
        None => Ok(stmt::query_opt(client, count_sql, params)
            .await?
            .map(|r| r.try_get("total"))
            .transpose()?
            .unwrap_or(0)),
    }
}

// --- detection_rules ---------------------------------------------------------------------------

const RULE_COLUMNS: &str =
    "uuid, name, source_rule_id, source_name, severity, is_active, mitre_tactics, mitre_techniques,
    mitre_subtechniques, data_sources, run_frequency, created_by, documentation, goal, priority, false_positive_tags,
    blind_spots, is_system, created_at, updated_at";

/// One detection rule.
#[derive(Debug, Clone)]
pub(crate) struct DetectionRuleRow {
    pub uuid: Uuid,
    pub name: String,
    pub source_rule_id: Option<String>,
    pub source_name: Option<String>,
    pub severity: Option<String>,
    pub is_active: bool,
    pub mitre_tactics: Vec<String>,
    pub mitre_techniques: Vec<String>,
    pub mitre_subtechniques: Vec<String>,
    pub data_sources: Vec<String>,
    pub run_frequency: Option<String>,
    pub created_by: Option<String>,
    pub documentation: Option<String>,
    pub goal: Option<String>,
    pub priority: Option<String>,
    pub false_positive_tags: Vec<String>,
    pub blind_spots: Vec<String>,
    pub is_system: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl DetectionRuleRow {
    fn from_row(r: &Row) -> Result<Self, Error> {
        Ok(Self {
            uuid: r.try_get("uuid")?,
            name: r.try_get("name")?,
            source_rule_id: r.try_get("source_rule_id")?,
            source_name: r.try_get("source_name")?,
            severity: r.try_get("severity")?,
            is_active: r.try_get("is_active")?,
            mitre_tactics: r.try_get("mitre_tactics")?,
            mitre_techniques: r.try_get("mitre_techniques")?,
            mitre_subtechniques: r.try_get("mitre_subtechniques")?,
            data_sources: r.try_get("data_sources")?,
            run_frequency: r.try_get("run_frequency")?,
            created_by: r.try_get("created_by")?,
            documentation: r.try_get("documentation")?,
            goal: r.try_get("goal")?,
            priority: r.try_get("priority")?,
            false_positive_tags: r.try_get("false_positive_tags")?,
            blind_spots: r.try_get("blind_spots")?,
            is_system: r.try_get("is_system")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

/// Filters of a rule search, ready for SQL; `None` means "any".
#[derive(Debug, Default, Clone)]
pub(crate) struct RuleSearch {
    pub source_name: Option<Vec<String>>,
    pub severity: Option<Vec<String>>,
    pub is_active: Option<bool>,
    /// An `ILIKE` pattern over the name (wildcards in the user's text already escaped).
    pub name_pattern: Option<String>,
    /// A tactic the rule lists, compared case-insensitively.
    pub tactic: Option<String>,
    /// Upper-case technique or sub-technique ids; a parent id matches its sub-techniques.
    pub techniques: Option<Vec<String>>,
}

/// Rules matching `f`, ordered by `order` (SQL over alias `a`, ending with a tiebreak), and the
/// number of matches.
pub(crate) async fn search_rules(
    client: &impl Cached,
    f: &RuleSearch,
    order: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<DetectionRuleRow>, i64), Error> {
    let filter = "($1::text[] IS NULL OR a.source_name = ANY($1)) AND ($2::text[] IS NULL OR a.severity = ANY($2))
         AND ($3::bool IS NULL OR a.is_active = $3)
         AND ($4::text IS NULL OR a.name ILIKE $4)
         AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM unnest(a.mitre_tactics) t WHERE lower(t) = lower($5)))
         AND ($6::text[] IS NULL OR EXISTS (
             SELECT 1 FROM unnest(a.mitre_techniques || a.mitre_subtechniques) t,
                 LATERAL (SELECT upper(substring(t from '^\\s*([Tt][0-9]{4}(\\.[0-9]{3})?)')) AS id) x
             WHERE x.id = ANY($6) OR left(x.id, 5) = ANY($6)))";
    let sql = format!(
        "SELECT {RULE_COLUMNS}, count(*) OVER () AS total FROM detection_rules a WHERE {filter} ORDER BY {order} LIMIT $7 OFFSET $8"
    );
    let params: [Param<'_>; 8] = [
        (&f.source_name, Type::TEXT_ARRAY),
        (&f.severity, Type::TEXT_ARRAY),
        (&f.is_active, Type::BOOL),
        (&f.name_pattern, Type::TEXT),
        (&f.tactic, Type::TEXT),
        (&f.techniques, Type::TEXT_ARRAY),
        (&limit, Type::INT8),
        (&offset, Type::INT8),
    ];
    let rows = stmt::query(client, &sql, &params).await?;
    let count_sql = format!("SELECT count(*) AS total FROM detection_rules a WHERE {filter}");
    let total = total(client, &rows, &count_sql, &params[..6]).await?;
    let rules = rows.iter().map(DetectionRuleRow::from_row).collect::<Result<_, _>>()?;
    Ok((rules, total))
}

pub(crate) async fn get_rule(client: &impl Cached, uuid: Uuid) -> Result<Option<DetectionRuleRow>, Error> {
    stmt::query_opt(
        client,
        &format!("SELECT {RULE_COLUMNS} FROM detection_rules WHERE uuid = $1"),
        &[(&uuid, Type::UUID)],
    )
    .await?
    .as_ref()
    .map(DetectionRuleRow::from_row)
    .transpose()
}

/// A rule written through the API; lists and texts are stored as given.
#[derive(Debug, Clone)]
pub(crate) struct NewDetectionRule {
    pub name: Option<String>,
    pub source_name: Option<String>,
    pub source_rule_id: Option<String>,
    pub severity: Option<String>,
    /// `None`: active.
    pub is_active: Option<bool>,
    pub mitre_tactics: Vec<String>,
    pub mitre_techniques: Vec<String>,
    pub mitre_subtechniques: Vec<String>,
    pub data_sources: Vec<String>,
    pub false_positive_tags: Vec<String>,
    pub blind_spots: Vec<String>,
    pub run_frequency: Option<String>,
    pub documentation: Option<String>,
    pub goal: Option<String>,
    pub priority: Option<String>,
    pub created_by: String,
}

/// Inserts `r`; `None` when a rule with its `(source_name, source_rule_id)` exists.
pub(crate) async fn insert_rule(client: &impl Cached, r: &NewDetectionRule) -> Result<Option<DetectionRuleRow>, Error> {
    let sql = format!(
        "INSERT INTO detection_rules (name, source_name, source_rule_id, severity, is_active, mitre_tactics, mitre_techniques,
             mitre_subtechniques, data_sources, false_positive_tags, blind_spots, run_frequency, documentation, goal,
             priority, created_by)
         VALUES ($1, $2, $3, $4, COALESCE($5, true), $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         ON CONFLICT (source_name, source_rule_id) DO NOTHING RETURNING {RULE_COLUMNS}"
    );
    stmt::query_opt(
        client,
        &sql,
        &[
            (&r.name, Type::TEXT),
            (&r.source_name, Type::TEXT),
            (&r.source_rule_id, Type::TEXT),
            (&r.severity, Type::TEXT),
            (&r.is_active, Type::BOOL),
            (&r.mitre_tactics, Type::TEXT_ARRAY),
            (&r.mitre_techniques, Type::TEXT_ARRAY),
            (&r.mitre_subtechniques, Type::TEXT_ARRAY),
            (&r.data_sources, Type::TEXT_ARRAY),
            (&r.false_positive_tags, Type::TEXT_ARRAY),
            (&r.blind_spots, Type::TEXT_ARRAY),
            (&r.run_frequency, Type::TEXT),
            (&r.documentation, Type::TEXT),
            (&r.goal, Type::TEXT),
            (&r.priority, Type::TEXT),
            (&r.created_by, Type::TEXT),
        ],
    )
    .await?
    .as_ref()
    .map(DetectionRuleRow::from_row)
    .transpose()
}

/// A column a PATCH may set to null: `(set, value)`, where `set` false leaves it as it is.
pub(crate) type Nullable<T> = (bool, Option<T>);

/// A change to a rule; `None` (or an unset [`Nullable`]) leaves a column as it is.
#[derive(Debug, Default, Clone)]
pub(crate) struct DetectionRulePatch {
    pub name: Option<String>,
    pub severity: Nullable<String>,
    pub is_active: Option<bool>,
    pub mitre_tactics: Option<Vec<String>>,
    pub mitre_techniques: Option<Vec<String>>,
    pub mitre_subtechniques: Option<Vec<String>>,
    pub data_sources: Option<Vec<String>>,
    pub false_positive_tags: Option<Vec<String>>,
    pub blind_spots: Option<Vec<String>>,
    pub run_frequency: Nullable<String>,
    pub documentation: Nullable<String>,
    pub goal: Nullable<String>,
    pub priority: Nullable<String>,
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

/// Applies `p` to rule `uuid` (a sub-technique brings its parent technique); `None` when there
/// is no such rule.
pub(crate) async fn update_rule(
    client: &impl Cached,
    uuid: Uuid,
    p: &DetectionRulePatch,
) -> Result<Option<DetectionRuleRow>, Error> {
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
         WHERE uuid = $1 RETURNING {RULE_COLUMNS}"
    );
    stmt::query_opt(
        client,
        &sql,
        &[
            (&uuid, Type::UUID),
            (&p.name, Type::TEXT),
            (&p.severity.0, Type::BOOL),
            (&p.severity.1, Type::TEXT),
            (&p.is_active, Type::BOOL),
            (&p.mitre_tactics, Type::TEXT_ARRAY),
            (&p.mitre_techniques, Type::TEXT_ARRAY),
            (&p.mitre_subtechniques, Type::TEXT_ARRAY),
            (&p.data_sources, Type::TEXT_ARRAY),
            (&p.false_positive_tags, Type::TEXT_ARRAY),
            (&p.blind_spots, Type::TEXT_ARRAY),
            (&p.run_frequency.0, Type::BOOL),
            (&p.run_frequency.1, Type::TEXT),
            (&p.documentation.0, Type::BOOL),
            (&p.documentation.1, Type::TEXT),
            (&p.goal.0, Type::BOOL),
            (&p.goal.1, Type::TEXT),
            (&p.priority.0, Type::BOOL),
            (&p.priority.1, Type::TEXT),
        ],
    )
    .await?
    .as_ref()
    .map(DetectionRuleRow::from_row)
    .transpose()
}

/// Deletes rule `uuid`; false when there is no such rule.
pub(crate) async fn delete_rule(client: &impl Cached, uuid: Uuid) -> Result<bool, Error> {
    let row = stmt::query_opt(
        client,
        "DELETE FROM detection_rules WHERE uuid = $1 RETURNING id",
        &[(&uuid, Type::UUID)],
    )
    .await?;
    Ok(row.is_some())
}

// --- context_documents -------------------------------------------------------------------------

const DOC_COLUMNS: &str = "uuid, title, document_type, is_global, description, tags, version, is_system, created_at,
    updated_at, content, targeting_rules";

/// One context document, body included.
#[derive(Debug, Clone)]
pub(crate) struct ContextDocumentRow {
    pub uuid: Uuid,
    pub title: String,
    pub document_type: String,
    pub is_global: bool,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub version: i32,
    pub is_system: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub content: String,
    pub targeting_rules: Option<Value>,
}

impl ContextDocumentRow {
    fn from_row(r: &Row) -> Result<Self, Error> {
        Ok(Self {
            uuid: r.try_get("uuid")?,
            title: r.try_get("title")?,
            document_type: r.try_get("document_type")?,
            is_global: r.try_get("is_global")?,
            description: r.try_get("description")?,
            tags: r.try_get("tags")?,
            version: r.try_get("version")?,
            is_system: r.try_get("is_system")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            content: r.try_get("content")?,
            targeting_rules: r.try_get("targeting_rules")?,
        })
    }

    fn from_rows(rows: &[Row]) -> Result<Vec<Self>, Error> {
        rows.iter().map(Self::from_row).collect()
    }
}

/// Documents of the given types (`None`: any) and globality, ordered by `order` (SQL ending
/// with a tiebreak), and the number of matches.
pub(crate) async fn list_documents(
    client: &impl Cached,
    types: Option<&[String]>,
    is_global: Option<bool>,
    order: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ContextDocumentRow>, i64), Error> {
    let filter = "($1::text[] IS NULL OR document_type = ANY($1)) AND ($2::bool IS NULL OR is_global = $2)";
    let sql = format!(
        "SELECT {DOC_COLUMNS}, count(*) OVER () AS total FROM context_documents WHERE {filter} ORDER BY {order} LIMIT $3 OFFSET $4"
    );
    let params: [Param<'_>; 4] = [
        (&types, Type::TEXT_ARRAY),
        (&is_global, Type::BOOL),
        (&limit, Type::INT8),
        (&offset, Type::INT8),
    ];
    let rows = stmt::query(client, &sql, &params).await?;
    let count_sql = format!("SELECT count(*) AS total FROM context_documents WHERE {filter}");
    let total = total(client, &rows, &count_sql, &params[..2]).await?;
    Ok((ContextDocumentRow::from_rows(&rows)?, total))
}

pub(crate) async fn get_document(client: &impl Cached, uuid: Uuid) -> Result<Option<ContextDocumentRow>, Error> {
    let sql = format!("SELECT {DOC_COLUMNS} FROM context_documents WHERE uuid = $1");
    stmt::query_opt(client, &sql, &[(&uuid, Type::UUID)])
        .await?
        .as_ref()
        .map(ContextDocumentRow::from_row)
        .transpose()
}

/// The documents `uuids` names, in that order (unknown ones left out).
pub(crate) async fn documents_in_order(client: &impl Cached, uuids: &[Uuid]) -> Result<Vec<ContextDocumentRow>, Error> {
    let sql = format!(
        "SELECT {DOC_COLUMNS} FROM context_documents d JOIN unnest($1::uuid[]) WITH ORDINALITY AS o(u, n) ON o.u = d.uuid ORDER BY o.n"
    );
    let rows = stmt::query(client, &sql, &[(&uuids, Type::UUID_ARRAY)]).await?;
    ContextDocumentRow::from_rows(&rows)
}

/// A document written through the API.
#[derive(Debug, Clone)]
pub(crate) struct NewContextDocument {
    pub title: Option<String>,
    pub document_type: String,
    pub is_global: bool,
    pub description: Option<String>,
    pub content: Option<String>,
    pub tags: Vec<String>,
    pub targeting_rules: Option<Value>,
}

/// Inserts `d`; `None` only if the database returns no row.
pub(crate) async fn insert_document(
    client: &impl Cached,
    d: &NewContextDocument,
) -> Result<Option<ContextDocumentRow>, Error> {
    let sql = format!(
        "INSERT INTO context_documents (title, document_type, is_global, description, content, tags, targeting_rules)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {DOC_COLUMNS}"
    );
    stmt::query_opt(
        client,
        &sql,
        &[
            (&d.title, Type::TEXT),
            (&d.document_type, Type::TEXT),
            (&d.is_global, Type::BOOL),
            (&d.description, Type::TEXT),
            (&d.content, Type::TEXT),
            (&d.tags, Type::TEXT_ARRAY),
            (&d.targeting_rules, Type::JSONB),
        ],
    )
    .await?
    .as_ref()
    .map(ContextDocumentRow::from_row)
    .transpose()
}

/// A change to a document; `None` (or an unset [`Nullable`]) leaves a column as it is.
#[derive(Debug, Default, Clone)]
pub(crate) struct ContextDocumentPatch {
    pub title: Option<String>,
    pub document_type: Option<String>,
    /// A changed body bumps `version`.
    pub content: Option<String>,
    pub is_global: Option<bool>,
    pub description: Nullable<String>,
    pub tags: Option<Vec<String>>,
    pub targeting_rules: Nullable<Value>,
}

/// Applies `p` to document `uuid`; `None` when there is no such document.
pub(crate) async fn update_document(
    client: &impl Cached,
    uuid: Uuid,
    p: &ContextDocumentPatch,
) -> Result<Option<ContextDocumentRow>, Error> {
    let sql = format!(
        "UPDATE context_documents SET
             title = COALESCE($2, title), document_type = COALESCE($3, document_type),
             version = CASE WHEN $4::text IS NOT NULL AND $4 <> content THEN version + 1 ELSE version END,
             content = COALESCE($4, content), is_global = COALESCE($5, is_global),
             description = CASE WHEN $6 THEN $7 ELSE description END, tags = COALESCE($8, tags),
             targeting_rules = CASE WHEN $9 THEN $10 ELSE targeting_rules END, updated_at = now()
         WHERE uuid = $1 RETURNING {DOC_COLUMNS}"
    );
    stmt::query_opt(
        client,
        &sql,
        &[
            (&uuid, Type::UUID),
            (&p.title, Type::TEXT),
            (&p.document_type, Type::TEXT),
            (&p.content, Type::TEXT),
            (&p.is_global, Type::BOOL),
            (&p.description.0, Type::BOOL),
            (&p.description.1, Type::TEXT),
            (&p.tags, Type::TEXT_ARRAY),
            (&p.targeting_rules.0, Type::BOOL),
            (&p.targeting_rules.1, Type::JSONB),
        ],
    )
    .await?
    .as_ref()
    .map(ContextDocumentRow::from_row)
    .transpose()
}

/// Deletes document `uuid`; false when there is no such document.
pub(crate) async fn delete_document(client: &impl Cached, uuid: Uuid) -> Result<bool, Error> {
    let row = stmt::query_opt(
        client,
        "DELETE FROM context_documents WHERE uuid = $1 RETURNING id",
        &[(&uuid, Type::UUID)],
    )
    .await?;
    Ok(row.is_some())
}

// --- workflows ---------------------------------------------------------------------------------

const WORKFLOW_COLUMNS: &str =
    "uuid, name, description, workflow_type, indicator_types, state, is_active, is_system, tags,
    risk_level, approval_mode, time_saved_minutes, documentation, targeting_rules, created_at, updated_at";

/// One workflow's documentation and settings.
#[derive(Debug, Clone)]
pub struct WorkflowRow {
    pub uuid: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub workflow_type: Option<String>,
    pub indicator_types: Vec<String>,
    pub state: String,
    pub is_active: bool,
    pub is_system: bool,
    pub tags: Vec<String>,
    pub risk_level: String,
    pub approval_mode: String,
    pub time_saved_minutes: Option<i32>,
    pub documentation: Option<String>,
    pub targeting_rules: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WorkflowRow {
    fn from_row(r: &Row) -> Result<Self, Error> {
        Ok(Self {
            uuid: r.try_get("uuid")?,
            name: r.try_get("name")?,
            description: r.try_get("description")?,
            workflow_type: r.try_get("workflow_type")?,
            indicator_types: r.try_get("indicator_types")?,
            state: r.try_get("state")?,
            is_active: r.try_get("is_active")?,
            is_system: r.try_get("is_system")?,
            tags: r.try_get("tags")?,
            risk_level: r.try_get("risk_level")?,
            approval_mode: r.try_get("approval_mode")?,
            time_saved_minutes: r.try_get("time_saved_minutes")?,
            documentation: r.try_get("documentation")?,
            targeting_rules: r.try_get("targeting_rules")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

/// Filters of the workflow catalog; `None` means "any".
#[derive(Debug, Default, Clone)]
pub(crate) struct WorkflowSearch {
    pub workflow_type: Option<Vec<String>>,
    pub state: Option<Vec<String>>,
    pub risk_level: Option<Vec<String>>,
    pub is_active: Option<bool>,
}

/// Workflows matching `f`, ordered by `order` (SQL ending with a tiebreak), and the number of
/// matches.
pub(crate) async fn list_workflows(
    client: &impl Cached,
    f: &WorkflowSearch,
    order: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<WorkflowRow>, i64), Error> {
    let filter = "($1::text[] IS NULL OR workflow_type = ANY($1)) AND ($2::text[] IS NULL OR state = ANY($2))
         AND ($3::text[] IS NULL OR risk_level = ANY($3)) AND ($4::bool IS NULL OR is_active = $4)";
    let sql = format!(
        "SELECT {WORKFLOW_COLUMNS}, count(*) OVER () AS total FROM workflows WHERE {filter} ORDER BY {order} LIMIT $5 OFFSET $6"
    );
    let params: [Param<'_>; 6] = [
        (&f.workflow_type, Type::TEXT_ARRAY),
        (&f.state, Type::TEXT_ARRAY),
        (&f.risk_level, Type::TEXT_ARRAY),
        (&f.is_active, Type::BOOL),
        (&limit, Type::INT8),
        (&offset, Type::INT8),
    ];
    let rows = stmt::query(client, &sql, &params).await?;
    let count_sql = format!("SELECT count(*) AS total FROM workflows WHERE {filter}");
    let total = total(client, &rows, &count_sql, &params[..4]).await?;
    let workflows = rows.iter().map(WorkflowRow::from_row).collect::<Result<_, _>>()?;
    Ok((workflows, total))
}

pub(crate) async fn get_workflow(client: &impl Cached, uuid: Uuid) -> Result<Option<WorkflowRow>, Error> {
    stmt::query_opt(
        client,
        &format!("SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE uuid = $1"),
        &[(&uuid, Type::UUID)],
    )
    .await?
    .as_ref()
    .map(WorkflowRow::from_row)
    .transpose()
}

/// A workflow written through the API.
#[derive(Debug, Clone)]
pub(crate) struct NewWorkflow {
    pub name: Option<String>,
    pub description: Option<String>,
    pub workflow_type: Option<String>,
    pub indicator_types: Vec<String>,
    pub state: String,
    pub is_active: bool,
    pub tags: Vec<String>,
    /// `None`: `low`.
    pub risk_level: Option<String>,
    /// `None`: `always`.
    pub approval_mode: Option<String>,
    pub time_saved_minutes: Option<i32>,
    pub documentation: Option<String>,
    pub targeting_rules: Option<Value>,
}

/// Inserts `w`; `None` only if the database returns no row.
pub(crate) async fn insert_workflow(client: &impl Cached, w: &NewWorkflow) -> Result<Option<WorkflowRow>, Error> {
    let sql = format!(
        "INSERT INTO workflows (name, description, workflow_type, indicator_types, state, is_active, tags, risk_level,
             approval_mode, time_saved_minutes, documentation, targeting_rules)
         VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8, 'low'), COALESCE($9, 'always'), $10, $11, $12)
         RETURNING {WORKFLOW_COLUMNS}"
    );
    stmt::query_opt(
        client,
        &sql,
        &[
            (&w.name, Type::TEXT),
            (&w.description, Type::TEXT),
            (&w.workflow_type, Type::TEXT),
            (&w.indicator_types, Type::TEXT_ARRAY),
            (&w.state, Type::TEXT),
            (&w.is_active, Type::BOOL),
            (&w.tags, Type::TEXT_ARRAY),
            (&w.risk_level, Type::TEXT),
            (&w.approval_mode, Type::TEXT),
            (&w.time_saved_minutes, Type::INT4),
            (&w.documentation, Type::TEXT),
            (&w.targeting_rules, Type::JSONB),
        ],
    )
    .await?
    .as_ref()
    .map(WorkflowRow::from_row)
    .transpose()
}

/// A change to a workflow; `None` (or an unset [`Nullable`]) leaves a column as it is.
#[derive(Debug, Default, Clone)]
pub(crate) struct WorkflowPatch {
    pub name: Option<String>,
    pub description: Nullable<String>,
    pub workflow_type: Nullable<String>,
    pub indicator_types: Option<Vec<String>>,
    /// A new state also sets `is_active` (active or not) unless `is_active` is given.
    pub state: Option<String>,
    pub is_active: Option<bool>,
    pub tags: Option<Vec<String>>,
    pub risk_level: Option<String>,
    pub approval_mode: Option<String>,
    pub time_saved_minutes: Nullable<i32>,
    pub documentation: Nullable<String>,
    pub targeting_rules: Nullable<Value>,
}

/// Applies `p` to workflow `uuid`; `None` when there is no such workflow.
pub(crate) async fn update_workflow(
    client: &impl Cached,
    uuid: Uuid,
    p: &WorkflowPatch,
) -> Result<Option<WorkflowRow>, Error> {
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
         WHERE uuid = $1 RETURNING {WORKFLOW_COLUMNS}"
    );
    stmt::query_opt(
        client,
        &sql,
        &[
            (&uuid, Type::UUID),
            (&p.name, Type::TEXT),
            (&p.description.0, Type::BOOL),
            (&p.description.1, Type::TEXT),
            (&p.workflow_type.0, Type::BOOL),
            (&p.workflow_type.1, Type::TEXT),
            (&p.indicator_types, Type::TEXT_ARRAY),
            (&p.state, Type::TEXT),
            (&p.is_active, Type::BOOL),
            (&p.tags, Type::TEXT_ARRAY),
            (&p.risk_level, Type::TEXT),
            (&p.approval_mode, Type::TEXT),
            (&p.time_saved_minutes.0, Type::BOOL),
            (&p.time_saved_minutes.1, Type::INT4),
            (&p.documentation.0, Type::BOOL),
            (&p.documentation.1, Type::TEXT),
            (&p.targeting_rules.0, Type::BOOL),
            (&p.targeting_rules.1, Type::JSONB),
        ],
    )
    .await?
    .as_ref()
    .map(WorkflowRow::from_row)
    .transpose()
}

/// What deleting a workflow did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkflowDeletion {
    /// Rows deleted (0 or 1).
    pub deleted: i64,
    /// Whether the workflow is a system one; `None` when there is no such workflow.
    pub is_system: Option<bool>,
}

/// Deletes workflow `uuid` unless it is a system workflow (those stay).
pub(crate) async fn delete_workflow(client: &impl Cached, uuid: Uuid) -> Result<Option<WorkflowDeletion>, Error> {
    stmt::query_opt(
        client,
        "WITH d AS (DELETE FROM workflows WHERE uuid = $1 AND NOT is_system RETURNING id)
         SELECT (SELECT count(*) FROM d) AS deleted, (SELECT is_system FROM workflows WHERE uuid = $1) AS is_system",
        &[(&uuid, Type::UUID)],
    )
    .await?
    .map(|r| {
        Ok(WorkflowDeletion {
            deleted: r.try_get("deleted")?,
            is_system: r.try_get("is_system")?,
        })
    })
    .transpose()
}
