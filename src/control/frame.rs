//! The control frame: `u32` big-endian length, then header, rkyv message, and a 32-byte
//! HMAC-SHA256 tag over header and message.
//!
//! Header (48 bytes, big-endian integers): version (1), message kind (1), direction (1),
//! reserved (1, zero), worker number (4), correlation id (8), `issued_at` unix ms (8),
//! random nonce (16), per-connection sequence number (8).
//!
//! Receiving checks, in this order, first failure wins (docs/architecture.md):
//! 1. a declared length above the limit is [`FrameError::TooLarge`] **before** the body is
//!    read or any buffer of that size is allocated;
//! 2. a short read or end of file inside the frame is [`FrameError::Truncated`];
//! 3. the tag is verified in constant time ([`FrameError::BadTag`]) **before anything of the
//!    frame is parsed**: only the 4-byte worker number is read first, to pick the key.
//!
//! Checks 4-7 (direction and worker, version and body, time window, nonce and sequence) need
//! the connection's state and live in `channel.rs`.

use std::io::Read;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::keys::WorkerKey;

/// The protocol version every frame carries; others are refused.
pub const PROTOCOL_VERSION: u8 = 1;
/// Bytes of a frame header.
pub const HEADER_LEN: usize = 48;
/// Bytes of the HMAC-SHA256 tag that ends a frame.
pub const TAG_LEN: usize = 32;
/// Bytes a frame adds to its message: header and tag.
pub const FRAME_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

type HmacSha256 = Hmac<Sha256>;

/// Who a frame is addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Direction {
    /// From the supervisor to a worker.
    ToWorker = 1,
    /// From a worker to the supervisor.
    ToSupervisor = 2,
}

/// A frame's header fields (authenticated by the tag, not yet checked for meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Protocol version ([`PROTOCOL_VERSION`]).
    pub version: u8,
    /// Message kind byte ([`crate::control::MessageKind`]).
    pub kind: u8,
    /// [`Direction`] byte.
    pub direction: u8,
    /// The worker's 1-based number in the run (picks the key).
    pub worker: u32,
    /// Correlation id, echoed by the ACK.
    pub correlation: u64,
    /// When the frame was issued, unix milliseconds.
    pub issued_at_ms: u64,
    /// Random nonce, remembered to refuse replays.
    pub nonce: [u8; 16],
    /// Per-connection sequence number, strictly increasing.
    pub seq: u64,
}

impl FrameHeader {
    fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0] = self.version;
        out[1] = self.kind;
        out[2] = self.direction;
        out[3] = 0;
        out[4..8].copy_from_slice(&self.worker.to_be_bytes());
        out[8..16].copy_from_slice(&self.correlation.to_be_bytes());
        out[16..24].copy_from_slice(&self.issued_at_ms.to_be_bytes());
        out[24..40].copy_from_slice(&self.nonce);
        out[40..48].copy_from_slice(&self.seq.to_be_bytes());
    }

    fn read(bytes: &[u8; HEADER_LEN]) -> Self {
        let be64 = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(word)
        };
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&bytes[24..40]);
        Self {
            version: bytes[0],
            kind: bytes[1],
            direction: bytes[2],
            worker: worker_of(bytes),
            correlation: be64(8),
            issued_at_ms: be64(16),
            nonce,
            seq: be64(40),
        }
    }
}

fn worker_of(header: &[u8; HEADER_LEN]) -> u32 {
    u32::from_be_bytes([header[4], header[5], header[6], header[7]])
}

/// Why a received frame was rejected (one kind per check, in check order).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The declared length is above the limit (check 1).
    #[error("frame declares {declared} bytes, more than the limit of {max}")]
    TooLarge {
        /// Bytes the length prefix declares.
        declared: u64,
        /// The limit.
        max: u64,
    },
    /// The stream ended or timed out inside the frame (check 2).
    #[error("frame truncated: {got} of {expected} bytes before end of stream or timeout")]
    Truncated {
        /// Bytes the frame should have.
        expected: usize,
        /// Bytes read before the end.
        got: usize,
    },
    /// The tag does not verify (check 3).
    #[error("frame tag does not verify (wrong key or altered bytes); connection closed")]
    BadTag,
    /// Direction or worker number do not fit the connection (check 4).
    #[error("frame misrouted: {detail}")]
    Misrouted {
        /// What did not fit.
        detail: String,
    },
    /// Version, kind or body are not a valid message (check 5).
    #[error("malformed frame: {detail}")]
    Malformed {
        /// What is wrong.
        detail: String,
    },
    /// Issued outside the accepted time window (check 6).
    #[error("frame issued {skew_ms} ms from now, outside the {ttl_ms} ms window")]
    Expired {
        /// Issue time minus now, in milliseconds.
        skew_ms: i64,
        /// The window.
        ttl_ms: u64,
    },
    /// The nonce was seen before (check 7).
    #[error("frame nonce was already seen (replay)")]
    Replayed,
    /// The sequence number is not the next one (check 7).
    #[error("frame sequence {got}, expected {expected}")]
    OutOfOrder {
        /// The next sequence number.
        expected: u64,
        /// The one received.
        got: u64,
    },
    /// The replay cache holds only unexpired nonces: no room to remember another.
    #[error("replay cache is full of unexpired nonces; frame refused")]
    NonceCacheFull,
}

