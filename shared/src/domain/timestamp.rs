//! Timestamp parsing (spec `sources.md` §1 "Timestamps").
//!
//! * RFC 3339 / ISO 8601 with `Z` or an offset (`+01:00` or `+0100`) and any number of fraction
//!   digits (digits past the ninth are truncated; Sentinel sends 7).
//! * A date-time string with no offset is UTC. A `T` or a single space may separate date and time.
//! * Epoch values (JSON number or numeric string, fraction allowed) are seconds; values above
//!   10^12 are milliseconds.
//!
//! Anything else yields `None` so the caller can try its next fallback.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

/// Epoch values strictly above this are milliseconds.
const MS_THRESHOLD: i128 = 1_000_000_000_000;

/// Parse a JSON value (string or number) as a timestamp.
pub(crate) fn parse_value(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::String(s) => parse_str(s),
        Value::Number(n) => parse_epoch_text(&n.to_string()),
        _ => None,
    }
}

/// Parse a string as a timestamp: numeric epoch first, then RFC 3339 / ISO 8601.
pub fn parse_str(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    if let Some(t) = parse_epoch_text(s) {
        return Some(t);
    }
    parse_iso(s)
}

/// Parse decimal epoch text (`1705312200`, `1705312200.123`, `-5`, `1.7e9`).
pub(crate) fn parse_epoch_text(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if body.is_empty() {
        return None;
    }
    let (int_part, frac_part) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty()) || !all_digits(int_part) || !all_digits(frac_part) {
        // Exponent notation (e.g. from a float serializer): go through f64.
        if body.bytes().any(|b| b == b'e' || b == b'E')
            && body
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        {
            let f: f64 = s.parse().ok()?;
            return from_f64(f);
        }
        return None;
    }
    if int_part.len() > 20 {
        return None;
    }
    let int: i128 = if int_part.is_empty() { 0 } else { int_part.parse().ok()? };
    // Fraction as nanoseconds-of-unit (9 digits, truncated).
    let mut frac_digits: String = frac_part.chars().take(9).collect();
    while frac_digits.len() < 9 {
        frac_digits.push('0');
    }
    let frac: i128 = frac_digits.parse().ok()?;
    let sign: i128 = if neg { -1 } else { 1 };
    // Total value in units of 1e-9 of the epoch unit.
    let total = sign * (int * 1_000_000_000 + frac);
    let nanos: i128 = if int > MS_THRESHOLD || (int == MS_THRESHOLD && frac > 0) {
        total.checked_mul(1_000_000)? / 1_000_000_000
    } else {
        total
    };
    from_nanos(nanos)
}

fn from_f64(f: f64) -> Option<DateTime<Utc>> {
    if !f.is_finite() || f.abs() > 1e17 {
        return None;
    }
    let secs = if f.abs() > MS_THRESHOLD as f64 { f / 1000.0 } else { f };
    let nanos = (secs * 1e9).round();
    from_nanos(nanos as i128)
}

fn from_nanos(nanos: i128) -> Option<DateTime<Utc>> {
    let secs = nanos.div_euclid(1_000_000_000);
    let sub = nanos.rem_euclid(1_000_000_000);
    let secs = i64::try_from(secs).ok()?;
    let sub = u32::try_from(sub).ok()?;
    DateTime::<Utc>::from_timestamp(secs, sub)
}

/// ISO 8601 / RFC 3339 date-time; no offset means UTC.
fn parse_iso(s: &str) -> Option<DateTime<Utc>> {
    if !s.is_ascii() {
        return None;
    }
    let mut t = s.to_string();
    // Accept a space or lowercase `t` as the date/time separator.
    if t.len() > 10 {
        let sep = t.as_bytes()[10];
        if sep == b' ' || sep == b't' {
            t.replace_range(10..11, "T");
        }
    }
    if t.ends_with('z') {
        t.pop();
        t.push('Z');
    }
    // Truncate fraction digits beyond 9 (chrono accepts at most 9).
    let t = truncate_fraction(&t);

    if let Ok(dt) = DateTime::parse_from_rfc3339(&t) {
        return Some(dt.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(dt) = DateTime::parse_from_str(&t, fmt) {
            return Some(dt.with_timezone(&Utc));
        }
    }
    let naive = t.strip_suffix('Z').unwrap_or(&t);
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(ndt) = NaiveDateTime::parse_from_str(naive, fmt) {
            return Some(Utc.from_utc_datetime(&ndt));
        }
    }
    if t.len() == 10 {
        if let Ok(d) = NaiveDate::parse_from_str(&t, "%Y-%m-%d") {
            return d.and_hms_opt(0, 0, 0).map(|ndt| Utc.from_utc_datetime(&ndt));
        }
    }
    None
}

