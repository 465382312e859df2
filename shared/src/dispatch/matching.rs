//! Which agents receive an alert (api spec §5.8): an active agent matches when all three
//! triggers pass — `trigger_on_sources` (empty = all), `trigger_on_severities` (empty = all),
//! both exact, case-sensitive list membership — and `trigger_filter` (targeting rules; no rules
//! = pass). A stored filter that cannot be read matches nothing, so a bad row never widens who
//! receives alerts.

use serde_json::Value;

use crate::context::targeting::{AlertFacts, TargetingRules, Verdict};

/// The triggers of one agent.
#[derive(Debug, Clone, Default)]
pub(crate) struct Triggers {
    pub sources: Vec<String>,
    pub severities: Vec<String>,
    pub filter: Option<TargetingRules>,
}

impl Triggers {
    pub fn from_stored(sources: Vec<String>, severities: Vec<String>, filter: Option<&Value>) -> Self {
        Self {
            sources,
            severities,
            filter: TargetingRules::from_stored(filter.filter(|v| !v.is_null())),
        }
    }

    pub fn matches(&self, facts: &AlertFacts) -> bool {
        let source_ok = self.sources.is_empty() || self.sources.contains(&facts.source_name);
        let severity_ok = self.severities.is_empty() || self.severities.iter().any(|s| s == facts.severity.as_str());
        let filter_ok = match &self.filter {
            None => true,
            Some(rules) => rules.evaluate(facts) != Verdict::NotMatched,
        };
        source_ok && severity_ok && filter_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::severity::Severity;
    use serde_json::json;

    fn facts() -> AlertFacts {
        AlertFacts {
            source_name: "sentinel".into(),
            severity: Severity::High,
            tags: vec!["identity".into()],
            title: "Impossible travel for jdoe".into(),
            detection_rule_id: Some("rule-1".into()),
            detection_rule_name: Some("Impossible travel".into()),
            mitre_tactics: vec!["TA0001".into()],
            mitre_techniques: vec!["T1078".into()],
            indicator_types: vec!["account".into(), "ip".into()],
        }
    }

    fn t(sources: &[&str], severities: &[&str], filter: Option<Value>) -> Triggers {
        Triggers::from_stored(
            sources.iter().map(|s| s.to_string()).collect(),
            severities.iter().map(|s| s.to_string()).collect(),
            filter.as_ref(),
        )
    }

    #[test]
    fn all_three_triggers_must_pass() {
        let f = facts();
        assert!(t(&[], &[], None).matches(&f), "no triggers = every alert");
        assert!(t(&["sentinel"], &[], None).matches(&f));
        assert!(!t(&["elastic"], &[], None).matches(&f));
        assert!(!t(&["Sentinel"], &[], None).matches(&f), "membership is case-sensitive");
        assert!(t(&[], &["High", "Critical"], None).matches(&f));
        assert!(!t(&[], &["high"], None).matches(&f));
        assert!(!t(&["sentinel"], &["Low"], None).matches(&f));
        let gte_high = json!({"match_all": [{"field": "severity", "op": "gte", "value": "High"}]});
        assert!(t(&["sentinel"], &["High"], Some(gte_high)).matches(&f));
        let needs_email = json!({"match_any": [{"field": "indicator_type", "op": "eq", "value": "email"}]});
        assert!(!t(&[], &[], Some(needs_email)).matches(&f));
        assert!(t(&[], &[], Some(Value::Null)).matches(&f), "null filter = pass");
        assert!(t(&[], &[], Some(json!({"match_any": [], "match_all": []}))).matches(&f));
    }

    #[test]
    fn an_unreadable_stored_filter_matches_nothing() {
        let bad = json!({"match_any": "not a list"});
        assert!(!t(&[], &[], Some(bad)).matches(&facts()));
    }
}
