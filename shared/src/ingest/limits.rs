//! What one alert may cost at ingest (issue 17): field lengths that would break an index are
//! refused per alert (422 naming the field, or `items[i].error` in a batch), and the indicators
//! kept per alert are capped with the truncation recorded on the alert, never silently cut.
//! Pure functions over the parsed alert; the parsers' mapping is untouched.

use serde_json::{json, Value};

use crate::{
    enrich::{never_send::NeverSendPolicy, wants_enrichment},
    sources::NormalizedAlert,
};

/// Longest `source_alert_id` accepted, in bytes. It is half of the idempotency key's unique
/// B-tree index, which refuses rows over about 2,700 bytes; real ids (GUIDs, ARM resource paths,
/// Elastic ids, our `sha256:` fallback) are far shorter.
pub(crate) const MAX_SOURCE_ALERT_ID_BYTES: usize = 1024;

/// Longest detection rule id accepted, in bytes (the `(source, rule id)` unique index, same limit).
pub(crate) const MAX_RULE_ID_BYTES: usize = 1024;

/// The key under `extra` that records a capped indicator list.
pub(crate) const TRUNCATION_KEY: &str = "indicator_truncation";

/// Fields of `a` too long to store: `{field, message, type}` objects, empty when it is fine.
pub(crate) fn field_errors(a: &NormalizedAlert) -> Vec<Value> {
    let mut out = Vec::new();
    if a.source_alert_id.len() > MAX_SOURCE_ALERT_ID_BYTES {
        out.push(json!({
            "field": "source_alert_id",
            "message": format!("longer than {MAX_SOURCE_ALERT_ID_BYTES} bytes"),
            "type": "too_long",
        }));
    }
    if let Some(r) = &a.detection_rule_ref {
        if r.id.len() > MAX_RULE_ID_BYTES {
            out.push(json!({
                "field": "rule_id",
                "message": format!("longer than {MAX_RULE_ID_BYTES} bytes"),
                "type": "too_long",
            }));
        }
    }
    out
}

/// Keeps at most `cap` indicators of `a`: those that will be enriched first, then the others,
/// each group in first-seen order, and the kept ones in their original order (so the choice is
/// deterministic and the values worth a provider call survive). Returns the record written to
/// `extra.indicator_truncation` when anything was left out.
pub(crate) fn cap_indicators(a: &mut NormalizedAlert, cap: usize, policy: &NeverSendPolicy) -> Option<Value> {
    let found = a.indicators.len();
    // Set by extraction when it stopped collecting (`domain::indicator::MAX_EXTRACTED`).
    let unexamined = a
        .extra
        .remove("unexamined_indicator_count")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    if found <= cap && unexamined == 0 {
        return None;
    }
    let mut keep = vec![false; found];
    let mut kept = 0;
    for enrichable in [true, false] {
        for (i, ind) in a.indicators.iter().enumerate() {
            if kept == cap {
                break;
            }
            if !keep[i] && wants_enrichment(policy, ind.indicator_type, &ind.value) == enrichable {
                keep[i] = true;
                kept += 1;
            }
        }
    }
    let mut flags = keep.into_iter();
    a.indicators.retain(|_| flags.next().unwrap_or(false));
    let record = json!({
        "limit": cap,
        "found": found,
        "kept": kept,
        "unexamined": unexamined,
    });
    a.extra.insert(TRUNCATION_KEY.into(), record.clone());
    Some(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::indicator::IndicatorType,
        sources::{source_for, ParseContext, ParsedItem, SourceName},
    };

    fn generic(body: Value) -> NormalizedAlert {
        let items = source_for(SourceName::Generic)
            .parse(&body, &ParseContext::new(chrono::Utc::now()))
            .expect("parse");
        match items.into_iter().next() {
            Some(ParsedItem::Alert(a)) => *a,
            other => panic!("not an alert: {other:?}"),
        }
    }

    #[test]
    fn cap_prefers_enrichable_and_keeps_first_seen_order() {
        let policy = NeverSendPolicy::from_settings("", "").expect("policy");
        let mut ips: Vec<String> = (0..5).map(|i| format!("10.0.0.{i}")).collect();
        ips.extend((1..=5).map(|i| format!("8.8.8.{i}")));
        let list: Vec<Value> = ips.iter().map(|v| json!({"type": "ip", "value": v})).collect();
        let mut a = generic(json!({"title": "t", "source_alert_id": "x", "indicators": list}));
        let record = cap_indicators(&mut a, 7, &policy).expect("truncated");
        let kept: Vec<&str> = a.indicators.iter().map(|i| i.value.as_str()).collect();
        // The five public addresses, then the first two private ones; original order kept.
        assert_eq!(
            kept,
            ["10.0.0.0", "10.0.0.1", "8.8.8.1", "8.8.8.2", "8.8.8.3", "8.8.8.4", "8.8.8.5"]
        );
        assert_eq!(record, json!({"limit": 7, "found": 10, "kept": 7, "unexamined": 0}));
        assert_eq!(a.extra[TRUNCATION_KEY], record);
        assert!(a.indicators.iter().all(|i| i.indicator_type == IndicatorType::Ip));

        let mut small = generic(json!({"title": "t", "source_alert_id": "y", "ip": "8.8.8.8"}));
        assert_eq!(cap_indicators(&mut small, 7, &policy), None);
        assert!(!small.extra.contains_key(TRUNCATION_KEY));
    }

    #[test]
    fn long_ids_are_named() {
        let ok = generic(json!({"title": "t", "source_alert_id": "a".repeat(MAX_SOURCE_ALERT_ID_BYTES)}));
        assert!(field_errors(&ok).is_empty());
        let long = generic(json!({"title": "t", "source_alert_id": "é".repeat(600)}));
        let errs = field_errors(&long);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0]["field"], "source_alert_id");
    }
}
