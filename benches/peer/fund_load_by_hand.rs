//! Fund-load adjudication written by hand: the program a performance-minded user writes
//! instead of using the engine. One thread, one pass, a streaming reader with a 1 MiB buffer,
//! a fixed-order scanner for the canonical line shape, ids packed into integers, FxHash maps,
//! output rendered straight into a buffered writer. Same rules and the same output bytes as
//! the engine (the pipeline bench checks them), so it is a fair peer for the engine's inline
//! and multiprocess profiles.
//!
//! Only lines that are not in the canonical shape (about 1-2% of generated input: other amount
//! prefixes, offsets, bad fields) take the general path, which uses the library's JSON scanner
//! and field parsers, as a user would use any JSON library: it decides the same bytes by
//! construction, and it is not where the time goes.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use stream_kernel::apps::fund_load::parse as general;

/// The adjudication settings (the experiment profile: multiplier 2.0 on Mondays, prime gate on).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The Monday multiplier in ten-thousandths (20000 = 2.0), or none.
    pub monday_multiplier_e4: Option<u64>,
    pub prime_gate: bool,
    pub daily_attempts: u32,
    pub daily_amount_cents: u64,
    pub weekly_amount_cents: u64,
    pub prime_amount_cap_cents: u64,
    pub prime_daily_global_limit: u32,
    /// Week start, 0 = Monday.
    pub week_start: i64,
}

impl Settings {
    pub fn experiment() -> Self {
        Self {
            monday_multiplier_e4: Some(20_000),
            prime_gate: true,
            ..Self::baseline()
        }
    }

    pub fn baseline() -> Self {
        Self {
            monday_multiplier_e4: None,
            prime_gate: false,
            daily_attempts: 3,
            daily_amount_cents: 500_000,
            weekly_amount_cents: 2_000_000,
            prime_amount_cap_cents: 999_900,
            prime_daily_global_limit: 1,
            week_start: 0,
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }
    fn write_u128(&mut self, v: u128) {
        self.add(v as u64);
        self.add((v >> 64) as u64);
    }
    fn write_i32(&mut self, v: i32) {
        self.add(v as u32 as u64);
    }
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z ^ (z >> 31)
    }
}

impl Fx {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

const ACCEPTED: u8 = 0;
const INVALID_ID_FORMAT: u8 = 2;
const INVALID_AMOUNT_FORMAT: u8 = 3;
const INVALID_TIMESTAMP: u8 = 4;
const INPUT_PARSE_ERROR: u8 = 1;
const REPLAY: u8 = 5;
const CONFLICT: u8 = 6;
const DAILY_ATTEMPTS: u8 = 7;
const PRIME_CAP: u8 = 8;
const PRIME_GLOBAL: u8 = 9;
const DAILY_AMOUNT: u8 = 10;
const WEEKLY_AMOUNT: u8 = 11;

/// An attempt whose fields all parsed.
#[derive(Clone, Copy)]
struct Valid {
    id: u128,
    customer: u128,
    id_value: Option<u128>,
    cents: u64,
    secs: i64,
    nanos: u32,
}

#[derive(Default, Clone, Copy)]
struct Day {
    attempts: u32,
    cents: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Canonical {
    customer: u128,
    cents: u64,
    secs: i64,
    nanos: u32,
}

/// The state that makes a decision depend on earlier lines.
#[derive(Default)]
struct Books {
    seen: Map<u128, Canonical>,
    days: Map<(u128, i32), Day>,
    weeks: Map<(u128, i32), u64>,
    primes: Map<i32, u32>,
    long_ids: Map<Box<[u8]>, u128>,
}

impl Books {
    /// A digit string's key: `(len << 64) | value` up to 19 digits, interned above.
    fn key(&mut self, digits: &[u8]) -> u128 {
        if digits.len() <= 19 {
            let value = digits
                .iter()
                .fold(0u64, |v, d| v * 10 + u64::from(d - b'0'));
            return ((digits.len() as u128) << 64) | u128::from(value);
        }
        let next = (0xffu128 << 64) | self.long_ids.len() as u128;
        *self.long_ids.entry(digits.into()).or_insert(next)
    }

