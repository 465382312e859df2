//! `calseta bench flood`: what one oversized request costs, and whether it starves other alerts
//! (issue 17). Real Postgres (DATABASE_URL or an embedded cluster), the HTTP router, the
//! in-process queue drained by `consumers` consumers, the provider simulator answering after
//! `delay_ms`:
//!
//! 1. **Flood alert**: one generic alert with `ips` distinct public addresses. Time to 202,
//!    enrich messages queued, process RSS before and after (this process serves the request).
//! 2. **Normal alert behind it**: posted right after, with three indicators; its time to a
//!    finished enrichment while the flood alert's messages drain.
//! 3. **Maximal request**: a batch of the most alerts a request may hold, each at the indicator
//!    cap, then a normal alert; the same latency while that request drains.
//!
//! Timings are wall-clock on this machine; compare within one run.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use calseta::{
    app,
    config::{AppSecrets, Limits},
    db::{self, migrate},
    enrich::{engine::EngineSettings, never_send::NeverSendPolicy, registry::ProviderSet},
    queue::{
        memory::{InProcessQueue, QueueSettings},
        QueueName,
    },
};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::bench_enrich::Upstream;

#[derive(Debug, Serialize)]
struct Report {
    indicator_cap: usize,
    enrich_release_per_second: u32,
    provider_delay_ms: u64,
    consumers: usize,
    flood: Flood,
    /// Skipped when the cap makes a maximal request larger than an ingest body may be.
    maximal_request: Option<Maximal>,
}

#[derive(Debug, Serialize)]
struct Flood {
    ips: usize,
    body_bytes: usize,
    seconds_to_202: f64,
    enrich_messages: i64,
    rss_before_mb: f64,
    rss_after_mb: f64,
    rss_peak_mb: f64,
    normal_alert_ms: f64,
    flood_drained_seconds: f64,
}

#[derive(Debug, Serialize)]
struct Maximal {
    alerts: usize,
    enrich_messages: i64,
    seconds_to_202: f64,
    normal_alert_ms: f64,
    drained_seconds: f64,
}

/// `VmRSS` and `VmHWM` of this process, in MB (0 where /proc is missing).
fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn ip(tag: usize, i: usize) -> String {
    format!(
        "{}.{}.{}.{}",
        40 + tag + ((i >> 16) & 7),
        (i >> 8) & 255,
        i & 255,
        1 + tag
    )
}

struct Rig {
    pool: deadpool_postgres::Pool,
    http: reqwest::Client,
    url: String,
    auth: String,
}

