//! Property-style robustness test: thousands of random and mutated JSON bodies go through every
//! parser; none may panic, and every accepted alert must satisfy the §1 invariants.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::fs;
use std::path::Path;

use calseta::domain::indicator::{normalize, IndicatorType};
use calseta::domain::timestamp;
use calseta::sources::{source_for, ParseContext, ParsedItem, SourceName};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// xorshift64* — tiny deterministic PRNG.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const KEYS: &[&str] = &[
    // sentinel
    "object",
    "properties",
    "title",
    "severity",
    "name",
    "id",
    "labels",
    "labelName",
    "alerts",
    "additionalData",
    "tactics",
    "techniques",
    "relatedEntities",
    "relatedAnalyticRuleIds",
    "incidentUrl",
    "kind",
    "address",
    "accountName",
    "upnSuffix",
    "hostName",
    "dnsDomain",
    "algorithm",
    "hashValue",
    "urls",
    "Entities",
    "$id",
    "$ref",
    "Type",
    "SystemAlertId",
    "AlertName",
    "DisplayName",
    "ExtendedProperties",
    "Analytic Rule Ids",
    "Analytic Rule Name",
    "Tactics",
    "Techniques",
    "SubTechniques",
    "StartTime",
    "TimeGenerated",
    "firstActivityTimeUtc",
    "objectEventType",
    "AlertSeverity",
    "mailMessage",
    "sender",
    "senderIP",
    // elastic
    "kibana",
    "alert",
    "rule",
    "kibana.alert.rule.name",
    "kibana.alert.uuid",
    "kibana.alert",
    "kibana.alert.rule.threat",
    "threat",
    "tactic",
    "technique",
    "subtechnique",
    "framework",
    "kibana.alert.building_block_type",
    "kibana.alert.risk_score",
    "kibana.alert.severity",
    "_source",
    "_id",
    "results_link",
    "source.ip",
    "host",
    "ip",
    "hash",
    "sha256",
    "url",
    "full",
    "kibana.alert.rule.threat.tactic.id",
    "@timestamp",
    "related",
    // splunk
    "result",
    "sid",
    "search_name",
    "_time",
    "src",
    "dest",
    "src_ip",
    "Hashes",
    "event_id",
    "annotations.mitre_attack",
    "urgency",
    "tag",
    "user",
    // generic
    "indicators",
    "type",
    "value",
    "occurred_at",
    "source_alert_id",
    "mitre_tactics",
    "hostname",
    "tags",
    "description",
    "deep_link",
];

const STRINGS: &[&str] = &[
    "",
    " ",
    "-",
    "null",
    "N/A",
    "High",
    "critical",
    "Informational",
    "none",
    "info",
    "8.8.8.8",
    "01.2.3.4",
    "1.2.3.4:443",
    "[2001:db8::1]:80",
    "fe80::1%eth0",
    "::ffff:1.2.3.4",
    "example.com",
    "bücher.example",
    "xn--",
    "a..b",
    ".",
    "localhost",
    "http://x.example/a#b",
    "hxxp://evil[.]com",
    "https://[::1]:99999/",
    "ftp://",
    "mailto:a@b.com",
    "Name <a@b.c>",
    "a@b@c",
    "md5:d41d8cd98f00b204e9800998ecf8427e",
    "SHA256=abc",
    "IMPHASH=00",
    "d41d8cd98f00b204e9800998ecf8427e",
    "T1078",
    "TA0001",
    "T1059.001",
    "T1078 - Valid Accounts",
    "InitialAccess",
    "PreAttack",
    "1705312200.000",
    "1705312200123",
    "2025-01-15T10:20:30.1234567Z",
    "2025-13-45",
    "9999999999999999999999",
    "-1e308",
    "[",
    "[\"T1078\"]",
    "{\"a\":",
    "{}",
    "[]",
    "[{\"$id\":\"1\",\"Type\":\"ip\",\"Address\":\"1.1.1.1\",\"x\":{\"$ref\":\"1\"}}]",
    "\u{0}",
    "\n\n",
    "a\nb",
    "ÿ\u{202e}\u{1F600}",
    "CORP\\user",
    "%",
    "é",
    "ip",
    "url",
    "EMAIL",
    "hash_md5",
    "Ip",
    "Account",
    "host",
    "filehash",
    "SHA256",
    "MD5",
    "default",
    "MITRE ATT&CK",
];

