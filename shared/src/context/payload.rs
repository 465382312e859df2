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
use crate::domain::severity;
use crate::enrich::geo;
use crate::enrich::providers::iso;

/// Most past alerts listed.
pub const PAST_ALERTS_LIMIT: i64 = 10;
/// Most workflows listed (api spec §5.7).
pub const WORKFLOWS_LIMIT: usize = 20;
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

fn ts(d: Option<DateTime<Utc>>) -> Value {
    d.map(|d| Value::String(iso(d))).unwrap_or(Value::Null)
}

/// Targeting data of every context document (bodies are read only for the ones that apply).
const DOCS_SQL: &str = "SELECT id, uuid, title, document_type, is_global, targeting_rules FROM context_documents";

/// A context document that applies to an alert.
#[derive(Debug, Clone)]
pub struct ApplicableDocument {
    pub id: i64,
    pub uuid: uuid::Uuid,
    pub title: String,
    pub document_type: String,
}

/// The documents of [`DOCS_SQL`] rows that apply to `facts`, in payload order (api spec §5.6):
/// global first, then targeted; inside each group by type, then title. A non-global document
/// without rules matches nothing.
fn applicable(docs: &[tokio_postgres::Row], facts: &AlertFacts) -> Vec<ApplicableDocument> {
    let mut out: Vec<(bool, ApplicableDocument)> = docs
        .iter()
        .filter_map(|d| {
            let is_global: bool = d.get(4);
            let rules = TargetingRules::from_stored(d.get::<_, Option<Value>>(5).as_ref());
            let matched = super::targeting::evaluate(rules.as_ref(), facts) == Verdict::Matched;
            (is_global || matched).then(|| {
                (
                    !is_global,
                    ApplicableDocument {
                        id: d.get(0),
                        uuid: d.get(1),
                        title: d.get(2),
                        document_type: d.get(3),
                    },
                )
            })
        })
        .collect();
    out.sort_by(|x, y| (x.0, &x.1.document_type, &x.1.title).cmp(&(y.0, &y.1.document_type, &y.1.title)));
    out.into_iter().map(|(_, d)| d).collect()
}

/// The context documents that apply to alert `alert_id` without building its payload; `None`
/// when the alert does not exist.
pub async fn applicable_documents(
    client: &impl Cached,
    alert_id: i64,
) -> Result<Option<Vec<ApplicableDocument>>, DbError> {
    let (facts, docs) = tokio::join!(
        super::targeting::facts_of(client, alert_id),
        stmt::query(client, DOCS_SQL, &[]),
    );
    let Some(facts) = facts? else { return Ok(None) };
    Ok(Some(applicable(&docs?, &facts)))
}

