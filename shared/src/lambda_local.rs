//! The Lambda-mode local stack (`calseta lambda-local`): the real function binaries under
//! cargo-lambda's runtime emulator (`cargo lambda watch`), a local Postgres cluster kept for the
//! run, moto's SQS API with the template's queues and DLQs, the event-source mappings of
//! [`crate::esm`] for `enrich` and `dispatch`, and an EventBridge-like tick that invokes `sweep`.
//! `migrate` runs first, as the CloudFormation custom resource, answering to a local
//! `ResponseURL` receiver.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::{
    config::AppSecrets,
    db::{
        self, api_keys,
        embedded::{EmbeddedOptions, EmbeddedPostgres},
    },
    esm::{ensure_queue_with_dlq, Driver, Invoker, Mapping},
    keys::KeyHasher,
};

/// Options of the stack.
#[derive(Debug, Clone)]
pub struct LambdaLocalOptions {
    /// The workspace whose functions `cargo lambda watch` runs.
    pub workspace: PathBuf,
    /// State folder: Postgres data, the env file, logs.
    pub data_dir: PathBuf,
    /// Invoke API and function URLs (`/lambda-url/<function>/…`).
    pub invoke_port: u16,
    /// `cargo-lambda` executable (`cargo lambda` must work with it as `cargo-lambda lambda`).
    pub cargo_lambda: PathBuf,
    /// `moto_server` executable.
    pub moto_server: PathBuf,
    /// Visibility timeout of both queues. The template's (360 s / 1980 s) match the function
    /// timeouts; locally a short one makes retries visible in seconds.
    pub visibility_timeout: Duration,
    /// `MaximumConcurrency` of each mapping.
    pub max_concurrency: usize,
    pub sweep_interval: Duration,
    /// Extra environment for every function (`KEY=VALUE`).
    pub extra_env: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum LambdaLocalError {
    #[error(transparent)]
    Embedded(#[from] db::embedded::EmbeddedError),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Esm(#[from] crate::esm::EsmError),
    #[error("{0}")]
    Other(String),
}

fn other(e: impl std::fmt::Display) -> LambdaLocalError {
    LambdaLocalError::Other(e.to_string())
}

/// A running stack; [`LambdaStack::stop`] ends everything it started.
pub struct LambdaStack {
    pub invoke_base: String,
    pub moto_endpoint: String,
    pub database_url: String,
    pub enrich_queue: String,
    pub enrich_dlq: String,
    pub dispatch_queue: String,
    pub dispatch_dlq: String,
    pub env_file: PathBuf,
    pub admin_key: SecretString,
    pub invoker: Invoker,
    pg: Option<EmbeddedPostgres>,
    moto: Option<Child>,
    watch: Option<Child>,
    watch_cmd: WatchCommand,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LambdaStack {
    /// `http://127.0.0.1:<port>/lambda-url/<function>` (API Gateway-style HTTP events).
    pub fn function_url(&self, function: &str) -> String {
        format!("{}/lambda-url/{function}", self.invoke_base)
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        sqs_client(&self.moto_endpoint)
    }

    pub async fn stop(mut self) {
        self.cancel.cancel();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        let (watch, moto, pg) = (self.watch.take(), self.moto.take(), self.pg.take());
        let _ = tokio::task::spawn_blocking(move || {
            for child in [watch, moto].into_iter().flatten() {
                kill_group(child);
            }
            if let Some(mut pg) = pg {
                pg.stop();
            }
        })
        .await;
    }

    /// A crash of the functions' execution environment: SIGKILL to the emulator and every
    /// function process (in-flight invocations fail, as when a Lambda instance dies), then a
    /// fresh emulator, whose functions start cold on their next invocation. (cargo lambda watch
    /// does not restart a single function process that died: its queued invocations would hang.)
    pub async fn crash_functions(&mut self) -> Result<(), LambdaLocalError> {
        if let Some(child) = self.watch.take() {
            // The function processes run in process groups of their own (cargo run): kill the
            // whole tree.
            for pid in descendants(child.id()) {
                // SAFETY: signalling processes this stack's emulator started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            // SAFETY: signalling the process group this stack created.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            kill_group(child);
        }
        self.watch = Some(spawn_watch(&self.watch_cmd, true)?);
        wait_port(self.watch_cmd.port, Duration::from_secs(120), "cargo lambda watch").await
    }

    fn stop_children(&mut self) {
        for child in [self.watch.take(), self.moto.take()].into_iter().flatten() {
            kill_group(child);
        }
        if let Some(mut pg) = self.pg.take() {
            pg.stop();
        }
    }
}

impl Drop for LambdaStack {
    /// A test that fails half-way still leaves no processes behind.
    fn drop(&mut self) {
        self.cancel.cancel();
        for t in &self.tasks {
            t.abort();
        }
        self.stop_children();
    }
}

/// How to (re)start the emulator.
#[derive(Debug, Clone)]
struct WatchCommand {
    cargo_lambda: PathBuf,
    workspace: PathBuf,
    port: u16,
    env_file: PathBuf,
    log: PathBuf,
}

fn spawn_watch(w: &WatchCommand, append: bool) -> Result<Child, LambdaLocalError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(&w.log)
        .map_err(other)?;
    // `--ignore-changes`: the run uses the code as it is.
    Command::new(&w.cargo_lambda)
        .args(["lambda", "watch", "--ignore-changes", "--invoke-address", "127.0.0.1"])
        .args(["--invoke-port", &w.port.to_string()])
        .arg("--env-file")
        .arg(&w.env_file)
        .current_dir(&w.workspace)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(other)?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| other(format!("start {}: {e}", w.cargo_lambda.display())))
}

/// Every process below `root` (from /proc), deepest last.
fn descendants(root: u32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let ppid = std::fs::read_to_string(e.path().join("stat")).ok().and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
            });
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root as i32];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

