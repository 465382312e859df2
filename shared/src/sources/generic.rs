//! Generic webhook (spec `sources.md` §5): our own format, one alert or a batch.

use serde_json::{Map, Value};

use super::{
    add_multivalue, check_batch_len, clean_description, clean_link, clean_tags, clean_title, finish_batch,
    non_empty_str, rule_ref, scalar_string, string_list, AlertDraft, AlertSource, FieldError, ParseContext, ParseError,
    ParsedItem, SourceName,
};
use crate::domain::indicator::IndicatorType;
use crate::domain::severity::Severity;
use crate::domain::timestamp;

/// The generic source.
#[derive(Debug, Clone, Copy, Default)]
pub struct Generic;

/// Severity table of §5.
pub(crate) fn map_severity(s: Option<&str>) -> Severity {
    crate::domain::severity::from_label(s)
}

/// Top-level indicator fields of §5, in extraction order.
const FIELDS: [(&str, IndicatorType); 14] = [
    ("src_ip", IndicatorType::Ip),
    ("dest_ip", IndicatorType::Ip),
    ("source_ip", IndicatorType::Ip),
    ("destination_ip", IndicatorType::Ip),
    ("ip", IndicatorType::Ip),
    ("domain", IndicatorType::Domain),
    ("url", IndicatorType::Url),
    ("email", IndicatorType::Email),
    ("user", IndicatorType::Account),
    ("username", IndicatorType::Account),
    ("md5", IndicatorType::HashSha256),
    ("sha1", IndicatorType::HashSha256),
    ("sha256", IndicatorType::HashSha256),
    ("hash", IndicatorType::HashSha256),
];

impl AlertSource for Generic {
    fn name(&self) -> SourceName {
        SourceName::Generic
    }

    fn parse(&self, body: &Value, ctx: &ParseContext) -> Result<Vec<ParsedItem>, ParseError> {
        let batch: &[Value] = match body {
            Value::Array(items) => items,
            Value::Object(m) if m.contains_key("alerts") && !m.contains_key("title") => match m.get("alerts") {
                Some(Value::Array(items)) => items,
                _ => return Err(ParseError::invalid("alerts", "must be an array of alerts")),
            },
            Value::Object(m) => {
                return match parse_alert(body, m, None, ctx) {
                    ParsedItem::Rejected { errors } => Err(ParseError::InvalidPayload(errors)),
                    item => Ok(vec![item]),
                };
            }
            _ => {
                return Err(ParseError::invalid(
                    "$",
                    "expected an alert object, an array of alerts or {\"alerts\": [...]}",
                ))
            }
        };
        check_batch_len(batch.len())?;
        let items = batch
            .iter()
            .enumerate()
            .map(|(i, el)| match el.as_object() {
                Some(m) => parse_alert(el, m, Some(i), ctx),
                None => ParsedItem::Rejected {
                    errors: vec![FieldError::new(Some(i), "$", "must be an object")],
                },
            })
            .collect();
        finish_batch(items)
    }
}

fn parse_alert(raw: &Value, m: &Map<String, Value>, index: Option<usize>, ctx: &ParseContext) -> ParsedItem {
    let title = match m.get("title") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.as_str(),
        Some(Value::String(_)) => {
            return ParsedItem::Rejected {
                errors: vec![FieldError::new(index, "title", "must be a non-empty string")],
            }
        }
        Some(_) => {
            return ParsedItem::Rejected {
                errors: vec![FieldError::new(index, "title", "must be a string")],
            }
        }
        None => {
            return ParsedItem::Rejected {
                errors: vec![FieldError::new(index, "title", "missing")],
            }
        }
    };
    let mut d = AlertDraft::new(SourceName::Generic, clean_title(Some(title), "Untitled Alert"));
    let sev = m.get("severity").and_then(scalar_string);
    d.severity = map_severity(sev.as_deref());
    d.severity_original = sev;
    d.occurred_at = m.get("occurred_at").and_then(timestamp::parse_value);
    d.description = clean_description(non_empty_str(m.get("description")));
    d.tags = clean_tags(string_list(m.get("tags"), None));
    d.source_alert_id = ["source_alert_id", "alert_id"]
        .iter()
        .find_map(|k| m.get(*k).and_then(scalar_string));
    let rule_id = m.get("rule_id").and_then(scalar_string);
    let rule_name = m.get("rule_name").and_then(scalar_string);
    d.detection_rule_ref = rule_ref(rule_id.clone().or(rule_name.clone()), rule_name.or(rule_id));
    for t in string_list(m.get("mitre_tactics"), None) {
        d.mitre.add_tactic_str(&t);
    }
    for t in string_list(m.get("mitre_techniques"), None) {
        d.mitre.add_technique_str(&t);
    }
    d.deep_link = clean_link(non_empty_str(m.get("deep_link")));

    // Explicit indicators first, then the well-known top-level fields.
    if let Some(Value::Array(list)) = m.get("indicators") {
        for (i, entry) in list.iter().enumerate() {
            if !entry.is_object() {
                if !entry.is_null() {
                    d.indicators.count_dropped(1);
                }
                continue;
            }
            let field = format!("indicators[{i}].value");
            let kind = non_empty_str(entry.get("type")).and_then(|t| t.parse::<IndicatorType>().ok());
            match (kind, entry.get("value")) {
                (Some(kind), Some(v)) => add_multivalue(&mut d.indicators, kind, v, &field),
                (None, Some(v)) if !v.is_null() => d.indicators.count_dropped(1),
                _ => {}
            }
        }
    }
    for (key, kind) in FIELDS {
        if let Some(v) = m.get(key) {
            add_multivalue(&mut d.indicators, kind, v, key);
        }
    }
    // `hostname` is an asset name, never an indicator.
    d.hosts.add_json(m.get("hostname"));
    ParsedItem::Alert(Box::new(d.finish(raw, &[], ctx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_table() {
        assert_eq!(map_severity(Some("Info")), Severity::Informational);
        assert_eq!(map_severity(Some("PENDING")), Severity::Pending);
        assert_eq!(map_severity(Some("sev1")), Severity::Pending);
    }
}
