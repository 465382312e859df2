//! Logging setup: JSON lines in Lambda and CI, compact human text in `calseta dev` on a terminal.
//!
//! The JSON lines are flat: the level, the message, the fields of every enclosing span (an
//! alert's `alert_uuid`, `trace_id`, `request_id`, an HTTP request's `request_id`) and the
//! event's own fields, all top-level members, as CloudWatch Logs Insights and Powertools users
//! expect (`filter alert_uuid = "…"`). Numbers stay JSON numbers.

use std::fmt;

use serde_json::{Map, Value};
use tracing::{
    field::{Field, Visit},
    Event, Subscriber,
};
use tracing_subscriber::{
    fmt::{
        format::{JsonFields, Writer},
        writer::EitherWriter,
        FmtContext, FormatEvent, FormatFields, FormattedFields,
    },
    registry::LookupSpan,
    EnvFilter,
};

/// Output style of the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Installs the global subscriber once; later calls are no-ops (tests call it many times).
/// Logs go to stdout, the Lambda log stream.
pub fn init(format: LogFormat) {
    init_to(format, false);
}

fn init_to(format: LogFormat, stderr: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Chosen per event without an allocation (a boxed writer would cost one per log line).
        .with_writer(move || {
            if stderr {
                EitherWriter::A(std::io::stderr())
            } else {
                EitherWriter::B(std::io::stdout())
            }
        });
    let _ = match format {
        // Lambda adds its own timestamps and request ids.
        LogFormat::Json => builder.fmt_fields(JsonFields::new()).event_format(FlatJson).try_init(),
        LogFormat::Text => builder.compact().try_init(),
    };
}

/// JSON for Lambda, tests and any non-terminal output; text otherwise.
pub fn init_from_env() {
    init_to(format_from_env(), false);
}

/// As [`init_from_env`], on stderr: the CLI keeps stdout for its own output
/// (`calseta bench --json`, `calseta status --json`).
pub fn init_from_env_to_stderr() {
    init_to(format_from_env(), true);
}

fn format_from_env() -> LogFormat {
    let json = std::env::var("CALSETA_LOG_FORMAT")
        .map(|v| v == "json")
        .unwrap_or_else(|_| std::env::var("AWS_LAMBDA_FUNCTION_NAME").is_ok());
    if json {
        LogFormat::Json
    } else {
        LogFormat::Text
    }
}

/// One flat JSON object per event (see the module doc). Needs [`JsonFields`] as the field
/// formatter, which stores each span's fields as a JSON object.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut line = Map::new();
        line.insert("level".into(), Value::from(event.metadata().level().as_str()));
        // Outermost span first, so an inner span's field wins over an outer one of the same name.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>() {
                    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(fields.as_str()) {
                        line.extend(m);
                    }
                }
            }
        }
        event.record(&mut Fields(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Records an event's fields as JSON values of their own type.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer into a shared buffer, for capturing lines.
    #[derive(Clone, Default)]
    pub(crate) struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn span_fields_are_top_level_and_numbers_stay_numbers() {
        let buf = Buffer::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("request", request_id = "r-1");
            let _o = outer.enter();
            let inner = tracing::info_span!("alert", alert_uuid = "a-1", request_id = "r-2");
            let _i = inner.enter();
            tracing::warn!(status = Some(200), attempt = 2_u32, ok = true, ratio = 0.5, "delivered");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.trim()).expect(&text);
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "delivered");
        assert_eq!(line["alert_uuid"], "a-1");
        assert_eq!(line["request_id"], "r-2", "the inner span wins");
        assert_eq!(line["status"], 200);
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["ok"], true);
        assert_eq!(line["ratio"], 0.5);
    }
}
