//! Delivery of the agent payload (DESIGN §5 "Agent delivery").
//!
//! The `dispatch` queue carries two messages:
//! - [`DispatchRequest`] (an alert finished enrichment): match the active agents, create one
//!   `deliveries` row per (alert, agent) — the idempotency key, so a re-enriched alert is not
//!   delivered again — and make the first attempt of each new row right away.
//! - [`DeliverRequest`] (a retry, a replay, or `trigger-agents`): one attempt of one delivery.
//!
//! An attempt first **claims** the row for its attempt number (`attempts = n`, no live claim),
//! so a duplicate message never sends twice at once and a stale one (the attempt already made)
//! does nothing. The outcome is recorded with the next attempt's message in one transaction.
//! Retries follow the agent's schedule (by default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: a
//! day and more, as Standard Webhooks senders do), never by sleeping: a wait within SQS's
//! 15-minute delay is a delayed message; a longer one is only a due time (`next_attempt_at`), and
//! the sweeper queues the attempt when it is due.
//!
//! Nothing is stranded: every open delivery carries `redrive_at`, when the sweeper re-drives it
//! if it made no progress (its message lost or dead-lettered, the process killed mid-attempt).
//! An attempt whose webhook was sent but whose outcome could not be written (database down)
//! retries the write a few times, then keeps the outcome in memory: the redelivered message
//! records it without sending again. The webhook id is the delivery's uuid on every attempt.
//!
//! Outcomes: 2xx → `delivered`; 408, 425, 429 (honouring `Retry-After`), 5xx, timeouts and
//! connection errors → retried until the agent's `retry_count` is spent, then `dead`; any other
//! status (4xx, or a redirect, which is never followed) → `dead` at once, since the same request
//! will be refused again. A URL that fails the outbound check at delivery time is `dead` too.
//! Dead deliveries are listed per agent and can be replayed with the same `webhook-id`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use deadpool_postgres::{Client, Pool};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{matching::Triggers, signing};
use crate::context::payload::{self, PayloadOptions};
use crate::context::targeting;
use crate::crypto::Sealer;
use crate::db::activity::{self, Actor, EventType, Events};
use crate::db::{agents, deliveries, DbError};
use crate::net::ssrf::{self, OutboundPolicy, Timeouts};
use crate::queue::batch::{BatchRunner, HandlerError};
use crate::queue::messages::DispatchRequest;
use crate::queue::outbox::{self, NewMessage, Outbox};
use crate::queue::{QueueName, MAX_DELAY_SECONDS};

/// Longest stored error text.
const MAX_ERROR_CHARS: usize = 300;
/// Extra claim time beyond the agent's timeout (signing, payload, recording).
const CLAIM_MARGIN_SECONDS: i32 = 30;
/// How long an open delivery may go without progress before the sweeper re-drives it: longer
/// than the dispatch queue's visibility timeout (360 s) plus a claim, so a delivery that is
/// merely in flight is not queued twice.
pub(crate) const REDRIVE_AFTER_SECONDS: i32 = 900;
/// The default retry schedule: seconds before retry 1, 2, … (about 27.5 hours in all).
pub(crate) const DEFAULT_RETRY_SCHEDULE: [u32; 7] = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];
/// The longest single wait, from a schedule step or an agent's `Retry-After`.
pub(crate) const MAX_RETRY_DELAY_SECONDS: u32 = 604_800;
/// Outcomes kept in memory while they cannot be written (bounds the memory a long database
/// outage can take; past it the claim alone guards against a second send).
const MAX_UNRECORDED: usize = 10_000;

/// One attempt of one delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeliverRequest {
    pub v: u8,
    pub delivery_id: i64,
    pub delivery_uuid: Uuid,
    pub alert_uuid: Uuid,
    /// The attempt number this message makes (0 = first); a message for an attempt already
    /// made is stale and ignored.
    pub attempt: i32,
}

impl DeliverRequest {
    pub fn to_message(&self, delay_seconds: u32) -> NewMessage {
        NewMessage::json(QueueName::Dispatch, self)
            .unwrap_or_else(|_| unreachable!("DeliverRequest serializes"))
            .with_attribute("alert_uuid", self.alert_uuid.to_string())
            .with_attribute("delivery_uuid", self.delivery_uuid.to_string())
            .correlated(self.alert_uuid)
            .with_delay(delay_seconds.min(MAX_DELAY_SECONDS))
    }
}

