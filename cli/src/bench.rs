//! `calseta bench ingest`: N alerts POSTed by concurrent HTTP clients to the real router on a
//! loopback port (auth, parsing, one transaction, outbox send), against the same rows written
//! by a bare tokio-postgres loop — the ceiling for this database on this machine — in the same
//! run, reported as a ratio. Timings are client-side; nothing here is asserted.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use calseta::{
    api::{self, AppState},
    app,
    config::{AppSecrets, DbConfig, Limits},
    db::{
        self, api_keys,
        embedded::{EmbeddedOptions, EmbeddedPostgres},
        migrate,
    },
    enrich::never_send::NeverSendPolicy,
    queue::memory::InProcessQueue,
};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::json;
use tokio_postgres::types::Type;

#[derive(Debug, Serialize)]
pub struct Row {
    pub writer: &'static str,
    pub concurrency: usize,
    pub alerts: usize,
    pub alerts_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// A realistic generic alert: unique id, three indicators (one shared by many alerts).
fn alert_body(run: &str, i: usize) -> String {
    json!({
        "title": "Impossible travel detected",
        "severity": "High",
        "occurred_at": "2025-01-15T03:42:18.441Z",
        "source_alert_id": format!("bench-{run}-{i}"),
        "rule_id": "impossible-travel-v1",
        "rule_name": "Impossible Travel",
        "mitre_tactics": ["TA0001", "TA0006"],
        "src_ip": format!("185.{}.{}.{}", 220 + (i / 65536) % 30, (i / 256) % 256, i % 256),
        "domain": "login-portal.example-corp.net",
        "user": format!("user{}@calseta.com", i % 500),
        "tags": ["identity", "bench"]
    })
    .to_string()
}

async fn run_clients<F, Fut>(alerts: usize, concurrency: usize, work: F) -> anyhow::Result<(Duration, Vec<Duration>)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, work) = (next.clone(), work.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= alerts {
                    break;
                }
                let t = Instant::now();
                work(i).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::with_capacity(alerts);
    for t in tasks {
        all.extend(t.await??);
    }
    let wall = started.elapsed();
    all.sort();
    Ok((wall, all))
}

/// The bare writer: the same rows in one transaction per alert, each statement prepared once
/// per connection (the cheapest way to send them) and one round trip per statement.
struct Bare {
    client: tokio_postgres::Client,
    stmts: Vec<tokio_postgres::Statement>,
}

const BARE_SQL: [&str; 6] = [
    "INSERT INTO alerts (source_name, source_alert_id, title, severity, severity_original, occurred_at,
                         tags, mitre, extra, raw_payload, enrichment_deadline_at)
     VALUES ('generic', $1, 'Impossible travel detected', 'High', 'High', now(), $2,
             '{}'::jsonb, '{}'::jsonb, $3::text::jsonb, now() + interval '60 seconds')
     RETURNING id",
    // Insert-or-read, as ingest does (no row lock on a shared indicator), then the
    // once-a-minute `last_seen` refresh that never waits.
    "WITH input AS (SELECT * FROM unnest($1::text[], $2::text[]) AS t(type, value)),
          ins AS (INSERT INTO indicators (type, value) SELECT * FROM input
                  ON CONFLICT (type, value) DO NOTHING RETURNING id)
     SELECT id FROM ins UNION ALL SELECT i.id FROM indicators i JOIN input USING (type, value)",
    "INSERT INTO alert_indicators (alert_id, indicator_id) SELECT $1, unnest($2::bigint[])",
    "INSERT INTO outbox (queue, body) SELECT 'enrich', unnest($1::text[])",
    "INSERT INTO ingest_archive (request_id, source_name, body) VALUES ($1, 'generic', $2)",
    "UPDATE indicators SET last_seen = now() WHERE id IN (SELECT id FROM indicators
     WHERE id = ANY($1) AND last_seen < now() - interval '60 seconds' ORDER BY id FOR NO KEY UPDATE SKIP LOCKED)",
];

