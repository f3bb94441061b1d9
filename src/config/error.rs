//! Config diagnostics: dotted paths, stable error codes and the sorted report.
//!
//! Every problem found while loading a config becomes one [`ConfigError`] carrying the dotted
//! path of the offending key (`runtime.platform.process_groups[0].workers`), a stable
//! [`ConfigErrorCode`] that programs can match on, what was expected and what was found. The
//! loader collects **all** of them into one [`ConfigReport`], sorted by path, so a user fixes a
//! config in one round instead of one error at a time.

use std::cmp::Ordering;
use std::fmt;

/// One step of a dotted config path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A dotted path into the config document, e.g. `runtime.platform.process_groups[0].workers`.
///
/// Paths order segment by segment, with indices compared as numbers, so `[2]` sorts before `[10]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ConfigPath(Vec<PathSegment>);

impl ConfigPath {
    /// The document root (displayed as `<root>`).
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// Parses a dotted path such as `runtime.platform.process_groups[0].workers`.
    pub fn parse(dotted: &str) -> Self {
        let mut segments = Vec::new();
        for part in dotted.split('.').filter(|p| !p.is_empty()) {
            let (key, mut rest) = match part.find('[') {
                Some(at) => (&part[..at], &part[at..]),
                None => (part, ""),
            };
            if !key.is_empty() {
                segments.push(PathSegment::Key(key.to_string()));
            }
            while let Some(close) = rest.find(']') {
                if let Ok(index) = rest[1..close].parse() {
                    segments.push(PathSegment::Index(index));
                }
                rest = &rest[close + 1..];
            }
        }
        Self(segments)
    }

    /// This path extended by a mapping key.
    pub fn key(&self, key: &str) -> Self {
        let mut next = self.0.clone();
        next.push(PathSegment::Key(key.to_string()));
        Self(next)
    }

    /// This path extended by a sequence index.
    pub fn index(&self, index: usize) -> Self {
        let mut next = self.0.clone();
        next.push(PathSegment::Index(index));
        Self(next)
    }

