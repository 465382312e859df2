//! `calseta bench e2e`: the whole pipeline on one machine — ingest POST over HTTP, the enrich
//! consumers against the provider simulator (answering at once), the dispatch consumers, and an
//! agent receiving the signed webhook on a loopback port — over a real Postgres (DATABASE_URL or
//! an embedded cluster) and the in-process queue, with the demo library loaded.
//!
//! 1. **Latency**: alerts with three fresh indicators each (no cache hits), one at a time:
//!    from sending the ingest POST to the agent holding the verified webhook. p50 / p99 (goal
//!    ≤ 25 / 100 ms).
//! 2. **Payload size**: for each demo SIEM alert in `events/demo/`, with an empty enrichment cache,
//!    the delivered payload's bytes vs the raw alert plus every raw provider response body its
//!    enrichment fetched (goal ≤ 30 %).
//!
//! Timings are wall-clock on this machine; nothing here is asserted by tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::routing::post;
use axum::Router;
use calseta::{
    app,
    config::{AppSecrets, Limits},
    db::{self, migrate},
    demo,
    dispatch::{signing, DispatchSettings},
    enrich::{engine::EngineSettings, never_send::NeverSendPolicy, registry::ProviderSet, simulator},
    net::ssrf::OutboundPolicy,
    queue::{
        memory::{InProcessQueue, QueueSettings},
        QueueName,
    },
};
use http_body_util::BodyExt;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Notify;

#[derive(Debug, Serialize)]
struct Report {
    latency: Latency,
    payload_size: Vec<SizeRow>,
    payload_size_total_ratio: f64,
}

#[derive(Debug, Serialize)]
struct Latency {
    alerts: usize,
    indicators_per_alert: usize,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Serialize)]
struct SizeRow {
    source: String,
    title: String,
    indicators: usize,
    raw_alert_bytes: usize,
    raw_provider_bytes: u64,
    provider_responses: u64,
    payload_bytes: usize,
    /// Bytes of the organizational context in the payload (detection rule, documents,
    /// workflows, past alerts), which the raw baseline does not contain.
    context_bytes: usize,
    ratio: f64,
    ratio_without_context: f64,
}

/// A received payload: when it arrived, its size, the document.
type Received = (Instant, usize, Value);

/// The agent: verifies each webhook and records when it arrived, by alert uuid.
#[derive(Clone)]
struct Agent {
    secret: SecretString,
    got: Arc<Mutex<HashMap<String, Received>>>,
    bad: Arc<AtomicU64>,
    notify: Arc<Notify>,
}