/// Settings of delivery.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Where agent webhooks may go (`CALSETA_OUTBOUND_ALLOW_*`; `calseta dev` adds loopback).
    pub policy: OutboundPolicy,
    /// Seconds before retry 1, 2, … for agents without a schedule of their own; the last step
    /// repeats (`CALSETA_DELIVERY_RETRY_SCHEDULE`, default [`DEFAULT_RETRY_SCHEDULE`]).
    pub retry_schedule: Vec<u32>,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            policy: OutboundPolicy::strict(),
            retry_schedule: DEFAULT_RETRY_SCHEDULE.to_vec(),
        }
    }
}

impl DispatchSettings {
    pub fn from_env() -> Result<Self, crate::config::ConfigError> {
        let retry_schedule = match crate::config::var("CALSETA_DELIVERY_RETRY_SCHEDULE") {
            None => DEFAULT_RETRY_SCHEDULE.to_vec(),
            Some(v) => parse_schedule(&v).map_err(|problem| crate::config::ConfigError::Invalid {
                name: "CALSETA_DELIVERY_RETRY_SCHEDULE",
                problem,
            })?,
        };
        Ok(Self {
            policy: crate::enrich::registry::outbound_policy_from_env()?,
            retry_schedule,
        })
    }
}

/// Parses a retry schedule written as seconds separated by commas (`5,300,1800`): 1–20 steps of
/// 1 s to 7 days each.
pub(crate) fn parse_schedule(s: &str) -> Result<Vec<u32>, String> {
    let steps = s
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_RETRY_DELAY_SECONDS).contains(n))
                .ok_or_else(|| format!("{p:?} is not a number of seconds from 1 to {MAX_RETRY_DELAY_SECONDS}"))
        })
        .collect::<Result<Vec<u32>, String>>()?;
    if steps.is_empty() || steps.len() > 20 {
        return Err("a schedule has 1 to 20 steps".into());
    }
    Ok(steps)
}

/// The wait before retry number `n` (1 = first retry): step `n` of `schedule` (its last step
/// once `n` is past the end), less up to a tenth at random so retries of many deliveries do not
/// move in lock-step.
pub(crate) fn retry_delay_seconds(schedule: &[u32], n: u32) -> u32 {
    let step = n.max(1) as usize;
    let full = schedule
        .get(step - 1)
        .or(schedule.last())
        .copied()
        .unwrap_or(DEFAULT_RETRY_SCHEDULE[0])
        .clamp(1, MAX_RETRY_DELAY_SECONDS);
    (full - rand::random_range(0..=full / 10)).max(1)
}

/// What one HTTP attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Delivered,
    /// Worth trying again (after `after` if the agent said so).
    Retry {
        after: Option<u32>,
    },
    /// Will be refused again; do not retry.
    Reject,
}

/// Classifies an HTTP status (the caller handles transport errors as `Retry`).
pub(crate) fn classify(status: u16, retry_after: Option<u32>) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 425 | 429 => Verdict::Retry { after: retry_after },
        500..=599 => Verdict::Retry { after: retry_after },
        _ => Verdict::Reject,
    }
}

/// The outcome of one attempt, as recorded.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    verdict: Verdict,
    status_code: Option<i32>,
    error: Option<String>,
    payload_bytes: Option<i32>,
    duration: Duration,
}

impl Attempt {
    /// The columns an outcome update writes.
    fn stored(&self) -> deliveries::Outcome<'_> {
        deliveries::Outcome {
            status_code: self.status_code,
            error: self.error.as_deref(),
            payload_bytes: self.payload_bytes,
        }
    }

    fn refused(error: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Reject,
            status_code: None,
            error: Some(clip(&error.into())),
            payload_bytes: None,
            duration: Duration::ZERO,
        }
    }
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(MAX_ERROR_CHARS).collect();
    if s.chars().count() > MAX_ERROR_CHARS {
        out.push('…');
    }
    out
}

/// The agent a claimed delivery goes to (secrets still sealed).
type Target = deliveries::Claimed;

/// What a test delivery reports (api spec §5.8).
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub delivered: bool,
    pub status_code: Option<i32>,
    pub duration_ms: u64,
    pub error: Option<String>,
}

