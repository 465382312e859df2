//! Correlation ids that follow an alert through the pipeline: the X-Ray trace header (so one
//! alert is one trace) and the id of the ingest request that created it (so an operator can go
//! from an API answer to the enrich and dispatch log lines of its alert).
//!
//! Both travel as message attributes, stored with the outbox row so a message the sweeper sends
//! later still carries them. A consumer's batch runner reads them from each record and makes
//! them current for that batch ([`scope`]); the messages the handlers then write for an alert
//! pick them up in `to_message` ([`NewMessage::correlated`](super::outbox::NewMessage::correlated)).
//! A task-local rather than parameters: the ids cross every layer between the runner and the
//! message constructors, and none of those layers has any other use for them.

use std::{collections::HashMap, future::Future};

use aws_lambda_events::event::sqs::SqsMessage;
use uuid::Uuid;

/// Message attribute with the producer's X-Ray trace header (`Root=1-…;Parent=…;Sampled=…`).
pub const TRACE_ATTRIBUTE: &str = "trace_header";
/// Message attribute with the ingest request id.
pub(crate) const REQUEST_ID_ATTRIBUTE: &str = "request_id";
/// The SQS system attribute AWS fills from `MessageSystemAttributes.AWSTraceHeader`.
pub(crate) const AWS_TRACE_SYSTEM_ATTRIBUTE: &str = "AWSTraceHeader";
/// Longest value accepted from a message or a header (SQS allows 1 KiB for the trace header).
const MAX_LEN: usize = 1024;

/// The correlation ids of one alert (or one request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids {
    pub trace_header: Option<String>,
    pub request_id: Option<String>,
}

fn clean(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= MAX_LEN && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
}

impl Ids {
    pub fn new(trace_header: Option<&str>, request_id: Option<&str>) -> Self {
        Self {
            trace_header: clean(trace_header),
            request_id: clean(request_id),
        }
    }

    /// From an SQS record: the `AWSTraceHeader` system attribute (set by AWS when the producer
    /// sent one), else the `trace_header` message attribute (emulators that drop system
    /// attributes); the `request_id` message attribute.
    pub fn from_record(record: &SqsMessage) -> Self {
        let attr = |k: &str| record.message_attributes.get(k).and_then(|a| a.string_value.as_deref());
        let trace = record
            .attributes
            .get(AWS_TRACE_SYSTEM_ATTRIBUTE)
            .map(String::as_str)
            .or_else(|| attr(TRACE_ATTRIBUTE));
        Self::new(trace, attr(REQUEST_ID_ATTRIBUTE))
    }

    /// The trace id alone (the `Root=` part), for log lines.
    pub fn trace_id(&self) -> Option<&str> {
        trace_id(self.trace_header.as_deref()?)
    }
}

/// `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1` → the Root id.
pub fn trace_id(header: &str) -> Option<&str> {
    header
        .split(';')
        .find_map(|part| part.trim().strip_prefix("Root="))
        .filter(|r| !r.is_empty())
}

/// The ids current in a batch (by alert) or a request (`default`).
#[derive(Debug, Clone, Default)]
pub struct Correlation {
    pub default: Ids,
    pub by_alert: HashMap<Uuid, Ids>,
}

impl Correlation {
    /// One request's ids, for every alert it creates.
    pub fn request(ids: Ids) -> Self {
        Self {
            default: ids,
            by_alert: HashMap::new(),
        }
    }

    /// The ids of each alert of a batch, keyed by the records' `alert_uuid` attribute (the first
    /// record of an alert wins).
    pub fn from_records(records: &[SqsMessage]) -> Self {
        let mut by_alert = HashMap::new();
        for r in records {
            if let Some(uuid) = record_alert_uuid(r) {
                by_alert.entry(uuid).or_insert_with(|| Ids::from_record(r));
            }
        }
        Self {
            default: Ids::default(),
            by_alert,
        }
    }

    pub fn for_alert(&self, alert: Uuid) -> &Ids {
        self.by_alert.get(&alert).unwrap_or(&self.default)
    }
}

/// The `alert_uuid` message attribute every pipeline message carries.
pub(crate) fn record_alert_uuid(record: &SqsMessage) -> Option<Uuid> {
    record
        .message_attributes
        .get("alert_uuid")
        .and_then(|a| a.string_value.as_deref())
        .and_then(|v| Uuid::parse_str(v).ok())
}

