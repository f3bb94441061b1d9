//! Fund-load business rules: limits, the velocity window store, the id registry, primality.
//!
//! Owns the state that makes an adjudication depend on earlier lines. Windows are exact
//! calendar windows in UTC keyed by (customer, day) and (customer, week), so input that is not
//! time-ordered is still judged by the calendar, not by arrival. Customer and attempt ids are
//! digit strings; up to 19 digits they pack into a `u128` key (length + value, so leading zeros
//! stay significant), longer ones are interned.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::messages::{DigitText, Reason};

/// A small, fast, deterministic hasher (the rustc "Fx" mix with a final avalanche). Keys here
/// are ids already validated as digits; the same hash is used for partitioning, so it must be
/// identical in every process.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(tail) ^ (rest.len() as u64) << 56);
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_u128(&mut self, value: u128) {
        self.add(value as u64);
        self.add((value >> 64) as u64);
    }

    fn write_i32(&mut self, value: i32) {
        self.add(value as u32 as u64);
    }

    fn finish(&self) -> u64 {
        // Final avalanche (splitmix64) so that low bits, which hash tables use, are mixed.
        let mut z = self.hash;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

/// A `HashMap` with FxHash: ids are not chosen by an adversary who could exploit it here (the run is a batch over its own input).
pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A deterministic 64-bit hash of a string (partition keys).
pub fn stable_hash(text: &str) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write(text.as_bytes());
    hasher.finish()
}

/// Maps ids to compact keys.
#[derive(Debug, Default)]
pub struct DigitKeys {
    long: FxMap<Box<str>, u64>,
}

/// Marks interned (longer than 19 digits) keys; packed keys have a length <= 19 there.
const INTERNED_TAG: u128 = 0xff << 64;

impl DigitKeys {
    /// The key of an id: `(len << 64) | value` up to 19 digits, an interned number above.
    pub fn key(&mut self, id: &DigitText) -> u128 {
        if id.is_short() {
            return (u128::from(id.len) << 64) | u128::from(id.value);
        }
        let next = self.long.len() as u64;
        let interned = match self.long.get(id.text()) {
            Some(known) => *known,
            None => *self.long.entry(id.text().into()).or_insert(next),
        };
        INTERNED_TAG | u128::from(interned)
    }
}

/// A deterministic hash of an id, identical in every process (partition keys).
pub fn id_hash(id: &DigitText) -> u64 {
    let mut hasher = FxHasher::default();
    if id.is_short() {
        hasher.write_u64(id.value);
        hasher.write_u64(u64::from(id.len));
    } else {
        hasher.write(id.text().as_bytes());
    }
    hasher.finish()
}

/// Whether an id's integer value is prime (see [`is_prime_digits`] for long ids).
pub fn is_prime_id(id: &DigitText) -> bool {
    if id.is_short() {
        is_prime(u128::from(id.value))
    } else {
        id.text().bytes().all(|b| b.is_ascii_digit()) && is_prime_digits(id.text())
    }
}

/// Velocity limits and prime-gate limits (`nodes.evaluate_policies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Attempts per customer per day.
    pub daily_attempts: u32,
    /// Amount per customer per day, in cents.
    pub daily_amount_cents: u64,
    /// Amount per customer per week, in cents.
    pub weekly_amount_cents: u64,
    /// The largest amount of a load with a prime id, in cents.
    pub prime_amount_cap_cents: u64,
    /// Loads with a prime id per day, across all customers.
    pub prime_daily_global_limit: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            daily_attempts: 3,
            daily_amount_cents: 500_000,
            weekly_amount_cents: 2_000_000,
            prime_amount_cap_cents: 999_900,
            prime_daily_global_limit: 1,
        }
    }
}

/// What the policy checks need to know about one canonical, valid attempt.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The customer.
    pub customer_id: &'a DigitText,
    /// UTC day index.
    pub day: i32,
    /// Week index.
    pub week: i32,
    /// The amount counted against the limits.
    pub effective_cents: u64,
    /// Whether the prime gate applies.
    pub prime_gated: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct DayWindow {
    attempts: u32,
    accepted_cents: u64,
}

