//! Alert source parsers (spec `sources.md` §§1–5, 7, 10).
//!
//! Each SIEM has one [`AlertSource`]; [`source_for`] is the registry. A parser turns a JSON body
//! into [`ParsedItem`]s (one per alert in the body) or a [`ParseError`] for a body of the wrong
//! shape. Parsers never panic on any input.

pub mod elastic;
pub mod generic;
pub mod lookup;
pub mod sentinel;
pub mod splunk;

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::domain::indicator::{is_placeholder, ExtractedIndicator, IndicatorSet, IndicatorType};
use crate::domain::mitre::Mitre;
use crate::domain::severity::Severity;

/// Most alerts accepted in one request body.
pub(crate) const MAX_ALERTS_PER_REQUEST: usize = 100;
/// Longest title kept, in characters.
pub const MAX_TITLE_CHARS: usize = 1000;
/// Most tags kept per alert.
pub(crate) const MAX_TAGS: usize = 100;
/// Longest tag kept, in characters (longer tags are cut).
pub(crate) const MAX_TAG_CHARS: usize = 200;
/// Most host names kept in `extra.hosts`.
pub(crate) const MAX_HOSTS: usize = 100;
/// Longest host name kept in `extra.hosts`.
pub(crate) const MAX_HOST_CHARS: usize = 255;
/// Longest deep link kept.
pub(crate) const MAX_LINK_CHARS: usize = 4096;

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// The four inbound sources (the `{source}` path segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceName {
    Sentinel,
    Elastic,
    Splunk,
    Generic,
}

impl SourceName {
    pub const ALL: [SourceName; 4] = [
        SourceName::Sentinel,
        SourceName::Elastic,
        SourceName::Splunk,
        SourceName::Generic,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            SourceName::Sentinel => "sentinel",
            SourceName::Elastic => "elastic",
            SourceName::Splunk => "splunk",
            SourceName::Generic => "generic",
        }
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown source name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown source: {0:?}")]
pub struct UnknownSource(pub String);

impl FromStr for SourceName {
    type Err = UnknownSource;

    /// Exact lowercase match (the URL path segment is case-sensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SourceName::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| UnknownSource(s.to_string()))
    }
}

/// The detection rule an alert came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectionRuleRef {
    /// Becomes the rule's `source_rule_id`.
    pub id: String,
    /// Names an auto-created rule (falls back to the id).
    pub name: String,
}

/// One normalized alert (spec §1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormalizedAlert {
    pub source_name: SourceName,
    pub source_alert_id: String,
    pub title: String,
    pub severity: Severity,
    pub severity_original: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub occurred_at_inferred: bool,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub detection_rule_ref: Option<DetectionRuleRef>,
    pub mitre: Mitre,
    pub deep_link: Option<String>,
    pub extra: Map<String, Value>,
    pub indicators: Vec<ExtractedIndicator>,
    pub raw_payload: Value,
}

/// A problem with one field of the body (or of one alert of a batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(index: Option<usize>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            index,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The outcome for one alert of a body.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ParsedItem {
    /// A valid alert, to be stored.
    Alert(Box<NormalizedAlert>),
    /// Not stored on purpose (Elastic building-block alerts).
    Skipped { reason: String },
    /// Invalid; the rest of the batch is still accepted.
    Rejected { errors: Vec<FieldError> },
}

/// The whole body is unusable (422 `INVALID_PAYLOAD`): wrong shape, more than 100 alerts, or no
/// alert accepted and at least one invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid payload: {}", summarize(.0))]
    InvalidPayload(Vec<FieldError>),
}

impl ParseError {
    pub fn errors(&self) -> &[FieldError] {
        match self {
            ParseError::InvalidPayload(e) => e,
        }
    }

    /// A single body-level error.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ParseError::InvalidPayload(vec![FieldError::new(None, field, message)])
    }
}

