//! `stream-kernel gen`: a deterministic fund-load input in the shape of real data.
//!
//! Same `(lines, seed)`, same bytes, on every platform and every version of this crate's
//! dependencies: the generator uses its own SplitMix64 and integer arithmetic only.
//!
//! What it produces, so that every rule fires: non-decreasing times starting 2000-01-01 (a
//! Saturday) with explicit Sunday 23:59:59 / Monday 00:00:00 pairs at day boundaries; a few
//! hundred to twenty thousand customers plus a handful of heavy ones that hit daily and weekly
//! limits; bursts of same-customer loads that hit the daily attempt limit; every amount prefix
//! form; amounts at and around each limit; increasing ids with natural primes; about 1.5%
//! repeated ids (replays right after their canonical line, conflicts of recent ids); and about
//! 0.3% bad lines of every kind (unparseable, bad id, bad amount, bad time, unreadable, blank).

use std::collections::VecDeque;

use crate::calendar::civil_from_days;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fixed forever here.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `per_10k / 10_000`.
    pub fn chance(&mut self, per_10k: u64) -> bool {
        self.below(10_000) < per_10k
    }
}

/// Amounts (cents) at and around every limit of both profiles.
const BOUNDARY_AMOUNTS: [u64; 14] = [
    499_999, 500_000, 500_001, 250_000, 250_001, 249_999, 999_900, 999_901, 1_000_000, 400_000,
    166_667, 1_999_999, 2_000_000, 2_000_001,
];

#[derive(Debug, Clone)]
struct Recent {
    id: u64,
}

/// Streams generated lines.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: SplitMix64,
    remaining: u64,
    time: i64,
    next_id: u64,
    customers: u64,
    seconds_per_line: u64,
    recent: VecDeque<Recent>,
    queued: VecDeque<Vec<u8>>,
    last_line: Vec<u8>,
    bad_kind: u64,
    /// Lower bound for the next time (after a pinned day-boundary pair).
    time_floor: Option<i64>,
}

/// 2000-01-01T00:00:00Z.
const START_SECS: i64 = 946_684_800;

impl Generator {
    /// A generator of `lines` lines from `seed` (the same seed gives the same lines).
    pub fn new(lines: u64, seed: u64) -> Self {
        let customers = (lines / 40).clamp(300, 20_000);
        // About 0.3 loads per customer per day.
        let lines_per_day = (customers * 3 / 10).max(1);
        Self {
            rng: SplitMix64::new(seed ^ 0x5eed_f00d_0000_0000),
            remaining: lines,
            time: START_SECS,
            next_id: 10_000,
            customers,
            seconds_per_line: (86_400 / lines_per_day).max(1),
            recent: VecDeque::with_capacity(1024),
            queued: VecDeque::new(),
            last_line: Vec::new(),
            bad_kind: 0,
            time_floor: None,
        }
    }

    /// Writes the next line (without newline) into `out`, replacing it; `false` when done.
    pub fn next_line(&mut self, out: &mut Vec<u8>) -> bool {
        if self.remaining == 0 {
            return false;
        }
        self.remaining -= 1;
        out.clear();
        if let Some(line) = self.queued.pop_front() {
            out.extend_from_slice(&line);
        } else {
            self.produce(out);
        }
        self.last_line.clear();
        self.last_line.extend_from_slice(out);
        true
    }

    fn produce(&mut self, out: &mut Vec<u8>) {
        let roll = self.rng.below(10_000);
        match roll {
            0..30 => self.bad_line(out),
            30..110 if !self.last_line.is_empty() => out.extend_from_slice(&self.last_line.clone()),
            110..180 if !self.recent.is_empty() => self.conflict(out),
            180..280 => self.burst(out),
            _ => {
                self.advance_time();
                let customer = self.pick_customer();
                let amount = self.pick_amount();
                let id = self.fresh_id();
                self.write_attempt(out, &id.to_string(), &customer, amount);
            }
        }
    }

    fn advance_time(&mut self) {
        if let Some(floor) = self.time_floor.take() {
            self.time = self.time.max(floor);
        }
        let step = self.rng.below(2 * self.seconds_per_line + 1) as i64;
        let next = self.time + step;
        let day_end = (self.time.div_euclid(86_400) + 1) * 86_400;
        if next >= day_end && self.time < day_end - 1 && self.queued.is_empty() {
            // Pin a pair of loads to the last second of this day and the first of the next:
            // the caller writes the current line at 23:59:59, the queued one follows at 00:00:00.
            self.time = day_end;
            let customer = self.pick_customer();
            let id = self.fresh_id();
            let amount = self.pick_amount();
            let mut line = Vec::new();
            self.write_attempt(&mut line, &id.to_string(), &customer, amount);
            self.queued.push_back(line);
            self.time = day_end - 1;
            self.time_floor = Some(day_end);
            return;
        }
        self.time = next;
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1 + self.rng.below(30);
        if self.recent.len() == 1024 {
            self.recent.pop_front();
        }
        self.recent.push_back(Recent { id: self.next_id });
        self.next_id
    }

    fn pick_customer(&mut self) -> String {
        match self.rng.below(1000) {
            // A few heavy customers who load big amounts often.
            0..25 => format!("{}", 9_000_000 + self.rng.below(8)),
            // Leading zeros are significant: "0042" is not "42".
            25..27 => "0042".to_string(),
            _ => format!("{}", 1 + self.rng.below(self.customers)),
        }
    }

