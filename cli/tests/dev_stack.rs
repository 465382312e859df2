//! Black-box test of the README's run command: `calseta dev` starts, answers `/health`, and on
//! SIGINT stops cleanly without leaving a postgres process behind.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
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

#[test]
fn dev_starts_serves_health_and_stops_its_postgres() {
    let dir = std::env::temp_dir().join(format!("calseta-dev-test-{}", std::process::id()));
    let admin_key = "cai_TESTTESTTESTTESTTESTTESTTESTTESTTESTTESTTES";
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_calseta"))
        .args(["dev", "--port", "0", "--admin-key", admin_key, "--data-dir"])
        .arg(&dir)
        .env_remove("DATABASE_URL")
        .env_remove("SQS_ENDPOINT_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn calseta dev");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ready = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("calseta dev ready") => break line,
            Ok(_) => continue,
            Err(e) => {
                let _ = child.kill();
                panic!("no ready line within 30 s: {e}");
            }
        }
    };
    let ready_after = started.elapsed();
    eprintln!("ready after {ready_after:?}: {ready}");
    assert!(ready_after < Duration::from_secs(30));
    // A supplied admin key is used, never echoed.
    let url = ready
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("api url in ready line")
        .to_owned();
    let health: serde_json::Value = reqwest::blocking::get(format!("{url}/health"))
        .expect("GET /health")
        .json()
        .expect("json");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["database"], "ok");
    assert_eq!(health["queue_backend"], "in-process");
    // With no API keys set, the provider simulator stands in for every provider.
    assert!(ready.contains("providers simulated"), "{ready}");
    for p in ["virustotal", "abuseipdb", "greynoise", "okta", "entra"] {
        assert_eq!(health["enrichment_providers"][p], "configured", "{health}");
    }

    // The pipeline runs: an ingested alert's indicator gets enriched by the enrich consumers,
    // after which an on-demand lookup of the same value is a cache hit.
    let http = reqwest::blocking::Client::new();
    let r = http
        .post(format!("{url}/v1/ingest/generic"))
        .bearer_auth(admin_key)
        .json(&serde_json::json!({"title": "dev smoke", "source_alert_id": "dev-1", "ip": "185.220.101.47"}))
        .send()
        .expect("ingest");
    assert_eq!(r.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body: serde_json::Value = http
            .post(format!("{url}/v1/enrichments"))
            .bearer_auth(admin_key)
            .json(&serde_json::json!({"type": "ip", "value": "185.220.101.47"}))
            .send()
            .expect("enrich")
            .json()
            .expect("json");
        let vt = &body["data"]["results"]["virustotal"];
        if vt["cache_hit"] == true {
            assert_eq!(vt["extracted"]["malice"], "Malicious", "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the alert was not enriched within 20 s: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let pg_pids = processes_mentioning(&data_dir_name(&dir));
    assert!(!pg_pids.is_empty(), "embedded postgres should be running");

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "calseta dev did not stop within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.iter().any(|l| l == "calseta dev stopped"), "{rest:?}");
    assert!(!rest
        .iter()
        .chain(std::iter::once(&ready))
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_calseta"))
        .args(["dev", "--port", "0", "--admin-key", admin_key, "--data-dir"])
        .arg(&dir)
        .env_remove("DATABASE_URL")
        .env("SQS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn calseta dev");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ready = loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.starts_with("calseta dev ready") => break line,
            Ok(_) => continue,
            Err(e) => {
                let _ = child.kill();
                panic!("no ready line: {e}");
            }
        }
    };
    assert!(ready.contains("queues sqs"), "{ready}");
    let url = ready
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("api url")
        .to_owned();
    let http = reqwest::blocking::Client::new();
    let r = http
        .post(format!("{url}/v1/ingest/generic"))
        .bearer_auth(admin_key)
        .json(&serde_json::json!({"title": "sqs smoke", "source_alert_id": "sqs-1", "domain": "evil-login-portal.com"}))
        .send()
        .expect("ingest");
    assert_eq!(r.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    let outcome = loop {
        let body: serde_json::Value = http
            .post(format!("{url}/v1/enrichments"))
            .bearer_auth(admin_key)
            .json(&serde_json::json!({"type": "domain", "value": "evil-login-portal.com"}))
            .send()
            .expect("enrich")
            .json()
            .expect("json");
        if body["data"]["results"]["virustotal"]["cache_hit"] == true {
            break Ok(());
        }
        if Instant::now() > deadline {
            break Err(body);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let stopped = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > stopped {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(body) = outcome {
        panic!("the alert was not enriched through SQS within 30 s: {body}");
    }
}
