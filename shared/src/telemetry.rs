//! Logging setup: JSON lines in Lambda and CI, compact human text in `calseta dev` on a terminal.

use tracing_subscriber::{fmt, EnvFilter};

/// Output style of the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Installs the global subscriber once; later calls are no-ops (tests call it many times).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_target(false);
    let _ = match format {
        // Lambda adds its own timestamps and request ids; keep the JSON flat for CloudWatch Insights.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .without_time()
            .try_init(),
        LogFormat::Text => builder.compact().try_init(),
    };
}

/// JSON for Lambda, tests and any non-terminal output; text otherwise.
pub fn init_from_env() {
    let json = std::env::var("CALSETA_LOG_FORMAT")
        .map(|v| v == "json")
        .unwrap_or_else(|_| std::env::var("AWS_LAMBDA_FUNCTION_NAME").is_ok());
    init(if json { LogFormat::Json } else { LogFormat::Text });
}
