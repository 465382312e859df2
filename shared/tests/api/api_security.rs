//! API-layer security lows (issue #17 item 7, #16 item 8), black-box over HTTP: a target's
//! response body is not echoed to non-admins, credentials in an agent's URL are masked in every
//! response (and still used for delivery), bad path bytes get the JSON envelope, and a refused
//! local agent URL says how to allow it.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::sync::{Arc, Mutex};

use calseta::testing::{call, TestApp};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::json;

/// A local agent that answers 500 with a revealing body and records the request URIs it got.
async fn leaky_agent() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push(uri.to_string());
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "PostgreSQL 15.4 banner: internal-secret-page of the probed port",
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn a_targets_response_body_reaches_only_admins() {
    let app = TestApp::start().await;
    let admin = app.admin_key.clone();
    let writer = app
        .create_key("writer", &["agents:write", "agents:read"], None, None)
        .await;
    let (base, _) = leaky_agent().await;
    let (st, v) = call(
        &app,
        &writer,
        Method::POST,
        "/v1/agents",
        Some(json!({"name": "probe", "endpoint_url": format!("{base}/hook")})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let agent = v["data"]["uuid"].as_str().unwrap().to_string();
    let test = format!("/v1/agents/{agent}/test");

    let (st, v) = call(&app, &writer, Method::POST, &test, None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["status_code"], json!(500));
    assert_eq!(v["data"]["error"], json!("HTTP 500"), "{v}");
    let (_, v) = call(&app, &admin, Method::POST, &test, None).await;
    let excerpt = v["data"]["error"].as_str().unwrap();
    assert!(
        excerpt.contains("internal-secret-page") && excerpt.chars().count() <= 121,
        "{v}"
    );

    // A recorded delivery error: the same rule.
    let (_, a) = call(
        &app,
        &admin,
        Method::POST,
        "/v1/ingest/generic",
        Some(json!({"title": "t"})),
    )
    .await;
    let alert = a["data"]["alert_uuid"].as_str().unwrap().to_string();
    let c = app.db.pool.get().await.unwrap();
    c.execute(
        "INSERT INTO deliveries (alert_id, agent_id, status, attempts, last_status_code, last_error)
         SELECT a.id, g.id, 'dead', 4, 500, 'HTTP 500: PostgreSQL 15.4 banner: internal-secret-page'
         FROM alerts a, agents g WHERE a.uuid = $1::text::uuid AND g.uuid = $2::text::uuid",
        &[&alert, &agent],
    )
    .await
    .unwrap();
    let deliveries = format!("/v1/agents/{agent}/deliveries");
    let (st, v) = call(&app, &writer, Method::GET, &deliveries, None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"][0]["last_error"], json!("HTTP 500"), "{v}");
    let (_, v) = call(&app, &admin, Method::GET, &deliveries, None).await;
    assert!(v["data"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("internal-secret-page"));
}

#[tokio::test]
async fn credentials_in_an_endpoint_url_are_masked_but_still_delivered() {
    let app = TestApp::start().await;
    let reader = app.create_key("reader", &["agents:read"], None, None).await;
    let (base, seen) = leaky_agent().await;
    let port = base.rsplit(':').next().unwrap().to_string();
    let url = format!(
        "http://hookuser:hunter2pass@127.0.0.1:{port}/hook?Token=tok3n-value&sig=sigvalue42&api_key=k3yvalue&region=eu"
    );
    let (st, v) = call(
        &app,
        &app.admin_key,
        Method::POST,
        "/v1/agents",
        Some(json!({"name": "masked", "endpoint_url": url})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let agent = v["data"]["uuid"].as_str().unwrap().to_string();
    let (_, one) = call(&app, &reader, Method::GET, &format!("/v1/agents/{agent}"), None).await;
    let (_, list) = call(&app, &reader, Method::GET, "/v1/agents", None).await;
    let (_, patched) = call(
        &app,
        &app.admin_key,
        Method::PATCH,
        &format!("/v1/agents/{agent}"),
        Some(json!({"description": "d"})),
    )
    .await;
    for body in [&v, &one, &list, &patched] {
        let text = body.to_string();
        for secret in ["hunter2pass", "hookuser", "tok3n-value", "sigvalue42", "k3yvalue"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    let shown = one["data"]["endpoint_url"].as_str().unwrap();
    assert!(shown.contains("region=eu") && shown.contains("Token=***"), "{shown}");
    // Sending the masked URL back (a whole-object PATCH) leaves the stored one unchanged.
    let (st, v) = call(
        &app,
        &app.admin_key,
        Method::PATCH,
        &format!("/v1/agents/{agent}"),
        Some(json!({"endpoint_url": shown, "name": "masked again"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    // The stored URL still carries them: the agent receives the token.
    let (st, _) = call(
        &app,
        &app.admin_key,
        Method::POST,
        &format!("/v1/agents/{agent}/test"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let got = seen.lock().unwrap().clone();
    assert!(got.iter().any(|u| u.contains("Token=tok3n-value")), "{got:?}");
}

#[tokio::test]
async fn bad_path_bytes_and_queries_get_the_json_envelope() {
    let app = TestApp::start().await;
    for path in ["/v1/alerts/%FF", "/v1/agents/%C3%28/deliveries", "/v1/api-keys/%FF%FE"] {
        let r = app
            .http
            .get(app.url(path))
            .bearer_auth(&app.admin_key)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        assert!(status == 400 || status == 404, "{path}: {status}");
        assert!(ct.starts_with("application/json"), "{path}: {ct}");
        assert!(
            v["error"]["code"].is_string() && v["error"]["message"].is_string(),
            "{path}: {v}"
        );
    }
}

#[tokio::test]
async fn a_refused_local_agent_url_says_how_to_allow_it() {
    let app = TestApp::start().await;
    let (st, v) = call(
        &app,
        &app.admin_key,
        Method::POST,
        "/v1/agents",
        Some(json!({"name": "local", "endpoint_url": "http://host.docker.internal:9000/webhook"})),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("CALSETA_OUTBOUND_ALLOW_HOSTS") && msg.contains("docs/receiving-webhooks.md"),
        "{msg}"
    );
}

/// A well-formed key that is not `key` but shares its 8-character lookup prefix.
fn same_prefix_wrong(key: &str, n: usize) -> String {
    let tail: String = format!("{n:0>39}");
    format!("{}{tail}", &key[..8])
}

#[tokio::test]
async fn failed_authentication_is_limited_per_key_prefix_without_slowing_the_real_key() {
    let app = TestApp::start().await;
    let limit = calseta::api::auth::FAILED_AUTH_PER_MINUTE as usize;
    for n in 0..limit {
        let (st, _) = call(
            &app,
            &same_prefix_wrong(&app.admin_key, n),
            Method::GET,
            "/v1/alerts",
            None,
        )
        .await;
        assert_eq!(st, 401, "attempt {n}");
    }
    let r = app
        .http
        .get(app.url("/v1/alerts"))
        .bearer_auth(same_prefix_wrong(&app.admin_key, 999))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], json!("RATE_LIMITED"));
    // The real key with that prefix keeps working, on REST and ingest.
    assert_eq!(call(&app, &app.admin_key, Method::GET, "/v1/alerts", None).await.0, 200);
    let (st, v) = call(
        &app,
        &app.admin_key,
        Method::POST,
        "/v1/ingest/generic",
        Some(json!({"title": "t"})),
    )
    .await;
    assert_eq!(st, 202, "{v}");
    // Ingest counts failures too.
    let (st, _) = call(
        &app,
        &same_prefix_wrong(&app.admin_key, 1000),
        Method::POST,
        "/v1/ingest/generic",
        Some(json!({"title": "t"})),
    )
    .await;
    assert_eq!(st, 429);
}

#[tokio::test]
async fn failed_authentication_is_limited_per_client_address_only_behind_a_trusted_proxy() {
    let app = TestApp::start().await;
    let limit = calseta::api::auth::FAILED_AUTH_PER_MINUTE as usize;
    // Without a trusted proxy X-Forwarded-For is the client's word: ignored.
    for n in 0..limit + 5 {
        let r = app
            .http
            .get(app.url("/v1/alerts"))
            .header("x-forwarded-for", "198.51.100.7")
            .bearer_auth(calseta::keys::generate().expose_secret())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "attempt {n}");
    }
    // Guessed (unknown) key prefixes leave no rows behind: the limiter's table stays bounded.
    assert_eq!(
        app.scalar_i64("SELECT count(*) FROM rate_limits WHERE bucket LIKE 'authfail:%'")
            .await,
        0
    );
    // Behind a trusted proxy: the address it appended (right-most) is limited.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = calseta::api::router(app.state.clone().with_trusted_forwarded_for(true));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let get = |xff: &'static str, key: String| {
        app.http
            .get(format!("{base}/v1/alerts"))
            .header("x-forwarded-for", xff)
            .bearer_auth(key)
            .send()
    };
    for n in 0..limit {
        let junk = if n % 2 == 0 {
            "not-a-key".to_string()
        } else {
            calseta::keys::generate().expose_secret().to_owned()
        };
        assert_eq!(
            get("10.9.9.9, 203.0.113.9", junk).await.unwrap().status(),
            401,
            "attempt {n}"
        );
    }
    let r = get("203.0.113.9", calseta::keys::generate().expose_secret().to_owned())
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // Blocked for the minute, even with a valid key; other addresses are not affected.
    assert_eq!(get("203.0.113.9", app.admin_key.clone()).await.unwrap().status(), 429);
    assert_eq!(get("203.0.113.10", app.admin_key.clone()).await.unwrap().status(), 200);
}

#[tokio::test]
async fn an_upload_form_with_an_unknown_field_is_refused_naming_it() {
    let app = TestApp::start().await;
    let form = |extra: &str| {
        let part = |name: &str, file: Option<&str>, value: &str| match file {
            Some(f) => format!(
                "--XbOuNdArY\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\r\n{value}\r\n"
            ),
            None => format!("--XbOuNdArY\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"),
        };
        let mut body = part("title", None, "Runbook") + &part("document_type", None, "runbook");
        if !extra.is_empty() {
            body += &part(extra, None, "soc");
        }
        body + &part("file", Some("r.md"), "# Steps") + "--XbOuNdArY--\r\n"
    };
    let post = |body: String| {
        app.http
            .post(app.url("/v1/context-documents"))
            .bearer_auth(&app.admin_key)
            .header("content-type", "multipart/form-data; boundary=XbOuNdArY")
            .body(body)
            .send()
    };
    let r = post(form("owner_team")).await.unwrap();
    assert_eq!(r.status(), 422);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["details"]["errors"][0]["field"],
        json!("body.owner_team"),
        "{v}"
    );
    assert_eq!(post(form("")).await.unwrap().status(), 201);
}

/// Idle rate-limit windows (here: of a client address that failed authentication an hour ago)
/// are deleted by the sweeper; current windows stay.
#[tokio::test]
async fn the_sweeper_purges_idle_rate_limit_windows() {
    let app = TestApp::start().await;
    let c = app.db.pool.get().await.unwrap();
    c.batch_execute(
        "INSERT INTO rate_limits (bucket, window_start, count)
         SELECT 'authfail:ip:198.51.100.' || i, date_trunc('minute', now()) - interval '61 minutes', 3
         FROM generate_series(1, 12001) i;
         INSERT INTO rate_limits (bucket, window_start, count)
         VALUES ('authfail:ip:203.0.113.1', date_trunc('minute', now()), 2),
                ('source:recent', date_trunc('minute', now()) - interval '50 minutes', 1);",
    )
    .await
    .unwrap();
    let report = calseta::sweep::run_once(&app.state.outbox, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(report.rate_limits_purged, 12001);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM rate_limits").await, 2);
    // Nothing left to purge: the next pass deletes nothing.
    let report = calseta::sweep::run_once(&app.state.outbox, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(report.rate_limits_purged, 0);
}

/// A TCP proxy to Postgres that can stop forwarding: the database looks alive (connections
/// stay open) but answers nothing, like a stopped process or a dead network path.
async fn pausable_proxy(upstream: std::net::SocketAddr) -> (u16, tokio::sync::watch::Sender<bool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (paused, rx) = tokio::sync::watch::channel(false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((down, _)) = listener.accept().await {
            let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
                continue;
            };
            let (dr, dw) = down.into_split();
            let (ur, uw) = up.into_split();
            for (mut r, mut w, mut rx) in [
                (
                    Box::new(dr) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                    Box::new(uw) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                    rx.clone(),
                ),
                (Box::new(ur) as _, Box::new(dw) as _, rx.clone()),
            ] {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match r.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        // Frozen: hold the bytes until thawed.
                        if rx.wait_for(|p| !*p).await.is_err() {
                            return;
                        }
                        if w.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    });
    (port, paused)
}

/// A frozen database (connections accepted, nothing answered) gets a 503 + Retry-After within
/// the configured request bound, not a hang for the whole freeze; after the thaw requests work.
#[tokio::test]
async fn a_frozen_database_answers_503_within_the_request_bound() {
    let app = TestApp::start().await;
    let pg: tokio_postgres::Config = app.db.url.parse().unwrap();
    let host = match &pg.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("test cluster is not on TCP: {other:?}"),
    };
    let upstream = tokio::net::lookup_host((host.as_str(), pg.get_ports()[0]))
        .await
        .unwrap()
        .next()
        .unwrap();
    let (port, freeze) = pausable_proxy(upstream).await;
    let mut url = url::Url::parse(&app.db.url).unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(port)).unwrap();
    let pool = calseta::db::build_pool(&calseta::config::DbConfig::from_url(url.to_string())).unwrap();
    let mut state = app.state.clone();
    state.outbox = calseta::queue::outbox::Outbox::new(pool.clone(), state.queue.clone());
    state.pool = pool;
    state.limits.request_timeout = std::time::Duration::from_millis(1500);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = calseta::api::router(state);
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    let get = || http.get(format!("{base}/v1/alerts")).bearer_auth(&app.admin_key).send();
    assert_eq!(get().await.unwrap().status(), 200);

    freeze.send(true).unwrap();
    let started = std::time::Instant::now();
    let r = get().await.expect("an answer, not a client timeout");
    let took = started.elapsed();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
    // Every request during the freeze is bounded, not only the first.
    let started = std::time::Instant::now();
    assert_eq!(get().await.unwrap().status(), 503);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    freeze.send(false).unwrap();
    let mut ok = false;
    for _ in 0..20 {
        if get().await.unwrap().status() == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(ok, "no recovery after the thaw");
}

/// Reads until the server closes the connection; `None` when it is still open after `limit`.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: std::time::Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Slowloris on the servers we run: a request head dribbled byte by byte is cut after the
/// header bound, a body that never completes gets a 408 and the connection closed after the
/// request bound. `axum::serve` (what the dev and MCP servers used) keeps both open.
#[tokio::test]
async fn half_sent_requests_are_cut_after_the_bounds() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    let app = TestApp::start().await;
    let timeouts = calseta::net::server::ServerTimeouts {
        header_read: Duration::from_millis(1000),
        request: Duration::from_millis(1500),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The API, plus a route that reads its whole body before anything else.
    let router = calseta::api::router(app.state.clone()).merge(axum::Router::new().route(
        "/echo",
        axum::routing::post(|b: axum::body::Bytes| async move { b.len().to_string() }),
    ));
    tokio::spawn(calseta::net::server::serve(
        listener,
        router,
        timeouts,
        std::future::pending(),
    ));

    // The head, one byte every 200 ms: never finished within the bound.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    let dribble = async {
        for b in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(4), dribble).await;
    let closed = closed_within(&mut s, Duration::from_secs(1)).await;
    assert!(
        closed.is_some(),
        "header dribble still open after {:?}",
        started.elapsed()
    );

    // A body announced at 1000 bytes that stops after 10.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"title\":")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let got = closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("connection with an unfinished body still open");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("REQUEST_TIMEOUT"), "{text}");

    // Control: the same head dribble against axum::serve is still open after the same time,
    // so the bound above is the server's doing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = listener.local_addr().unwrap();
    let router = calseta::api::router(app.state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut s = tokio::net::TcpStream::connect(plain).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(3)).await.is_none());

    // A complete request is served normally.
    let r = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(r.status(), 200);
}

/// The request bound does not cut an agent test, which waits on the agent by design (under the
/// agent's own `timeout_seconds`); other requests stay bounded.
#[tokio::test]
async fn an_agent_test_may_outlast_the_request_bound() {
    let app = TestApp::with_limits(calseta::config::Limits {
        request_timeout: std::time::Duration::from_millis(300),
        ..calseta::config::Limits::default()
    })
    .await;
    let slow = axum::Router::new().fallback(|| async {
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        "ok"
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, slow).await });
    let (st, v) = call(
        &app,
        &app.admin_key,
        Method::POST,
        "/v1/agents",
        Some(json!({"name": "slow", "endpoint_url": format!("{base}/hook")})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let test = format!("/v1/agents/{}/test", v["data"]["uuid"].as_str().unwrap());
    let (st, v) = call(&app, &app.admin_key, Method::POST, &test, None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["status_code"], json!(200), "{v}");
}