/// Per-customer day and week windows and the global per-day count of accepted prime loads.
/// `evaluate_policies` reads it, `update_windows` writes it; both hold the same store.
#[derive(Debug, Default)]
pub struct WindowStore {
    customers: DigitKeys,
    days: FxMap<(u128, i32), DayWindow>,
    weeks: FxMap<(u128, i32), u64>,
    prime_days: FxMap<i32, u32>,
}

impl WindowStore {
    /// The first failing check for `c`, or [`Reason::Accepted`]. Each check declines only when
    /// the projected value is strictly greater than its limit.
    pub fn evaluate(&mut self, limits: &Limits, c: &Candidate<'_>) -> Reason {
        let customer = self.customers.key(c.customer_id);
        let day = self
            .days
            .get(&(customer, c.day))
            .copied()
            .unwrap_or_default();
        if u64::from(day.attempts) + 1 > u64::from(limits.daily_attempts) {
            return Reason::DailyAttemptLimit;
        }
        let effective = u128::from(c.effective_cents);
        if c.prime_gated {
            if effective > u128::from(limits.prime_amount_cap_cents) {
                return Reason::PrimeAmountCap;
            }
            let primes_today = self.prime_days.get(&c.day).copied().unwrap_or(0);
            if primes_today >= limits.prime_daily_global_limit {
                return Reason::PrimeDailyGlobalLimit;
            }
        }
        if u128::from(day.accepted_cents) + effective > u128::from(limits.daily_amount_cents) {
            return Reason::DailyAmountLimit;
        }
        let week = self.weeks.get(&(customer, c.week)).copied().unwrap_or(0);
        if u128::from(week) + effective > u128::from(limits.weekly_amount_cents) {
            return Reason::WeeklyAmountLimit;
        }
        Reason::Accepted
    }

    /// Commits a canonical attempt: one more attempt today; sums and the prime count only when
    /// it was accepted.
    pub fn commit(&mut self, c: &Candidate<'_>, accepted: bool) {
        let customer = self.customers.key(c.customer_id);
        let day = self.days.entry((customer, c.day)).or_default();
        day.attempts = day.attempts.saturating_add(1);
        if !accepted {
            return;
        }
        day.accepted_cents = day.accepted_cents.saturating_add(c.effective_cents);
        let week = self.weeks.entry((customer, c.week)).or_default();
        *week = week.saturating_add(c.effective_cents);
        if c.prime_gated {
            let primes = self.prime_days.entry(c.day).or_default();
            *primes = primes.saturating_add(1);
        }
    }
}

/// The canonical attempt of an id, for telling replays from conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Canonical {
    customer: u128,
    amount_cents: u64,
    time_secs: i64,
    time_nanos: u32,
}

/// The ids seen so far (`idempotency_gate`).
#[derive(Debug, Default)]
pub struct IdRegistry {
    ids: DigitKeys,
    customers: DigitKeys,
    seen: FxMap<u128, Canonical>,
}

/// A valid attempt as the id registry sees it.
#[derive(Debug, Clone, Copy)]
pub struct IdCheck<'a> {
    /// The load's id.
    pub id: &'a DigitText,
    /// The customer's id.
    pub customer_id: &'a DigitText,
    /// The amount in cents.
    pub amount_cents: u64,
    /// UTC seconds.
    pub time_secs: i64,
    /// Sub-second nanoseconds.
    pub time_nanos: u32,
}

impl IdRegistry {
    /// Registers the first attempt with an id ([`Reason::Accepted`] = canonical) or classifies a
    /// repeat as a replay (same customer, amount and instant) or a conflict.
    pub fn check(&mut self, a: &IdCheck<'_>) -> Reason {
        let id = self.ids.key(a.id);
        let attempt = Canonical {
            customer: self.customers.key(a.customer_id),
            amount_cents: a.amount_cents,
            time_secs: a.time_secs,
            time_nanos: a.time_nanos,
        };
        match self.seen.get(&id) {
            None => {
                self.seen.insert(id, attempt);
                Reason::Accepted
            }
            Some(first) if *first == attempt => Reason::IdDuplicateReplay,
            Some(_) => Reason::IdDuplicateConflict,
        }
    }
}

/// Calendar keys of a UTC instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalendarKeys {
    /// Days since 1970-01-01.
    pub day: i32,
    /// Week index for the configured week start.
    pub week: i32,
    /// Whether the day is a Monday.
    pub is_monday: bool,
}

