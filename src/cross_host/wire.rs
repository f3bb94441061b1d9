//! How ring records travel in one JetStream message: a batch of whole records, numbered.
//!
//! The payload is the records' bodies (each an envelope, exactly as a worker wrote it into its
//! ring), each prefixed by its length as a little-endian `u32`. Headers say which records of
//! the edge the message holds: [`FIRST`] is the index of its first record on the edge (records
//! count from 0 in the order the upstream worker wrote them), [`COUNT`] how many it holds, and
//! [`WATERMARK`], when present, the upstream ring's watermark once the records before it were
//! all read. `Nats-Msg-Id` names the batch (edge, first, count), so a retried publish is
//! dropped by the server; a receiver also skips every record whose index it already took,
//! which is what makes a restarted upstream host (whose batches may cut elsewhere) harmless.
//!
//! Everything read here came over the network: every length is checked, nothing panics.

/// Header: index of the message's first record on its edge.
pub const FIRST: &str = "Sk-First";
/// Header: records in the message.
pub const COUNT: &str = "Sk-Count";
/// Header: the upstream ring's watermark after these records (optional).
pub const WATERMARK: &str = "Sk-Watermark";
/// Header: present on the message that carries the edge's end of stream.
pub const END: &str = "Sk-End";
/// Header: the fingerprint of the run's input (see [`super::input_fingerprint`]).
pub const INPUT: &str = "Sk-Input";
/// Header: the W3C trace context of the first sampled record (optional; every envelope also
/// carries its own).
pub const TRACEPARENT: &str = "traceparent";

/// A message that is not what a publisher of this engine writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A header is missing or not a number.
    #[error("header {0} is missing or not a number")]
    Header(&'static str),
    /// A record's length points past the message.
    #[error("record {index} of the message is cut short ({available} of {needed} bytes)")]
    Truncated {
        /// The record's index in the message.
        index: u64,
        /// Bytes the record needs.
        needed: usize,
        /// Bytes left in the message.
        available: usize,
    },
    /// The message holds another number of records than its header says.
    #[error("the message holds {found} records, its {COUNT} header says {announced}")]
    Count {
        /// Records found.
        found: u64,
        /// Records the header announces.
        announced: u64,
    },
}

/// Records gathered for one message.
#[derive(Debug, Default)]
pub struct Batch {
    payload: Vec<u8>,
    count: u32,
}

impl Batch {
    /// Appends one record body.
    pub fn push(&mut self, body: &[u8]) {
        self.payload
            .extend_from_slice(&(body.len() as u32).to_le_bytes());
        self.payload.extend_from_slice(body);
        self.count += 1;
    }

    /// Records in the batch.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The payload, leaving the batch empty.
    pub fn take(&mut self) -> (Vec<u8>, u32) {
        let count = std::mem::take(&mut self.count);
        (std::mem::take(&mut self.payload), count)
    }
}

/// The `Nats-Msg-Id` of the batch of `count` records from `first` on `subject`: the same
/// records always get the same id, so the server drops a retried publish.
pub fn message_id(subject: &str, first: u64, count: u32) -> String {
    format!("{subject}:{first}:{count}")
}

/// The record bodies of a message payload, checked against the announced count.
pub fn records(payload: &[u8], announced: u64) -> Result<Vec<&[u8]>, WireError> {
    let mut out = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let index = out.len() as u64;
        let Some((len, body)) = rest.split_first_chunk::<4>() else {
            return Err(WireError::Truncated {
                index,
                needed: 4,
                available: rest.len(),
            });
        };
        let len = u32::from_le_bytes(*len) as usize;
        if body.len() < len {
            return Err(WireError::Truncated {
                index,
                needed: len,
                available: body.len(),
            });
        }
        let (record, tail) = body.split_at(len);
        out.push(record);
        rest = tail;
    }
    if out.len() as u64 != announced {
        return Err(WireError::Count {
            found: out.len() as u64,
            announced,
        });
    }
    Ok(out)
}

/// A header value as a number.
pub fn number(value: Option<&str>, name: &'static str) -> Result<u64, WireError> {
    value
        .and_then(|v| v.trim().parse().ok())
        .ok_or(WireError::Header(name))
}

/// Which records of a message a receiver that has taken every record before `expected`
/// still needs: the message holds `first..first + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Every record was taken already (a duplicate).
    Old,
    /// Records from offset `skip` in the message are new, and the first of them is next.
    Take {
        /// Records of the message before the first new one.
        skip: usize,
    },
    /// The message starts after the next expected record: hold it until the gap fills.
    Early,
}

/// Where a message of records `first..first + count` fits for a receiver expecting `expected`.
pub fn fit(first: u64, count: u64, expected: u64) -> Fit {
    if first > expected {
        Fit::Early
    } else if first + count <= expected {
        Fit::Old
    } else {
        Fit::Take {
            skip: (expected - first) as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips_and_counts_are_checked() {
        let mut batch = Batch::default();
        batch.push(b"alpha");
        batch.push(b"");
        batch.push(&[7u8; 300]);
        let (payload, count) = batch.take();
        assert!(batch.is_empty());
        let got = records(&payload, u64::from(count)).unwrap();
        assert_eq!(got, vec![&b"alpha"[..], &b""[..], &[7u8; 300][..]]);
        assert_eq!(
            records(&payload, 2),
            Err(WireError::Count {
                found: 3,
                announced: 2
            })
        );
    }

    #[test]
    fn cut_payloads_are_errors_never_panics() {
        let mut batch = Batch::default();
        batch.push(b"0123456789");
        let (payload, _) = batch.take();
        for cut in 0..payload.len() {
            let result = records(&payload[..cut], 1);
            assert!(result.is_err(), "cut at {cut} accepted");
        }
        assert!(records(&[0xff, 0xff, 0xff, 0xff], 1).is_err());
    }

    #[test]
    fn fit_takes_only_what_is_new() {
        assert_eq!(fit(0, 10, 0), Fit::Take { skip: 0 });
        assert_eq!(fit(0, 10, 10), Fit::Old);
        assert_eq!(fit(0, 10, 4), Fit::Take { skip: 4 });
        assert_eq!(fit(11, 5, 10), Fit::Early);
        assert_eq!(fit(5, 0, 5), Fit::Old);
    }

    #[test]
    fn header_numbers_are_checked() {
        assert_eq!(number(Some(" 42"), FIRST), Ok(42));
        assert_eq!(number(Some("x"), FIRST), Err(WireError::Header(FIRST)));
        assert_eq!(number(None, COUNT), Err(WireError::Header(COUNT)));
    }
}
