//! One log record as every log destination sees it: who logged it (the process's identity),
//! its fields with their types, and how a lifecycle event's fields travel packed in one
//! string. The console, jsonl and OTLP destinations all read records through this.

use tracing::field::{Field, Visit};

/// Who is logging: `supervisor` or a worker id, and the process id.
#[derive(Debug, Clone)]
pub struct LogIdentity {
    /// `supervisor`, `inline` or a worker id.
    pub name: String,
    /// The process id.
    pub pid: u32,
}

impl LogIdentity {
    /// The identity `name` of this process.
    pub fn current(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            pid: std::process::id(),
        }
    }
}

/// A log field's value, typed: numbers and booleans stay numbers and booleans in the jsonl
/// and OTLP logs (`"duration_ms":1488`, not `"1488"`).
#[derive(Debug, Clone, PartialEq)]
pub enum LogValue {
    /// Text.
    Text(String),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl LogValue {
    /// The text of a `Text` value (`None` for the others).
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The value of an unsigned or non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Self::UInt(n) => Some(*n),
            Self::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        }
    }

    /// Appends the value as JSON.
    pub(crate) fn push_json(&self, out: &mut Vec<u8>) {
        match self {
            Self::Text(text) => crate::json::push_string(out, text),
            Self::Float(x) if !x.is_finite() => crate::json::push_string(out, &x.to_string()),
            other => out.extend_from_slice(other.to_string().as_bytes()),
        }
    }
}

impl std::fmt::Display for LogValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(text) => f.write_str(text),
            Self::Int(n) => write!(f, "{n}"),
            Self::UInt(n) => write!(f, "{n}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl From<&str> for LogValue {
    fn from(text: &str) -> Self {
        Self::Text(text.to_string())
    }
}

impl From<String> for LogValue {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<u64> for LogValue {
    fn from(n: u64) -> Self {
        Self::UInt(n)
    }
}

/// Collects an event's message and fields.
#[derive(Default)]
pub(crate) struct Fields {
    pub(crate) message: String,
    pub(crate) pairs: Vec<(String, LogValue)>,
}

/// Separates packed `key=value` pairs (a control character no field value contains).
const PACK_SEPARATOR: char = '\u{1f}';
const PACKED: &str = "lifecycle_fields";
/// Marks a packed value as an unsigned integer (`key#=value`).
const NUMBER_MARK: char = '#';

/// Packs an event's dynamic fields into one `tracing` field value (`tracing` macros need
/// static field names); every layer unpacks them into separate fields, numbers as numbers.
pub fn pack_fields<'a>(pairs: impl Iterator<Item = (&'a str, &'a LogValue)>) -> String {
    let mut packed = String::new();
    for (key, value) in pairs {
        if !packed.is_empty() {
            packed.push(PACK_SEPARATOR);
        }
        packed.push_str(key);
        if let LogValue::UInt(_) = value {
            packed.push(NUMBER_MARK);
        }
        packed.push('=');
        packed.extend(value.to_string().chars().filter(|c| *c != PACK_SEPARATOR));
    }
    packed
}

impl Fields {
    fn unpack(&mut self, packed: &str) {
        for pair in packed.split(PACK_SEPARATOR).filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let typed = match key.strip_suffix(NUMBER_MARK) {
                Some(name) => (
                    name,
                    value.parse().map_or_else(|_| value.into(), LogValue::UInt),
                ),
                None => (key, LogValue::from(value)),
            };
            self.pairs.push((typed.0.to_string(), typed.1));
        }
    }

    fn push(&mut self, field: &Field, value: LogValue) {
        self.pairs.push((field.name().to_string(), value));
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == PACKED {
            self.unpack(value);
        } else if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.push(field, value.into());
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, LogValue::UInt(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, LogValue::Int(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, LogValue::Float(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, LogValue::Bool(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == PACKED {
            self.unpack(&text);
        } else if field.name() == "message" {
            self.message = text;
        } else {
            self.push(field, LogValue::Text(text));
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

pub(crate) fn now_ms() -> u64 {
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
            .map(|(_, v)| v.to_string())
    };
    (
        find("worker_id").unwrap_or_else(|| identity.name.clone()),
        find("pid").unwrap_or_else(|| identity.pid.to_string()),
    )
}