fn kill_group(mut child: Child) {
    for pid in descendants(child.id()) {
        // SAFETY: signalling processes started below this child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    // The children run in their own process group: cargo lambda watch has function processes
    // of its own.
    // SAFETY: signalling a process group we created.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: as above.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
}

fn free_port() -> Result<u16, LambdaLocalError> {
    Ok(TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map_err(other)?
        .port())
}

async fn wait_port(port: u16, limit: Duration, what: &str) -> Result<(), LambdaLocalError> {
    let deadline = Instant::now() + limit;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(other(format!("{what} did not listen on port {port} within {limit:?}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(crate::net::tls::aws_http_client())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("local", "local", None, None, "lambda-local"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}

const REGION: &str = "us-east-1";

/// The CloudFormation `Create` event for `migrate`, answering to `response_url`.
pub(crate) fn migrate_event(response_url: &str) -> Value {
    json!({
        "RequestType": "Create",
        "ServiceToken": "arn:aws:lambda:us-east-1:000000000000:function:calseta-migrate",
        "ResponseURL": response_url,
        "StackId": "arn:aws:cloudformation:us-east-1:000000000000:stack/calseta-local/00000000-0000-0000-0000-000000000000",
        "RequestId": uuid::Uuid::new_v4().to_string(),
        "ResourceType": "Custom::Migrations",
        "LogicalResourceId": "DatabaseMigrations",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:000000000000:function:calseta-migrate", "Version": "1"}
    })
}

/// The EventBridge scheduled event `sweep` receives.
pub fn schedule_event() -> Value {
    json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "000000000000", "time": chrono::Utc::now().to_rfc3339(),
        "region": REGION, "resources": ["arn:aws:events:us-east-1:000000000000:rule/calseta-sweep"], "detail": {}
    })
}

/// Receives one CloudFormation response (`PUT` to the `ResponseURL`) and returns its body.
async fn cfn_receiver() -> Result<(String, tokio::sync::oneshot::Receiver<Value>), LambdaLocalError> {
    use axum::{extract::State, routing::put, Router};
    type Slot = Arc<Mutex<Option<tokio::sync::oneshot::Sender<Value>>>>;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let slot: Slot = Arc::new(Mutex::new(Some(tx)));
    let app = Router::new()
        .route(
            "/cfn-response",
            // CloudFormation's pre-signed S3 URL takes the JSON with an empty content type.
            put(|State(slot): State<Slot>, body: axum::body::Bytes| async move {
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if let Some(tx) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = tx.send(body);
                }
                ""
            }),
        )
        .with_state(slot);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(other)?;
    let addr: SocketAddr = listener.local_addr().map_err(other)?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{addr}/cfn-response"), rx))
}

/// Starts everything and returns once `migrate` has succeeded and the mappings run.
pub async fn start(opts: &LambdaLocalOptions) -> Result<LambdaStack, LambdaLocalError> {
    std::fs::create_dir_all(&opts.data_dir).map_err(other)?;
    let data_dir = std::fs::canonicalize(&opts.data_dir).map_err(other)?;
    let mut stack = LambdaStack {
        invoke_base: format!("http://127.0.0.1:{}", opts.invoke_port),
        moto_endpoint: String::new(),
        database_url: String::new(),
        enrich_queue: String::new(),
        enrich_dlq: String::new(),
        dispatch_queue: String::new(),
        dispatch_dlq: String::new(),
        env_file: data_dir.join("lambda.env"),
        admin_key: crate::keys::generate(),
        invoker: Invoker::new(
            format!("http://127.0.0.1:{}", opts.invoke_port),
            Duration::from_secs(900),
        )?,
        pg: None,
        moto: None,
        watch: None,
        watch_cmd: WatchCommand {
            cargo_lambda: opts.cargo_lambda.clone(),
            workspace: opts.workspace.clone(),
            port: opts.invoke_port,
            env_file: data_dir.join("lambda.env"),
            log: data_dir.join("cargo-lambda.log"),
        },
        cancel: CancellationToken::new(),
        tasks: Vec::new(),
    };
    match start_into(opts, &data_dir, &mut stack).await {
        Ok(()) => Ok(stack),
        Err(e) => {
            stack.stop().await;
            Err(e)
        }
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "long but linear; a split along its phases is issue #11's next step"
)]
async fn start_into(
    opts: &LambdaLocalOptions,
    data_dir: &Path,
    stack: &mut LambdaStack,
) -> Result<(), LambdaLocalError> {
    start_postgres(data_dir, stack).await?;
    start_moto(opts, data_dir, stack).await?;
    let secrets = AppSecrets::random();
    write_env(opts, stack, &secrets)?;
    // The runtime emulator.
    stack.watch = Some(spawn_watch(&stack.watch_cmd, false)?);
    wait_port(opts.invoke_port, Duration::from_secs(120), "cargo lambda watch").await?;

    migrate(stack).await?;
    insert_admin_key(stack, &secrets).await?;
    start_triggers(opts, stack).await
}

/// Postgres, kept for the run (removed when the stack stops), with the `calseta` database.
async fn start_postgres(data_dir: &Path, stack: &mut LambdaStack) -> Result<(), LambdaLocalError> {
    let root = data_dir.join("pg");
    let pg = tokio::task::spawn_blocking(move || {
        EmbeddedPostgres::start(&EmbeddedOptions {
            root,
            port: None,
            remove_on_stop: true,
        })
    })
    .await
    .map_err(other)??;
    let (admin, conn) = tokio_postgres::connect(&pg.url("postgres"), tokio_postgres::NoTls)
        .await
        .map_err(db::DbError::from)?;
    let conn = tokio::spawn(conn);
    admin
        .batch_execute("CREATE DATABASE calseta")
        .await
        .map_err(db::DbError::from)?;
    drop(admin);
    let _ = conn.await;
    stack.database_url = pg.url("calseta");
    stack.pg = Some(pg);

    Ok(())
}

/// moto (the SQS API) and the two queues with their dead-letter queues.
async fn start_moto(
    opts: &LambdaLocalOptions,
    data_dir: &Path,
    stack: &mut LambdaStack,
) -> Result<(), LambdaLocalError> {
    let moto_port = free_port()?;
    let moto = Command::new(&opts.moto_server)
        .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data_dir.join("moto.log")).map_err(other)?)
        .process_group(0)
        .spawn()
        .map_err(|e| other(format!("start {}: {e}", opts.moto_server.display())))?;
    stack.moto = Some(moto);
    wait_port(moto_port, Duration::from_secs(60), "moto_server").await?;
    stack.moto_endpoint = format!("http://127.0.0.1:{moto_port}");
    let sqs = stack.sqs();
    // maxReceiveCount as in template.yaml.
    (stack.enrich_queue, stack.enrich_dlq) =
        ensure_queue_with_dlq(&sqs, "calseta-enrich", opts.visibility_timeout, 10).await?;
    (stack.dispatch_queue, stack.dispatch_dlq) =
        ensure_queue_with_dlq(&sqs, "calseta-dispatch", opts.visibility_timeout, 5).await?;

    Ok(())
}

