//! The enrichment engine: consumes the `enrich` queue (one message = one alert × indicator), runs
//! every configured provider that takes the indicator's type concurrently, serves and fills the
//! shared cache, spends budgets through the [`Governor`], and completes alerts (fan-in).
//!
//! A batch of messages is handled together: one read of link states, one cache read, one
//! provider call per distinct (indicator, provider) miss, and one transaction that completes the
//! links and the alerts whose last link this was. That transaction locks the alert rows first, so
//! two batches finishing an alert's last two links cannot both miss (or both see) completion.
//!
//! Outcomes per message:
//! - a link already done (a duplicate delivery) or gone (alert deleted): acknowledged, no calls;
//! - a provider out of budget for a short while: the message comes back after that wait, the
//!   link stays pending (deadline sweep still dispatches the alert on time);
//! - everything else is final for this link: success, failed (auth, quota, upstream after
//!   retries) or skipped, recorded per provider on the link for the payload.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures::future::join_all;
use rand::Rng;
use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;
use tokio_postgres::types::Type;
use tracing::Instrument;

use super::cache;
use super::governor::{Admission, Governor};
use super::never_send::NeverSendPolicy;
use super::provider::{Lookup, Provider, ProviderError, MAX_REQUEUE_DELAY};
use super::registry::ProviderSet;
use crate::db::stmt;
use crate::db::DbError;
use crate::domain::indicator::IndicatorType;
use crate::domain::malice::Malice;
use crate::queue::batch::{BatchRunner, HandlerError};
use crate::queue::correlation::in_alert;
use crate::queue::messages::EnrichRequest;
use crate::queue::outbox::{NewMessage, Outbox};

mod fanin;
mod result;

use result::extracted;
pub(crate) use result::{ProviderResult, ResultStatus};

/// Tunables; the defaults follow providers spec §1.5.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Calls per lookup for timeouts, connection errors and 5xx (1 + 2 retries).
    pub max_attempts: u32,
    /// Full-jitter exponential backoff base between those attempts.
    pub backoff_base: Duration,
    /// How long a fetch lease is held at most (covers all attempts).
    pub lease_hold: Duration,
    /// How long a message waits for another instance's fetch before coming back later.
    pub lease_wait: Duration,
    /// Wait after a 429 without `Retry-After` or reset header.
    pub default_retry_after: Duration,
    /// A message throttled this many times is finished with what it has (no endless deferral).
    pub max_deferrals: u32,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_attempts: 3,
            backoff_base: Duration::from_millis(500),
            lease_hold: Duration::from_secs(45),
            lease_wait: Duration::from_secs(20),
            default_retry_after: Duration::from_secs(60),
            max_deferrals: 8,
        }
    }
}

/// One provider outcome: final, or "come back after this wait" (with the result to record if
/// the message is finished anyway).
#[derive(Debug, Clone)]
enum Fetch {
    Done(ProviderResult),
    Defer(Duration, ProviderResult),
}

/// The answer of one provider call (before caching).
enum Called {
    Found(Lookup),
    Final(Fetch),
}

/// A (indicator, provider) pair with no fresh cached result.
struct Miss {
    indicator_id: i64,
    kind: IndicatorType,
    value: String,
    provider: Arc<dyn Provider>,
    /// The alerts of the batch waiting on this lookup, for its log lines.
    alerts: Arc<str>,
}

fn pairs(ms: &[Miss]) -> Vec<(String, i64)> {
    ms.iter()
        .map(|m| (m.provider.name().to_string(), m.indicator_id))
        .collect()
}

/// The on-demand answer of `POST /v1/enrichments`.
#[derive(Debug, Clone, PartialEq)]
pub struct OnDemand {
    pub kind: IndicatorType,
    pub value: String,
    pub results: BTreeMap<String, ProviderResult>,
    pub enriched_at: DateTime<Utc>,
}

impl OnDemand {
    pub fn to_json(&self) -> Value {
        let now = Utc::now();
        let results: Map<String, Value> = self.results.iter().map(|(k, r)| (k.clone(), r.to_json(now))).collect();
        json!({
            "type": self.kind.as_str(),
            "value": self.value,
            "results": results,
            "enriched_at": super::providers::iso(self.enriched_at),
        })
    }
}

