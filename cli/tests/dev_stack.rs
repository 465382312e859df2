//! Black-box test of the README's run command: `calseta dev` starts, answers `/health`, and on
//! SIGINT stops cleanly without leaving a postgres process behind.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// Pids of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) {
                pids.push(pid);
            }
        }
    }
    pids
}

fn data_dir_name(dir: &Path) -> String {
    dir.join("pg").to_string_lossy().into_owned()
}

/// A running `calseta dev`: the child, its ready line, API URL and the rest of its stdout.
struct Dev {
    child: Child,
    ready: String,
    url: String,
    lines: mpsc::Receiver<String>,
}

/// Starts `calseta dev` on a free port with a throwaway cluster in `dir`, and waits up to
/// `wait` for its ready line.
fn start_dev(dir: &Path, admin_key: &str, env: &[(&str, &str)], wait: Duration) -> Dev {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_calseta"));
    cmd.args([
        "dev",
        "--port",
        "0",
        "--mcp-port",
        "0",
        "--admin-key",
        admin_key,
        "--data-dir",
    ])
    .arg(dir)
    .env_remove("DATABASE_URL")
    .env_remove("SQS_ENDPOINT_URL")
    .env("RUST_LOG", "warn")
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn calseta dev");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ready = loop {
        match lines.recv_timeout(wait) {
            Ok(line) if line.starts_with("calseta dev ready") => break line,
            Ok(_) => continue,
            Err(e) => {
                let _ = child.kill();
                panic!("no ready line within {wait:?}: {e}");
            }
        }
    };
    let url = ready
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("api url in ready line")
        .to_owned();
    Dev {
        child,
        ready,
        url,
        lines,
    }
}

