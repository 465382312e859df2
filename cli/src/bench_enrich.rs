//! `calseta bench enrich`: the enrichment engine against the provider simulator, over a real
//! Postgres (DATABASE_URL or an embedded cluster) and the in-process queue, in one run:
//!
//! 1. **Fan-out**: one alert with 10 indicators, every provider answering after 100 ms. Wall
//!    time to completion vs one provider call measured the same way (goal ≤ 1.3×).
//! 2. **Burst**: 100 alerts drawn from 20 shared indicators, drained by 8 concurrent consumers
//!    (as 8 Lambda instances would). Upstream lookups made vs distinct indicator × provider pairs
//!    (goal: equal — the shared cache and its leases hold under concurrency).
//! 3. **Drain**: a backlog of alerts with 5–9 indicators each (some shared, most unique), the
//!    simulator answering at once. Alerts completed per second (goal ≥ 250/s).
//!
//! Timings are wall-clock on this machine; compare ratios within one run.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::Request;
use axum::middleware::Next;
use calseta::{
    app,
    config::{AppSecrets, Limits},
    db::{self, migrate},
    domain::indicator::IndicatorType,
    enrich::{
        engine::{Engine, EngineSettings},
        never_send::NeverSendPolicy,
        registry::ProviderSet,
        simulator::{self, SimulatorOptions},
    },
    queue::{
        batch::BatchRunner,
        memory::{InProcessQueue, QueueSettings},
        QueueName,
    },
};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Serialize)]
struct Report {
    fanout: Fanout,
    burst: Burst,
    drain: Drain,
}

