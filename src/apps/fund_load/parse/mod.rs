//! Input parsing: one NDJSON line into an attempt, with exact cents and UTC instants.
//!
//! Hand-written because it is the most expensive step of the workload and must never panic on
//! arbitrary bytes: a small JSON object scanner (full JSON grammar for skipped values, escape
//! handling, bounded nesting), the amount grammar of docs/fund-load.md (prefixes `USD`, `$`, `USD`,
//! digits, optional one or two decimals, integer cents), and RFC 3339 timestamps converted to
//! UTC with a proleptic Gregorian calendar.

use std::borrow::Cow;

mod amount;
mod json;
mod time;

pub use amount::parse_amount_cents;
use amount::*;
use json::*;
use time::*;
pub use time::{UtcInstant, days_from_civil, parse_rfc3339};

/// Deepest nesting accepted inside a skipped JSON value (bounds work on hostile input).
const MAX_JSON_DEPTH: usize = 64;

/// The value of one of the four expected keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Field<'a> {
    /// The key is absent.
    #[default]
    Missing,
    /// A JSON string, unescaped.
    String(Cow<'a, str>),
    /// Present but not a JSON string.
    NotAString,
}

impl Field<'_> {
    /// The string's value, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Field::String(s) => Some(s),
            _ => None,
        }
    }
}

/// The four fields of an attempt as found in the line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RawFields<'a> {
    /// `id`.
    pub id: Field<'a>,
    /// `customer_id`.
    pub customer_id: Field<'a>,
    /// `load_amount`.
    pub load_amount: Field<'a>,
    /// `time`.
    pub time: Field<'a>,
}

/// Why a line is not a JSON object we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// The line is not a JSON object.
    NotAnObject,
    /// Malformed JSON at this byte offset.
    Malformed(usize),
    /// One of the four keys appears twice.
    DuplicateKey,
    /// Something other than whitespace after the object, at this byte offset.
    TrailingData(usize),
    /// The line is not UTF-8.
    InvalidUtf8,
    /// Nested deeper than the parser follows.
    TooDeep,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAnObject => f.write_str("line is not a JSON object"),
            Self::Malformed(at) => write!(f, "malformed JSON at byte {at}"),
            Self::DuplicateKey => f.write_str("a key appears twice"),
            Self::TrailingData(at) => write!(f, "unexpected data after the object at byte {at}"),
            Self::InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            Self::TooDeep => write!(f, "values nested deeper than {MAX_JSON_DEPTH}"),
        }
    }
}

/// True for lines holding only whitespace (skipped and counted, not declined).
pub fn is_blank(line: &[u8]) -> bool {
    line.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Reads the four attempt fields from one JSON object line. Other keys are ignored; a known
/// key appearing twice is an error (the line is ambiguous).
pub fn parse_fields(line: &[u8]) -> Result<RawFields<'_>, JsonError> {
    let mut s = Scanner {
        bytes: line,
        pos: 0,
    };
    s.skip_ws();
    if s.peek() != Some(b'{') {
        return Err(JsonError::NotAnObject);
    }
    s.pos += 1;
    let mut fields = RawFields::default();
    s.skip_ws();
    if s.peek() == Some(b'}') {
        s.pos += 1;
    } else {
        loop {
            s.skip_ws();
            let key = s.string()?;
            s.skip_ws();
            s.expect(b':')?;
            s.skip_ws();
            let slot = match key.as_ref() {
                "id" => Some(&mut fields.id),
                "customer_id" => Some(&mut fields.customer_id),
                "load_amount" => Some(&mut fields.load_amount),
                "time" => Some(&mut fields.time),
                _ => None,
            };
            match slot {
                Some(slot) => {
                    if *slot != Field::Missing {
                        return Err(JsonError::DuplicateKey);
                    }
                    *slot = if s.peek() == Some(b'"') {
                        Field::String(s.string()?)
                    } else {
                        s.skip_value()?;
                        Field::NotAString
                    };
                }
                None => s.skip_value()?,
            }
            s.skip_ws();
            match s.peek() {
                Some(b',') => s.pos += 1,
                Some(b'}') => {
                    s.pos += 1;
                    break;
                }
                _ => return Err(JsonError::Malformed(s.pos)),
            }
        }
    }
    s.skip_ws();
    if s.pos != line.len() {
        return Err(JsonError::TrailingData(s.pos));
    }
    Ok(fields)
}