/// Builds the payload of alert `alert_id`; `None` when the alert does not exist.
#[allow(
    clippy::too_many_lines,
    reason = "long but linear; a split along its phases is issue #11's next step"
)]
pub async fn build(client: &impl Cached, alert_id: i64, opts: &PayloadOptions) -> Result<Option<Value>, DbError> {
    let alert_sql = "SELECT a.uuid, a.title, a.severity, a.source_name, a.status, a.created_at, a.occurred_at,
                a.tags, a.mitre, COALESCE(a.malice_override, a.malice), a.enrichment_status, a.enrichment_summary,
                a.description, a.deep_link, a.source_alert_id,
                r.uuid, r.name, r.source_rule_id, r.severity, r.priority, r.mitre_tactics, r.mitre_techniques || r.mitre_subtechniques,
                r.false_positive_tags, r.blind_spots, r.goal, r.documentation, a.extra -> 'indicator_truncation'
         FROM alerts a LEFT JOIN detection_rules r ON r.id = a.detection_rule_id WHERE a.id = $1";
    let ind_sql = "SELECT i.id, i.uuid, i.type, i.value, i.first_seen, i.last_seen, i.malice, i.malice_source,
                l.enrichment_state, l.provider_status
         FROM alert_indicators l JOIN indicators i ON i.id = l.indicator_id
         WHERE l.alert_id = $1 ORDER BY i.type, i.value";
    let res_sql = "SELECT r.indicator_id, r.provider, r.block, r.fetched_at
         FROM enrichment_results r JOIN alert_indicators l ON l.indicator_id = r.indicator_id
         WHERE l.alert_id = $1 AND r.status IN ('found', 'not_found')";
    let past_sql = "SELECT p.uuid, p.title, p.status, p.close_classification, p.closed_at, p.occurred_at,
                array_agg(DISTINCT i.value ORDER BY i.value),
                (SELECT string_agg(f.summary, E'\\n\\n' ORDER BY f.posted_at) FROM findings f WHERE f.alert_id = p.id)
         FROM alert_indicators me
         JOIN alert_indicators o ON o.indicator_id = me.indicator_id AND o.alert_id <> me.alert_id
         JOIN alerts p ON p.id = o.alert_id
         JOIN indicators i ON i.id = me.indicator_id
         WHERE me.alert_id = $1
           AND (p.occurred_at, p.id) < (SELECT occurred_at, id FROM alerts WHERE id = $1)
         GROUP BY p.id
         ORDER BY p.occurred_at DESC, p.id DESC
         LIMIT $2";
    // Bodies are fetched only for the documents that apply (they can be 1 MiB each).
    let docs_sql = DOCS_SQL;
    let wf_sql = "SELECT uuid, name, description, workflow_type, indicator_types, risk_level, approval_mode,
                documentation, targeting_rules
         FROM workflows WHERE state = 'active' ORDER BY created_at, id";
    let id_param = [(&alert_id as _, Type::INT8)];
    let past_params = [(&alert_id as _, Type::INT8), (&PAST_ALERTS_LIMIT as _, Type::INT8)];
    let (a, inds, results, past, docs, wfs) = tokio::join!(
        stmt::query_opt(client, alert_sql, &id_param),
        stmt::query(client, ind_sql, &id_param),
        stmt::query(client, res_sql, &id_param),
        stmt::query(client, past_sql, &past_params),
        stmt::query(client, docs_sql, &[]),
        stmt::query(client, wf_sql, &[]),
    );
    let Some(a) = a? else { return Ok(None) };
    let (inds, results, past, docs, wfs) = (inds?, results?, past?, docs?, wfs?);

    // ---- alert ----
    let alert_uuid: uuid::Uuid = a.get(0);
    let mut alert = Map::new();
    put(&mut alert, "uuid", alert_uuid.to_string());
    put(&mut alert, "title", a.get::<_, String>(1));
    put(&mut alert, "severity", a.get::<_, String>(2));
    put(&mut alert, "source", a.get::<_, String>(3));
    put(&mut alert, "status", a.get::<_, String>(4));
    put(&mut alert, "created_at", ts(Some(a.get(5))));
    put(&mut alert, "occurred_at", ts(Some(a.get(6))));
    let tags: Vec<String> = a.get(7);
    put(&mut alert, "tags", json!(tags));
    put(&mut alert, "malice", a.get::<_, String>(9));
    put(&mut alert, "enrichment_status", a.get::<_, String>(10));
    let summary: Value = a.get(11);
    let mut enrichment = Map::new();
    for k in ["succeeded", "failed", "skipped"] {
        put(&mut enrichment, k, summary.get(k).cloned().unwrap_or(Value::Null));
    }
    put(&mut alert, "enrichment", Value::Object(enrichment));
    put(&mut alert, "description", a.get::<_, Option<String>>(12));
    put(&mut alert, "deep_link", a.get::<_, Option<String>>(13));
    put(&mut alert, "source_alert_id", a.get::<_, String>(14));
    // The ingest cap left indicators out: the agent must know the list is not the whole alert.
    put(&mut alert, "indicators_truncated", a.get::<_, Option<Value>>(26));
    let mitre: Value = a.get(8);
    let ids_of = |k: &str| super::targeting::mitre_ids(&mitre, k);

    // ---- indicators ----
    let mut by_indicator: HashMap<i64, ProviderBlocks> = HashMap::new();
    for r in &results {
        let block = match r.get::<_, Option<Value>>(2) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        by_indicator
            .entry(r.get(0))
            .or_default()
            .insert(r.get(1), (block, r.get(3)));
    }
    let now = Utc::now();
    let mut indicators = Vec::new();
    let mut types_present: Vec<String> = Vec::new();
    for r in &inds {
        let id: i64 = r.get(0);
        let kind: String = r.get(2);
        if !types_present.contains(&kind) {
            types_present.push(kind.clone());
        }
        let mut m = Map::new();
        put(&mut m, "type", kind.clone());
        put(&mut m, "value", r.get::<_, String>(3));
        put(&mut m, "uuid", r.get::<_, uuid::Uuid>(1).to_string());
        put(&mut m, "first_seen", ts(Some(r.get(4))));
        put(&mut m, "last_seen", ts(Some(r.get(5))));
        put(&mut m, "malice", r.get::<_, String>(6));
        if r.get::<_, String>(7) == "analyst" {
            put(&mut m, "malice_source", "analyst");
        }
        let ps: Value = r.get(9);
        let results = by_indicator.remove(&id).unwrap_or_default();
        let mut enrichment = Map::new();
        for (provider, (block, fetched_at)) in &results {
            let mut b = block.clone();
            // Provider verdicts live in the provenance map; the indicator carries the verdict.
            b.remove("malice");
            m.insert(provider.clone(), Value::Object(b));
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
            enrichment.insert(provider.clone(), Value::Object(e));
        }
        // Failures and skips recorded for this alert (and providers still pending at a deadline).
        if let Some(obj) = ps.as_object() {
            for (provider, v) in obj {
                if enrichment.contains_key(provider) {
                    continue;
                }
                let mut e = Map::new();
                for k in ["status", "error_code", "error_message", "retry_after_seconds"] {
                    put(&mut e, k, v.get(k).cloned().unwrap_or(Value::Null));
                }
                enrichment.insert(provider.clone(), Value::Object(e));
            }
        }
        if r.get::<_, String>(8) == "pending" {
            put(&mut m, "enrichment_state", "pending");
        }
        if kind == "ip" {
            let vt = results.get("virustotal").map(|(b, _)| b);
            let ab = results.get("abuseipdb").map(|(b, _)| b);
            if let Some(g) = geo::geo_block(
                vt.and_then(|b| b.get("country")).and_then(Value::as_str),
                ab.and_then(|b| b.get("country_code")).and_then(Value::as_str),
                ab.and_then(|b| b.get("country_name")).and_then(Value::as_str),
            ) {
                m.insert("geo".into(), Value::Object(g));
            }
        }
        put(&mut m, "enrichment", Value::Object(enrichment));
        indicators.push(Value::Object(m));
    }

    // ---- detection rule ----
    let mut rule = Map::new();
    let rule_name: Option<String> = a.get(16);
    if rule_name.is_some() {
        put(
            &mut rule,
            "uuid",
            a.get::<_, Option<uuid::Uuid>>(15).map(|u| u.to_string()),
        );
        put(&mut rule, "name", rule_name.clone());
        put(&mut rule, "rule_id", a.get::<_, Option<String>>(17));
        put(&mut rule, "severity", a.get::<_, Option<String>>(18));
        put(&mut rule, "priority", a.get::<_, Option<String>>(19));
        put(&mut rule, "mitre_tactics", json!(a.get::<_, Vec<String>>(20)));
        put(&mut rule, "mitre_techniques", json!(a.get::<_, Vec<String>>(21)));
        put(&mut rule, "false_positive_tags", json!(a.get::<_, Vec<String>>(22)));
        put(&mut rule, "blind_spots", json!(a.get::<_, Vec<String>>(23)));
        put(&mut rule, "goal", a.get::<_, Option<String>>(24));
        put(&mut rule, "documentation", a.get::<_, Option<String>>(25));
    }

    // ---- past alerts ----
    let past_alerts: Vec<Value> = past
        .iter()
        .map(|p| {
            let mut m = Map::new();
            put(&mut m, "uuid", p.get::<_, uuid::Uuid>(0).to_string());
            put(&mut m, "title", p.get::<_, String>(1));
            put(&mut m, "status", p.get::<_, String>(2));
            put(&mut m, "classification", p.get::<_, Option<String>>(3));
            put(&mut m, "closed_at", ts(p.get(4)));
            put(&mut m, "occurred_at", ts(Some(p.get(5))));
            put(&mut m, "indicators", json!(p.get::<_, Vec<String>>(6)));
            put(&mut m, "analyst_notes", p.get::<_, Option<String>>(7));
            Value::Object(m)
        })
        .collect();

    // ---- context documents and workflows ----
    let facts = AlertFacts {
        source_name: a.get(3),
        severity: severity::from_label(Some(a.get::<_, &str>(2))),
        tags,
        title: a.get(1),
        detection_rule_id: a.get(17),
        detection_rule_name: rule_name,
        mitre_tactics: ids_of("tactics"),
        mitre_techniques: [ids_of("techniques"), ids_of("subtechniques")].concat(),
        indicator_types: types_present.clone(),
    };
    let applicable = applicable(&docs, &facts);
    let doc_ids: Vec<i64> = applicable.iter().map(|d| d.id).collect();
    let bodies: HashMap<i64, String> = if doc_ids.is_empty() {
        HashMap::new()
    } else {
        stmt::query(
            client,
            "SELECT id, content FROM context_documents WHERE id = ANY($1)",
            &[(&doc_ids, Type::INT8_ARRAY)],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    let context_documents: Vec<Value> = applicable
        .into_iter()
        .filter_map(|d| {
            // A document deleted between the two reads is left out.
            let content = bodies.get(&d.id)?;
            let mut m = Map::new();
            put(&mut m, "uuid", d.uuid.to_string());
            put(&mut m, "title", d.title);
            put(&mut m, "type", d.document_type);
            put(&mut m, "content", content.clone());
            Some(Value::Object(m))
        })
        .collect();

    let mut workflows = Vec::new();
    for w in &wfs {
        let rules = TargetingRules::from_stored(w.get::<_, Option<Value>>(8).as_ref());
        if super::targeting::evaluate(rules.as_ref(), &facts) == Verdict::NotMatched {
            continue;
        }
        let wanted: Vec<String> = w.get(4);
        if !wanted.is_empty() && !wanted.iter().any(|t| types_present.contains(t)) {
            continue;
        }
        let mut m = Map::new();
        put(&mut m, "uuid", w.get::<_, uuid::Uuid>(0).to_string());
        put(&mut m, "name", w.get::<_, String>(1));
        put(&mut m, "description", w.get::<_, Option<String>>(2));
        put(&mut m, "workflow_type", w.get::<_, Option<String>>(3));
        put(&mut m, "indicator_types", json!(wanted));
        put(&mut m, "risk_level", w.get::<_, String>(5));
        put(&mut m, "approval_mode", w.get::<_, String>(6));
        put(&mut m, "documentation", w.get::<_, Option<String>>(7));
        workflows.push(Value::Object(m));
        if workflows.len() == WORKFLOWS_LIMIT {
            break;
        }
    }

    // ---- assemble ----
    let u = alert_uuid.to_string();
    let mut p = Map::new();
    p.insert("event".into(), json!("alert.enriched"));
    p.insert("alert".into(), Value::Object(alert));
    put(&mut p, "indicators", Value::Array(indicators));
    put(&mut p, "detection_rule", Value::Object(rule));
    put(&mut p, "past_alerts", Value::Array(past_alerts));
    put(&mut p, "context_documents", Value::Array(context_documents));
    put(&mut p, "workflows", Value::Array(workflows));
    // Where an agent acts: update the alert (status, classification) and post findings. The
    // indicators and this payload are already in hand.
    p.insert(
        "links".into(),
        json!({
            "alert": format!("/v1/alerts/{u}"),
            "findings": format!("/v1/alerts/{u}/findings"),
        }),
    );
    let mut payload = Value::Object(p);
    if let Some(max) = opts.max_bytes {
        trim(&mut payload, max);
    }
    Ok(Some(payload))
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
