//! CloudWatch metrics as Embedded Metric Format (EMF) lines on stdout, the AWS Lambda Powertools
//! convention: CloudWatch extracts the metrics from the function's log stream, so no API call
//! or agent is needed. Namespace `Calseta`, a `service` dimension (the function, or
//! `POWERTOOLS_SERVICE_NAME`) plus the metric's own dimensions.
//!
//! Lines are printed only inside Lambda (`AWS_LAMBDA_FUNCTION_NAME` set) or with
//! `CALSETA_EMF=1`, so `calseta dev` and the tests keep clean output.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

pub(crate) const NAMESPACE: &str = "Calseta";

/// CloudWatch units used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Seconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
        }
    }
}

struct Settings {
    enabled: bool,
    service: String,
}

fn settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(|| {
        let function = crate::config::var("AWS_LAMBDA_FUNCTION_NAME");
        Settings {
            enabled: function.is_some() || crate::config::var("CALSETA_EMF").is_some_and(|v| v == "1"),
            service: crate::config::var("POWERTOOLS_SERVICE_NAME")
                .or(function)
                .unwrap_or_else(|| "calseta".into()),
        }
    })
}

/// One EMF document: every metric shares the dimension set `service` + `dimensions`.
pub fn document(service: &str, dimensions: &[(&str, &str)], metrics: &[(&str, f64, Unit)], timestamp_ms: i64) -> Value {
    let mut names = vec![Value::from("service")];
    names.extend(dimensions.iter().map(|(k, _)| Value::from(*k)));
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [names],
                "Metrics": metrics.iter().map(|(n, _, u)| json!({"Name": n, "Unit": u.as_str()})).collect::<Vec<_>>(),
            }],
        }),
    );
    doc.insert("service".into(), Value::from(service));
    for (k, v) in dimensions {
        doc.insert((*k).into(), Value::from(*v));
    }
    for (n, v, _) in metrics {
        doc.insert((*n).into(), json!(v));
    }
    Value::Object(doc)
}

/// Prints one EMF line (when enabled).
pub(crate) fn emit(dimensions: &[(&str, &str)], metrics: &[(&str, f64, Unit)]) {
    let s = settings();
    if !s.enabled || metrics.is_empty() {
        return;
    }
    let doc = document(&s.service, dimensions, metrics, chrono::Utc::now().timestamp_millis());
    // stdout, one line: the Lambda log stream CloudWatch parses.
    println!("{doc}");
}

/// A counter with one dimension, the common case.
pub fn count(name: &str, dimension: Option<(&str, &str)>, value: u64) {
    if value == 0 {
        return;
    }
    let dims: Vec<(&str, &str)> = dimension.into_iter().collect();
    emit(&dims, &[(name, value as f64, Unit::Count)]);
}

/// Checks what CloudWatch requires of an EMF document (the specification's validation rules):
/// a timestamp, directives with a namespace, every dimension a string member, every metric a
/// number member with a known unit. Used by the tests that read the functions' output.
pub fn validate(doc: &Value) -> Result<(), String> {
    let aws = &doc["_aws"];
    if aws["Timestamp"].as_i64().is_none_or(|t| t <= 0) {
        return Err("_aws.Timestamp must be a positive integer".into());
    }
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .filter(|d| !d.is_empty())
        .ok_or("_aws.CloudWatchMetrics must be a non-empty array")?;
    for d in directives {
        if d["Namespace"].as_str().is_none_or(|n| n.is_empty()) {
            return Err("Namespace missing".into());
        }
        for set in d["Dimensions"].as_array().ok_or("Dimensions must be an array")? {
            let set = set.as_array().ok_or("a dimension set must be an array")?;
            if set.len() > 30 {
                return Err("more than 30 dimensions".into());
            }
            for key in set {
                let key = key.as_str().ok_or("dimension names are strings")?;
                if !doc[key].is_string() {
                    return Err(format!("dimension {key} must be a string member"));
                }
            }
        }
        for m in d["Metrics"].as_array().ok_or("Metrics must be an array")? {
            let name = m["Name"].as_str().ok_or("metric Name missing")?;
            if !doc[name].is_number() {
                return Err(format!("metric {name} must be a number member"));
            }
            if !m["Unit"]
                .as_str()
                .is_some_and(|u| ["Count", "Milliseconds", "Seconds"].contains(&u))
            {
                return Err(format!("metric {name} has no known Unit"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_valid_emf_with_the_service_and_own_dimensions() {
        let doc = document(
            "ingest",
            &[("reason", "invalid_payload")],
            &[("AlertsRejected", 2.0, Unit::Count)],
            1_765_000_000_000,
        );
        validate(&doc).expect("valid EMF");
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Calseta");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["service", "reason"]])
        );
        assert_eq!(doc["service"], "ingest");
        assert_eq!(doc["reason"], "invalid_payload");
        assert_eq!(doc["AlertsRejected"], 2.0);
        // One line of JSON.
        assert!(!doc.to_string().contains('\n'));
        // The validator rejects what CloudWatch would drop.
        let mut broken = doc.clone();
        broken["reason"] = json!(3);
        assert!(validate(&broken).is_err());
        broken = doc.clone();
        broken["AlertsRejected"] = json!("2");
        assert!(validate(&broken).is_err());
    }

    #[test]
    fn gauges_in_seconds_and_no_extra_dimensions() {
        let doc = document(
            "sweep",
            &[],
            &[
                ("OutboxBacklog", 3.0, Unit::Count),
                ("OutboxOldestAge", 12.5, Unit::Seconds),
            ],
            1,
        );
        validate(&doc).expect("valid EMF");
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["service"]]));
        assert_eq!(doc["OutboxOldestAge"], 12.5);
    }
}
