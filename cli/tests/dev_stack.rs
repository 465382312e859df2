//! Black-box test of the README's run command: `calseta dev` starts, answers `/health`, and on
//! SIGINT stops cleanly without leaving a postgres process behind.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

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

/// A running `calseta dev`: the child, its ready line, API URL and the rest of its output.
struct Dev {
    child: Child,
    ready: String,
    url: String,
    lines: mpsc::Receiver<String>,
}

/// Starts `calseta dev` on a free port with a throwaway cluster in `dir`, and waits up to
/// `wait` for its ready line.
fn start_dev(dir: &Path, admin_key: &str, env: &[(&str, &str)], wait: Duration) -> Dev {
    start_dev_with(dir, &["--admin-key", admin_key], env, wait)
}

/// [`start_dev`] with other arguments for the admin key.
fn start_dev_with(dir: &Path, key_args: &[&str], env: &[(&str, &str)], wait: Duration) -> Dev {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_calseta"));
    cmd.args(["dev", "--port", "0", "--mcp-port", "0"])
        .args(key_args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("DATABASE_URL")
        .env_remove("SQS_ENDPOINT_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn calseta dev");
    // Its logs (stderr) join stdout, so the secret checks below see both.
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = mpsc::channel();
    let tx_err = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            let _ = tx_err.send(line);
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
        let http = {
            calseta::net::tls::install_crypto_provider();
            reqwest::blocking::Client::new()
        };
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
    calseta::net::tls::install_crypto_provider();
    let health: serde_json::Value = reqwest::blocking::get(format!("{}/health", dev.url))
        .expect("GET /health")
        .json()
        .expect("json");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["database"], "ok");
    assert_eq!(health["queue_backend"], "local (postgres)", "durable local queues");
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

/// The embedded cluster's TCP port, from the ready line.
fn embedded_pg_port(ready: &str) -> u16 {
    ready
        .split("embedded postgres on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no embedded postgres port in {ready}"))
}