    fn decide(&mut self, a: &Valid, s: &Settings) -> u8 {
        let attempt = Canonical {
            customer: a.customer,
            cents: a.cents,
            secs: a.secs,
            nanos: a.nanos,
        };
        match self.seen.get(&a.id) {
            Some(first) if *first == attempt => return REPLAY,
            Some(_) => return CONFLICT,
            None => {
                self.seen.insert(a.id, attempt);
            }
        }
        let day = a.secs.div_euclid(86_400);
        let monday = (day + 3).rem_euclid(7) == 0;
        let week = (day + 3 - s.week_start).div_euclid(7) as i32;
        let day = day as i32;
        let effective = match s.monday_multiplier_e4 {
            Some(m) if monday => {
                let rounded = (u128::from(a.cents) * u128::from(m) + 5_000) / 10_000;
                u64::try_from(rounded).unwrap_or(u64::MAX)
            }
            _ => a.cents,
        };
        let prime = s.prime_gate && a.id_value.is_some_and(is_prime);
        let today = self
            .days
            .get(&(a.customer, day))
            .copied()
            .unwrap_or_default();
        let reason = if today.attempts + 1 > s.daily_attempts {
            DAILY_ATTEMPTS
        } else if prime && effective > s.prime_amount_cap_cents {
            PRIME_CAP
        } else if prime && self.primes.get(&day).copied().unwrap_or(0) >= s.prime_daily_global_limit
        {
            PRIME_GLOBAL
        } else if u128::from(today.cents) + u128::from(effective) > u128::from(s.daily_amount_cents)
        {
            DAILY_AMOUNT
        } else if u128::from(self.weeks.get(&(a.customer, week)).copied().unwrap_or(0))
            + u128::from(effective)
            > u128::from(s.weekly_amount_cents)
        {
            WEEKLY_AMOUNT
        } else {
            ACCEPTED
        };
        let entry = self.days.entry((a.customer, day)).or_default();
        entry.attempts = entry.attempts.saturating_add(1);
        if reason == ACCEPTED {
            entry.cents = entry.cents.saturating_add(effective);
            let w = self.weeks.entry((a.customer, week)).or_default();
            *w = w.saturating_add(effective);
            if prime {
                *self.primes.entry(day).or_default() += 1;
            }
        }
        reason
    }
}

/// The integer value of a digit string, when it has at most 38 significant digits (larger
/// ids are never prime by the rules' convention).
fn integer_value(digits: &[u8]) -> Option<u128> {
    let first = digits
        .iter()
        .position(|d| *d != b'0')
        .unwrap_or(digits.len());
    let significant = &digits[first..];
    (significant.len() <= 38).then(|| {
        significant
            .iter()
            .fold(0u128, |v, d| v * 10 + u128::from(d - b'0'))
    })
}

/// Miller-Rabin, deterministic: bases {2, 7, 61} below 4,759,123,141, Sinclair's seven bases
/// below 2^64 (64-bit products while `n` fits 32 bits); ids above 2^64 use the library's test.
fn is_prime(n: u128) -> bool {
    let Ok(n) = u64::try_from(n) else {
        return stream_kernel::apps::fund_load::rules::is_prime(n);
    };
    if n < 2 {
        return false;
    }
    for p in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        if n == p {
            return true;
        }
        if n % p == 0 {
            return false;
        }
    }
    if n < 37 * 37 {
        return true;
    }
    let mul = |a: u64, b: u64| {
        if n <= u64::from(u32::MAX) {
            a * b % n
        } else {
            (u128::from(a) * u128::from(b) % u128::from(n)) as u64
        }
    };
    let pow = |mut b: u64, mut e: u64| {
        let mut r = 1u64;
        while e > 0 {
            if e & 1 == 1 {
                r = mul(r, b);
            }
            b = mul(b, b);
            e >>= 1;
        }
        r
    };
    let mut d = n - 1;
    let mut s = 0;
    while d % 2 == 0 {
        d /= 2;
        s += 1;
    }
    let bases: &[u64] = if n < 4_759_123_141 {
        &[2, 7, 61]
    } else {
        &[2, 325, 9375, 28178, 450775, 9780504, 1795265022]
    };
    'bases: for &a in bases {
        let a = a % n;
        if a == 0 {
            continue;
        }
        let mut x = pow(a, d);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mul(x, x);
            if x == n - 1 {
                continue 'bases;
            }
        }
        return false;
    }
    true
}

