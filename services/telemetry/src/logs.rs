//! The process-wide `tracing` subscriber.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Environment variable selecting the log format: `text` (default) or `json`.
pub const LOG_FORMAT_ENV: &str = "NAVARCH_LOG_FORMAT";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Reads [`LOG_FORMAT_ENV`]; anything but `json` (any case) means text.
    pub fn from_env() -> Self {
        Self::parse(std::env::var(LOG_FORMAT_ENV).ok().as_deref())
    }

    fn parse(value: Option<&str>) -> Self {
        match value {
            Some(value) if value.trim().eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Text,
        }
    }
}

/// The formatting layer for `format`, writing to `writer`; `ansi` colours text output.
fn format_layer<S, W>(
    format: LogFormat,
    writer: W,
    ansi: bool,
) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => layer.with_ansi(ansi).boxed(),
        LogFormat::Json => layer.json().with_current_span(true).boxed(),
    }
}

/// Filter used when `RUST_LOG` is unset: `info`, with OpenTelemetry's own start-up chatter
/// held to warnings.
const DEFAULT_FILTER: &str =
    "info,opentelemetry=warn,opentelemetry_sdk=warn,opentelemetry_prometheus=warn";

fn env_filter() -> EnvFilter {
    match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::builder()
            .with_default_directive(LevelFilter::INFO.into())
            .parse_lossy(directives),
        _ => EnvFilter::new(DEFAULT_FILTER),
    }
}

/// Installs the global subscriber (with `otel`, the span exporter's layer, when traces are
/// exported); returns false if one was already installed.
pub(crate) fn install(
    format: LogFormat,
    otel: Option<Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync + 'static>>,
) -> bool {
    tracing_subscriber::registry()
        .with(otel)
        .with(env_filter())
        .with(format_layer(
            format,
            std::io::stderr,
            std::io::stderr().is_terminal(),
        ))
        .try_init()
        .is_ok()
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(format: LogFormat) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::registry().with(format_layer(
            format,
            move || writer.clone(),
            false,
        ));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("reconcile", key = "default/web");
            let _entered = span.enter();
            tracing::info!(replicas = 3, "scaled");
        });
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn format_follows_the_environment_value() {
        assert_eq!(LogFormat::parse(None), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some("text")), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some("JSON")), LogFormat::Json);
        assert_eq!(LogFormat::parse(Some("yaml")), LogFormat::Text);
    }

    #[test]
    fn json_format_writes_one_object_per_event() {
        let out = capture(LogFormat::Json);
        let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["fields"]["message"], "scaled");
        assert_eq!(line["fields"]["replicas"], 3);
        assert_eq!(line["span"]["key"], "default/web");
    }

    #[test]
    fn text_format_writes_plain_lines() {
        let out = capture(LogFormat::Text);
        assert!(out.contains("INFO"), "{out}");
        assert!(out.contains("reconcile{key=\"default/web\"}"), "{out}");
        assert!(out.contains("scaled replicas=3"), "{out}");
        assert!(serde_json::from_str::<serde_json::Value>(out.trim()).is_err());
    }
}