    fn pick_amount(&mut self) -> u64 {
        match self.rng.below(100) {
            0..70 => 100 + self.rng.below(150_000),
            70..85 => 150_000 + self.rng.below(250_000),
            85..95 => BOUNDARY_AMOUNTS[self.rng.below(BOUNDARY_AMOUNTS.len() as u64) as usize],
            _ => 500_001 + self.rng.below(700_000),
        }
    }

    fn burst(&mut self, out: &mut Vec<u8>) {
        self.advance_time();
        let customer = self.pick_customer();
        let count = 3 + self.rng.below(4);
        let first_amount = 100 + self.rng.below(200_000);
        let first_id = self.fresh_id();
        self.write_attempt(out, &first_id.to_string(), &customer, first_amount);
        for _ in 1..count {
            let mut line = Vec::new();
            let id = self.fresh_id();
            let amount = 100 + self.rng.below(200_000);
            self.write_attempt(&mut line, &id.to_string(), &customer, amount);
            self.queued.push_back(line);
        }
    }

    fn conflict(&mut self, out: &mut Vec<u8>) {
        self.advance_time();
        let pick = self.rng.below(self.recent.len() as u64) as usize;
        let id = self.recent[pick].id;
        let customer = self.pick_customer();
        let amount = self.pick_amount();
        self.write_attempt(out, &id.to_string(), &customer, amount);
    }

    fn bad_line(&mut self, out: &mut Vec<u8>) {
        self.advance_time();
        self.bad_kind = (self.bad_kind + 1) % 7;
        let id = self.fresh_id().to_string();
        let customer = self.pick_customer();
        let time = self.format_time();
        let line = match self.bad_kind {
            0 => format!(r#"{{"id":"{id}","customer_id":"{customer}","load_amount":"$12.00""#),
            1 => format!(r#"{{"id":"{id}","customer_id":"{customer}","load_amount":"$12.00"}}"#),
            2 => format!(
                r#"{{"id":"{id}x","customer_id":"{customer}","load_amount":"$12.00","time":"{time}"}}"#
            ),
            3 => format!(
                r#"{{"id":"{id}","customer_id":"{customer}","load_amount":"$12.345","time":"{time}"}}"#
            ),
            4 => format!(
                r#"{{"id":"{id}","customer_id":"{customer}","load_amount":"$12.00","time":"2000-02-30T00:00:00Z"}}"#
            ),
            5 => format!(
                r#"{{"id":{id},"customer_id":"{customer}","load_amount":"$12.00","time":"{time}"}}"#
            ),
            _ => String::new(),
        };
        out.extend_from_slice(line.as_bytes());
    }

    fn write_attempt(&mut self, out: &mut Vec<u8>, id: &str, customer: &str, cents: u64) {
        let amount = self.format_amount(cents);
        let time = self.format_time();
        out.extend_from_slice(
            format!(r#"{{"id":"{id}","customer_id":"{customer}","load_amount":"{amount}","time":"{time}"}}"#)
                .as_bytes(),
        );
    }

    fn format_amount(&mut self, cents: u64) -> String {
        let (dollars, rem) = (cents / 100, cents % 100);
        let number = match self.rng.below(20) {
            0 if rem == 0 => format!("{dollars}"),
            1 if rem % 10 == 0 => format!("{dollars}.{}", rem / 10),
            _ => format!("{dollars}.{rem:02}"),
        };
        match self.rng.below(20) {
            0..12 => format!("${number}"),
            12..14 => format!("USD{number}"),
            14..16 => format!("USD${number}"),
            16 => format!("$USD{number}"),
            17 => format!("$ {number}"),
            _ => number,
        }
    }

    fn format_time(&mut self) -> String {
        let offset_minutes: i64 = match self.rng.below(20) {
            0 => 120,
            1 => -300,
            2 => 330,
            _ => 0,
        };
        let local = self.time + offset_minutes * 60;
        let (date, secs) = (local.div_euclid(86_400), local.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(date);
        let (hh, mm, ss) = (secs / 3600, secs % 3600 / 60, secs % 60);
        let zone = if offset_minutes == 0 {
            "Z".to_string()
        } else {
            let sign = if offset_minutes < 0 { '-' } else { '+' };
            let abs = offset_minutes.abs();
            format!("{sign}{:02}:{:02}", abs / 60, abs % 60)
        };
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}{zone}")
    }
}

/// Writes `lines` generated lines, each newline-terminated, to `out`.
pub fn write_lines(lines: u64, seed: u64, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let mut generator = Generator::new(lines, seed);
    let mut line = Vec::with_capacity(128);
    while generator.next_line(&mut line) {
        line.push(b'\n');
        out.write_all(&line)?;
    }
    Ok(())
}

/// The generator as a program's line generator ([`crate::adapters::MakeGenerator`]).
pub fn make(lines: u64, seed: u64) -> Box<dyn crate::adapters::LineGenerator> {
    Box::new(Generator::new(lines, seed))
}

impl crate::adapters::LineGenerator for Generator {
    fn next_line(&mut self, line: &mut Vec<u8>) -> bool {
        Generator::next_line(self, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_lines_and_count() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_lines(5_000, 7, &mut a).unwrap();
        write_lines(5_000, 7, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.iter().filter(|b| **b == b'\n').count(), 5_000);
        let mut c = Vec::new();
        write_lines(5_000, 8, &mut c).unwrap();
        assert_ne!(a, c);
    }
}
