//! The functions as Lambdas, end to end (`calseta lambda-local`): the real function binaries
//! under `cargo lambda watch`, a local Postgres, moto's SQS API and the event-source mappings.
//! A SIEM alert POSTed to the ingest function's HTTP endpoint reaches a local agent as a signed
//! webhook through the enrich and dispatch functions, one trace and one request id in their
//! logs; a poison message is taken off the queue (parked) instead of looping, and one that
//! cannot even be parked ends in the DLQ; the dispatch function's process killed in the middle
//! of a batch loses nothing. Prints per function: process start → first invocation handled, warm p50, peak RSS.
//!
//! Needs cargo-lambda (`CARGO_LAMBDA`, or `cargo-lambda` in the venv `scripts/setup.sh` makes,
//! or on PATH); it fails loudly when missing. Run alone: it compiles and starts six binaries.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
    Router,
};
use calseta::{
    dispatch::signing,
    lambda_local::{self, LambdaLocalOptions, LambdaStack},
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

fn tool(env: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut candidates = vec![root.join(".venv/bin").join(name)];
    if let Some(v) = std::env::var_os("CALSETA_VENV") {
        candidates.insert(0, PathBuf::from(v).join("bin").join(name));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    candidates
        .into_iter()
        .find(|c| c.is_file())
        .unwrap_or_else(|| panic!("{name} not found: set {env}, or run scripts/setup.sh (installs it into the venv)"))
}

#[derive(Clone, Default)]
struct Agent {
    secret: Arc<Mutex<Option<SecretString>>>,
    /// (webhook id, signature valid, payload)
    hits: Arc<Mutex<Vec<(String, bool, Value)>>>,
    /// Alert titles the agent answers slowly (to kill the dispatch function meanwhile).
    slow: Arc<Mutex<Vec<String>>>,
}

async fn receive(State(a): State<Agent>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (id, ts, sig) = (h("webhook-id"), h("webhook-timestamp"), h("webhook-signature"));
    let secret = a.secret.lock().unwrap().clone();
    let ok = match (secret, ts.parse::<i64>()) {
        (Some(s), Ok(ts)) => signing::verify(&s, &id, ts, &sig, &body, chrono::Utc::now().timestamp()).is_ok(),
        _ => false,
    };
    let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let title = payload["alert"]["title"].as_str().unwrap_or("").to_owned();
    a.hits.lock().unwrap().push((id, ok, payload));
    if a.slow.lock().unwrap().contains(&title) {
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    if ok {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

impl Agent {
    fn signed_titles(&self) -> Vec<String> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, ok, _)| *ok)
            .filter_map(|(_, _, p)| p["alert"]["title"].as_str().map(str::to_owned))
            .collect()
    }
}

/// Pid of the running function binary `name` (a child of cargo lambda watch).
fn function_pid(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let exe = std::fs::read_link(e.path().join("exe")).ok()?;
        (exe.file_name()? == name && exe.to_string_lossy().contains("/debug/")).then_some(pid)
    })
}