/// Day index, week index (weeks starting on `week_start`, 0 = Monday .. 6 = Sunday) and whether
/// the UTC day is a Monday.
pub fn calendar_keys(time_secs: i64, week_start: u8) -> CalendarKeys {
    let day = time_secs.div_euclid(86_400);
    // 1970-01-01 was a Thursday: weekday 3 with Monday = 0.
    let weekday = (day + 3).rem_euclid(7);
    let week = (day + 3 - i64::from(week_start)).div_euclid(7);
    CalendarKeys {
        day: day.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
        week: week.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
        is_monday: weekday == 0,
    }
}

/// Applies a multiplier given in ten-thousandths (2.0 = 20000), rounding half up to the cent.
pub fn apply_multiplier(cents: u64, multiplier_e4: u64) -> u64 {
    let product = u128::from(cents) * u128::from(multiplier_e4);
    let rounded = (product + 5_000) / 10_000;
    u64::try_from(rounded).unwrap_or(u64::MAX)
}

/// Whether the integer value of a digit string is prime. Exact for values below 2^128
/// (deterministic Miller-Rabin below 3.3 * 10^24, 24 fixed bases above); values of 39 or more
/// significant digits are treated as not prime.
pub fn is_prime_digits(digits: &str) -> bool {
    let significant = digits.trim_start_matches('0');
    if significant.len() > 38 {
        return false;
    }
    match significant.parse::<u128>() {
        Ok(n) => is_prime(n),
        Err(_) => false, // empty: the value is 0
    }
}

const SMALL_PRIMES: [u128; 24] = [
    2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
];

/// Miller-Rabin primality.
pub fn is_prime(n: u128) -> bool {
    match u64::try_from(n) {
        Ok(small) => is_prime_u64(small),
        Err(_) => is_prime_wide(n),
    }
}

/// Miller-Rabin in 128-bit arithmetic (bases 2..37 deterministic below 3.3e24, the first 24
/// primes above).
fn is_prime_wide(n: u128) -> bool {
    if n < 2 {
        return false;
    }
    for p in SMALL_PRIMES {
        if n == p {
            return true;
        }
        if n.is_multiple_of(p) {
            return false;
        }
    }
    let mut d = n - 1;
    let mut s = 0;
    while d.is_multiple_of(2) {
        d /= 2;
        s += 1;
    }
    // Bases 2..37 are deterministic for n < 3.3e24; all 24 small primes are used above that.
    let bases: &[u128] = if n < 3_317_044_064_679_887_385_961_981 {
        &SMALL_PRIMES[..12]
    } else {
        &SMALL_PRIMES
    };
    'bases: for &a in bases {
        let mut x = pow_mod(a, d, n);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mul_mod(x, x, n);
            if x == n - 1 {
                continue 'bases;
            }
        }
        return false;
    }
    true
}

