//! The catalog agents read around alerts (api spec §5.5–5.7): detection rules, context
//! documents, workflow documentation, as the API and MCP show them. Reads only; the REST adapter
//! owns the admin writes (through `db::catalog`, shaped by the response types here).

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::alerts::Listed;
use super::ServiceError;
use crate::db::catalog::{self, ContextDocumentRow, DetectionRuleRow, WorkflowRow};
use crate::db::stmt::Cached;
use crate::enrich::providers::iso;

/// A detection rule as the API and MCP show it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DetectionRule {
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
    pub created_at: String,
    pub updated_at: String,
}

impl From<DetectionRuleRow> for DetectionRule {
    fn from(r: DetectionRuleRow) -> Self {
        Self {
            uuid: r.uuid,
            name: r.name,
            source_rule_id: r.source_rule_id,
            source_name: r.source_name,
            severity: r.severity,
            is_active: r.is_active,
            mitre_tactics: r.mitre_tactics,
            mitre_techniques: r.mitre_techniques,
            mitre_subtechniques: r.mitre_subtechniques,
            data_sources: r.data_sources,
            run_frequency: r.run_frequency,
            created_by: r.created_by,
            documentation: r.documentation,
            goal: r.goal,
            priority: r.priority,
            false_positive_tags: r.false_positive_tags,
            blind_spots: r.blind_spots,
            is_system: r.is_system,
            created_at: iso(r.created_at),
            updated_at: iso(r.updated_at),
        }
    }
}

/// A context document as the API and MCP show it: lists leave out the body and targeting rules.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ContextDocument {
    pub uuid: Uuid,
    pub title: String,
    pub document_type: String,
    pub is_global: bool,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub version: i32,
    pub is_system: bool,
    pub created_at: String,
    pub updated_at: String,
    /// Only on a single document (absent keys in lists, not nulls).
    #[serde(flatten)]
    pub body: Option<DocumentBody>,
}

/// What a single context document adds to a list item.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DocumentBody {
    pub content: String,
    pub targeting_rules: Option<Value>,
}

impl ContextDocument {
    /// The document, with its body when `full`.
    pub fn new(r: ContextDocumentRow, full: bool) -> Self {
        Self {
            uuid: r.uuid,
            title: r.title,
            document_type: r.document_type,
            is_global: r.is_global,
            description: r.description,
            tags: r.tags,
            version: r.version,
            is_system: r.is_system,
            created_at: iso(r.created_at),
            updated_at: iso(r.updated_at),
            body: full.then_some(DocumentBody {
                content: r.content,
                targeting_rules: r.targeting_rules,
            }),
        }
    }
}

/// A workflow as the API and MCP show it (documentation only; nothing here runs).
#[derive(Debug, Clone, Serialize)]
pub struct Workflow {
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
    pub created_at: String,
    pub updated_at: String,
}

impl From<WorkflowRow> for Workflow {
    fn from(r: WorkflowRow) -> Self {
        Self {
            uuid: r.uuid,
            name: r.name,
            description: r.description,
            workflow_type: r.workflow_type,
            indicator_types: r.indicator_types,
            state: r.state,
            is_active: r.is_active,
            is_system: r.is_system,
            tags: r.tags,
            risk_level: r.risk_level,
            approval_mode: r.approval_mode,
            time_saved_minutes: r.time_saved_minutes,
            documentation: r.documentation,
            targeting_rules: r.targeting_rules,
            created_at: iso(r.created_at),
            updated_at: iso(r.updated_at),
        }
    }
}

/// Filters of a rule search; `None` means "any".
#[derive(Debug, Default, Clone)]
pub(crate) struct RuleFilter {
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
pub(crate) const RULE_SORTS: [(&str, &str); 4] = [
    ("name", "a.name"),
    ("source_name", "a.source_name"),
    ("severity", super::alerts::SEVERITY_RANK_SQL),
    ("created_at", "a.created_at"),
];

/// Rules matching `f`, ordered by `order` (SQL over alias `a`, ending with a tiebreak).
pub(crate) async fn search_rules(
    client: &impl Cached,
    f: &RuleFilter,
    order: &str,
    limit: i64,
    offset: i64,
) -> Result<Listed<DetectionRule>, ServiceError> {
    let search = catalog::RuleSearch {
        source_name: f.source_name.clone(),
        severity: f.severity.clone(),
        is_active: f.is_active,
        name_pattern: f
            .name
            .as_deref()
            .map(|n| format!("%{}%", n.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))),
        tactic: f.mitre_tactic.as_deref().map(|t| t.trim().to_string()),
        techniques: f
            .mitre_technique
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.trim().to_uppercase()).collect()),
    };
    let (rules, total) = catalog::search_rules(client, &search, order, limit, offset).await?;
    Ok(Listed {
        items: rules.into_iter().map(DetectionRule::from).collect(),
        total,
    })
}

pub(crate) async fn get_rule(client: &impl Cached, uuid: Uuid) -> Result<DetectionRule, ServiceError> {
    let row = catalog::get_rule(client, uuid)
        .await?
        .ok_or(ServiceError::NotFound("Detection rule"))?;
    Ok(row.into())
}

/// Context documents (without content), filtered by type and globality.
pub(crate) async fn list_documents(
    client: &impl Cached,
    types: Option<Vec<String>>,
    is_global: Option<bool>,
    order: &str,
    limit: i64,
    offset: i64,
) -> Result<Listed<ContextDocument>, ServiceError> {
    let (docs, total) = catalog::list_documents(client, types.as_deref(), is_global, order, limit, offset).await?;
    Ok(Listed {
        items: docs.into_iter().map(|d| ContextDocument::new(d, false)).collect(),
        total,
    })
}

/// One document with `content` and `targeting_rules`.
pub(crate) async fn get_document(client: &impl Cached, uuid: Uuid) -> Result<ContextDocument, ServiceError> {
    let row = catalog::get_document(client, uuid)
        .await?
        .ok_or(ServiceError::NotFound("Context document"))?;
    Ok(ContextDocument::new(row, true))
}

/// The documents that apply to alert `alert_id`, in payload order, full.
pub(crate) async fn documents_for_alert(
    client: &impl Cached,
    alert_id: i64,
) -> Result<Vec<ContextDocument>, ServiceError> {
    let uuids: Vec<Uuid> = super::alerts::applicable_documents(client, alert_id)
        .await?
        .into_iter()
        .map(|d| d.uuid)
        .collect();
    let rows = catalog::documents_in_order(client, &uuids).await?;
    Ok(rows.into_iter().map(|r| ContextDocument::new(r, true)).collect())
}

/// Filters of the workflow catalog; `None` means "any".
pub(crate) type WorkflowFilter = catalog::WorkflowSearch;

pub(crate) async fn list_workflows(
    client: &impl Cached,
    f: &WorkflowFilter,
    order: &str,
    limit: i64,
    offset: i64,
) -> Result<Listed<Workflow>, ServiceError> {
    let (workflows, total) = catalog::list_workflows(client, f, order, limit, offset).await?;
    Ok(Listed {
        items: workflows.into_iter().map(Workflow::from).collect(),
        total,
    })
}

pub(crate) async fn get_workflow(client: &impl Cached, uuid: Uuid) -> Result<Workflow, ServiceError> {
    let row = catalog::get_workflow(client, uuid)
        .await?
        .ok_or(ServiceError::NotFound("Workflow"))?;
    Ok(row.into())
}