/// Seconds since the process started (from /proc; clock ticks are 100 per second on Linux).
fn process_age(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let start_ticks: f64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(uptime - start_ticks / 100.0)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every EMF document in the emulator's output so far, each validated; waits until each of
/// `metrics` appeared.
async fn wait_emf(data_dir: &std::path::Path, metrics: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = std::fs::read_to_string(data_dir.join("cargo-lambda.log")).unwrap_or_default();
        let docs: Vec<Value> = log
            .lines()
            .filter(|l| l.contains("\"_aws\""))
            .filter_map(|l| l.find('{').map(|i| &l[i..]))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect();
        for d in &docs {
            calseta::metrics::validate(d).unwrap_or_else(|e| panic!("invalid EMF {d}: {e}"));
            assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Calseta");
            assert!(d["service"].is_string());
        }
        if metrics.iter().all(|m| docs.iter().any(|d| d.get(*m).is_some())) {
            return docs;
        }
        assert!(Instant::now() < deadline, "EMF lines missing for {metrics:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The first JSON log line of the functions (their stderr/stdout in the emulator's output)
/// that `matches`; waits for it.
async fn wait_log(data_dir: &std::path::Path, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = std::fs::read_to_string(data_dir.join("cargo-lambda.log")).unwrap_or_default();
        let found = log
            .lines()
            .filter(|l| l.contains("\"level\""))
            .filter_map(|l| l.find('{').map(|i| &l[i..]))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| matches(l));
        if let Some(l) = found {
            return l;
        }
        assert!(Instant::now() < deadline, "log line not found");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

struct Measure {
    cold: HashMap<&'static str, f64>,
}

impl Measure {
    /// Invokes `function` once; if that started its process, records start → handled.
    async fn first(&mut self, stack: &LambdaStack, function: &'static str, event: Value) -> Value {
        let out = stack.invoker.invoke(function, &event).await.expect(function);
        if let Some(age) = function_pid(function).and_then(process_age) {
            self.cold.entry(function).or_insert(age);
        }
        out
    }
}

async fn warm_p50(stack: &LambdaStack, function: &str, event: &Value) -> Duration {
    let mut times = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        stack.invoker.invoke(function, event).await.expect(function);
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

fn http_event(method: &str, path: &str, key: &str, body: Option<&Value>) -> Value {
    json!({
        "resource": "/{proxy+}", "path": path, "httpMethod": method,
        "headers": {"authorization": format!("Bearer {key}"), "content-type": "application/json", "host": "localhost"},
        "multiValueHeaders": {"authorization": [format!("Bearer {key}")], "content-type": ["application/json"], "host": ["localhost"]},
        "queryStringParameters": null, "multiValueQueryStringParameters": null, "pathParameters": {"proxy": path.trim_start_matches('/')},
        "stageVariables": null,
        "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": method, "path": format!("/prod{path}"), "stage": "prod",
                            "requestId": uuid::Uuid::new_v4().to_string(), "accountId": "000000000000", "apiId": "local",
                            "identity": {"sourceIp": "127.0.0.1"}},
        "body": body.map(|b| b.to_string()), "isBase64Encoded": false
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "run by scripts/lambda-e2e: the emulator builds with cargo, which a running cargo test locks"]
async fn an_alert_posted_to_the_ingest_function_reaches_the_agent_signed_and_nothing_is_lost() {
    let agent = Agent::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_url = format!("http://{}/agent", listener.local_addr().unwrap());
    let app = Router::new().route("/agent", post(receive)).with_state(agent.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let data_dir = std::env::temp_dir().join(format!("calseta-lambda-e2e-{}", std::process::id()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut stack = lambda_local::start(&LambdaLocalOptions {
        workspace: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
        data_dir: data_dir.clone(),
        invoke_port: port,
        cargo_lambda: tool("CARGO_LAMBDA", "cargo-lambda"),
        moto_server: tool("MOTO_SERVER", "moto_server"),
        visibility_timeout: Duration::from_secs(3),
        max_concurrency: 2,
        sweep_interval: Duration::from_secs(5),
        extra_env: vec![("CALSETA_DELIVERY_RETRY_SCHEDULE".into(), "1".into())],
    })
    .await
    .unwrap_or_else(|e| {
        let log = std::fs::read_to_string(data_dir.join("cargo-lambda.log")).unwrap_or_default();
        panic!(
            "lambda-local: {e}\n--- cargo-lambda.log (tail) ---\n{}",
            &log[log.len().saturating_sub(4000)..]
        )
    });
    let mut m = Measure { cold: HashMap::new() };
    if let Some(age) = function_pid("migrate").and_then(process_age) {
        m.cold.insert("migrate", age);
    }
    for (f, event) in [
        ("enrich", json!({"Records": []})),
        ("dispatch", json!({"Records": []})),
        ("sweep", lambda_local::schedule_event()),
    ] {
        m.first(&stack, f, event).await;
    }
    let key = stack.admin_key.expose_secret().to_owned();
    calseta::net::tls::install_crypto_provider();
    let http = reqwest::Client::new();

    // Register the agent through the api function's HTTP endpoint (API Gateway REST event).
    let created = m
        .first(
            &stack,
            "api",
            http_event(
                "POST",
                "/v1/agents",
                &key,
                Some(
                    &json!({"name": "e2e", "endpoint_url": agent_url, "trigger_on_sources": ["generic"],
                              "timeout_seconds": 10}),
                ),
            ),
        )
        .await;
    assert_eq!(created["statusCode"], 201, "{created}");
    let body: Value = serde_json::from_str(created["body"].as_str().unwrap()).unwrap();
    let secret = body["data"]["signing_secret"].as_str().unwrap().to_owned();
    *agent.secret.lock().unwrap() = Some(SecretString::from(secret));

    // The SIEM alert, as API Gateway delivers it (with its request id), to the ingest function.
    let gateway_request_id = uuid::Uuid::new_v4().to_string();
    let mut event = http_event(
        "POST",
        "/v1/ingest/generic",
        &key,
        Some(
            &json!({"title": "Lambda e2e alert", "severity": "high", "source_alert_id": "e2e-1",
                      "ip": "203.0.113.7", "user": "alice@example.com"}),
        ),
    );
    event["requestContext"]["requestId"] = json!(gateway_request_id);
    let ingested = m.first(&stack, "ingest", event).await;
    assert_eq!(ingested["statusCode"], 202, "{ingested}");
    let answer: Value = serde_json::from_str(ingested["body"].as_str().unwrap()).unwrap();
    let alert_uuid = answer["data"]["alert_uuid"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| answer["data"]["items"][0]["alert_uuid"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no alert uuid in {answer}"));
    // The function URL route works as well (cargo lambda watch's /lambda-url/<function>/…).
    let via_url = http
        .get(format!("{}/health", stack.function_url("api")))
        .send()
        .await
        .expect("function url");
    assert!(via_url.status().is_success(), "{}", via_url.status());

    wait_for("the signed webhook", Duration::from_secs(600), || {
        agent.signed_titles().contains(&"Lambda e2e alert".to_owned())
    })
    .await;

    // One alert, one trace: the dispatch function's delivery line (and the enrich function's
    // completion line) carry the ingest invocation's X-Ray trace id (not their own invocation's)
    // and the API Gateway request id, and the HTTP status as a JSON number.
    let ingest_line = wait_log(&data_dir, |l| {
        l["message"] == "alert ingested" && l["alert_uuid"] == alert_uuid.as_str()
    })
    .await;
    assert_eq!(ingest_line["request_id"], gateway_request_id.as_str(), "{ingest_line}");
    let root = |v: &Value| {
        v.as_str()
            .and_then(calseta::queue::correlation::trace_id)
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no trace header in {v}"))
    };
    let trace_root = root(&ingest_line["xrayTraceId"]);
    let delivered = wait_log(&data_dir, |l| {
        l["message"] == "agent webhook delivered" && l["alert_uuid"] == alert_uuid.as_str()
    })
    .await;
    assert_eq!(delivered["trace_id"], trace_root.as_str(), "{delivered}");
    assert_ne!(
        root(&delivered["xrayTraceId"]),
        trace_root,
        "carried, not the local trace"
    );
    assert_eq!(delivered["request_id"], gateway_request_id.as_str(), "{delivered}");
    assert_eq!(delivered["status"], 200, "status is a number: {delivered}");
    assert_eq!(delivered["level"], "INFO");
    println!("example trace-carrying log line: {delivered}");
    let enriched = wait_log(&data_dir, |l| {
        l["message"] == "alert enrichment completed; dispatch queued" && l["alert_uuid"] == alert_uuid.as_str()
    })
    .await;
    assert_eq!(enriched["trace_id"], trace_root.as_str(), "{enriched}");
    assert_ne!(
        root(&enriched["xrayTraceId"]),
        trace_root,
        "carried, not the local trace"
    );
    assert_eq!(enriched["request_id"], gateway_request_id.as_str(), "{enriched}");

    // A whole request refused (bad key) is counted by reason.
    let refused = stack
        .invoker
        .invoke(
            "ingest",
            &http_event("POST", "/v1/ingest/generic", "cak_wrong", Some(&json!({"title": "x"}))),
        )
        .await
        .unwrap();
    assert_eq!(refused["statusCode"], 401, "{refused}");

    // The functions printed CloudWatch EMF lines (their stdout is the log stream).
    let emf = wait_emf(
        &data_dir,
        &[
            "AlertsIngested",
            "Deliveries",
            "OutboxBacklog",
            "IngestToDeliveredLatency",
            "IngestRequestsRejected",
        ],
    )
    .await;
    let find = |metric: &str| emf.iter().find(|d| d.get(metric).is_some()).cloned().unwrap();
    let ingested_doc = find("AlertsIngested");
    assert_eq!(ingested_doc["source"], "generic", "{ingested_doc}");
    assert_eq!(
        ingested_doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["service", "source"]])
    );
    assert!(emf
        .iter()
        .any(|d| d.get("Deliveries").is_some() && d["outcome"] == "delivered"));
    assert!(find("OutboxBacklog")["OutboxOldestAge"].is_number());
    let latency = find("IngestToDeliveredLatency");
    assert_eq!(latency["service"], "dispatch", "{latency}");
    assert_eq!(
        latency["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
        "Milliseconds"
    );
    assert!(
        latency["IngestToDeliveredLatency"].as_f64().is_some_and(|v| v > 0.0),
        "{latency}"
    );
    let rejected = find("IngestRequestsRejected");
    assert_eq!(rejected["reason"], "auth", "{rejected}");
    assert_eq!(
        rejected["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["service", "reason"]])
    );
    println!("example EMF line: {ingested_doc}");

    // A poison message is taken off the queue (parked), not retried forever.
    let sqs = stack.sqs();
    sqs.send_message()
        .queue_url(&stack.dispatch_queue)
        .message_body("{not json")
        .send()
        .await
        .unwrap();
    let (db, conn) = tokio_postgres::connect(&stack.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let parked: i64 = db
            .query_one("SELECT count(*) FROM parked_messages WHERE body = '{not json'", &[])
            .await
            .unwrap()
            .get(0);
        if parked == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "poison message was not parked");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A message the enrich function fails every time (it cannot be parked either: a constraint
    // refuses it) ends in the enrich DLQ after maxReceiveCount receives, through the real
    // function and event-source mapping.
    db.batch_execute("ALTER TABLE parked_messages ADD CONSTRAINT e2e_no_poison CHECK (body NOT LIKE '%e2e-poison%')")
        .await
        .unwrap();
    sqs.send_message()
        .queue_url(&stack.enrich_queue)
        .message_body("{e2e-poison")
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&stack.enrich_dlq)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if out.messages().iter().any(|m| m.body() == Some("{e2e-poison")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the poison message did not reach the enrich DLQ"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    db.batch_execute("ALTER TABLE parked_messages DROP CONSTRAINT e2e_no_poison")
        .await
        .unwrap();

    // Kill the dispatch function in the middle of a batch: the agent holds the delivery while
    // we SIGKILL the process; the batch returns to the queue and is delivered after restart.
    agent.slow.lock().unwrap().push("Lambda e2e crash".into());
    let ingested = stack
        .invoker
        .invoke(
            "ingest",
            &http_event(
                "POST",
                "/v1/ingest/generic",
                &key,
                Some(&json!({"title": "Lambda e2e crash", "severity": "high", "source_alert_id": "e2e-2"})),
            ),
        )
        .await
        .unwrap();
    assert_eq!(ingested["statusCode"], 202, "{ingested}");
    wait_for("the slow delivery to start", Duration::from_secs(120), || {
        agent
            .hits
            .lock()
            .unwrap()
            .iter()
            .any(|(_, _, p)| p["alert"]["title"] == "Lambda e2e crash")
    })
    .await;
    let pid = function_pid("dispatch").expect("dispatch process");
    let others: Vec<Option<u32>> = ["ingest", "enrich", "sweep"].iter().map(|f| function_pid(f)).collect();
    // SIGKILL to the dispatch function's process only.
    // SAFETY: signalling a process this test's stack started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_for("the dispatch process to die", Duration::from_secs(10), || {
        function_pid("dispatch") != Some(pid)
    })
    .await;
    // cargo lambda watch (1.9) neither restarts a function whose process died nor fails the
    // invocations routed to it (they hang), so the stack plays AWS replacing the dead execution
    // environment: a fresh emulator, functions cold. The fault itself was one process's death.
    let others_alive =
        others.iter().all(Option::is_some) && ["ingest", "enrich", "sweep"].iter().all(|f| function_pid(f).is_some());
    assert!(others_alive, "only the dispatch process was killed");
    stack.crash_functions().await.expect("restart the emulator");
    agent.slow.lock().unwrap().clear();
    wait_for("redelivery after the crash", Duration::from_secs(180), || {
        agent
            .signed_titles()
            .iter()
            .filter(|t| *t == "Lambda e2e crash")
            .count()
            >= 2
    })
    .await;
    assert_ne!(function_pid("dispatch"), Some(pid), "a new dispatch process took over");
    // Nothing lost, nothing doubled: every webhook id the agent acknowledged is distinct, and
    // the crash alert has exactly one delivery, delivered.
    let delivered: i64 = db
        .query_one(
            "SELECT count(*) FROM deliveries d JOIN alerts a ON a.id = d.alert_id
             WHERE a.title = 'Lambda e2e crash' AND d.status = 'delivered'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(delivered, 1);
    let ids: std::collections::HashSet<String> = agent
        .hits
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, p)| p["alert"]["title"] == "Lambda e2e crash")
        .map(|(id, _, _)| id.clone())
        .collect();
    assert_eq!(ids.len(), 1, "the redelivery is the same webhook (one id): {ids:?}");

    // Warm invocations and memory, per function.
    let empty_batch = json!({"Records": []});
    let health = http_event("GET", "/health", &key, None);
    let mut report = Vec::new();
    for (f, event) in [
        ("ingest", health.clone()),
        ("api", health),
        ("enrich", empty_batch.clone()),
        ("dispatch", empty_batch),
        ("sweep", lambda_local::schedule_event()),
    ] {
        let p50 = warm_p50(&stack, f, &event).await;
        let pid = function_pid(f);
        report.push(format!(
            "{f:<9} cold(start→first handled) {:>7} ms  warm p50 {:>6.1} ms  peak RSS {:>6} KiB",
            m.cold
                .get(f)
                .map(|s| format!("{:.0}", s * 1000.0))
                .unwrap_or_else(|| "?".into()),
            p50.as_secs_f64() * 1000.0,
            pid.and_then(peak_rss_kib)
                .map(|k| k.to_string())
                .unwrap_or_else(|| "?".into()),
        ));
    }
    if let Some(age) = m.cold.get("migrate") {
        report.push(format!(
            "migrate   start→CloudFormation answer ≤ {:.0} ms (process age at check)",
            age * 1000.0
        ));
    }
    println!("lambda-local per function (debug build):\n{}", report.join("\n"));
    assert!(
        agent.hits.lock().unwrap().iter().all(|(_, ok, _)| *ok),
        "every delivery was signed"
    );
    stack.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}
