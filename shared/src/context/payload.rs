//! The agent payload ("What Your Agent Receives" in the product README): one compact document
//! per alert with the enriched indicators, the detection rule's documentation, past alerts that
//! share an indicator, the context documents and workflows that apply, and the ids an agent needs
//! to act through the API. No nulls, no raw vendor JSON, keys in a fixed (sorted) order.
//!
//! A byte budget trims in a fixed order, only as far as needed, and says what it trimmed
//! (`_trimmed`): context document bodies shortened, past alerts (oldest first), workflow
//! documentation, the detection rule's documentation shortened, context document bodies
//! dropped, per-provider provenance reduced to status and verdict, provider blocks reduced to
//! `found` and link, workflows reduced to name and approval. Ids and verdicts are never dropped,
//! so a very small budget can still be exceeded.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use tokio_postgres::types::Type;

use super::targeting::{AlertFacts, TargetingRules, Verdict};
use crate::db::stmt::{self, Cached};
use crate::db::DbError;
use crate::domain::payload::{
    AgentPayload, Links, PastAlert, PayloadAlert, PayloadDocument, PayloadIndicator, PayloadRule, PayloadWorkflow,
};
use crate::domain::severity;
use crate::enrich::geo;
use crate::enrich::providers::iso;

/// Most past alerts listed.
pub(crate) const PAST_ALERTS_LIMIT: i64 = 10;
/// Most workflows listed (api spec §5.7).
pub(crate) const WORKFLOWS_LIMIT: usize = 20;
/// What a trimmed text keeps.
const TRIMMED_TEXT_CHARS: usize = 280;

/// Stored provider blocks of one indicator with their fetch time, by provider name.
type ProviderBlocks = BTreeMap<String, (Map<String, Value>, DateTime<Utc>)>;

#[derive(Debug, Clone, Default)]
pub struct PayloadOptions {
    /// The agent's byte budget for the serialized payload.
    pub max_bytes: Option<usize>,
}

fn put(m: &mut Map<String, Value>, k: &str, v: impl Into<Value>) {
    let v = v.into();
    let empty = match &v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if !empty {
        m.insert(k.to_string(), v);
    }
}

/// Targeting data of every context document (bodies are read only for the ones that apply).
const DOCS_SQL: &str = "SELECT id, uuid, title, document_type, is_global, targeting_rules FROM context_documents";

/// A context document that applies to an alert.
#[derive(Debug, Clone)]
pub(crate) struct ApplicableDocument {
    pub id: i64,
    pub uuid: uuid::Uuid,
    pub title: String,
    pub document_type: String,
}

/// The documents of [`DOCS_SQL`] rows that apply to `facts`, in payload order (api spec §5.6):
/// global first, then targeted; inside each group by type, then title. A non-global document
/// without rules matches nothing.
fn applicable(
    docs: &[tokio_postgres::Row],
    facts: &AlertFacts,
) -> Result<Vec<ApplicableDocument>, tokio_postgres::Error> {
    let mut out: Vec<(bool, ApplicableDocument)> = Vec::new();
    for d in docs {
        let is_global: bool = d.try_get("is_global")?;
        let rules = TargetingRules::from_stored(d.try_get::<_, Option<Value>>("targeting_rules")?.as_ref());
        let matched = super::targeting::evaluate(rules.as_ref(), facts) == Verdict::Matched;
        if is_global || matched {
            let doc = ApplicableDocument {
                id: d.try_get("id")?,
                uuid: d.try_get("uuid")?,
                title: d.try_get("title")?,
                document_type: d.try_get("document_type")?,
            };
            out.push((!is_global, doc));
        }
    }
    out.sort_by(|x, y| (x.0, &x.1.document_type, &x.1.title).cmp(&(y.0, &y.1.document_type, &y.1.title)));
    Ok(out.into_iter().map(|(_, d)| d).collect())
}

/// The context documents that apply to alert `alert_id` without building its payload; `None`
/// when the alert does not exist.
pub(crate) async fn applicable_documents(
    client: &impl Cached,
    alert_id: i64,
) -> Result<Option<Vec<ApplicableDocument>>, DbError> {
    let (facts, docs) = tokio::join!(
        super::targeting::facts_of(client, alert_id),
        stmt::query(client, DOCS_SQL, &[]),
    );
    let Some(facts) = facts? else { return Ok(None) };
    Ok(Some(applicable(&docs?, &facts)?))
}