fn summarize(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| match e.index {
            Some(i) => format!("[{i}] {}: {}", e.field, e.message),
            None => format!("{}: {}", e.field, e.message),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Settings that affect parsing.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseContext {
    /// Receipt time, used when an alert has no usable timestamp.
    pub received_at: DateTime<Utc>,
    /// Per-source extra indicator fields (§8.3): dotted path (§3.1 lookup) → type.
    pub extra_indicator_fields: Vec<(String, IndicatorType)>,
}

impl ParseContext {
    pub fn new(received_at: DateTime<Utc>) -> Self {
        Self {
            received_at,
            extra_indicator_fields: Vec::new(),
        }
    }
}

/// One inbound alert source.
pub trait AlertSource: Send + Sync {
    fn name(&self) -> SourceName;
    fn parse(&self, body: &Value, ctx: &ParseContext) -> Result<Vec<ParsedItem>, ParseError>;
}

static SENTINEL: sentinel::Sentinel = sentinel::Sentinel;
static ELASTIC: elastic::Elastic = elastic::Elastic;
static SPLUNK: splunk::Splunk = splunk::Splunk;
static GENERIC: generic::Generic = generic::Generic;

/// The parser for a source.
pub fn source_for(name: SourceName) -> &'static dyn AlertSource {
    match name {
        SourceName::Sentinel => &SENTINEL,
        SourceName::Elastic => &ELASTIC,
        SourceName::Splunk => &SPLUNK,
        SourceName::Generic => &GENERIC,
    }
}

// ---------------------------------------------------------------------------------------------
// Idempotency helpers (§10)
// ---------------------------------------------------------------------------------------------

/// Tests: the canonical form as text.
#[cfg(test)]
/// JSON with object keys sorted (by UTF-8 bytes), no insignificant whitespace. Numbers are
/// written as serde_json prints them; strings with serde_json's escaping (UTF-8 kept).
pub(crate) fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

/// Where canonical JSON is written: a `String`, or a hasher (so large bodies are not copied).
trait Sink {
    fn put(&mut self, s: &str);
}

impl Sink for String {
    fn put(&mut self, s: &str) {
        self.push_str(s);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, s: &str) {
        self.update(s.as_bytes());
    }
}

fn write_canonical<S: Sink>(v: &Value, out: &mut S) {
    match v {
        Value::Null => out.put("null"),
        Value::Bool(b) => out.put(if *b { "true" } else { "false" }),
        Value::Number(n) => out.put(&n.to_string()),
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.put("[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put(",");
                }
                write_canonical(item, out);
            }
            out.put("]");
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.put("{");
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.put(",");
                }
                write_json_string(k, out);
                out.put(":");
                write_canonical(val, out);
            }
            out.put("}");
        }
    }
}

fn write_json_string<S: Sink>(s: &str, out: &mut S) {
    match serde_json::to_string(s) {
        Ok(quoted) => out.put(&quoted),
        // Serializing a &str cannot fail; keep a total function anyway.
        Err(_) => out.put("\"\""),
    }
}

/// `"sha256:" + hex(SHA-256(prefix + canonical(v)))`, streamed into the hasher.
pub(crate) fn sha256_key_canonical(prefix: &[u8], v: &Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prefix);
    write_canonical(v, &mut hasher);
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

#[cfg(test)]
/// `"sha256:" + lowercase hex(SHA-256(data))`.
pub(crate) fn sha256_key(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    format!("sha256:{}", hex::encode(digest))
}

/// Fallback idempotency key for an alert without a source id: hash of its canonical JSON.
pub(crate) fn fallback_alert_id(alert: &Value) -> String {
    sha256_key_canonical(b"", alert)
}

// ---------------------------------------------------------------------------------------------
// Field cleaning helpers (§1)
// ---------------------------------------------------------------------------------------------

/// A string (trimmed, non-empty) or a number as text. Other JSON types give `None`.
pub(crate) fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let t = s.trim();
            (!t.is_empty()).then(|| t.to_string())
        }
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A trimmed non-empty string (no numbers).
pub(crate) fn non_empty_str(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

fn cut_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((idx, _)) => s[..idx].to_string(),
        None => s.to_string(),
    }
}

/// Title rule: trimmed, cut to 1,000 characters, `fallback` when missing or blank.
pub(crate) fn clean_title(candidate: Option<&str>, fallback: &str) -> String {
    match candidate.map(str::trim).filter(|s| !s.is_empty()) {
        Some(t) => cut_chars(t, MAX_TITLE_CHARS).trim_end().to_string(),
        None => fallback.to_string(),
    }
}