impl Dev {
    /// Ingests a generic alert, then asks for `kind`/`value` on demand until the answer comes
    /// from the cache the enrich consumers filled. Returns that answer, or the last one after
    /// `within`.
    fn ingest_until_cached(
        &self,
        admin_key: &str,
        alert: serde_json::Value,
        kind: &str,
        value: &str,
        within: Duration,
    ) -> Result<serde_json::Value, serde_json::Value> {
        let http = reqwest::blocking::Client::new();
        let r = http
            .post(format!("{}/v1/ingest/generic", self.url))
            .bearer_auth(admin_key)
            .json(&alert)
            .send()
            .expect("ingest");
        assert_eq!(r.status(), 202);
        let deadline = Instant::now() + within;
        loop {
            let body: serde_json::Value = http
                .post(format!("{}/v1/enrichments", self.url))
                .bearer_auth(admin_key)
                .json(&serde_json::json!({"type": kind, "value": value}))
                .send()
                .expect("enrich")
                .json()
                .expect("json");
            if body["data"]["results"]["virustotal"]["cache_hit"] == true {
                return Ok(body);
            }
            if Instant::now() > deadline {
                return Err(body);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `calseta demo` against this stack; returns its stdout and the payloads it wrote.
    fn demo(&self, admin_key: &str, out: &Path) -> (String, Vec<serde_json::Value>) {
        let output = Command::new(env!("CARGO_BIN_EXE_calseta"))
            .args([
                "demo",
                "--url",
                &self.url,
                "--admin-key",
                admin_key,
                "--wait",
                "60",
                "--out",
            ])
            .arg(out)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run calseta demo");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "calseta demo failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let payloads = std::fs::read_dir(out)
            .expect("demo output folder")
            .flatten()
            .map(|e| serde_json::from_slice(&std::fs::read(e.path()).expect("read")).expect("payload json"))
            .collect();
        (stdout, payloads)
    }

    /// SIGINT, then up to 20 s for the exit; `None` (and a kill) if it did not stop.
    fn stop(&mut self) -> Option<ExitStatus> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn dev_starts_serves_health_and_stops_its_postgres() {
    let dir = std::env::temp_dir().join(format!("calseta-dev-test-{}", std::process::id()));
    let admin_key = "cai_TESTTESTTESTTESTTESTTESTTESTTESTTESTTESTTES";
    let started = Instant::now();
    let mut dev = start_dev(&dir, admin_key, &[], Duration::from_secs(30));
    let ready_after = started.elapsed();
    eprintln!("ready after {ready_after:?}: {}", dev.ready);
    assert!(ready_after < Duration::from_secs(30));
    // A supplied admin key is used, never echoed.
    let health: serde_json::Value = reqwest::blocking::get(format!("{}/health", dev.url))
        .expect("GET /health")
        .json()
        .expect("json");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["database"], "ok");
    assert_eq!(health["queue_backend"], "in-process");
    // With no API keys set, the provider simulator stands in for every provider.
    assert!(dev.ready.contains("providers simulated"), "{}", dev.ready);
    for p in ["virustotal", "abuseipdb", "greynoise", "okta", "entra"] {
        assert_eq!(health["enrichment_providers"][p], "configured", "{health}");
    }

    // The pipeline runs: an ingested alert's indicator gets enriched by the enrich consumers,
    // after which an on-demand lookup of the same value is a cache hit.
    let body = dev
        .ingest_until_cached(
            admin_key,
            serde_json::json!({"title": "dev smoke", "source_alert_id": "dev-1", "ip": "185.220.101.47"}),
            "ip",
            "185.220.101.47",
            Duration::from_secs(20),
        )
        .unwrap_or_else(|body| panic!("the alert was not enriched within 20 s: {body}"));
    assert_eq!(
        body["data"]["results"]["virustotal"]["extracted"]["malice"], "Malicious",
        "{body}"
    );

    // The demo: the demo alerts reach a (demo) agent as signed webhooks with the demo library.
    assert!(dev.ready.contains("calseta dev ready"));
    let (stdout, payloads) = dev.demo(admin_key, &dir.join("demo"));
    assert!(stdout.contains("5 alerts from 4 demo SIEM payloads"), "{stdout}");
    assert!(stdout.contains("signatures verified"), "{stdout}");
    assert_eq!(payloads.len(), 5);
    for p in &payloads {
        assert_eq!(p["event"], "alert.enriched");
        let docs: Vec<&str> = p["context_documents"]
            .as_array()
            .expect("documents")
            .iter()
            .filter_map(|d| d["title"].as_str())
            .collect();
        assert!(docs.contains(&"Company Incident Response Plan (demo)"), "{docs:?}");
        assert!(
            p["detection_rule"]["documentation"]
                .as_str()
                .is_some_and(|d| d.contains("(demo)")),
            "{p}"
        );
        assert!(p["detection_rule"]["false_positive_tags"].is_array());
        assert!(!p["workflows"].as_array().expect("workflows").is_empty());
    }
    // The later impossible-travel alert lists the earlier one (same account) in past_alerts.
    let later = payloads
        .iter()
        .find(|p| p["alert"]["source_alert_id"] == "c7a9e4d2-3b6f-4a10-8e25-9f1d0b2c4e17")
        .expect("the later elastic demo alert");
    assert!(later["context_documents"]
        .as_array()
        .expect("documents")
        .iter()
        .any(|d| d["title"] == "Account Compromise Runbook (demo)"));
    let past = later["past_alerts"].as_array().expect("past alerts");
    assert_eq!(past.len(), 1, "{past:?}");
    assert!(past[0]["indicators"]
        .as_array()
        .expect("shared")
        .iter()
        .any(|i| i == "nick.hathaway@calseta.com"));
    assert_eq!(later["alert"]["malice"], "Malicious", "the TOR exit node");

    let pg_pids = processes_mentioning(&data_dir_name(&dir));
    assert!(!pg_pids.is_empty(), "embedded postgres should be running");

    let status = dev.stop().expect("calseta dev did not stop within 20 s");
    assert!(status.success(), "exit status {status}");
    let rest: Vec<String> = dev.lines.try_iter().collect();
    assert!(rest.iter().any(|l| l == "calseta dev stopped"), "{rest:?}");
    assert!(!rest
        .iter()
        .chain(std::iter::once(&dev.ready))
        .any(|l| l.contains(admin_key)));
    assert!(
        processes_mentioning(&data_dir_name(&dir)).is_empty(),
        "postgres left running"
    );
    assert!(!dir.join("pg").exists(), "throwaway cluster removed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same stack on a real SQS API (moto): the enrich consumers long-poll SQS as Lambda's event
/// source would, and the alert still gets enriched.
#[test]
fn dev_on_sqs_enriches_through_the_queue() {
    let endpoint = calseta::testing::moto_endpoint();
    let dir = std::env::temp_dir().join(format!("calseta-dev-sqs-test-{}", std::process::id()));
    let admin_key = "cai_SQSTESTSQSTESTSQSTESTSQSTESTSQSTESTSQSTESTX";
    let mut dev = start_dev(
        &dir,
        admin_key,
        &[
            ("SQS_ENDPOINT_URL", endpoint),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
        Duration::from_secs(60),
    );
    assert!(dev.ready.contains("queues sqs"), "{}", dev.ready);
    let outcome = dev.ingest_until_cached(
        admin_key,
        serde_json::json!({"title": "sqs smoke", "source_alert_id": "sqs-1", "domain": "evil-login-portal.com"}),
        "domain",
        "evil-login-portal.com",
        Duration::from_secs(30),
    );
    // Dispatch runs through SQS as well: the demo's payloads arrive.
    let demo = outcome.is_ok().then(|| dev.demo(admin_key, &dir.join("demo")));
    let _ = dev.stop();
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(body) = outcome {
        panic!("the alert was not enriched through SQS within 30 s: {body}");
    }
    let (_, payloads) = demo.expect("demo ran");
    assert_eq!(payloads.len(), 5);
}
