//! The envelope: the header every cross-process record carries, then the rkyv payload.
//!
//! A 32-byte base header, little-endian, at the start of a ring record's body; on a traced
//! envelope a 32-byte trace context follows it. Either way the payload starts 16-aligned for
//! rkyv, and an untraced 64 B payload fits a record of two cache lines with the ring's record
//! header.
//!
//! | offset | field | type | meaning |
//! |---|---|---|---|
//! | 0 | `seq` | u64 | source sequence number |
//! | 8 | `reply_to` | u64 | correlation id for embedding callers, 0 = none; on an end-of-stream envelope, the records the producer wrote on this ring before it |
//! | 16 | `target` | u32 | node index in the graph |
//! | 20 | `payload_len` | u32 | bytes of payload after the header |
//! | 24 | `source_group` | u16 | group that emitted it (`handoff_from`) |
//! | 26 | `route_hop` | u16 | cross-group hand-offs so far |
//! | 28 | `flags` | u8 | bit 0 = sampled (W3C trace flags), bit 1 = trace context follows; other bits zero |
//! | 29 | `kind` | u8 | data, end-of-stream, drop marker, dead letter |
//! | 30 | reserved | 2 bytes | zero |
//! | 32 | `trace_id` | 16 bytes | (trace context) W3C trace id, constant for every hop of one record |
//! | 48 | `parent_span_id` | 8 bytes | (trace context) span of the node that emitted this envelope |
//! | 56 | `born_unix_ns` | u64 | (trace context) when the source emitted the record, unix ns, on the one record in 64 whose latency is measured; 0 = not measured |
//!
//! The trace context is written whenever the record is sampled, its trace id or parent span
//! is not zero, or it carries a birth time; the runtime leaves the trace id zero when the receiver can derive it (the run's
//! own id for that `seq`). Decoding checks the kind, the flags, the payload length and every
//! reserved byte: bytes from shared memory are untrusted (a birth time is only ever read as a
//! latency sample, never trusted for anything else).

use std::time::Duration;

use super::memory::RingMemory;
use super::ring::{Producer, PushError};

/// Bytes of the base header every envelope starts with.
pub const ENVELOPE_HEADER: usize = 32;

/// Bytes of the trace context that follows the base header on a traced envelope.
pub const TRACE_CONTEXT: usize = 32;

/// The largest envelope header: base and trace context.
pub const MAX_ENVELOPE_HEADER: usize = ENVELOPE_HEADER + TRACE_CONTEXT;

/// `target` of a terminal output on its way back to an embedding host (no node reads it).
pub const TERMINAL_TARGET: u32 = u32::MAX;

/// Flag bit: the record is sampled (bit 0 of the W3C trace flags).
const FLAG_SAMPLED: u8 = 1;
/// Flag bit: a trace context follows the base header.
const FLAG_TRACE_CONTEXT: u8 = 2;

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
    /// The kind of a header's kind byte, if it is one.
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
    /// Source sequence number of the record.
    pub seq: u64,
    /// Zero when the envelope carries no trace context (the receiver derives it).
    pub trace_id: [u8; 16],
    /// Span of the node that emitted this envelope; zero when untraced.
    pub parent_span_id: [u8; 8],
    /// Correlation id for an embedding caller (0 = none); on an end of stream, the records before it.
    pub reply_to: u64,
    /// Graph index of the node that reads the payload.
    pub target: u32,
    /// Group that emitted the envelope.
    pub source_group: u16,
    /// Cross-group hand-offs so far.
    pub route_hop: u16,
    /// W3C trace flags: bit 0 = sampled.
    pub trace_flags: u8,
    /// When the source emitted the record (unix ns), on records whose end-to-end latency is
    /// measured (one in 64, stamped at the source); 0 = not measured.
    pub born_unix_ns: u64,
    /// What the envelope carries.
    pub kind: EnvelopeKind,
}

