//! Envelopes and pagination (api spec §1): `{"data": …, "meta": {…}}`; paginated lists carry
//! `total, page, page_size, total_pages`.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::ApiError;

pub(crate) const DEFAULT_PAGE_SIZE: i64 = 50;
pub(crate) const MAX_PAGE_SIZE: i64 = 500;

/// `page` and `page_size` as sent (validated by [`Page::from_query`]).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageQuery {
    pub page: Option<String>,
    pub page_size: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Page {
    pub page: i64,
    pub page_size: i64,
}

impl Page {
    pub fn from_query(q: &PageQuery) -> Result<Self, ApiError> {
        let num = |field: &str, v: &Option<String>, default: i64, max: i64| -> Result<i64, ApiError> {
            match v.as_deref() {
                None | Some("") => Ok(default),
                Some(s) => s
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        ApiError::validation(
                            &format!("query.{field}"),
                            &format!("must be a whole number from 1 to {max}"),
                            "int_parsing",
                        )
                    }),
            }
        };
        Ok(Self {
            page: num("page", &q.page, 1, i64::from(i32::MAX))?,
            page_size: num("page_size", &q.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?,
        })
    }

    pub fn offset(&self) -> i64 {
        (self.page - 1).saturating_mul(self.page_size)
    }

    /// The paginated envelope.
    pub fn envelope<T: serde::Serialize>(&self, data: Vec<T>, total: i64) -> Value {
        let total_pages = if total == 0 {
            0
        } else {
            (total + self.page_size - 1) / self.page_size
        };
        json!({
            "data": data,
            "meta": {"total": total, "page": self.page, "page_size": self.page_size, "total_pages": total_pages},
        })
    }
}

/// `{"data": v, "meta": {}}`.
pub fn single(v: Value) -> Value {
    json!({"data": v, "meta": {}})
}

/// A request body as a JSON object: 400 `INVALID_JSON` when it is not JSON, 422 when it is not
/// an object.
pub(crate) fn object_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| ApiError::invalid_json())?;
    if let Some(path) = nul_path(&v, "body") {
        // Postgres text cannot hold U+0000; say so instead of failing at the database.
        return Err(ApiError::validation(
            &path,
            "must not contain NUL characters (\\u0000)",
            "string_type",
        ));
    }
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::validation("body", "must be a JSON object", "dict_type")),
    }
}

/// [`object_body`] that also refuses fields request schema `schema` does not accept (422 naming them).
pub(crate) fn strict_body(body: &[u8], schema: &str) -> Result<Map<String, Value>, ApiError> {
    let obj = object_body(body)?;
    super::fields::strict(&obj, schema)?;
    Ok(obj)
}

/// The path of the first string or key holding a NUL character, if any.
pub(crate) fn nul_path(v: &Value, at: &str) -> Option<String> {
    match v {
        Value::String(s) if s.contains('\0') => Some(at.to_string()),
        Value::Array(xs) => xs
            .iter()
            .enumerate()
            .find_map(|(i, x)| nul_path(x, &format!("{at}[{i}]"))),
        Value::Object(m) => m.iter().find_map(|(k, x)| {
            if k.contains('\0') {
                Some(at.to_string())
            } else {
                nul_path(x, &format!("{at}.{k}"))
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(page: Option<&str>, size: Option<&str>) -> PageQuery {
        PageQuery {
            page: page.map(str::to_string),
            page_size: size.map(str::to_string),
        }
    }

    #[test]
    fn pages_validate_and_count() {
        assert_eq!(
            Page::from_query(&q(None, None)).unwrap(),
            Page { page: 1, page_size: 50 }
        );
        for (p, s) in [
            (Some("0"), None),
            (None, Some("0")),
            (None, Some("501")),
            (Some("x"), None),
            (Some("-1"), None),
        ] {
            let e = Page::from_query(&q(p, s)).unwrap_err();
            assert_eq!(e.status.as_u16(), 422);
        }
        let page = Page::from_query(&q(Some("3"), Some("500"))).unwrap();
        assert_eq!(page.offset(), 1000);
        let env = Page { page: 1, page_size: 2 }.envelope(Vec::<Value>::new(), 5);
        assert_eq!(env["meta"]["total_pages"], 3);
        let env = Page { page: 1, page_size: 2 }.envelope(Vec::<Value>::new(), 0);
        assert_eq!(env["meta"]["total_pages"], 0);
    }
}
