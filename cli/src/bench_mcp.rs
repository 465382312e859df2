//! `calseta bench mcp`: `get_alert_payload` over MCP (JSON-RPC `tools/call`, stateless streamable
//! HTTP) against `GET /v1/alerts/{uuid}/payload` for the same alerts, interleaved so both see the
//! same machine; p50/p99 and the MCP/REST ratio. Then `search_alerts` p50 with the alerts
//! table holding `--alerts` rows. Timings are client-side over loopback; nothing is asserted.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use calseta::{
    api, app,
    config::{AppSecrets, DbConfig, Limits},
    db::{self, api_keys, migrate},
    enrich::never_send::NeverSendPolicy,
    mcp,
    queue::memory::InProcessQueue,
};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn alert_body(i: usize) -> String {
    let sev = ["Low", "Medium", "High", "Critical"][i % 4];
    json!({
        "title": format!("Impossible travel detected #{i}"),
        "severity": sev,
        "occurred_at": "2025-01-15T03:42:18.441Z",
        "source_alert_id": format!("bench-mcp-{i}"),
        "rule_id": "impossible-travel-v1",
        "rule_name": "Impossible Travel",
        "src_ip": format!("185.{}.{}.{}", 220 + (i / 65536) % 30, (i / 256) % 256, i % 256),
        "user": format!("user{}@calseta.com", i % 500),
        "tags": ["identity", "bench"]
    })
    .to_string()
}

/// One MCP `tools/call` as a stateless client sends it; the tool's structured result.
async fn mcp_call(http: &reqwest::Client, url: &str, auth: &str, tool: &str, args: Value) -> anyhow::Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}});
    let r: Value = http
        .post(url)
        .header("authorization", auth)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let result = r.get("result").with_context(|| format!("no result: {r}"))?;
    anyhow::ensure!(result.get("isError") != Some(&json!(true)), "tool error: {result}");
    Ok(result["structuredContent"].clone())
}

