//! Strict, error-collecting reading of a YAML value tree.
//!
//! The loader does not use serde's derive to read configs: derive stops at the first error and
//! coerces nothing or too much depending on the format. Instead each section is read through a
//! [`Section`], which records every key the contract knows, reads each value with an exact YAML
//! type (no string-to-number, no bool-to-number), and, when dropped, reports every key it did
//! not know with a "did you mean" hint. All problems land in one [`Diagnostics`].

use serde_norway::{Mapping, Value};

use super::error::{ConfigError, ConfigErrorCode, ConfigPath, ConfigWarning};

/// Collects errors and warnings while a config is read.
#[derive(Debug, Default)]
pub struct Diagnostics {
    /// Errors found so far.
    pub errors: Vec<ConfigError>,
    /// Warnings found so far.
    pub warnings: Vec<ConfigWarning>,
}

impl Diagnostics {
    /// Records an error at `path`.
    pub fn error(
        &mut self,
        path: &ConfigPath,
        code: ConfigErrorCode,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) {
        self.errors
            .push(ConfigError::new(path.clone(), code, expected, found));
    }

    /// Records a warning at `path`.
    pub fn warn(&mut self, path: &ConfigPath, message: impl Into<String>) {
        self.warnings.push(ConfigWarning {
            path: path.clone(),
            message: message.into(),
        });
    }

    /// Reports a wrong YAML type at `path`.
    pub fn type_error(&mut self, path: &ConfigPath, expected: &str, value: &Value) {
        self.error(path, ConfigErrorCode::Type, expected, describe(value));
    }
}

/// A short, quoted description of a YAML value for "found ..." messages.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {:?}", truncate(s, 60)),
        Value::Sequence(seq) => format!("a sequence of {} items", seq.len()),
        Value::Mapping(map) => format!("a mapping with {} keys", map.len()),
        Value::Tagged(tagged) => format!("a value tagged {}", tagged.tag),
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let head: String = text.chars().take(max_chars).collect();
        format!("{head}...")
    }
}

/// Levenshtein distance, small inputs only (config keys).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// The closest candidate within edit distance 2, if any.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// One YAML mapping being read. Every key passed to [`Section::get`] counts as known; when the
/// section is dropped, every other key of the mapping is reported as unknown.
pub struct Section<'v, 'd> {
    map: Option<&'v Mapping>,
    path: ConfigPath,
    known: Vec<&'static str>,
    diag: &'d mut Diagnostics,
}

static EMPTY_MAPPING: std::sync::LazyLock<Mapping> = std::sync::LazyLock::new(Mapping::new);

impl<'v, 'd> Section<'v, 'd> {
    /// Opens `value` as a section. `null` reads as an empty section (all defaults); anything
    /// other than a mapping is a type error and yields `None`.
    pub fn open(value: &'v Value, path: ConfigPath, diag: &'d mut Diagnostics) -> Option<Self> {
        let map = match value {
            Value::Mapping(map) => map,
            Value::Null => &*EMPTY_MAPPING,
            other => {
                diag.type_error(&path, "expected a mapping", other);
                return None;
            }
        };
        Some(Self {
            map: Some(map),
            path,
            known: Vec::new(),
            diag,
        })
    }

    /// A section with no keys: every field reads as its default.
    pub fn empty(path: ConfigPath, diag: &'d mut Diagnostics) -> Self {
        Self {
            map: None,
            path,
            known: Vec::new(),
            diag,
        }
    }

    /// The section's path.
    pub fn path(&self) -> &ConfigPath {
        &self.path
    }

    /// The diagnostics the section reports into.
    pub fn diag(&mut self) -> &mut Diagnostics {
        self.diag
    }

    /// The path of a key of this section.
    pub fn path_of(&self, key: &str) -> ConfigPath {
        self.path.key(key)
    }