/// An envelope read from a ring that cannot be what a correct peer wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The record is shorter than an envelope header.
    #[error("record of {len} bytes is shorter than its envelope header ({header})")]
    Short {
        /// The record's length.
        len: usize,
        /// The header length it needs.
        header: usize,
    },
    /// The kind byte is not an [`EnvelopeKind`].
    #[error("unknown envelope kind {kind}")]
    UnknownKind {
        /// The byte read.
        kind: u8,
    },
    /// The payload length points past the record.
    #[error("payload length {payload_len} exceeds the record's {available} bytes")]
    PayloadLength {
        /// The payload length the header declares.
        payload_len: u32,
        /// Bytes after the header.
        available: usize,
    },
    /// A reserved bit or byte is not zero.
    #[error("reserved header bits or bytes are not zero")]
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
            born_unix_ns: 0,
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

    /// Whether this header is written with a trace context.
    #[inline]
    pub fn carries_trace(&self) -> bool {
        // Whole-word compares: this runs for every envelope written.
        self.trace_flags & FLAG_SAMPLED != 0
            || u128::from_ne_bytes(self.trace_id)
                | u128::from(u64::from_ne_bytes(self.parent_span_id))
                | u128::from(self.born_unix_ns)
                != 0
    }

    /// Bytes this header takes: [`ENVELOPE_HEADER`], or [`MAX_ENVELOPE_HEADER`] with a trace
    /// context. The payload follows at this offset.
    pub fn encoded_len(&self) -> usize {
        if self.carries_trace() {
            MAX_ENVELOPE_HEADER
        } else {
            ENVELOPE_HEADER
        }
    }

    /// Writes the header, with `payload_len`, at the start of `out`; returns its length, or
    /// `None` (nothing written) when `out` is shorter than the header.
    pub fn write(&self, payload_len: u32, out: &mut [u8]) -> Option<usize> {
        if self.carries_trace() {
            let (base, rest) = out.split_first_chunk_mut::<ENVELOPE_HEADER>()?;
            let (context, _) = rest.split_first_chunk_mut::<TRACE_CONTEXT>()?;
            self.write_base(true, payload_len, base);
            self.write_context(context);
            Some(MAX_ENVELOPE_HEADER)
        } else {
            let (base, _) = out.split_first_chunk_mut::<ENVELOPE_HEADER>()?;
            self.write_base(false, payload_len, base);
            Some(ENVELOPE_HEADER)
        }
    }

    #[inline]
    fn write_base(&self, traced: bool, payload_len: u32, out: &mut [u8; ENVELOPE_HEADER]) {
        let flags = (self.trace_flags & FLAG_SAMPLED) | if traced { FLAG_TRACE_CONTEXT } else { 0 };
        out[0..8].copy_from_slice(&self.seq.to_le_bytes());
        out[8..16].copy_from_slice(&self.reply_to.to_le_bytes());
        out[16..20].copy_from_slice(&self.target.to_le_bytes());
        out[20..24].copy_from_slice(&payload_len.to_le_bytes());
        out[24..26].copy_from_slice(&self.source_group.to_le_bytes());
        out[26..28].copy_from_slice(&self.route_hop.to_le_bytes());
        out[28] = flags;
        out[29] = self.kind as u8;
        out[30..32].copy_from_slice(&[0, 0]);
    }

    #[inline]
    fn write_context(&self, out: &mut [u8; TRACE_CONTEXT]) {
        out[0..16].copy_from_slice(&self.trace_id);
        out[16..24].copy_from_slice(&self.parent_span_id);
        out[24..32].copy_from_slice(&self.born_unix_ns.to_le_bytes());
    }

    /// Reads and checks an envelope from a record body: the header and the payload slice.
    pub fn read(body: &[u8]) -> Result<(Self, &[u8]), EnvelopeError> {
        let short = |header| EnvelopeError::Short {
            len: body.len(),
            header,
        };
        let Some((head, rest)) = body.split_first_chunk::<ENVELOPE_HEADER>() else {
            return Err(short(ENVELOPE_HEADER));
        };
        let u64_at = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().unwrap_or([0; 4]));
        let u16_at = |at: usize| u16::from_le_bytes(head[at..at + 2].try_into().unwrap_or([0; 2]));
        let (flags, kind_byte) = (head[28], head[29]);
        let kind = EnvelopeKind::from_u8(kind_byte)
            .ok_or(EnvelopeError::UnknownKind { kind: kind_byte })?;
        if flags & !(FLAG_SAMPLED | FLAG_TRACE_CONTEXT) != 0 || u16_at(30) != 0 {
            return Err(EnvelopeError::Reserved);
        }
        let mut trace_id = [0u8; 16];
        let mut parent_span_id = [0u8; 8];
        let mut born_unix_ns = 0;
        let rest = if flags & FLAG_TRACE_CONTEXT != 0 {
            let Some((context, rest)) = rest.split_first_chunk::<TRACE_CONTEXT>() else {
                return Err(short(MAX_ENVELOPE_HEADER));
            };
            born_unix_ns = u64::from_le_bytes(context[24..32].try_into().unwrap_or([0; 8]));
            trace_id.copy_from_slice(&context[0..16]);
            parent_span_id.copy_from_slice(&context[16..24]);
            rest
        } else {
            rest
        };
        let payload_len = u32_at(20);
        let payload = rest
            .get(..payload_len as usize)
            .ok_or(EnvelopeError::PayloadLength {
                payload_len,
                available: rest.len(),
            })?;
        Ok((
            Self {
                seq: u64_at(0),
                trace_id,
                parent_span_id,
                reply_to: u64_at(8),
                target: u32_at(16),
                source_group: u16_at(24),
                route_hop: u16_at(26),
                trace_flags: flags & FLAG_SAMPLED,
                born_unix_ns,
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
    /// An envelope after the end of stream.
    #[error("an envelope (seq {seq}) after the ring's end of stream")]
    AfterEnd {
        /// Its `seq`.
        seq: u64,
    },
    /// A `seq` lower than the one before it on the same ring.
    #[error("seq {seq} after seq {after} on one ring (seqs never go down)")]
    Backwards {
        /// The `seq` read.
        seq: u64,
        /// The `seq` before it.
        after: u64,
    },
    /// The end of stream counts other records than were read.
    #[error("end of stream announces {announced} records, {read} were read")]
    Count {
        /// Records the end of stream announces.
        announced: u64,
        /// Records read.
        read: u64,
    },
    /// The producer closed the ring without an end-of-stream record.
    #[error("the ring is marked closed without an end-of-stream record ({read} records read)")]
    ClosedWithoutEnd {
        /// Records read.
        read: u64,
    },
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
#[inline]
pub fn push_envelope<M: RingMemory>(
    producer: &mut Producer<M>,
    header: &EnvelopeHeader,
    mut encode: impl FnMut(&mut [u8]) -> Option<usize>,
    timeout: Duration,
) -> Result<usize, PushError> {
    // One branch per envelope, then a fixed layout to fill.
    if header.carries_trace() {
        producer.push_with(
            |slot| {
                let (base, rest) = slot.split_first_chunk_mut::<ENVELOPE_HEADER>()?;
                let (context, payload) = rest.split_first_chunk_mut::<TRACE_CONTEXT>()?;
                let len = encode(payload)?;
                header.write_base(true, u32::try_from(len).ok()?, base);
                header.write_context(context);
                Some(MAX_ENVELOPE_HEADER + len)
            },
            timeout,
        )
    } else {
        producer.push_with(
            |slot| {
                let (base, payload) = slot.split_first_chunk_mut::<ENVELOPE_HEADER>()?;
                let len = encode(payload)?;
                header.write_base(false, u32::try_from(len).ok()?, base);
                Some(ENVELOPE_HEADER + len)
            },
            timeout,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traced() -> EnvelopeHeader {
        EnvelopeHeader {
            seq: 42,
            trace_id: [7; 16],
            parent_span_id: [9; 8],
            reply_to: 77,
            target: 3,
            source_group: 2,
            route_hop: 1,
            trace_flags: 1,
            born_unix_ns: 0,
            kind: EnvelopeKind::Data,
        }
    }

    fn written(header: &EnvelopeHeader, payload: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8; header.encoded_len() + payload.len()];
        let len = header.write(payload.len() as u32, &mut body).unwrap();
        body[len..].copy_from_slice(payload);
        body
    }

    #[test]
    fn traced_and_untraced_headers_round_trip() {
        let untraced = EnvelopeHeader {
            reply_to: 5,
            route_hop: 2,
            ..EnvelopeHeader::data(9, 4)
        };
        assert_eq!(untraced.encoded_len(), ENVELOPE_HEADER);
        assert_eq!(traced().encoded_len(), MAX_ENVELOPE_HEADER);
        // A measured record carries its birth time in a trace context, traced or not.
        let measured = EnvelopeHeader {
            born_unix_ns: 1_700_000_000_123_456_789,
            ..EnvelopeHeader::data(64, 4)
        };
        assert_eq!(measured.encoded_len(), MAX_ENVELOPE_HEADER);
        for header in [traced(), untraced, measured] {
            let body = written(&header, b"hello");
            let (read, payload) = EnvelopeHeader::read(&body).unwrap();
            assert_eq!(read, header);
            assert_eq!(payload, b"hello");
        }
        assert_eq!(
            traced().write(0, &mut [0u8; 40]),
            None,
            "too short: nothing written"
        );
    }

    #[test]
    fn garbage_headers_are_rejected() {
        let body = written(&traced(), b"hello");
        assert_eq!(
            EnvelopeHeader::read(&body[..10]),
            Err(EnvelopeError::Short {
                len: 10,
                header: ENVELOPE_HEADER
            })
        );
        assert_eq!(
            EnvelopeHeader::read(&body[..40]),
            Err(EnvelopeError::Short {
                len: 40,
                header: MAX_ENVELOPE_HEADER
            })
        );
        let corrupt = |at: usize, value: u8| {
            let mut bad = body.clone();
            bad[at] = value;
            EnvelopeHeader::read(&bad).map(|(header, _)| header)
        };
        assert_eq!(
            corrupt(29, 99),
            Err(EnvelopeError::UnknownKind { kind: 99 })
        );
        assert_eq!(corrupt(28, 0b111), Err(EnvelopeError::Reserved));
        assert_eq!(corrupt(31, 1), Err(EnvelopeError::Reserved));
        // Bytes 56..64 of the trace context are the birth time: any value reads as one.
        assert_eq!(corrupt(60, 1).map(|h| h.born_unix_ns), Ok(1 << 32));
        let mut bad = body.clone();
        bad[20..24].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            EnvelopeHeader::read(&bad),
            Err(EnvelopeError::PayloadLength { .. })
        ));
    }
}
