//! Ingest (pipeline step 1): parse and normalize the SIEM's body (`crate::sources`), store
//! everything in one transaction (`store`), then send the outbox messages that start
//! enrichment. Processing order and errors follow sources spec §6 and §9. Authentication (keys,
//! source credentials, rate limits) belongs to the front door (`api/ingest.rs`).

pub mod credentials;
pub mod limits;
pub mod store;

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{json, value::RawValue, Value};
use uuid::Uuid;

use crate::{
    config::Limits,
    db::DbError,
    enrich::never_send::NeverSendPolicy,
    queue::outbox::Outbox,
    sources::{source_for, ParseContext, ParsedItem, SourceName},
};
use store::{Actor, AlertToStore, Archive, Stored};

/// Why a body was not ingested; the front door maps each to its error envelope.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IngestError {
    #[error("the body is not valid JSON")]
    InvalidJson,
    /// The source's parser refused the body; `errors` lists the fields.
    #[error("the body is not a valid alert for this source")]
    InvalidPayload { errors: Value },
    #[error("{count} alerts in one request; at most {max} are accepted")]
    TooManyAlerts { count: usize, max: usize },
    /// Every alert of the body has a field too long to store.
    #[error("alert fields exceed their limits")]
    FieldsTooLong { errors: Vec<Value> },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the store returned fewer alerts than it was given")]
    Internal,
}

/// The ingest service over the parts it needs; no HTTP types.
#[derive(Clone, Copy)]
pub(crate) struct Ingestor<'a> {
    pub limits: &'a Limits,
    pub never_send: &'a NeverSendPolicy,
    pub outbox: &'a Outbox,
}

/// One item of the 202 response.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct ItemResult {
    pub index: usize,
    pub alert_uuid: Option<Uuid>,
    pub status: &'static str,
    pub is_duplicate: bool,
    pub duplicate_count: Option<i32>,
    pub error: Option<Value>,
}

/// The 202 response body's `data`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct IngestResult {
    pub alert_uuid: Option<Uuid>,
    pub status: &'static str,
    pub is_duplicate: bool,
    pub duplicate_count: Option<i32>,
    pub items: Vec<ItemResult>,
}