/// The functions' environment (what the template sets, pointed at the local parts).
fn write_env(opts: &LambdaLocalOptions, stack: &LambdaStack, secrets: &AppSecrets) -> Result<(), LambdaLocalError> {
    let mut env = vec![
        ("DATABASE_URL".to_owned(), stack.database_url.clone()),
        ("ENRICH_QUEUE_URL".to_owned(), stack.enrich_queue.clone()),
        ("DISPATCH_QUEUE_URL".to_owned(), stack.dispatch_queue.clone()),
        ("SQS_ENDPOINT_URL".to_owned(), stack.moto_endpoint.clone()),
        ("AWS_ENDPOINT_URL".to_owned(), stack.moto_endpoint.clone()),
        ("AWS_REGION".to_owned(), REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID".to_owned(), "local".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "local".to_owned()),
        ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
        ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH".to_owned(), "true".to_owned()),
        (
            "CALSETA_KEY_HASH_SECRET".to_owned(),
            secrets.key_hash_secret.expose_secret().to_owned(),
        ),
        (
            "CALSETA_ENCRYPTION_KEY".to_owned(),
            secrets.encryption_key.expose_secret().to_owned(),
        ),
        // Local agents listen on loopback.
        ("CALSETA_OUTBOUND_ALLOW_LOOPBACK".to_owned(), "true".to_owned()),
        ("DATABASE_POOL_SIZE".to_owned(), "2".to_owned()),
        ("CALSETA_EMF".to_owned(), "1".to_owned()),
    ];
    env.extend(opts.extra_env.iter().cloned());
    let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&stack.env_file, text).map_err(other)?;

    Ok(())
}

