//! Context documents (api spec §5.6): runbooks, IR plans, SOPs … attached to alerts' payloads by
//! targeting rules. GET needs `alerts:read`; POST/PATCH/DELETE need `alerts:write`. JSON bodies.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::extract::{missing, res, Authorized, Id};
use super::fields::{self, err};
use super::list_query::ListQuery;
use super::page;
use super::{ApiError, AppState};
use crate::db::catalog::{self as repo, ContextDocumentPatch, NewContextDocument};
use crate::service::catalog::{self, ContextDocument};

pub(crate) const DOCUMENT_TYPES: [&str; 6] = ["runbook", "ir_plan", "sop", "playbook", "detection_guide", "other"];
/// Largest document body (1 MiB).
pub(crate) const MAX_CONTENT_BYTES: usize = 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/context-documents", get(list).post(create))
        .route("/v1/context-documents/{uuid}", get(detail).patch(patch).delete(delete))
}

fn content(obj: &fields::Body, creating: bool) -> Result<Option<String>, ApiError> {
    let c = match obj.get("content") {
        None if creating => return Err(err("content", "field required", "missing")),
        None => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(err("content", "must not be empty", "string_too_short"))
        }
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(err("content", "must be a string", "string_type")),
    };
    if c.len() > MAX_CONTENT_BYTES {
        return Err(err("content", "at most 1 MiB", "string_too_long"));
    }
    Ok(Some(c))
}

async fn list(Authorized { client, .. }: Authorized, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let q = ListQuery::parse(q.as_deref())?;
    let page = q.page()?;
    let types = q.list("document_type", &DOCUMENT_TYPES)?;
    let is_global = q.boolean("is_global")?;
    let sort = q.sort(
        &[
            ("title", "title"),
            ("document_type", "document_type"),
            ("updated_at", "updated_at"),
            ("created_at", "created_at"),
        ],
        "created_at",
        "id",
    )?;
    let listed = catalog::list_documents(&*client, types, is_global, &sort, page.page_size, page.offset()).await?;
    Ok(Json(page.envelope(listed.items, listed.total)))
}

/// Largest request body (a 1 MiB document plus form overhead).
const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

async fn create(
    State(state): State<AppState>,
    Authorized { client, .. }: Authorized,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let headers = req.headers().clone();
    let multipart = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("multipart/form-data"));
    let obj = if multipart {
        let form = form_body(req, &state).await?;
        fields::strict(&form, "DocumentWrite")?;
        form
    } else {
        let body = axum::body::to_bytes(req.into_body(), MAX_REQUEST_BYTES)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    "Request body is too large",
                )
            })?;
        page::strict_body(&body, "DocumentWrite")?
    };
    let doc = NewContextDocument {
        title: fields::required_text(&obj, "title", 500, true)?,
        document_type: fields::one_of(&obj, "document_type", &DOCUMENT_TYPES)?
            .flatten()
            .ok_or_else(|| err("document_type", "field required", "missing"))?,
        content: content(&obj, true)?,
        is_global: fields::boolean(&obj, "is_global")?.unwrap_or(false),
        description: fields::text(&obj, "description", 10_000)?.flatten(),
        tags: fields::strings(&obj, "tags")?.unwrap_or_default(),
        targeting_rules: fields::targeting(&obj, "targeting_rules")?.flatten(),
    };
    let row = repo::insert_document(&*client, &doc)
        .await?
        .ok_or_else(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(page::single(json!(ContextDocument::new(row, true)))),
    )
        .into_response())
}

/// A `multipart/form-data` upload as the JSON body it stands for: `title`, `document_type`,
/// `is_global`, `description`, `tags` (JSON array or comma list), `targeting_rules` (JSON
/// string) and a `file` — UTF-8 `.md`, `.markdown` or `.txt` only (else 422 `UNSUPPORTED_FORMAT`).
async fn form_body(req: axum::extract::Request, state: &AppState) -> Result<fields::Body, ApiError> {
    use axum::extract::FromRequest;
    let bad_form = |e: String| ApiError::validation("body", &format!("not a valid multipart form: {e}"), "value_error");
    let mut form = axum::extract::Multipart::from_request(req, state)
        .await
        .map_err(|e| bad_form(e.body_text()))?;
    let unsupported =
        |why: &str| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "UNSUPPORTED_FORMAT", why.to_string());
    let mut obj = fields::Body::new();
    while let Some(field) = form.next_field().await.map_err(|e| bad_form(e.body_text()))? {
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let bytes = field.bytes().await.map_err(|e| bad_form(e.body_text()))?;
        if bytes.len() > MAX_CONTENT_BYTES {
            return Err(err(&name, "at most 1 MiB", "string_too_long"));
        }
        if name == "file" {
            let fname = file_name.unwrap_or_default().to_ascii_lowercase();
            if ![".md", ".markdown", ".txt"].iter().any(|ext| fname.ends_with(ext)) {
                return Err(unsupported("Only .md, .markdown and .txt files are accepted"));
            }
            let text = String::from_utf8(bytes.to_vec()).map_err(|_| unsupported("The file is not UTF-8 text"))?;
            obj.insert("content".into(), Value::String(text));
            continue;
        }
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| err(&name, "must be UTF-8 text", "string_type"))?;
        let value = match name.as_str() {
            "is_global" => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "on" | "yes" => Value::Bool(true),
                "false" | "0" | "off" | "no" | "" => Value::Bool(false),
                _ => return Err(err("is_global", "true or false", "bool_parsing")),
            },
            "tags" => match serde_json::from_str::<Value>(&text) {
                Ok(v @ Value::Array(_)) => v,
                _ => Value::Array(
                    text.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(|t| Value::String(t.to_string()))
                        .collect(),
                ),
            },
            "targeting_rules" => serde_json::from_str(&text)
                .map_err(|_| err("targeting_rules", "must be a JSON object", "json_invalid"))?,
            _ => Value::String(text),
        };
        obj.insert(name, value);
    }
    if let Some(path) = page::nul_path(&Value::Object(obj.clone()), "body") {
        return Err(ApiError::validation(
            &path,
            "must not contain NUL characters",
            "string_type",
        ));
    }
    Ok(obj)
}

async fn detail(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::ContextDocument>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(page::single(json!(catalog::get_document(&*client, uuid).await?))))
}

async fn patch(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::ContextDocument>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let obj = page::strict_body(&body, "DocumentWrite")?;
    let change = ContextDocumentPatch {
        title: fields::required_text(&obj, "title", 500, false)?,
        document_type: fields::non_null(
            fields::one_of(&obj, "document_type", &DOCUMENT_TYPES)?,
            "document_type",
            "enum",
        )?,
        content: content(&obj, false)?,
        is_global: fields::boolean(&obj, "is_global")?,
        // Explicit null clears description and targeting_rules (api spec §5.6 deviation).
        description: fields::split(fields::text(&obj, "description", 10_000)?),
        tags: fields::strings(&obj, "tags")?,
        targeting_rules: fields::split(fields::targeting(&obj, "targeting_rules")?),
    };
    let row = repo::update_document(&*client, uuid, &change)
        .await?
        .ok_or_else(missing::<res::ContextDocument>)?;
    Ok(Json(page::single(json!(ContextDocument::new(row, true)))))
}

async fn delete(
    Authorized { client, .. }: Authorized,
    Id(uuid, _): Id<res::ContextDocument>,
) -> Result<StatusCode, ApiError> {
    if repo::delete_document(&*client, uuid).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(missing::<res::ContextDocument>())
    }
}
