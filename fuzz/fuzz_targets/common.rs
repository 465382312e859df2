// Shared by the parser targets: parse untrusted bytes as the ingest route does, then check the
// invariants every stored alert relies on.
use calseta::{
    domain::indicator::normalize,
    sources::{source_for, ParseContext, ParsedItem, SourceName, MAX_TITLE_CHARS},
};

pub fn run(source: SourceName, data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else { return };
    let ctx = ParseContext::new(chrono::DateTime::from_timestamp(1_736_935_200, 0).unwrap_or_default());
    let Ok(items) = source_for(source).parse(&value, &ctx) else { return };
    for item in items {
        if let ParsedItem::Alert(a) = item {
            assert!(!a.source_alert_id.is_empty(), "empty idempotency key");
            assert!(!a.title.trim().is_empty(), "empty title");
            assert!(a.title.chars().count() <= MAX_TITLE_CHARS, "title too long");
            assert!(a.tags.len() <= 100, "too many tags");
            let mut seen = std::collections::HashSet::new();
            for ind in &a.indicators {
                assert!(seen.insert((ind.indicator_type, ind.value.clone())), "duplicate indicator");
                // Stored values are already normalized: normalizing again changes nothing.
                let again = normalize(ind.indicator_type, &ind.value).expect("stored value re-normalizes");
                assert_eq!(again, vec![(ind.indicator_type, ind.value.clone())], "normalization not idempotent");
            }
            // The alert serializes (it is written to Postgres as JSON).
            serde_json::to_string(&a.mitre).expect("mitre serializes");
        }
    }
}