impl Rig {
    async fn post(&self, body: &Value) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let r = self
            .http
            .post(&self.url)
            .header("authorization", &self.auth)
            .json(body)
            .send()
            .await?;
        anyhow::ensure!(r.status() == 202, "ingest answered {}", r.status());
        Ok(t.elapsed())
    }

    async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        let c = self.pool.get().await?;
        Ok(c.query_one(sql, &[]).await?.get(0))
    }

    /// Waits until no alert whose id starts with `prefix` is still `Pending`.
    async fn finished(&self, prefix: &str, since: Instant) -> anyhow::Result<Duration> {
        let sql = format!(
            "SELECT count(*) FROM alerts WHERE enrichment_status = 'Pending' AND source_alert_id LIKE '{prefix}%'"
        );
        let limit = Instant::now() + Duration::from_secs(900);
        while self.count(&sql).await? > 0 {
            anyhow::ensure!(Instant::now() < limit, "{prefix} not enriched within 15 minutes");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(since.elapsed())
    }

    async fn normal(&self, tag: &str) -> anyhow::Result<Duration> {
        let t = Instant::now();
        self.post(&json!({
            "title": "normal", "source_alert_id": format!("normal-{tag}"),
            "src_ip": "185.220.101.47", "domain": format!("{tag}.bench-normal.net"),
            "md5": "44d88612fea8a8f36de82e1278abb02f",
        }))
        .await?;
        self.finished(&format!("normal-{tag}"), t).await
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "a benchmark's setup, runs and report in one readable sequence"
)]
pub async fn flood(
    ips: usize,
    cap: Option<usize>,
    consumers: usize,
    delay_ms: u64,
    json_out: bool,
) -> anyhow::Result<()> {
    let (url, embedded) = crate::bench::database("calseta_bench_flood").await?;
    let mut cfg = calseta::config::DbConfig::from_url(url);
    cfg.pool_size = 24;
    let pool = db::build_pool(&cfg)?;
    migrate::run_on_pool(&pool).await?;
    let up = Upstream::start().await?;
    up.delay_ms.store(delay_ms, Ordering::Relaxed);

    let mut qs = HashMap::new();
    qs.insert(
        QueueName::Enrich,
        QueueSettings {
            max_receives: 10,
            batch_size: 10,
            ..QueueSettings::default()
        },
    );
    let queue = InProcessQueue::with_settings(qs);
    // The limits from the environment (CALSETA_ENRICH_RELEASE_PER_SECOND, …), as a deployment has them.
    let d = Limits::from_env()?;
    let limits = Limits {
        ingest_per_key_per_minute: 0,
        ingest_per_source_per_minute: 0,
        enrichment_deadline: Duration::from_secs(900),
        max_indicators_per_alert: cap.unwrap_or(d.max_indicators_per_alert),
        ..d
    };
    let core = app::Core::new(pool.clone(), Arc::new(queue.clone()));
    let state = core.state(&AppSecrets::random(), limits, NeverSendPolicy::default())?;
    let providers = ProviderSet::simulated(&up.base, HashMap::new(), 64);
    let engine = core.engine(providers, state.never_send.clone(), EngineSettings::default());
    let runner = core.runner(QueueName::Enrich);
    let (ingest_url, key) = crate::bench::serve_ingest(&pool, state).await?;
    let rig = Rig {
        pool: pool.clone(),
        http: reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?,
        url: ingest_url,
        auth: format!("Bearer {}", key.expose_secret()),
    };
    // Warm the router, the pool and the statement caches with one small alert, drained.
    let cancel = CancellationToken::new();
    let tasks = queue.spawn_consumers(
        QueueName::Enrich,
        engine.handler(runner.clone()),
        consumers,
        cancel.clone(),
    );
    rig.normal("warm").await?;

    // ---- 1 + 2. one flood alert, then a normal alert behind it -------------------------------
    let (rss_before, _) = rss_mb();
    let before = rig.count("SELECT count(*) FROM outbox WHERE queue = 'enrich'").await?;
    // As the probe sent it: one multivalued field (200,000 addresses are about 2.9 MiB).
    let list: Vec<String> = (0..ips).map(|i| ip(0, i)).collect();
    let body = json!({"title": "flood", "source_alert_id": "flood-1", "src_ip": list});
    let body_bytes = serde_json::to_vec(&body)?.len();
    let started = Instant::now();
    let to_202 = rig.post(&body).await?;
    drop(body);
    let (rss_after, rss_peak) = rss_mb();
    let enrich_messages = rig.count("SELECT count(*) FROM outbox WHERE queue = 'enrich'").await? - before;
    let normal_alert = rig.normal("1").await?;
    let flood_drained = rig.finished("flood-", started).await?;
    let flood = Flood {
        ips,
        body_bytes,
        seconds_to_202: to_202.as_secs_f64(),
        enrich_messages,
        rss_before_mb: rss_before,
        rss_after_mb: rss_after,
        rss_peak_mb: rss_peak,
        normal_alert_ms: normal_alert.as_secs_f64() * 1000.0,
        flood_drained_seconds: flood_drained.as_secs_f64(),
    };

    // ---- 3. a maximal request, then a normal alert behind it ---------------------------------
    let per_alert = limits.max_indicators_per_alert;
    let alerts = limits.max_alerts_per_request;
    // About 40 bytes per indicator: past this the body would exceed the 4 MiB ingest limit.
    let maximal_request = if per_alert * alerts > 50_000 {
        None
    } else {
        let before = rig.count("SELECT count(*) FROM outbox WHERE queue = 'enrich'").await?;
        let batch: Vec<Value> = (0..alerts)
            .map(|a| {
                let inds: Vec<Value> = (0..per_alert)
                    .map(|i| json!({"type": "ip", "value": ip(1 + a / 200, (a % 200) * 300 + i)}))
                    .collect();
                json!({"title": format!("max {a}"), "source_alert_id": format!("max-{a}"), "indicators": inds})
            })
            .collect();
        let started = Instant::now();
        let to_202 = rig.post(&json!(batch)).await?;
        let max_messages = rig.count("SELECT count(*) FROM outbox WHERE queue = 'enrich'").await? - before;
        let normal_alert = rig.normal("2").await?;
        let drained = rig.finished("max-", started).await?;
        Some(Maximal {
            alerts,
            enrich_messages: max_messages,
            seconds_to_202: to_202.as_secs_f64(),
            normal_alert_ms: normal_alert.as_secs_f64() * 1000.0,
            drained_seconds: drained.as_secs_f64(),
        })
    };
    cancel.cancel();
    for t in tasks {
        let _ = t.await;
    }

    let report = Report {
        indicator_cap: per_alert,
        enrich_release_per_second: limits.enrich_release_per_second,
        provider_delay_ms: delay_ms,
        consumers,
        flood,
        maximal_request,
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let f = &report.flood;
        println!(
            "flood alert: {} ips ({:.1} MiB), cap {}: 202 after {:.2} s, {} enrich messages, RSS {:.0} -> {:.0} MB (peak {:.0}); a normal alert behind it enriched in {:.0} ms; flood drained in {:.2} s",
            f.ips, f.body_bytes as f64 / 1048576.0, report.indicator_cap, f.seconds_to_202, f.enrich_messages,
            f.rss_before_mb, f.rss_after_mb, f.rss_peak_mb, f.normal_alert_ms, f.flood_drained_seconds
        );
        if let Some(m) = &report.maximal_request {
            println!(
            "maximal request: {} alerts x {} indicators: 202 after {:.2} s, {} enrich messages released {}/s; a normal alert behind it enriched in {:.0} ms; request drained in {:.2} s ({} consumers, providers answer after {} ms)",
            m.alerts, report.indicator_cap, m.seconds_to_202, m.enrich_messages, report.enrich_release_per_second,
            m.normal_alert_ms, m.drained_seconds, report.consumers, report.provider_delay_ms
        );
        }
    }
    eprintln!("upstream lookups: {}", up.total());
    pool.close();
    if let Some(mut pg) = embedded {
        tokio::task::spawn_blocking(move || pg.stop())
            .await
            .context("stop postgres")?;
    }
    Ok(())
}