/// Stores each alert in its own transaction (the body is archived with the first one stored).
/// Returns what was stored, in order, and the positions in `to_store` the database refused.
async fn store_each(
    ing: Ingestor<'_>,
    client: &mut deadpool_postgres::Client,
    to_store: &[AlertToStore<'_>],
    archive: &Archive<'_>,
    actor: &Actor<'_>,
    release: store::Release,
) -> Result<(store::StoreResult, Vec<usize>), IngestError> {
    let mut all = store::StoreResult {
        stored: Vec::new(),
        outbox: Vec::new(),
    };
    let mut failed = Vec::new();
    for (j, one) in to_store.iter().enumerate() {
        let archive = Archive {
            request_id: archive.request_id,
            source: archive.source,
            headers: archive.headers.clone(),
            body: archive.body,
            write: all.stored.is_empty(),
        };
        let outcome = async {
            let tx = client.transaction().await?;
            let r = store::store(&tx, std::slice::from_ref(one), &archive, actor, ing.never_send, release).await?;
            tx.commit().await?;
            Ok::<_, DbError>(r)
        }
        .await;
        match outcome {
            Ok(r) => {
                all.stored.extend(r.stored);
                all.outbox.extend(r.outbox);
            }
            Err(e) if e.is_bad_data() => {
                tracing::warn!(error = %e, index = j, "alert refused by the database");
                failed.push(j);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((all, failed))
}

/// A batch item's `error`: the standard error object (api spec §3) of what a request holding
/// only that alert would have answered.
fn item_error(code: &str, message: &str, errors: Vec<Value>) -> Value {
    json!({ "code": code, "message": message, "details": { "errors": errors } })
}

/// Replaces NUL characters (which Postgres text and jsonb refuse) in every string and key.
fn without_nul(v: Value) -> Value {
    match v {
        Value::String(s) if s.contains('\0') => Value::String(s.replace('\0', "\u{FFFD}")),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nul).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (k.replace('\0', "\u{FFFD}"), without_nul(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The exact text of each batch element, when the body is an array or an `{"alerts": [...]}`.
fn element_texts(text: &str) -> Option<Vec<&str>> {
    if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(text) {
        return Some(items.iter().map(|r| r.get()).collect());
    }
    #[derive(serde::Deserialize)]
    struct Batch<'a> {
        #[serde(borrow)]
        alerts: Vec<&'a RawValue>,
    }
    serde_json::from_str::<Batch>(text)
        .ok()
        .map(|b| b.alerts.iter().map(|r| r.get()).collect())
}

/// The exact JSON text of `raw` as it appeared in the body (numbers keep every digit), or a
/// serialization of it when it cannot be located.
fn raw_text<'a>(
    raw: &Value,
    whole: &'a str,
    whole_value: &Value,
    elements: &Option<Vec<&'a str>>,
    index: usize,
    exact: bool,
) -> Cow<'a, str> {
    if exact {
        if raw == whole_value {
            return Cow::Borrowed(whole);
        }
        if let Some(t) = elements.as_ref().and_then(|e| e.get(index)) {
            if serde_json::from_str::<Value>(t).is_ok_and(|v| &v == raw) {
                return Cow::Borrowed(t);
            }
        }
    }
    Cow::Owned(raw.to_string())
}

impl Ingestor<'_> {
    /// Parses `text` as `source` sends it, stores what is valid (one transaction, retried on
    /// deadlocks; alert by alert when the database refuses the batch) and sends the outbox.
    /// `key_prefix`: the API key that delivered it, recorded as the actor.
    pub async fn ingest(
        self,
        client: &mut deadpool_postgres::Client,
        source: SourceName,
        extra_fields: &[(String, crate::domain::indicator::IndicatorType)],
        text: &str,
        key_prefix: Option<&str>,
        archive: &Archive<'_>,
    ) -> Result<IngestResult, IngestError> {
        process(self, client, source, extra_fields, text, key_prefix, archive).await
    }
}

/// Parse, per-alert limits, store (with retries), then one result per item.
async fn process(
    ing: Ingestor<'_>,
    client: &mut deadpool_postgres::Client,
    source: SourceName,
    extra_fields: &[(String, crate::domain::indicator::IndicatorType)],
    text: &str,
    key_prefix: Option<&str>,
    archive: &Archive<'_>,
) -> Result<IngestResult, IngestError> {
    if text.trim().is_empty() {
        return Err(IngestError::InvalidJson);
    }
    let mut value: Value = serde_json::from_str(text).map_err(|_| IngestError::InvalidJson)?;
    let exact = !text.contains("\\u0000");
    if !exact {
        value = without_nul(value);
    }
    let mut ctx = ParseContext::new(chrono::Utc::now());
    ctx.extra_indicator_fields = extra_fields.to_vec();
    let mut items = source_for(source)
        .parse(&value, &ctx)
        .map_err(|e| IngestError::InvalidPayload {
            errors: json!(e.errors()),
        })?;
    let max_alerts = ing.limits.max_alerts_per_request;
    if items.len() > max_alerts {
        return Err(IngestError::TooManyAlerts {
            count: items.len(),
            max: max_alerts,
        });
    }
    let mut refused = apply_limits(&ing, source, &mut items)?;
    let elements = if exact && items.len() > 1 {
        element_texts(text)
    } else {
        None
    };
    let raws: Vec<(usize, Cow<str>)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| match item {
            ParsedItem::Alert(a) if refused[i].is_none() => {
                Some((i, raw_text(&a.raw_payload, text, &value, &elements, i, exact)))
            }
            _ => None,
        })
        .collect();
    let to_store: Vec<AlertToStore> = raws
        .iter()
        .filter_map(|(i, raw)| match &items[*i] {
            ParsedItem::Alert(a) => Some(AlertToStore {
                alert: a,
                raw_json: raw.as_ref(),
            }),
            _ => None,
        })
        .collect();
    let indices: Vec<usize> = raws.iter().map(|(i, _)| *i).collect();
    let stored = Storing {
        ing,
        to_store: &to_store,
        indices: &indices,
        archive,
        actor: Actor {
            actor_type: "api",
            key_prefix,
        },
        batch: items.len() > 1,
    };
    let result = stored.run(client, &mut refused).await?;
    if !result.outbox.is_empty() {
        if let Err(e) = ing.outbox.send_committed(&**client, &result.outbox).await {
            // Committed; the sweeper sends these rows later.
            tracing::warn!(error = %e, "outbox send after ingest failed; sweeper will retry");
        }
    }
    let out_items = item_results(source, &items, &refused, result.stored)?;
    count_metrics(source, &out_items);
    let first = out_items
        .iter()
        .find(|i| i.status == "queued" || i.status == "deduplicated")
        .cloned();
    Ok(IngestResult {
        alert_uuid: first.as_ref().and_then(|f| f.alert_uuid),
        status: first.as_ref().map(|f| f.status).unwrap_or("skipped"),
        is_duplicate: first.as_ref().is_some_and(|f| f.is_duplicate),
        duplicate_count: first.and_then(|f| f.duplicate_count),
        items: out_items,
    })
}

/// Per-alert limits: an alert with a field too long to store is refused alone (the rest of a
/// batch is stored; the errors per item index); the others keep at most the configured number
/// of indicators. A request where nothing is left is refused whole.
fn apply_limits(
    ing: &Ingestor<'_>,
    source: SourceName,
    items: &mut [ParsedItem],
) -> Result<Vec<Option<Vec<Value>>>, IngestError> {
    let batch = items.len() > 1;
    let refused: Vec<Option<Vec<Value>>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            ParsedItem::Alert(a) => {
                let mut errors = limits::field_errors(a);
                if batch {
                    for e in &mut errors {
                        e["index"] = json!(i);
                    }
                }
                (!errors.is_empty()).then_some(errors)
            }
            _ => None,
        })
        .collect();
    let accepted = items
        .iter()
        .zip(&refused)
        .any(|(item, r)| r.is_none() && !matches!(item, ParsedItem::Rejected { .. }));
    if !accepted {
        if let Some(first) = refused.iter().flatten().next() {
            let errors: Vec<Value> = refused.iter().flatten().flatten().cloned().collect();
            tracing::info!(source = source.as_str(), field = %first[0]["field"], "alert refused: field too long");
            return Err(IngestError::FieldsTooLong { errors });
        }
    }
    let cap = ing.limits.max_indicators_per_alert;
    for (i, item) in items.iter_mut().enumerate() {
        if let (ParsedItem::Alert(a), None) = (item, &refused[i]) {
            if let Some(t) = limits::cap_indicators(a, cap, ing.never_send) {
                tracing::info!(source = source.as_str(), index = i, truncation = %t, "indicators capped");
            }
        }
    }
    Ok(refused)
}