    /// The value at `key`, marking the key as known.
    pub fn get(&mut self, key: &'static str) -> Option<&'v Value> {
        self.known.push(key);
        self.map.and_then(|map| map.get(key))
    }

    /// True when the mapping has `key` (marks it known).
    pub fn has(&mut self, key: &'static str) -> bool {
        self.get(key).is_some()
    }

    /// Reads `key` with `read`; missing keys yield `None` without an error.
    pub fn opt<T>(&mut self, key: &'static str, read: Reader<T>) -> Option<T> {
        let value = self.get(key)?;
        let path = self.path.key(key);
        read(value, &path, self.diag)
    }

    /// Reads `key`, using `default` when it is missing or invalid (invalid is still reported).
    pub fn field<T>(&mut self, key: &'static str, default: T, read: Reader<T>) -> T {
        self.opt(key, read).unwrap_or(default)
    }

    /// Reads a key that must be present; a missing key is a `Required` error.
    pub fn req<T>(&mut self, key: &'static str, what: &str, read: Reader<T>) -> Option<T> {
        if self.get(key).is_none() {
            let path = self.path.key(key);
            self.diag.error(
                &path,
                ConfigErrorCode::Required,
                what,
                "nothing (key missing)",
            );
            return None;
        }
        self.opt(key, read)
    }

    /// Opens the sub-mapping at `key`; a missing key opens an empty section (all defaults).
    /// Returns `None` only when the key holds something that is not a mapping.
    pub fn section(&mut self, key: &'static str) -> Option<Section<'v, '_>> {
        let path = self.path.key(key);
        match self.get(key) {
            Some(value) => Section::open(value, path, self.diag),
            None => Some(Section::empty(path, self.diag)),
        }
    }

    /// Opens the sub-mapping at `key` only when it is present.
    pub fn present_section(&mut self, key: &'static str) -> Option<Section<'v, '_>> {
        let path = self.path.key(key);
        let value = self.get(key)?;
        Section::open(value, path, self.diag)
    }

    /// The known keys in the order first asked for, each once.
    fn known_keys(&self) -> String {
        let mut keys: Vec<&str> = Vec::with_capacity(self.known.len());
        for key in &self.known {
            if !keys.contains(key) {
                keys.push(key);
            }
        }
        keys.join(", ")
    }

    fn report_unknown_keys(&mut self) {
        let Some(map) = self.map else { return };
        for (key, _) in map {
            match key {
                Value::String(name) if self.known.contains(&name.as_str()) => {}
                Value::String(name) => {
                    let path = self.path.key(name);
                    let expected = match closest(name, &self.known) {
                        Some(hint) => format!("unknown key; did you mean `{hint}`?"),
                        None => format!("unknown key; known keys: {}", self.known_keys()),
                    };
                    self.diag.error(
                        &path,
                        ConfigErrorCode::UnknownKey,
                        expected,
                        format!("`{name}`"),
                    );
                }
                other => {
                    self.diag.error(
                        &self.path,
                        ConfigErrorCode::UnknownKey,
                        "string keys only",
                        format!("key {}", describe(other)),
                    );
                }
            }
        }
    }
}

impl Drop for Section<'_, '_> {
    fn drop(&mut self) {
        self.report_unknown_keys();
    }
}

/// A typed reader of one YAML value: reports its own errors, returns `None` on error.
pub type Reader<T> = fn(&Value, &ConfigPath, &mut Diagnostics) -> Option<T>;

/// Reads a boolean.
pub fn boolean(value: &Value, path: &ConfigPath, diag: &mut Diagnostics) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        other => {
            diag.type_error(path, "expected a boolean (true or false)", other);
            None
        }
    }
}

/// Reads a string.
pub fn string(value: &Value, path: &ConfigPath, diag: &mut Diagnostics) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        other => {
            diag.type_error(path, "expected a string", other);
            None
        }
    }
}

/// Reads a string that is not blank.
pub fn non_empty_string(
    value: &Value,
    path: &ConfigPath,
    diag: &mut Diagnostics,
) -> Option<String> {
    let s = string(value, path, diag)?;
    if s.trim().is_empty() {
        diag.error(
            path,
            ConfigErrorCode::Range,
            "expected a non-empty string",
            "an empty string",
        );
        return None;
    }
    Some(s)
}