/// The canonical line shape, `{"id":"D","customer_id":"D","load_amount":"A","time":"T"}` with
/// digit ids; `A` is an amount with any of the prefixes (`$`, `USD`, `USD$`, `$USD`), spaces
/// after the prefix, and none, one or two decimals; `T` an RFC 3339 time with `Z` or an offset
/// and any fraction.
struct Fast<'a> {
    id: &'a [u8],
    customer: &'a [u8],
    cents: u64,
    secs: i64,
    nanos: u32,
}

fn digits_until_quote(line: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = line.get(at..)?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    (end > 0 && rest[end] == b'"').then(|| (&rest[..end], at + end + 1))
}

fn expect(line: &[u8], at: usize, text: &[u8]) -> Option<usize> {
    (line.get(at..at + text.len())? == text).then_some(at + text.len())
}

fn two(b: &[u8], at: usize) -> Option<u32> {
    let (x, y) = (
        b.get(at)?.wrapping_sub(b'0'),
        b.get(at + 1)?.wrapping_sub(b'0'),
    );
    (x < 10 && y < 10).then(|| u32::from(x) * 10 + u32::from(y))
}

/// The amount in `line[at..]` up to its closing quote: cents and the position after the quote.
fn amount(line: &[u8], mut at: usize) -> Option<(u64, usize)> {
    let usd = |at: usize| (line.get(at..at + 3) == Some(b"USD")).then_some(at + 3);
    at = usd(at).unwrap_or(at);
    if line.get(at) == Some(&b'$') {
        at += 1;
    }
    at = usd(at).unwrap_or(at);
    while line.get(at) == Some(&b' ') {
        at += 1;
    }
    let start = at;
    let mut dollars = 0u64;
    while let Some(d @ b'0'..=b'9') = line.get(at) {
        dollars = dollars * 10 + u64::from(d - b'0');
        at += 1;
    }
    // At most 15 integer digits, and no leading zero (the general path's rule counts them).
    if at == start || at - start > 15 || (line[start] == b'0' && at - start > 1) {
        return None;
    }
    let cents = match line.get(at)? {
        b'.' => match (line.get(at + 1)?, line.get(at + 2)?) {
            (a @ b'0'..=b'9', b'"') => {
                at += 2;
                u64::from(a - b'0') * 10
            }
            (a @ b'0'..=b'9', b @ b'0'..=b'9') => {
                at += 3;
                u64::from(a - b'0') * 10 + u64::from(b - b'0')
            }
            _ => return None,
        },
        _ => 0,
    };
    (line.get(at) == Some(&b'"')).then(|| (dollars * 100 + cents, at + 1))
}