/// The four fields of a line in the canonical shape — `{"id":"..","customer_id":"..",
/// "load_amount":"..","time":".."}`, keys in this order, nothing between the tokens, string
/// values of printable ASCII without escapes — found without a general JSON scan. `None` sends
/// the line to [`parse_fields`], which accepts every JSON form; on a canonical line both give
/// the same fields, so the fast path changes no decision.
pub fn canonical_fields(line: &[u8]) -> Option<RawFields<'_>> {
    let (id, at) = quoted_value(line, 0, b"{\"id\":\"")?;
    let (customer_id, at) = quoted_value(line, at, b",\"customer_id\":\"")?;
    let (load_amount, at) = quoted_value(line, at, b",\"load_amount\":\"")?;
    let (time, at) = quoted_value(line, at, b",\"time\":\"")?;
    (line.get(at..)? == b"}").then_some(RawFields {
        id,
        customer_id,
        load_amount,
        time,
    })
}

/// A canonical line whose four values are also in their common forms, decoded in one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonAttempt {
    /// The id's value and digit count (1..=19 digits).
    pub id: (u64, u8),
    /// The customer id's value and digit count.
    pub customer_id: (u64, u8),
    /// The amount in cents.
    pub cents: u64,
    /// The time.
    pub time: UtcInstant,
}

/// The usual line — canonical shape, ids of 1 to 19 digits, an amount and a time in the forms
/// `common_amount` and `common_rfc3339` read — decoded in one pass, in place, without
/// building fields. Every line it decodes, [`canonical_fields`] followed by the per-field
/// readers decodes to the same values: each value is read up to the first byte its grammar
/// does not take, which must be the closing quote, and the grammars take only printable ASCII
/// other than `"` and `\\` (so the canonical scan ends the value at the same quote). Anything
/// else is `None` and takes that path.
pub fn common_attempt(line: &[u8]) -> Option<CommonAttempt> {
    let at = after_key(line, 0, b"{\"id\":\"")?;
    let (id, at) = quoted_digits(line, at)?;
    let at = after_key(line, at, b",\"customer_id\":\"")?;
    let (customer_id, at) = quoted_digits(line, at)?;
    let at = after_key(line, at, b",\"load_amount\":\"")?;
    let (cents, read) = amount_prefix(line.get(at..)?)?;
    let at = after_key(line, at + read, b"\",\"time\":\"")?;
    let (time, read) = rfc3339_prefix(line.get(at..)?)?;
    if line.get(at + read..)? != b"\"}" {
        return None;
    }
    Some(CommonAttempt {
        id,
        customer_id,
        cents,
        time,
    })
}

/// The position after `key` when the line has it at `at` (a fixed-size compare).
#[inline]
fn after_key<const N: usize>(line: &[u8], at: usize, key: &[u8; N]) -> Option<usize> {
    let found: &[u8; N] = line.get(at..at + N)?.try_into().ok()?;
    (found == key).then_some(at + N)
}

/// 1 to 19 ASCII digits and their closing quote at `at`: the value, the digit count and the
/// position after the quote.
#[inline]
fn quoted_digits(line: &[u8], at: usize) -> Option<((u64, u8), usize)> {
    let mut value = 0u64;
    let mut end = at;
    while let Some(&d @ b'0'..=b'9') = line.get(end) {
        value = value.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
        end += 1;
    }
    let digits = end - at;
    ((1..=19).contains(&digits) && line.get(end) == Some(&b'"'))
        .then_some(((value, digits as u8), end + 1))
}

