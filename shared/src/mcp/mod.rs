//! MCP (api spec §6): the tools and resources agents use over the Model Context Protocol,
//! served as streamable HTTP at `/mcp` — stateless with JSON responses, so instances behind a
//! load balancer need no sticky sessions. An adapter like `api/`: every call goes to a service
//! in `crate::service`; this module has no SQL.
//!
//! Auth runs before MCP: a tower layer checks `Authorization: Bearer cai_…` with the REST key
//! verification (401 with `WWW-Authenticate: Bearer` otherwise) and hands the caller to the
//! handler; each tool and resource checks its scope. `Host` and `Origin` are validated by the
//! transport (allowed lists from `CALSETA_MCP_ALLOWED_HOSTS` / `CALSETA_MCP_ALLOWED_ORIGINS`).

mod resources;
mod server;
pub mod tools;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::api::{auth, AppState};
pub(crate) use server::CalsetaMcp;

/// Largest MCP request body: tool arguments are small (a finding summary is at most 50,000
/// characters).
pub(crate) const MAX_BODY_BYTES: usize = 256 * 1024;

/// Where MCP may be reached from.
#[derive(Debug, Clone)]
pub struct McpConfig {
    /// `Host` values accepted (`host` or `host:port`); the transport refuses others (DNS
    /// rebinding). Behind a load balancer, list its public name.
    pub allowed_hosts: Vec<String>,
    /// Browser `Origin`s accepted; requests carrying any other `Origin` are refused. Clients
    /// that are not browsers send none.
    pub allowed_origins: Vec<String>,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: Vec::new(),
        }
    }
}

impl McpConfig {
    /// From `CALSETA_MCP_ALLOWED_HOSTS` and `CALSETA_MCP_ALLOWED_ORIGINS` (comma lists); the
    /// loopback names when unset.
    pub fn from_env() -> Self {
        let list = |k: &str| -> Option<Vec<String>> {
            let v = std::env::var(k).ok()?;
            let items: Vec<String> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            (!items.is_empty()).then_some(items)
        };
        let d = Self::default();
        Self {
            allowed_hosts: list("CALSETA_MCP_ALLOWED_HOSTS").unwrap_or(d.allowed_hosts),
            allowed_origins: list("CALSETA_MCP_ALLOWED_ORIGINS").unwrap_or(d.allowed_origins),
        }
    }
}

/// The MCP router: `/mcp` behind the key check, and `/health`. `shutdown` ends open streams.
pub fn router(state: AppState, cfg: &McpConfig, shutdown: CancellationToken) -> Router {
    let handler_state = state.clone();
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(cfg.allowed_hosts.clone())
        .with_allowed_origins(cfg.allowed_origins.clone())
        .enforce_origin_validation()
        .with_max_request_body_bytes(MAX_BODY_BYTES)
        .with_cancellation_token(shutdown);
    let service = StreamableHttpService::new(
        move || Ok(CalsetaMcp::new(handler_state.clone())),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let mcp = Router::new()
        .nest_service("/mcp", service)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/health", get(crate::api::health::health))
        .with_state(state)
        .merge(mcp)
}

/// Verifies the API key before any MCP handling and passes the caller on as a request
/// extension; failures are 401 with `WWW-Authenticate: Bearer` (fail closed).
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let client = match state.pool.get().await {
        Ok(c) => c,
        Err(e) => return crate::api::ApiError::from(crate::db::DbError::from(e)).into_response(),
    };
    match auth::require_key(&state, &*client, req.headers()).await {
        Ok(principal) => {
            drop(client);
            tracing::debug!(key_prefix = %principal.key_prefix, "mcp request");
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(e) => {
            let status = e.status;
            let mut resp = e.into_response();
            if status == StatusCode::UNAUTHORIZED {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"calseta\""),
                );
            }
            resp
        }
    }
}
