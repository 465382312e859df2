//! Targeting rules (api spec §5.6): which context documents, workflows and agents apply to an
//! alert. `{"match_any": [rule…], "match_all": [rule…]}`, each rule `{field, op, value}`.
//!
//! - `match_any` is OR, `match_all` is AND; with both, both must pass.
//! - Null rules, or only empty arrays, are "no rules" ([`Verdict::NoRules`]); the caller decides
//!   what that means (a global document applies anyway, a targeted one does not, an agent filter
//!   passes).
//! - A missing field, an alert value that is absent, an unknown field or op is false, never an
//!   error at match time; [`TargetingRules::parse`] rejects them when rules are written.
//!
//! Fields: `source_name`, `severity`, `tags`, `title`, `detection_rule_id`,
//! `detection_rule_name`, `mitre_tactic`, `mitre_technique`, `indicator_type`. Ops: `eq` (string
//! equality), `in` (the value is a list holding the field, or any of a list field), `contains` (a
//! list field holds the value; a text field contains it, case-insensitive), `gte` / `lte`
//! (severity by rank, Pending 0 … Critical 5).

use serde_json::Value;

use crate::domain::severity::{self, Severity};

/// Largest serialized rule set accepted.
pub(crate) const MAX_RULES_BYTES: usize = 64 * 1024;

pub(crate) const FIELDS: &[&str] = &[
    "source_name",
    "severity",
    "tags",
    "title",
    "detection_rule_id",
    "detection_rule_name",
    "mitre_tactic",
    "mitre_technique",
    "indicator_type",
];

pub(crate) const OPS: &[&str] = &["eq", "in", "contains", "gte", "lte"];

/// One condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub field: String,
    pub op: String,
    pub value: Value,
}

/// A parsed rule set.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct TargetingRules {
    pub match_any: Vec<Rule>,
    pub match_all: Vec<Rule>,
}

/// The outcome of matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    NoRules,
    Matched,
    NotMatched,
}

/// Why a rule set was refused when written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub(crate) struct RulesError {
    pub path: String,
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> RulesError {
    RulesError {
        path: path.into(),
        message: message.into(),
    }
}

/// What rules are matched against.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AlertFacts {
    pub source_name: String,
    pub severity: Severity,
    pub tags: Vec<String>,
    pub title: String,
    pub detection_rule_id: Option<String>,
    pub detection_rule_name: Option<String>,
    /// MITRE ids (`TA0001`, `T1078`, `T1078.004`).
    pub mitre_tactics: Vec<String>,
    pub mitre_techniques: Vec<String>,
    /// Indicator types present on the alert (`ip`, `account`, …).
    pub indicator_types: Vec<String>,
}

impl TargetingRules {
    /// Parses and validates stored or submitted rules. `null` → `Ok(None)` (no rules).
    pub fn parse(v: &Value) -> Result<Option<TargetingRules>, RulesError> {
        if v.is_null() {
            return Ok(None);
        }
        let size = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
        if size > MAX_RULES_BYTES {
            return Err(err("targeting_rules", format!("larger than {MAX_RULES_BYTES} bytes")));
        }
        let obj = v
            .as_object()
            .ok_or_else(|| err("targeting_rules", "must be an object with match_any and/or match_all"))?;
        if let Some(k) = obj.keys().find(|k| *k != "match_any" && *k != "match_all") {
            return Err(err(
                format!("targeting_rules.{k}"),
                "unknown key (match_any or match_all)",
            ));
        }
        if obj.is_empty() {
            return Err(err("targeting_rules", "needs match_any and/or match_all"));
        }
        let list = |key: &str| -> Result<Vec<Rule>, RulesError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .enumerate()
                    .map(|(i, r)| parse_rule(&format!("targeting_rules.{key}[{i}]"), r))
                    .collect(),
                Some(_) => Err(err(format!("targeting_rules.{key}"), "must be a list of rules")),
            }
        };
        let rules = TargetingRules {
            match_any: list("match_any")?,
            match_all: list("match_all")?,
        };
        Ok(if rules.match_any.is_empty() && rules.match_all.is_empty() {
            None
        } else {
            Some(rules)
        })
    }

    /// Reads stored rules leniently: anything unreadable counts as rules that match nothing, so
    /// a bad row can never widen who receives a document.
    pub fn from_stored(v: Option<&Value>) -> Option<TargetingRules> {
        let v = v?;
        match TargetingRules::parse(v) {
            Ok(r) => r,
            Err(_) => Some(TargetingRules {
                match_any: Vec::new(),
                match_all: vec![Rule {
                    field: "_invalid".into(),
                    op: "eq".into(),
                    value: Value::Null,
                }],
            }),
        }
    }

    pub fn evaluate(&self, facts: &AlertFacts) -> Verdict {
        if self.match_any.is_empty() && self.match_all.is_empty() {
            return Verdict::NoRules;
        }
        let any_ok = self.match_any.is_empty() || self.match_any.iter().any(|r| rule_matches(r, facts));
        let all_ok = self.match_all.iter().all(|r| rule_matches(r, facts));
        if any_ok && all_ok {
            Verdict::Matched
        } else {
            Verdict::NotMatched
        }
    }
}

