//! The messages on fund-load's edges, in pipeline order, and the decline reason codes.
//!
//! Money is integer cents, times are UTC seconds (plus nanoseconds for exact replay checks),
//! windows are day / week indices counted from the Unix epoch. Ids stay strings (leading zeros
//! are significant). A reason code travels as a `u8` and is decoded with [`Reason::from_code`],
//! which rejects unknown values instead of trusting bytes from another process.

use rkyv::{Archive, Deserialize, Serialize};

/// Why an attempt was declined (or that it was not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reason {
    /// The attempt was accepted.
    Accepted = 0,
    /// The line is not a JSON object with the four fields.
    InputParseError = 1,
    /// `id` or `customer_id` is not a string of digits.
    InvalidIdFormat = 2,
    /// `load_amount` is not a `$` amount with at most two decimals.
    InvalidAmountFormat = 3,
    /// `time` is not an RFC 3339 UTC timestamp.
    InvalidTimestamp = 4,
    /// The `id` was seen before for the same customer with the same content: a replay.
    IdDuplicateReplay = 5,
    /// The `id` was seen before with other content.
    IdDuplicateConflict = 6,
    /// More than the daily number of attempts for the customer.
    DailyAttemptLimit = 7,
    /// A prime `id` above the prime amount cap.
    PrimeAmountCap = 8,
    /// More than the prime attempts allowed per day across all customers.
    PrimeDailyGlobalLimit = 9,
    /// Above the customer's daily amount limit.
    DailyAmountLimit = 10,
    /// Above the customer's weekly amount limit.
    WeeklyAmountLimit = 11,
}

impl Reason {
    /// Every decline reason, in code order.
    pub const DECLINES: [Reason; 11] = [
        Reason::InputParseError,
        Reason::InvalidIdFormat,
        Reason::InvalidAmountFormat,
        Reason::InvalidTimestamp,
        Reason::IdDuplicateReplay,
        Reason::IdDuplicateConflict,
        Reason::DailyAttemptLimit,
        Reason::PrimeAmountCap,
        Reason::PrimeDailyGlobalLimit,
        Reason::DailyAmountLimit,
        Reason::WeeklyAmountLimit,
    ];

    /// The reason's code as carried in messages.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Decodes a reason read from an archive; unknown codes are `None`.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Accepted),
            c => Self::DECLINES.get(usize::from(c) - 1).copied(),
        }
    }

    /// The reason code as documented (`DAILY_AMOUNT_LIMIT`), or `ACCEPTED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "ACCEPTED",
            Self::InputParseError => "INPUT_PARSE_ERROR",
            Self::InvalidIdFormat => "INVALID_ID_FORMAT",
            Self::InvalidAmountFormat => "INVALID_AMOUNT_FORMAT",
            Self::InvalidTimestamp => "INVALID_TIMESTAMP",
            Self::IdDuplicateReplay => "ID_DUPLICATE_REPLAY",
            Self::IdDuplicateConflict => "ID_DUPLICATE_CONFLICT",
            Self::DailyAttemptLimit => "DAILY_ATTEMPT_LIMIT",
            Self::PrimeAmountCap => "PRIME_AMOUNT_CAP",
            Self::PrimeDailyGlobalLimit => "PRIME_DAILY_GLOBAL_LIMIT",
            Self::DailyAmountLimit => "DAILY_AMOUNT_LIMIT",
            Self::WeeklyAmountLimit => "WEEKLY_AMOUNT_LIMIT",
        }
    }

    /// True for the reasons that come from unreadable or invalid input fields.
    pub fn is_input_error(self) -> bool {
        matches!(
            self,
            Self::InputParseError
                | Self::InvalidIdFormat
                | Self::InvalidAmountFormat
                | Self::InvalidTimestamp
        )
    }
}

/// How many attempts were declined, per reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeclineCounts([u64; Reason::DECLINES.len()]);

impl DeclineCounts {
    /// One more attempt declined for `reason` (an accepted one is not counted here).
    pub fn add(&mut self, reason: Reason) {
        if let Some(slot) = Self::slot(reason) {
            self.0[slot] += 1;
        }
    }

    /// The attempts declined for `reason`.
    pub fn get(&self, reason: Reason) -> u64 {
        Self::slot(reason).map_or(0, |slot| self.0[slot])
    }

    /// Every decline reason with its count, in code order.
    pub fn iter(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::DECLINES
            .iter()
            .map(|&reason| (reason, self.get(reason)))
    }