/// Description rule: trimmed; empty becomes `None`.
pub(crate) fn clean_description(candidate: Option<&str>) -> Option<String> {
    candidate.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

/// Tag rule: trimmed, empties dropped, cut to 200 chars, duplicates dropped (first kept),
/// at most 100 tags.
pub(crate) fn clean_tags<I, S>(tags: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        if out.len() >= MAX_TAGS {
            break;
        }
        let t = t.as_ref().trim();
        if t.is_empty() {
            continue;
        }
        let t = cut_chars(t, MAX_TAG_CHARS).trim_end().to_string();
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// Deep-link rule: an absolute `http`/`https` URL (so that no `javascript:` or similar link is
/// ever handed to an agent); anything else becomes `None`.
pub(crate) fn clean_link(candidate: Option<&str>) -> Option<String> {
    let t = candidate.map(str::trim).filter(|s| !s.is_empty())?;
    if t.chars().count() > MAX_LINK_CHARS {
        return None;
    }
    let u = url::Url::parse(t).ok()?;
    matches!(u.scheme(), "http" | "https").then(|| t.to_string())
}

/// Strings of a JSON value that should be a list: an array (string / number elements), a JSON
/// array encoded as a string, or a plain string split on `sep` (when given).
pub(crate) fn string_list(v: Option<&Value>, sep: Option<char>) -> Vec<String> {
    let Some(v) = v else { return Vec::new() };
    match v {
        Value::Array(items) => items.iter().filter_map(scalar_string).collect(),
        Value::String(s) => {
            let t = s.trim();
            if t.starts_with('[') {
                if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(t) {
                    return items.iter().filter_map(scalar_string).collect();
                }
            }
            match sep {
                Some(c) => t
                    .split(c)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                None => scalar_string(v).into_iter().collect(),
            }
        }
        Value::Number(_) => scalar_string(v).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// A JSON value that may arrive encoded as a JSON string: decode it when it is one.
pub(crate) fn decode_json_string(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) => serde_json::from_str::<Value>(s.trim()).ok(),
        other => Some(other.clone()),
    }
}

/// Host names for `extra.hosts`: trimmed, lowercased, placeholders and IP-free de-duplicated.
#[derive(Debug, Default, Clone)]
pub(crate) struct HostSet {
    hosts: Vec<String>,
    seen: HashSet<String>,
}

impl HostSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, raw: &str) {
        let h = raw.trim().trim_end_matches('.').to_lowercase();
        if h.is_empty()
            || is_placeholder(&h)
            || h.chars().count() > MAX_HOST_CHARS
            || h.chars().any(char::is_control)
            || self.hosts.len() >= MAX_HOSTS
        {
            return;
        }
        if self.seen.insert(h.clone()) {
            self.hosts.push(h);
        }
    }

    pub fn add_json(&mut self, v: Option<&Value>) {
        for s in string_list(v, None) {
            self.add(&s);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    pub fn into_vec(self) -> Vec<String> {
        self.hosts
    }
}

// ---------------------------------------------------------------------------------------------
// Alert assembly shared by every source
// ---------------------------------------------------------------------------------------------

/// Everything a source found for one alert, before the shared finishing rules.
#[derive(Debug, Clone)]
pub(crate) struct AlertDraft {
    pub source_name: SourceName,
    pub source_alert_id: Option<String>,
    pub title: String,
    pub severity: Severity,
    pub severity_original: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub detection_rule_ref: Option<DetectionRuleRef>,
    pub mitre: Mitre,
    pub deep_link: Option<String>,
    pub extra: Map<String, Value>,
    pub indicators: IndicatorSet,
    pub hosts: HostSet,
}

impl AlertDraft {
    pub fn new(source_name: SourceName, title: String) -> Self {
        Self {
            source_name,
            source_alert_id: None,
            title,
            severity: Severity::Pending,
            severity_original: None,
            occurred_at: None,
            description: None,
            tags: Vec::new(),
            detection_rule_ref: None,
            mitre: Mitre::new(),
            deep_link: None,
            extra: Map::new(),
            indicators: IndicatorSet::new(),
            hosts: HostSet::new(),
        }
    }

    /// Set an `extra` key when the value is present and not null.
    pub fn set_extra(&mut self, key: &str, v: Option<&Value>) {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            self.extra.insert(key.to_string(), v.clone());
        }
    }

    /// Set an `extra` key to a string list when it is non-empty.
    pub fn set_extra_list(&mut self, key: &str, items: Vec<String>) {
        if !items.is_empty() {
            self.extra.insert(
                key.to_string(),
                Value::Array(items.into_iter().map(Value::String).collect()),
            );
        }
    }

    /// Apply the shared rules and produce the alert: extra indicator fields (§8.3, resolved in
    /// `raw` and then in each of `extra_roots`), receipt-time fallback, hash fallback id,
    /// `extra.hosts` and `extra.dropped_indicator_count`.
    pub fn finish(mut self, raw: &Value, extra_roots: &[&Value], ctx: &ParseContext) -> NormalizedAlert {
        for (path, kind) in &ctx.extra_indicator_fields {
            let found = std::iter::once(raw)
                .chain(extra_roots.iter().copied())
                .find_map(|root| lookup::lookup(root, path));
            if let Some(v) = found {
                add_multivalue(&mut self.indicators, *kind, v, path);
            }
        }
        let (occurred_at, inferred) = match self.occurred_at {
            Some(t) => (t, false),
            None => (ctx.received_at, true),
        };
        let source_alert_id = self
            .source_alert_id
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| fallback_alert_id(raw));
        if !self.hosts.is_empty() {
            let hosts = self.hosts.into_vec();
            self.extra.insert(
                "hosts".into(),
                Value::Array(hosts.into_iter().map(Value::String).collect()),
            );
        }
        if self.indicators.dropped() > 0 {
            self.extra.insert(
                "dropped_indicator_count".into(),
                Value::from(self.indicators.dropped() as u64),
            );
        }
        // Extraction stopped collecting (`MAX_EXTRACTED`); ingest records it with its own cap.
        if self.indicators.unexamined() > 0 {
            self.extra.insert(
                "unexamined_indicator_count".into(),
                Value::from(self.indicators.unexamined() as u64),
            );
        }
        NormalizedAlert {
            source_name: self.source_name,
            source_alert_id,
            title: self.title,
            severity: self.severity,
            severity_original: self.severity_original,
            occurred_at,
            occurred_at_inferred: inferred,
            description: self.description,
            tags: self.tags,
            detection_rule_ref: self.detection_rule_ref,
            mitre: self.mitre,
            deep_link: self.deep_link,
            extra: self.extra,
            indicators: self.indicators.into_vec(),
            raw_payload: raw.clone(),
        }
    }
}

