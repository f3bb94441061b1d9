//! The amount grammar of docs/fund-load.md: whitespace removed, an optional prefix of `USD`, `$`,
//! `USD`, digits with an optional `.` and one or two decimals; integer cents.

/// Largest number of significant integer digits in an amount (keeps cents far from overflow).
pub(super) const MAX_AMOUNT_INTEGER_DIGITS: usize = 15;

/// Parses an amount into integer cents: whitespace removed, one optional prefix made of an
/// optional `USD`, an optional `$` and an optional `USD`, then digits with an optional `.` and
/// one or two decimals.
pub fn parse_amount_cents(raw: &str) -> Option<u64> {
    common_amount(raw.as_bytes()).or_else(|| general_amount(raw))
}

pub(super) fn general_amount(raw: &str) -> Option<u64> {
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
pub(super) fn common_amount(b: &[u8]) -> Option<u64> {
    amount_prefix(b)
        .filter(|&(_, read)| read == b.len())
        .map(|(cents, _)| cents)
}

/// [`common_amount`] at the start of `b`: the cents and the bytes read, stopping at the first
/// byte the form does not take (the caller decides what may follow).
pub(super) fn amount_prefix(b: &[u8]) -> Option<(u64, usize)> {
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
pub(super) fn parse_compact_amount(mut bytes: impl Iterator<Item = u8>) -> Option<u64> {
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