/// The RFC 3339 time in `line[at..]` up to its closing quote: UTC seconds, nanoseconds and the
/// position after the quote.
fn time(line: &[u8], at: usize) -> Option<(i64, u32, usize)> {
    let t = line.get(at..at + 19)?;
    if t[4] != b'-' || t[7] != b'-' || t[10] != b'T' || t[13] != b':' || t[16] != b':' {
        return None;
    }
    let year = two(t, 0)? * 100 + two(t, 2)?;
    let (month, day) = (two(t, 5)?, two(t, 8)?);
    let (hour, minute, second) = (two(t, 11)?, two(t, 14)?, two(t, 17)?);
    if !(1..=12).contains(&month)
        || day == 0
        || day > 28 && day > days_in(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut pos = at + 19;
    let mut nanos = 0u32;
    if line.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while let Some(d @ b'0'..=b'9') = line.get(pos) {
            if pos - start < 9 {
                nanos = nanos * 10 + u32::from(d - b'0');
            }
            pos += 1;
        }
        if pos == start {
            return None;
        }
        for _ in (pos - start).min(9)..9 {
            nanos *= 10;
        }
    }
    let offset = match line.get(pos)? {
        b'Z' => {
            pos += 1;
            0
        }
        sign @ (b'+' | b'-') => {
            let (oh, om) = (two(line, pos + 1)?, two(line, pos + 4)?);
            if line.get(pos + 3) != Some(&b':') || oh > 23 || om > 59 {
                return None;
            }
            pos += 6;
            let magnitude = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' { -magnitude } else { magnitude }
        }
        _ => return None,
    };
    if line.get(pos) != Some(&b'"') {
        return None;
    }
    let days = general::days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset;
    Some((secs, nanos, pos + 1))
}

fn fast_parse(line: &[u8]) -> Option<Fast<'_>> {
    let at = expect(line, 0, b"{\"id\":\"")?;
    let (id, at) = digits_until_quote(line, at)?;
    let at = expect(line, at, b",\"customer_id\":\"")?;
    let (customer, at) = digits_until_quote(line, at)?;
    let at = expect(line, at, b",\"load_amount\":\"")?;
    let (cents, at) = amount(line, at)?;
    let at = expect(line, at, b",\"time\":\"")?;
    let (secs, nanos, at) = time(line, at)?;
    (line.get(at..) == Some(b"}")).then_some(Fast {
        id,
        customer,
        cents,
        secs,
        nanos,
    })
}

fn days_in(year: u32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 31,
    }
}

/// Writes `{"id":"..","customer_id":"..","accepted":..}` for ids given as raw JSON string
/// contents (already escaped).
fn write_output(out: &mut Vec<u8>, id: &[u8], customer: &[u8], accepted: bool) {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id);
    out.extend_from_slice(b",\"customer_id\":");
    out.extend_from_slice(customer);
    out.extend_from_slice(if accepted {
        b",\"accepted\":true}\n"
    } else {
        b",\"accepted\":false}\n"
    });
}

fn quoted(out: &mut Vec<u8>, digits: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(digits);
    out.push(b'"');
}

fn dead_letter(rejects: &mut Vec<u8>, line: u64, detail: &str) {
    rejects.extend_from_slice(format!("{{\"line\":{line},\"node\":\"parse_load_attempt\",\"reason\":\"INPUT_PARSE_ERROR\",\"detail\":").as_bytes());
    stream_kernel::json::push_string(rejects, detail);
    rejects.extend_from_slice(b"}\n");
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub lines: u64,
    pub accepted: u64,
    pub general_path: u64,
}

/// Adjudicates `input` into `output` (and unreadable lines into `rejects`).
pub fn run(input: &Path, output: &Path, rejects: &Path, s: &Settings) -> io::Result<Counts> {
    let reader = BufReader::with_capacity(1 << 20, File::open(input)?);
    let out = BufWriter::with_capacity(1 << 18, File::create(output)?);
    let mut dead = Vec::new();
    let counts = adjudicate(reader, out, &mut dead, s, Flush::AtEnd)?;
    std::fs::write(rejects, dead)?;
    Ok(counts)
}

/// When the output buffer is handed to the operating system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// When it is full, and at the end (a batch job).
    AtEnd,
    /// Also before every read that may wait for input (the reader's buffer is empty): a
    /// stream job, where a decided line must not wait for the next input to arrive.
    WhenIdle,
}