/// What to do with one message of a batch after the provider phase.
enum Plan {
    /// Acknowledge without changes (duplicate, or the link is gone).
    Ack,
    /// Finish the link: new state plus per-provider entries.
    Finish {
        state: &'static str,
        provider_status: Map<String, Value>,
    },
    /// Keep the link pending, remember final results so far, come back after the wait.
    Defer {
        wait: Duration,
        provider_status: Map<String, Value>,
    },
}

/// Settings and shared state of the enrichment step, built once per process.
pub struct Engine {
    pool: Pool,
    outbox: Outbox,
    providers: ProviderSet,
    governor: Governor,
    policy: Arc<NeverSendPolicy>,
    slots: HashMap<&'static str, Arc<Semaphore>>,
    settings: EngineSettings,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("providers", &self.providers)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub fn new(pool: Pool, outbox: Outbox, providers: ProviderSet, policy: Arc<NeverSendPolicy>) -> Self {
        Self::with_settings(pool, outbox, providers, policy, EngineSettings::default())
    }

    pub fn with_settings(
        pool: Pool,
        outbox: Outbox,
        providers: ProviderSet,
        policy: Arc<NeverSendPolicy>,
        settings: EngineSettings,
    ) -> Self {
        let slots = providers
            .providers
            .iter()
            .map(|p| (p.name(), Arc::new(Semaphore::new(providers.concurrency))))
            .collect();
        let governor = Governor::new(providers.budgets.clone());
        Engine {
            pool,
            outbox,
            providers,
            governor,
            policy,
            slots,
            settings,
        }
    }

    pub fn providers(&self) -> &ProviderSet {
        &self.providers
    }

    /// The `enrich` Lambda's (and `calseta dev`'s) SQS handler.
    pub async fn handle_event(&self, runner: &BatchRunner, event: SqsEvent) -> SqsBatchResponse {
        runner.run_all(event, |records| self.handle_records(records)).await
    }

    /// The engine as a queue [`Handler`](crate::queue::Handler) for local consumers (the same
    /// call the Lambda makes per event).
    pub fn handler(self: &Arc<Self>, runner: BatchRunner) -> crate::queue::Handler {
        let engine = self.clone();
        crate::queue::handler(move |event| {
            let (engine, runner) = (engine.clone(), runner.clone());
            async move { engine.handle_event(&runner, event).await }
        })
    }

