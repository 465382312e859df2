//! Test harness (feature `test-support`): a fresh database per test, one throwaway Postgres
//! cluster per test process when `DATABASE_URL` is unset, and a moto server (real SQS API) per
//! test process when `SQS_TEST_ENDPOINT` is unset. A missing tool fails loudly with the command
//! that installs it; nothing is skipped silently.
// A fixture that cannot be built must stop the test at once, with what failed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use crate::{
    config::DbConfig,
    db::{
        self,
        embedded::{EmbeddedOptions, EmbeddedPostgres},
        migrate, Pool,
    },
};

static CLUSTER: Mutex<Option<EmbeddedPostgres>> = Mutex::new(None);
static ADMIN_URL: OnceLock<String> = OnceLock::new();
static MOTO: Mutex<Option<Child>> = Mutex::new(None);
static MOTO_URL: OnceLock<String> = OnceLock::new();

extern "C" fn stop_children() {
    if let Ok(mut c) = CLUSTER.lock() {
        if let Some(mut pg) = c.take() {
            pg.stop();
        }
    }
    if let Ok(mut m) = MOTO.lock() {
        if let Some(mut child) = m.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn register_exit_hook() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY: registering a plain extern "C" function; it runs at process exit.
        unsafe { libc::atexit(stop_children) };
    });
}

/// The URL of a database to administer the test cluster (`.../postgres`).
pub(crate) fn admin_url() -> &'static str {
    ADMIN_URL.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            if !url.is_empty() {
                return url;
            }
        }
        register_exit_hook();
        let root = std::env::temp_dir().join(format!("calseta-test-pg-{}", std::process::id()));
        let pg = EmbeddedPostgres::start(&EmbeddedOptions {
            root,
            port: None,
            remove_on_stop: true,
        })
        .unwrap_or_else(|e| panic!("test cluster: {e}"));
        let url = pg.url("postgres");
        *CLUSTER.lock().unwrap_or_else(|p| p.into_inner()) = Some(pg);
        url
    })
}

fn with_db(url: &str, db: &str) -> String {
    // Replace the last path segment (the database name) of a postgres:// URL.
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(i) if base[..i].contains("://") && i > base.find("://").unwrap_or(0) + 2 => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

async fn admin_client() -> tokio_postgres::Client {
    let url = admin_url().to_owned();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to the test cluster ({url}): {e}"));
    tokio::spawn(conn);
    client
}

/// Name of the migrated template database for this migration set (shared by test processes).
async fn template() -> String {
    let name = format!("calseta_tpl_{}", migrate::fingerprint());
    let client = admin_client().await;
    // Serialise template creation across concurrently running test binaries.
    client
        .execute("SELECT pg_advisory_lock(7262)", &[])
        .await
        .expect("lock");
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("pg_database")
        .is_some();
    if !exists {
        let building = format!("{name}_building");
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {building}"))
            .await
            .expect("drop");
        client
            .batch_execute(&format!("CREATE DATABASE {building}"))
            .await
            .expect("create template");
        {
            let (mut c, conn) = tokio_postgres::connect(&with_db(admin_url(), &building), tokio_postgres::NoTls)
                .await
                .expect("connect template");
            let h = tokio::spawn(conn);
            migrate::run(&mut c).await.expect("migrate template");
            drop(c);
            let _ = h.await;
        }
        client
            .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}"))
            .await
            .expect("rename");
    }
    client
        .execute("SELECT pg_advisory_unlock(7262)", &[])
        .await
        .expect("unlock");
    name
}

/// A fresh, migrated database for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: Pool,
}

impl TestDb {
    pub async fn new() -> Self {
        Self::with_statements(true).await
    }

    /// A fresh database whose pool uses named prepared statements or, with `false`, unnamed
    /// typed statements (the RDS Proxy mode). The mode is process-wide: use one per test binary.
    pub async fn with_statements(prepared: bool) -> Self {
        let tpl = template().await;
        let name = format!("calseta_test_{}", uuid::Uuid::new_v4().simple());
        let client = admin_client().await;
        // Copying a template fails while another session is connected to it; retry briefly.
        let mut tries = 0;
        loop {
            match client
                .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {tpl}"))
                .await
            {
                Ok(()) => break,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("create test database: {e}"),
            }
        }
        let url = with_db(admin_url(), &name);
        let mut cfg = DbConfig::from_url(url.clone());
        cfg.pool_size = 8;
        cfg.prepared_statements = prepared;
        let pool = db::build_pool(&cfg).expect("pool");
        Self { name, url, pool }
    }

