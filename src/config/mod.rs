//! Config plane: the YAML contract (docs/configuration.md), its defaults and its strict validator.
//!
//! Owns reading a config file into a complete, typed [`Config`]. It must not start anything:
//! loading is pure, and the same loader runs in the supervisor, in every worker (from the
//! bootstrap bundle) and in `stream-kernel validate`.
//!
//! Guarantees: no coercion of types; unknown keys are errors with a "did you mean" hint; every
//! error of a file is reported at once, sorted by dotted path, each with a stable
//! [`ConfigErrorCode`]; malformed YAML, empty files and arbitrary bytes give one clear error
//! with line and column, never a panic.
//!
//! The node catalog (normally the engine's node registry) checks each node's section; a catalog
//! that accepts every node is enough to read the engine's own settings:
//!
//! ```
//! use stream_kernel::config::{Config, NodeCatalog, reader::Diagnostics};
//!
//! struct AnyNodes;
//! impl NodeCatalog for AnyNodes {
//!     fn check(&self, _config: &mut Config, _diag: &mut Diagnostics) {}
//! }
//!
//! let loaded = stream_kernel::config::load_str(
//!     "version: 1\nscenario: {name: baseline}\n",
//!     &AnyNodes,
//! )
//! .unwrap();
//! assert_eq!(loaded.config.runtime.platform.execution_ipc.ring_bytes, 4 * 1024 * 1024);
//! ```

mod builder;
mod error;
mod files;
mod model;
pub mod reader;
pub mod schema;
mod sections;
mod validate;

use std::path::Path;

pub use builder::PipelineBuilder;
pub use error::{
    ConfigError, ConfigErrorCode, ConfigPath, ConfigReport, ConfigWarning, PathSegment,
};
pub use files::{ExtraRunFiles, check_run_files, check_run_files_with};
pub use model::*;
use reader::Diagnostics;
use serde_norway::Value;
pub use validate::NodeCatalog;

/// Largest config file the loader reads (configs are a few KiB; this bounds hostile input).
pub const MAX_CONFIG_BYTES: usize = 16 * 1024 * 1024;

/// A config that passed validation, with its warnings.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The validated config.
    pub config: Config,
    /// Remarks about the config that do not stop it.
    pub warnings: Vec<ConfigWarning>,
}

impl Config {
    /// The complete config (input plus defaults) as YAML.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }

    /// Whether pipeline node `node` runs on `host` (`run --host`): its group names that host
    /// or none. Without a host (one supervisor for everything) every node runs here.
    pub fn runs_on_host(&self, node: &str, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return true;
        };
        self.runtime
            .platform
            .process_groups
            .iter()
            .find(|g| g.nodes.iter().any(|n| n == node))
            .is_none_or(|g| g.host.as_deref().is_none_or(|h| h == host))
    }

    /// A digest of what decides a run's output bytes: the pipeline, every node's settings,
    /// the error policy, the ordering and which side files are written. Placement, rings,
    /// telemetry and paths do not change the bytes (outputs are identical in every
    /// placement), so a run may be resumed under another placement, but not under another
    /// pipeline.
    pub fn output_digest(&self) -> String {
        let decisive = (
            &self.pipeline,
            &self.nodes,
            &self.runtime.on_node_error,
            &self.runtime.ordering,
            self.adapters.dead_letter.is_some(),
            self.adapters.audit.is_some(),
        );
        let text = serde_norway::to_string(&decisive).unwrap_or_default();
        format!(
            "xxh3-128:{:032x}",
            xxhash_rust::xxh3::xxh3_128(text.as_bytes())
        )
    }
}

/// Reads and validates the config file at `path`.
pub fn load_file(path: &Path, catalog: &dyn NodeCatalog) -> Result<LoadedConfig, ConfigReport> {
    let bytes = std::fs::read(path).map_err(|e| {
        single_error(
            ConfigPath::root(),
            ConfigErrorCode::Invalid,
            format!("a readable config file at {}", path.display()),
            e.to_string(),
        )
    })?;
    load_bytes(&bytes, catalog)
}

/// Reads and validates a config held in memory.
pub fn load_bytes(bytes: &[u8], catalog: &dyn NodeCatalog) -> Result<LoadedConfig, ConfigReport> {
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(single_error(
            ConfigPath::root(),
            ConfigErrorCode::TooLarge,
            format!("a config of at most {MAX_CONFIG_BYTES} bytes"),
            format!("{} bytes", bytes.len()),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_column(bytes, e.valid_up_to());
        single_error(
            ConfigPath::root(),
            ConfigErrorCode::Syntax,
            "UTF-8 YAML text",
            format!("invalid UTF-8 at line {line}, column {column}"),
        )
    })?;
    load_str(text, catalog)
}