/// Printable ASCII that stands for itself inside a JSON string (not `"` or `\\`).
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x20;
    while b < 0x7f {
        table[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    table
};

/// After `key` at `at`: a string value of printable ASCII without escapes, up to its closing
/// quote; returns it and the position after the quote.
fn quoted_value<'a>(line: &'a [u8], at: usize, key: &[u8]) -> Option<(Field<'a>, usize)> {
    let start = at + key.len();
    if line.get(at..start)? != key {
        return None;
    }
    // The value ends at the first byte that is not plain printable ASCII: it must be the
    // closing quote. Escapes, control characters and non-ASCII bytes take the general path,
    // which unescapes, rejects and validates them.
    let end = start
        + line
            .get(start..)?
            .iter()
            .position(|&b| !PLAIN[usize::from(b)])?;
    if line[end] != b'"' {
        return None;
    }
    // SAFETY: every byte of `line[start..end]` is printable ASCII (the loop above returns on
    // any other), so it is valid UTF-8.
    let text = unsafe { std::str::from_utf8_unchecked(&line[start..end]) };
    Some((Field::String(Cow::Borrowed(text)), end + 1))
}

/// A trimmed string of ASCII digits, or `None`.
pub fn digits_id(raw: &str) -> Option<&str> {
    // The usual id: digits only, nothing to trim (one pass).
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        return Some(raw);
    }
    let trimmed = if raw.is_ascii() {
        raw.trim_ascii()
    } else {
        raw.trim()
    };
    (!trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit())).then_some(trimmed)
}