    /// Handles one batch of records; one result per record, in order.
    pub async fn handle_records(&self, records: Vec<SqsMessage>) -> Vec<Result<(), HandlerError>> {
        let mut results: Vec<Option<Result<(), HandlerError>>> = Vec::with_capacity(records.len());
        let mut valid = Vec::new();
        for (i, r) in records.iter().enumerate() {
            match parse_record(r) {
                Ok(item) => {
                    results.push(None);
                    valid.push((i, item));
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        if !valid.is_empty() {
            let items: Vec<(EnrichRequest, u32)> = valid.iter().map(|(_, it)| it.clone()).collect();
            match self.process(&items).await {
                Ok(outcomes) => {
                    for ((i, _), o) in valid.iter().zip(outcomes) {
                        results[*i] = Some(o);
                    }
                }
                Err(e) => {
                    let err = HandlerError::from(e);
                    for (i, _) in &valid {
                        results[*i] = Some(Err(err.clone()));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(HandlerError::retryable("not processed"))))
            .collect()
    }

    /// Processes enrich requests (with their receive counts). Database trouble fails the whole
    /// batch as retryable; per-message outcomes otherwise.
    #[allow(
        clippy::too_many_lines,
        reason = "long but linear; a split along its phases is issue #11's next step"
    )]
    pub async fn process(&self, items: &[(EnrichRequest, u32)]) -> Result<Vec<Result<(), HandlerError>>, DbError> {
        // 1. Link states and the cache, in one pipelined round trip.
        let (links, cached) = self.read_state(items).await?;
        // 2. Which indicators need work, and what earlier deliveries already settled.
        let mut t = triage(items, &links);
        if t.active.is_empty() {
            return Ok(t.plans.into_iter().map(|_| Ok(())).collect());
        }
        // 3. Never-send values; cache hits; one fetch per distinct (indicator, provider) miss.
        let (blocked, outcomes) = self.look_up(items, &t, &cached).await?;
        // 4. Per message: finish, or come back later.
        let mut malice_by_indicator: BTreeMap<i64, Malice> = BTreeMap::new();
        for &i in &t.active {
            let (req, receives) = &items[i];
            let (plan, malice) = self.plan(req, *receives, blocked.get(&req.indicator_id).copied(), &outcomes);
            if let Some(m) = malice {
                malice_by_indicator
                    .entry(req.indicator_id)
                    .and_modify(|x| *x = (*x).max(m))
                    .or_insert(m);
            }
            t.plans[i] = Some(plan);
        }
        // 5. One transaction: links, indicators, completed alerts and their dispatch messages.
        self.commit(items, &t.plans, &malice_by_indicator).await?;
        Ok(t.plans
            .into_iter()
            .zip(items)
            .map(|(p, (req, _))| match p {
                Some(Plan::Defer { wait, .. }) => Err(HandlerError::retry_after(
                    format!(
                        "alert {} indicator {}: provider budget spent; retry later",
                        req.alert_uuid, req.indicator_id
                    ),
                    wait,
                )),
                _ => Ok(()),
            })
            .collect())
    }

    /// The links of the messages (state and provider statuses) and the fresh cache of their
    /// indicators, in one pipelined round trip.
    async fn read_state(&self, items: &[(EnrichRequest, u32)]) -> Result<(LinkStates, CacheHits), DbError> {
        let alert_ids: Vec<i64> = items.iter().map(|(r, _)| r.alert_id).collect();
        let ind_ids: Vec<i64> = items.iter().map(|(r, _)| r.indicator_id).collect();
        let mut distinct_ids = ind_ids.clone();
        distinct_ids.sort_unstable();
        distinct_ids.dedup();
        let (link_rows, cached) = {
            let client = self.pool.get().await?;
            let params = [(&alert_ids as _, Type::INT8_ARRAY), (&ind_ids as _, Type::INT8_ARRAY)];
            let links = stmt::query(
                &*client,
                "SELECT l.alert_id, l.indicator_id, l.enrichment_state, l.provider_status
                 FROM alert_indicators l
                 JOIN unnest($1::bigint[], $2::bigint[]) AS t(a, i) ON l.alert_id = t.a AND l.indicator_id = t.i",
                &params,
            );
            let cache = cache::read_fresh(&*client, &distinct_ids);
            let (links, cache) = tokio::join!(links, cache);
            (links?, cache?)
        };
        let links: LinkStates = link_rows
            .iter()
            .map(|r| {
                let ps = match r.try_get::<_, Value>("provider_status")? {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                let key = (r.try_get("alert_id")?, r.try_get("indicator_id")?);
                Ok((key, (r.try_get::<_, String>("enrichment_state")?, ps)))
            })
            .collect::<Result<_, tokio_postgres::Error>>()?;

        Ok((links, cached))
    }

    /// Never-send verdicts of the active indicators, and every (indicator, provider) outcome:
    /// cache hits, results earlier deliveries settled, and fetches for the rest.
    async fn look_up(
        &self,
        items: &[(EnrichRequest, u32)],
        t: &Triage,
        cached: &CacheHits,
    ) -> Result<(HashMap<i64, &'static str>, HashMap<(i64, &'static str), Fetch>), DbError> {
        let blocked: HashMap<i64, &'static str> = t
            .indicators
            .iter()
            .filter_map(|(id, (kind, value))| self.policy.check(*kind, value).map(|r| (*id, r)))
            .collect();
        let mut outcomes: HashMap<(i64, &'static str), Fetch> = HashMap::new();
        let mut misses: Vec<Miss> = Vec::new();
        let mut alerts_of: HashMap<i64, Vec<String>> = HashMap::new();
        for &i in &t.active {
            let req = &items[i].0;
            let list = alerts_of.entry(req.indicator_id).or_default();
            let uuid = req.alert_uuid.to_string();
            if !list.contains(&uuid) {
                list.push(uuid);
            }
        }
        for (id, (kind, value)) in &t.indicators {
            let alerts: Arc<str> = alerts_of.get(id).map(|l| l.join(",")).unwrap_or_default().into();
            if blocked.contains_key(id) {
                continue;
            }
            for p in self.providers.providers.iter().filter(|p| p.supports(*kind)) {
                let key = (*id, p.name().to_string());
                if let Some(c) = cached.get(&key) {
                    crate::metrics::emit(
                        &[("provider", p.name()), ("outcome", "cache_hit")],
                        &[("EnrichmentLookups", 1.0, crate::metrics::Unit::Count)],
                    );
                    outcomes.insert((*id, p.name()), Fetch::Done(ProviderResult::from_cached(c, true)));
                } else if let Some(r) = t.settled.get(&key) {
                    outcomes.insert((*id, p.name()), Fetch::Done(r.clone()));
                } else {
                    misses.push(Miss {
                        indicator_id: *id,
                        kind: *kind,
                        value: value.clone(),
                        provider: p.clone(),
                        alerts: alerts.clone(),
                    });
                }
            }
        }
        outcomes.extend(self.resolve(misses).await?);

        Ok((blocked, outcomes))
    }

    /// One message's plan from its providers' outcomes, and the verdict when a provider
    /// answered.
    fn plan(
        &self,
        req: &EnrichRequest,
        receives: u32,
        blocked: Option<&'static str>,
        outcomes: &HashMap<(i64, &'static str), Fetch>,
    ) -> (Plan, Option<Malice>) {
        if let Some(reason) = blocked {
            let mut ps = Map::new();
            ps.insert("_validation".into(), never_sent(reason).link_entry());
            let plan = Plan::Finish {
                state: "skipped",
                provider_status: ps,
            };
            return (plan, None);
        }
        let mut ps = Map::new();
        let mut wait: Option<Duration> = None;
        let mut verdicts = Vec::new();
        let mut any_success = false;
        let mut any_final_failure = false;
        let can_defer = receives < self.settings.max_deferrals;
        for p in self
            .providers
            .providers
            .iter()
            .filter(|p| p.supports(req.indicator_type))
        {
            match outcomes.get(&(req.indicator_id, p.name())) {
                Some(Fetch::Done(r)) => {
                    if r.status == ResultStatus::Success {
                        any_success = true;
                        verdicts.extend(r.malice);
                    } else if r.status == ResultStatus::Failed {
                        any_final_failure = true;
                    }
                    ps.insert(p.name().to_string(), r.link_entry());
                }
                Some(Fetch::Defer(w, _)) if can_defer => {
                    wait = Some(wait.map_or(*w, |x| x.min(*w)));
                }
                Some(Fetch::Defer(_, r)) => {
                    any_final_failure = true;
                    ps.insert(p.name().to_string(), r.link_entry());
                }
                None => {}
            }
        }
        let malice = any_success.then(|| Malice::worst(verdicts));
        let plan = match wait {
            Some(w) => Plan::Defer {
                wait: w,
                provider_status: ps,
            },
            None => Plan::Finish {
                state: if any_success || !any_final_failure {
                    "done"
                } else {
                    "failed"
                },
                provider_status: ps,
            },
        };
        (plan, malice)
    }

    /// Resolves cache misses: takes the fetch leases it can (single flight across instances),
    /// fetches those while waiting for the others' results to appear in the cache.
    async fn resolve(&self, misses: Vec<Miss>) -> Result<HashMap<(i64, &'static str), Fetch>, DbError> {
        if misses.is_empty() {
            return Ok(HashMap::new());
        }
        let taken: HashSet<(String, i64)> = {
            let client = self.pool.get().await?;
            cache::take_leases(&*client, &pairs(&misses), self.settings.lease_hold)
                .await?
                .into_iter()
                .collect()
        };
        let (mine, others): (Vec<Miss>, Vec<Miss>) = misses
            .into_iter()
            .partition(|m| taken.contains(&(m.provider.name().to_string(), m.indicator_id)));
        let (a, b) = tokio::join!(self.fetch_and_store(mine), self.await_others(others));
        let mut out = a?;
        out.extend(b?);
        Ok(out)
    }

    /// Calls the providers for leased misses concurrently, then stores the successes and gives
    /// the leases back in one statement.
    async fn fetch_and_store(&self, mine: Vec<Miss>) -> Result<HashMap<(i64, &'static str), Fetch>, DbError> {
        let mut out = HashMap::new();
        if mine.is_empty() {
            return Ok(out);
        }
        // A provider's retry and failure lines name the alerts waiting on the lookup.
        let called = join_all(mine.iter().map(|m| {
            self.call(&m.provider, m.kind, &m.value)
                .instrument(tracing::info_span!("lookup", alert_uuid = &*m.alerts))
        }))
        .await;
        let mut to_store = Vec::new();
        let mut first_err = None;
        for (m, c) in mine.iter().zip(called) {
            let name = m.provider.name();
            match c {
                Ok(Called::Found(lookup)) => {
                    let (found_ttl, nf_ttl) = cache::ttl(name, m.kind);
                    to_store.push(cache::NewResult {
                        indicator_id: m.indicator_id,
                        provider: name.to_string(),
                        found: lookup.found,
                        block: extracted(&lookup),
                        malice: lookup.malice,
                        malice_reason: lookup.malice_reason.clone(),
                        raw: lookup.raw,
                        ttl: if lookup.found { found_ttl } else { nf_ttl },
                    });
                }
                Ok(Called::Final(f)) => {
                    out.insert((m.indicator_id, name), f);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        // Leases are given back whatever happened, so waiters are not held up.
        let stored = {
            let client = self.pool.get().await?;
            cache::store_and_release(&*client, &to_store, &pairs(&mine)).await?
        };
        if let Some(e) = first_err {
            return Err(e);
        }
        for c in stored {
            if let Some(m) = mine
                .iter()
                .find(|m| m.provider.name() == c.provider && m.indicator_id == c.indicator_id)
            {
                out.insert(
                    (m.indicator_id, m.provider.name()),
                    Fetch::Done(ProviderResult::from_cached(&c, false)),
                );
            }
        }
        Ok(out)
    }

    /// Waits for misses another instance is fetching; takes over a lease its holder gave up
    /// without a result; defers what is still missing after `lease_wait`.
    async fn await_others(&self, mut waiting: Vec<Miss>) -> Result<HashMap<(i64, &'static str), Fetch>, DbError> {
        let mut out = HashMap::new();
        let deadline = tokio::time::Instant::now() + self.settings.lease_wait;
        while !waiting.is_empty() {
            let pause = rand::rng().random_range(10..30);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let ids: Vec<i64> = waiting.iter().map(|m| m.indicator_id).collect();
            let (hits, taken) = {
                let client = self.pool.get().await?;
                let hits = cache::read_fresh(&*client, &ids).await?;
                let rest: Vec<(String, i64)> = waiting
                    .iter()
                    .filter(|m| !hits.contains_key(&(m.indicator_id, m.provider.name().to_string())))
                    .map(|m| (m.provider.name().to_string(), m.indicator_id))
                    .collect();
                let taken: HashSet<(String, i64)> = cache::take_leases(&*client, &rest, self.settings.lease_hold)
                    .await?
                    .into_iter()
                    .collect();
                (hits, taken)
            };
            let mut mine = Vec::new();
            let mut still = Vec::new();
            for m in waiting {
                let name = m.provider.name();
                if let Some(c) = hits.get(&(m.indicator_id, name.to_string())) {
                    out.insert(
                        (m.indicator_id, name),
                        Fetch::Done(ProviderResult::from_cached(c, true)),
                    );
                } else if taken.contains(&(name.to_string(), m.indicator_id)) {
                    mine.push(m);
                } else {
                    still.push(m);
                }
            }
            out.extend(self.fetch_and_store(mine).await?);
            waiting = still;
            if !waiting.is_empty() && tokio::time::Instant::now() >= deadline {
                for m in waiting.drain(..) {
                    out.insert(
                        (m.indicator_id, m.provider.name()),
                        Fetch::Defer(
                            Duration::from_secs(5),
                            ProviderResult::problem(
                                m.provider.name(),
                                ResultStatus::Failed,
                                "timeout",
                                "another instance's lookup did not finish in time",
                                None,
                            ),
                        ),
                    );
                }
            }
        }
        Ok(out)
    }

    /// One provider call through the governor, with retries for timeouts and 5xx. Nothing is
    /// cached here.
    #[allow(
        clippy::too_many_lines,
        reason = "long but linear; a split along its phases is issue #11's next step"
    )]
    async fn call(&self, provider: &Arc<dyn Provider>, kind: IndicatorType, value: &str) -> Result<Called, DbError> {
        let name = provider.name();
        let _slot = match self.slots.get(name) {
            Some(s) => Some(s.clone().acquire_owned().await),
            None => None,
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let admission = self.governor.admit(&self.pool, name).await?;
            match admission {
                Admission::Granted => {}
                Admission::Wait(w) => {
                    crate::metrics::emit(
                        &[("provider", name), ("outcome", "quota_wait")],
                        &[("EnrichmentLookups", 1.0, crate::metrics::Unit::Count)],
                    );
                    let e = ProviderError::throttled(Some(w));
                    let r = ProviderResult::from_error(name, &e);
                    return Ok(Called::Final(match e {
                        ProviderError::RateLimited { .. } => Fetch::Defer(w, r),
                        _ => Fetch::Done(r),
                    }));
                }
                Admission::Misconfigured => {
                    return Ok(Called::Final(Fetch::Done(ProviderResult::problem(
                        name,
                        ResultStatus::Failed,
                        "auth_failed",
                        "the provider rejected our credentials recently; not called",
                        None,
                    ))))
                }
                Admission::CircuitOpen => {
                    return Ok(Called::Final(Fetch::Done(ProviderResult::problem(
                        name,
                        ResultStatus::Failed,
                        "upstream_error",
                        "circuit open after repeated upstream failures; not called",
                        None,
                    ))))
                }
            }
            let outcome = provider.lookup(kind, value).await;
            let label = match &outcome {
                Ok(_) => "found",
                Err(ProviderError::RateLimited { .. }) => "rate_limited",
                Err(ProviderError::QuotaExhausted { .. }) => "quota_exhausted",
                Err(ProviderError::AuthFailed(_)) => "auth_failed",
                Err(_) => "error",
            };
            crate::metrics::emit(
                &[("provider", name), ("outcome", label)],
                &[("EnrichmentLookups", 1.0, crate::metrics::Unit::Count)],
            );
            if let Some(pause) = provider.rate_limit_state().and_then(|s| s.pause_until) {
                let wait = (pause - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                if !wait.is_zero() {
                    let client = self.pool.get().await?;
                    self.governor.rate_limited(&*client, name, wait).await?;
                }
            }
            match outcome {
                Ok(lookup) => {
                    self.governor.succeeded(&self.pool, name).await?;
                    return Ok(Called::Found(lookup));
                }
                Err(e @ ProviderError::RateLimited { .. }) => {
                    let wait = e.retry_after().unwrap_or(self.settings.default_retry_after);
                    let client = self.pool.get().await?;
                    self.governor.rate_limited(&*client, name, wait).await?;
                    let e = ProviderError::throttled(Some(wait));
                    let r = ProviderResult::from_error(name, &e);
                    return Ok(Called::Final(match e {
                        ProviderError::RateLimited { .. } => Fetch::Defer(wait, r),
                        _ => Fetch::Done(r),
                    }));
                }
                Err(e @ ProviderError::QuotaExhausted { .. }) => {
                    let wait = e.retry_after().unwrap_or(MAX_REQUEUE_DELAY);
                    let client = self.pool.get().await?;
                    self.governor.rate_limited(&*client, name, wait).await?;
                    return Ok(Called::Final(Fetch::Done(ProviderResult::from_error(name, &e))));
                }
                Err(e @ ProviderError::AuthFailed(_)) => {
                    tracing::error!(provider = name, error = %e, "provider rejected our credentials; marked misconfigured");
                    let client = self.pool.get().await?;
                    self.governor.auth_failed(&*client, name, &e.to_string()).await?;
                    return Ok(Called::Final(Fetch::Done(ProviderResult::from_error(name, &e))));
                }
                Err(e) if e.is_retryable() && attempt < self.settings.max_attempts => {
                    // Full jitter: uniform in [0, base * 2^(attempt-1)].
                    let cap = self.settings.backoff_base.as_millis() as u64 * (1u64 << (attempt - 1).min(10));
                    let sleep = rand::rng().random_range(0..=cap.max(1));
                    tracing::warn!(provider = name, attempt, error = %e, "provider call failed; retrying");
                    tokio::time::sleep(Duration::from_millis(sleep)).await;
                }
                Err(e) => {
                    if e.is_retryable() {
                        let client = self.pool.get().await?;
                        self.governor.transient_failure(&*client, name, &e.to_string()).await?;
                    }
                    tracing::warn!(provider = name, error = %e, "provider lookup failed");
                    return Ok(Called::Final(Fetch::Done(ProviderResult::from_error(name, &e))));
                }
            }
        }
    }

    /// `POST /v1/enrichments`: every configured provider for the type, cache first, nothing
    /// stored. A never-send value gets only `_validation`.
    pub async fn enrich_now(&self, kind: IndicatorType, value: &str) -> Result<OnDemand, DbError> {
        let mut results = BTreeMap::new();
        if let Some(reason) = self.policy.check(kind, value) {
            results.insert("_validation".to_string(), never_sent(reason));
            return Ok(OnDemand {
                kind,
                value: value.to_string(),
                results,
                enriched_at: Utc::now(),
            });
        }
        let providers: Vec<&Arc<dyn Provider>> = self.providers.providers.iter().filter(|p| p.supports(kind)).collect();
        let cached = if providers.is_empty() {
            HashMap::new()
        } else {
            let client = self.pool.get().await?;
            let id: Option<i64> = stmt::query_opt(
                &*client,
                "SELECT id FROM indicators WHERE type = $1 AND value = $2",
                &[(&kind.as_str(), Type::TEXT), (&value, Type::TEXT)],
            )
            .await?
            .map(|r| r.try_get("id"))
            .transpose()?;
            match id {
                Some(id) => cache::read_fresh(&*client, &[id])
                    .await?
                    .into_iter()
                    .map(|((_, p), c)| (p, c))
                    .collect(),
                None => HashMap::new(),
            }
        };
        let misses: Vec<&Arc<dyn Provider>> = providers
            .iter()
            .copied()
            .filter(|p| !cached.contains_key(p.name()))
            .collect();
        for p in &providers {
            if let Some(c) = cached.get(p.name()) {
                results.insert(p.name().to_string(), ProviderResult::from_cached(c, true));
            }
        }
        let called = join_all(misses.iter().map(|p| self.call(p, kind, value))).await;
        for (p, c) in misses.iter().zip(called) {
            let r = match c? {
                Called::Found(lookup) => ProviderResult::from_lookup(p.name(), &lookup, Utc::now()),
                Called::Final(Fetch::Done(r) | Fetch::Defer(_, r)) => r,
            };
            results.insert(p.name().to_string(), r);
        }
        Ok(OnDemand {
            kind,
            value: value.to_string(),
            results,
            enriched_at: Utc::now(),
        })
    }
}

fn parse_record(r: &SqsMessage) -> Result<(EnrichRequest, u32), HandlerError> {
    let body = r.body.as_deref().unwrap_or("");
    let req: EnrichRequest =
        serde_json::from_str(body).map_err(|e| HandlerError::permanent(format!("not an enrich request: {e}")))?;
    if req.v != 1 {
        return Err(HandlerError::permanent(format!(
            "unsupported enrich request version {}",
            req.v
        )));
    }
    let receives = r
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    Ok((req, receives))
}

/// An alert completed now, with its dispatch message (outbox row id, message) to send after
/// commit.
pub(crate) type Completed = (i64, uuid::Uuid, (i64, NewMessage));

/// Rows of `calseta_complete_alerts` / `calseta_finish_enrichment` (alert id, uuid, outbox row)
/// as the alerts completed now with the dispatch message to send.
pub(crate) fn completions(rows: &[tokio_postgres::Row]) -> Result<Vec<Completed>, tokio_postgres::Error> {
    rows.iter()
        .map(|r| {
            let attrs: Value = r.try_get("attributes")?;
            let attributes = attrs
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            let msg = NewMessage {
                queue: crate::queue::QueueName::Dispatch,
                body: r.try_get("body")?,
                attributes,
                delay_seconds: 0,
            };
            Ok((
                r.try_get("alert_id")?,
                r.try_get("alert_uuid")?,
                (r.try_get("outbox_id")?, msg),
            ))
        })
        .collect()
}

/// Completes `alert_ids` now (`reason`: `enrichment`, `deadline`), in the caller's transaction:
/// each gets its final enrichment status and one dispatch message in the outbox.
pub(crate) async fn complete_now(
    tx: &deadpool_postgres::Transaction<'_>,
    alert_ids: &[i64],
    reason: &str,
) -> Result<Vec<Completed>, tokio_postgres::Error> {
    let rows = stmt::query(
        tx,
        "SELECT alert_id, alert_uuid, outbox_id, body, attributes FROM calseta_complete_alerts($1, $2)",
        &[(&alert_ids, Type::INT8_ARRAY), (&reason, Type::TEXT)],
    )
    .await?;
    completions(&rows)
}

/// The sweeper's duty: alerts past their enrichment deadline are completed with what they have
/// and queued for dispatch (reason `deadline`). Late results still land on their links and in
/// the cache; they never cause a second dispatch.
pub(crate) async fn complete_overdue(outbox: &Outbox, limit: i64) -> Result<usize, DbError> {
    let mut client = outbox.pool().get().await?;
    let tx = client.transaction().await?;
    let due: Vec<i64> = stmt::query(
        &tx,
        "SELECT id FROM alerts WHERE enrichment_status = 'Pending' AND enrichment_deadline_at < now()
         ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        &[(&limit, Type::INT8)],
    )
    .await?
    .iter()
    .map(|r| r.try_get("id"))
    .collect::<Result<_, _>>()?;
    if due.is_empty() {
        return Ok(0);
    }
    let completed = complete_now(&tx, &due, "deadline").await?;
    tx.commit().await?;
    for (id, uuid, _) in &completed {
        tracing::warn!(alert_id = id, alert_uuid = %uuid, "enrichment deadline passed; dispatching with partial enrichment");
    }
    let n = completed.len();
    let rows: Vec<(i64, NewMessage)> = completed.into_iter().map(|(_, _, m)| m).collect();
    if !rows.is_empty() {
        if let Err(e) = outbox.send_committed(&*client, &rows).await {
            tracing::warn!(error = %e, "outbox send after deadline failed; sweeper will resend");
        }
    }
    Ok(n)
}

/// Link state and provider statuses, keyed by (alert id, indicator id).
type LinkStates = HashMap<(i64, i64), (String, Map<String, Value>)>;
/// Fresh cached results, keyed by (indicator id, provider).
type CacheHits = HashMap<(i64, String), cache::CachedResult>;

/// The messages sorted out: `plans[i]` is `Some(Ack)` for a message with nothing to do, `None`
/// for the `active` ones; their indicators and the provider results already settled.
struct Triage {
    active: Vec<usize>,
    plans: Vec<Option<Plan>>,
    indicators: BTreeMap<i64, (IndicatorType, String)>,
    settled: HashMap<(i64, String), ProviderResult>,
}

fn triage(items: &[(EnrichRequest, u32)], links: &LinkStates) -> Triage {
    let mut active: Vec<usize> = Vec::new();
    let mut plans: Vec<Option<Plan>> = Vec::with_capacity(items.len());
    let mut indicators: BTreeMap<i64, (IndicatorType, String)> = BTreeMap::new();
    let mut settled: HashMap<(i64, String), ProviderResult> = HashMap::new();
    for (i, (req, _)) in items.iter().enumerate() {
        match links.get(&(req.alert_id, req.indicator_id)) {
            None => {
                in_alert(req.alert_uuid, || {
                    tracing::info!(
                        alert_id = req.alert_id,
                        indicator_id = req.indicator_id,
                        "link no longer exists (alert deleted); nothing to enrich"
                    )
                });
                plans.push(Some(Plan::Ack));
            }
            Some((state, _)) if state != "pending" => {
                in_alert(req.alert_uuid, || {
                    tracing::debug!(alert_id = req.alert_id, "link already {state}; duplicate message")
                });
                plans.push(Some(Plan::Ack));
            }
            Some((_, ps)) => {
                active.push(i);
                plans.push(None);
                indicators.insert(req.indicator_id, (req.indicator_type, req.value.clone()));
                for (provider, v) in ps {
                    if let Some(r) = ProviderResult::from_link_entry(provider, v) {
                        settled.insert((req.indicator_id, provider.clone()), r);
                    }
                }
            }
        }
    }
    Triage {
        active,
        plans,
        indicators,
        settled,
    }
}

/// The result recorded instead of any lookup for a value the never-send policy refuses.
fn never_sent(reason: &str) -> ProviderResult {
    ProviderResult::problem(
        "_validation",
        ResultStatus::Skipped,
        reason,
        format!("Enrichment skipped: {reason}"),
        None,
    )
}