    /// Whether the path is the document's root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<root>");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                PathSegment::Key(key) if i == 0 => f.write_str(key)?,
                PathSegment::Key(key) => write!(f, ".{key}")?,
                PathSegment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

impl Ord for ConfigPath {
    fn cmp(&self, other: &Self) -> Ordering {
        for (a, b) in self.0.iter().zip(&other.0) {
            let order = match (a, b) {
                (PathSegment::Key(a), PathSegment::Key(b)) => a.cmp(b),
                (PathSegment::Index(a), PathSegment::Index(b)) => a.cmp(b),
                (PathSegment::Index(_), PathSegment::Key(_)) => Ordering::Less,
                (PathSegment::Key(_), PathSegment::Index(_)) => Ordering::Greater,
            };
            if order != Ordering::Equal {
                return order;
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

impl PartialOrd for ConfigPath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Stable machine codes of config errors. Programs and tests match on these; the wording of the
/// message may improve, the codes do not change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConfigErrorCode {
    /// The file is not valid YAML (the message carries line and column).
    Syntax,
    /// The file is empty or holds only comments.
    Empty,
    /// The file is larger than the loader accepts.
    TooLarge,
    /// A value has the wrong YAML type (no coercion: `"2"` is not a number, `true` is not 1).
    Type,
    /// A number is outside its allowed range.
    Range,
    /// A string is not one of the allowed values.
    NotAllowed,
    /// A key the contract does not know (the message suggests the closest known key).
    UnknownKey,
    /// A required key is missing.
    Required,
    /// A bind address that must be loopback is not.
    NotLoopback,
    /// A value is malformed for its kind (an address, a node name, ...).
    Invalid,
    /// A pipeline node that the node registry does not know.
    UnknownNode,
    /// In `process_supervisor` mode, a pipeline node placed in no group.
    Unplaced,
    /// A node placed in two groups, or listed twice in the pipeline.
    Duplicate,
    /// A group lists a node that is not in the pipeline.
    NotInPipeline,
    /// Nodes that share a per-worker store are placed in different groups.
    SharedStoreSplit,
    /// `workers > 1` on a group whose state or role cannot be split across workers.
    CannotParallelize,
    /// Two connected nodes disagree on the message type of their edge.
    EdgeTypeMismatch,
    /// A process group's nodes are not consecutive in `pipeline.nodes`.
    GroupNotContiguous,
    /// An output is the input, or two outputs are one file (or both stdout).
    SameFile,
    /// A file the run would write cannot be used: a FIFO, a device, a directory, a file
    /// locked by another run, a missing directory, or a closed stdout.
    UnusableFile,
}

impl ConfigErrorCode {
    /// The code as printed in reports (`E_TYPE`, `E_RANGE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Syntax => "E_SYNTAX",
            Self::Empty => "E_EMPTY",
            Self::TooLarge => "E_TOO_LARGE",
            Self::Type => "E_TYPE",
            Self::Range => "E_RANGE",
            Self::NotAllowed => "E_NOT_ALLOWED",
            Self::UnknownKey => "E_UNKNOWN_KEY",
            Self::Required => "E_REQUIRED",
            Self::NotLoopback => "E_NOT_LOOPBACK",
            Self::Invalid => "E_INVALID",
            Self::UnknownNode => "E_UNKNOWN_NODE",
            Self::Unplaced => "E_UNPLACED",
            Self::Duplicate => "E_DUPLICATE",
            Self::NotInPipeline => "E_NOT_IN_PIPELINE",
            Self::SharedStoreSplit => "E_SHARED_STORE_SPLIT",
            Self::CannotParallelize => "E_CANNOT_PARALLELIZE",
            Self::EdgeTypeMismatch => "E_EDGE_TYPE_MISMATCH",
            Self::GroupNotContiguous => "E_GROUP_NOT_CONTIGUOUS",
            Self::SameFile => "E_SAME_FILE",
            Self::UnusableFile => "E_UNUSABLE_FILE",
        }
    }
}

impl fmt::Display for ConfigErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One config problem: `<path>: <expected>, found <found>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {expected}, found {found} [{code}]")]
pub struct ConfigError {
    /// Where in the document.
    pub path: ConfigPath,
    /// The kind of problem.
    pub code: ConfigErrorCode,
    /// What the contract wants at this path, phrased for a person.
    pub expected: String,
    /// What the file holds there.
    pub found: String,
}

impl ConfigError {
    /// An error at `path`: what was expected there and what was found.
    pub fn new(
        path: ConfigPath,
        code: ConfigErrorCode,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Self {
            path,
            code,
            expected: expected.into(),
            found: found.into(),
        }
    }
}

/// A non-fatal remark about a config that is accepted (printed on stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Where in the document.
    pub path: ConfigPath,
    /// The remark.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "warning: {}: {}", self.path, self.message)
    }
}

/// Every error found in one config, sorted by path, plus the warnings.
///
/// Its `Debug` is its report, as `Display` writes it: a `main` that returns a config error
/// with `?` prints the errors a person can act on, not a structure dump.
#[derive(Clone, Default, thiserror::Error)]
pub struct ConfigReport {
    /// Every error, sorted by path.
    pub errors: Vec<ConfigError>,
    /// Every warning.
    pub warnings: Vec<ConfigWarning>,
}

impl ConfigReport {
    /// Sorts errors by path (then code) and removes exact duplicates.
    pub fn sorted(mut self) -> Self {
        self.errors.sort_by(|a, b| {
            a.path
                .cmp(&b.path)
                .then(a.code.cmp(&b.code))
                .then(a.expected.cmp(&b.expected))
        });
        self.errors.dedup();
        self.warnings.sort_by(|a, b| a.path.cmp(&b.path));
        self
    }

    /// The errors at exactly `path` (test and tooling helper).
    pub fn at<'a>(&'a self, path: &str) -> impl Iterator<Item = &'a ConfigError> + 'a {
        let wanted = ConfigPath::parse(path);
        self.errors.iter().filter(move |e| e.path == wanted)
    }

    /// True when some error at `path` has `code`.
    pub fn has(&self, path: &str, code: ConfigErrorCode) -> bool {
        self.at(path).any(|e| e.code == code)
    }
}

impl fmt::Debug for ConfigReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ConfigReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors.len();
        writeln!(
            f,
            "config rejected: {count} error{}",
            if count == 1 { "" } else { "s" }
        )?;
        for error in &self.errors {
            writeln!(f, "  {error}")?;
        }
        for warning in &self.warnings {
            writeln!(f, "  {warning}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_and_parse_round_trip() {
        let path = ConfigPath::root()
            .key("runtime")
            .key("platform")
            .key("process_groups")
            .index(0)
            .key("workers");
        assert_eq!(
            path.to_string(),
            "runtime.platform.process_groups[0].workers"
        );
        assert_eq!(ConfigPath::parse(&path.to_string()), path);
    }

    #[test]
    fn indices_sort_numerically() {
        let two = ConfigPath::parse("a.b[2].c");
        let ten = ConfigPath::parse("a.b[10].c");
        assert!(two < ten);
        assert!(ConfigPath::parse("a") < ConfigPath::parse("a.b"));
    }
}