/// MITRE ids listed under `key` (`tactics`, `techniques`, `subtechniques`) of an alert's `mitre`
/// column; entries are objects with an `id` or bare id strings.
pub(crate) fn mitre_ids(mitre: &Value, key: &str) -> Vec<String> {
    mitre
        .get(key)
        .and_then(Value::as_array)
        .map(|xs| {
            xs.iter()
                .filter_map(|x| x.get("id").and_then(Value::as_str).or_else(|| x.as_str()))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The facts of a stored alert, for matching agents; `None` when it does not exist.
pub(crate) async fn facts_of(
    client: &impl crate::db::stmt::Cached,
    alert_id: i64,
) -> Result<Option<AlertFacts>, tokio_postgres::Error> {
    let row = crate::db::stmt::query_opt(
        client,
        "SELECT a.source_name, a.severity, a.tags, a.title, r.source_rule_id AS detection_rule_id,
                r.name AS detection_rule_name, a.mitre,
                ARRAY(SELECT DISTINCT i.type FROM alert_indicators l JOIN indicators i ON i.id = l.indicator_id
                      WHERE l.alert_id = a.id ORDER BY 1) AS indicator_types
         FROM alerts a LEFT JOIN detection_rules r ON r.id = a.detection_rule_id WHERE a.id = $1",
        &[(&alert_id, tokio_postgres::types::Type::INT8)],
    )
    .await?;
    row.map(|r| {
        let mitre: Value = r.try_get("mitre")?;
        Ok(AlertFacts {
            source_name: r.try_get("source_name")?,
            severity: severity::from_label(Some(r.try_get::<_, &str>("severity")?)),
            tags: r.try_get("tags")?,
            title: r.try_get("title")?,
            detection_rule_id: r.try_get("detection_rule_id")?,
            detection_rule_name: r.try_get("detection_rule_name")?,
            mitre_tactics: mitre_ids(&mitre, "tactics"),
            mitre_techniques: [mitre_ids(&mitre, "techniques"), mitre_ids(&mitre, "subtechniques")].concat(),
            indicator_types: r.try_get("indicator_types")?,
        })
    })
    .transpose()
}

/// Matches optional rules (`None` = no rules).
pub(crate) fn evaluate(rules: Option<&TargetingRules>, facts: &AlertFacts) -> Verdict {
    rules.map_or(Verdict::NoRules, |r| r.evaluate(facts))
}

fn parse_rule(path: &str, v: &Value) -> Result<Rule, RulesError> {
    let o = v
        .as_object()
        .ok_or_else(|| err(path, "a rule is an object {field, op, value}"))?;
    let field = o
        .get("field")
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("{path}.field"), "required string"))?;
    if !FIELDS.contains(&field) {
        return Err(err(
            format!("{path}.field"),
            format!("unknown field (one of {})", FIELDS.join(", ")),
        ));
    }
    let op = o
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("{path}.op"), "required string"))?;
    if !OPS.contains(&op) {
        return Err(err(
            format!("{path}.op"),
            format!("unknown op (one of {})", OPS.join(", ")),
        ));
    }
    let value = o
        .get("value")
        .cloned()
        .ok_or_else(|| err(format!("{path}.value"), "required"))?;
    match op {
        "in" if !value.is_array() => return Err(err(format!("{path}.value"), "`in` takes a list")),
        "gte" | "lte" => {
            if field != "severity" {
                return Err(err(format!("{path}.op"), "gte/lte compare severity only"));
            }
            let ok = value.as_str().is_some_and(|s| severity_of(s).is_some());
            if !ok {
                return Err(err(format!("{path}.value"), "a severity level (Pending … Critical)"));
            }
        }
        "eq" | "contains" if !value.is_string() => {
            return Err(err(format!("{path}.value"), "a string"));
        }
        _ => {}
    }
    Ok(Rule {
        field: field.to_string(),
        op: op.to_string(),
        value,
    })
}