fn random_string(rng: &mut Rng) -> String {
    if rng.chance(80) {
        return rng.pick(STRINGS).to_string();
    }
    let len = rng.below(40);
    (0..len)
        .map(|_| {
            let c = rng.below(0x3000) as u32;
            char::from_u32(c).unwrap_or('?')
        })
        .collect()
}

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    let choice = if depth >= 6 { rng.below(4) } else { rng.below(8) };
    match choice {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(50)),
        2 => match rng.below(4) {
            0 => json!(rng.next() as i64),
            1 => json!((rng.next() % 2_000_000_000_000) as f64 / 1000.0),
            2 => json!(rng.below(120)),
            _ => json!(-(rng.below(1000) as i64)),
        },
        3 => Value::String(random_string(rng)),
        4 | 5 => {
            let n = rng.below(6);
            Value::Array((0..n).map(|_| random_value(rng, depth + 1)).collect())
        }
        _ => {
            let n = rng.below(8);
            let mut m = Map::new();
            for _ in 0..n {
                let k = if rng.chance(85) {
                    rng.pick(KEYS).to_string()
                } else {
                    random_string(rng)
                };
                m.insert(k, random_value(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// Apply one random mutation somewhere in `v`.
fn mutate(rng: &mut Rng, v: &mut Value, depth: usize) {
    let descend = depth < 8 && rng.chance(70);
    match v {
        Value::Object(m) if descend && !m.is_empty() => {
            let idx = rng.below(m.len());
            if let Some(key) = m.keys().nth(idx).cloned() {
                if let Some(child) = m.get_mut(&key) {
                    mutate(rng, child, depth + 1);
                }
            }
        }
        Value::Array(a) if descend && !a.is_empty() => {
            let idx = rng.below(a.len());
            mutate(rng, &mut a[idx], depth + 1);
        }
        _ => match rng.below(7) {
            0 => *v = random_value(rng, depth),
            1 => *v = Value::String(v.to_string()), // JSON-encode in place
            2 => *v = Value::Array(vec![v.clone(), v.clone()]),
            3 => {
                if let Value::Object(m) = v {
                    let k = rng.pick(KEYS).to_string();
                    m.insert(k, random_value(rng, depth + 1));
                }
            }
            4 => {
                if let Value::Object(m) = v {
                    if let Some(k) = m.keys().next().cloned() {
                        m.remove(&k);
                    }
                }
            }
            5 => *v = Value::Null,
            _ => *v = json!({ "properties": v.clone(), "kibana.alert.rule.name": "x", "result": {}, "sid": "s" }),
        },
    }
}

fn ctx() -> ParseContext {
    let received: DateTime<Utc> = DateTime::parse_from_rfc3339("2025-01-15T12:00:00Z")
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_default();
    let mut c = ParseContext::new(received);
    c.extra_indicator_fields = vec![
        ("result.src".into(), IndicatorType::Ip),
        ("kibana.alert".into(), IndicatorType::Domain),
        ("a.b.c.d.e.f".into(), IndicatorType::Url),
        ("".into(), IndicatorType::Email),
        ("properties.title".into(), IndicatorType::Account),
        ("...".into(), IndicatorType::HashMd5),
    ];
    c
}

fn check_all(body: &Value, ctx: &ParseContext) {
    for name in SourceName::ALL {
        match source_for(name).parse(body, ctx) {
            Ok(items) => {
                assert!(items.len() <= 100);
                for item in &items {
                    if let ParsedItem::Alert(a) = item {
                        assert_eq!(a.source_name, name);
                        assert!(!a.source_alert_id.is_empty());
                        assert!(!a.title.is_empty());
                        assert!(a.title.chars().count() <= 1000);
                        assert!(a.tags.len() <= 100);
                        assert!(a.tags.iter().all(|t| !t.is_empty() && t.chars().count() <= 200));
                        assert!(a.description.as_deref().is_none_or(|d| !d.is_empty()));
                        // every indicator is already normalized: normalizing again is a no-op
                        for ind in &a.indicators {
                            let again = normalize(ind.indicator_type, &ind.value);
                            assert_eq!(
                                again.ok(),
                                Some(vec![(ind.indicator_type, ind.value.clone())]),
                                "{ind:?}"
                            );
                        }
                        if a.occurred_at_inferred {
                            assert_eq!(a.occurred_at, ctx.received_at);
                        }
                    }
                    assert!(serde_json::to_string(item).is_ok());
                }
            }
            Err(e) => assert!(!e.errors().is_empty()),
        }
    }
}

fn fixture_bodies() -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sources");
    let mut out = Vec::new();
    for name in SourceName::ALL {
        let Ok(entries) = fs::read_dir(root.join(name.as_str())) else {
            continue;
        };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let n = p.to_string_lossy().to_string();
            if n.ends_with(".expected.json") || n.ends_with(".context.json") {
                continue;
            }
            if let Ok(text) = fs::read_to_string(&p) {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    out.push(v);
                }
            }
        }
    }
    out
}

#[test]
fn random_values_never_panic() {
    let ctx = ctx();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let v = random_value(&mut rng, 0);
        check_all(&v, &ctx);
    }
}

