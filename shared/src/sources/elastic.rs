//! Elastic Security (spec `sources.md` §3).
//!
//! Accepted bodies: a single alert (nested or flat `_source`), a search hit (`_source`), a
//! top-level array of those, or a batch object `{alerts: [...], results_link, rule}`. Every
//! path is read with the dotted-key lookup of §3.1. An alert is an 8.x alert (`kibana.alert.*`)
//! or a legacy 7.x detection signal (`signal.*`, the `.siem-signals-*` documents); the two
//! differ only in where each field lives (see [`Schema`]).

use serde_json::{Map, Value};

use super::lookup::{first_scalar, lookup, lookup_scalar, lookup_str};
use super::{
    add_multivalue, check_batch_len, clean_description, clean_link, clean_tags, clean_title, finish_batch,
    non_empty_str, rule_ref, scalar_string, string_list, AlertDraft, AlertSource, FieldError, ParseContext, ParseError,
    ParsedItem, SourceName,
};
use crate::domain::indicator::IndicatorType;
use crate::domain::mitre::MitreKind;
use crate::domain::severity::Severity;
use crate::domain::timestamp;

pub(crate) const UNTITLED: &str = "Untitled Elastic Alert";

/// The Elastic source.
#[derive(Debug, Clone, Copy, Default)]
pub struct Elastic;

/// Batch-level context (`results_link`, `rule`) of a `{alerts: [...]}` body.
#[derive(Debug, Default, Clone, Copy)]
struct BatchContext<'a> {
    results_link: Option<&'a str>,
    rule_name: Option<&'a str>,
}

impl AlertSource for Elastic {
    fn name(&self) -> SourceName {
        SourceName::Elastic
    }

    fn parse(&self, body: &Value, ctx: &ParseContext) -> Result<Vec<ParsedItem>, ParseError> {
        match body {
            Value::Array(items) => {
                check_batch_len(items.len())?;
                let batch = BatchContext::default();
                let out = items
                    .iter()
                    .enumerate()
                    .map(|(i, el)| parse_element(el, Some(i), &batch, ctx))
                    .collect();
                finish_batch(out)
            }
            Value::Object(m) => {
                if has_kibana_key(m) || has_signal_key(m) || m.get("_source").is_some_and(Value::is_object) {
                    let item = parse_element(body, None, &BatchContext::default(), ctx);
                    return match item {
                        ParsedItem::Rejected { errors } => Err(ParseError::InvalidPayload(errors)),
                        other => Ok(vec![other]),
                    };
                }
                match m.get("alerts") {
                    Some(Value::Array(items)) => {
                        check_batch_len(items.len())?;
                        let batch = BatchContext {
                            results_link: non_empty_str(m.get("results_link")),
                            rule_name: m.get("rule").and_then(|r| lookup_str(r, "name")),
                        };
                        let out = items
                            .iter()
                            .enumerate()
                            .map(|(i, el)| parse_element(el, Some(i), &batch, ctx))
                            .collect();
                        finish_batch(out)
                    }
                    Some(_) => Err(ParseError::invalid("alerts", "must be an array of alerts")),
                    None => Err(ParseError::invalid(
                        "kibana.alert.rule.name",
                        "missing: not an Elastic alert (kibana.alert.* or legacy signal.*), search hit, array or \
                         {alerts: [...]} batch",
                    )),
                }
            }
            _ => Err(ParseError::invalid(
                "$",
                "expected a JSON object or array of Elastic alerts",
            )),
        }
    }
}

fn has_kibana_key(m: &Map<String, Value>) -> bool {
    m.keys().any(|k| k == "kibana" || k.starts_with("kibana."))
}

/// A legacy 7.x signal document (`signal` or `signal.*` at the top).
fn has_signal_key(m: &Map<String, Value>) -> bool {
    m.keys().any(|k| k == "signal" || k.starts_with("signal."))
}

/// Where each alert field lives in one of the two Elastic alert schemas.
struct Schema {
    rule_name: &'static str,
    rule_uuid: &'static str,
    rule_id: &'static str,
    building_block: &'static str,
    reason: &'static str,
    /// Per-alert severity, then the rule's.
    severity: &'static [&'static str],
    risk_score: &'static [&'static str],
    times: &'static [&'static str],
    description: &'static str,
    tags: &'static str,
    uuid: Option<&'static str>,
    threat: &'static str,
    url: Option<&'static str>,
    rule_type: &'static [&'static str],
    workflow_status: &'static str,
    group_id: &'static str,
}