async fn webhook(State(a): State<Agent>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ts = h("webhook-timestamp").parse::<i64>().unwrap_or(0);
    let now = ts_now();
    if signing::verify(&a.secret, h("webhook-id"), ts, h("webhook-signature"), &body, now).is_err() {
        a.bad.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if let Some(u) = v["alert"]["uuid"].as_str() {
        a.got
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(u.to_string(), (at, body.len(), v.clone()));
        a.notify.notify_waiters();
    }
    StatusCode::NO_CONTENT
}

fn ts_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Agent {
    /// Waits for the payload of `uuid`.
    async fn wait(&self, uuid: &str, within: Duration) -> anyhow::Result<Received> {
        let until = Instant::now() + within;
        loop {
            let notified = self.notify.notified();
            if let Some(x) = self.got.lock().unwrap_or_else(|p| p.into_inner()).get(uuid) {
                return Ok(x.clone());
            }
            let left = until.saturating_duration_since(Instant::now());
            anyhow::ensure!(!left.is_zero(), "no webhook for alert {uuid} within {within:?}");
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }
}

/// The simulator behind a layer that counts provider response bytes (token requests aside).
struct Upstream {
    base: url::Url,
    bytes: Arc<AtomicU64>,
    responses: Arc<AtomicU64>,
}

async fn start_upstream() -> anyhow::Result<Upstream> {
    let bytes = Arc::new(AtomicU64::new(0));
    let responses = Arc::new(AtomicU64::new(0));
    let (b, r) = (bytes.clone(), responses.clone());
    let app = simulator::router_with(simulator::SimulatorOptions {
        rate_limit_every: None,
        retry_after_secs: 20,
    })
    .layer(axum::middleware::from_fn(move |req: Request, next: Next| {
        let (b, r) = (b.clone(), r.clone());
        async move {
            let is_token = req.uri().path().contains("/token");
            let resp = next.run(req).await;
            if is_token {
                return resp;
            }
            let (parts, body) = resp.into_parts();
            let collected = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            b.fetch_add(collected.len() as u64, Ordering::Relaxed);
            r.fetch_add(1, Ordering::Relaxed);
            axum::response::Response::from_parts(parts, axum::body::Body::from(collected))
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = url::Url::parse(&format!("http://{}/", listener.local_addr()?))?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Upstream { base, bytes, responses })
}

/// The key and separators a top-level block adds (`"key":…,`), roughly.
fn k_overhead() -> usize {
    20
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[allow(
    clippy::too_many_lines,
    reason = "a benchmark's setup, runs and report in one readable sequence"
)]
pub async fn e2e(alerts: usize, json_out: bool) -> anyhow::Result<()> {
    let (url, embedded) = crate::bench::database("calseta_bench_e2e").await?;
    let mut cfg = calseta::config::DbConfig::from_url(url);
    cfg.pool_size = 16;
    let pool = db::build_pool(&cfg)?;
    migrate::run_on_pool(&pool).await?;
    demo::seed(&mut pool.get().await?).await?;
    let up = start_upstream().await?;

    let mut qs = HashMap::new();
    qs.insert(
        QueueName::Enrich,
        QueueSettings {
            max_receives: 10,
            ..QueueSettings::default()
        },
    );
    let queue = InProcessQueue::with_settings(qs);
    let limits = Limits {
        ingest_per_key_per_minute: 0,
        ingest_per_source_per_minute: 0,
        ..Limits::default()
    };
    let core = app::Core::new(pool.clone(), Arc::new(queue.clone()));
    let state = core.state(&AppSecrets::random(), limits, NeverSendPolicy::default())?;
    let engine = core.engine(
        ProviderSet::simulated(&up.base, HashMap::new(), 16),
        state.never_send.clone(),
        EngineSettings::default(),
    );
    let dispatcher = core.dispatcher(
        state.sealer.clone(),
        DispatchSettings {
            policy: OutboundPolicy {
                allow_loopback: true,
                ..OutboundPolicy::default()
            },
            retry_schedule: vec![1],
        },
    );

    // The agent, registered as `calseta dev` would store it.
    let secret = signing::generate_secret();
    let agent = Agent {
        secret: secret.clone(),
        got: Arc::default(),
        bad: Arc::default(),
        notify: Arc::new(Notify::new()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    let app = Router::new().route("/hook", post(webhook)).with_state(agent.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    pool.get()
        .await?
        .execute(
            "INSERT INTO agents (name, endpoint_url, signing_secret_enc) VALUES ('bench-agent', $1, $2)",
            &[&hook, &state.sealer.seal(secret.expose_secret())],
        )
        .await?;

    let cancel = tokio_util::sync::CancellationToken::new();
    let enrich_runner = core.runner(QueueName::Enrich);
    let dispatch_runner = core.runner(QueueName::Dispatch);
    // As `calseta dev` runs them.
    queue.spawn_consumers(QueueName::Enrich, engine.handler(enrich_runner), 4, cancel.clone());
    queue.spawn_consumers(
        QueueName::Dispatch,
        dispatcher.handler(dispatch_runner),
        2,
        cancel.clone(),
    );
    let (ingest_url, key) = crate::bench::serve_ingest(&pool, state).await?;
    let base = ingest_url.trim_end_matches("/generic").to_string();
    let http = reqwest::Client::new();
    let auth = format!("Bearer {}", key.expose_secret());

    // ---- 1. latency ----------------------------------------------------------------------
    let post_alert = |source: &str, body: String| {
        http.post(format!("{base}/{source}"))
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let warmup = 20;
    let mut lat = Vec::with_capacity(alerts);
    eprintln!("bench e2e: {alerts} alerts, one at a time …");
    for i in 0..(alerts + warmup) {
        let body = json!({
            "title": "Impossible travel detected", "severity": "High", "source_alert_id": format!("e2e-{i}"),
            "rule_id": "casb-impossible-travel", "rule_name": "Impossible Travel", "tags": ["identity"],
            "src_ip": format!("45.{}.{}.{}", 60 + i / 62500 % 100, i / 250 % 250, 1 + i % 250),
            "user": format!("user{i}@bench.example.com"),
            "domain": format!("login-{i}.bench-threat.net"),
        })
        .to_string();
        let t = Instant::now();
        let r = post_alert("generic", body).await?;
        anyhow::ensure!(r.status() == 202, "ingest answered {}", r.status());
        let v: Value = r.json().await?;
        let uuid = v["data"]["alert_uuid"].as_str().context("alert uuid")?.to_string();
        let (at, _, _) = agent.wait(&uuid, Duration::from_secs(30)).await?;
        if i >= warmup {
            lat.push(at.duration_since(t));
        }
    }
    lat.sort();
    let latency = Latency {
        alerts,
        indicators_per_alert: 3,
        p50_ms: pct(&lat, 0.5),
        p90_ms: pct(&lat, 0.9),
        p99_ms: pct(&lat, 0.99),
        max_ms: pct(&lat, 1.0),
    };

    // ---- 2. payload size for the sample alerts --------------------------------------------
    let mut rows = Vec::new();
    for (source, _, body) in demo::DEMO_ALERTS {
        let body = body.to_string();
        // Per-sample raw provider bytes: start from an empty cache.
        pool.get()
            .await?
            .batch_execute("DELETE FROM enrichment_results; DELETE FROM enrichment_leases;")
            .await?;
        let (b0, r0) = (up.bytes.load(Ordering::Relaxed), up.responses.load(Ordering::Relaxed));
        let raw = body.len();
        let r = post_alert(source, body).await?;
        anyhow::ensure!(r.status() == 202, "ingest of {source} answered {}", r.status());
        let v: Value = r.json().await?;
        let uuids: Vec<String> = v["data"]["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["alert_uuid"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut payload_bytes = 0;
        let mut context_bytes = 0;
        let mut titles = Vec::new();
        let mut indicators = 0;
        for u in &uuids {
            let (_, bytes, p) = agent.wait(u, Duration::from_secs(30)).await?;
            payload_bytes += bytes;
            context_bytes += ["detection_rule", "context_documents", "workflows", "past_alerts"]
                .iter()
                .filter_map(|k| p.get(*k))
                .map(|v| serde_json::to_vec(v).map(|b| b.len() + k_overhead()).unwrap_or(0))
                .sum::<usize>();
            indicators += p["indicators"].as_array().map(Vec::len).unwrap_or(0);
            titles.push(p["alert"]["title"].as_str().unwrap_or("").to_string());
        }
        let provider_bytes = up.bytes.load(Ordering::Relaxed) - b0;
        let denominator = raw as f64 + provider_bytes as f64;
        rows.push(SizeRow {
            source: source.to_string(),
            title: titles.join(" + "),
            indicators,
            raw_alert_bytes: raw,
            raw_provider_bytes: provider_bytes,
            provider_responses: up.responses.load(Ordering::Relaxed) - r0,
            payload_bytes,
            context_bytes,
            ratio: payload_bytes as f64 / denominator.max(1.0),
            ratio_without_context: payload_bytes.saturating_sub(context_bytes) as f64 / denominator.max(1.0),
        });
    }
    let total_payload: usize = rows.iter().map(|r| r.payload_bytes).sum();
    let total_raw: f64 = rows
        .iter()
        .map(|r| r.raw_alert_bytes as f64 + r.raw_provider_bytes as f64)
        .sum();
    anyhow::ensure!(agent.bad.load(Ordering::Relaxed) == 0, "a webhook failed verification");
    let report = Report {
        latency,
        payload_size_total_ratio: total_payload as f64 / total_raw.max(1.0),
        payload_size: rows,
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let l = &report.latency;
        println!(
            "e2e latency: {} alerts ({} fresh indicators each, providers instant), ingest POST -> verified webhook: \
             p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms (goal p50 <= 25, p99 <= 100)",
            l.alerts, l.indicators_per_alert, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
        );
        println!("payload size (delivered payload vs raw alert + raw provider responses; goal <= 30%):");
        for r in &report.payload_size {
            println!(
                "  {:<9} {:<52} {:>2} indicators: payload {:>6} B vs raw alert {:>6} B + {:>3} provider responses {:>7} B -> {:>5.1}% ({:>4.1}% without the {} B of rule, documents, workflows, past alerts)",
                r.source,
                r.title.chars().take(52).collect::<String>(),
                r.indicators,
                r.payload_bytes,
                r.raw_alert_bytes,
                r.provider_responses,
                r.raw_provider_bytes,
                r.ratio * 100.0,
                r.ratio_without_context * 100.0,
                r.context_bytes
            );
        }
        println!("  all samples: {:.1}%", report.payload_size_total_ratio * 100.0);
    }
    cancel.cancel();
    pool.close();
    if let Some(mut pg) = embedded {
        tokio::task::spawn_blocking(move || pg.stop())
            .await
            .context("stop postgres")?;
    }
    Ok(())
}