pub use crate::json::push_string as push_json_string;

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass readers of common amounts and times never disagree with the general
    /// grammar: on every mutation of every common form they read nothing or the same value.
    #[test]
    fn common_forms_read_like_the_general_grammar() {
        let amounts = [
            "$1",
            "$10.5",
            "$3318.47",
            "USD1298.92",
            "USD$11419.15",
            "$USD7.00",
            "$ 1007.18",
            "0",
            "$0.01",
            "$000.10",
            "$1.234",
            "USD$$1",
            "1e3",
            "$ 1 2",
            "$999999999999999.99",
        ];
        let times = [
            "2000-01-01T00:00:00Z",
            "2000-03-17T04:51:30+05:30",
            "2000-02-29T23:59:59.123456789-00:30",
            "2001-02-29T00:00:00Z",
            "2000-01-01T00:00:60Z",
            "2000-01-01t00:00:00z",
            "2000-01-01T00:00:00.Z",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
        let alphabet = b"0123456789$USD .:-+TZt";
        for _ in 0..20_000 {
            let mut amount = amounts[next(amounts.len())].as_bytes().to_vec();
            let mut time = times[next(times.len())].as_bytes().to_vec();
            for bytes in [&mut amount, &mut time] {
                match next(4) {
                    0 if !bytes.is_empty() => {
                        let at = next(bytes.len());
                        bytes[at] = alphabet[next(alphabet.len())];
                    }
                    1 if !bytes.is_empty() => {
                        bytes.remove(next(bytes.len()));
                    }
                    2 => bytes.insert(next(bytes.len() + 1), alphabet[next(alphabet.len())]),
                    _ => {}
                }
            }
            let amount = String::from_utf8(amount).unwrap();
            let time = String::from_utf8(time).unwrap();
            if let Some(cents) = common_amount(amount.as_bytes()) {
                assert_eq!(Some(cents), general_amount(&amount), "{amount:?}");
            }
            if let Some(instant) = common_rfc3339(time.as_bytes()) {
                assert_eq!(Some(instant), general_rfc3339(&time), "{time:?}");
            }
        }
    }

    #[test]
    fn canonical_lines_read_like_the_general_scanner_and_others_fall_back() {
        let canonical = br#"{"id":"15887","customer_id":"528","load_amount":"USD$ 3318.47","time":"2000-01-01T00:00:00+05:30"}"#;
        assert_eq!(
            canonical_fields(canonical),
            Some(parse_fields(canonical).unwrap())
        );
        for other in [
            &br#"{"id":"1","customer_id":"2","load_amount":"$1","time":"x","extra":1}"#[..],
            br#"{"customer_id":"2","id":"1","load_amount":"$1","time":"x"}"#,
            br#"{"id":"1\u0032","customer_id":"2","load_amount":"$1","time":"x"}"#,
            br#"{"id":"1", "customer_id":"2","load_amount":"$1","time":"x"}"#,
            br#"{"id":"1","customer_id":"2","load_amount":"$1","time":"x"} "#,
            "{\"id\":\"\u{e9}\",\"customer_id\":\"2\",\"load_amount\":\"$1\",\"time\":\"x\"}"
                .as_bytes(),
        ] {
            assert_eq!(
                canonical_fields(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    /// The one-pass reader of the usual line agrees with the canonical scan plus the field
    /// readers on every mutation of usual lines, and declines what they would not read alike.
    #[test]
    fn common_attempts_read_like_the_field_path() {
        let lines: [&[u8]; 4] = [
            br#"{"id":"15887","customer_id":"528","load_amount":"$3318.47","time":"2000-01-01T00:00:00Z"}"#,
            br#"{"id":"0001","customer_id":"9999999999999999999","load_amount":"USD$ 1.5","time":"2000-03-17T04:51:30.25+05:30"}"#,
            br#"{"id":"7","customer_id":"12","load_amount":"$USD0","time":"2000-02-29T23:59:59-00:30"}"#,
            br#"{"id":"12345678901234567890","customer_id":"1","load_amount":"$1","time":"2000-01-01T00:00:00Z"}"#,
        ];
        let field_path = |line: &[u8]| -> Option<CommonAttempt> {
            let fields = canonical_fields(line)?;
            let digits = |f: &Field<'_>| {
                let id = digits_id(f.as_str()?)?;
                Some((
                    crate::apps::fund_load::messages::short_digits(id)?,
                    id.len() as u8,
                ))
            };
            Some(CommonAttempt {
                id: digits(&fields.id)?,
                customer_id: digits(&fields.customer_id)?,
                cents: parse_amount_cents(fields.load_amount.as_str()?)?,
                time: parse_rfc3339(fields.time.as_str()?)?,
            })
        };
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
        let alphabet = b"0123456789$USD .:-+TZt\"\\\t{},\x01\xc3";
        for round in 0..100_000 {
            let mut line = lines[round % lines.len()].to_vec();
            for _ in 0..next(3) {
                match next(3) {
                    0 => {
                        let at = next(line.len());
                        line[at] = alphabet[next(alphabet.len())];
                    }
                    1 => {
                        line.remove(next(line.len()));
                    }
                    _ => line.insert(next(line.len() + 1), alphabet[next(alphabet.len())]),
                }
            }
            if let Some(attempt) = common_attempt(&line) {
                assert_eq!(
                    Some(attempt),
                    field_path(&line),
                    "{}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
        for line in &lines[..3] {
            assert!(
                common_attempt(line).is_some(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            common_attempt(lines[3]),
            None,
            "20-digit ids take the field path"
        );
    }

    #[test]
    fn reads_the_four_fields_in_any_order_ignoring_others() {
        let line = br#" {"time":"2000-01-01T00:00:00Z", "extra": [1, {"a": null}], "customer_id":"528","id":"15887","load_amount":"$3318.47"} "#;
        let f = parse_fields(line).unwrap();
        assert_eq!(f.id.as_str(), Some("15887"));
        assert_eq!(f.customer_id.as_str(), Some("528"));
        assert_eq!(f.load_amount.as_str(), Some("$3318.47"));
        assert_eq!(f.time.as_str(), Some("2000-01-01T00:00:00Z"));
    }

    #[test]
    fn unescapes_strings_and_marks_non_strings() {
        let f =
            parse_fields(br#"{"id":"1\u0032","customer_id":5,"load_amount":"\"$1\""}"#).unwrap();
        assert_eq!(f.id.as_str(), Some("12"));
        assert_eq!(f.customer_id, Field::NotAString);
        assert_eq!(f.time, Field::Missing);
    }

    #[test]
    fn rejects_malformed_objects() {
        for bad in [
            &b"not json"[..],
            b"{",
            b"{\"id\":\"1\"",
            b"{\"id\":\"1\"} x",
            b"{\"id\":\"1\",\"id\":\"2\"}",
            b"[1,2]",
            b"{\"id\":01x}",
            b"{\"id\":\"\xff\"}",
            b"{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
        ] {
            assert!(parse_fields(bad).is_err(), "accepted {:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn skips_nested_values_with_keys() {
        let line = br#"{"x":{"k":[1,2,{"y":"z"}],"k2":true},"id":"7","customer_id":"1"}"#;
        assert_eq!(parse_fields(line).unwrap().id.as_str(), Some("7"));
    }

    #[test]
    fn amount_prefix_forms_and_exact_cents() {
        for (raw, cents) in [
            ("$3318.47", 331_847),
            ("USD3318.47", 331_847),
            ("USD$3318.47", 331_847),
            ("$USD3318.47", 331_847),
            ("3318.47", 331_847),
            (" $ 3 318 . 4 ", 331_840),
            ("$5000", 500_000),
            ("$0.01", 1),
            ("$007.5", 750),
            ("USDUSD5", 500), // optional USD, no $, optional USD: the spec's grammar allows it
        ] {
            assert_eq!(parse_amount_cents(raw), Some(cents), "{raw}");
        }
        for raw in [
            "",
            "$",
            "$.5",
            "$5.",
            "$5.123",
            "-5",
            "$-5",
            "5e3",
            "€5",
            "USD$$5",
            "$$5",
            "1,000.00",
            "9999999999999999",
        ] {
            assert_eq!(parse_amount_cents(raw), None, "{raw}");
        }
    }

    #[test]
    fn ids_are_trimmed_digit_strings_with_leading_zeros_kept() {
        assert_eq!(digits_id(" 0528 "), Some("0528"));
        assert_eq!(digits_id("12a"), None);
        assert_eq!(digits_id(""), None);
        assert_eq!(digits_id("-1"), None);
    }

    #[test]
    fn rfc3339_converts_offsets_to_utc() {
        let z = parse_rfc3339("2000-01-01T00:00:00Z").unwrap();
        assert_eq!(z.secs, 946_684_800);
        let plus = parse_rfc3339("2000-01-01T02:00:00+02:00").unwrap();
        assert_eq!(plus.secs, z.secs);
        let minus = parse_rfc3339("1999-12-31T23:30:00-00:30").unwrap();
        assert_eq!(minus.secs, z.secs);
        let frac = parse_rfc3339("2000-01-01t00:00:00.25z").unwrap();
        assert_eq!((frac.secs, frac.nanos), (z.secs, 250_000_000));
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00Z").map(|t| t.secs),
            Some(951_782_400)
        );
    }

    #[test]
    fn rfc3339_rejects_impossible_dates() {
        for raw in [
            "2001-02-29T00:00:00Z",
            "2000-13-01T00:00:00Z",
            "2000-01-01T24:00:00Z",
            "2000-01-01T00:00:00",
            "2000-01-01T00:00:00+2:00",
            "2000-01-01 00:00:00.Z",
            "yesterday",
            "2000-01-01T00:00:00Zjunk",
        ] {
            assert_eq!(parse_rfc3339(raw), None, "{raw}");
        }
    }
}