    /// The reason's place: codes 1..=11 are the declines.
    fn slot(reason: Reason) -> Option<usize> {
        usize::from(reason.code()).checked_sub(1)
    }
}

/// An id as read from the input, losslessly: a string of 1 to 19 ASCII digits is kept as its
/// value and its length (so `"0528"` and `"528"` stay distinct), anything else as text. Ids are
/// compared, hashed and printed without copying or re-parsing strings on every hop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct DigitText {
    /// The number, when `len > 0`.
    pub value: u64,
    /// Digit count (1..=19), or 0 when the id is held in `text`.
    pub len: u8,
    /// The id as text when it is not 1..=19 ASCII digits (invalid ids, very long ids); none
    /// for digit ids, so copying an id is copying two integers.
    pub text: Option<Box<str>>,
}

impl DigitText {
    /// Sets this id from a string.
    pub fn set(&mut self, id: &str) {
        match short_digits(id) {
            Some(value) => {
                self.value = value;
                self.len = id.len() as u8;
                self.text = None;
            }
            None => {
                self.value = 0;
                self.len = 0;
                self.text = Some(id.into());
            }
        }
    }

    /// Sets this id from its digits, already read: `(value, digit count 1..=19)`.
    #[inline]
    pub fn set_digits(&mut self, (value, len): (u64, u8)) {
        self.value = value;
        self.len = len;
        if self.text.is_some() {
            self.text = None;
        }
    }

    /// The id's text when it is not held as digits (empty for digit ids).
    pub fn text(&self) -> &str {
        self.text.as_deref().unwrap_or("")
    }

    /// True when the id is held as digits.
    #[inline]
    pub fn is_short(&self) -> bool {
        self.len > 0
    }

