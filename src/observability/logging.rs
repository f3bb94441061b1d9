//! The logging plane: every lifecycle event and error goes through `tracing`; this module
//! installs the subscriber that renders them.
//!
//! `stderr` (the default) and `stdout` lines are human: `ts level [worker_id pid] message k=v ...`; `jsonl` writes one
//! object per record with the same fields. Lifecycle events are `tracing` events with target
//! `lifecycle` at the configured `lifecycle_events.level`, so `level: debug` events are hidden
//! when the logging level is `info`.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Mutex;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};

use crate::config::{LogExporter, LogLevel, Logging};

pub(crate) use super::log_record::{Fields, now_ms, resolve};
pub use super::log_record::{LogIdentity, LogValue, pack_fields, timestamp};

/// One human line per event on stderr or stdout.
struct ConsoleLayer {
    identity: LogIdentity,
    to_stdout: bool,
    /// Stderr is a terminal, where the CLI may be drawing a progress bar: each line first
    /// clears the line the cursor is on, so it replaces the bar's frame instead of leaving
    /// it above (the bar redraws below on its next tick). On a line already empty this is
    /// a no-op; a redirected stderr never gets the escape.
    clears_line: bool,
}

/// Return to the line's start and erase it (ANSI `CR`, `EL 2`).
const CLEAR_LINE: &str = "\r\x1b[2K";

impl<S: Subscriber> Layer<S> for ConsoleLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let (worker, pid) = resolve(&self.identity, &fields);
        // Messages and values may quote outside text (paths, input): control characters are
        // escaped, so one event is one line that nothing can forge.
        let shown = |text: &str| crate::text::printable(text).into_owned();
        let mut line = format!(
            "{}{} {:<5} [{} {}] {}",
            if self.clears_line { CLEAR_LINE } else { "" },
            timestamp(now_ms()),
            event.metadata().level(),
            shown(&worker),
            shown(&pid),
            shown(&fields.message)
        );
        for (k, v) in &fields.pairs {
            if k != "worker_id" && k != "pid" {
                let _ = write!(line, " {k}={}", shown(&v.to_string()));
            }
        }
        line.push('\n');
        // One write per line so that lines of concurrent processes do not interleave.
        let _ = if self.to_stdout {
            std::io::stdout().lock().write_all(line.as_bytes())
        } else {
            std::io::stderr().lock().write_all(line.as_bytes())
        };
    }
}

/// One JSON object per event, appended to a file.
struct JsonlLayer {
    identity: LogIdentity,
    file: Mutex<std::io::LineWriter<std::fs::File>>,
}

impl<S: Subscriber> Layer<S> for JsonlLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let (worker, pid) = resolve(&self.identity, &fields);
        let mut line = Vec::with_capacity(256);
        line.extend_from_slice(b"{\"ts\":");
        crate::json::push_string(&mut line, &timestamp(now_ms()));
        line.extend_from_slice(b",\"level\":");
        crate::json::push_string(&mut line, event.metadata().level().as_str());
        line.extend_from_slice(b",\"worker_id\":");
        crate::json::push_string(&mut line, &worker);
        line.extend_from_slice(format!(",\"pid\":{pid},\"message\":").as_bytes());
        crate::json::push_string(&mut line, &fields.message);
        for (k, v) in &fields.pairs {
            if k != "worker_id" && k != "pid" {
                line.push(b',');
                crate::json::push_string(&mut line, k);
                line.push(b':');
                v.push_json(&mut line);
            }
        }
        line.extend_from_slice(b"}\n");
        if let Ok(mut file) = self.file.lock() {
            let _ = file.write_all(&line);
        }
    }
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

/// Opening a log destination failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot open log file {path}: {source}")]
pub struct LogInitError {
    /// The log file.
    pub path: PathBuf,
    /// The system's error.
    #[source]
    pub source: std::io::Error,
}

/// The filter of every log destination: `RUST_LOG` when it is set (tracing's `EnvFilter`
/// directives, e.g. `warn,stream_kernel::supervisor=debug`; workers inherit it), else the
/// config's `level` (which `--log-level` and `--quiet` set). A `RUST_LOG` that does not parse is
/// said on stderr and the config's level applies.
fn log_filter(level: LogLevel) -> tracing_subscriber::EnvFilter {
    let fallback =
        || tracing_subscriber::EnvFilter::default().add_directive(level_filter(level).into());
    match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => {
            tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
                eprintln!("warning: RUST_LOG={directives:?} is not a log filter ({e}); logging at level {level:?}");
                fallback()
            })
        }
        _ => fallback(),
    }
}

/// Installs the global subscriber for `logging` (once per process; later calls are ignored).
pub fn init(logging: &Logging, identity: LogIdentity) -> Result<(), LogInitError> {
    let filter = log_filter(logging.level);
    let mut layers: Vec<Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>> = Vec::new();
    for exporter in &logging.exporters {
        match exporter {
            LogExporter::Stderr | LogExporter::Stdout => {
                let to_stdout = matches!(exporter, LogExporter::Stdout);
                layers.push(Box::new(ConsoleLayer {
                    identity: identity.clone(),
                    to_stdout,
                    clears_line: !to_stdout && std::io::stderr().is_terminal(),
                }))
            }
            LogExporter::Jsonl { path } => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| LogInitError {
                        path: path.clone(),
                        source,
                    })?;
                layers.push(Box::new(JsonlLayer {
                    identity: identity.clone(),
                    file: Mutex::new(std::io::LineWriter::new(file)),
                }));
            }
            #[cfg(feature = "otlp")]
            LogExporter::OtelLogsOtlp(settings) => {
                match super::otlp_logs::OtlpLogLayer::new(settings, identity.clone()) {
                    Ok(layer) => layers.push(Box::new(layer)),
                    // Logging must not stop a run: say so on stderr and go on without it.
                    Err(e) => eprintln!("{e}"),
                }
            }
            #[cfg(not(feature = "otlp"))]
            LogExporter::OtelLogsOtlp(_) => eprintln!(
                "log exporter `otel_logs_otlp`: this build of stream-kernel leaves out the `otlp` feature"
            ),
        }
    }
    let subscriber = tracing_subscriber::registry().with(layers.with_filter(filter));
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(())
}

/// The `tracing` level of lifecycle events for a config's `lifecycle_events.level`.
pub fn lifecycle_level(level: crate::config::LifecycleLevel) -> Level {
    match level {
        crate::config::LifecycleLevel::Info => Level::INFO,
        crate::config::LifecycleLevel::Debug => Level::DEBUG,
    }
}
