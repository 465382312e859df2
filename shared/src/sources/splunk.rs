//! Splunk webhook alert action (spec `sources.md` §4).
//!
//! Body: `{"result": {...first row...}, "sid", "results_link", "search_name", "owner", "app"}`.
//! Result values are strings; multivalue fields arrive as JSON arrays or newline-separated
//! strings. Columns starting with `_` are Splunk internals (only `_time` is read).

use serde_json::{Map, Value};

use super::lookup::lookup;
use super::{
    add_multivalue, clean_description, clean_link, clean_tags, clean_title, decode_json_string, non_empty_str,
    rule_ref, sha256_key_canonical, AlertDraft, AlertSource, FieldError, ParseContext, ParseError, ParsedItem,
    SourceName,
};
use crate::domain::indicator::{parse_ip_lenient, IndicatorType};
use crate::domain::severity::Severity;
use crate::domain::timestamp;

pub(crate) const UNTITLED: &str = "Untitled Splunk Alert";

/// The Splunk source.
#[derive(Debug, Clone, Copy, Default)]
pub struct Splunk;

/// Severity table of §4 (`urgency`, else `severity`).
pub(crate) fn map_severity(s: Option<&str>) -> Severity {
    crate::domain::severity::from_label(s)
}

/// Values of a multivalue field: a JSON array, or one string split on `\n`. Trimmed, non-empty.
pub(crate) fn multivalue(v: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    let mut push_str = |s: &str| {
        for part in s.split('\n') {
            let t = part.trim();
            if !t.is_empty() {
                out.push(t.to_string());
            }
        }
    };
    match v {
        Some(Value::String(s)) => push_str(s),
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(s) => push_str(s),
                    Value::Number(n) => push_str(&n.to_string()),
                    _ => {}
                }
            }
        }
        Some(Value::Number(n)) => push_str(&n.to_string()),
        _ => {}
    }
    out
}

/// First value of a (possibly multivalue) column.
fn first(result: &Map<String, Value>, col: &str) -> Option<String> {
    multivalue(result.get(col)).into_iter().next()
}

impl AlertSource for Splunk {
    fn name(&self) -> SourceName {
        SourceName::Splunk
    }

    fn parse(&self, body: &Value, ctx: &ParseContext) -> Result<Vec<ParsedItem>, ParseError> {
        let Some(obj) = body.as_object() else {
            return Err(ParseError::invalid(
                "$",
                "expected the Splunk webhook JSON object {result, sid, search_name, ...}",
            ));
        };
        let mut errors = Vec::new();
        let result = match obj.get("result") {
            Some(Value::Object(r)) => Some(r),
            Some(_) => {
                errors.push(FieldError::new(None, "result", "must be an object"));
                None
            }
            None => {
                errors.push(FieldError::new(None, "result", "missing"));
                None
            }
        };
        let sid = non_empty_str(obj.get("sid"));
        let search_name = non_empty_str(obj.get("search_name"));
        if sid.is_none() && search_name.is_none() {
            errors.push(FieldError::new(None, "sid", "missing: sid or search_name is required"));
        }
        let Some(result) = result.filter(|_| errors.is_empty()) else {
            return Err(ParseError::InvalidPayload(errors));
        };
        Ok(vec![parse_result(body, obj, result, sid, search_name, ctx)])
    }
}

fn parse_result(
    body: &Value,
    obj: &Map<String, Value>,
    result: &Map<String, Value>,
    sid: Option<&str>,
    search_name: Option<&str>,
    ctx: &ParseContext,
) -> ParsedItem {
    let result_value = obj.get("result").unwrap_or(&Value::Null);
    let title = first(result, "rule_title")
        .or_else(|| first(result, "rule_name"))
        .or_else(|| search_name.map(str::to_string))
        .or_else(|| first(result, "signature"));
    let mut d = AlertDraft::new(SourceName::Splunk, clean_title(title.as_deref(), UNTITLED));

    let sev = first(result, "urgency").or_else(|| first(result, "severity"));
    d.severity = map_severity(sev.as_deref());
    d.severity_original = sev;
    d.occurred_at = result.get("_time").and_then(|t| match t {
        Value::Array(items) => items.first().and_then(timestamp::parse_value),
        other => timestamp::parse_value(other),
    });
    d.description = clean_description(
        first(result, "rule_description")
            .or_else(|| first(result, "description"))
            .or_else(|| first(result, "signature"))
            .as_deref(),
    );
    // `tag` is multivalue, and some searches join it into one comma-separated string.
    d.tags = clean_tags(multivalue(result.get("tag")).iter().flat_map(|t| t.split(',')));

    // Idempotency: ES notable event_id, else hash of sid + "\n" + canonical(result).
    d.source_alert_id = first(result, "event_id").or_else(|| {
        let prefix = format!("{}\n", sid.unwrap_or(""));
        Some(sha256_key_canonical(prefix.as_bytes(), result_value))
    });

    let rule_id = first(result, "search_name")
        .or_else(|| search_name.map(str::to_string))
        .or_else(|| first(result, "rule_name"));
    let rule_name = first(result, "rule_name")
        .or_else(|| first(result, "search_name"))
        .or_else(|| search_name.map(str::to_string));
    d.detection_rule_ref = rule_ref(rule_id, rule_name);

    read_mitre(result_value, &mut d);

    d.deep_link = clean_link(non_empty_str(obj.get("results_link")));
    d.set_extra("sid", obj.get("sid"));
    d.set_extra("app", obj.get("app"));
    d.set_extra("owner", obj.get("owner"));
    d.set_extra("security_domain", result.get("security_domain"));

    extract_indicators(result, &mut d);
    ParsedItem::Alert(Box::new(d.finish(body, &[result_value], ctx)))
}