/// 8.x alerts (`.alerts-security.alerts-*`).
const KIBANA: Schema = Schema {
    rule_name: "kibana.alert.rule.name",
    rule_uuid: "kibana.alert.rule.uuid",
    rule_id: "kibana.alert.rule.rule_id",
    building_block: "kibana.alert.building_block_type",
    reason: "kibana.alert.reason",
    severity: &["kibana.alert.severity", "kibana.alert.rule.severity"],
    risk_score: &["kibana.alert.risk_score", "kibana.alert.rule.risk_score"],
    times: &["kibana.alert.original_time", "kibana.alert.start", "@timestamp"],
    description: "kibana.alert.rule.description",
    tags: "kibana.alert.rule.tags",
    uuid: Some("kibana.alert.uuid"),
    threat: "kibana.alert.rule.threat",
    url: Some("kibana.alert.url"),
    rule_type: &["kibana.alert.rule.type", "kibana.alert.rule.rule_type_id"],
    workflow_status: "kibana.alert.workflow_status",
    group_id: "kibana.alert.group.id",
};

/// 7.x detection signals (`.siem-signals-*`): the rule is `signal.rule` (`id` is the rule's
/// saved-object id, `rule_id` its static id); a signal has no id of its own besides the
/// document `_id`.
const LEGACY: Schema = Schema {
    rule_name: "signal.rule.name",
    rule_uuid: "signal.rule.id",
    rule_id: "signal.rule.rule_id",
    building_block: "signal.rule.building_block_type",
    reason: "signal.reason",
    severity: &["signal.rule.severity"],
    risk_score: &["signal.rule.risk_score"],
    times: &["signal.original_time", "@timestamp"],
    description: "signal.rule.description",
    tags: "signal.rule.tags",
    uuid: None,
    threat: "signal.rule.threat",
    url: None,
    rule_type: &["signal.rule.type"],
    workflow_status: "signal.status",
    group_id: "signal.group.id",
};

/// The schema of a document: 8.x when it names a `kibana.alert.rule`, else legacy when it names
/// a `signal.rule`, else 8.x (whose field names the rejection then reports).
fn schema_of(doc: &Value) -> &'static Schema {
    let names_rule = |s: &Schema| lookup_str(doc, s.rule_name).is_some() || lookup_scalar(doc, s.rule_uuid).is_some();
    if !names_rule(&KIBANA) && names_rule(&LEGACY) {
        &LEGACY
    } else {
        &KIBANA
    }
}

/// Severity table of §3.3 for a severity string.
pub(crate) fn map_severity(s: &str) -> Severity {
    match s.trim().to_ascii_lowercase().as_str() {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        "low" => Severity::Low,
        _ => Severity::Pending,
    }
}

/// Risk-score band of §3.3 (0–21 Low, 22–47 Medium, 48–73 High, 74–100 Critical).
pub(crate) fn risk_band(score: f64) -> Option<Severity> {
    if !score.is_finite() || !(0.0..=100.0).contains(&score) {
        return None;
    }
    Some(if score < 22.0 {
        Severity::Low
    } else if score < 48.0 {
        Severity::Medium
    } else if score < 74.0 {
        Severity::High
    } else {
        Severity::Critical
    })
}

fn number_of(v: &Value) -> Option<(f64, String)> {
    match v {
        Value::Number(n) => n.as_f64().map(|f| (f, n.to_string())),
        Value::String(s) => {
            let t = s.trim();
            t.parse::<f64>().ok().map(|f| (f, t.to_string()))
        }
        _ => None,
    }
}