/// migrate first, as CloudFormation runs it.
async fn migrate(stack: &LambdaStack) -> Result<(), LambdaLocalError> {
    let (response_url, answer) = cfn_receiver().await?;
    stack.invoker.invoke("migrate", &migrate_event(&response_url)).await?;
    let answer = tokio::time::timeout(Duration::from_secs(30), answer)
        .await
        .map_err(|_| other("migrate sent no CloudFormation response"))?
        .map_err(other)?;
    if answer["Status"] != "SUCCESS" {
        return Err(other(format!("migrate reported {answer}")));
    }

    Ok(())
}

/// A bootstrap admin key (the template's bootstrap secret does this on AWS).
async fn insert_admin_key(stack: &LambdaStack, secrets: &AppSecrets) -> Result<(), LambdaLocalError> {
    let (client, conn) = tokio_postgres::connect(&stack.database_url, tokio_postgres::NoTls)
        .await
        .map_err(db::DbError::from)?;
    tokio::spawn(conn);
    api_keys::insert(
        &client,
        &KeyHasher::new(secrets.key_hash_secret.clone()),
        &stack.admin_key,
        &api_keys::NewApiKey {
            name: "lambda-local-admin",
            scopes: &["admin"],
            key_type: "human",
            allowed_sources: None,
            expires_at: None,
            is_system: true,
            created_by: Some("calseta lambda-local"),
        },
    )
    .await?;

    Ok(())
}

/// Event-source mappings as in template.yaml (BatchSize 10, no batching window) and the
/// sweeper's schedule.
async fn start_triggers(opts: &LambdaLocalOptions, stack: &mut LambdaStack) -> Result<(), LambdaLocalError> {
    let sqs = stack.sqs();
    for (function, queue) in [("enrich", &stack.enrich_queue), ("dispatch", &stack.dispatch_queue)] {
        let driver = Driver::new(
            sqs.clone(),
            stack.invoker.clone(),
            Mapping {
                function: function.to_owned(),
                queue_url: queue.clone(),
                batch_size: 10,
                batching_window: Duration::ZERO,
                max_concurrency: opts.max_concurrency,
                region: REGION.to_owned(),
            },
        )
        .await?;
        stack.tasks.push(tokio::spawn(driver.run(stack.cancel.clone())));
    }
    let (invoker, cancel, every) = (stack.invoker.clone(), stack.cancel.clone(), opts.sweep_interval);
    stack.tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => if let Err(e) = invoker.invoke("sweep", &schedule_event()).await {
                    tracing::warn!(error = %e, "sweep invocation failed");
                },
            }
        }
    }));
    Ok(())
}