/// Add a value that may be multivalued: a string (split on newlines), a number, or an array.
pub(crate) fn add_multivalue(set: &mut IndicatorSet, kind: IndicatorType, v: &Value, field: &str) {
    match v {
        Value::String(s) if s.contains('\n') => {
            for part in s.split('\n') {
                set.add(kind, part, field);
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) if s.contains('\n') => {
                        for part in s.split('\n') {
                            set.add(kind, part, field);
                        }
                    }
                    other => set.add_json(kind, other, field),
                }
            }
        }
        other => set.add_json(kind, other, field),
    }
}

/// Build a rule reference: `id` (required) and `name` falling back to the id.
pub(crate) fn rule_ref(id: Option<String>, name: Option<String>) -> Option<DetectionRuleRef> {
    let id = id.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())?;
    let name = name
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| id.clone());
    Some(DetectionRuleRef { id, name })
}

/// Resolve a batch: too many alerts is an error; so is "no alert accepted and at least one
/// invalid" (then every rejection's errors are reported).
pub(crate) fn finish_batch(items: Vec<ParsedItem>) -> Result<Vec<ParsedItem>, ParseError> {
    let accepted = items.iter().any(|i| matches!(i, ParsedItem::Alert(_)));
    let rejected = items.iter().any(|i| matches!(i, ParsedItem::Rejected { .. }));
    if !accepted && rejected {
        let errors = items
            .into_iter()
            .flat_map(|i| match i {
                ParsedItem::Rejected { errors } => errors,
                _ => Vec::new(),
            })
            .collect();
        return Err(ParseError::InvalidPayload(errors));
    }
    Ok(items)
}

