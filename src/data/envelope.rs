//! The envelope: the fixed header every cross-process record carries, then the rkyv payload.
//!
//! The header is 64 bytes, little-endian, at the start of a ring record's body, so the payload
//! that follows is 16-aligned for rkyv:
//!
//! | offset | field | type | meaning |
//! |---|---|---|---|
//! | 0 | `seq` | u64 | source sequence number |
//! | 8 | `trace_id` | 16 bytes | W3C trace id, constant for every hop of one record |
//! | 24 | `parent_span_id` | 8 bytes | span of the node that emitted this envelope |
//! | 32 | `reply_to` | u64 | correlation id for embedding callers, 0 = none; on an end-of-stream envelope, the records the producer wrote on this ring before it |
//! | 40 | `target` | u32 | node index in the graph |
//! | 44 | `payload_len` | u32 | bytes of payload after the header |
//! | 48 | `source_group` | u16 | group that emitted it (`handoff_from`) |
//! | 50 | `route_hop` | u16 | cross-group hand-offs so far |
//! | 52 | `trace_flags` | u8 | bit 0 = sampled |
//! | 53 | `kind` | u8 | data, end-of-stream, drop marker, dead letter |
//! | 54 | reserved | 10 bytes | zero |
//!
//! Decoding checks the kind, the payload length and the reserved bytes: bytes from shared
//! memory are untrusted.

use std::time::Duration;

use super::memory::RingMemory;
use super::ring::{Producer, PushError};

/// Bytes of an envelope header; payloads start at this (16-aligned) offset.
pub const ENVELOPE_HEADER: usize = 64;

/// `target` of a terminal output on its way back to an embedding host (no node reads it).
pub const TERMINAL_TARGET: u32 = u32::MAX;

/// What an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EnvelopeKind {
    /// A node's output for the target node.
    Data = 1,
    /// The producer will send nothing more on this edge.
    EndOfStream = 2,
    /// Record `seq` produced no output on this path (keeps `seq` accounting complete).
    DropMarker = 3,
    /// Record `seq` goes to the dead-letter adapter; the payload says why.
    DeadLetter = 4,
}

impl EnvelopeKind {
    pub fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Data),
            2 => Some(Self::EndOfStream),
            3 => Some(Self::DropMarker),
            4 => Some(Self::DeadLetter),
            _ => None,
        }
    }
}

/// An envelope's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeHeader {
    pub seq: u64,
    pub trace_id: [u8; 16],
    pub parent_span_id: [u8; 8],
    pub reply_to: u64,
    pub target: u32,
    pub source_group: u16,
    pub route_hop: u16,
    pub trace_flags: u8,
    pub kind: EnvelopeKind,
}

/// An envelope read from a ring that cannot be what a correct peer wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("record of {len} bytes is shorter than an envelope header ({ENVELOPE_HEADER})")]
    Short { len: usize },
    #[error("unknown envelope kind {kind}")]
    UnknownKind { kind: u8 },
    #[error("payload length {payload_len} exceeds the record's {available} bytes")]
    PayloadLength { payload_len: u32, available: usize },
    #[error("reserved header bytes are not zero")]
    Reserved,
}

impl EnvelopeHeader {
    /// A data envelope header with no trace and no correlation.
    pub fn data(seq: u64, target: u32) -> Self {
        Self {
            seq,
            trace_id: [0; 16],
            parent_span_id: [0; 8],
            reply_to: 0,
            target,
            source_group: 0,
            route_hop: 0,
            trace_flags: 0,
            kind: EnvelopeKind::Data,
        }
    }

    /// The end of one ring's stream: no record after `last_seq` follows, and the producer wrote
    /// `records_before` records on this ring before this one (the consumer checks that it read
    /// exactly as many: end of stream is proven, not assumed).
    pub fn end_of_stream(last_seq: u64, records_before: u64) -> Self {
        Self {
            kind: EnvelopeKind::EndOfStream,
            reply_to: records_before,
            ..Self::data(last_seq, 0)
        }
    }

    /// For an end-of-stream envelope: the records written on its ring before it.
    pub fn records_before(&self) -> u64 {
        self.reply_to
    }

    /// Writes the header, with `payload_len`, into the first 64 bytes of `out`.
    pub fn write(&self, payload_len: u32, out: &mut [u8; ENVELOPE_HEADER]) {
        out[0..8].copy_from_slice(&self.seq.to_le_bytes());
        out[8..24].copy_from_slice(&self.trace_id);
        out[24..32].copy_from_slice(&self.parent_span_id);
        out[32..40].copy_from_slice(&self.reply_to.to_le_bytes());
        out[40..44].copy_from_slice(&self.target.to_le_bytes());
        out[44..48].copy_from_slice(&payload_len.to_le_bytes());
        out[48..50].copy_from_slice(&self.source_group.to_le_bytes());
        out[50..52].copy_from_slice(&self.route_hop.to_le_bytes());
        out[52] = self.trace_flags;
        out[53] = self.kind as u8;
        out[54..64].fill(0);
    }

