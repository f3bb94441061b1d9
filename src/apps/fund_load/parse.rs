//! Input parsing: one NDJSON line into an attempt, with exact cents and UTC instants.
//!
//! Hand-written because it is the most expensive step of the workload and must never panic on
//! arbitrary bytes: a small JSON object scanner (full JSON grammar for skipped values, escape
//! handling, bounded nesting), the amount grammar of fund-load.md (prefixes `USD`, `$`, `USD`,
//! digits, optional one or two decimals, integer cents), and RFC 3339 timestamps converted to
//! UTC with a proleptic Gregorian calendar.

use std::borrow::Cow;

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

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(JsonError::Malformed(self.pos))
        }
    }

    /// Reads a JSON string starting at `"`; borrows when it has no escapes. ASCII-only strings
    /// (the common case) skip UTF-8 validation.
    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.expect(b'"')?;
        let start = self.pos;
        let bytes = self.bytes;
        let rest = &bytes[start..];
        let (stop, high_bits) = find_string_end(rest);
        let Some(stop) = stop else {
            return Err(JsonError::Malformed(bytes.len()));
        };
        let head = &rest[..stop];
        self.pos = start + stop;
        match rest[stop] {
            b'"' => {
                self.pos += 1;
                if high_bits < 0x80 {
                    // SAFETY: every byte of `head` is below 0x80 (accumulated in `high_bits`
                    // above), and ASCII is valid UTF-8.
                    return Ok(Cow::Borrowed(unsafe {
                        std::str::from_utf8_unchecked(head)
                    }));
                }
                return std::str::from_utf8(head)
                    .map(Cow::Borrowed)
                    .map_err(|_| JsonError::InvalidUtf8);
            }
            b'\\' => {}
            _ => return Err(JsonError::Malformed(self.pos)),
        }
        let mut out: Vec<u8> = bytes[start..self.pos].to_vec();
        loop {
            match self.peek() {
                None => return Err(JsonError::Malformed(self.pos)),
                Some(b'"') => {
                    self.pos += 1;
                    return String::from_utf8(out)
                        .map(Cow::Owned)
                        .map_err(|_| JsonError::InvalidUtf8);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                Some(b) if b < 0x20 => return Err(JsonError::Malformed(self.pos)),
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), JsonError> {
        let at = self.pos;
        let Some(code) = self.peek() else {
            return Err(JsonError::Malformed(at));
        };
        self.pos += 1;
        let simple = match code {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let ch = self.unicode_escape()?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                return Ok(());
            }
            _ => return Err(JsonError::Malformed(at)),
        };
        out.push(simple);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or(JsonError::Malformed(self.pos))?;
        let text = std::str::from_utf8(digits).map_err(|_| JsonError::Malformed(self.pos))?;
        let value = u32::from_str_radix(text, 16).map_err(|_| JsonError::Malformed(self.pos))?;
        self.pos += 4;
        Ok(value)
    }

    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let at = self.pos;
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                return Err(JsonError::Malformed(at));
            }
            self.pos += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(JsonError::Malformed(at));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or(JsonError::Malformed(at))
    }

    /// Skips any JSON value iteratively, with an explicit stack of open containers bounded by
    /// [`MAX_JSON_DEPTH`] (no recursion, so hostile nesting cannot exhaust the stack).
    fn skip_value(&mut self) -> Result<(), JsonError> {
        // `true` = object (keys expected after a comma), `false` = array.
        let mut open: [bool; MAX_JSON_DEPTH] = [false; MAX_JSON_DEPTH];
        let mut depth = 0usize;
        loop {
            self.skip_ws();
            match self.peek() {
                Some(opener @ (b'{' | b'[')) => {
                    self.pos += 1;
                    if depth == MAX_JSON_DEPTH {
                        return Err(JsonError::TooDeep);
                    }
                    open[depth] = opener == b'{';
                    depth += 1;
                    self.skip_ws();
                    let close = if opener == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        depth -= 1;
                    } else {
                        if opener == b'{' {
                            self.object_key()?;
                        }
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                _ => return Err(JsonError::Malformed(self.pos)),
            }
            // A value is complete: close containers, or move on to the next element.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                self.skip_ws();
                let in_object = open[depth - 1];
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if in_object {
                            self.object_key()?;
                        }
                        break;
                    }
                    Some(b'}') if in_object => {
                        self.pos += 1;
                        depth -= 1;
                    }
                    Some(b']') if !in_object => {
                        self.pos += 1;
                        depth -= 1;
                    }
                    _ => return Err(JsonError::Malformed(self.pos)),
                }
            }
        }
    }

    /// Reads `"key" :` inside an object being skipped.
    fn object_key(&mut self) -> Result<(), JsonError> {
        self.skip_ws();
        self.string()?;
        self.skip_ws();
        self.expect(b':')
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(JsonError::Malformed(self.pos))
        }
    }

    fn number(&mut self) -> Result<(), JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let digits = |s: &mut Self| {
            let from = s.pos;
            while let Some(b'0'..=b'9') = s.peek() {
                s.pos += 1;
            }
            s.pos > from
        };
        if !digits(self) {
            return Err(JsonError::Malformed(start));
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !digits(self) {
                return Err(JsonError::Malformed(start));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(JsonError::Malformed(start));
            }
        }
        Ok(())
    }
}