/// Cut a fraction-of-second to at most 9 digits.
fn truncate_fraction(s: &str) -> String {
    let Some(dot) = s.find('.') else {
        return s.to_string();
    };
    let bytes = s.as_bytes();
    let mut end = dot + 1;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
    }
    let digits = end - dot - 1;
    if digits <= 9 {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..dot + 10]);
    out.push_str(&s[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn iso(s: &str) -> String {
        parse_str(s)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            .unwrap_or_else(|| "NONE".into())
    }

    #[test]
    fn rfc3339_variants() {
        assert_eq!(iso("2025-01-15T10:20:30Z"), "2025-01-15T10:20:30Z");
        assert_eq!(iso("2025-01-15T10:20:30.1234567Z"), "2025-01-15T10:20:30.123456700Z");
        assert_eq!(iso("2025-01-15T10:20:30.123456789Z"), "2025-01-15T10:20:30.123456789Z");
        assert_eq!(
            iso("2025-01-15T10:20:30.1234567891234Z"),
            "2025-01-15T10:20:30.123456789Z"
        );
        assert_eq!(iso("2025-01-15T10:20:30+02:00"), "2025-01-15T08:20:30Z");
        assert_eq!(iso("2025-01-15T10:20:30-0530"), "2025-01-15T15:50:30Z");
        assert_eq!(iso("2025-01-15T10:20:30.5+01:00"), "2025-01-15T09:20:30.500Z");
        assert_eq!(iso("2025-01-15t10:20:30z"), "2025-01-15T10:20:30Z");
    }

    #[test]
    fn naive_is_utc() {
        assert_eq!(iso("2025-01-15T10:20:30"), "2025-01-15T10:20:30Z");
        assert_eq!(iso("2025-01-15 10:20:30.250"), "2025-01-15T10:20:30.250Z");
        assert_eq!(iso("2025-01-15T10:20"), "2025-01-15T10:20:00Z");
        assert_eq!(iso("2025-01-15"), "2025-01-15T00:00:00Z");
    }

    #[test]
    fn epoch_seconds_and_millis() {
        assert_eq!(iso("1705312200"), "2024-01-15T09:50:00Z");
        assert_eq!(iso("1705312200.000"), "2024-01-15T09:50:00Z");
        assert_eq!(iso("1705312200.25"), "2024-01-15T09:50:00.250Z");
        assert_eq!(iso("1705312200123"), "2024-01-15T09:50:00.123Z");
        assert_eq!(iso(" 1705312200 "), "2024-01-15T09:50:00Z");
        // exactly 10^12 is still seconds (only values above are ms)
        assert_ne!(iso("1000000000000"), "NONE");
        let v = parse_value(&json!(1705312200)).map(|d| d.timestamp());
        assert_eq!(v, Some(1705312200));
        let v = parse_value(&json!(1705312200123_u64)).map(|d| d.timestamp_millis());
        assert_eq!(v, Some(1705312200123));
        let v = parse_value(&json!(1705312200.5)).map(|d| d.timestamp_millis());
        assert_eq!(v, Some(1705312200500));
        let v = parse_value(&json!(1.7053122e9)).map(|d| d.timestamp());
        assert_eq!(v, Some(1705312200));
    }

    #[test]
    fn garbage_is_none() {
        for s in [
            "",
            "  ",
            "yesterday",
            "2025-13-45T99:99:99Z",
            "1.2.3",
            "12abc",
            ".",
            "-",
            "99999999999999999999999999",
            "2025-01-15T10:20:30+99:00",
            "٣٤٥",
        ] {
            assert_eq!(iso(s), "NONE", "{s}");
        }
        assert!(parse_value(&json!(null)).is_none());
        assert!(parse_value(&json!(true)).is_none());
        assert!(parse_value(&json!({"a": 1})).is_none());
        assert!(parse_value(&json!(1e300)).is_none());
    }
}
