//! Dotted-key lookup of spec `sources.md` §3.1.
//!
//! To read `a.b.c` from an object, try the longest dotted prefix first (`"a.b.c"`, then `"a.b"`
//! followed by `c` inside it, then `"a"` followed by `b.c` inside it), recursing into objects.
//! The first hit wins; `null` counts as no hit, so the search goes on. This resolves nested
//! (`{"kibana":{"alert":{"uuid":…}}}`), flat (`{"kibana.alert.uuid":…}`) and mixed
//! (`{"kibana.alert":{"uuid":…}}`) documents alike. Every node is visited at most once, so the
//! cost is bounded by the size of the document.

use serde_json::{Map, Value};

/// Paths with more segments than this are not resolved.
pub(crate) const MAX_PATH_SEGMENTS: usize = 32;

/// Resolve a dotted `path` in `root`. Returns `None` when absent or `null`.
pub fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim();
    if path.is_empty() {
        return None;
    }
    let parts: Vec<&str> = path.split('.').collect();
    if parts.len() > MAX_PATH_SEGMENTS {
        return None;
    }
    lookup_parts(root, &parts)
}

fn lookup_parts<'a>(v: &'a Value, parts: &[&str]) -> Option<&'a Value> {
    let map = v.as_object()?;
    for n in (1..=parts.len()).rev() {
        let key = parts[..n].join(".");
        let Some(child) = map.get(&key) else {
            continue;
        };
        if child.is_null() {
            continue;
        }
        if n == parts.len() {
            return Some(child);
        }
        if let Some(found) = lookup_parts(child, &parts[n..]) {
            return Some(found);
        }
    }
    None
}

/// A non-empty (trimmed) string at `path`.
pub(crate) fn lookup_str<'a>(root: &'a Value, path: &str) -> Option<&'a str> {
    lookup(root, path)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A string (trimmed, non-empty) or a number rendered as text at `path`.
pub(crate) fn lookup_scalar(root: &Value, path: &str) -> Option<String> {
    lookup(root, path).and_then(super::scalar_string)
}

/// First path that yields a non-empty string or number.
pub(crate) fn first_scalar(root: &Value, paths: &[&str]) -> Option<String> {
    paths.iter().find_map(|p| lookup_scalar(root, p))
}

/// Case-insensitive key access on an object: exact key first, then any key equal ignoring
/// ASCII case. Returns the key as written and its value.
pub(crate) fn get_ci<'a>(map: &'a Map<String, Value>, key: &str) -> Option<(&'a str, &'a Value)> {
    if let Some((k, v)) = map.get_key_value(key) {
        return Some((k.as_str(), v));
    }
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(k, v)| (k.as_str(), v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_flat_and_mixed() {
        let nested = json!({"kibana": {"alert": {"uuid": "n"}}});
        let flat = json!({"kibana.alert.uuid": "f"});
        let mixed = json!({"kibana.alert": {"uuid": "m"}});
        let mixed2 = json!({"kibana": {"alert.uuid": "m2"}});
        assert_eq!(lookup_str(&nested, "kibana.alert.uuid"), Some("n"));
        assert_eq!(lookup_str(&flat, "kibana.alert.uuid"), Some("f"));
        assert_eq!(lookup_str(&mixed, "kibana.alert.uuid"), Some("m"));
        assert_eq!(lookup_str(&mixed2, "kibana.alert.uuid"), Some("m2"));
    }

    #[test]
    fn longest_prefix_first_then_backtracks() {
        let v = json!({
            "a.b.c": "whole",
            "a.b": {"c": "prefix2"},
            "a": {"b.c": "prefix1", "b": {"c": "deep"}}
        });
        assert_eq!(lookup_str(&v, "a.b.c"), Some("whole"));
        let v = json!({"a.b": {"c": "prefix2"}, "a": {"b": {"c": "deep"}}});
        assert_eq!(lookup_str(&v, "a.b.c"), Some("prefix2"));
        // "a.b" exists but has no "c": keep searching under "a"
        let v = json!({"a.b": {"x": 1}, "a": {"b": {"c": "deep"}}});
        assert_eq!(lookup_str(&v, "a.b.c"), Some("deep"));
        // null is not a hit
        let v = json!({"a.b.c": null, "a": {"b": {"c": "deep"}}});
        assert_eq!(lookup_str(&v, "a.b.c"), Some("deep"));
    }

    #[test]
    fn misses_and_non_objects() {
        let v = json!({"a": [1, 2], "s": "x"});
        assert!(lookup(&v, "a.0").is_none());
        assert!(lookup(&v, "s.len").is_none());
        assert!(lookup(&v, "").is_none());
        assert!(lookup(&json!("str"), "a").is_none());
        assert_eq!(lookup(&v, "a"), Some(&json!([1, 2])));
        let long = vec!["a"; 40].join(".");
        assert!(lookup(&v, &long).is_none());
        assert_eq!(lookup_scalar(&json!({"n": 42}), "n").as_deref(), Some("42"));
        assert_eq!(first_scalar(&json!({"b": " x "}), &["a", "b"]).as_deref(), Some("x"));
    }

    #[test]
    fn case_insensitive_get() {
        let v = json!({"Address": "1.2.3.4"});
        let m = v.as_object().cloned().unwrap_or_default();
        assert_eq!(get_ci(&m, "address").map(|x| x.0), Some("Address"));
        assert!(get_ci(&m, "addr").is_none());
    }
}