const SWAR_ONES: u64 = 0x0101_0101_0101_0101;
const SWAR_HIGHS: u64 = 0x8080_8080_8080_8080;

/// A mask with the high bit set in (at least) the lowest byte of `word` that is below `n`
/// (`n <= 0x80`); bytes above the lowest match may be false positives, which never matters
/// because only the lowest set bit is used.
fn bytes_below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(SWAR_ONES * u64::from(n)) & !word & SWAR_HIGHS
}

fn bytes_equal(word: u64, byte: u8) -> u64 {
    bytes_below(word ^ (SWAR_ONES * u64::from(byte)), 1)
}

/// Finds the first `"`, `\` or control byte of a JSON string body, eight bytes at a time
/// (SWAR). Returns its index (`None` when absent) and the OR of every byte before it (a high
/// bit set means the string is not ASCII).
fn find_string_end(body: &[u8]) -> (Option<usize>, u8) {
    let mut high_bits = 0u8;
    let mut chunks = body.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let word = u64::from_le_bytes(bytes);
        let special = bytes_equal(word, b'"') | bytes_equal(word, b'\\') | bytes_below(word, 0x20);
        if special != 0 {
            let at = (special.trailing_zeros() / 8) as usize;
            high_bits |= chunk[..at].iter().fold(0, |acc, b| acc | b);
            return (Some(offset + at), high_bits);
        }
        high_bits |= ((word & SWAR_HIGHS) != 0) as u8 * 0x80;
        offset += 8;
    }
    for (i, &b) in chunks.remainder().iter().enumerate() {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return (Some(offset + i), high_bits);
        }
        high_bits |= b;
    }
    (None, high_bits)
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

/// Largest number of significant integer digits in an amount (keeps cents far from overflow).
const MAX_AMOUNT_INTEGER_DIGITS: usize = 15;

/// Parses an amount into integer cents: whitespace removed, one optional prefix made of an
/// optional `USD`, an optional `$` and an optional `USD`, then digits with an optional `.` and
/// one or two decimals.
pub fn parse_amount_cents(raw: &str) -> Option<u64> {
    common_amount(raw.as_bytes()).or_else(|| general_amount(raw))
}

fn general_amount(raw: &str) -> Option<u64> {
    if raw.is_ascii() {
        return parse_compact_amount(raw.bytes().filter(|b| !b.is_ascii_whitespace()));
    }
    let compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    parse_compact_amount(compact.bytes())
}

/// The common amount forms in one pass: a prefix (`USD`, `$`, `USD$`, `$USD` or none), spaces,
/// then 1 to 15 digits without a leading zero (or a single `0`) and an optional `.` with one or
/// two decimals. Every amount it reads, [`parse_compact_amount`] reads the same; anything else is
/// `None` and takes the general path (which also decides invalid amounts).
fn common_amount(b: &[u8]) -> Option<u64> {
    amount_prefix(b)
        .filter(|&(_, read)| read == b.len())
        .map(|(cents, _)| cents)
}