/// `psql -c 'select 1'` as the superuser without a password prompt; its stderr when refused.
fn psql(host: &str, port: u16, password: Option<&str>) -> Result<(), String> {
    let mut cmd = Command::new("psql");
    cmd.args([
        "-w",
        "-X",
        "-h",
        host,
        "-p",
        &port.to_string(),
        "-U",
        "calseta",
        "-d",
        "postgres",
        "-c",
        "select 1",
    ])
    .env_remove("PGPASSWORD")
    .env_remove("PGPASSFILE")
    .env("PGCONNECT_TIMEOUT", "5");
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd.output().expect("run psql (PostgreSQL client on PATH)");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// Issue #17 (defects 3 and 5): the embedded cluster refuses connections without its random
/// password (TCP and the socket), keeps socket and password private, a second start on the same
/// folder refuses instead of deleting the running cluster's data, and `kill -9` of the stack
/// takes the cluster with it.
#[test]
fn embedded_postgres_is_private_and_dies_with_the_stack() {
    let dir = std::env::temp_dir().join(format!("calseta-dev-private-test-{}", std::process::id()));
    let admin_key = "cai_PRIVPRIVPRIVPRIVPRIVPRIVPRIVPRIVPRIVPRIVPRI";
    let mut dev = start_dev(&dir, admin_key, &[("CALSETA_NO_DEMO", "1")], Duration::from_secs(30));
    let port = embedded_pg_port(&dev.ready);
    let root = dir.join("pg");

    let refused = psql("127.0.0.1", port, None).expect_err("a passwordless TCP connection must be refused");
    assert!(refused.contains("password"), "{refused}");
    let refused = psql("127.0.0.1", port, Some("not-the-password")).expect_err("a wrong password must be refused");
    assert!(refused.contains("password authentication failed"), "{refused}");
    let socket = root.to_string_lossy().into_owned();
    let refused = psql(&socket, port, None).expect_err("a passwordless socket connection must be refused");
    assert!(refused.contains("password"), "{refused}");
    assert_eq!(mode(&root), 0o700, "the socket folder is private");
    assert_eq!(mode(&root.join("superuser.password")), 0o600);
    let password = std::fs::read_to_string(root.join("superuser.password")).expect("password file");
    psql("127.0.0.1", port, Some(password.trim())).expect("the cluster's own password works");
    assert!(!dev.ready.contains(password.trim()), "the password is never printed");

    // A second stack on the same folder must not wipe the running cluster.
    let second = Command::new(env!("CARGO_BIN_EXE_calseta"))
        .args([
            "dev",
            "--port",
            "0",
            "--no-demo",
            "--admin-key",
            admin_key,
            "--data-dir",
        ])
        .arg(&dir)
        .env_remove("DATABASE_URL")
        .env_remove("CALSETA_ADMIN_KEY")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run a second calseta dev");
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("still runs on"), "{stderr}");
    assert!(stderr.contains("warning: --admin-key is visible"), "{stderr}");
    assert!(
        root.join("data/PG_VERSION").exists(),
        "the running cluster's data was kept"
    );
    calseta::net::tls::install_crypto_provider();
    let health: serde_json::Value = reqwest::blocking::get(format!("{}/health", dev.url))
        .expect("GET /health")
        .json()
        .expect("json");
    assert_eq!(health["database"], "ok", "{health}");

    // kill -9: nobody runs the orderly shutdown, the cluster must still go.
    dev.child.kill().expect("SIGKILL calseta dev");
    let _ = dev.child.wait();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !processes_mentioning(&data_dir_name(&dir)).is_empty() {
        assert!(
            Instant::now() < deadline,
            "postgres left running after kill -9 of calseta dev"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // And the folder is usable again by the next start.
    let mut again = start_dev(&dir, admin_key, &[("CALSETA_NO_DEMO", "1")], Duration::from_secs(30));
    let status = again.stop().expect("calseta dev did not stop within 20 s");
    assert!(status.success(), "exit status {status}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A loopback webhook receiver answering 200; sends each request's head (lower-cased) on.
fn receiver() -> (u16, mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // The head is enough: the test looks at the auth header only.
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send(String::from_utf8_lossy(&buf).to_lowercase());
        }
    });
    (port, rx)
}

/// Issue #17 (defect 4, secrets): against a persistent `DATABASE_URL`, a restart keeps the
/// key-hashing and encryption secrets (0600 file in the data folder), so the bootstrap admin key
/// (given by file, not argv) is accepted again, an API key created before still works, and an
/// agent's encrypted auth header is still decrypted and sent.
#[test]
fn restart_on_a_persistent_database_keeps_api_keys_working() {
    let dir = std::env::temp_dir().join(format!("calseta-dev-persist-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let pg = calseta::db::embedded::EmbeddedPostgres::start(&calseta::db::embedded::EmbeddedOptions {
        root: dir.join("server"),
        port: None,
        remove_on_stop: true,
    })
    .expect("a persistent test server");
    let created = Command::new("psql")
        .args(["-w", "-X", &pg.url("postgres"), "-c", "CREATE DATABASE persist"])
        .output()
        .expect("psql");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let url = pg.url("persist");
    let admin_key = "cai_KEEPKEEPKEEPKEEPKEEPKEEPKEEPKEEPKEEPKEEPKEE";
    let key_file = dir.join("admin.key");
    std::fs::write(&key_file, format!("{admin_key}\n")).expect("key file");
    let key_file = key_file.to_string_lossy().into_owned();
    let state = dir.join("state");
    let env = [("DATABASE_URL", url.as_str()), ("CALSETA_NO_DEMO", "1")];
    let http = {
        calseta::net::tls::install_crypto_provider();
        reqwest::blocking::Client::new()
    };

    let mut dev = start_dev_with(&state, &["--admin-key-file", &key_file], &env, Duration::from_secs(30));
    let r = http
        .post(format!("{}/v1/api-keys", dev.url))
        .bearer_auth(admin_key)
        .json(&serde_json::json!({"name": "survives restarts", "scopes": ["alerts:read"]}))
        .send()
        .expect("create key");
    assert_eq!(r.status(), 201);
    let body: serde_json::Value = r.json().expect("json");
    let reader = body["data"]["key"].as_str().expect("the new key").to_owned();
    let status = |dev: &Dev, key: &str, path: &str| {
        http.get(format!("{}{path}", dev.url))
            .bearer_auth(key)
            .send()
            .expect("request")
            .status()
    };
    assert_eq!(status(&dev, &reader, "/v1/alerts"), 200);
    let (hook_port, hooks) = receiver();
    let r = http
        .post(format!("{}/v1/agents", dev.url))
        .bearer_auth(admin_key)
        .json(&serde_json::json!({
            "name": "survives restarts",
            "endpoint_url": format!("http://127.0.0.1:{hook_port}/hook"),
            "auth_header_name": "X-Agent-Token",
            "auth_header_value": "agent-secret-kept",
        }))
        .send()
        .expect("create agent");
    let agent: serde_json::Value = r.json().expect("json");
    let agent_uuid = agent["data"]["uuid"]
        .as_str()
        .unwrap_or_else(|| panic!("{agent}"))
        .to_owned();
    assert!(dev.stop().expect("stopped").success());
    let files: Vec<_> = std::fs::read_dir(state.join("secrets"))
        .expect("secrets folder")
        .flatten()
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(mode(&files[0].path()), 0o600);
    assert_eq!(mode(&state.join("secrets")), 0o700);
    let text = std::fs::read_to_string(files[0].path()).expect("read");
    assert!(
        !text.contains(url.split(['@', ':']).nth(2).unwrap_or("?")),
        "no database password stored"
    );

    // Same database, same bootstrap key: it starts, and every key still authenticates.
    let mut dev = start_dev_with(&state, &["--admin-key-file", &key_file], &env, Duration::from_secs(30));
    assert_eq!(
        status(&dev, &reader, "/v1/alerts"),
        200,
        "a key created before the restart"
    );
    assert_eq!(status(&dev, admin_key, "/v1/api-keys"), 200, "the bootstrap admin key");
    assert_eq!(
        status(&dev, "cai_NOPENOPENOPENOPENOPENOPENOPENOPENOPENOPENOP", "/v1/alerts"),
        401
    );
    let r = http
        .post(format!("{}/v1/agents/{agent_uuid}/test", dev.url))
        .bearer_auth(admin_key)
        .send()
        .expect("test agent");
    let test_status = r.status();
    let body = r.text().unwrap_or_default();
    assert_eq!(test_status, 200, "{body}");
    let head = hooks
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("no test webhook: {body}"));
    assert!(head.contains("x-agent-token: agent-secret-kept"), "{head}");
    assert!(dev.stop().expect("stopped").success());
    drop(pg);
    let _ = std::fs::remove_dir_all(&dir);
}
