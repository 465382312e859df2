//! Reading the fields of a JSON request body with the standard validation errors
//! (`details.errors[].field` = `body.<name>`). Absent → `None`; for nullable fields an explicit
//! `null` → `Some(None)` (PATCH: "set to null").

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::ApiError;

pub type Body = Map<String, Value>;

/// Fields every resource shows but no request may set.
const READ_ONLY: &[&str] = &[
    "id",
    "uuid",
    "created_at",
    "updated_at",
    "key",
    "key_prefix",
    "last_used_at",
    "is_system",
    "show_once",
    "revoked_at",
    "signing_secret",
    "closed_at",
    "alert_uuid",
    "indicator_count",
    "enrichment_status",
];

/// The reference's workflow execution settings: refused rather than silently dropped.
const WORKFLOW_EXECUTION: &[&str] = &[
    "code",
    "timeout_seconds",
    "retry_count",
    "approval_channel",
    "approval_timeout_seconds",
];

/// 422 naming every field of `body` that request schema `schema` (see
/// [`super::openapi::unknown_fields`]) does not accept: a caller must never believe an ignored
/// field took effect.
pub fn strict(body: &Body, schema: &str) -> Result<(), ApiError> {
    let unknown = super::openapi::unknown_fields(schema, body);
    if unknown.is_empty() {
        return Ok(());
    }
    let errors: Vec<Value> = unknown
        .iter()
        .map(|path| {
            let name = path.rsplit('.').next().unwrap_or(path);
            if schema == "WorkflowWrite" && WORKFLOW_EXECUTION.contains(&name) {
                serde_json::json!({"field": path, "type": "extra_forbidden",
                    "message": "is not stored: workflows are documentation for agents; this product never runs code"})
            } else if READ_ONLY.contains(&name) {
                serde_json::json!({"field": path, "message": "is read-only", "type": "read_only"})
            } else {
                serde_json::json!({"field": path, "message": "is not a field of this resource", "type": "extra_forbidden"})
            }
        })
        .collect();
    Err(ApiError::validation("body", "", "").with_details(serde_json::json!({ "errors": errors })))
}

pub fn err(field: &str, message: &str, kind: &str) -> ApiError {
    ApiError::validation(&format!("body.{field}"), message, kind)
}

/// A string of 1..=`max` characters (trimmed emptiness is refused).
pub fn text(obj: &Body, field: &str, max: usize) -> Result<Option<Option<String>>, ApiError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if s.trim().is_empty() => Err(err(field, "must not be empty", "string_too_short")),
        Some(Value::String(s)) if s.chars().count() > max => {
            Err(err(field, &format!("at most {max} characters"), "string_too_long"))
        }
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(err(field, "must be a string", "string_type")),
    }
}

/// A required (on create) or non-null (on PATCH) string.
pub(crate) fn required_text(obj: &Body, field: &str, max: usize, creating: bool) -> Result<Option<String>, ApiError> {
    match text(obj, field, max)? {
        Some(Some(s)) => Ok(Some(s)),
        Some(None) => Err(err(field, "may not be null", "string_type")),
        None if creating => Err(err(field, "field required", "missing")),
        None => Ok(None),
    }
}

/// One of `allowed` (case-insensitive in, canonical out).
pub(crate) fn one_of(obj: &Body, field: &str, allowed: &[&str]) -> Result<Option<Option<String>>, ApiError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(s.trim()))
            .map(|a| Some(Some(a.to_string())))
            .ok_or_else(|| err(field, &format!("must be one of {}", allowed.join(", ")), "enum")),
        Some(_) => Err(err(field, "must be a string", "string_type")),
    }
}

pub fn boolean(obj: &Body, field: &str) -> Result<Option<bool>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(err(field, "must be true or false", "bool_type")),
    }
}

pub fn int(obj: &Body, field: &str, min: i64, max: i64) -> Result<Option<Option<i32>>, ApiError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => match v.as_i64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(Some(n as i32))),
            Some(_) => Err(err(field, &format!("must be from {min} to {max}"), "value_error")),
            None => Err(err(field, "must be a whole number", "int_type")),
        },
    }
}

/// A list of non-empty strings (≤ 255 chars each), de-duplicated in order; `null` → empty.
pub fn strings(obj: &Body, field: &str) -> Result<Option<Vec<String>>, ApiError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(Vec::new())),
        Some(Value::Array(xs)) => {
            let mut out: Vec<String> = Vec::with_capacity(xs.len());
            for x in xs {
                match x.as_str().map(str::trim) {
                    Some(s) if !s.is_empty() && s.len() <= 255 => {
                        if !out.iter().any(|o| o == s) {
                            out.push(s.to_string());
                        }
                    }
                    _ => return Err(err(field, "must be a list of non-empty strings", "list_type")),
                }
            }
            Ok(Some(out))
        }
        Some(_) => Err(err(field, "must be a list of strings", "list_type")),
    }
}

/// A list whose every item is one of `allowed`.
pub(crate) fn strings_of(obj: &Body, field: &str, allowed: &[&str]) -> Result<Option<Vec<String>>, ApiError> {
    let Some(list) = strings(obj, field)? else {
        return Ok(None);
    };
    list.into_iter()
        .map(|s| {
            allowed
                .iter()
                .find(|a| a.eq_ignore_ascii_case(&s))
                .map(|a| a.to_string())
                .ok_or_else(|| err(field, &format!("{s:?} is not one of {}", allowed.join(", ")), "enum"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

pub fn timestamp(obj: &Body, field: &str) -> Result<Option<Option<DateTime<Utc>>>, ApiError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s.trim())
            .map(|d| Some(Some(d.with_timezone(&Utc))))
            .map_err(|_| err(field, "an RFC 3339 timestamp", "datetime_parsing")),
        Some(_) => Err(err(field, "must be a string", "string_type")),
    }
}

/// Targeting rules (validated); `Some(None)` clears them.
pub(crate) fn targeting(obj: &Body, field: &str) -> Result<Option<Option<Value>>, ApiError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => {
            let parsed = crate::context::targeting::TargetingRules::parse(v).map_err(|e| {
                ApiError::validation(
                    &format!("body.{}", e.path.replacen("targeting_rules", field, 1)),
                    &e.message,
                    "value_error",
                )
            })?;
            Ok(Some(parsed.map(|_| v.clone())))
        }
    }
}

/// A field that may be absent but not null: `null` is a validation error of type `kind`.
pub(crate) fn non_null<T>(v: Option<Option<T>>, field: &str, kind: &str) -> Result<Option<T>, ApiError> {
    match v {
        Some(None) => Err(err(field, "may not be null", kind)),
        other => Ok(other.flatten()),
    }
}

/// `(was given, value)` for a nullable PATCH field.
pub fn split<T>(v: Option<Option<T>>) -> (bool, Option<T>) {
    match v {
        None => (false, None),
        Some(x) => (true, x),
    }
}
