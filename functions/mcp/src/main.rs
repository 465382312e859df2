//! `mcp` container (ECS/Fargate or any container host): the MCP server, streamable HTTP at
//! `/mcp`, `/health` for the load balancer. Configuration from the environment like the
//! Lambdas (`DATABASE_*`/secrets, `CALSETA_MCP_ALLOWED_HOSTS`, …); listens on
//! `CALSETA_MCP_ADDR` (default `0.0.0.0:8001`). SIGTERM (and Ctrl-C) drain in-flight requests,
//! then exit.

use calseta::net::server;
use calseta::{app, mcp, telemetry};
use tokio_util::sync::CancellationToken;

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
    // Slow clients are cut off: the request head within 10 s, the whole request within 30 s
    // (`CALSETA_HTTP_HEADER_TIMEOUT_MS`, `CALSETA_HTTP_REQUEST_TIMEOUT_MS`).
    let timeouts = calseta::config::server_timeouts_from_env()?;
    let app = mcp::router(state, &cfg, shutdown.child_token());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, allowed_hosts = ?cfg.allowed_hosts, "mcp listening");
    let stop = shutdown.clone();
    server::serve(listener, app, timeouts, async move {
        terminated().await;
        tracing::info!("shutting down");
        stop.cancel();
    })
    .await?;
    Ok(())
}