/// The alerts to store (`indices`: their item index in the request) and where they came from.
struct Storing<'s, 'a> {
    ing: Ingestor<'s>,
    to_store: &'s [AlertToStore<'a>],
    indices: &'s [usize],
    archive: &'s Archive<'s>,
    actor: Actor<'s>,
    batch: bool,
}

impl Storing<'_, '_> {
    /// One transaction, retried on deadlocks; alert by alert when the database refuses the
    /// batch (the alerts it refuses are marked in `refused`).
    async fn run(
        &self,
        client: &mut deadpool_postgres::Client,
        refused: &mut [Option<Vec<Value>>],
    ) -> Result<store::StoreResult, IngestError> {
        let release = store::Release {
            deadline_secs: self.ing.limits.enrichment_deadline.as_secs_f64(),
            per_second: self.ing.limits.enrich_release_per_second,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = async {
                let tx = client.transaction().await?;
                let r = store::store(
                    &tx,
                    self.to_store,
                    self.archive,
                    &self.actor,
                    self.ing.never_send,
                    release,
                )
                .await?;
                tx.commit().await?;
                Ok::<_, DbError>(r)
            }
            .await;
            match outcome {
                Ok(r) => return Ok(r),
                // Deadlocks and serialization failures between concurrent batches: run it again.
                Err(e) if e.is_transient() && attempt < 3 => {
                    tracing::warn!(error = %e, attempt, "ingest transaction retried");
                }
                // Something in one alert the checks above did not foresee: store the alerts one
                // by one so the rest of the batch is kept and only that alert is refused.
                Err(e) if e.is_bad_data() => {
                    tracing::warn!(error = %e, alerts = self.to_store.len(), "batch refused by the database; storing alerts one by one");
                    let (r, failed) =
                        store_each(self.ing, client, self.to_store, self.archive, &self.actor, release).await?;
                    for j in failed {
                        let mut e = json!({
                            "field": "$",
                            "message": "the alert could not be stored (a value exceeds a storage limit)",
                            "type": "storage_limit",
                        });
                        if self.batch {
                            e["index"] = json!(self.indices[j]);
                        }
                        refused[self.indices[j]] = Some(vec![e]);
                    }
                    if r.stored.is_empty() {
                        let errors: Vec<Value> = refused.iter().flatten().flatten().cloned().collect();
                        return Err(IngestError::FieldsTooLong { errors });
                    }
                    return Ok(r);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// One result per item of the request, in order (`stored`: the stored alerts in order).
fn item_results(
    source: SourceName,
    items: &[ParsedItem],
    refused: &[Option<Vec<Value>>],
    stored: Vec<Stored>,
) -> Result<Vec<ItemResult>, IngestError> {
    let mut stored = stored.into_iter();
    let mut out_items = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        out_items.push(match item {
            ParsedItem::Alert(_) if refused[index].is_some() => ItemResult {
                index,
                alert_uuid: None,
                status: "rejected",
                is_duplicate: false,
                duplicate_count: None,
                error: Some(item_error(
                    "VALIDATION_ERROR",
                    "Alert fields exceed their limits",
                    refused[index].clone().unwrap_or_default(),
                )),
            },
            ParsedItem::Alert(a) => match stored.next() {
                Some(Stored::Created { uuid, .. }) => {
                    tracing::info!(alert_uuid = %uuid, source = source.as_str(), indicators = a.indicators.len(), "alert ingested");
                    ItemResult { index, alert_uuid: Some(uuid), status: "queued", is_duplicate: false, duplicate_count: None, error: None }
                }
                Some(Stored::Duplicate { uuid, duplicate_count, .. }) => {
                    tracing::info!(alert_uuid = %uuid, duplicate_count, "duplicate delivery");
                    ItemResult { index, alert_uuid: Some(uuid), status: "deduplicated", is_duplicate: true, duplicate_count: Some(duplicate_count), error: None }
                }
                None => return Err(IngestError::Internal),
            },
            ParsedItem::Skipped { reason } => ItemResult {
                index,
                alert_uuid: None,
                status: "skipped",
                is_duplicate: false,
                duplicate_count: None,
                error: Some(json!({ "reason": reason })),
            },
            ParsedItem::Rejected { errors } => ItemResult {
                index,
                alert_uuid: None,
                status: "rejected",
                is_duplicate: false,
                duplicate_count: None,
                error: Some(item_error(
                    "INVALID_PAYLOAD",
                    "The alert is not valid for this source",
                    errors.iter().map(|e| json!(e)).collect(),
                )),
            },
        });
    }
    Ok(out_items)
}

/// CloudWatch EMF (inside Lambda): counts per source and rejection reason.
fn count_metrics(source: SourceName, out_items: &[ItemResult]) {
    let tally = |status: &str| out_items.iter().filter(|i| i.status == status).count() as u64;
    crate::metrics::count("AlertsIngested", Some(("source", source.as_str())), tally("queued"));
    crate::metrics::count(
        "AlertsDeduplicated",
        Some(("source", source.as_str())),
        tally("deduplicated"),
    );
    crate::metrics::count("AlertsRejected", Some(("reason", "invalid_alert")), tally("rejected"));
    crate::metrics::count("AlertsSkipped", Some(("source", source.as_str())), tally("skipped"));
}