fn parse_element(el: &Value, index: Option<usize>, batch: &BatchContext<'_>, ctx: &ParseContext) -> ParsedItem {
    let reject = |field: &str, message: &str| ParsedItem::Rejected {
        errors: vec![FieldError::new(index, field, message)],
    };
    let Some(m) = el.as_object() else {
        return reject("$", "must be an object");
    };
    // A search hit: the alert is `_source`; `_id` is the id fallback.
    let (doc, hit_id) = match m.get("_source") {
        Some(src @ Value::Object(_)) if !has_kibana_key(m) && !has_signal_key(m) => (src, non_empty_str(m.get("_id"))),
        _ => (el, None),
    };
    let s = schema_of(doc);

    if lookup(doc, s.building_block).is_some_and(|v| scalar_string(v).is_some()) {
        return ParsedItem::Skipped {
            reason: format!("building block alert ({} is set)", s.building_block),
        };
    }
    let rule_name = lookup_str(doc, s.rule_name);
    let rule_uuid = lookup_scalar(doc, s.rule_uuid);
    if rule_name.is_none() && rule_uuid.is_none() {
        return reject(
            "kibana.alert.rule.name",
            "missing (kibana.alert.rule.name or kibana.alert.rule.uuid is required; legacy signals: \
             signal.rule.name or signal.rule.id)",
        );
    }

    let reason = lookup_str(doc, s.reason);
    let title = rule_name.or(batch.rule_name).or(reason);
    let mut d = AlertDraft::new(SourceName::Elastic, clean_title(title, UNTITLED));

    // Severity: per-alert severity string, else the rule's, else the risk-score band.
    if let Some(sev) = first_scalar(doc, s.severity) {
        d.severity = map_severity(&sev);
        d.severity_original = Some(sev);
    } else if let Some((score, text)) = s.risk_score.iter().find_map(|p| lookup(doc, p).and_then(number_of)) {
        if let Some(sev) = risk_band(score) {
            d.severity = sev;
            d.severity_original = Some(format!("risk_score:{text}"));
        }
    }

    d.occurred_at = s
        .times
        .iter()
        .find_map(|p| lookup(doc, p).and_then(timestamp::parse_value));
    d.description = clean_description(lookup_str(doc, s.description).or(reason));
    d.tags = clean_tags(string_list(lookup(doc, s.tags), None));
    d.source_alert_id = s
        .uuid
        .and_then(|p| lookup_scalar(doc, p))
        .or(hit_id.map(str::to_string));
    d.detection_rule_ref = rule_ref(
        lookup_scalar(doc, s.rule_id).or(rule_uuid),
        rule_name.map(str::to_string),
    );
    read_threat(doc, s.threat, &mut d);
    // ECS threat fields of the event itself (`threat.tactic.*`, `threat.technique.*`).
    read_threat(doc, "threat", &mut d);
    d.deep_link = s
        .url
        .and_then(|p| clean_link(lookup_str(doc, p)))
        .or_else(|| clean_link(batch.results_link));

    // 8.x keeps a per-alert risk score; a legacy signal only the rule's.
    d.set_extra("risk_score", lookup(doc, s.risk_score[0]));
    d.set_extra("reason", lookup(doc, s.reason));
    d.set_extra("rule_type", s.rule_type.iter().find_map(|p| lookup(doc, p)));
    d.set_extra("workflow_status", lookup(doc, s.workflow_status));
    d.set_extra("group_id", lookup(doc, s.group_id));
    d.hosts.add_json(lookup(doc, "host.name"));
    d.hosts.add_json(lookup(doc, "host.hostname"));

    extract_indicators(doc, &mut d);
    ParsedItem::Alert(Box::new(d.finish(el, &[doc], ctx)))
}

/// Indicator fields of §3.4.
const IP_FIELDS: [&str; 7] = [
    "source.ip",
    "destination.ip",
    "client.ip",
    "server.ip",
    "host.ip",
    "related.ip",
    "threat.indicator.ip",
];
const DOMAIN_FIELDS: [&str; 5] = [
    "destination.domain",
    "source.domain",
    "dns.question.name",
    "url.domain",
    "threat.indicator.url.domain",
];
const HASH_PARENTS: [&str; 5] = [
    "process.hash",
    "process.parent.hash",
    "file.hash",
    "dll.hash",
    "threat.indicator.file.hash",
];
const EMAIL_FIELDS: [&str; 4] = [
    "user.email",
    "email.from.address",
    "email.sender.address",
    "email.reply_to.address",
];
const ACCOUNT_FIELDS: [&str; 2] = ["user.name", "user.target.name"];

fn extract_indicators(doc: &Value, d: &mut AlertDraft) {
    let mut add = |kind: IndicatorType, path: &str| {
        if let Some(v) = lookup(doc, path) {
            add_multivalue(&mut d.indicators, kind, v, path);
        }
    };
    for p in IP_FIELDS {
        add(IndicatorType::Ip, p);
    }
    for p in DOMAIN_FIELDS {
        add(IndicatorType::Domain, p);
    }
    if lookup(doc, "url.full").is_some() {
        add(IndicatorType::Url, "url.full");
    } else {
        add(IndicatorType::Url, "url.original");
    }
    add(IndicatorType::Url, "threat.indicator.url.full");
    for parent in HASH_PARENTS {
        for alg in ["md5", "sha1", "sha256"] {
            add(IndicatorType::HashSha256, &format!("{parent}.{alg}"));
        }
    }
    add(IndicatorType::HashSha256, "related.hash");
    for p in EMAIL_FIELDS {
        add(IndicatorType::Email, p);
    }
    for p in ACCOUNT_FIELDS {
        add(IndicatorType::Account, p);
    }
}