/// Adjudicates every line of `reader` into `out` (unreadable lines into `dead`).
pub fn adjudicate<R: Read>(
    mut reader: BufReader<R>,
    mut out: impl Write,
    dead: &mut Vec<u8>,
    s: &Settings,
    flush: Flush,
) -> io::Result<Counts> {
    let mut books = Books::default();
    let mut line = Vec::with_capacity(256);
    let mut rendered = Vec::with_capacity(256);
    let mut counts = Counts::default();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        counts.lines += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        rendered.clear();
        if let Some(f) = fast_parse(&line) {
            let valid = Valid {
                id: books.key(f.id),
                customer: books.key(f.customer),
                id_value: integer_value(f.id),
                cents: f.cents,
                secs: f.secs,
                nanos: f.nanos,
            };
            let accepted = books.decide(&valid, s) == ACCEPTED;
            counts.accepted += u64::from(accepted);
            rendered.extend_from_slice(b"{\"id\":\"");
            rendered.extend_from_slice(f.id);
            rendered.extend_from_slice(b"\",\"customer_id\":\"");
            rendered.extend_from_slice(f.customer);
            rendered.extend_from_slice(if accepted {
                b"\",\"accepted\":true}\n"
            } else {
                b"\",\"accepted\":false}\n"
            });
        } else {
            counts.general_path += 1;
            if !general_line(
                &line,
                counts.lines,
                &mut books,
                s,
                &mut rendered,
                dead,
                &mut counts,
            ) {
                continue;
            }
        }
        out.write_all(&rendered)?;
        if flush == Flush::WhenIdle && reader.buffer().is_empty() {
            out.flush()?;
        }
    }
    out.flush()?;
    Ok(counts)
}

/// A line off the canonical shape; false when it produced no output line.
fn general_line(
    line: &[u8],
    number: u64,
    books: &mut Books,
    s: &Settings,
    rendered: &mut Vec<u8>,
    dead: &mut Vec<u8>,
    counts: &mut Counts,
) -> bool {
    if general::is_blank(line) {
        return false;
    }
    let fields = match general::parse_fields(line) {
        Ok(fields) => fields,
        Err(e) => {
            dead_letter(dead, number, &e.to_string());
            return false;
        }
    };
    let (general::Field::String(id), general::Field::String(customer)) =
        (&fields.id, &fields.customer_id)
    else {
        dead_letter(
            dead,
            number,
            "`id` and `customer_id` must both be JSON strings",
        );
        return false;
    };
    let (mut id_text, mut customer_text) = (Vec::new(), Vec::new());
    let reason = match (general::digits_id(id), general::digits_id(customer)) {
        (Some(id_digits), Some(customer_digits)) => {
            quoted(&mut id_text, id_digits.as_bytes());
            quoted(&mut customer_text, customer_digits.as_bytes());
            let amount = fields.load_amount.as_str();
            let time = fields.time.as_str();
            match (amount, time) {
                (Some(amount), Some(time)) => match general::parse_amount_cents(amount) {
                    None => INVALID_AMOUNT_FORMAT,
                    Some(cents) => match general::parse_rfc3339(time) {
                        None => INVALID_TIMESTAMP,
                        Some(instant) => {
                            let id_digits = id_digits.as_bytes();
                            let valid = Valid {
                                id: books.key(id_digits),
                                customer: books.key(customer_digits.as_bytes()),
                                id_value: integer_value(id_digits),
                                cents,
                                secs: instant.secs,
                                nanos: instant.nanos,
                            };
                            books.decide(&valid, s)
                        }
                    },
                },
                _ => INPUT_PARSE_ERROR,
            }
        }
        _ => {
            general::push_json_string(&mut id_text, id.trim());
            general::push_json_string(&mut customer_text, customer.trim());
            INVALID_ID_FORMAT
        }
    };
    let accepted = reason == ACCEPTED;
    counts.accepted += u64::from(accepted);
    write_output(rendered, &id_text, &customer_text, accepted);
    true
}