fn severity_of(s: &str) -> Option<Severity> {
    let sev = severity::from_label(Some(s));
    // from_label maps unknown labels to Pending; only accept a real "pending".
    (sev != Severity::Pending || s.trim().eq_ignore_ascii_case("pending")).then_some(sev)
}

/// The MITRE id of `T1078 - Valid Accounts` style strings, uppercased.
fn mitre_id(s: &str) -> String {
    s.split(" - ").next().unwrap_or(s).trim().to_ascii_uppercase()
}

enum FieldValue<'a> {
    Text(&'a str),
    List(Vec<String>),
}

fn field_value<'a>(facts: &'a AlertFacts, field: &str) -> Option<FieldValue<'a>> {
    Some(match field {
        "source_name" => FieldValue::Text(&facts.source_name),
        "severity" => FieldValue::Text(facts.severity.as_str()),
        "title" => FieldValue::Text(&facts.title),
        "detection_rule_id" => FieldValue::Text(facts.detection_rule_id.as_deref()?),
        "detection_rule_name" => FieldValue::Text(facts.detection_rule_name.as_deref()?),
        "tags" => FieldValue::List(facts.tags.clone()),
        "mitre_tactic" => FieldValue::List(facts.mitre_tactics.iter().map(|t| mitre_id(t)).collect()),
        // A sub-technique also counts as its parent (`T1566.002` matches a rule on `T1566`), for
        // alerts stored before parents were derived at ingest and for facts built elsewhere.
        "mitre_technique" => FieldValue::List(
            crate::domain::mitre::with_parent_techniques(&facts.mitre_techniques, &[])
                .iter()
                .map(|t| mitre_id(t))
                .collect(),
        ),
        "indicator_type" => FieldValue::List(facts.indicator_types.clone()),
        _ => return None,
    })
}

fn rule_matches(rule: &Rule, facts: &AlertFacts) -> bool {
    let Some(field) = field_value(facts, &rule.field) else {
        return false;
    };
    let is_mitre = rule.field.starts_with("mitre_");
    let norm = |s: &str| if is_mitre { mitre_id(s) } else { s.to_string() };
    match (rule.op.as_str(), field) {
        ("eq", FieldValue::Text(t)) => rule.value.as_str().is_some_and(|v| v == t),
        ("in", FieldValue::Text(t)) => list_of(&rule.value).contains(&t),
        ("in", FieldValue::List(items)) => {
            let wanted: Vec<String> = list_of(&rule.value).iter().map(|v| norm(v)).collect();
            items.iter().any(|i| wanted.contains(i))
        }
        ("contains", FieldValue::List(items)) => rule.value.as_str().is_some_and(|v| items.contains(&norm(v))),
        ("contains", FieldValue::Text(t)) => rule
            .value
            .as_str()
            .is_some_and(|v| !v.is_empty() && t.to_lowercase().contains(&v.to_lowercase())),
        ("gte" | "lte", FieldValue::Text(_)) if rule.field == "severity" => {
            let Some(bound) = rule.value.as_str().and_then(severity_of) else {
                return false;
            };
            if rule.op == "gte" {
                facts.severity.rank() >= bound.rank()
            } else {
                facts.severity.rank() <= bound.rank()
            }
        }
        _ => false,
    }
}