/// Reads and validates a config given as YAML text (a leading UTF-8 byte order mark, which
/// some editors write, is skipped).
pub fn load_str(text: &str, catalog: &dyn NodeCatalog) -> Result<LoadedConfig, ConfigReport> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root = parse_yaml(text)?;
    load_value(&root, catalog)
}

/// Validates an already-parsed YAML document.
pub fn load_value(root: &Value, catalog: &dyn NodeCatalog) -> Result<LoadedConfig, ConfigReport> {
    if !matches!(root, Value::Mapping(_)) {
        return Err(single_error(
            ConfigPath::root(),
            ConfigErrorCode::Type,
            "a YAML mapping with at least `version` and `scenario`",
            format!("{} (line 1, column 1)", reader::describe(root)),
        ));
    }
    let mut diag = Diagnostics::default();
    let config = Config::read(root, &mut diag);
    let Some(mut config) = config else {
        return Err(report(diag));
    };
    validate::validate(&mut config, catalog, &mut diag);
    if diag.errors.is_empty() {
        let mut warnings = diag.warnings;
        warnings.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(LoadedConfig { config, warnings })
    } else {
        Err(report(diag))
    }
}

fn report(diag: Diagnostics) -> ConfigReport {
    ConfigReport {
        errors: diag.errors,
        warnings: diag.warnings,
    }
    .sorted()
}

fn single_error(
    path: ConfigPath,
    code: ConfigErrorCode,
    expected: impl Into<String>,
    found: impl Into<String>,
) -> ConfigReport {
    ConfigReport {
        errors: vec![ConfigError::new(path, code, expected, found)],
        warnings: Vec::new(),
    }
}

fn parse_yaml(text: &str) -> Result<Value, ConfigReport> {
    if text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---" || l == "..."
    }) {
        return Err(single_error(
            ConfigPath::root(),
            ConfigErrorCode::Empty,
            "a YAML mapping with at least `version` and `scenario`",
            "an empty document (line 1, column 1)",
        ));
    }
    if let Some((line, column)) = too_deep_flow_nesting(text) {
        return Err(single_error(
            ConfigPath::root(),
            ConfigErrorCode::Syntax,
            format!("YAML nested at most {MAX_FLOW_DEPTH} levels deep"),
            format!("deeper nesting (line {line}, column {column})"),
        ));
    }
    serde_norway::from_str::<Value>(text).map_err(|e| {
        let message = yaml_message(&e);
        let at = e
            .location()
            .map(|at| format!(" (line {}, column {})", at.line(), at.column()))
            .unwrap_or_default();
        // The parser names the key of a value it could not hold (`a.b.c: invalid type: ...`):
        // report it there. Integers beyond 64 bits are the case in practice.
        if let Some((path, what)) = located_value_error(&message) {
            return single_error(
                path,
                ConfigErrorCode::Range,
                "a number that fits 64 bits",
                format!("{what}{at}"),
            );
        }
        single_error(
            ConfigPath::root(),
            ConfigErrorCode::Syntax,
            "valid YAML",
            format!("{message}{at}"),
        )
    })
}

/// `runtime.x.y: invalid type: integer `9999...` as u128, ...` -> the path and the integer.
fn located_value_error(message: &str) -> Option<(ConfigPath, String)> {
    let (path, rest) = message.split_once(": invalid type: integer ")?;
    let valid_path = !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']' | '-'));
    if !valid_path {
        return None;
    }
    let number = rest.split(" as ").next().unwrap_or(rest);
    Some((ConfigPath::parse(path), format!("the integer {number}")))
}

/// The parser's message without its own location suffix and leading "found".
fn yaml_message(e: &serde_norway::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("unreadable YAML");
    let without_location = first.split(" at line ").next().unwrap_or(first);
    without_location
        .strip_prefix("found ")
        .unwrap_or(without_location)
        .to_string()
}

/// Deepest `[`/`{` nesting accepted. The YAML parser's own limit (128) is reached only after
/// work that grows quadratically with the input, so hostile input is refused up front.
const MAX_FLOW_DEPTH: usize = 64;

/// The position where flow nesting first exceeds [`MAX_FLOW_DEPTH`] (outside quotes and
/// comments), scanning in linear time.
fn too_deep_flow_nesting(text: &str) -> Option<(usize, usize)> {
    let (mut depth, mut line, mut column) = (0usize, 1usize, 0usize);
    let mut quote: Option<u8> = None;
    let mut comment = false;
    let mut previous = b'\n';
    for &b in text.as_bytes() {
        column += 1;
        match (quote, b) {
            (_, b'\n') => {
                line += 1;
                column = 0;
                comment = false;
            }
            _ if comment => {}
            (Some(q), _) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'#') if previous == b' ' || previous == b'\n' || previous == b'\t' => {
                comment = true
            }
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'[' | b'{') => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some((line, column));
                }
            }
            (None, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = b;
    }
    None
}

fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, column)
}