/// The dispatch step; built once per process.
pub struct Dispatcher {
    pool: Pool,
    outbox: Outbox,
    sealer: Sealer,
    http: reqwest::Client,
    settings: DispatchSettings,
    /// Attempts made (the webhook sent) whose outcome could not be written yet, by (delivery,
    /// attempt): a redelivered message records these instead of sending again.
    unrecorded: std::sync::Mutex<std::collections::HashMap<(i64, i32), (Target, Attempt)>>,
}

impl Dispatcher {
    pub fn new(pool: Pool, outbox: Outbox, sealer: Sealer, settings: DispatchSettings) -> Self {
        let http = ssrf::guarded_client(
            settings.policy.clone(),
            Timeouts {
                connect: Duration::from_secs(5),
                total: Duration::from_secs(300),
            },
        );
        Self {
            pool,
            outbox,
            sealer,
            http,
            settings,
            unrecorded: Default::default(),
        }
    }

    pub fn policy(&self) -> &OutboundPolicy {
        &self.settings.policy
    }

    /// Checks an agent endpoint URL as deliveries will (api spec §5.8 outbound URL check).
    pub async fn check_endpoint(&self, url: &str) -> Result<url::Url, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
        self.settings
            .policy
            .check_url(&parsed)
            .await
            .map_err(|e| e.to_string())?;
        Ok(parsed)
    }

    /// The Lambda entry point: one SQS batch.
    pub async fn handle_event(&self, runner: &BatchRunner, event: SqsEvent) -> SqsBatchResponse {
        runner.run(event, |m| self.handle_record(m)).await
    }

    /// As a queue handler for local consumers.
    pub fn handler(self: &Arc<Self>, runner: BatchRunner) -> crate::queue::Handler {
        let me = self.clone();
        crate::queue::handler(move |event| {
            let (me, runner) = (me.clone(), runner.clone());
            async move { me.handle_event(&runner, event).await }
        })
    }

    pub async fn handle_record(&self, record: SqsMessage) -> Result<(), HandlerError> {
        let body = record.body.as_deref().unwrap_or("");
        let v: Value =
            serde_json::from_str(body).map_err(|e| HandlerError::permanent(format!("message is not JSON: {e}")))?;
        if v.get("delivery_id").is_some() {
            let req: DeliverRequest = serde_json::from_value(v)
                .map_err(|e| HandlerError::permanent(format!("not a deliver message: {e}")))?;
            let cell = tokio::sync::OnceCell::new();
            self.attempt(req.delivery_id, req.attempt, &cell).await
        } else {
            let req: DispatchRequest = serde_json::from_value(v)
                .map_err(|e| HandlerError::permanent(format!("not a dispatch message: {e}")))?;
            self.dispatch_alert(&req).await
        }
    }

    /// Matches agents, creates the deliveries and makes their first attempts.
    pub async fn dispatch_alert(&self, req: &DispatchRequest) -> Result<(), HandlerError> {
        let ids = {
            let client = self.pool.get().await?;
            let (facts, agents) = tokio::join!(
                targeting::facts_of(&*client, req.alert_id),
                agents::active_triggers(&*client)
            );
            let Some(facts) = facts? else {
                tracing::info!(alert_id = req.alert_id, "alert no longer exists; nothing to dispatch");
                return Ok(());
            };
            let matched: Vec<i64> = agents?
                .into_iter()
                .filter_map(|a| {
                    Triggers::from_stored(a.trigger_on_sources, a.trigger_on_severities, a.trigger_filter.as_ref())
                        .matches(&facts)
                        .then_some(a.id)
                })
                .collect();
            if matched.is_empty() {
                // Dispatch is done for this alert (the sweeper's repair looks for alerts without
                // this mark).
                deliveries::mark_dispatched(&*client, req.alert_id).await?;
                tracing::info!(alert_id = req.alert_id, alert_uuid = %req.alert_uuid, "no agent matches this alert");
                return Ok(());
            }
            // New rows and the alert's dispatch mark, plus first attempts a crashed earlier run
            // left behind.
            deliveries::create_for_alert(&*client, req.alert_id, &matched, &req.reason, REDRIVE_AFTER_SECONDS).await?
        };
        if ids.is_empty() {
            tracing::info!(alert_id = req.alert_id, "already dispatched; not delivered again");
            return Ok(());
        }
        let cell = tokio::sync::OnceCell::new();
        let results = futures::future::join_all(ids.iter().map(|id| self.attempt(*id, 0, &cell))).await;
        // Any retryable error retries the whole message; attempts already made are not repeated.
        results.into_iter().collect()
    }

    /// One attempt of delivery `id`, if it is still due as attempt `n`.
    async fn attempt(
        &self,
        id: i64,
        n: i32,
        payload_cell: &tokio::sync::OnceCell<Option<Value>>,
    ) -> Result<(), HandlerError> {
        // Sent before, outcome not yet written: write it; never send again.
        let memo = self.unrecorded_lock().remove(&(id, n));
        if let Some((t, outcome)) = memo {
            tracing::info!(alert_id = t.alert_id, alert_uuid = %t.alert_uuid, delivery_uuid = %t.delivery_uuid,
                attempt = n + 1, "recording an attempt made earlier (not sending again)");
            return self.record_or_keep(id, n, t, outcome).await;
        }
        let client = self.pool.get().await?;
        let claimed = deliveries::claim(&*client, id, n, CLAIM_MARGIN_SECONDS, REDRIVE_AFTER_SECONDS).await?;
        let Some(t) = claimed else {
            // Done, superseded, deleted — or someone else holds it right now.
            if let Some(state) = deliveries::claim_state(&*client, id).await? {
                if state.attempts == n && matches!(state.status.as_str(), "pending" | "failed") {
                    if let Some(left) = state.claim_left_seconds.filter(|l| *l > 0.0) {
                        return Err(HandlerError::retry_after(
                            "delivery is being attempted by another consumer",
                            Duration::from_secs_f64(left + 1.0),
                        ));
                    }
                }
            }
            return Ok(());
        };
        let payload = payload_cell
            .get_or_try_init(|| async { payload::build(&*client, t.alert_id, &PayloadOptions::default()).await })
            .await?;
        drop(client);
        let Some(payload) = payload else {
            return Ok(()); // the alert was deleted (its deliveries with it)
        };
        let outcome = if t.is_active {
            self.send(&t, payload).await
        } else {
            Attempt::refused("agent is inactive")
        };
        self.record_or_keep(id, n, t, outcome).await
    }

    fn unrecorded_lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<(i64, i32), (Target, Attempt)>> {
        // Entries are inserted and removed whole; a panic elsewhere cannot leave one half-made.
        self.unrecorded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an attempt that was made, retrying a transient database failure a few times
    /// (about 7 s in all) so a short outage costs seconds; if it still fails, keeps the outcome
    /// in memory so the message's next delivery records it instead of sending the webhook again.
    async fn record_or_keep(&self, id: i64, n: i32, t: Target, a: Attempt) -> Result<(), HandlerError> {
        let mut pause = Duration::from_millis(250);
        let mut tries = 0;
        loop {
            tries += 1;
            match self.record(id, n, &t, a.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && tries < 5 => {
                    tracing::warn!(delivery_uuid = %t.delivery_uuid, error = %e, "could not record the attempt; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => {
                    let transient = e.is_transient();
                    let mut memo = self.unrecorded_lock();
                    if transient && memo.len() < MAX_UNRECORDED {
                        tracing::warn!(delivery_uuid = %t.delivery_uuid, error = %e,
                            "attempt made but not recorded; kept to be recorded on the next delivery");
                        memo.insert((id, n), (t, a));
                    }
                    return Err(HandlerError::from(e));
                }
            }
        }
    }

    /// Signs and posts the payload once.
    async fn send(&self, t: &Target, payload: &Value) -> Attempt {
        let mut body_value = payload.clone();
        if let Some(max) = t.max_payload_bytes {
            payload::trim(&mut body_value, max as usize);
        }
        let body = match serde_json::to_vec(&body_value) {
            Ok(b) => b,
            Err(e) => return Attempt::refused(format!("payload could not be serialized: {e}")),
        };
        let bytes = i32::try_from(body.len()).ok();
        let mut attempt = self
            .post(
                &t.endpoint_url,
                &t.delivery_uuid.to_string(),
                &t.signing_secret,
                t.previous_secret.as_deref(),
                t.auth_header_name.as_deref(),
                t.auth_header_value.as_deref(),
                t.timeout_seconds,
                body,
            )
            .await;
        attempt.payload_bytes = bytes;
        attempt
    }

    /// One signed POST; never follows redirects; the URL is checked first (IP literals skip
    /// the guarded resolver). Errors name no secret and no URL (it may carry a token).
    #[allow(clippy::too_many_arguments)]
    async fn post(
        &self,
        endpoint: &str,
        webhook_id: &str,
        signing_secret: &[u8],
        previous_secret: Option<&[u8]>,
        auth_name: Option<&str>,
        auth_value: Option<&[u8]>,
        timeout_seconds: i32,
        body: Vec<u8>,
    ) -> Attempt {
        let url = match self.check_endpoint(endpoint).await {
            Ok(u) => u,
            Err(e) => return Attempt::refused(format!("endpoint refused by the outbound URL check: {e}")),
        };
        let mut secrets: Vec<SecretString> = Vec::with_capacity(2);
        match self.sealer.open(signing_secret) {
            Ok(s) => secrets.push(s),
            Err(_) => return Attempt::refused("signing secret cannot be decrypted (encryption key changed?)"),
        }
        if let Some(Ok(prev)) = previous_secret.map(|p| self.sealer.open(p)) {
            secrets.push(prev);
        }
        let refs: Vec<&SecretString> = secrets.iter().collect();
        let now = chrono::Utc::now().timestamp();
        let headers = match signing::headers(&refs, webhook_id, now, &body) {
            Ok(h) => h,
            Err(e) => return Attempt::refused(format!("cannot sign: {e}")),
        };
        let mut req = self
            .http
            .post(url)
            .timeout(Duration::from_secs(timeout_seconds.clamp(1, 300) as u64))
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let (Some(name), Some(sealed)) = (auth_name, auth_value) {
            match self.sealer.open(sealed) {
                Ok(v) => req = req.header(name, v.expose_secret()),
                Err(_) => return Attempt::refused("auth header value cannot be decrypted"),
            }
        }
        let started = Instant::now();
        let result = req.body(body).send().await;
        let duration = started.elapsed();
        match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u32>().ok());
                let verdict = classify(status, retry_after);
                let error = if verdict == Verdict::Delivered {
                    None
                } else {
                    let snippet = read_snippet(resp).await;
                    Some(clip(&if snippet.is_empty() {
                        format!("HTTP {status}")
                    } else {
                        format!("HTTP {status}: {snippet}")
                    }))
                };
                Attempt {
                    verdict,
                    status_code: Some(status as i32),
                    error,
                    payload_bytes: None,
                    duration,
                }
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                Attempt {
                    verdict: Verdict::Retry { after: None },
                    status_code: None,
                    error: Some(clip(&format!("{kind}: {}", e.without_url()))),
                    payload_bytes: None,
                    duration,
                }
            }
        }
    }

    /// Records attempt `n` and, when it is to be retried, its due time and (for a wait SQS can
    /// hold) the next attempt's message — together.
    async fn record(&self, id: i64, n: i32, t: &Target, a: Attempt) -> Result<(), DbError> {
        let mut client = self.pool.get().await?;
        let made = n + 1;
        let retry_delay = match a.verdict {
            Verdict::Retry { after } if made <= t.retry_count => Some(
                after
                    .unwrap_or_else(|| {
                        let own: Option<Vec<u32>> = t
                            .retry_schedule
                            .as_ref()
                            .map(|s| s.iter().map(|d| (*d).max(1) as u32).collect());
                        let schedule = own.as_deref().unwrap_or(&self.settings.retry_schedule);
                        retry_delay_seconds(schedule, made as u32)
                    })
                    .clamp(1, MAX_RETRY_DELAY_SECONDS),
            ),
            _ => None,
        };
        let outcome = match (&a.verdict, retry_delay) {
            (Verdict::Delivered, _) => "delivered",
            (_, Some(_)) => "retrying",
            _ => "failed",
        };
        crate::metrics::count("Deliveries", Some(("outcome", outcome)), 1);
        if outcome == "delivered" {
            // Ingest → delivered, the latency an agent sees (retries and enrichment included).
            let ms = (chrono::Utc::now() - t.ingested_at).num_milliseconds().max(0);
            crate::metrics::emit(
                &[],
                &[(
                    "IngestToDeliveredLatency",
                    ms as f64,
                    crate::metrics::Unit::Milliseconds,
                )],
            );
        }
        match (&a.verdict, retry_delay) {
            (Verdict::Delivered, _) => record_delivered(&mut client, id, n, t, &a).await,
            (_, Some(delay)) => self.record_retry(&mut client, id, n, t, &a, delay).await,
            (_, None) => record_dead(&client, id, n, t, &a).await,
        }
    }

    /// A failed attempt with retries left: its due time and, for a wait SQS can hold, the next
    /// attempt's message in the same transaction.
    async fn record_retry(
        &self,
        client: &mut Client,
        id: i64,
        n: i32,
        t: &Target,
        a: &Attempt,
        delay: u32,
    ) -> Result<(), DbError> {
        let made = n + 1;
        // SQS holds a message at most 15 minutes: a longer wait is only a due time, and the
        // sweeper queues the attempt once it is due (redrive_at = the due time).
        let queued = delay <= MAX_DELAY_SECONDS;
        let redrive_in = if queued {
            delay as i32 + REDRIVE_AFTER_SECONDS
        } else {
            delay as i32
        };
        let tx = client.transaction().await?;
        if !deliveries::record_retry(&tx, id, n, &a.stored(), delay as i32, redrive_in).await? {
            return Ok(()); // replayed meanwhile: the replay's message takes over
        }
        if !queued {
            tx.commit().await?;
            tracing::warn!(
                alert_id = t.alert_id, alert_uuid = %t.alert_uuid, delivery_uuid = %t.delivery_uuid,
                agent = %t.agent_name, status = ?a.status_code, error = a.error.as_deref().unwrap_or(""),
                attempt = made, retry_in_seconds = delay, "agent webhook failed; the sweeper retries it when due"
            );
            return Ok(());
        }
        let msg = DeliverRequest {
            v: 1,
            delivery_id: id,
            delivery_uuid: t.delivery_uuid,
            alert_uuid: t.alert_uuid,
            attempt: made,
        }
        .to_message(delay);
        let ids = outbox::enqueue(&*tx, std::slice::from_ref(&msg)).await?;
        tx.commit().await?;
        tracing::warn!(
            alert_id = t.alert_id, alert_uuid = %t.alert_uuid, delivery_uuid = %t.delivery_uuid,
            agent = %t.agent_name, status = a.status_code, error = a.error.as_deref().unwrap_or(""),
            attempt = made, retry_in_seconds = delay, "agent webhook failed; will retry"
        );
        let rows: Vec<(i64, NewMessage)> = ids.into_iter().zip([msg]).collect();
        if let Err(e) = self.outbox.send_committed(&**client, &rows).await {
            tracing::warn!(error = %e, "retry message left for the sweeper");
        }
        Ok(())
    }

    /// `POST /v1/agents/{uuid}/test`: one synthetic payload (`test: true`), no retries, nothing
    /// stored. `None` when the agent does not exist.
    pub async fn test_delivery(&self, agent_uuid: Uuid) -> Result<Option<TestResult>, DbError> {
        let client = self.pool.get().await?;
        let target = agents::test_target(&*client, agent_uuid).await?;
        drop(client);
        let Some(r) = target else { return Ok(None) };
        let name = &r.name;
        let body = json!({
            "event": "alert.enriched",
            "test": true,
            "alert": {
                "uuid": Uuid::nil(),
                "title": "Calseta test delivery",
                "severity": "Low",
                "source": "calseta",
                "status": "Open",
                "created_at": crate::enrich::providers::iso(chrono::Utc::now()),
            },
            "agent": {"uuid": agent_uuid, "name": name},
        });
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let a = self
            .post(
                &r.endpoint_url,
                &format!("test_{}", Uuid::new_v4()),
                &r.signing_secret_enc,
                r.previous_signing_secret_enc.as_deref(),
                r.auth_header_name.as_deref(),
                r.auth_header_value_enc.as_deref(),
                r.timeout_seconds,
                body,
            )
            .await;
        Ok(Some(TestResult {
            delivered: a.verdict == Verdict::Delivered,
            status_code: a.status_code,
            duration_ms: a.duration.as_millis() as u64,
            error: a.error,
        }))
    }
}