/// The kinds of rejection, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectKind {
    /// [`FrameError::TooLarge`].
    TooLarge,
    /// [`FrameError::Truncated`].
    Truncated,
    /// [`FrameError::BadTag`].
    BadTag,
    /// [`FrameError::Misrouted`].
    Misrouted,
    /// [`FrameError::Malformed`].
    Malformed,
    /// [`FrameError::Expired`].
    Expired,
    /// [`FrameError::Replayed`].
    Replayed,
    /// [`FrameError::OutOfOrder`].
    OutOfOrder,
    /// [`FrameError::NonceCacheFull`].
    NonceCacheFull,
}

impl RejectKind {
    /// Every kind, in check order.
    pub const ALL: [RejectKind; 9] = [
        Self::TooLarge,
        Self::Truncated,
        Self::BadTag,
        Self::Misrouted,
        Self::Malformed,
        Self::Expired,
        Self::Replayed,
        Self::OutOfOrder,
        Self::NonceCacheFull,
    ];

    /// The kind's label in counters and logs (`bad_tag`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Truncated => "truncated",
            Self::BadTag => "bad_tag",
            Self::Misrouted => "misrouted",
            Self::Malformed => "malformed",
            Self::Expired => "expired",
            Self::Replayed => "replayed",
            Self::OutOfOrder => "out_of_order",
            Self::NonceCacheFull => "nonce_cache_full",
        }
    }
}

impl FrameError {
    /// The rejection's kind.
    pub fn kind(&self) -> RejectKind {
        match self {
            Self::TooLarge { .. } => RejectKind::TooLarge,
            Self::Truncated { .. } => RejectKind::Truncated,
            Self::BadTag => RejectKind::BadTag,
            Self::Misrouted { .. } => RejectKind::Misrouted,
            Self::Malformed { .. } => RejectKind::Malformed,
            Self::Expired { .. } => RejectKind::Expired,
            Self::Replayed => RejectKind::Replayed,
            Self::OutOfOrder { .. } => RejectKind::OutOfOrder,
            Self::NonceCacheFull => RejectKind::NonceCacheFull,
        }
    }
}

/// Reading a frame did not produce one.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the stream between frames.
    #[error("connection closed")]
    Closed,
    /// No frame started before the read timeout.
    #[error("no frame within the timeout")]
    TimedOut,
    /// The socket failed.
    #[error("control socket error: {0}")]
    Io(std::io::Error),
    /// The frame was rejected by checks 1-3.
    #[error(transparent)]
    Rejected(#[from] FrameError),
}

/// Encodes one frame (length prefix included) into `out`.
pub fn encode_frame(key: &WorkerKey, header: &FrameHeader, message: &[u8], out: &mut Vec<u8>) {
    let body_len = HEADER_LEN + message.len() + TAG_LEN;
    out.clear();
    out.reserve(4 + body_len);
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    let mut head = [0u8; HEADER_LEN];
    header.write(&mut head);
    out.extend_from_slice(&head);
    out.extend_from_slice(message);
    let mut mac = HmacSha256::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(&head);
    mac.update(message);
    out.extend_from_slice(&mac.finalize().into_bytes());
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// How a [`read_fully`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filled {
    /// Every byte was read.
    Complete,
    /// End of stream after this many bytes.
    Eof(usize),
    /// The read timeout passed after this many bytes.
    TimedOut(usize),
}

/// Reads exactly `buf.len()` bytes, telling end of stream from a timeout.
fn read_fully(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<Filled> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => return Ok(Filled::Eof(got)),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => return Ok(Filled::TimedOut(got)),
            Err(e) => return Err(e),
        }
    }
    Ok(Filled::Complete)
}

