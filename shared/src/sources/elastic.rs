//! Elastic Security (spec `sources.md` §3).
//!
//! Accepted bodies: a single alert (nested or flat `_source`), a search hit (`_source`), a
//! top-level array of those, or a batch object `{alerts: [...], results_link, rule}`. Every
//! path is read with the dotted-key lookup of §3.1.

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

pub const UNTITLED: &str = "Untitled Elastic Alert";

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
                if has_kibana_key(m) || m.get("_source").is_some_and(Value::is_object) {
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
                        "missing: not an Elastic alert, search hit, array or {alerts: [...]} batch",
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

/// Severity table of §3.3 for a severity string.
pub fn map_severity(s: &str) -> Severity {
    match s.trim().to_ascii_lowercase().as_str() {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        "low" => Severity::Low,
        _ => Severity::Pending,
    }
}

/// Risk-score band of §3.3 (0–21 Low, 22–47 Medium, 48–73 High, 74–100 Critical).
pub fn risk_band(score: f64) -> Option<Severity> {
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
        Some(src @ Value::Object(_)) if !has_kibana_key(m) => (src, non_empty_str(m.get("_id"))),
        _ => (el, None),
    };

    if lookup(doc, "kibana.alert.building_block_type").is_some_and(|v| scalar_string(v).is_some()) {
        return ParsedItem::Skipped {
            reason: "building block alert (kibana.alert.building_block_type is set)".into(),
        };
    }
    let rule_name = lookup_str(doc, "kibana.alert.rule.name");
    let rule_uuid = lookup_scalar(doc, "kibana.alert.rule.uuid");
    if rule_name.is_none() && rule_uuid.is_none() {
        return reject(
            "kibana.alert.rule.name",
            "missing (kibana.alert.rule.name or kibana.alert.rule.uuid is required)",
        );
    }

    let reason = lookup_str(doc, "kibana.alert.reason");
    let title = rule_name.or(batch.rule_name).or(reason);
    let mut d = AlertDraft::new(SourceName::Elastic, clean_title(title, UNTITLED));

    // Severity: per-alert severity string, else the rule's, else the risk-score band.
    if let Some(sev) = first_scalar(doc, &["kibana.alert.severity", "kibana.alert.rule.severity"]) {
        d.severity = map_severity(&sev);
        d.severity_original = Some(sev);
    } else if let Some((score, text)) = ["kibana.alert.risk_score", "kibana.alert.rule.risk_score"]
        .iter()
        .find_map(|p| lookup(doc, p).and_then(number_of))
    {
        if let Some(sev) = risk_band(score) {
            d.severity = sev;
            d.severity_original = Some(format!("risk_score:{text}"));
        }
    }

    d.occurred_at = ["kibana.alert.original_time", "kibana.alert.start", "@timestamp"]
        .iter()
        .find_map(|p| lookup(doc, p).and_then(timestamp::parse_value));
    d.description = clean_description(lookup_str(doc, "kibana.alert.rule.description").or(reason));
    d.tags = clean_tags(string_list(lookup(doc, "kibana.alert.rule.tags"), None));
    d.source_alert_id = lookup_scalar(doc, "kibana.alert.uuid").or(hit_id.map(str::to_string));
    d.detection_rule_ref = rule_ref(
        lookup_scalar(doc, "kibana.alert.rule.rule_id").or(rule_uuid),
        rule_name.map(str::to_string),
    );
    read_threat(doc, &mut d);
    d.deep_link = clean_link(lookup_str(doc, "kibana.alert.url")).or_else(|| clean_link(batch.results_link));

    d.set_extra("risk_score", lookup(doc, "kibana.alert.risk_score"));
    d.set_extra("reason", lookup(doc, "kibana.alert.reason"));
    d.set_extra(
        "rule_type",
        lookup(doc, "kibana.alert.rule.type").or_else(|| lookup(doc, "kibana.alert.rule.rule_type_id")),
    );
    d.set_extra("workflow_status", lookup(doc, "kibana.alert.workflow_status"));
    d.set_extra("group_id", lookup(doc, "kibana.alert.group.id"));
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

fn read_threat(doc: &Value, d: &mut AlertDraft) {
    // Structured: threat[] of {framework, tactic{id,name}, technique[]{id,name,subtechnique[]}}.
    for entry in objects(lookup(doc, "kibana.alert.rule.threat")) {
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
    // Flattened: kibana.alert.rule.threat.tactic.id / .name etc., strings or arrays paired by
    // position.
    let pairs = [
        (MitreKind::Tactic, "kibana.alert.rule.threat.tactic"),
        (MitreKind::Technique, "kibana.alert.rule.threat.technique"),
        (
            MitreKind::Subtechnique,
            "kibana.alert.rule.threat.technique.subtechnique",
        ),
    ];
    for (kind, base) in pairs {
        let ids = strings(lookup(doc, &format!("{base}.id")));
        let names = strings(lookup(doc, &format!("{base}.name")));
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