impl Bare {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let types: [&[Type]; 6] = [
            &[Type::TEXT, Type::TEXT_ARRAY, Type::TEXT],
            &[Type::TEXT_ARRAY, Type::TEXT_ARRAY],
            &[Type::INT8, Type::INT8_ARRAY],
            &[Type::TEXT_ARRAY],
            &[Type::TEXT, Type::BYTEA],
            &[Type::INT8_ARRAY],
        ];
        let mut stmts = Vec::new();
        for (sql, t) in BARE_SQL.iter().zip(types) {
            stmts.push(client.prepare_typed(sql, t).await?);
        }
        Ok(Self { client, stmts })
    }

    async fn insert(&mut self, run: &str, i: usize, body: &str) -> anyhow::Result<()> {
        let s = &self.stmts;
        let tx = self.client.transaction().await?;
        let sid = format!("bare-{run}-{i}");
        let row = tx.query_one(&s[0], &[&sid, &vec!["identity", "bench"], &body]).await?;
        let alert_id: i64 = row.get(0);
        let ip = format!("185.{}.{}.{}", 220 + (i / 65536) % 30, (i / 256) % 256, i % 256);
        let user = format!("user{}@calseta.com", i % 500);
        let types = vec!["account", "domain", "ip"];
        let values = vec![user.as_str(), "login-portal.example-corp.net", ip.as_str()];
        let ids = tx.query(&s[1], &[&types, &values]).await?;
        let ind: Vec<i64> = ids.iter().map(|r| r.get(0)).collect();
        tx.execute(&s[2], &[&alert_id, &ind]).await?;
        let bodies: Vec<String> = ind
            .iter()
            .map(|id| format!(r#"{{"alert_id":{alert_id},"indicator_id":{id}}}"#))
            .collect();
        tx.execute(&s[3], &[&bodies]).await?;
        tx.execute(&s[4], &[&sid, &body.as_bytes()]).await?;
        tx.execute(&s[5], &[&ind]).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The benchmark database: `DATABASE_URL`, or a fresh database `name` in a throwaway embedded
/// cluster (returned so the caller stops it at the end).
pub async fn database(name: &str) -> anyhow::Result<(String, Option<EmbeddedPostgres>)> {
    if let Some(u) = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        return Ok((u, None));
    }
    let root = std::env::temp_dir().join(format!("calseta-bench-{}-{name}", std::process::id()));
    let pg = tokio::task::spawn_blocking(move || {
        EmbeddedPostgres::start(&EmbeddedOptions {
            root,
            port: None,
            remove_on_stop: true,
        })
    })
    .await??;
    let (c, conn) = tokio_postgres::connect(&pg.url("postgres"), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    c.batch_execute(&format!("CREATE DATABASE {name}")).await?;
    let u = pg.url(name);
    Ok((u, Some(pg)))
}

/// Serves the full router on a loopback port with an `alerts:write` key; returns the generic
/// ingest URL and the key.
pub async fn serve_ingest(
    pool: &deadpool_postgres::Pool,
    state: AppState,
) -> anyhow::Result<(String, secrecy::SecretString)> {
    let key = calseta::keys::generate();
    let c = pool.get().await?;
    api_keys::insert(
        &**c,
        &state.hasher,
        &key,
        &api_keys::NewApiKey {
            name: "bench",
            scopes: &["alerts:write"],
            key_type: "agent",
            allowed_sources: None,
            expires_at: None,
            is_system: false,
            created_by: Some("bench"),
        },
    )
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/ingest/generic", listener.local_addr()?);
    let router = api::router(state);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((url, key))
}

#[allow(
    clippy::too_many_lines,
    reason = "a benchmark's setup, runs and report in one readable sequence"
)]
pub async fn ingest(alerts: usize, levels: &[usize], json_out: bool) -> anyhow::Result<()> {
    let (url, embedded) = database("calseta_bench").await?;
    let mut cfg = DbConfig::from_url(url.clone());
    cfg.pool_size = 40;
    let pool = db::build_pool(&cfg)?;
    migrate::run_on_pool(&pool).await?;
    let secrets = AppSecrets::random();
    // Rate limits on, as deployed (the per-key limiter counts every request and syncs with
    // Postgres), with a limit this run cannot reach.
    let limits = Limits {
        ingest_per_key_per_minute: 1_000_000,
        ingest_per_source_per_minute: 1_000_000,
        ..Limits::default()
    };
    let queue = InProcessQueue::new(Default::default());
    let state = app::Core::new(pool.clone(), Arc::new(queue)).state(&secrets, limits, NeverSendPolicy::default())?;
    let (base, key) = serve_ingest(&pool, state).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let auth = format!("Bearer {}", key.expose_secret());

    // Warm-up: connections, statement paths, caches.
    for i in 0..50 {
        http.post(&base)
            .header("authorization", &auth)
            .body(alert_body("warm", i))
            .send()
            .await?
            .error_for_status()?;
    }

    let mut rows = Vec::new();
    for &c in levels {
        let run = format!("h{c}");
        let (http, base, auth) = (http.clone(), base.clone(), auth.clone());
        let (wall, lat) = run_clients(alerts, c, move |i| {
            let (http, base, auth, run) = (http.clone(), base.clone(), auth.clone(), run.clone());
            async move {
                let r = http
                    .post(&base)
                    .header("authorization", &auth)
                    .body(alert_body(&run, i))
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 202, "status {}", r.status());
                Ok(())
            }
        })
        .await?;
        rows.push(Row {
            writer: "calseta ingest (HTTP)",
            concurrency: c,
            alerts: lat.len(),
            alerts_per_sec: lat.len() as f64 / wall.as_secs_f64(),
            p50_ms: pct(&lat, 0.5),
            p99_ms: pct(&lat, 0.99),
        });

        // The ceiling: the same rows by a bare loop with `c` connections.
        let mut clients = Vec::new();
        for _ in 0..c {
            clients.push(Arc::new(tokio::sync::Mutex::new(Bare::connect(&url).await?)));
        }
        let clients = Arc::new(clients);
        let run = format!("b{c}");
        let (wall, lat) = run_clients(alerts, c, move |i| {
            let clients = clients.clone();
            let run = run.clone();
            async move {
                let body = alert_body(&run, i);
                let mut bare = clients[i % clients.len()].lock().await;
                bare.insert(&run, i, &body).await
            }
        })
        .await?;
        rows.push(Row {
            writer: "bare tokio-postgres loop",
            concurrency: c,
            alerts: lat.len(),
            alerts_per_sec: lat.len() as f64 / wall.as_secs_f64(),
            p50_ms: pct(&lat, 0.5),
            p99_ms: pct(&lat, 0.99),
        });
    }

    // Latency at half of the best measured throughput (open loop, paced).
    let best = rows
        .iter()
        .filter(|r| r.writer.starts_with("calseta"))
        .map(|r| r.alerts_per_sec)
        .fold(0.0, f64::max);
    let rate = (best / 2.0).max(1.0);
    let n = alerts.min((rate * 5.0) as usize).max(100);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut handles = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        tick.tick().await;
        let (http, base, auth) = (http.clone(), base.clone(), auth.clone());
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = http
                .post(&base)
                .header("authorization", &auth)
                .body(alert_body("half", i))
                .send()
                .await;
            r.ok().filter(|r| r.status() == 202).map(|_| t.elapsed())
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        if let Some(d) = h.await? {
            lat.push(d);
        }
    }
    let wall = started.elapsed();
    lat.sort();
    rows.push(Row {
        writer: "calseta ingest at half max (paced)",
        concurrency: 0,
        alerts: lat.len(),
        alerts_per_sec: lat.len() as f64 / wall.as_secs_f64(),
        p50_ms: pct(&lat, 0.5),
        p99_ms: pct(&lat, 0.99),
    });

    if json_out {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<36} {:>5} {:>7} {:>10} {:>8} {:>8}",
            "writer", "conc", "alerts", "alerts/s", "p50 ms", "p99 ms"
        );
        for r in &rows {
            println!(
                "{:<36} {:>5} {:>7} {:>10.0} {:>8.2} {:>8.2}",
                r.writer, r.concurrency, r.alerts, r.alerts_per_sec, r.p50_ms, r.p99_ms
            );
        }
        for pair in rows
            .chunks(2)
            .filter(|p| p.len() == 2 && p[1].writer.starts_with("bare"))
        {
            println!(
                "concurrency {:>2}: ingest / bare = {:.2}",
                pair[0].concurrency,
                pair[0].alerts_per_sec / pair[1].alerts_per_sec
            );
        }
    }
    pool.close();
    if let Some(mut pg) = embedded {
        tokio::task::spawn_blocking(move || pg.stop())
            .await
            .context("stop postgres")?;
    }
    Ok(())
}