tokio::task_local! {
    static CURRENT: Correlation;
}

/// Runs `f` with `correlation` current.
pub async fn scope<F: Future>(correlation: Correlation, f: F) -> F::Output {
    CURRENT.scope(correlation, f).await
}

/// The ids current for `alert` (empty outside any [`scope`]).
pub fn current(alert: Uuid) -> Ids {
    CURRENT.try_with(|c| c.for_alert(alert).clone()).unwrap_or_default()
}

/// A span carrying an alert's ids, for the log lines of work on that alert. The JSON log format
/// puts span fields on every line (see `telemetry`).
pub fn span(alert: Option<Uuid>, ids: &Ids) -> tracing::Span {
    let span = tracing::info_span!(
        "alert",
        alert_uuid = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        request_id = tracing::field::Empty
    );
    if let Some(a) = alert {
        span.record("alert_uuid", tracing::field::display(a));
    }
    if let Some(t) = ids.trace_id() {
        span.record("trace_id", t);
    }
    if let Some(r) = &ids.request_id {
        span.record("request_id", r.as_str());
    }
    span
}

/// Runs `f` (a log line) inside the span of `alert` with its current ids: for handlers that
/// work on many alerts at once and log about one of them.
pub(crate) fn in_alert<R>(alert: Uuid, f: impl FnOnce() -> R) -> R {
    span(Some(alert), &current(alert)).in_scope(f)
}

#[cfg(test)]
mod tests {
    use aws_lambda_events::event::sqs::SqsMessageAttribute;

    use super::*;

    fn attr(v: &str) -> SqsMessageAttribute {
        let mut a = SqsMessageAttribute::default();
        a.string_value = Some(v.into());
        a.data_type = Some("String".into());
        a
    }

    const HEADER: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

    #[test]
    fn the_system_attribute_wins_and_the_message_attribute_is_the_fallback() {
        let alert = Uuid::new_v4();
        let mut r = SqsMessage::default();
        r.message_attributes
            .insert("alert_uuid".into(), attr(&alert.to_string()));
        r.message_attributes
            .insert(TRACE_ATTRIBUTE.into(), attr("Root=1-aaaaaaaa-bbbbbbbbbbbbbbbbbbbbbbbb"));
        r.message_attributes.insert(REQUEST_ID_ATTRIBUTE.into(), attr("req-42"));
        let ids = Ids::from_record(&r);
        assert_eq!(ids.trace_id(), Some("1-aaaaaaaa-bbbbbbbbbbbbbbbbbbbbbbbb"));
        assert_eq!(ids.request_id.as_deref(), Some("req-42"));

        r.attributes.insert(AWS_TRACE_SYSTEM_ATTRIBUTE.into(), HEADER.into());
        let ids = Ids::from_record(&r);
        assert_eq!(ids.trace_header.as_deref(), Some(HEADER));
        assert_eq!(ids.trace_id(), Some("1-5759e988-bd862e3fe1be46a994272793"));

        let c = Correlation::from_records(&[r]);
        assert_eq!(c.for_alert(alert), &ids);
        assert_eq!(c.for_alert(Uuid::new_v4()), &Ids::default());
    }

    #[test]
    fn junk_values_are_dropped_not_passed_on() {
        let mut r = SqsMessage::default();
        r.message_attributes
            .insert(REQUEST_ID_ATTRIBUTE.into(), attr("has space\n"));
        r.message_attributes
            .insert(TRACE_ATTRIBUTE.into(), attr(&"x".repeat(2000)));
        assert_eq!(Ids::from_record(&r), Ids::default());
        assert_eq!(trace_id("Parent=1;Sampled=0"), None);
        assert_eq!(trace_id("Root=;Parent=1"), None);
    }

    #[tokio::test]
    async fn messages_written_inside_a_scope_carry_the_alerts_ids() {
        let alert = Uuid::new_v4();
        let ids = Ids::new(Some(HEADER), Some("req-1"));
        let mut c = Correlation::default();
        c.by_alert.insert(alert, ids.clone());
        assert_eq!(current(alert), Ids::default(), "nothing outside a scope");
        let inside = scope(c, async { (current(alert), current(Uuid::new_v4())) }).await;
        assert_eq!(inside, (ids, Ids::default()));
        let req = scope(Correlation::request(Ids::new(None, Some("r"))), async {
            current(alert)
        })
        .await;
        assert_eq!(req.request_id.as_deref(), Some("r"));
    }
}
