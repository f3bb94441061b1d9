//! RFC 3339 timestamps to UTC instants (proleptic Gregorian calendar), with a one-pass reader
//! for the common `YYYY-MM-DDTHH:MM:SSZ` form.

/// A UTC instant: seconds since the Unix epoch and the sub-second nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcInstant {
    /// Seconds since the Unix epoch.
    pub secs: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

pub use crate::calendar::days_from_civil;

pub(super) fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub(super) fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        _ => 28,
    }
}

pub(super) fn fixed_digits(bytes: &[u8], at: usize, len: usize) -> Option<u32> {
    let slice = bytes.get(at..at + len)?;
    slice.iter().try_fold(0u32, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// Two ASCII digits at `at`.
pub(super) fn two_digits(b: &[u8], at: usize) -> Option<u32> {
    let (x, y) = (
        b.get(at)?.wrapping_sub(b'0'),
        b.get(at + 1)?.wrapping_sub(b'0'),
    );
    (x < 10 && y < 10).then(|| u32::from(x) * 10 + u32::from(y))
}

/// The common form in one pass: `YYYY-MM-DDTHH:MM:SS`, an optional fraction, then `Z` or a
/// `±HH:MM` offset, nothing around it, seconds below 60. Every instant it reads,
/// [`parse_rfc3339`]'s general path reads the same; anything else is `None` and takes it.
pub(super) fn common_rfc3339(b: &[u8]) -> Option<UtcInstant> {
    rfc3339_prefix(b)
        .filter(|&(_, read)| read == b.len())
        .map(|(instant, _)| instant)
}

/// [`common_rfc3339`] at the start of `b`: the instant and the bytes read, stopping after the
/// zone (the caller decides what may follow).
pub(super) fn rfc3339_prefix(b: &[u8]) -> Option<(UtcInstant, usize)> {
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

pub(super) fn general_rfc3339(raw: &str) -> Option<UtcInstant> {
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
