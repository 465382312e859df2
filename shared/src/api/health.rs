//! `GET /health` (api spec §5.12): database and queue state, no authentication. Each check is
//! capped at 2 s so a sick dependency cannot hang the probe.

use std::{collections::BTreeMap, time::Duration};

use axum::{extract::State, http::StatusCode, Json};
use serde::Serialize;

use super::AppState;
use crate::queue::QueueName;

const CHECK_LIMIT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
    pub database: &'static str,
    pub queue: &'static str,
    pub queue_backend: &'static str,
    pub queue_depth: Option<u64>,
    /// Messages in the dead-letter queues (all queues), when the backend knows its DLQs.
    pub dead_letters: Option<u64>,
    /// Per queue: visible / in flight / delayed messages and its dead letters.
    pub queues: BTreeMap<&'static str, QueueState>,
    pub outbox_unsent: Option<i64>,
    pub enrichment_providers: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct QueueState {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub dead_letters: Option<u64>,
}

pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let db = async {
        let client = state.pool.get().await.ok()?;
        crate::db::health::ping(&**client).await.ok()
    };
    let database_ok = matches!(tokio::time::timeout(CHECK_LIMIT, db).await, Ok(Some(())));
    // One pass over the queues; a queue that cannot be read leaves the totals unknown.
    let per_queue = async {
        let mut out = BTreeMap::new();
        for q in QueueName::ALL {
            let d = state.queue.depth(q).await.ok()?;
            let dead = state.queue.dead_letter_depth(q).await.ok()?;
            out.insert(
                q.as_str(),
                QueueState {
                    visible: d.visible,
                    in_flight: d.in_flight,
                    delayed: d.delayed,
                    dead_letters: dead,
                },
            );
        }
        Some(out)
    };
    let queues = tokio::time::timeout(CHECK_LIMIT, per_queue)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let queue_depth = (!queues.is_empty()).then(|| queues.values().map(|q| q.visible + q.in_flight + q.delayed).sum());
    let dead_letters = queues
        .values()
        .map(|q| q.dead_letters)
        .sum::<Option<u64>>()
        .filter(|_| !queues.is_empty());
    let outbox_unsent = if database_ok {
        tokio::time::timeout(CHECK_LIMIT, state.outbox.backlog())
            .await
            .ok()
            .and_then(|r| r.ok())
            .map(|b| b.unsent)
    } else {
        None
    };
    // Providers: configured / unconfigured, or misconfigured after a recent 401/403.
    let mut enrichment_providers = serde_json::Map::new();
    if let Some(engine) = &state.enrichment {
        let bad = if database_ok {
            let q = async {
                let client = state.pool.get().await.ok()?;
                crate::enrich::governor::misconfigured(&*client).await.ok()
            };
            tokio::time::timeout(CHECK_LIMIT, q)
                .await
                .ok()
                .flatten()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        for p in crate::enrich::registry::BUILT_IN {
            let status = if !engine.providers().is_configured(p.name) {
                "unconfigured"
            } else if bad.iter().any(|b| b == p.name) {
                "misconfigured"
            } else {
                "configured"
            };
            enrichment_providers.insert(p.name.to_string(), serde_json::Value::String(status.into()));
        }
    }
    let body = Health {
        status: if database_ok { "ok" } else { "down" },
        version: crate::VERSION,
        database: if database_ok { "ok" } else { "error" },
        queue: if queue_depth.is_some() { "ok" } else { "error" },
        queue_backend: state.queue.kind(),
        queue_depth,
        dead_letters,
        queues,
        outbox_unsent,
        enrichment_providers,
    };
    let code = if database_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
