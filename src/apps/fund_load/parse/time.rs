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
    // The fixed part as an array: every index below is checked once, at compile time.
    let head: &[u8; 20] = b.get(..20)?.try_into().ok()?;
    if head[4] != b'-'
        || head[7] != b'-'
        || head[10] != b'T'
        || head[13] != b':'
        || head[16] != b':'
    {
        return None;
    }
    let pair = |at: usize| {
        let (x, y) = (head[at].wrapping_sub(b'0'), head[at + 1].wrapping_sub(b'0'));
        (x < 10 && y < 10).then(|| u32::from(x) * 10 + u32::from(y))
    };
    let year = pair(0)? * 100 + pair(2)?;
    let (month, day) = (pair(5)?, pair(8)?);
    let (hour, minute, second) = (pair(11)?, pair(14)?, pair(17)?);
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
    if head[19] == b'.' {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Text shaped like an RFC 3339 date-time, every field drawn wide enough to be invalid
    /// too: digits or not, separators right or wrong, fractions of 0-12 digits, zones of every
    /// form, trailing bytes.
    fn date_time_like() -> impl Strategy<Value = String> {
        // A field of `width` digits around its valid range (the edges and just past them),
        // now and then not digits at all.
        let field = |range: std::ops::Range<u32>, width: usize| {
            prop_oneof![
                9 => range.prop_map(move |v| format!("{v:0width$}")),
                1 => Just("x".repeat(width)),
            ]
        };
        (
            (
                field(1960..2110, 4),
                field(0..14, 2),
                field(0..33, 2),
                field(0..25, 2),
                field(0..61, 2),
                field(0..62, 2),
            ),
            prop_oneof![8 => Just('T'), 1 => Just('t'), 1 => Just(' ')],
            prop_oneof![
                Just(String::new()),
                (0usize..13).prop_map(|n| format!(".{}", "7".repeat(n)))
            ],
            prop_oneof![
                4 => Just("Z".to_string()),
                1 => Just("z".to_string()),
                4 => (0u32..26, 0u32..62, any::<bool>()).prop_map(|(h, m, minus)| {
                    format!("{}{h:02}:{m:02}", if minus { '-' } else { '+' })
                }),
                1 => Just(String::new()),
            ],
            prop_oneof![8 => Just(""), 1 => Just(" "), 1 => Just("x")],
        )
            .prop_map(|((y, mo, d, h, mi, s), sep, fraction, zone, tail)| {
                format!("{y}-{mo}-{d}{sep}{h}:{mi}:{s}{fraction}{zone}{tail}")
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The one-pass reader agrees with the general path on everything it accepts, and
        /// accepts every common `YYYY-MM-DDTHH:MM:SS[.f]Z|±HH:MM` form the general path does
        /// (seconds below 60).
        #[test]
        fn the_common_form_reads_what_the_general_path_reads(text in date_time_like()) {
            let common = common_rfc3339(text.as_bytes());
            let general = general_rfc3339(&text);
            if let Some(instant) = common {
                prop_assert_eq!(Some(instant), general);
            }
            let b = text.as_bytes();
            let common_shape = b.len() >= 20
                && b[10] == b'T'
                && !text.ends_with('z')
                && b.get(17..19).is_some_and(|s| s < b"60".as_slice());
            if general.is_some() && common_shape && text.trim() == text {
                prop_assert!(common.is_some(), "{} read only by the general path", text);
            }
        }
    }
}
