//! `mcp` container (ECS/Fargate or any container host): the MCP server, streamable HTTP at
//! `/mcp`, `/health` for the load balancer. Configuration from the environment like the
//! Lambdas (`DATABASE_*`/secrets, `CALSETA_MCP_ALLOWED_HOSTS`, …); listens on
//! `CALSETA_MCP_ADDR` (default `0.0.0.0:8001`). SIGTERM (and Ctrl-C) drain in-flight requests,
//! then exit.

use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use calseta::{app, mcp, telemetry};
use tokio_util::sync::CancellationToken;

/// Longest a request may take, body read included (slow clients are cut off).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

async fn bounded(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, "request timed out").into_response(),
    }
}

async fn terminated() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    telemetry::init_from_env();
    let sdk = calseta::config::aws_sdk_config().await;
    let state = app::lambda::api(&sdk).await?;
    let addr = std::env::var("CALSETA_MCP_ADDR").unwrap_or_else(|_| "0.0.0.0:8001".into());
    let cfg = mcp::McpConfig::from_env();
    let shutdown = CancellationToken::new();
    let app = mcp::router(state, &cfg, shutdown.child_token()).layer(middleware::from_fn(bounded));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, allowed_hosts = ?cfg.allowed_hosts, "mcp listening");
    let stop = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            terminated().await;
            tracing::info!("shutting down");
            stop.cancel();
        })
        .await?;
    Ok(())
}
