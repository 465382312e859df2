//! The one error type of the HTTP boundary: every failure leaves as
//! `{"error": {"code", "message", "details"}}` (api spec §3) and never shows internals.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use crate::db::DbError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: json!({}),
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// 400 `INVALID_JSON`: the body is not valid JSON (api spec §1).
    pub fn invalid_json() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
            "Request body is not valid JSON",
        )
    }

    /// 422 `VALIDATION_ERROR` for one field (`field` as `body.x` / `query.x`; `kind` names the
    /// rule that failed, e.g. `missing`, `string_type`).
    pub fn validation(field: &str, message: &str, kind: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
            "Request validation failed",
        )
        .with_details(json!({"errors": [{"field": field, "message": message, "type": kind}]}))
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", "Not found")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "Method not allowed for this path",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "An unexpected error occurred",
        )
    }

    pub fn unavailable(what: &str) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            format!("{what} is unavailable; retry later"),
        );
        e.retry_after = Some(5);
        e
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        if e.is_transient() {
            tracing::warn!(error = %e, "database unavailable");
            ApiError::unavailable("The database")
        } else {
            // Debug carries the database's own message and code.
            tracing::error!(error = %e, detail = ?e, "database error");
            ApiError::internal()
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message, "details": self.details}});
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<crate::service::ServiceError> for ApiError {
    fn from(e: crate::service::ServiceError) -> Self {
        use crate::service::ServiceError as S;
        match e {
            S::NotFound(what) => ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("{what} not found")),
            // Service arguments come from the body on every REST write; queries map their own.
            S::Invalid { field, message, kind } => ApiError::validation(&format!("body.{field}"), &message, kind),
            S::Unavailable(what) => ApiError::unavailable(what),
            S::Db(e) => e.into(),
        }
    }
}

impl From<crate::ingest::IngestError> for ApiError {
    fn from(e: crate::ingest::IngestError) -> Self {
        use crate::ingest::IngestError as I;
        let unprocessable = |code, message: &str, errors: Value| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_details(json!({ "errors": errors }))
        };
        match e {
            I::InvalidJson => ApiError::invalid_json(),
            I::InvalidPayload { errors } => unprocessable(
                "INVALID_PAYLOAD",
                "The body is not a valid alert for this source",
                errors,
            ),
            I::TooManyAlerts { count, max } => unprocessable(
                "INVALID_PAYLOAD",
                "Too many alerts in one request",
                json!([{
                    "field": "$",
                    "message": format!("{count} alerts in one request; at most {max} are accepted"),
                }]),
            ),
            I::FieldsTooLong { errors } => unprocessable(
                "VALIDATION_ERROR",
                "Alert fields exceed their limits",
                Value::Array(errors),
            ),
            I::Db(e) => e.into(),
            I::Internal => ApiError::internal(),
        }
    }
}

/// A query or a pool checkout reaches the envelope through [`DbError`] (transient → 503, else
/// 500), so handlers use `?` on them directly.
impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::from(e).into()
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DbError::from(e).into()
    }
}