    /// An empty database without migrations (to test the runner itself).
    pub async fn empty() -> (String, String) {
        let name = format!("calseta_test_{}", uuid::Uuid::new_v4().simple());
        admin_client()
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create");
        let url = with_db(admin_url(), &name);
        (name, url)
    }
}

fn find_moto() -> PathBuf {
    if let Ok(p) = std::env::var("MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for candidate in [root.join(".venv/bin/moto_server")] {
        if candidate.is_file() {
            return candidate;
        }
    }
    if let Some(p) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("moto_server"))
            .find(|f| f.is_file())
    }) {
        return p;
    }
    panic!(
        "moto_server not found: the SQS tests need a real SQS API. Install it with \
         `python3 -m venv .venv && .venv/bin/pip install 'moto[server]'` (scripts/test does this), \
         or set MOTO_SERVER=/path/to/moto_server or SQS_TEST_ENDPOINT=http://host:port"
    )
}

/// Endpoint of a moto server for this test process (or `SQS_TEST_ENDPOINT`).
pub fn moto_endpoint() -> &'static str {
    MOTO_URL.get_or_init(|| {
        if let Ok(url) = std::env::var("SQS_TEST_ENDPOINT") {
            if !url.is_empty() {
                return url;
            }
        }
        register_exit_hook();
        let bin = find_moto();
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        *MOTO.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        format!("http://127.0.0.1:{port}")
    })
}

/// An SQS client for the moto server, with dummy credentials (no environment needed).
pub fn sqs_client() -> aws_sdk_sqs::Client {
    use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(crate::net::tls::aws_http_client())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "calseta-tests"))
        .endpoint_url(moto_endpoint())
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}

/// The HTTP API on a random local port, over a fresh database and an in-process queue, with
/// an admin key; black-box tests talk to it with a real HTTP client.
pub struct TestApp {
    pub base: String,
    pub db: TestDb,
    pub queue: crate::queue::memory::InProcessQueue,
    pub state: crate::api::AppState,
    pub admin_key: String,
    pub http: reqwest::Client,
    /// Delivers to loopback agents (test receivers), retrying after 1 s.
    pub dispatcher: std::sync::Arc<crate::dispatch::Dispatcher>,
}

impl TestApp {
    pub async fn start() -> Self {
        Self::with_limits(crate::config::Limits::default()).await
    }

    pub async fn with_limits(limits: crate::config::Limits) -> Self {
        Self::with_options(limits, true).await
    }

    /// `prepared`: see [`TestDb::with_statements`].
    pub async fn with_options(limits: crate::config::Limits, prepared: bool) -> Self {
        Self::build(limits, prepared, None).await.0
    }

    /// The app with an enrichment engine over `providers` (served by `/v1/enrichments` and
    /// returned for driving the `enrich` queue by hand).
    pub async fn with_enrichment(
        providers: crate::enrich::registry::ProviderSet,
        settings: crate::enrich::engine::EngineSettings,
    ) -> (Self, std::sync::Arc<crate::enrich::engine::Engine>) {
        let (app, engine) = Self::build(crate::config::Limits::default(), true, Some((providers, settings))).await;
        (app, engine.expect("engine"))
    }