    /// Writes the id's characters (digits zero-padded to their original length, or the text).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if self.len == 0 {
            out.extend_from_slice(self.text().as_bytes());
            return;
        }
        // Two digits per division, right to left, into zeros (the leading zeros of the id).
        let mut digits = [b'0'; 20];
        let mut value = self.value;
        let mut at = digits.len();
        while value >= 100 {
            let pair = (value % 100) as usize * 2;
            value /= 100;
            at -= 2;
            digits[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        }
        if value >= 10 {
            let pair = value as usize * 2;
            at -= 2;
            digits[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        } else if value > 0 {
            at -= 1;
            digits[at] = b'0' + value as u8;
        }
        let len = usize::from(self.len).min(digits.len());
        out.extend_from_slice(&digits[digits.len() - len..]);
    }

    /// The id as a string (allocates; for messages and rare paths).
    pub fn to_text(&self) -> String {
        let mut out = Vec::with_capacity(20);
        self.write_to(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// "00" to "99": two digits per table lookup when writing numbers.
const DIGIT_PAIRS: [u8; 200] = {
    let mut table = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        table[i * 2] = b'0' + (i / 10) as u8;
        table[i * 2 + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    table
};

/// The value of a string of 1 to 19 ASCII digits (always fits a `u64`), else `None`.
pub fn short_digits(digits: &str) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.bytes().try_fold(0u64, |value, b| {
        b.is_ascii_digit().then(|| value * 10 + u64::from(b - b'0'))
    })
}

/// One raw input line (without its line terminator), as the engine's line source emits it.
/// Bytes, not text: input files are arbitrary bytes and invalid UTF-8 is a decline reason,
/// not a crash.
pub use crate::adapters::Line as RawLine;

/// A parsed attempt. When `reason` is an input error the numeric fields are zero and the ids
/// are the strings as read (they still get an output line).
#[derive(Debug, Clone, Default, PartialEq, Archive, Serialize, Deserialize)]
pub struct LoadAttempt {
    /// The load's id, as read.
    pub id: DigitText,
    /// The customer's id, as read.
    pub customer_id: DigitText,
    /// The amount in cents.
    pub amount_cents: u64,
    /// UTC seconds since the Unix epoch.
    pub time_secs: i64,
    /// Sub-second part, kept so that replays compare the exact instant.
    pub time_nanos: u32,
    /// The input error found, or 0 ([`Reason::code`]).
    pub reason: u8,
}

/// An attempt with its calendar keys and features, filled in stage by stage.
#[derive(Debug, Clone, Default, PartialEq, Archive, Serialize, Deserialize)]
pub struct Attempt {
    /// The load's id.
    pub id: DigitText,
    /// The customer's id.
    pub customer_id: DigitText,
    /// The amount in cents.
    pub amount_cents: u64,
    /// UTC seconds since the Unix epoch.
    pub time_secs: i64,
    /// Sub-second part of the time.
    pub time_nanos: u32,
    /// UTC day index (days since 1970-01-01).
    pub day: i32,
    /// Week index for the configured week start.
    pub week: i32,
    /// Whether the time falls on a Monday (the Monday multiplier applies).
    pub is_monday: bool,
    /// Amount after the Monday multiplier (`compute_features`).
    pub effective_cents: u64,
    /// Prime gate on and `id` prime (`compute_features`).
    pub prime_gated: bool,
    /// Input error or duplicate reason so far; 0 = still a candidate.
    pub reason: u8,
}

/// The decision about one attempt (`evaluate_policies`), committed by `update_windows`.
#[derive(Debug, Clone, Default, PartialEq, Archive, Serialize, Deserialize)]
pub struct Decision {
    /// The load's id.
    pub id: DigitText,
    /// The customer's id.
    pub customer_id: DigitText,
    /// Whether the load was accepted.
    pub accepted: bool,
    /// The decline reason, or 0 when accepted ([`Reason::code`]).
    pub reason: u8,
    /// The amount counted against the limits (after the Monday multiplier).
    pub effective_cents: u64,
    /// UTC day index of the load.
    pub day: i32,
    /// Week index of the load.
    pub week: i32,
    /// Whether the prime gate applied.
    pub prime_gated: bool,
}

/// One formatted output line (no newline), plus what the audit sink needs.
#[derive(Debug, Clone, Default, PartialEq, Archive, Serialize, Deserialize)]
pub struct OutputLine {
    /// The JSON output line.
    pub text: Vec<u8>,
    /// Whether the load was accepted.
    pub accepted: bool,
    /// The decline reason, or 0 when accepted ([`Reason::code`]).
    pub reason: u8,
    /// The amount counted against the limits.
    pub effective_cents: u64,
    /// Filled only when an audit adapter is configured.
    pub audit_id: DigitText,
    /// Filled only when an audit adapter is configured.
    pub audit_customer_id: DigitText,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decline_counts_count_each_decline_reason_and_not_acceptance() {
        let mut counts = DeclineCounts::default();
        counts.add(Reason::WeeklyAmountLimit);
        counts.add(Reason::WeeklyAmountLimit);
        counts.add(Reason::InputParseError);
        counts.add(Reason::Accepted);
        assert_eq!(counts.get(Reason::WeeklyAmountLimit), 2);
        assert_eq!(counts.get(Reason::InputParseError), 1);
        assert_eq!(counts.get(Reason::Accepted), 0);
        let listed: Vec<_> = counts.iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(
            listed,
            [(Reason::InputParseError, 1), (Reason::WeeklyAmountLimit, 2)]
        );
        assert_eq!(counts.iter().count(), Reason::DECLINES.len());
    }

    #[test]
    fn digit_text_keeps_leading_zeros_and_long_ids() {
        let mut arena = rkyv::ser::allocator::Arena::new();
        let mut buf = crate::graph::AlignedBuf::with_capacity(256);
        for id in [
            "528",
            "0528",
            "0",
            "0000000000000000001",
            "12345678901234567890",
            "12a",
            "",
        ] {
            let mut text = DigitText::default();
            text.set(id);
            let len = crate::graph::encode_into(&text, buf.as_mut_bytes(), &mut arena).unwrap();
            let decoded =
                <DigitText as crate::graph::Message>::decode(&buf.as_bytes()[..len]).unwrap();
            assert_eq!(decoded.to_text(), id);
            assert_eq!(text.to_text(), id);
        }
    }

    #[test]
    fn digit_ids_print_as_read() {
        for value in [
            0u64,
            1,
            9,
            10,
            11,
            99,
            100,
            101,
            12_345,
            9_999_999_999_999_999_999,
        ] {
            for zeros in ["", "0", "000"] {
                let id = format!("{zeros}{value}");
                if id.len() > 19 {
                    continue;
                }
                let mut text = DigitText::default();
                text.set(&id);
                assert!(text.is_short());
                assert_eq!(text.to_text(), id);
            }
        }
    }

    #[test]
    fn reason_codes_round_trip_and_reject_unknown() {
        for reason in Reason::DECLINES {
            assert_eq!(Reason::from_code(reason.code()), Some(reason));
        }
        assert_eq!(Reason::from_code(0), Some(Reason::Accepted));
        assert_eq!(Reason::from_code(12), None);
        assert_eq!(Reason::from_code(255), None);
    }
}