    /// Reads and checks an envelope from a record body: the header and the payload slice.
    pub fn read(body: &[u8]) -> Result<(Self, &[u8]), EnvelopeError> {
        let Some((head, rest)) = body.split_first_chunk::<ENVELOPE_HEADER>() else {
            return Err(EnvelopeError::Short { len: body.len() });
        };
        let u64_at = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().unwrap_or([0; 4]));
        let u16_at = |at: usize| u16::from_le_bytes(head[at..at + 2].try_into().unwrap_or([0; 2]));
        let kind =
            EnvelopeKind::from_u8(head[53]).ok_or(EnvelopeError::UnknownKind { kind: head[53] })?;
        if head[54..].iter().any(|b| *b != 0) {
            return Err(EnvelopeError::Reserved);
        }
        let payload_len = u32_at(44);
        let payload = rest
            .get(..payload_len as usize)
            .ok_or(EnvelopeError::PayloadLength {
                payload_len,
                available: rest.len(),
            })?;
        let mut trace_id = [0u8; 16];
        trace_id.copy_from_slice(&head[8..24]);
        let mut parent_span_id = [0u8; 8];
        parent_span_id.copy_from_slice(&head[24..32]);
        Ok((
            Self {
                seq: u64_at(0),
                trace_id,
                parent_span_id,
                reply_to: u64_at(32),
                target: u32_at(40),
                source_group: u16_at(48),
                route_hop: u16_at(50),
                trace_flags: head[52],
                kind,
            },
            payload,
        ))
    }
}

/// One ring's envelope stream as its consumer checks it. A producer writes a ring's envelopes
/// in `seq` order and ends it with an end-of-stream envelope counting what came before, so:
/// `seq`s never go down, nothing follows the end, and the end counts exactly the records read.
/// A stream that breaks one of these was corrupted or cut short: never a normal end.
#[derive(Debug, Default, Clone)]
pub struct StreamCheck {
    records: u64,
    last_seq: u64,
    ended: bool,
}

/// A ring's envelope stream is not what its producer wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("an envelope (seq {seq}) after the ring's end of stream")]
    AfterEnd { seq: u64 },
    #[error("seq {seq} after seq {after} on one ring (seqs never go down)")]
    Backwards { seq: u64, after: u64 },
    #[error("end of stream announces {announced} records, {read} were read")]
    Count { announced: u64, read: u64 },
    #[error("the ring is marked closed without an end-of-stream record ({read} records read)")]
    ClosedWithoutEnd { read: u64 },
}

impl StreamCheck {
    /// Checks the next envelope of the stream.
    pub fn admit(&mut self, header: &EnvelopeHeader) -> Result<(), StreamError> {
        if self.ended {
            return Err(StreamError::AfterEnd { seq: header.seq });
        }
        // An end of stream names the last `seq` its producer completed, which after a node
        // failure may be below a value it already sent for the failing record.
        if header.seq < self.last_seq && header.kind != EnvelopeKind::EndOfStream {
            return Err(StreamError::Backwards {
                seq: header.seq,
                after: self.last_seq,
            });
        }
        self.last_seq = header.seq;
        if header.kind != EnvelopeKind::EndOfStream {
            self.records += 1;
            return Ok(());
        }
        if header.records_before() != self.records {
            return Err(StreamError::Count {
                announced: header.records_before(),
                read: self.records,
            });
        }
        self.ended = true;
        Ok(())
    }

    /// True once the end-of-stream envelope arrived (and checked out).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The ring reports closed and drained: an error unless its end of stream arrived.
    pub fn closed(&self) -> Result<(), StreamError> {
        if self.ended {
            Ok(())
        } else {
            Err(StreamError::ClosedWithoutEnd { read: self.records })
        }
    }
}

/// Writes one envelope into a ring: the header, then a payload that `encode` writes in place
/// (returning its length, or `None` when the slot is too small). Blocks on a full ring at most
/// `timeout` (backpressure).
pub fn push_envelope<M: RingMemory>(
    producer: &mut Producer<M>,
    header: &EnvelopeHeader,
    mut encode: impl FnMut(&mut [u8]) -> Option<usize>,
    timeout: Duration,
) -> Result<usize, PushError> {
    producer.push_with(
        |slot| {
            let (head, payload) = slot.split_first_chunk_mut::<ENVELOPE_HEADER>()?;
            let len = encode(payload)?;
            header.write(u32::try_from(len).ok()?, head);
            Some(ENVELOPE_HEADER + len)
        },
        timeout,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_garbage_is_rejected() {
        let header = EnvelopeHeader {
            seq: 42,
            trace_id: [7; 16],
            parent_span_id: [9; 8],
            reply_to: 77,
            target: 3,
            source_group: 2,
            route_hop: 1,
            trace_flags: 1,
            kind: EnvelopeKind::Data,
        };
        let mut body = vec![0u8; ENVELOPE_HEADER + 5];
        let (head, payload) = body.split_first_chunk_mut::<ENVELOPE_HEADER>().unwrap();
        header.write(5, head);
        payload.copy_from_slice(b"hello");
        let (read, payload) = EnvelopeHeader::read(&body).unwrap();
        assert_eq!(read, header);
        assert_eq!(payload, b"hello");

        assert_eq!(
            EnvelopeHeader::read(&body[..10]),
            Err(EnvelopeError::Short { len: 10 })
        );
        let mut bad = body.clone();
        bad[53] = 99;
        assert_eq!(
            EnvelopeHeader::read(&bad),
            Err(EnvelopeError::UnknownKind { kind: 99 })
        );
        let mut bad = body.clone();
        bad[44..48].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            EnvelopeHeader::read(&bad),
            Err(EnvelopeError::PayloadLength { .. })
        ));
        let mut bad = body;
        bad[60] = 1;
        assert_eq!(EnvelopeHeader::read(&bad), Err(EnvelopeError::Reserved));
    }
}