// ---------------------------------------------------------------------------------------------
// MITRE: kibana.alert.rule.threat
// ---------------------------------------------------------------------------------------------

fn is_attack_framework(entry: &Value) -> bool {
    match lookup_str(entry, "framework") {
        None => true,
        Some(f) => f.eq_ignore_ascii_case("MITRE ATT&CK"),
    }
}

/// Items of a value that may be an object or an array of objects.
fn objects(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(items)) => items.iter().filter(|i| i.is_object()).collect(),
        Some(o @ Value::Object(_)) => vec![o],
        _ => Vec::new(),
    }
}

/// Strings of a value that may be a string or an array of strings.
fn strings(v: Option<&Value>) -> Vec<Option<String>> {
    match v {
        Some(Value::Array(items)) => items.iter().map(scalar_string).collect(),
        Some(other) => vec![scalar_string(other)],
        None => Vec::new(),
    }
}

/// MITRE under `base`: a rule's `threat` (`kibana.alert.rule.threat`, `signal.rule.threat`) or
/// the event's own ECS `threat` fields, structured or flattened.
fn read_threat(doc: &Value, base: &str, d: &mut AlertDraft) {
    // Structured: threat[] of {framework, tactic{id,name}, technique[]{id,name,subtechnique[]}}.
    let entries = objects(lookup(doc, base));
    for &entry in &entries {
        if !is_attack_framework(entry) {
            continue;
        }
        for t in objects(lookup(entry, "tactic")) {
            d.mitre
                .add_pair(MitreKind::Tactic, lookup_str(t, "id"), lookup_str(t, "name"));
        }
        for tech in objects(lookup(entry, "technique")) {
            d.mitre
                .add_pair(MitreKind::Technique, lookup_str(tech, "id"), lookup_str(tech, "name"));
            for sub in objects(lookup(tech, "subtechnique")) {
                d.mitre
                    .add_pair(MitreKind::Subtechnique, lookup_str(sub, "id"), lookup_str(sub, "name"));
            }
        }
    }
    // Flattened: <base>.tactic.id / .name etc., strings or arrays paired by position (ECS keeps
    // event-level threat fields this way). A flattened `framework` other than ATT&CK is skipped.
    let framework = lookup(doc, &format!("{base}.framework")).and_then(scalar_string);
    if framework.is_some_and(|f| !f.eq_ignore_ascii_case("MITRE ATT&CK")) {
        return;
    }
    let pairs = [
        (MitreKind::Tactic, "tactic"),
        (MitreKind::Technique, "technique"),
        (MitreKind::Subtechnique, "technique.subtechnique"),
    ];
    for (kind, field) in pairs {
        let ids = strings(lookup(doc, &format!("{base}.{field}.id")));
        let names = strings(lookup(doc, &format!("{base}.{field}.name")));
        for i in 0..ids.len().max(names.len()) {
            let id = ids.get(i).cloned().flatten();
            let name = names.get(i).cloned().flatten();
            d.mitre.add_pair(kind, id.as_deref(), name.as_deref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands() {
        assert_eq!(risk_band(0.0), Some(Severity::Low));
        assert_eq!(risk_band(21.0), Some(Severity::Low));
        assert_eq!(risk_band(21.5), Some(Severity::Low));
        assert_eq!(risk_band(22.0), Some(Severity::Medium));
        assert_eq!(risk_band(47.0), Some(Severity::Medium));
        assert_eq!(risk_band(48.0), Some(Severity::High));
        assert_eq!(risk_band(73.0), Some(Severity::High));
        assert_eq!(risk_band(74.0), Some(Severity::Critical));
        assert_eq!(risk_band(100.0), Some(Severity::Critical));
        assert_eq!(risk_band(101.0), None);
        assert_eq!(risk_band(-1.0), None);
        assert_eq!(risk_band(f64::NAN), None);
    }

    #[test]
    fn severity_strings() {
        assert_eq!(map_severity("CRITICAL"), Severity::Critical);
        assert_eq!(map_severity("informational"), Severity::Pending);
    }
}