/// A frame that passed checks 1-3: its header and its (still unparsed) message bytes.
#[derive(Debug)]
pub struct AuthenticFrame {
    /// The authenticated header.
    pub header: FrameHeader,
    /// The message bytes (rkyv), not yet validated.
    pub message: Vec<u8>,
}

/// Reads one frame and runs checks 1-3. `max_message` bounds the message body; `key_of` gives
/// the key of the worker number the header names (`None`: no such worker, a bad tag).
pub fn read_frame(
    reader: &mut impl Read,
    max_message: u64,
    key_of: impl FnOnce(u32) -> Option<WorkerKey>,
) -> Result<AuthenticFrame, ReadError> {
    let mut length = [0u8; 4];
    match read_fully(reader, &mut length).map_err(ReadError::Io)? {
        Filled::Complete => {}
        Filled::Eof(0) => return Err(ReadError::Closed),
        Filled::TimedOut(0) => return Err(ReadError::TimedOut),
        Filled::Eof(got) | Filled::TimedOut(got) => {
            return Err(FrameError::Truncated { expected: 4, got }.into());
        }
    }
    let declared = u64::from(u32::from_be_bytes(length));
    let max = max_message + FRAME_OVERHEAD as u64;
    // Check 1, before reading or allocating anything of the declared size.
    if declared > max {
        return Err(FrameError::TooLarge { declared, max }.into());
    }
    let mut body = vec![0u8; declared as usize];
    // Check 2.
    match read_fully(reader, &mut body).map_err(ReadError::Io)? {
        Filled::Complete => {}
        Filled::Eof(got) | Filled::TimedOut(got) => {
            return Err(FrameError::Truncated {
                expected: body.len(),
                got,
            }
            .into());
        }
    }
    // Check 3: a frame too short to hold a header and a tag cannot be authentic.
    if body.len() < FRAME_OVERHEAD {
        return Err(FrameError::BadTag.into());
    }
    let (signed, tag) = body.split_at(body.len() - TAG_LEN);
    let Some(head) = signed.first_chunk::<HEADER_LEN>() else {
        return Err(FrameError::BadTag.into());
    };
    let Some(key) = key_of(worker_of(head)) else {
        return Err(FrameError::BadTag.into());
    };
    let mut mac = HmacSha256::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(signed);
    mac.verify_slice(tag).map_err(|_| FrameError::BadTag)?;
    let header = FrameHeader::read(head);
    let message = signed[HEADER_LEN..].to_vec();
    Ok(AuthenticFrame { header, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::keys::MasterKey;

    fn header() -> FrameHeader {
        FrameHeader {
            version: PROTOCOL_VERSION,
            kind: 1,
            direction: Direction::ToSupervisor as u8,
            worker: 7,
            correlation: 99,
            issued_at_ms: 1_700_000_000_000,
            nonce: [5; 16],
            seq: 1,
        }
    }

    #[test]
    fn frames_round_trip_and_any_flipped_bit_fails_the_tag() {
        let key = MasterKey::generate().unwrap().derive("w#1");
        let mut frame = Vec::new();
        encode_frame(&key, &header(), b"message", &mut frame);
        let read = read_frame(&mut &frame[..], 1024, |w| (w == 7).then(|| key.clone())).unwrap();
        assert_eq!(read.header, header());
        assert_eq!(read.message, b"message");
        for bit in 32..frame.len() * 8 {
            let mut bad = frame.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let outcome = read_frame(&mut &bad[..], 1024, |_| Some(key.clone()));
            assert!(
                matches!(outcome, Err(ReadError::Rejected(FrameError::BadTag))),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn oversized_lengths_are_refused_before_reading() {
        let frame = u32::MAX.to_be_bytes();
        let outcome = read_frame(&mut &frame[..], 1024, |_| None);
        assert!(matches!(
            outcome,
            Err(ReadError::Rejected(FrameError::TooLarge { .. }))
        ));
    }

    #[test]
    fn short_frames_are_truncated() {
        let key = MasterKey::generate().unwrap().derive("w#1");
        let mut frame = Vec::new();
        encode_frame(&key, &header(), b"message", &mut frame);
        let outcome = read_frame(&mut &frame[..frame.len() - 3], 1024, |_| Some(key.clone()));
        assert!(matches!(
            outcome,
            Err(ReadError::Rejected(FrameError::Truncated { .. }))
        ));
    }
}