/// MITRE from a result row: ID-only columns (any kind, by pattern), Enterprise Security's
/// `mitre_attack_tactic` / `mitre_attack_technique` (names or IDs), and the same under
/// `annotations` — dotted columns, a nested object, or a JSON-encoded `annotations` string.
fn read_mitre(result_value: &Value, d: &mut AlertDraft) {
    let decoded = result_value.get("annotations").and_then(|a| match a {
        Value::String(_) => decode_json_string(a).filter(Value::is_object),
        _ => None,
    });
    // Paths are relative to the row; `annotations.*` ones are also tried in the decoded string.
    let lookup_any = |path: &str| -> Vec<String> {
        let mut out = multivalue(lookup(result_value, path));
        if let (Some(ann), Some(rest)) = (&decoded, path.strip_prefix("annotations.")) {
            out.extend(multivalue(lookup(ann, rest)));
        }
        out
    };
    for path in [
        "annotations.mitre_attack",
        "annotations.mitre_attack.mitre_tactic_id",
        "annotations.mitre_attack.mitre_technique_id",
        "mitre_attack_id",
        "mitre_technique_id",
        "mitre_tactic_id",
    ] {
        for v in lookup_any(path) {
            d.mitre.add_id_only(&v);
        }
    }
    for path in ["mitre_attack_tactic", "annotations.mitre_attack.mitre_tactic"] {
        for v in lookup_any(path) {
            d.mitre.add_tactic_str(&v);
        }
    }
    for path in ["mitre_attack_technique", "annotations.mitre_attack.mitre_technique"] {
        for v in lookup_any(path) {
            d.mitre.add_technique_str(&v);
        }
    }
}

fn extract_indicators(result: &Map<String, Value>, d: &mut AlertDraft) {
    let mut add = |kind: IndicatorType, col: &str| {
        if let Some(v) = result.get(col) {
            add_multivalue(&mut d.indicators, kind, v, &format!("result.{col}"));
        }
    };
    add(IndicatorType::Ip, "src_ip");
    add(IndicatorType::Ip, "dest_ip");
    add(IndicatorType::Ip, "ip");
    // CIM: the reporting device's address.
    add(IndicatorType::Ip, "dvc_ip");
    for col in ["domain", "url_domain"] {
        add(IndicatorType::Domain, col);
    }
    add(IndicatorType::Url, "url");
    for col in ["sha256", "sha1", "md5", "file_hash", "hash", "Hashes"] {
        add(IndicatorType::HashSha256, col);
    }
    for col in ["user", "src_user"] {
        add(IndicatorType::Account, col);
    }
    for col in ["sender", "recipient"] {
        add(IndicatorType::Email, col);
    }
    // src / dest / dvc (CIM): an IP is an indicator, anything else is a host name. `host` is
    // always a host name (an IP there is neither).
    for col in ["host", "src", "dest", "dvc"] {
        for v in multivalue(result.get(col)) {
            if parse_ip_lenient(&v).is_some() {
                if col != "host" {
                    d.indicators.add(IndicatorType::Ip, &v, &format!("result.{col}"));
                }
            } else {
                d.hosts.add(&v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn multivalue_forms() {
        assert_eq!(multivalue(Some(&json!("a\nb\n\n c "))), vec!["a", "b", "c"]);
        assert_eq!(
            multivalue(Some(&json!(["a", "b\nc", 5, null]))),
            vec!["a", "b", "c", "5"]
        );
        assert!(multivalue(Some(&json!({"a": 1}))).is_empty());
        assert!(multivalue(None).is_empty());
    }

    #[test]
    fn severity_table() {
        assert_eq!(map_severity(Some("INFO")), Severity::Informational);
        assert_eq!(map_severity(Some("critical")), Severity::Critical);
        assert_eq!(map_severity(Some("5")), Severity::Pending);
        assert_eq!(map_severity(None), Severity::Pending);
    }
}
