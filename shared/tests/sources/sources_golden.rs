//! Golden fixtures: `tests/fixtures/<source>/<case>.json` is the POSTed body,
//! `<case>.expected.json` the full parse result (every alert field except `raw_payload`),
//! and an optional `<case>.context.json` holds `{"extra_indicator_fields": [[path, type], ...]}`.
//! `BLESS=1 cargo test -p calseta --test sources` rewrites the expected files (review every diff by hand).

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::fs;
use std::path::{Path, PathBuf};

use calseta::domain::indicator::IndicatorType;
use calseta::sources::{source_for, ParseContext, ParsedItem, SourceName};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

fn received_at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-01-15T12:00:00Z")
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_default()
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sources")
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn context_for(body_path: &Path) -> ParseContext {
    let mut ctx = ParseContext::new(received_at());
    let ctx_path = body_path.with_extension("context.json");
    if ctx_path.exists() {
        let v = read_json(&ctx_path);
        for pair in v["extra_indicator_fields"].as_array().into_iter().flatten() {
            let path = pair[0].as_str().unwrap_or_default().to_string();
            let kind: IndicatorType = pair[1]
                .as_str()
                .unwrap_or_default()
                .parse()
                .unwrap_or_else(|e| panic!("{}: {e}", ctx_path.display()));
            ctx.extra_indicator_fields.push((path, kind));
        }
    }
    ctx
}

/// The alerts a body holds, in order, as the spec defines them (for the raw_payload check).
fn candidate_elements(body: &Value) -> Vec<&Value> {
    match body {
        Value::Array(items) => items.iter().collect(),
        Value::Object(m) => {
            let mut v = vec![body];
            if let Some(Value::Array(items)) = m.get("alerts") {
                v.extend(items.iter());
            }
            v
        }
        _ => vec![body],
    }
}

fn render(source: SourceName, body: &Value, ctx: &ParseContext) -> Value {
    match source_for(source).parse(body, ctx) {
        Ok(items) => {
            let elements = candidate_elements(body);
            let rendered: Vec<Value> = items
                .iter()
                .map(|item| {
                    if let ParsedItem::Alert(a) = item {
                        assert!(
                            elements.iter().any(|e| **e == a.raw_payload),
                            "raw_payload must be the body or one of its elements, unmodified"
                        );
                        assert!(!a.source_alert_id.is_empty());
                        assert!(!a.title.is_empty() && a.title.chars().count() <= 1000);
                    }
                    let mut v = serde_json::to_value(item).unwrap_or_else(|e| panic!("serialize: {e}"));
                    if let Some(m) = v.as_object_mut() {
                        m.remove("raw_payload");
                    }
                    v
                })
                .collect();
            json!({ "items": rendered })
        }
        Err(e) => json!({ "error": { "code": "INVALID_PAYLOAD", "errors": e.errors() } }),
    }
}

#[test]
fn golden_fixtures() {
    let bless = std::env::var("BLESS").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    let mut count = 0;
    for source in SourceName::ALL {
        let dir = fixtures_dir().join(source.as_str());
        let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                name.ends_with(".json") && !name.ends_with(".expected.json") && !name.ends_with(".context.json")
            })
            .collect();
        paths.sort();
        assert!(!paths.is_empty(), "no fixtures for {source}");
        for path in paths {
            count += 1;
            let body = read_json(&path);
            let ctx = context_for(&path);
            let got = render(source, &body, &ctx);
            // Determinism: a second parse gives the same result (idempotency keys are stable).
            assert_eq!(got, render(source, &body, &ctx), "{}", path.display());
            let expected_path = path.with_extension("expected.json");
            if bless {
                let text = serde_json::to_string_pretty(&got).unwrap_or_default() + "\n";
                fs::write(&expected_path, text).unwrap_or_else(|e| panic!("{e}"));
                continue;
            }
            if !expected_path.exists() {
                failures.push(format!("{}: missing expected file", path.display()));
                continue;
            }
            let expected = read_json(&expected_path);
            if expected != got {
                failures.push(format!(
                    "{}:\n--- expected\n{}\n--- got\n{}",
                    path.display(),
                    serde_json::to_string_pretty(&expected).unwrap_or_default(),
                    serde_json::to_string_pretty(&got).unwrap_or_default()
                ));
            }
        }
    }
    assert!(count > 0);
    assert!(
        failures.is_empty(),
        "{} fixture(s) differ:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