/// Check the batch size rules shared by the batch-capable sources.
pub(crate) fn check_batch_len(len: usize) -> Result<(), ParseError> {
    if len == 0 {
        return Err(ParseError::invalid("$", "the body contains no alerts"));
    }
    if len > MAX_ALERTS_PER_REQUEST {
        return Err(ParseError::invalid(
            "$",
            format!("{len} alerts in one request; at most {MAX_ALERTS_PER_REQUEST} are accepted"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_and_compacts() {
        let v = json!({"b": [1, {"z": null, "a": "é\"x"}], "a": true, "A": 1.5});
        assert_eq!(
            canonical_json(&v),
            r#"{"A":1.5,"a":true,"b":[1,{"a":"é\"x","z":null}]}"#
        );
        let k = sha256_key(b"");
        assert_eq!(
            k,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            fallback_alert_id(&json!({"b": 1, "a": 2})),
            fallback_alert_id(&json!({"a": 2, "b": 1}))
        );
        assert_eq!(
            fallback_alert_id(&v),
            sha256_key(canonical_json(&v).as_bytes()),
            "streamed and buffered forms agree"
        );
    }

    #[test]
    fn cleaning_rules() {
        assert_eq!(clean_title(Some("  x  "), "fb"), "x");
        assert_eq!(clean_title(Some("   "), "fb"), "fb");
        assert_eq!(clean_title(None, "fb"), "fb");
        let long = "é".repeat(1500);
        assert_eq!(clean_title(Some(&long), "fb").chars().count(), 1000);
        assert_eq!(clean_description(Some("  ")), None);
        assert_eq!(clean_description(Some(" d ")).as_deref(), Some("d"));
        let tags = clean_tags([" a", "a", "", "b ", &"x".repeat(250)]);
        assert_eq!(tags.len(), 3);
        assert_eq!(tags[2].len(), 200);
        let many: Vec<String> = (0..150).map(|i| format!("t{i}")).collect();
        assert_eq!(clean_tags(&many).len(), 100);
        assert_eq!(clean_link(Some("javascript:alert(1)")), None);
        assert_eq!(clean_link(Some("not a url")), None);
        assert_eq!(
            clean_link(Some(" https://x.example/a ")).as_deref(),
            Some("https://x.example/a")
        );
    }

    #[test]
    fn string_lists() {
        assert_eq!(string_list(Some(&json!("[\"a\", \"b\"]")), None), vec!["a", "b"]);
        assert_eq!(string_list(Some(&json!("a, b,,c")), Some(',')), vec!["a", "b", "c"]);
        assert_eq!(string_list(Some(&json!(["a", 1, null, {}])), None), vec!["a", "1"]);
        assert!(string_list(Some(&json!({})), None).is_empty());
        assert_eq!(string_list(Some(&json!("[broken")), None), vec!["[broken"]);
    }

    #[test]
    fn names_and_registry() {
        for n in SourceName::ALL {
            assert_eq!(n.as_str().parse::<SourceName>().ok(), Some(n));
            assert_eq!(source_for(n).name(), n);
            assert_eq!(serde_json::to_value(n).ok(), Some(json!(n.as_str())));
        }
        assert!("Sentinel".parse::<SourceName>().is_err());
    }

    #[test]
    fn batch_rules() {
        let rej = ParsedItem::Rejected {
            errors: vec![FieldError::new(Some(0), "title", "missing")],
        };
        let skip = ParsedItem::Skipped { reason: "x".into() };
        assert!(finish_batch(vec![rej.clone()]).is_err());
        assert!(finish_batch(vec![rej, skip.clone()]).is_err());
        assert!(finish_batch(vec![skip]).is_ok());
        assert!(check_batch_len(0).is_err());
        assert!(check_batch_len(100).is_ok());
        assert!(check_batch_len(101).is_err());
    }
}