/// Miller-Rabin for 64-bit values: deterministic with the bases {2, 7, 61} below
/// 4,759,123,141 and with Jim Sinclair's seven bases below 2^64
/// (<https://miller-rabin.appspot.com/>). Products stay in 64 bits while `n` fits 32.
fn is_prime_u64(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    for p in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        if n == p {
            return true;
        }
        if n.is_multiple_of(p) {
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
    let pow = |mut base: u64, mut exp: u64| {
        let mut result = 1u64;
        while exp > 0 {
            if exp & 1 == 1 {
                result = mul(result, base);
            }
            base = mul(base, base);
            exp >>= 1;
        }
        result
    };
    let mut d = n - 1;
    let mut s = 0;
    while d.is_multiple_of(2) {
        d /= 2;
        s += 1;
    }
    const SMALL_BASES: [u64; 3] = [2, 7, 61];
    const LARGE_BASES: [u64; 7] = [2, 325, 9375, 28178, 450775, 9780504, 1795265022];
    let bases: &[u64] = if n < 4_759_123_141 {
        &SMALL_BASES
    } else {
        &LARGE_BASES
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

fn mul_mod(a: u128, b: u128, m: u128) -> u128 {
    if let (Ok(a64), Ok(b64), Ok(_)) = (u64::try_from(a), u64::try_from(b), u64::try_from(m)) {
        return u128::from(a64) * u128::from(b64) % m;
    }
    // Double-and-add keeps every intermediate below 2m < 2^129 without overflow: m < 2^127
    // here is not guaranteed, so additions use the overflow-safe form.
    let (mut a, mut b, mut result) = (a % m, b, 0u128);
    while b > 0 {
        if b & 1 == 1 {
            result = add_mod(result, a, m);
        }
        a = add_mod(a, a, m);
        b >>= 1;
    }
    result
}

fn add_mod(a: u128, b: u128, m: u128) -> u128 {
    // a, b < m; compute (a + b) mod m without overflowing u128.
    if a >= m - b { a - (m - b) } else { a + b }
}

fn pow_mod(mut base: u128, mut exp: u128, m: u128) -> u128 {
    let mut result = 1u128;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            result = mul_mod(result, base, m);
        }
        base = mul_mod(base, base, m);
        exp >>= 1;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial_division(n: u128) -> bool {
        n >= 2
            && (2..)
                .take_while(|d| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
    }

    #[test]
    fn miller_rabin_matches_trial_division() {
        for n in 0..20_000u128 {
            assert_eq!(is_prime(n), trial_division(n), "{n}");
        }
        // Around the switch between base sets, and strong pseudoprimes to small bases.
        for n in 4_759_123_041u128..4_759_123_241 {
            assert_eq!(is_prime(n), trial_division(n), "{n}");
        }
        for pseudoprime in [
            2_047u128,
            1_373_653,
            25_326_001,
            3_215_031_751,
            2_152_302_898_747,
        ] {
            assert!(!is_prime(pseudoprime), "{pseudoprime}");
        }
        assert!(is_prime(18_446_744_073_709_551_557)); // largest prime below 2^64
        assert!(!is_prime(18_446_744_073_709_551_559));
        assert!(is_prime(
            170_141_183_460_469_231_731_687_303_715_884_105_727
        )); // 2^127 - 1
        assert!(!is_prime(3_317_044_064_679_887_385_961_981)); // strong pseudoprime to bases 2..37
    }

    #[test]
    fn the_64_bit_test_agrees_with_the_wide_one() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            for n in [state, state >> 32, state >> 20, state | 1] {
                assert_eq!(is_prime_u64(n), is_prime_wide(u128::from(n)), "{n}");
            }
        }
    }

    #[test]
    fn prime_digits_ignore_leading_zeros() {
        assert!(is_prime_digits("0007"));
        assert!(!is_prime_digits("0000"));
        assert!(!is_prime_digits("1"));
    }

    fn key_of(keys: &mut DigitKeys, id: &str) -> u128 {
        let mut text = DigitText::default();
        text.set(id);
        keys.key(&text)
    }

    #[test]
    fn digit_keys_keep_leading_zeros_distinct() {
        let mut keys = DigitKeys::default();
        assert_ne!(key_of(&mut keys, "528"), key_of(&mut keys, "0528"));
        assert_eq!(key_of(&mut keys, "528"), key_of(&mut keys, "528"));
        let long = "1".repeat(30);
        assert_eq!(key_of(&mut keys, &long), key_of(&mut keys, &long));
        assert_ne!(key_of(&mut keys, &long), key_of(&mut keys, &"2".repeat(30)));
    }

    #[test]
    fn calendar_keys_monday_and_week_boundaries() {
        // 2000-01-02 was a Sunday, 2000-01-03 a Monday.
        let sunday_late = 946_857_599; // 2000-01-02T23:59:59Z
        let monday = 946_857_600; // 2000-01-03T00:00:00Z
        let a = calendar_keys(sunday_late, 0);
        let b = calendar_keys(monday, 0);
        assert!(!a.is_monday && b.is_monday);
        assert_eq!(b.day, a.day + 1);
        assert_eq!(b.week, a.week + 1);
        // With weeks starting on Sunday, both fall in the same week.
        assert_eq!(
            calendar_keys(sunday_late, 6).week,
            calendar_keys(monday, 6).week
        );
    }

    #[test]
    fn multiplier_is_exact_in_cents() {
        assert_eq!(apply_multiplier(250_001, 20_000), 500_002);
        assert_eq!(apply_multiplier(1, 15_000), 2); // 1.5 cents rounds half up
    }
}