    async fn build(
        limits: crate::config::Limits,
        prepared: bool,
        enrichment: Option<(
            crate::enrich::registry::ProviderSet,
            crate::enrich::engine::EngineSettings,
        )>,
    ) -> (Self, Option<std::sync::Arc<crate::enrich::engine::Engine>>) {
        use secrecy::ExposeSecret;
        let db = TestDb::with_statements(prepared).await;
        let mut qs = std::collections::HashMap::new();
        qs.insert(
            crate::queue::QueueName::Enrich,
            crate::queue::memory::QueueSettings {
                max_receives: 10,
                ..Default::default()
            },
        );
        let queue = crate::queue::memory::InProcessQueue::with_settings(qs);
        let core = crate::app::Core::new(db.pool.clone(), std::sync::Arc::new(queue.clone()));
        let secrets = crate::config::AppSecrets::random();
        let mut state = core
            .state(&secrets, limits, crate::enrich::never_send::NeverSendPolicy::default())
            .expect("state");
        let engine = enrichment.map(|(providers, settings)| core.engine(providers, state.never_send.clone(), settings));
        if let Some(e) = &engine {
            state = state.with_enrichment(e.clone());
        }
        let dispatcher = core.dispatcher(
            state.sealer.clone(),
            crate::dispatch::DispatchSettings {
                policy: crate::net::ssrf::OutboundPolicy {
                    allow_loopback: true,
                    ..Default::default()
                },
                retry_schedule: vec![1],
            },
        );
        state = state.with_dispatch(dispatcher.clone());
        let key = crate::keys::generate();
        let app = Self {
            base: String::new(),
            db,
            queue,
            state: state.clone(),
            admin_key: key.expose_secret().to_owned(),
            http: {
                crate::net::tls::install_crypto_provider();
                reqwest::Client::new()
            },
            dispatcher,
        };
        app.insert_key(&key, "test-admin", &["admin"], None, None).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let router = crate::api::router(state);
        tokio::spawn(async move { axum::serve(listener, router).await });
        (
            Self {
                base,
                admin_key: key.expose_secret().to_owned(),
                ..app
            },
            engine,
        )
    }

    /// Creates a key with the given scopes; returns its plaintext.
    pub async fn create_key(
        &self,
        name: &str,
        scopes: &[&str],
        allowed_sources: Option<&[&str]>,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> String {
        use secrecy::ExposeSecret;
        let key = crate::keys::generate();
        self.insert_key(&key, name, scopes, allowed_sources, expires_at).await;
        key.expose_secret().to_owned()
    }

    async fn insert_key(
        &self,
        key: &secrecy::SecretString,
        name: &str,
        scopes: &[&str],
        allowed_sources: Option<&[&str]>,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    ) {
        let client = self.db.pool.get().await.expect("client");
        crate::db::api_keys::insert(
            &**client,
            &self.state.hasher,
            key,
            &crate::db::api_keys::NewApiKey {
                name,
                scopes,
                key_type: "agent",
                allowed_sources,
                expires_at,
                is_system: false,
                created_by: Some("tests"),
            },
        )
        .await
        .expect("insert key");
    }

    /// Runs the queue consumers a deployed stack runs (enrich when `engine` is given, dispatch
    /// always) until the returned token is cancelled.
    pub fn spawn_consumers(
        &self,
        engine: Option<&std::sync::Arc<crate::enrich::engine::Engine>>,
    ) -> tokio_util::sync::CancellationToken {
        use crate::queue::QueueName;
        let cancel = tokio_util::sync::CancellationToken::new();
        let core = crate::app::Core::new(self.db.pool.clone(), std::sync::Arc::new(self.queue.clone()));
        if let Some(engine) = engine {
            self.queue.spawn_consumers(
                QueueName::Enrich,
                engine.handler(core.runner(QueueName::Enrich)),
                2,
                cancel.clone(),
            );
        }
        self.queue.spawn_consumers(
            QueueName::Dispatch,
            self.dispatcher.handler(core.runner(QueueName::Dispatch)),
            2,
            cancel.clone(),
        );
        cancel
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One SQL value from the test database (counts and checks). `sql` runs as a scalar
    /// subquery, which gives its one column a name to read it by.
    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        let c = self.db.pool.get().await.expect("client");
        c.query_one(&format!("SELECT ({sql}) AS value"), &[])
            .await
            .and_then(|r| r.try_get("value"))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// One request to `app` with API key `key` (empty: none) and an optional JSON body; the status
/// and the JSON answer (`Null` when the body is not JSON).
pub async fn call(
    app: &TestApp,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = app.http.request(method, app.url(path));
    if !key.is_empty() {
        req = req.bearer_auth(key);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

#[cfg(test)]
mod tests {
    use super::with_db;

    #[test]
    fn replaces_database_name() {
        assert_eq!(with_db("postgres://u@h:1/postgres", "x"), "postgres://u@h:1/x");
        assert_eq!(
            with_db("postgres://u@h:1/postgres?sslmode=disable", "x"),
            "postgres://u@h:1/x?sslmode=disable"
        );
        assert_eq!(with_db("postgres://u@h:1", "x"), "postgres://u@h:1/x");
    }
}
