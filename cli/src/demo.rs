//! `calseta demo`: against a running `calseta dev`, registers a demo agent whose webhook is a
//! receiver in this process, ingests the demo SIEM alerts from `events/demo/`, waits for the signed
//! payloads, verifies their signatures, writes them to files and says where to read them. The
//! demo agent is removed at the end.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use calseta::demo::DEMO_ALERTS;
use calseta::dispatch::signing;
use secrecy::SecretString;
use serde_json::{json, Value};

#[derive(Clone, Default)]
struct Inbox {
    secret: Arc<Mutex<Option<SecretString>>>,
    /// Verified payloads by alert uuid.
    payloads: Arc<Mutex<HashMap<String, (Value, usize)>>>,
    rejected: Arc<Mutex<u32>>,
}

async fn webhook(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ts = h("webhook-timestamp").parse::<i64>().unwrap_or(0);
    let now = chrono_now();
    let secret = inbox.secret.lock().ok().and_then(|s| s.clone());
    let ok = secret
        .as_ref()
        .is_some_and(|s| signing::verify(s, h("webhook-id"), ts, h("webhook-signature"), &body, now).is_ok());
    if !ok {
        if let Ok(mut r) = inbox.rejected.lock() {
            *r += 1;
        }
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if let Some(uuid) = v["alert"]["uuid"].as_str() {
        if let Ok(mut p) = inbox.payloads.lock() {
            p.insert(uuid.to_string(), (v.clone(), body.len()));
        }
    }
    StatusCode::NO_CONTENT
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    key: &str,
    body: Option<String>,
) -> anyhow::Result<(u16, Value)> {
    let mut req = http.request(method, &url).bearer_auth(key);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}; is `calseta dev` running?"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

pub async fn run(base: &str, admin_key: &str, out: &Path, wait: Duration) -> anyhow::Result<()> {
    let base = base.trim_end_matches('/');
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let (status, _) = call(&http, reqwest::Method::GET, format!("{base}/health"), admin_key, None).await?;
    if status != 200 {
        bail!("{base}/health answered {status}");
    }

    // The demo agent: a webhook receiver in this process (loopback, allowed by `calseta dev`).
    let inbox = Inbox::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/webhook", listener.local_addr()?);
    let app = Router::new().route("/webhook", post(webhook)).with_state(inbox.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let (status, v) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/agents"),
        admin_key,
        Some(
            json!({"name": "demo-agent (demo)", "endpoint_url": hook,
                   "description": "Created by `calseta demo`; removed when it ends."})
            .to_string(),
        ),
    )
    .await?;
    match status {
        201 => {}
        401 | 403 => bail!("the admin key was refused ({status}); pass the key `calseta dev` printed (or --admin-key)"),
        _ => bail!("could not register the demo agent ({status}): {v}"),
    }
    let agent = v["data"]["uuid"].as_str().unwrap_or_default().to_string();
    let secret = v["data"]["signing_secret"].as_str().unwrap_or_default().to_string();
    if let Ok(mut s) = inbox.secret.lock() {
        *s = Some(SecretString::from(secret));
    }

    let result = ingest_and_collect(&http, base, admin_key, &inbox, out, wait).await;
    // Always remove the demo agent: its receiver ends with this command.
    let _ = call(
        &http,
        reqwest::Method::DELETE,
        format!("{base}/v1/agents/{agent}"),
        admin_key,
        None,
    )
    .await;
    server.abort();
    result
}

async fn ingest_and_collect(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    inbox: &Inbox,
    out: &Path,
    wait: Duration,
) -> anyhow::Result<()> {
    // alert uuid -> (source, raw bytes of its request)
    let mut alerts: BTreeMap<String, (&str, usize)> = BTreeMap::new();
    let mut order = Vec::new();
    for (source, file, body) in DEMO_ALERTS {
        let raw = body.len();
        let (status, v) = call(
            http,
            reqwest::Method::POST,
            format!("{base}/v1/ingest/{source}"),
            key,
            Some(body.to_string()),
        )
        .await?;
        if status != 202 {
            bail!("ingest of {file} answered {status}: {v}");
        }
        let items = v["data"]["items"].as_array().cloned().unwrap_or_default();
        let n = items.len().max(1);
        for it in items {
            if let Some(u) = it["alert_uuid"].as_str() {
                alerts.insert(u.to_string(), (source, raw / n));
                order.push(u.to_string());
            }
        }
    }
    let started = Instant::now();
    loop {
        let got = inbox.payloads.lock().map(|p| p.len()).unwrap_or(0);
        let have_all = inbox
            .payloads
            .lock()
            .map(|p| alerts.keys().all(|k| p.contains_key(k)))
            .unwrap_or(false);
        if have_all {
            break;
        }
        if started.elapsed() > wait {
            bail!(
                "only {got} of {} payloads arrived within {}s; see `calseta dev`'s log and GET /v1/agents/{{uuid}}/deliveries",
                alerts.len(),
                wait.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let payloads = inbox.payloads.lock().map(|p| p.clone()).unwrap_or_default();
    println!(
        "calseta demo: {} alerts from {} demo SIEM payloads (events/demo/) were enriched and delivered to a demo agent \
         as signed webhooks (signatures verified) in {} ms.\n",
        alerts.len(),
        DEMO_ALERTS.len(),
        elapsed.as_millis()
    );
    for uuid in &order {
        let (source, raw) = alerts[uuid];
        let (p, bytes) = &payloads[uuid];
        let path: PathBuf = out.join(format!("{source}-{uuid}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(p)?)?;
        let count = |k: &str| p[k].as_array().map(Vec::len).unwrap_or(0);
        println!(
            "  {source:<9} {:<55} {:<8} malice {:<10} {} indicators, {} context documents, {} workflows, {} past alerts; {bytes} bytes (raw alert {raw} bytes)",
            p["alert"]["title"].as_str().unwrap_or(""),
            p["alert"]["severity"].as_str().unwrap_or(""),
            p["alert"]["malice"].as_str().unwrap_or(""),
            count("indicators"),
            count("context_documents"),
            count("workflows"),
            count("past_alerts"),
        );
        println!("            file: {}", path.display());
        println!("            REST: curl -H \"Authorization: Bearer $KEY\" {base}/v1/alerts/{uuid}/payload");
    }
    println!("\nThe detection rules, documents and workflows in these payloads are demo data (marked \"(demo)\").");
    Ok(())
}