/// [`common_amount`] at the start of `b`: the cents and the bytes read, stopping at the first
/// byte the form does not take (the caller decides what may follow).
fn amount_prefix(b: &[u8]) -> Option<(u64, usize)> {
    let mut at = 0;
    let usd = |at: usize| (b.get(at..at + 3) == Some(b"USD")).then_some(at + 3);
    at = usd(at).unwrap_or(at);
    if b.get(at) == Some(&b'$') {
        at += 1;
    }
    at = usd(at).unwrap_or(at);
    while b.get(at) == Some(&b' ') {
        at += 1;
    }
    let start = at;
    let mut dollars = 0u64;
    while let Some(d @ b'0'..=b'9') = b.get(at) {
        dollars = dollars * 10 + u64::from(d - b'0');
        at += 1;
    }
    let digits = at - start;
    if digits == 0 || digits > MAX_AMOUNT_INTEGER_DIGITS || (b[start] == b'0' && digits > 1) {
        return None;
    }
    let digit = |at: usize| match b.get(at) {
        Some(d @ b'0'..=b'9') => Some(u64::from(d - b'0')),
        _ => None,
    };
    if b.get(at) != Some(&b'.') {
        return Some((dollars * 100, at));
    }
    // A point takes one or two decimals (a third digit is left unread, so the caller sees it).
    let first = digit(at + 1)?;
    let (cents, read) = match digit(at + 2) {
        Some(second) => (first * 10 + second, at + 3),
        None => (first * 10, at + 2),
    };
    Some((dollars * 100 + cents, read))
}

/// The amount grammar over bytes with whitespace already removed.
fn parse_compact_amount(mut bytes: impl Iterator<Item = u8>) -> Option<u64> {
    // Prefix: optional "USD", optional '$', optional "USD"; `pending` is the first byte after it.
    let mut pending = bytes.next()?;
    let take_usd = |pending: &mut u8, bytes: &mut dyn Iterator<Item = u8>| -> Option<()> {
        if *pending == b'U' {
            if bytes.next()? != b'S' || bytes.next()? != b'D' {
                return None;
            }
            *pending = bytes.next()?;
        }
        Some(())
    };
    take_usd(&mut pending, &mut bytes)?;
    if pending == b'$' {
        pending = bytes.next()?;
    }
    take_usd(&mut pending, &mut bytes)?;
    let mut dollars: u64 = 0;
    let mut significant = 0usize;
    let mut next = Some(pending);
    let mut whole_digits = 0usize;
    while let Some(b @ b'0'..=b'9') = next {
        whole_digits += 1;
        if dollars > 0 || b != b'0' {
            significant += 1;
        }
        if significant > MAX_AMOUNT_INTEGER_DIGITS {
            return None;
        }
        dollars = dollars * 10 + u64::from(b - b'0');
        next = bytes.next();
    }
    if whole_digits == 0 {
        return None;
    }
    let cents = match next {
        None => 0,
        Some(b'.') => {
            let first = bytes.next().filter(u8::is_ascii_digit)?;
            match bytes.next() {
                None => u64::from(first - b'0') * 10,
                Some(second @ b'0'..=b'9') if bytes.next().is_none() => {
                    u64::from(first - b'0') * 10 + u64::from(second - b'0')
                }
                Some(_) => return None,
            }
        }
        Some(_) => return None,
    };
    dollars.checked_mul(100)?.checked_add(cents)
}

/// A UTC instant: seconds since the Unix epoch and the sub-second nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcInstant {
    /// Seconds since the Unix epoch.
    pub secs: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

pub use crate::calendar::days_from_civil;

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        _ => 28,
    }
}

