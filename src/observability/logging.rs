//! The logging plane: every lifecycle event and error goes through `tracing`; this module
//! installs the subscriber that renders them.
//!
//! `stderr` (the default) and `stdout` lines are human: `ts level [worker_id pid] message k=v ...`; `jsonl` writes one
//! object per record with the same fields. Lifecycle events are `tracing` events with target
//! `lifecycle` at the configured `lifecycle_events.level`, so `level: debug` events are hidden
//! when the logging level is `info`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};

use crate::config::{LogExporter, LogLevel, Logging};

/// Who is logging: `supervisor` or a worker id, and the process id.
#[derive(Debug, Clone)]
pub struct LogIdentity {
    pub name: String,
    pub pid: u32,
}

impl LogIdentity {
    pub fn current(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            pid: std::process::id(),
        }
    }
}

/// Collects an event's message and fields.
#[derive(Default)]
pub(crate) struct Fields {
    pub(crate) message: String,
    pub(crate) pairs: Vec<(String, String)>,
}

/// Separates packed `key=value` pairs (a control character no field value contains).
const PACK_SEPARATOR: char = '\u{1f}';
const PACKED: &str = "lifecycle_fields";

/// Packs an event's dynamic fields into one `tracing` field value (`tracing` macros need
/// static field names); every layer unpacks them into separate fields.
pub fn pack_fields<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut packed = String::new();
    for (key, value) in pairs {
        if !packed.is_empty() {
            packed.push(PACK_SEPARATOR);
        }
        packed.push_str(key);
        packed.push('=');
        packed.extend(value.chars().filter(|c| *c != PACK_SEPARATOR));
    }
    packed
}

impl Fields {
    fn unpack(&mut self, packed: &str) {
        for pair in packed.split(PACK_SEPARATOR).filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            self.pairs.push((key.to_string(), value.to_string()));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == PACKED {
            self.unpack(value);
        } else if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.pairs
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == PACKED {
            self.unpack(&text);
        } else if field.name() == "message" {
            self.message = text;
        } else {
            self.pairs.push((field.name().to_string(), text));
        }
    }
}

/// RFC 3339 UTC timestamp with milliseconds.
pub fn timestamp(unix_ms: u64) -> String {
    let secs = (unix_ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::calendar::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The fields of an event with the identity's defaults for `worker_id` and `pid`.
pub(crate) fn resolve(identity: &LogIdentity, fields: &Fields) -> (String, String) {
    let find = |name: &str| {
        fields
            .pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    (
        find("worker_id").unwrap_or_else(|| identity.name.clone()),
        find("pid").unwrap_or_else(|| identity.pid.to_string()),
    )
}

/// One human line per event on stderr or stdout.
struct ConsoleLayer {
    identity: LogIdentity,
    to_stdout: bool,
}

impl<S: Subscriber> Layer<S> for ConsoleLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let (worker, pid) = resolve(&self.identity, &fields);
        let mut line = format!(
            "{} {:<5} [{worker} {pid}] {}",
            timestamp(now_ms()),
            event.metadata().level(),
            fields.message
        );
        for (k, v) in &fields.pairs {
            if k != "worker_id" && k != "pid" {
                let _ = write!(line, " {k}={v}");
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
                crate::json::push_string(&mut line, v);
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
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Installs the global subscriber for `logging` (once per process; later calls are ignored).
pub fn init(logging: &Logging, identity: LogIdentity) -> Result<(), LogInitError> {
    let filter = level_filter(logging.level);
    let mut layers: Vec<Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>> = Vec::new();
    for exporter in &logging.exporters {
        match exporter {
            LogExporter::Stderr | LogExporter::Stdout => layers.push(Box::new(ConsoleLayer {
                identity: identity.clone(),
                to_stdout: matches!(exporter, LogExporter::Stdout),
            })),
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
            LogExporter::OtelLogsOtlp(settings) => {
                match super::otlp_logs::OtlpLogLayer::new(settings, identity.clone()) {
                    Ok(layer) => layers.push(Box::new(layer)),
                    // Logging must not stop a run: say so on stderr and go on without it.
                    Err(e) => eprintln!("{e}"),
                }
            }
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