/// An integer (no floats, no strings, no booleans).
pub fn integer(value: &Value, path: &ConfigPath, diag: &mut Diagnostics) -> Option<i128> {
    match value {
        Value::Number(n) if n.is_i64() => n.as_i64().map(i128::from),
        Value::Number(n) if n.is_u64() => n.as_u64().map(i128::from),
        other => {
            diag.type_error(path, "expected an integer", other);
            None
        }
    }
}

/// Any number (integers allowed where fractions are).
pub fn number(value: &Value, path: &ConfigPath, diag: &mut Diagnostics) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()).or_else(|| {
            diag.error(
                path,
                ConfigErrorCode::Range,
                "expected a finite number",
                describe(value),
            );
            None
        }),
        other => {
            diag.type_error(path, "expected a number", other);
            None
        }
    }
}

/// Checks an already-read integer against an inclusive range.
pub fn in_range(
    value: i128,
    min: i128,
    max: i128,
    path: &ConfigPath,
    diag: &mut Diagnostics,
) -> Option<i128> {
    if value < min || value > max {
        let expected = if max == i128::from(u64::MAX) || max == i128::from(i64::MAX) {
            format!("expected an integer >= {min}")
        } else {
            format!("expected an integer in {min}..={max}")
        };
        diag.error(path, ConfigErrorCode::Range, expected, format!("{value}"));
        return None;
    }
    Some(value)
}

/// An integer `>= 1` that fits a `u32` (worker counts).
pub fn positive_u32(value: &Value, path: &ConfigPath, diag: &mut Diagnostics) -> Option<u32> {
    let v = integer(value, path, diag)?;
    in_range(v, 1, i128::from(u32::MAX), path, diag).map(|v| v as u32)
}

/// An integer `>= 1` that fits a `u64`.
pub fn positive_u64(value: &Value, path: &ConfigPath, diag: &mut Diagnostics) -> Option<u64> {
    let v = integer(value, path, diag)?;
    in_range(v, 1, i128::from(u64::MAX), path, diag).map(|v| v as u64)
}

/// An integer `>= 0` that fits a `u64`.
pub fn unsigned(value: &Value, path: &ConfigPath, diag: &mut Diagnostics) -> Option<u64> {
    let v = integer(value, path, diag)?;
    in_range(v, 0, i128::from(u64::MAX), path, diag).map(|v| v as u64)
}

/// A number strictly greater than zero (seconds; fractions allowed).
pub fn positive_seconds(value: &Value, path: &ConfigPath, diag: &mut Diagnostics) -> Option<f64> {
    let v = number(value, path, diag)?;
    if v <= 0.0 || v > 1.0e9 {
        diag.error(
            path,
            ConfigErrorCode::Range,
            "expected a number of seconds > 0",
            format!("{v}"),
        );
        return None;
    }
    Some(v)
}

/// A number in `0..=1`.
pub fn ratio(value: &Value, path: &ConfigPath, diag: &mut Diagnostics) -> Option<f64> {
    let v = number(value, path, diag)?;
    if !(0.0..=1.0).contains(&v) {
        diag.error(
            path,
            ConfigErrorCode::Range,
            "expected a number in 0..=1",
            format!("{v}"),
        );
        return None;
    }
    Some(v)
}

