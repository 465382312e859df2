//! The `Custom::Migrations` resource: CloudFormation invokes the `migrate` Lambda on stack
//! create/update/delete; we apply `migrations/` on create and update, do nothing on delete (the
//! data outlives the stack's code), and always PUT an answer to the pre-signed `ResponseURL`,
//! because a resource that never answers blocks the stack for an hour.
//!
//! Idempotent: a repeated request re-runs the runner, which skips applied versions; the
//! physical id is stable, so an update never "replaces" the resource (which would trigger a
//! Delete of the old one).

use std::time::Duration;

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use serde::Serialize;
use serde_json::Value;

use crate::db::{migrate, Pool};

pub const PHYSICAL_ID: &str = "calseta-database-migrations";

/// The body CloudFormation expects at the response URL.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct CfnResponse {
    pub status: &'static str,
    pub reason: String,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub data: serde_json::Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("could not deliver the response to CloudFormation: {0}")]
    Delivery(String),
}

/// Handles one request: runs migrations when asked, then answers CloudFormation.
/// `pool` is an error text when the database settings could not even be read at init.
pub async fn handle(
    request: CloudFormationCustomResourceRequest,
    pool: Result<&Pool, &str>,
    http: &reqwest::Client,
) -> Result<CfnResponse, ResponseError> {
    let (kind, url, stack_id, request_id, logical_id, physical_id) = match &request {
        CloudFormationCustomResourceRequest::Create(r) => (
            "Create",
            &r.response_url,
            &r.stack_id,
            &r.request_id,
            &r.logical_resource_id,
            PHYSICAL_ID.to_owned(),
        ),
        CloudFormationCustomResourceRequest::Update(r) => (
            "Update",
            &r.response_url,
            &r.stack_id,
            &r.request_id,
            &r.logical_resource_id,
            r.physical_resource_id.clone(),
        ),
        CloudFormationCustomResourceRequest::Delete(r) => (
            "Delete",
            &r.response_url,
            &r.stack_id,
            &r.request_id,
            &r.logical_resource_id,
            r.physical_resource_id.clone(),
        ),
        // The enum is non-exhaustive; a future request type is answered without touching data.
        _ => return Err(ResponseError::Delivery("unknown custom resource request type".into())),
    };
    let mut data = serde_json::Map::new();
    let outcome: Result<String, String> = if kind == "Delete" {
        Ok("Delete leaves the database as it is".into())
    } else {
        match pool {
            Err(why) => Err(format!("database configuration: {why}")),
            Ok(pool) => match migrate::run_on_pool(pool).await {
                Ok(report) => {
                    data.insert("Applied".into(), Value::from(report.applied.len()));
                    data.insert("AlreadyApplied".into(), Value::from(report.already_applied));
                    data.insert(
                        "SchemaVersion".into(),
                        Value::from(migrate::all().map(|m| m.version).max().unwrap_or(0)),
                    );
                    Ok(format!(
                        "applied {} migration(s), {} already applied",
                        report.applied.len(),
                        report.already_applied
                    ))
                }
                Err(e) => Err(e.to_string()),
            },
        }
    };
    let (status, reason) = match outcome {
        Ok(r) => ("SUCCESS", r),
        Err(r) => {
            tracing::error!(request_type = kind, error = %r, "migrations failed");
            ("FAILED", r)
        }
    };
    let response = CfnResponse {
        status,
        // CloudFormation limits the whole response to 4 KiB.
        reason: reason.chars().take(1000).collect(),
        physical_resource_id: physical_id,
        stack_id: stack_id.clone(),
        request_id: request_id.clone(),
        logical_resource_id: logical_id.clone(),
        data,
    };
    send(http, url, &response).await?;
    tracing::info!(request_type = kind, status, "custom resource answered");
    Ok(response)
}

async fn send(http: &reqwest::Client, url: &str, response: &CfnResponse) -> Result<(), ResponseError> {
    let body = serde_json::to_vec(response).map_err(|e| ResponseError::Delivery(e.to_string()))?;
    let mut last = String::new();
    for attempt in 0..4u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await;
        }
        // The pre-signed S3 URL was signed without a content type: send an empty one.
        match http.put(url).header("content-type", "").body(body.clone()).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(ResponseError::Delivery(last))
}