/// What the database holds for one payload, read by column name; [`assemble`] shapes it.
#[derive(Debug, Clone)]
pub struct PayloadRows {
    pub alert: AlertRow,
    /// Ordered by type, then value.
    pub indicators: Vec<IndicatorRow>,
    /// Stored provider results (found or not found) of those indicators.
    pub results: Vec<ResultRow>,
    /// Newest first, at most [`PAST_ALERTS_LIMIT`].
    pub past: Vec<PastRow>,
    /// The documents that apply, in payload order, with their bodies.
    pub documents: Vec<DocumentRow>,
    /// The workflows that apply, at most [`WORKFLOWS_LIMIT`].
    pub workflows: Vec<WorkflowRow>,
    /// Provenance ages are counted from here.
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct AlertRow {
    pub uuid: uuid::Uuid,
    pub title: String,
    pub severity: String,
    pub source_name: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub occurred_at: DateTime<Utc>,
    pub tags: Vec<String>,
    pub malice: String,
    pub enrichment_status: String,
    /// `{succeeded, failed, skipped}` counts.
    pub enrichment_summary: Value,
    pub description: Option<String>,
    pub deep_link: Option<String>,
    pub source_alert_id: String,
    pub indicator_truncation: Option<Value>,
    pub rule: Option<RuleRow>,
}

#[derive(Debug, Clone)]
pub struct RuleRow {
    pub uuid: Option<uuid::Uuid>,
    pub name: String,
    pub source_rule_id: Option<String>,
    pub severity: Option<String>,
    pub priority: Option<String>,
    pub mitre_tactics: Vec<String>,
    pub mitre_techniques: Vec<String>,
    pub false_positive_tags: Vec<String>,
    pub blind_spots: Vec<String>,
    pub goal: Option<String>,
    pub documentation: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IndicatorRow {
    pub id: i64,
    pub uuid: uuid::Uuid,
    pub kind: String,
    pub value: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub malice: String,
    pub malice_source: String,
    /// The link's state for this alert (`pending`, `done`, `failed`, `skipped`).
    pub enrichment_state: String,
    /// Failures and skips recorded on the link, by provider.
    pub provider_status: Value,
}

#[derive(Debug, Clone)]
pub struct ResultRow {
    pub indicator_id: i64,
    pub provider: String,
    pub block: Option<Value>,
    pub fetched_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct PastRow {
    pub uuid: uuid::Uuid,
    pub title: String,
    pub status: String,
    pub close_classification: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
    pub occurred_at: DateTime<Utc>,
    pub shared_indicators: Vec<String>,
    pub analyst_notes: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DocumentRow {
    pub uuid: uuid::Uuid,
    pub title: String,
    pub document_type: String,
    pub content: String,
}

#[derive(Debug, Clone)]
pub struct WorkflowRow {
    pub uuid: uuid::Uuid,
    pub name: String,
    pub description: Option<String>,
    pub workflow_type: Option<String>,
    pub indicator_types: Vec<String>,
    pub risk_level: String,
    pub approval_mode: String,
    pub documentation: Option<String>,
}

impl AlertRow {
    fn from_row(a: &tokio_postgres::Row) -> Self {
        AlertRow {
            uuid: a.get("uuid"),
            title: a.get("title"),
            severity: a.get("severity"),
            source_name: a.get("source_name"),
            status: a.get("status"),
            created_at: a.get("created_at"),
            occurred_at: a.get("occurred_at"),
            tags: a.get("tags"),
            malice: a.get("malice"),
            enrichment_status: a.get("enrichment_status"),
            enrichment_summary: a.get("enrichment_summary"),
            description: a.get("description"),
            deep_link: a.get("deep_link"),
            source_alert_id: a.get("source_alert_id"),
            indicator_truncation: a.get("indicator_truncation"),
            rule: a.get::<_, Option<String>>("rule_name").map(|name| RuleRow {
                uuid: a.get("rule_uuid"),
                name,
                source_rule_id: a.get("source_rule_id"),
                severity: a.get("rule_severity"),
                priority: a.get("rule_priority"),
                mitre_tactics: a.get("rule_tactics"),
                mitre_techniques: a.get("rule_techniques"),
                false_positive_tags: a.get("false_positive_tags"),
                blind_spots: a.get("blind_spots"),
                goal: a.get("goal"),
                documentation: a.get("documentation"),
            }),
        }
    }
}

impl IndicatorRow {
    fn from_row(r: &tokio_postgres::Row) -> Self {
        IndicatorRow {
            id: r.get("id"),
            uuid: r.get("uuid"),
            kind: r.get("type"),
            value: r.get("value"),
            first_seen: r.get("first_seen"),
            last_seen: r.get("last_seen"),
            malice: r.get("malice"),
            malice_source: r.get("malice_source"),
            enrichment_state: r.get("enrichment_state"),
            provider_status: r.get("provider_status"),
        }
    }
}

impl ResultRow {
    fn from_row(r: &tokio_postgres::Row) -> Self {
        ResultRow {
            indicator_id: r.get("indicator_id"),
            provider: r.get("provider"),
            block: r.get("block"),
            fetched_at: r.get("fetched_at"),
        }
    }
}

impl PastRow {
    fn from_row(p: &tokio_postgres::Row) -> Self {
        PastRow {
            uuid: p.get("uuid"),
            title: p.get("title"),
            status: p.get("status"),
            close_classification: p.get("close_classification"),
            closed_at: p.get("closed_at"),
            occurred_at: p.get("occurred_at"),
            shared_indicators: p.get("shared_indicators"),
            analyst_notes: p.get("analyst_notes"),
        }
    }
}

impl WorkflowRow {
    fn from_row(w: &tokio_postgres::Row) -> Self {
        WorkflowRow {
            uuid: w.get("uuid"),
            name: w.get("name"),
            description: w.get("description"),
            workflow_type: w.get("workflow_type"),
            indicator_types: w.get("indicator_types"),
            risk_level: w.get("risk_level"),
            approval_mode: w.get("approval_mode"),
            documentation: w.get("documentation"),
        }
    }
}

const ALERT_SQL: &str = "SELECT a.uuid, a.title, a.severity, a.source_name, a.status, a.created_at, a.occurred_at,
            a.tags, a.mitre, COALESCE(a.malice_override, a.malice) AS malice, a.enrichment_status,
            a.enrichment_summary, a.description, a.deep_link, a.source_alert_id,
            a.extra -> 'indicator_truncation' AS indicator_truncation,
            r.uuid AS rule_uuid, r.name AS rule_name, r.source_rule_id, r.severity AS rule_severity,
            r.priority AS rule_priority, r.mitre_tactics AS rule_tactics,
            r.mitre_techniques || r.mitre_subtechniques AS rule_techniques,
            r.false_positive_tags, r.blind_spots, r.goal, r.documentation
     FROM alerts a LEFT JOIN detection_rules r ON r.id = a.detection_rule_id WHERE a.id = $1";
const INDICATORS_SQL: &str =
    "SELECT i.id, i.uuid, i.type, i.value, i.first_seen, i.last_seen, i.malice, i.malice_source,
            l.enrichment_state, l.provider_status
     FROM alert_indicators l JOIN indicators i ON i.id = l.indicator_id
     WHERE l.alert_id = $1 ORDER BY i.type, i.value";
const RESULTS_SQL: &str = "SELECT r.indicator_id, r.provider, r.block, r.fetched_at
     FROM enrichment_results r JOIN alert_indicators l ON l.indicator_id = r.indicator_id
     WHERE l.alert_id = $1 AND r.status IN ('found', 'not_found')";
const PAST_SQL: &str = "SELECT p.uuid, p.title, p.status, p.close_classification, p.closed_at, p.occurred_at,
            array_agg(DISTINCT i.value ORDER BY i.value) AS shared_indicators,
            (SELECT string_agg(f.summary, E'\\n\\n' ORDER BY f.posted_at) FROM findings f WHERE f.alert_id = p.id)
                AS analyst_notes
     FROM alert_indicators me
     JOIN alert_indicators o ON o.indicator_id = me.indicator_id AND o.alert_id <> me.alert_id
     JOIN alerts p ON p.id = o.alert_id
     JOIN indicators i ON i.id = me.indicator_id
     WHERE me.alert_id = $1
       AND (p.occurred_at, p.id) < (SELECT occurred_at, id FROM alerts WHERE id = $1)
     GROUP BY p.id
     ORDER BY p.occurred_at DESC, p.id DESC
     LIMIT $2";
const WORKFLOWS_SQL: &str = "SELECT uuid, name, description, workflow_type, indicator_types, risk_level, approval_mode,
            documentation, targeting_rules
     FROM workflows WHERE state = 'active' ORDER BY created_at, id";

/// Builds the payload of alert `alert_id`; `None` when the alert does not exist.
pub async fn build(client: &impl Cached, alert_id: i64, opts: &PayloadOptions) -> Result<Option<Value>, DbError> {
    let Some(rows) = fetch(client, alert_id).await? else {
        return Ok(None);
    };
    let mut payload = serde_json::to_value(assemble(rows)).map_err(|e| DbError::Config(e.to_string()))?;
    if let Some(max) = opts.max_bytes {
        trim(&mut payload, max);
    }
    Ok(Some(payload))
}

/// Reads everything the payload of `alert_id` shows (six queries pipelined, then the bodies of
/// the documents that apply); the targeting of documents and workflows happens here.
pub async fn fetch(client: &impl Cached, alert_id: i64) -> Result<Option<PayloadRows>, DbError> {
    let id_param = [(&alert_id as _, Type::INT8)];
    let past_params = [(&alert_id as _, Type::INT8), (&PAST_ALERTS_LIMIT as _, Type::INT8)];
    let (a, inds, results, past, docs, wfs) = tokio::join!(
        stmt::query_opt(client, ALERT_SQL, &id_param),
        stmt::query(client, INDICATORS_SQL, &id_param),
        stmt::query(client, RESULTS_SQL, &id_param),
        stmt::query(client, PAST_SQL, &past_params),
        // Bodies are fetched only for the documents that apply (they can be 1 MiB each).
        stmt::query(client, DOCS_SQL, &[]),
        stmt::query(client, WORKFLOWS_SQL, &[]),
    );
    let Some(a) = a? else { return Ok(None) };
    let (inds, results, past, docs, wfs) = (inds?, results?, past?, docs?, wfs?);

    let alert = AlertRow::from_row(&a);
    let rule_name = alert.rule.as_ref().map(|r| r.name.clone());
    let indicators: Vec<IndicatorRow> = inds.iter().map(IndicatorRow::from_row).collect();
    let mut types_present: Vec<String> = Vec::new();
    for i in &indicators {
        if !types_present.contains(&i.kind) {
            types_present.push(i.kind.clone());
        }
    }

    // Context documents and workflows apply by the alert's facts.
    let mitre: Value = a.get("mitre");
    let ids_of = |k: &str| super::targeting::mitre_ids(&mitre, k);
    let facts = AlertFacts {
        source_name: alert.source_name.clone(),
        severity: severity::from_label(Some(&alert.severity)),
        tags: alert.tags.clone(),
        title: alert.title.clone(),
        detection_rule_id: a.get("source_rule_id"),
        detection_rule_name: rule_name,
        mitre_tactics: ids_of("tactics"),
        mitre_techniques: [ids_of("techniques"), ids_of("subtechniques")].concat(),
        indicator_types: types_present.clone(),
    };
    let applicable = applicable(&docs, &facts)?;
    let doc_ids: Vec<i64> = applicable.iter().map(|d| d.id).collect();
    let mut bodies: HashMap<i64, String> = if doc_ids.is_empty() {
        HashMap::new()
    } else {
        stmt::query(
            client,
            "SELECT id, content FROM context_documents WHERE id = ANY($1)",
            &[(&doc_ids, Type::INT8_ARRAY)],
        )
        .await?
        .iter()
        .map(|r| (r.get("id"), r.get("content")))
        .collect()
    };
    let documents = applicable
        .into_iter()
        // A document deleted between the two reads is left out.
        .filter_map(|d| {
            Some(DocumentRow {
                content: bodies.remove(&d.id)?,
                uuid: d.uuid,
                title: d.title,
                document_type: d.document_type,
            })
        })
        .collect();
    let workflows = wfs
        .iter()
        .filter(|w| {
            let rules = TargetingRules::from_stored(w.get::<_, Option<Value>>("targeting_rules").as_ref());
            let wanted: Vec<String> = w.get("indicator_types");
            super::targeting::evaluate(rules.as_ref(), &facts) != Verdict::NotMatched
                && (wanted.is_empty() || wanted.iter().any(|t| types_present.contains(t)))
        })
        .take(WORKFLOWS_LIMIT)
        .map(WorkflowRow::from_row)
        .collect();
    Ok(Some(PayloadRows {
        alert,
        indicators,
        results: results.iter().map(ResultRow::from_row).collect(),
        past: past.iter().map(PastRow::from_row).collect(),
        documents,
        workflows,
        now: Utc::now(),
    }))
}

/// Shapes the rows into the payload; no I/O, so every rule of the payload is testable on
/// hand-made rows.
pub(crate) fn assemble(rows: PayloadRows) -> AgentPayload {
    let PayloadRows {
        alert: a,
        indicators,
        results,
        past,
        documents,
        workflows,
        now,
    } = rows;
    let mut enrichment = Map::new();
    for k in ["succeeded", "failed", "skipped"] {
        put(
            &mut enrichment,
            k,
            a.enrichment_summary.get(k).cloned().unwrap_or(Value::Null),
        );
    }
    let u = a.uuid.to_string();
    let alert = PayloadAlert {
        uuid: u.clone(),
        title: a.title,
        severity: a.severity,
        source: a.source_name,
        status: a.status,
        created_at: Some(iso(a.created_at)),
        occurred_at: Some(iso(a.occurred_at)),
        tags: a.tags,
        malice: a.malice,
        enrichment_status: a.enrichment_status,
        enrichment,
        description: a.description,
        deep_link: a.deep_link,
        source_alert_id: a.source_alert_id,
        indicators_truncated: a.indicator_truncation,
    };
    let detection_rule = a.rule.map(|r| PayloadRule {
        uuid: r.uuid.map(|u| u.to_string()),
        name: Some(r.name),
        rule_id: r.source_rule_id,
        severity: r.severity,
        priority: r.priority,
        mitre_tactics: r.mitre_tactics,
        mitre_techniques: r.mitre_techniques,
        false_positive_tags: r.false_positive_tags,
        blind_spots: r.blind_spots,
        goal: r.goal,
        documentation: r.documentation,
    });
    AgentPayload {
        event: "alert.enriched",
        alert,
        indicators: indicators_of(indicators, &results, now),
        detection_rule,
        past_alerts: past
            .into_iter()
            .map(|p| PastAlert {
                uuid: p.uuid.to_string(),
                title: p.title,
                status: p.status,
                classification: p.close_classification,
                closed_at: p.closed_at.map(iso),
                occurred_at: Some(iso(p.occurred_at)),
                indicators: p.shared_indicators,
                analyst_notes: p.analyst_notes,
            })
            .collect(),
        context_documents: documents
            .into_iter()
            .map(|d| PayloadDocument {
                uuid: d.uuid.to_string(),
                title: d.title,
                document_type: d.document_type,
                content: d.content,
            })
            .collect(),
        workflows: workflows
            .into_iter()
            .map(|w| PayloadWorkflow {
                uuid: w.uuid.to_string(),
                name: w.name,
                description: w.description,
                workflow_type: w.workflow_type,
                indicator_types: w.indicator_types,
                risk_level: w.risk_level,
                approval_mode: w.approval_mode,
                documentation: w.documentation,
            })
            .collect(),
        links: Links {
            alert: format!("/v1/alerts/{u}"),
            findings: format!("/v1/alerts/{u}/findings"),
        },
    }
}

/// Each indicator with its provider blocks, their provenance (verdict, fetch time, age when not
/// fresh; or the failure recorded on the link) and, for an IP, the geo block.
fn indicators_of(rows: Vec<IndicatorRow>, results: &[ResultRow], now: DateTime<Utc>) -> Vec<PayloadIndicator> {
    let mut by_indicator: HashMap<i64, ProviderBlocks> = HashMap::new();
    for r in results {
        let block = match &r.block {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        by_indicator
            .entry(r.indicator_id)
            .or_default()
            .insert(r.provider.clone(), (block, r.fetched_at));
    }
    rows.into_iter()
        .map(|r| {
            let found = by_indicator.remove(&r.id).unwrap_or_default();
            let mut providers = BTreeMap::new();
            let mut enrichment = BTreeMap::new();
            for (provider, (block, fetched_at)) in &found {
                let mut b = block.clone();
                // Provider verdicts live in the provenance map; the indicator carries the verdict.
                b.remove("malice");
                providers.insert(provider.clone(), b);
                // Success is implied by the provider block; the age only when it is not fresh.
                let mut e = Map::new();
                e.insert(
                    "malice".into(),
                    block.get("malice").cloned().unwrap_or(json!("Pending")),
                );
                e.insert("enriched_at".into(), json!(iso(*fetched_at)));
                let age = (now - *fetched_at).num_seconds();
                if age > 0 {
                    e.insert("age_seconds".into(), json!(age));
                }
                enrichment.insert(provider.clone(), e);
            }
            // Failures and skips recorded for this alert (and providers still pending at a deadline).
            if let Some(obj) = r.provider_status.as_object() {
                for (provider, v) in obj {
                    if enrichment.contains_key(provider) {
                        continue;
                    }
                    let mut e = Map::new();
                    for k in ["status", "error_code", "error_message", "retry_after_seconds"] {
                        put(&mut e, k, v.get(k).cloned().unwrap_or(Value::Null));
                    }
                    enrichment.insert(provider.clone(), e);
                }
            }
            let geo = (r.kind == "ip")
                .then(|| {
                    let vt = found.get("virustotal").map(|(b, _)| b);
                    let ab = found.get("abuseipdb").map(|(b, _)| b);
                    geo::geo_block(
                        vt.and_then(|b| b.get("country")).and_then(Value::as_str),
                        ab.and_then(|b| b.get("country_code")).and_then(Value::as_str),
                        ab.and_then(|b| b.get("country_name")).and_then(Value::as_str),
                    )
                })
                .flatten();
            PayloadIndicator {
                kind: r.kind,
                value: r.value,
                uuid: r.uuid.to_string(),
                first_seen: Some(iso(r.first_seen)),
                last_seen: Some(iso(r.last_seen)),
                malice: r.malice,
                malice_source: (r.malice_source == "analyst").then_some("analyst"),
                enrichment_state: (r.enrichment_state == "pending").then_some("pending"),
                geo,
                enrichment,
                providers,
            }
        })
        .collect()
}

fn size(v: &Value) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX)
}

fn shorten(s: &str) -> Option<String> {
    (s.chars().count() > TRIMMED_TEXT_CHARS)
        .then(|| format!("{}… [trimmed]", s.chars().take(TRIMMED_TEXT_CHARS).collect::<String>()))
}

/// Trims `payload` toward `max` bytes in the documented order, recording each step in
/// `_trimmed`. Ids, verdicts and indicator blocks are kept even if the budget is still exceeded.
#[allow(
    clippy::too_many_lines,
    reason = "long but linear; a split along its phases is issue #11's next step"
)]
pub fn trim(payload: &mut Value, max: usize) {
    let mut steps: Vec<&str> = Vec::new();
    let over = |p: &Value, steps: &[&str]| size(p) + 64 + 48 * steps.len() > max;
    if !over(payload, &steps) {
        return;
    }
    // 1. Context document bodies.
    if let Some(docs) = payload.get_mut("context_documents").and_then(Value::as_array_mut) {
        let mut changed = false;
        for d in docs.iter_mut() {
            if let Some(short) = d.get("content").and_then(Value::as_str).and_then(shorten) {
                d["content"] = Value::String(short);
                changed = true;
            }
        }
        if changed {
            steps.push("context_documents.content");
        }
    }
    // 2. Past alerts, oldest first (they are listed newest first).
    if over(payload, &steps) {
        let mut dropped = false;
        while over(payload, &steps) {
            let Some(past) = payload.get_mut("past_alerts").and_then(Value::as_array_mut) else {
                break;
            };
            if past.pop().is_none() {
                break;
            }
            dropped = true;
        }
        if dropped {
            steps.push("past_alerts");
        }
    }
    // 3. Workflow documentation.
    if over(payload, &steps) {
        if let Some(wfs) = payload.get_mut("workflows").and_then(Value::as_array_mut) {
            for w in wfs.iter_mut() {
                if let Some(o) = w.as_object_mut() {
                    o.remove("documentation");
                }
            }
            steps.push("workflows.documentation");
        }
    }
    // 4. The detection rule's documentation.
    if over(payload, &steps) {
        if let Some(doc) = payload
            .get("detection_rule")
            .and_then(|r| r.get("documentation"))
            .and_then(Value::as_str)
            .and_then(shorten)
        {
            payload["detection_rule"]["documentation"] = Value::String(doc);
            steps.push("detection_rule.documentation");
        }
    }
    // 5. Context document bodies altogether (titles and ids stay).
    if over(payload, &steps) {
        if let Some(docs) = payload.get_mut("context_documents").and_then(Value::as_array_mut) {
            for d in docs.iter_mut() {
                if let Some(o) = d.as_object_mut() {
                    o.remove("content");
                }
            }
            steps.push("context_documents");
        }
    }
    // 6. Per-provider provenance beyond status and verdict.
    if over(payload, &steps) {
        for_each_indicator(payload, |ind| {
            if let Some(prov) = ind.get_mut("enrichment").and_then(Value::as_object_mut) {
                for (_, p) in prov.iter_mut() {
                    if let Some(p) = p.as_object_mut() {
                        p.retain(|k, _| k == "status" || k == "malice");
                    }
                }
            }
        });
        steps.push("indicators.enrichment");
    }
    // 7. Provider detail: each provider block keeps `found` and its link.
    if over(payload, &steps) {
        for_each_indicator(payload, |ind| {
            for (k, v) in ind.iter_mut() {
                if INDICATOR_KEYS.contains(&k.as_str()) {
                    continue;
                }
                if let Some(block) = v.as_object_mut() {
                    block.retain(|k, _| k == "found" || k == "link");
                }
            }
        });
        steps.push("indicators.providers");
    }
    // 8. Workflow descriptions (names and ids stay).
    if over(payload, &steps) {
        if let Some(wfs) = payload.get_mut("workflows").and_then(Value::as_array_mut) {
            for w in wfs.iter_mut() {
                if let Some(o) = w.as_object_mut() {
                    o.retain(|k, _| matches!(k.as_str(), "uuid" | "name" | "approval_mode" | "risk_level"));
                }
            }
            steps.push("workflows");
        }
    }
    if let Some(o) = payload.as_object_mut() {
        o.insert("_trimmed".into(), json!(steps));
    }
}

/// Keys of an indicator that are not provider blocks.
const INDICATOR_KEYS: &[&str] = &[
    "uuid",
    "type",
    "value",
    "malice",
    "malice_source",
    "first_seen",
    "last_seen",
    "geo",
    "enrichment",
];

fn for_each_indicator(payload: &mut Value, mut f: impl FnMut(&mut Map<String, Value>)) {
    if let Some(inds) = payload.get_mut("indicators").and_then(Value::as_array_mut) {
        for i in inds.iter_mut() {
            if let Some(o) = i.as_object_mut() {
                f(o);
            }
        }
    }
}

/// [`assemble`] on hand-made rows: no database.
#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_767_000_000 + s, 0).single().expect("time")
    }

    fn uuid(n: u128) -> uuid::Uuid {
        uuid::Uuid::from_u128(n)
    }

    fn rows() -> PayloadRows {
        PayloadRows {
            alert: AlertRow {
                uuid: uuid(1),
                title: "Impossible travel".into(),
                severity: "High".into(),
                source_name: "elastic".into(),
                status: "Open".into(),
                created_at: at(10),
                occurred_at: at(0),
                tags: vec!["identity".into()],
                malice: "Malicious".into(),
                enrichment_status: "Enriched".into(),
                enrichment_summary: json!({"succeeded": 3, "failed": 1, "skipped": null}),
                description: Some(String::new()),
                deep_link: None,
                source_alert_id: "abc".into(),
                indicator_truncation: None,
                rule: Some(RuleRow {
                    uuid: Some(uuid(2)),
                    name: "Impossible Travel".into(),
                    source_rule_id: Some("r-1".into()),
                    severity: None,
                    priority: Some("P2".into()),
                    mitre_tactics: vec!["TA0001".into()],
                    mitre_techniques: vec![],
                    false_positive_tags: vec![],
                    blind_spots: vec![],
                    goal: Some("Catch stolen sessions".into()),
                    documentation: None,
                }),
            },
            indicators: vec![
                IndicatorRow {
                    id: 7,
                    uuid: uuid(7),
                    kind: "domain".into(),
                    value: "evil.example".into(),
                    first_seen: at(0),
                    last_seen: at(5),
                    malice: "Suspicious".into(),
                    malice_source: "analyst".into(),
                    enrichment_state: "pending".into(),
                    provider_status: json!({"virustotal": {"status": "failed", "error_code": "rate_limited",
                        "error_message": null, "retry_after_seconds": 60}}),
                },
                IndicatorRow {
                    id: 8,
                    uuid: uuid(8),
                    kind: "ip".into(),
                    value: "185.220.101.47".into(),
                    first_seen: at(0),
                    last_seen: at(5),
                    malice: "Malicious".into(),
                    malice_source: "enrichment".into(),
                    enrichment_state: "done".into(),
                    provider_status: json!({}),
                },
            ],
            results: vec![
                ResultRow {
                    indicator_id: 8,
                    provider: "virustotal".into(),
                    block: Some(json!({"found": true, "malice": "Malicious", "country": "DE", "malicious": 12})),
                    fetched_at: at(100),
                },
                ResultRow {
                    indicator_id: 8,
                    provider: "abuseipdb".into(),
                    block: Some(json!({"found": true, "malice": "Suspicious", "abuse_confidence_score": 80})),
                    fetched_at: at(40),
                },
            ],
            past: vec![PastRow {
                uuid: uuid(3),
                title: "Earlier travel".into(),
                status: "Closed".into(),
                close_classification: Some("True Positive".into()),
                closed_at: None,
                occurred_at: at(-100),
                shared_indicators: vec!["185.220.101.47".into()],
                analyst_notes: None,
            }],
            documents: vec![DocumentRow {
                uuid: uuid(4),
                title: "Identity IR plan".into(),
                document_type: "ir_plan".into(),
                content: "Revoke sessions.".into(),
            }],
            workflows: vec![WorkflowRow {
                uuid: uuid(5),
                name: "Revoke sessions".into(),
                description: None,
                workflow_type: Some("identity".into()),
                indicator_types: vec![],
                risk_level: "high".into(),
                approval_mode: "always".into(),
                documentation: Some(String::new()),
            }],
            now: at(100),
        }
    }

    /// No null, empty string, empty list or empty object anywhere (the provider blocks and
    /// provenance entries are objects with content here).
    fn assert_compact(v: &Value, path: &str) {
        match v {
            Value::Null => panic!("null at {path}"),
            Value::String(s) => assert!(!s.is_empty(), "empty string at {path}"),
            Value::Array(a) => {
                assert!(!a.is_empty(), "empty list at {path}");
                for (i, x) in a.iter().enumerate() {
                    assert_compact(x, &format!("{path}[{i}]"));
                }
            }
            Value::Object(o) => {
                assert!(!o.is_empty(), "empty object at {path}");
                for (k, x) in o {
                    assert_compact(x, &format!("{path}.{k}"));
                }
            }
            _ => {}
        }
    }

    #[test]
    fn assemble_shapes_every_part_without_nulls() {
        let p = serde_json::to_value(assemble(rows())).expect("json");
        assert_compact(&p, "$");
        assert_eq!(p["event"], "alert.enriched");
        let a = &p["alert"];
        assert_eq!(a["source"], "elastic");
        assert_eq!(a["enrichment"], json!({"succeeded": 3, "failed": 1}));
        assert!(a.get("description").is_none() && a.get("deep_link").is_none());
        assert_eq!(p["detection_rule"]["rule_id"], "r-1");
        assert!(p["detection_rule"].get("mitre_techniques").is_none());

        // Indicators keep the stored order; the analyst verdict and a pending link show.
        let dom = &p["indicators"][0];
        assert_eq!(dom["malice_source"], "analyst");
        assert_eq!(dom["enrichment_state"], "pending");
        assert_eq!(
            dom["enrichment"]["virustotal"],
            json!({"status": "failed", "error_code": "rate_limited", "retry_after_seconds": 60})
        );
        assert!(dom.get("geo").is_none(), "geo is for IPs");

        // Provider blocks sit beside the fixed fields without their verdict; the verdict and
        // the fetch time are in the provenance, the age only for the stale result.
        let ip = &p["indicators"][1];
        assert!(ip.get("malice_source").is_none() && ip.get("enrichment_state").is_none());
        assert_eq!(
            ip["virustotal"],
            json!({"found": true, "country": "DE", "malicious": 12})
        );
        assert_eq!(ip["enrichment"]["virustotal"]["malice"], "Malicious");
        assert!(ip["enrichment"]["virustotal"].get("age_seconds").is_none());
        assert_eq!(ip["enrichment"]["abuseipdb"]["age_seconds"], 60);
        assert_eq!(ip["geo"]["country_code"], "DE");

        assert_eq!(p["past_alerts"][0]["classification"], "True Positive");
        assert!(p["past_alerts"][0].get("closed_at").is_none());
        assert_eq!(p["context_documents"][0]["type"], "ir_plan");
        assert!(p["workflows"][0].get("documentation").is_none());
        assert_eq!(
            p["links"],
            json!({"alert": format!("/v1/alerts/{}", uuid(1)), "findings": format!("/v1/alerts/{}/findings", uuid(1))})
        );
    }

    #[test]
    fn an_alert_without_rule_indicators_or_context_is_still_a_payload() {
        let mut r = rows();
        r.alert.rule = None;
        r.indicators.clear();
        r.results.clear();
        r.past.clear();
        r.documents.clear();
        r.workflows.clear();
        let p = serde_json::to_value(assemble(r)).expect("json");
        assert_compact(&p, "$");
        let keys: Vec<&str> = p.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(keys, ["alert", "event", "links"], "sorted keys, nothing empty");
    }
}