/// A sequence of strings.
pub fn string_list(
    value: &Value,
    path: &ConfigPath,
    diag: &mut Diagnostics,
) -> Option<Vec<String>> {
    let Value::Sequence(items) = value else {
        diag.type_error(path, "expected a sequence of strings", value);
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match string(item, &path.index(i), diag) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A sequence of integers that fit a `u32` (CPU indices).
pub fn u32_list(value: &Value, path: &ConfigPath, diag: &mut Diagnostics) -> Option<Vec<u32>> {
    let Value::Sequence(items) = value else {
        diag.type_error(path, "expected a sequence of integers", value);
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let item_path = path.index(i);
        match integer(item, &item_path, diag)
            .and_then(|v| in_range(v, 0, i128::from(u32::MAX), &item_path, diag))
        {
            Some(v) => out.push(v as u32),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A mapping of string keys to string values (HTTP headers).
pub fn string_map(
    value: &Value,
    path: &ConfigPath,
    diag: &mut Diagnostics,
) -> Option<std::collections::BTreeMap<String, String>> {
    let map = match value {
        Value::Mapping(map) => map,
        Value::Null => return Some(Default::default()),
        other => {
            diag.type_error(path, "expected a mapping of strings", other);
            return None;
        }
    };
    let mut out = std::collections::BTreeMap::new();
    for (key, value) in map {
        let Value::String(key) = key else {
            diag.type_error(path, "expected string keys", key);
            continue;
        };
        if let Some(value) = string(value, &path.key(key), diag) {
            out.insert(key.clone(), value);
        }
    }
    Some(out)
}

/// A closed set of string values, e.g. `runner_profile: balanced | latency | efficiency`.
pub trait Choice: Sized + Copy + 'static {
    /// Every accepted spelling and the value it means (aliases included).
    const ACCEPTED: &'static [(&'static str, Self)];
    /// The canonical spellings, listed in error messages.
    const CANONICAL: &'static [&'static str];
    /// The canonical spelling of this value (used when printing the config).
    fn name(self) -> &'static str;
}

/// Reads a [`Choice`], listing the allowed values on error.
pub fn choice<T: Choice>(value: &Value, path: &ConfigPath, diag: &mut Diagnostics) -> Option<T> {
    let Value::String(s) = value else {
        let expected = format!("expected one of: {}", T::CANONICAL.join(", "));
        diag.type_error(path, &expected, value);
        return None;
    };
    match T::ACCEPTED.iter().find(|(name, _)| name == s) {
        Some((_, v)) => Some(*v),
        None => {
            let expected = format!("expected one of: {}", T::CANONICAL.join(", "));
            diag.error(
                path,
                ConfigErrorCode::NotAllowed,
                expected,
                format!("{s:?}"),
            );
            None
        }
    }
}

/// Declares a [`Choice`] enum with its canonical names, optional aliases and `Serialize` as
/// its canonical name.
#[macro_export]
macro_rules! config_choice {
    ($(#[$meta:meta])* $vis:vis enum $name:ident {
        $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
    } $(aliases { $($alias:literal => $target:ident),* $(,)? })?) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $(#[doc = concat!("`", $text, "` in the config.")] $(#[$vmeta])* $variant),
            +,
        }

        impl $crate::config::reader::Choice for $name {
            const ACCEPTED: &'static [(&'static str, Self)] =
                &[$(($text, Self::$variant)),+ $($(, ($alias, Self::$target))*)?];
            const CANONICAL: &'static [&'static str] = &[$($text),+];
            fn name(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($crate::config::reader::Choice::name(*self))
            }
        }

        impl ::schemars::JsonSchema for $name {
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                let names: Vec<&str> = <Self as $crate::config::reader::Choice>::ACCEPTED
                    .iter()
                    .map(|(name, _)| *name)
                    .collect();
                ::schemars::json_schema!({ "type": "string", "enum": names })
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::config::reader::Choice::name(*self))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_key_within_two_edits() {
        let known = ["process_groups", "readiness", "health"];
        assert_eq!(closest("proces_groups", &known), Some("process_groups"));
        assert_eq!(closest("helth", &known), Some("health"));
        assert_eq!(closest("something", &known), None);
    }

    #[test]
    fn integer_rejects_strings_booleans_and_floats() {
        let mut diag = Diagnostics::default();
        let path = ConfigPath::parse("x");
        assert_eq!(integer(&Value::String("2".into()), &path, &mut diag), None);
        assert_eq!(integer(&Value::Bool(true), &path, &mut diag), None);
        assert_eq!(
            integer(&serde_norway::from_str("2.5").unwrap(), &path, &mut diag),
            None
        );
        assert_eq!(diag.errors.len(), 3);
        assert!(diag.errors.iter().all(|e| e.code == ConfigErrorCode::Type));
    }
}