#[derive(Debug, Serialize)]
struct Fanout {
    provider_delay_ms: u64,
    indicators: usize,
    rounds: usize,
    one_call_p50_ms: f64,
    alert_p50_ms: f64,
    alert_max_ms: f64,
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct Burst {
    alerts: usize,
    distinct_indicators: usize,
    distinct_pairs: usize,
    upstream_lookups: u64,
    consumers: usize,
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct Drain {
    alerts: usize,
    links: i64,
    upstream_lookups: u64,
    consumers: usize,
    seconds: f64,
    alerts_per_sec: f64,
    links_per_sec: f64,
}

/// The simulator behind a layer that delays every answer and counts lookups per provider
/// (one per lookup: VirusTotal, AbuseIPDB and GreyNoise make one request per lookup).
pub(crate) struct Upstream {
    pub(crate) base: url::Url,
    pub(crate) delay_ms: Arc<AtomicU64>,
    calls: Arc<Mutex<HashMap<String, u64>>>,
}

impl Upstream {
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let delay_ms = Arc::new(AtomicU64::new(0));
        let calls: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let (d, c) = (delay_ms.clone(), calls.clone());
        let app = simulator::router_with(SimulatorOptions {
            rate_limit_every: None,
            retry_after_secs: 20,
        })
        .layer(axum::middleware::from_fn(move |req: Request, next: Next| {
            let (d, c) = (d.clone(), c.clone());
            async move {
                let provider = req
                    .uri()
                    .path()
                    .trim_start_matches('/')
                    .split('/')
                    .next()
                    .unwrap_or("")
                    .to_string();
                *c.lock().unwrap_or_else(|p| p.into_inner()).entry(provider).or_default() += 1;
                let ms = d.load(Ordering::Relaxed);
                if ms > 0 {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                next.run(req).await
            }
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = url::Url::parse(&format!("http://{}/", listener.local_addr()?))?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Upstream { base, delay_ms, calls })
    }

    pub(crate) fn total(&self) -> u64 {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
    }

    fn reset(&self) {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// A deterministic stream of pseudo-random numbers (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A public-looking indicator of a threat-intel type, unique per `(tag, i)`.
fn indicator(kind: IndicatorType, tag: u64, i: u64) -> Value {
    let value = match kind {
        IndicatorType::Ip => format!("45.{}.{}.{}", 33 + (tag % 150), (i / 250) % 250, 1 + i % 250),
        IndicatorType::Domain => format!("d{i}-t{tag}.bench-threat.net"),
        IndicatorType::Url => format!("https://u{tag}.bench-threat.net/p/{i}"),
        _ => format!("{:032x}", (tag << 40) ^ (i.wrapping_mul(0x9e37_79b9_7f4a_7c15))),
    };
    let t = if kind == IndicatorType::Ip || kind == IndicatorType::Domain || kind == IndicatorType::Url {
        kind.as_str()
    } else {
        "hash_md5"
    };
    json!({"type": t, "value": value})
}

/// Lookups one indicator costs: VirusTotal for every threat-intel type, plus AbuseIPDB and
/// GreyNoise for an ip.
fn pairs(kind: &str) -> usize {
    if kind == "ip" {
        3
    } else {
        1
    }
}

struct Bench {
    pool: deadpool_postgres::Pool,
    queue: InProcessQueue,
    engine: Arc<Engine>,
    runner: BatchRunner,
    http: reqwest::Client,
    ingest_url: String,
    auth: String,
}

impl Bench {
    async fn ingest(&self, alerts: Vec<Value>, concurrency: usize) -> anyhow::Result<()> {
        let alerts = Arc::new(alerts);
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..concurrency.max(1) {
            let (alerts, next, http, url, auth) = (
                alerts.clone(),
                next.clone(),
                self.http.clone(),
                self.ingest_url.clone(),
                self.auth.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(a) = alerts.get(i) else { break };
                    let r = http.post(&url).header("authorization", &auth).json(a).send().await?;
                    anyhow::ensure!(r.status() == 202, "ingest answered {}", r.status());
                }
                Ok::<_, anyhow::Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(())
    }

    async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        let c = self.pool.get().await?;
        Ok(c.query_one(sql, &[]).await?.get(0))
    }

    /// Runs `consumers` in-process consumers until `done` alerts with this id prefix are enriched.
    async fn drain(&self, prefix: &str, done: i64, consumers: usize) -> anyhow::Result<Duration> {
        let cancel = CancellationToken::new();
        let handler = self.engine.handler(self.runner.clone());
        let started = Instant::now();
        let tasks = self
            .queue
            .spawn_consumers(QueueName::Enrich, handler, consumers, cancel.clone());
        // Every other alert is complete by now, so "none pending" means this set is done; the
        // partial index on pending alerts keeps the poll cheap.
        let limit = Instant::now() + Duration::from_secs(600);
        loop {
            if self
                .count("SELECT count(*) FROM alerts WHERE enrichment_status = 'Pending'")
                .await?
                == 0
            {
                break;
            }
            anyhow::ensure!(Instant::now() < limit, "backlog not drained within 10 minutes");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let sql = format!(
            "SELECT count(*) FROM alerts WHERE enrichment_status = 'Enriched' AND source_alert_id LIKE '{prefix}%'"
        );
        anyhow::ensure!(self.count(&sql).await? >= done, "not every {prefix} alert was enriched");
        let took = started.elapsed();
        cancel.cancel();
        for t in tasks {
            let _ = t.await;
        }
        Ok(took)
    }
}

/// Records per consumer batch, as the template's SQS event source (BatchSize 10) hands them over.
const ENRICH_BATCH: usize = 10;

#[allow(
    clippy::too_many_lines,
    reason = "a benchmark's setup, runs and report in one readable sequence"
)]
pub async fn enrich(backlog: usize, consumers: usize, json_out: bool) -> anyhow::Result<()> {
    let (url, embedded) = crate::bench::database("calseta_bench_enrich").await?;
    let mut cfg = calseta::config::DbConfig::from_url(url);
    cfg.pool_size = 40;
    let pool = db::build_pool(&cfg)?;
    migrate::run_on_pool(&pool).await?;
    let up = Upstream::start().await?;

    let mut qs = HashMap::new();
    qs.insert(
        QueueName::Enrich,
        QueueSettings {
            max_receives: 10,
            batch_size: ENRICH_BATCH,
            ..QueueSettings::default()
        },
    );
    let queue = InProcessQueue::with_settings(qs);
    let limits = Limits {
        ingest_per_key_per_minute: 0,
        ingest_per_source_per_minute: 0,
        enrichment_deadline: Duration::from_secs(600),
        ..Limits::default()
    };
    let core = app::Core::new(pool.clone(), Arc::new(queue.clone()));
    let state = core.state(&AppSecrets::random(), limits, NeverSendPolicy::default())?;
    // No budgets: this measures the engine, not a plan's quota.
    let providers = ProviderSet::simulated(&up.base, HashMap::new(), 64);
    let engine = core.engine(providers, state.never_send.clone(), EngineSettings::default());
    let runner = core.runner(QueueName::Enrich);
    let (ingest_url, key) = crate::bench::serve_ingest(&pool, state).await?;
    let b = Bench {
        pool: pool.clone(),
        queue: queue.clone(),
        engine: engine.clone(),
        runner,
        http: reqwest::Client::builder().pool_max_idle_per_host(64).build()?,
        ingest_url,
        auth: format!("Bearer {}", key.expose_secret()),
    };

    // ---- 1. fan-out ------------------------------------------------------------------------
    const DELAY_MS: u64 = 100;
    up.delay_ms.store(DELAY_MS, Ordering::Relaxed);
    let vt = engine
        .providers()
        .providers
        .iter()
        .find(|p| p.name() == "virustotal")
        .context("virustotal")?
        .clone();
    // Warm the connection pool, then time single calls.
    let _ = vt.lookup(IndicatorType::Ip, "185.220.101.47").await;
    let mut one = Vec::new();
    for i in 0..7u64 {
        let v = format!("45.200.1.{}", 10 + i);
        let t = Instant::now();
        let _ = vt.lookup(IndicatorType::Ip, &v).await;
        one.push(t.elapsed());
    }
    one.sort();
    let kinds = [
        IndicatorType::Ip,
        IndicatorType::Ip,
        IndicatorType::Ip,
        IndicatorType::Ip,
        IndicatorType::Domain,
        IndicatorType::Domain,
        IndicatorType::Url,
        IndicatorType::HashMd5,
        IndicatorType::HashMd5,
    ];
    let rounds = 10usize;
    let mut walls = Vec::new();
    let mut fanned_out = 0;
    for r in 0..rounds as u64 {
        let inds: Vec<Value> = kinds
            .iter()
            .enumerate()
            .map(|(k, kind)| indicator(*kind, 1000 + r, k as u64))
            .collect();
        b.ingest(
            vec![json!({"title": format!("fanout {r}"), "source_alert_id": format!("fanout-{r}"), "indicators": inds})],
            1,
        )
        .await?;
        // The URL brings its host as a domain indicator (as at ingest): ten messages, one
        // SQS batch.
        let batch = queue.receive(QueueName::Enrich, 10);
        anyhow::ensure!(
            batch.len() == kinds.len() + 1,
            "expected {} messages, got {}",
            kinds.len() + 1,
            batch.len()
        );
        fanned_out = batch.len();
        let t = Instant::now();
        let out = engine.handle_records(batch.clone()).await;
        walls.push(t.elapsed());
        anyhow::ensure!(out.iter().all(|r| r.is_ok()), "fan-out round {r} failed: {out:?}");
        for m in &batch {
            if let Some(h) = &m.receipt_handle {
                queue.delete(QueueName::Enrich, h);
            }
        }
    }
    walls.sort();
    let fanout = Fanout {
        provider_delay_ms: DELAY_MS,
        indicators: fanned_out,
        rounds,
        one_call_p50_ms: pct(&one, 0.5),
        alert_p50_ms: pct(&walls, 0.5),
        alert_max_ms: pct(&walls, 1.0),
        ratio: pct(&walls, 0.5) / pct(&one, 0.5),
    };
    anyhow::ensure!(
        b.count("SELECT count(*) FROM alerts WHERE enrichment_status = 'Enriched' AND source_alert_id LIKE 'fanout-%'")
            .await?
            == rounds as i64,
        "fan-out alerts did not complete"
    );

    // ---- 2. burst over shared indicators ----------------------------------------------------
    up.reset();
    let mut pool_inds: Vec<Value> = Vec::new();
    for i in 0..10 {
        pool_inds.push(indicator(IndicatorType::Ip, 2000, i));
    }
    for i in 0..5 {
        pool_inds.push(indicator(IndicatorType::Domain, 2000, i));
    }
    for i in 0..5 {
        pool_inds.push(indicator(IndicatorType::HashMd5, 2000, i));
    }
    let mut rng = Rng(0x5eed_cafe);
    let mut used: BTreeSet<usize> = BTreeSet::new();
    let burst_alerts: Vec<Value> = (0..100)
        .map(|i| {
            let n = 5 + rng.below(5) as usize;
            let mut picks = BTreeSet::new();
            while picks.len() < n {
                picks.insert(rng.below(pool_inds.len() as u64) as usize);
            }
            used.extend(picks.iter().copied());
            let inds: Vec<Value> = picks.iter().map(|&k| pool_inds[k].clone()).collect();
            json!({"title": format!("burst {i}"), "source_alert_id": format!("burst-{i}"), "indicators": inds})
        })
        .collect();
    let distinct_pairs: usize = used
        .iter()
        .map(|&k| pairs(pool_inds[k]["type"].as_str().unwrap_or("")))
        .sum();
    b.ingest(burst_alerts, 8).await?;
    let took = b.drain("burst-", 100, 8).await?;
    let burst = Burst {
        alerts: 100,
        distinct_indicators: used.len(),
        distinct_pairs,
        upstream_lookups: up.total(),
        consumers: 8,
        seconds: took.as_secs_f64(),
    };

    // ---- 3. backlog drain, providers instant -------------------------------------------------
    up.delay_ms.store(0, Ordering::Relaxed);
    up.reset();
    let hot: Vec<Value> = (0..200)
        .map(|i| {
            let kind = [IndicatorType::Ip, IndicatorType::Domain, IndicatorType::HashMd5][i % 3];
            indicator(kind, 3000, i as u64)
        })
        .collect();
    let mut rng = Rng(0xdead_beef);
    let drain_alerts: Vec<Value> = (0..backlog)
        .map(|i| {
            let n = 5 + rng.below(5);
            let mut inds: Vec<Value> = (0..2)
                .map(|_| hot[rng.below(hot.len() as u64) as usize].clone())
                .collect();
            for k in 0..n.saturating_sub(2) {
                let kind = [
                    IndicatorType::Ip,
                    IndicatorType::Domain,
                    IndicatorType::Url,
                    IndicatorType::HashMd5,
                ][rng.below(4) as usize];
                inds.push(indicator(kind, 4000 + (i as u64 % 100), i as u64 * 16 + k));
            }
            json!({"title": format!("drain {i}"), "source_alert_id": format!("drain-{i}"), "indicators": inds})
        })
        .collect();
    eprintln!("bench enrich: ingesting a backlog of {backlog} alerts …");
    b.ingest(drain_alerts, 16).await?;
    let links = b
        .count("SELECT count(*) FROM alert_indicators l JOIN alerts a ON a.id = l.alert_id WHERE a.source_alert_id LIKE 'drain-%' AND l.enrichment_state = 'pending'")
        .await?;
    let took = b.drain("drain-", backlog as i64, consumers).await?;
    let drain = Drain {
        alerts: backlog,
        links,
        upstream_lookups: up.total(),
        consumers,
        seconds: took.as_secs_f64(),
        alerts_per_sec: backlog as f64 / took.as_secs_f64(),
        links_per_sec: links as f64 / took.as_secs_f64(),
    };

    let report = Report { fanout, burst, drain };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let f = &report.fanout;
        println!(
            "fan-out: {} indicators, providers answer after {} ms: alert p50 {:.1} ms (max {:.1}) vs one call p50 {:.1} ms -> {:.2}x (goal <= 1.3x)",
            f.indicators, f.provider_delay_ms, f.alert_p50_ms, f.alert_max_ms, f.one_call_p50_ms, f.ratio
        );
        let u = &report.burst;
        println!(
            "burst: {} alerts over {} shared indicators ({} indicator x provider pairs), {} consumers: {} upstream lookups (goal {}), {:.2} s",
            u.alerts, u.distinct_indicators, u.distinct_pairs, u.consumers, u.upstream_lookups, u.distinct_pairs, u.seconds
        );
        let d = &report.drain;
        println!(
            "drain: {} alerts ({} links, {} upstream lookups), {} consumers, providers instant: {:.2} s -> {:.0} alerts/s, {:.0} links/s (goal >= 500 alerts/s)",
            d.alerts, d.links, d.upstream_lookups, d.consumers, d.seconds, d.alerts_per_sec, d.links_per_sec
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