#[test]
fn mutated_fixtures_never_panic() {
    let ctx = ctx();
    let bodies = fixture_bodies();
    assert!(!bodies.is_empty());
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for round in 0..40 {
        for body in &bodies {
            let mut v = body.clone();
            for _ in 0..=(round % 5) {
                mutate(&mut rng, &mut v, 0);
            }
            check_all(&v, &ctx);
        }
    }
}

#[test]
fn hostile_shapes_never_panic() {
    let ctx = ctx();
    // Deep nesting (serde_json's parser stops at 128 levels; stay just under it).
    let deep = format!("{}{}", "[".repeat(120), "]".repeat(120));
    let deep: Value = serde_json::from_str(&deep).unwrap_or(Value::Null);
    check_all(&deep, &ctx);
    let mut nested = json!({"Type": "ip", "Address": "8.8.8.8"});
    for _ in 0..100 {
        nested = json!({"Type": "process", "Child": nested, "$id": "1"});
    }
    check_all(&json!({"SystemAlertId": "x", "Entities": [nested.clone()]}), &ctx);
    check_all(&json!({"SystemAlertId": "x", "Entities": nested.to_string()}), &ctx);
    // 2,000 entities referencing each other in a ring.
    let ring: Vec<Value> = (0..2000)
        .map(|i| json!({"$id": i.to_string(), "Type": "ip", "Address": format!("8.{}.{}.1", i / 256, i % 256), "Next": {"$ref": ((i + 1) % 2000).to_string()}}))
        .collect();
    check_all(&json!({"AlertName": "ring", "Entities": ring}), &ctx);
    // Large strings (a body near the 4 MiB ingest limit) and many keys.
    let big = "A".repeat(1 << 16);
    check_all(
        &json!({"title": big, "src_ip": big, "tags": vec![big.clone(); 60]}),
        &ctx,
    );
    let many: Map<String, Value> = (0..5000).map(|i| (format!("kibana.alert.k{i}"), json!(i))).collect();
    check_all(&Value::Object(many), &ctx);
    // Timestamps of every kind.
    for s in [
        "",
        "0",
        "-0",
        "1e400",
        "+1",
        "99999999999999999999.9",
        "1.",
        ".5",
        "2025-02-30T00:00:00Z",
    ] {
        let _ = timestamp::parse_str(s);
    }
}