#[allow(
    clippy::too_many_lines,
    reason = "a benchmark's setup, runs and report in one readable sequence"
)]
pub async fn bench(alerts: usize, samples: usize, json_out: bool) -> anyhow::Result<()> {
    let (url, embedded) = crate::bench::database("calseta_bench_mcp").await?;
    let mut cfg = DbConfig::from_url(url);
    cfg.pool_size = 24;
    let pool = db::build_pool(&cfg)?;
    migrate::run_on_pool(&pool).await?;
    let limits = Limits {
        ingest_per_key_per_minute: 0,
        ingest_per_source_per_minute: 0,
        ..Limits::default()
    };
    let state = app::Core::new(pool.clone(), Arc::new(InProcessQueue::new(Default::default()))).state(
        &AppSecrets::random(),
        limits,
        NeverSendPolicy::default(),
    )?;
    let key = calseta::keys::generate();
    api_keys::insert(
        &**pool.get().await?,
        &state.hasher,
        &key,
        &api_keys::NewApiKey {
            name: "bench",
            scopes: &["alerts:read", "alerts:write"],
            key_type: "agent",
            allowed_sources: None,
            expires_at: None,
            is_system: false,
            created_by: Some("bench"),
        },
    )
    .await?;
    let rest_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let rest = format!("http://{}", rest_listener.local_addr()?);
    let mcp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mcp_url = format!("http://{}/mcp", mcp_listener.local_addr()?);
    let stop = tokio_util::sync::CancellationToken::new();
    let mcp_router = mcp::router(state.clone(), &mcp::McpConfig::default(), stop.child_token());
    let rest_router = api::router(state);
    tokio::spawn(async move { axum::serve(rest_listener, rest_router).await });
    tokio::spawn(async move { axum::serve(mcp_listener, mcp_router).await });
    let http = reqwest::Client::builder().pool_max_idle_per_host(32).build()?;
    let auth = format!("Bearer {}", key.expose_secret());

    // The alerts, through the real ingest path, 16 clients.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..16 {
        let (http, auth, url) = (http.clone(), auth.clone(), format!("{rest}/v1/ingest/generic"));
        tasks.spawn(async move {
            let mut uuids = Vec::new();
            for i in (w..alerts).step_by(16) {
                let v: Value = http
                    .post(&url)
                    .header("authorization", &auth)
                    .body(alert_body(i))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                if let Some(u) = v["data"]["alert_uuid"].as_str() {
                    uuids.push(u.to_owned());
                }
            }
            Ok::<_, anyhow::Error>(uuids)
        });
    }
    let mut uuids = Vec::new();
    while let Some(r) = tasks.join_next().await {
        uuids.extend(r??);
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(uuids.len() == alerts, "ingested {} of {alerts}", uuids.len());

    // Payload: REST and MCP alternately on the same alerts; warm-up first.
    let mut rest_t = Vec::with_capacity(samples);
    let mut mcp_t = Vec::with_capacity(samples);
    for round in 0..(samples + 20) {
        let u = &uuids[(round * 7919) % uuids.len()];
        let t = Instant::now();
        let a: Value = http
            .get(format!("{rest}/v1/alerts/{u}/payload"))
            .header("authorization", &auth)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let rest_d = t.elapsed();
        let t = Instant::now();
        let b = mcp_call(&http, &mcp_url, &auth, "get_alert_payload", json!({"alert_uuid": u})).await?;
        let mcp_d = t.elapsed();
        // Same builder: identical documents apart from the build time stamp.
        anyhow::ensure!(a["alert"] == b["alert"], "payloads differ for {u}");
        if round >= 20 {
            rest_t.push(rest_d);
            mcp_t.push(mcp_d);
        }
    }
    rest_t.sort();
    mcp_t.sort();

    // search_alerts at this table size: a filter, the first page, sorted by severity.
    let mut search_t = Vec::new();
    let mut rest_search_t = Vec::new();
    for round in 0..(samples.min(200) + 10) {
        let args = json!({"severity": "High,Critical", "status": "Open", "sort_by": "severity", "page_size": 20});
        let t = Instant::now();
        let r = mcp_call(&http, &mcp_url, &auth, "search_alerts", args).await?;
        let d = t.elapsed();
        anyhow::ensure!(r["alerts"].as_array().map(Vec::len) == Some(20), "search page: {r}");
        let t = Instant::now();
        http.get(format!(
            "{rest}/v1/alerts?severity=High,Critical&status=Open&sort_by=severity&page_size=20"
        ))
        .header("authorization", &auth)
        .send()
        .await?
        .error_for_status()?;
        let rd = t.elapsed();
        if round >= 10 {
            search_t.push(d);
            rest_search_t.push(rd);
        }
    }
    search_t.sort();
    rest_search_t.sort();
    stop.cancel();

    let out = json!({
        "alerts": alerts,
        "ingest_seconds": ingest_secs,
        "payload_samples": samples,
        "rest_payload_p50_ms": pct(&rest_t, 0.5), "rest_payload_p99_ms": pct(&rest_t, 0.99),
        "mcp_payload_p50_ms": pct(&mcp_t, 0.5), "mcp_payload_p99_ms": pct(&mcp_t, 0.99),
        "mcp_over_rest_p50": pct(&mcp_t, 0.5) / pct(&rest_t, 0.5).max(1e-9),
        "mcp_over_rest_p99": pct(&mcp_t, 0.99) / pct(&rest_t, 0.99).max(1e-9),
        "mcp_search_alerts_p50_ms": pct(&search_t, 0.5), "mcp_search_alerts_p99_ms": pct(&search_t, 0.99),
        "rest_list_alerts_p50_ms": pct(&rest_search_t, 0.5),
    });
    if json_out {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("calseta bench mcp: {alerts} alerts ingested in {ingest_secs:.1} s; {samples} payloads each way");
        println!(
            "get_alert_payload  REST p50 {:.2} ms p99 {:.2} ms | MCP p50 {:.2} ms p99 {:.2} ms | MCP/REST p50 {:.2}x p99 {:.2}x (goal <= 1.2x)",
            pct(&rest_t, 0.5),
            pct(&rest_t, 0.99),
            pct(&mcp_t, 0.5),
            pct(&mcp_t, 0.99),
            out["mcp_over_rest_p50"].as_f64().unwrap_or(0.0),
            out["mcp_over_rest_p99"].as_f64().unwrap_or(0.0),
        );
        println!(
            "search_alerts at {alerts} alerts: MCP p50 {:.2} ms p99 {:.2} ms (REST GET /v1/alerts p50 {:.2} ms)",
            pct(&search_t, 0.5),
            pct(&search_t, 0.99),
            pct(&rest_search_t, 0.5)
        );
    }
    pool.close();
    if let Some(mut pg) = embedded {
        tokio::task::spawn_blocking(move || pg.stop())
            .await
            .context("stop postgres")?;
    }
    Ok(())
}