/// The first bytes of an error response, for `last_error` (agents often say why they refused).
async fn read_snippet(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < 512 {
        match tokio::time::timeout(Duration::from_secs(2), resp.chunk()).await {
            Ok(Ok(Some(chunk))) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    buf.truncate(512);
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A delivered attempt and its `agent_webhook_dispatched` event, in one transaction (no event
/// when the row had moved past attempt `n`).
async fn record_delivered(client: &mut Client, id: i64, n: i32, t: &Target, a: &Attempt) -> Result<(), DbError> {
    let made = n + 1;
    let duration_ms = a.duration.as_millis() as u64;
    let tx = client.transaction().await?;
    if let Some(alert_id) = deliveries::record_delivered(&tx, id, n, &a.stored()).await? {
        let mut events = Events::with_capacity(1);
        events.push(
            alert_id,
            EventType::AgentWebhookDispatched,
            json!({
                "agent_uuid": t.agent_uuid,
                "agent_name": t.agent_name,
                "delivery_uuid": t.delivery_uuid,
                "status_code": a.status_code,
                "attempt": made,
                "duration_ms": duration_ms,
            }),
        );
        activity::record(&tx, Actor::SYSTEM, &events).await?;
    }
    tx.commit().await?;
    tracing::info!(
        alert_id = t.alert_id, alert_uuid = %t.alert_uuid, delivery_uuid = %t.delivery_uuid,
        agent = %t.agent_name, status = a.status_code, attempt = made,
        duration_ms, "agent webhook delivered"
    );
    Ok(())
}

/// A failed attempt with no retry left (or one that would be refused again): dead.
async fn record_dead(client: &Client, id: i64, n: i32, t: &Target, a: &Attempt) -> Result<(), DbError> {
    deliveries::record_dead(&**client, id, n, &a.stored()).await?;
    tracing::error!(
        alert_id = t.alert_id, alert_uuid = %t.alert_uuid, delivery_uuid = %t.delivery_uuid,
        agent = %t.agent_name, status = a.status_code, error = a.error.as_deref().unwrap_or(""),
        attempts = n + 1, "agent webhook dead-lettered; replay with POST /v1/deliveries/{{uuid}}/replay"
    );
    Ok(())
}

/// Queues attempt 0 of the given deliveries (replay, trigger-agents) in the caller's
/// transaction; returns the outbox rows to send after the commit.
pub(crate) async fn enqueue_attempts(
    tx: &impl tokio_postgres::GenericClient,
    deliveries: &[(i64, Uuid, Uuid)],
) -> Result<Vec<(i64, NewMessage)>, DbError> {
    let msgs: Vec<NewMessage> = deliveries
        .iter()
        .map(|(id, uuid, alert_uuid)| {
            DeliverRequest {
                v: 1,
                delivery_id: *id,
                delivery_uuid: *uuid,
                alert_uuid: *alert_uuid,
                attempt: 0,
            }
            .to_message(0)
        })
        .collect();
    let ids = outbox::enqueue(tx, &msgs).await?;
    Ok(ids.into_iter().zip(msgs).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_split_into_delivered_retry_and_reject() {
        assert_eq!(classify(200, None), Verdict::Delivered);
        assert_eq!(classify(204, None), Verdict::Delivered);
        for s in [500, 502, 503, 504] {
            assert_eq!(classify(s, None), Verdict::Retry { after: None }, "{s}");
        }
        assert_eq!(classify(429, Some(7)), Verdict::Retry { after: Some(7) });
        assert_eq!(classify(408, None), Verdict::Retry { after: None });
        for s in [301, 302, 400, 401, 403, 404, 410, 413, 422] {
            assert_eq!(classify(s, None), Verdict::Reject, "{s}");
        }
    }

    #[test]
    fn retry_delays_follow_the_schedule_with_a_little_jitter() {
        let s = DEFAULT_RETRY_SCHEDULE;
        for n in 1..=10u32 {
            let full = s[(n as usize).min(s.len()) - 1];
            for _ in 0..50 {
                let d = retry_delay_seconds(&s, n);
                assert!(d >= full - full / 10 && d <= full, "retry {n}: {d} vs {full}");
            }
        }
        // The default spans more than a day, so an agent outage of hours ends delivered.
        let total: u32 = s.iter().sum();
        assert!(total >= 86_400, "{total}");
        assert_eq!(retry_delay_seconds(&[1], 7), 1);
        assert!(retry_delay_seconds(&[], 1) >= 1);
        assert!(retry_delay_seconds(&[u32::MAX], 1) <= MAX_RETRY_DELAY_SECONDS);
    }

    #[test]
    fn schedules_parse_from_seconds_lists() {
        assert_eq!(parse_schedule("5, 300,1800").expect("ok"), vec![5, 300, 1800]);
        for bad in ["", "0", "5,,6", "x", "604801", &vec!["1"; 21].join(",")] {
            assert!(parse_schedule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stored_errors_are_clipped_and_single_line() {
        let long = "x".repeat(1000) + "\nsecond line";
        let c = clip(&long);
        assert!(c.chars().count() <= MAX_ERROR_CHARS + 1);
        assert!(!c.contains('\n'));
    }
}