fn list_of(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts() -> AlertFacts {
        AlertFacts {
            source_name: "elastic".into(),
            severity: Severity::High,
            tags: vec!["identity".into(), "vpn".into()],
            title: "Impossible Travel Detected".into(),
            detection_rule_id: Some("impossible-travel-v1".into()),
            detection_rule_name: Some("Impossible Travel".into()),
            mitre_tactics: vec!["TA0001 - Initial Access".into(), "TA0006".into()],
            mitre_techniques: vec!["T1078".into()],
            indicator_types: vec!["ip".into(), "account".into()],
        }
    }

    fn verdict(rules: Value) -> Verdict {
        let r = TargetingRules::parse(&rules).expect("valid rules");
        evaluate(r.as_ref(), &facts())
    }

    #[test]
    #[allow(clippy::too_many_lines, reason = "a table test: one row per case")]
    fn the_matrix() {
        use Verdict::*;
        let cases: Vec<(Value, Verdict)> = vec![
            (json!(null), NoRules),
            (json!({"match_any": [], "match_all": []}), NoRules),
            (
                json!({"match_any": [{"field": "source_name", "op": "eq", "value": "elastic"}]}),
                Matched,
            ),
            (
                json!({"match_any": [{"field": "source_name", "op": "eq", "value": "Elastic"}]}),
                NotMatched,
            ),
            (
                json!({"match_any": [{"field": "source_name", "op": "in", "value": ["splunk", "elastic"]}]}),
                Matched,
            ),
            (
                json!({"match_all": [{"field": "severity", "op": "gte", "value": "High"}]}),
                Matched,
            ),
            (
                json!({"match_all": [{"field": "severity", "op": "gte", "value": "critical"}]}),
                NotMatched,
            ),
            (
                json!({"match_all": [{"field": "severity", "op": "lte", "value": "Medium"}]}),
                NotMatched,
            ),
            (
                json!({"match_all": [{"field": "severity", "op": "lte", "value": "High"}]}),
                Matched,
            ),
            (
                json!({"match_all": [{"field": "severity", "op": "in", "value": ["High", "Critical"]}]}),
                Matched,
            ),
            (
                json!({"match_all": [{"field": "tags", "op": "contains", "value": "vpn"}]}),
                Matched,
            ),
            (
                json!({"match_all": [{"field": "tags", "op": "contains", "value": "phishing"}]}),
                NotMatched,
            ),
            (
                json!({"match_all": [{"field": "tags", "op": "in", "value": ["phishing", "identity"]}]}),
                Matched,
            ),
            (
                json!({"match_all": [{"field": "title", "op": "contains", "value": "impossible travel"}]}),
                Matched,
            ),
            (
                json!({"match_all": [{"field": "detection_rule_id", "op": "eq", "value": "impossible-travel-v1"}]}),
                Matched,
            ),
            (
                json!({"match_all": [{"field": "detection_rule_name", "op": "in", "value": ["Brute Force"]}]}),
                NotMatched,
            ),
            (
                json!({"match_all": [{"field": "mitre_tactic", "op": "contains", "value": "TA0001"}]}),
                Matched,
            ),
            (
                json!({"match_all": [{"field": "mitre_tactic", "op": "contains", "value": "ta0006 - Credential Access"}]}),
                Matched,
            ),
            (
                json!({"match_all": [{"field": "mitre_technique", "op": "in", "value": ["T1110", "T1078"]}]}),
                Matched,
            ),
            (
                json!({"match_all": [{"field": "indicator_type", "op": "contains", "value": "account"}]}),
                Matched,
            ),
            (
                json!({"match_all": [{"field": "indicator_type", "op": "contains", "value": "hash_sha256"}]}),
                NotMatched,
            ),
            // OR inside match_any, AND inside match_all, both must pass.
            (
                json!({"match_any": [{"field": "source_name", "op": "eq", "value": "splunk"},
                                      {"field": "tags", "op": "contains", "value": "identity"}],
                       "match_all": [{"field": "severity", "op": "gte", "value": "Medium"},
                                     {"field": "indicator_type", "op": "contains", "value": "ip"}]}),
                Matched,
            ),
            (
                json!({"match_any": [{"field": "source_name", "op": "eq", "value": "splunk"}],
                       "match_all": [{"field": "severity", "op": "gte", "value": "Medium"}]}),
                NotMatched,
            ),
            (
                json!({"match_all": [{"field": "severity", "op": "gte", "value": "Medium"},
                                     {"field": "tags", "op": "contains", "value": "nope"}]}),
                NotMatched,
            ),
        ];
        for (rules, want) in cases {
            assert_eq!(verdict(rules.clone()), want, "{rules}");
        }
    }

    #[test]
    fn a_rule_on_a_technique_matches_an_alert_naming_only_its_sub_technique() {
        let mut f = facts();
        f.mitre_techniques = vec!["T1566.002 - Spearphishing Link".into()];
        for (rules, want) in [
            (
                json!({"match_all": [{"field": "mitre_technique", "op": "contains", "value": "T1566"}]}),
                Verdict::Matched,
            ),
            (
                json!({"match_all": [{"field": "mitre_technique", "op": "in", "value": ["t1566"]}]}),
                Verdict::Matched,
            ),
            (
                json!({"match_all": [{"field": "mitre_technique", "op": "contains", "value": "T1566.002"}]}),
                Verdict::Matched,
            ),
            (
                json!({"match_all": [{"field": "mitre_technique", "op": "contains", "value": "T1566.001"}]}),
                Verdict::NotMatched,
            ),
            (
                json!({"match_all": [{"field": "mitre_technique", "op": "contains", "value": "T1078"}]}),
                Verdict::NotMatched,
            ),
        ] {
            let r = TargetingRules::parse(&rules).expect("valid").expect("rules");
            assert_eq!(r.evaluate(&f), want, "{rules}");
        }
    }

    #[test]
    fn absent_alert_values_are_false() {
        let mut f = facts();
        f.detection_rule_id = None;
        let r =
            TargetingRules::parse(&json!({"match_all": [{"field": "detection_rule_id", "op": "eq", "value": "x"}]}))
                .unwrap()
                .unwrap();
        assert_eq!(r.evaluate(&f), Verdict::NotMatched);
    }

    #[test]
    fn bad_rules_are_refused_when_written() {
        for bad in [
            json!([]),
            json!({}),
            json!({"match_some": []}),
            json!({"match_any": {"field": "tags"}}),
            json!({"match_any": [{"field": "colour", "op": "eq", "value": "red"}]}),
            json!({"match_any": [{"field": "tags", "op": "regex", "value": ".*"}]}),
            json!({"match_any": [{"field": "tags", "op": "in", "value": "vpn"}]}),
            json!({"match_any": [{"field": "title", "op": "gte", "value": "High"}]}),
            json!({"match_any": [{"field": "severity", "op": "gte", "value": "Severe"}]}),
            json!({"match_any": [{"field": "severity", "op": "eq"}]}),
            json!({"match_any": [{"field": "source_name", "op": "eq", "value": 3}]}),
        ] {
            assert!(TargetingRules::parse(&bad).is_err(), "{bad}");
        }
        let huge = json!({"match_any": [{"field": "title", "op": "contains", "value": "x".repeat(70_000)}]});
        assert!(TargetingRules::parse(&huge).is_err());
    }

    #[test]
    fn unreadable_stored_rules_match_nothing() {
        let stored = json!({"match_any": [{"field": "colour", "op": "eq", "value": "red"}]});
        let r = TargetingRules::from_stored(Some(&stored));
        assert_eq!(evaluate(r.as_ref(), &facts()), Verdict::NotMatched);
        assert_eq!(TargetingRules::from_stored(None), None);
        assert_eq!(TargetingRules::from_stored(Some(&json!(null))), None);
    }
}