fn fixed_digits(bytes: &[u8], at: usize, len: usize) -> Option<u32> {
    let slice = bytes.get(at..at + len)?;
    slice.iter().try_fold(0u32, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// Two ASCII digits at `at`.
fn two_digits(b: &[u8], at: usize) -> Option<u32> {
    let (x, y) = (
        b.get(at)?.wrapping_sub(b'0'),
        b.get(at + 1)?.wrapping_sub(b'0'),
    );
    (x < 10 && y < 10).then(|| u32::from(x) * 10 + u32::from(y))
}

/// The common form in one pass: `YYYY-MM-DDTHH:MM:SS`, an optional fraction, then `Z` or a
/// `±HH:MM` offset, nothing around it, seconds below 60. Every instant it reads,
/// [`parse_rfc3339`]'s general path reads the same; anything else is `None` and takes it.
fn common_rfc3339(b: &[u8]) -> Option<UtcInstant> {
    rfc3339_prefix(b)
        .filter(|&(_, read)| read == b.len())
        .map(|(instant, _)| instant)
}

/// [`common_rfc3339`] at the start of `b`: the instant and the bytes read, stopping after the
/// zone (the caller decides what may follow).
fn rfc3339_prefix(b: &[u8]) -> Option<(UtcInstant, usize)> {
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = two_digits(b, 0)? * 100 + two_digits(b, 2)?;
    let (month, day) = (two_digits(b, 5)?, two_digits(b, 8)?);
    let (hour, minute, second) = (two_digits(b, 11)?, two_digits(b, 14)?, two_digits(b, 17)?);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(i64::from(year), month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut at = 19;
    let mut nanos = 0u32;
    if b[at] == b'.' {
        at += 1;
        let start = at;
        while let Some(d @ b'0'..=b'9') = b.get(at) {
            if at - start < 9 {
                nanos = nanos * 10 + u32::from(d - b'0');
            }
            at += 1;
        }
        let digits = at - start;
        if digits == 0 {
            return None;
        }
        for _ in digits.min(9)..9 {
            nanos *= 10;
        }
    }
    let (offset, read) = match b.get(at..)? {
        [b'Z', ..] => (0, at + 1),
        [sign @ (b'+' | b'-'), _, _, b':', _, _, ..] => {
            let (oh, om) = (two_digits(b, at + 1)?, two_digits(b, at + 4)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let magnitude = i64::from(oh * 3600 + om * 60);
            let offset = if *sign == b'-' { -magnitude } else { magnitude };
            (offset, at + 6)
        }
        _ => return None,
    };
    let local = days_from_civil(i64::from(year), month, day) * 86_400
        + i64::from(hour * 3600 + minute * 60 + second);
    let instant = UtcInstant {
        secs: local - offset,
        nanos,
    };
    Some((instant, read))
}

/// Parses an RFC 3339 date-time (`2000-01-01T00:00:00Z`, `...T10:00:00.5+02:00`) into UTC.
///
/// Accepts `T`, `t` or a space between date and time, `Z`/`z` or a `±HH:MM` offset, and any
/// number of fraction digits (nanosecond precision kept). A leap second (`:60`) is read as
/// `:59.999999999` so it stays in its minute and day.
pub fn parse_rfc3339(raw: &str) -> Option<UtcInstant> {
    common_rfc3339(raw.as_bytes()).or_else(|| general_rfc3339(raw))
}

fn general_rfc3339(raw: &str) -> Option<UtcInstant> {
    let b = raw.trim().as_bytes();
    let year = i64::from(fixed_digits(b, 0, 4)?);
    let month = fixed_digits(b, 5, 2)?;
    let day = fixed_digits(b, 8, 2)?;
    let hour = fixed_digits(b, 11, 2)?;
    let minute = fixed_digits(b, 14, 2)?;
    let mut second = fixed_digits(b, 17, 2)?;
    let separators_ok = b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && matches!(b.get(10), Some(b'T' | b't' | b' '))
        && b.get(13) == Some(&b':')
        && b.get(16) == Some(&b':');
    if !separators_ok
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut pos = 19;
    let mut nanos = 0u32;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while let Some(d) = b.get(pos).filter(|d| d.is_ascii_digit()) {
            if pos - start < 9 {
                nanos = nanos * 10 + u32::from(d - b'0');
            }
            pos += 1;
        }
        let digits = pos - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..9 {
            nanos *= 10;
        }
    }
    let offset_secs: i64 = match b.get(pos) {
        Some(b'Z' | b'z') if b.len() == pos + 1 => 0,
        Some(sign @ (b'+' | b'-')) if b.len() == pos + 6 && b.get(pos + 3) == Some(&b':') => {
            let oh = fixed_digits(b, pos + 1, 2)?;
            let om = fixed_digits(b, pos + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let magnitude = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' { -magnitude } else { magnitude }
        }
        _ => return None,
    };
    if second == 60 {
        second = 59;
        nanos = 999_999_999;
    }
    let local =
        days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(UtcInstant {
        secs: local - offset_secs,
        nanos,
    })
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

#[cfg(test)]
mod swar_tests {
    use super::find_string_end;
    use proptest::prelude::*;

    fn reference(body: &[u8]) -> (Option<usize>, bool) {
        let stop = body
            .iter()
            .position(|b| *b == b'"' || *b == b'\\' || *b < 0x20);
        let ascii = body[..stop.unwrap_or(body.len())].is_ascii();
        (stop, ascii)
    }

    proptest! {
        #[test]
        fn swar_scan_matches_a_byte_loop(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let (stop, high) = find_string_end(&body);
            let (expected_stop, ascii) = reference(&body);
            prop_assert_eq!(stop, expected_stop);
            prop_assert_eq!(high < 0x80, ascii);
        }
    }
}
