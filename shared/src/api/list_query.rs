//! Query strings of list endpoints (api spec §1): pagination, comma-separated enum filters,
//! booleans, and `sort_by` / `sort_order` (a bad sort is 400, everything else 422).

use serde_json::json;

use super::page::{Page, PageQuery};
use super::ApiError;

pub(crate) struct ListQuery {
    pairs: Vec<(String, String)>,
}

fn sort_error(field: &str, message: String) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        "Request validation failed",
    )
    .with_details(json!({"errors": [{"field": format!("query.{field}"), "message": message, "type": "enum"}]}))
}

impl ListQuery {
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        if let Some((k, _)) = pairs.iter().find(|(k, v)| k.contains('\0') || v.contains('\0')) {
            return Err(ApiError::validation(
                &format!("query.{}", k.replace('\0', "")),
                "must not contain NUL characters",
                "string_type",
            ));
        }
        Ok(Self { pairs })
    }

    /// The last non-empty value of `key`.
    pub fn one(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn page(&self) -> Result<Page, ApiError> {
        Page::from_query(&PageQuery {
            page: self.one("page").map(str::to_string),
            page_size: self.one("page_size").map(str::to_string),
        })
    }

    /// Comma-separated (or repeated) values of `key`, each one of `allowed` (case-insensitive
    /// in, canonical out); `None` when absent.
    pub fn list(&self, key: &str, allowed: &[&str]) -> Result<Option<Vec<String>>, ApiError> {
        let mut out = Vec::new();
        for (_, v) in self.pairs.iter().filter(|(k, _)| k == key) {
            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let canon = allowed.iter().find(|a| a.eq_ignore_ascii_case(item)).ok_or_else(|| {
                    ApiError::validation(
                        &format!("query.{key}"),
                        &format!("{item:?} is not one of {}", allowed.join(", ")),
                        "enum",
                    )
                })?;
                out.push(canon.to_string());
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }

    pub fn boolean(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.one(key) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::validation(
                &format!("query.{key}"),
                "true or false",
                "bool_parsing",
            )),
        }
    }

    /// Every non-empty value of a repeated `key` (`tags=a&tags=b`); `None` when absent.
    pub fn all(&self, key: &str) -> Option<Vec<String>> {
        let v: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        (!v.is_empty()).then_some(v)
    }

    pub fn uuid(&self, key: &str) -> Result<Option<uuid::Uuid>, ApiError> {
        self.one(key)
            .map(|v| {
                uuid::Uuid::parse_str(v)
                    .map_err(|_| ApiError::validation(&format!("query.{key}"), "a UUID", "uuid_parsing"))
            })
            .transpose()
    }

    pub fn timestamp(&self, key: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
        self.one(key)
            .map(|v| {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map(|d| d.with_timezone(&chrono::Utc))
                    .map_err(|_| {
                        ApiError::validation(&format!("query.{key}"), "an RFC 3339 timestamp", "datetime_parsing")
                    })
            })
            .transpose()
    }

    /// `ORDER BY` text from `sort_by` (one of `columns`: (name, SQL expression)) and
    /// `sort_order` (default `desc`), ending with `tiebreak` in the same direction so pages are
    /// stable.
    pub fn sort(&self, columns: &[(&str, &str)], default: &str, tiebreak: &str) -> Result<String, ApiError> {
        let by = self.one("sort_by").unwrap_or(default);
        let expr = columns.iter().find(|(n, _)| *n == by).map(|(_, e)| *e).ok_or_else(|| {
            let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
            sort_error("sort_by", format!("{by:?} is not one of {}", names.join(", ")))
        })?;
        let order = match self.one("sort_order").unwrap_or("desc") {
            "asc" => "ASC",
            "desc" => "DESC",
            _ => return Err(sort_error("sort_order", "asc or desc".into())),
        };
        Ok(format!("{expr} {order}, {tiebreak} {order}"))
    }
}
