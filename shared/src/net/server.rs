//! The HTTP/1.1 server for the processes that listen themselves (`calseta dev`, the MCP
//! container), with the bounds `axum::serve` lacks: a client must send its request head within
//! `header_read` and finish the whole request (body included) within `request`, so half-open
//! connections (slowloris, a body that never completes) are cut instead of held for ever.
//!
//! Behind API Gateway or a load balancer those bound the client side too; this guards the
//! ports we expose ourselves.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// Time bounds of one connection (`config::server_timeouts_from_env`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerTimeouts {
    /// From the connection's first byte (or the previous response) to the end of the request head.
    pub header_read: Duration,
    /// From the request head to the response, body read included.
    pub request: Duration,
}

impl Default for ServerTimeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(30),
        }
    }
}

/// How long in-flight connections may finish after shutdown is signalled.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` completes, then lets in-flight requests finish
/// (at most [`DRAIN`]). Accept errors (out of file descriptors) pause briefly instead of ending
/// the server.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    timeouts: ServerTimeouts,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished connection tasks so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut stop = stop_rx.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(bounded(app, req.map(Body::new), timeouts.request).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.header_read)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => log_conn_end(r),
                _ = async { drop(stop.wait_for(|s| *s).await) } => {
                    conn.as_mut().graceful_shutdown();
                    log_conn_end(conn.await);
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            "connections still open after the drain period; closing them"
        );
        conns.abort_all();
    }
    Ok(())
}

fn log_conn_end(r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        // Timeouts and clients going away end here; nothing the operator must act on.
        tracing::debug!(error = %e, "connection ended");
    }
}

/// One request under the whole-request bound: 408 in the JSON envelope, and the connection is
/// closed (the unread body makes it unusable).
async fn bounded(app: Router, req: Request, limit: Duration) -> Response {
    match tokio::time::timeout(limit, app.oneshot(req)).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(never)) => match never {},
        Err(_) => {
            let body = serde_json::json!({"error": {
                "code": "REQUEST_TIMEOUT",
                "message": "The request was not completed in time",
                "details": {},
            }});
            let mut resp = (StatusCode::REQUEST_TIMEOUT, axum::Json(body)).into_response();
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
    }
}
