//! A single-producer single-consumer ring of variable-length records in shared memory.
//!
//! Lamport's SPSC queue with variable-length records, cached peer indices and batched
//! publication (the shape of the LMAX Disruptor and Aeron's log buffers): the producer claims
//! space, encodes a record in place and commits it with one release store of its **commit
//! stamp**, then publishes a batch with one store of its tail; the consumer reads published
//! records in place, checks each one's stamp, and releases a whole batch with one store of its
//! head. A caught-up consumer watches the tail (written once per batch), never the data line
//! the producer is filling.
//!
//! # Layout (byte offsets; identical in every process)
//!
//! | line | offset | words | written by |
//! |---|---|---|---|
//! | header | 0 | magic, version, capacity, max record, salt | creator, once |
//! | producer | 128 | tail, heartbeat, watermark, closed, pid, records written, watermark check | producer |
//! | consumer | 256 | head, heartbeat, pid, records read, progress, head check, progress check | consumer |
//! | waiters | 384 | consumer-waiting flag (384), producer-waiting flag (448) | the waiter sets, the peer clears |
//! | data | 512 | `capacity` bytes of records | producer writes, consumer reads |
//!
//! The producer's and the consumer's words are 128 bytes apart (two cache lines on CPUs with
//! adjacent-line prefetch), so neither side's stores invalidate the other's hot line.
//!
//! A record is a 16-byte header, `stamp: u64, len: u32, kind: u32`, then `len` body bytes,
//! padded to 16 (bodies are rkyv-aligned). A record never wraps: at the end of the data area
//! the producer writes a padding record. `stamp = ((position + 1) ^ salt) | 1 << 63` is the
//! commit flag, checked on every record the tail covers: it is unique per lap (positions grow forever), so a record left from an
//! earlier lap never looks committed; it is never zero, so untouched memory never looks
//! committed; and the per-ring random salt makes it vanishingly unlikely that stale body bytes
//! at a future record start spell a valid stamp.
//!
//! # Checked words
//!
//! Three control words steer what the other side does with records, so a corrupted value could
//! lose or reorder them: `head` (lets the producer overwrite), `watermark` (lets a merge take
//! a later record first) and `progress` (what a crashed sink completed). Each is written with a
//! **check word** beside it, `check = mix(value ^ salt)`, stored first; a reader accepts a value
//! only when its check matches and otherwise keeps the last value it verified (a writer caught
//! between its two stores looks the same, and is consistent on the next read). Garbage in one
//! of these words therefore never acts; the owner's next store repairs it. Every other word is
//! either read once at attach (the header), checked against what the reader knows (`tail`),
//! or informational (heartbeats, pids, counts, waiting flags: at worst a wake-up comes a wait
//! slice late). The `closed` flag is not an end of stream: runtimes end a stream only on its
//! end-of-stream record (see `runtime::worker`).
//!
//! # Indices
//!
//! `tail` and `head` are byte positions that only grow; `position & (capacity - 1)` is the
//! offset. Invariant: `head <= tail <= head + capacity`. The producer's view of `head` and the
//! consumer's view of `tail` may be stale (older), never newer. **Every index, length and kind
//! read from shared memory is checked before use**; a violation is a [`RingCorrupted`] error,
//! never a panic or an out-of-bounds access.

use std::sync::atomic::Ordering;

use super::memory::RingMemory;

mod consumer;
mod producer;

pub use consumer::{Consumer, PollError, RecordRef};
pub use producer::Producer;

/// "SKRING" and layout version 2.
pub const RING_MAGIC: u64 = 0x0001_474e_4952_4b53;
const VERSION: u64 = 2;

/// Bytes before the data area.
pub const CONTROL_BYTES: usize = 512;
/// Bytes of a record header.
pub const RECORD_HEADER: usize = 16;
/// Smallest accepted capacity.
pub const MIN_CAPACITY: usize = 1024;

mod word {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const CAPACITY: usize = 16;
    pub const MAX_RECORD: usize = 24;
    pub const SALT: usize = 32;

    pub const TAIL: usize = 128;
    pub const PRODUCER_BEAT: usize = 136;
    pub const WATERMARK: usize = 144;
    pub const PRODUCER_CLOSED: usize = 152;
    pub const PRODUCER_PID: usize = 160;
    pub const RECORDS_WRITTEN: usize = 168;
    pub const WATERMARK_CHECK: usize = 176;

    pub const HEAD: usize = 256;
    pub const CONSUMER_BEAT: usize = 264;
    pub const CONSUMER_PID: usize = 272;
    pub const RECORDS_READ: usize = 280;
    pub const CONSUMER_PROGRESS: usize = 288;
    pub const HEAD_CHECK: usize = 296;
    pub const PROGRESS_CHECK: usize = 304;

    pub const CONSUMER_WAITING: usize = 384;
    pub const PRODUCER_WAITING: usize = 448;
}

const KIND_DATA: u32 = 0x5245_4344; // "DCER"
const KIND_PAD: u32 = 0x5041_4444; // "DDAP"

/// Bytes of memory a ring of `capacity` data bytes needs.
pub const fn ring_memory_len(capacity: usize) -> usize {
    CONTROL_BYTES + capacity
}

const fn align16(n: u64) -> u64 {
    (n + 15) & !15
}

/// The check word of a checked control word's `value` (see "Checked words").
fn check_of(value: u64, salt: u64) -> u64 {
    // splitmix64's finaliser: every bit of the value and the salt moves every bit of the check.
    let mut z = value ^ salt.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Stores a checked word: its check first, then (with `order`) the value.
///
/// # Safety
///
/// `offset` and `check` must be fixed, aligned control words of a validated ring.
unsafe fn store_checked<M: RingMemory>(
    memory: &M,
    offset: usize,
    check: usize,
    value: u64,
    salt: u64,
    order: Ordering,
) {
    // SAFETY: the caller passes fixed control words (see `# Safety`).
    unsafe {
        memory.store_u64(check, check_of(value, salt), Ordering::Relaxed);
        memory.store_u64(offset, value, order);
    }
}

/// Loads a checked word: the value and whether its check matches (a mismatch is a corrupted
/// value, or a writer between its two stores).
///
/// # Safety
///
/// As for [`store_checked`].
unsafe fn load_checked<M: RingMemory>(
    memory: &M,
    offset: usize,
    check: usize,
    salt: u64,
) -> (u64, bool) {
    // SAFETY: the caller passes fixed control words (see `# Safety`).
    let (value, stored) = unsafe {
        // SYNC POINT "checked word": pairs with `store_checked`'s release of the value. The
        // value's acquire orders the check's load after it: a check read here is at least as
        // new as the value's own store (stored before it).
        let value = memory.load_u64(offset, Ordering::Acquire);
        (value, memory.load_u64(check, Ordering::Relaxed))
    };
    (value, stored == check_of(value, salt))
}

/// The ring's shared memory holds something a correct peer could not have written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingCorrupted {
    /// Magic, version, capacity, maximum record or salt are not what the ring was created with.
    #[error("ring header is invalid: {0}")]
    Header(String),
    /// The producer's tail is out of range.
    #[error("producer tail {tail} is outside [head {head}, head + capacity {capacity}]")]
    Tail {
        /// The consumer's head.
        head: u64,
        /// The producer's tail.
        tail: u64,
        /// The ring's capacity.
        capacity: u64,
    },
    /// The consumer's head is out of range.
    #[error("consumer head {head} is outside [tail {tail} - capacity {capacity}, tail]")]
    Head {
        /// The consumer's head.
        head: u64,
        /// The producer's tail.
        tail: u64,
        /// The ring's capacity.
        capacity: u64,
    },
    /// A record's header is not valid.
    #[error("record at position {position}: {detail}")]
    Record {
        /// Position of the record in the stream.
        position: u64,
        /// What is wrong with it.
        detail: String,
    },
}

/// Creating a ring in memory failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingInitError {
    /// The capacity is not a power of two of at least [`MIN_CAPACITY`].
    #[error("ring capacity {capacity} must be a power of two >= {MIN_CAPACITY}")]
    BadCapacity {
        /// The capacity asked for.
        capacity: usize,
    },
    /// The memory is smaller than the ring needs.
    #[error("memory of {len} bytes is too small for a ring of {capacity} bytes (needs {needed})")]
    TooSmall {
        /// Bytes of memory given.
        len: usize,
        /// The capacity asked for.
        capacity: usize,
        /// Bytes needed.
        needed: usize,
    },
}

/// Writing a record failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The record does not fit the ring's maximum record size; nothing was written.
    #[error("record of {len} bytes exceeds the ring's maximum record body of {max} bytes")]
    TooLarge {
        /// Bytes of the record.
        len: usize,
        /// The largest record body the ring takes.
        max: usize,
    },
    /// The consumer did not free space before the deadline (backpressure).
    #[error("ring full: the consumer freed no space before the deadline")]
    TimedOut,
    /// The ring's shared memory is corrupted.
    #[error(transparent)]
    Corrupted(#[from] RingCorrupted),
}

/// What a consumer's wait ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// At least one record is committed.
    Ready,
    /// The producer closed the ring and every record has been read.
    Closed,
    /// The deadline passed first.
    TimedOut,
}

/// The immutable header, validated.
#[derive(Debug, Clone, Copy)]
struct Layout {
    capacity: u64,
    mask: u64,
    max_total: u64,
    salt: u64,
}

/// Set in every commit stamp, so a stamp is never zero and never-written (zeroed) memory can
/// never look committed, whatever the salt. Positions stay far below 2^63, so the tag costs no
/// uniqueness.
const STAMP_TAG: u64 = 1 << 63;

impl Layout {
    fn stamp(&self, position: u64) -> u64 {
        ((position + 1) ^ self.salt) | STAMP_TAG
    }

    fn data_offset(&self, position: u64) -> usize {
        CONTROL_BYTES + (position & self.mask) as usize
    }

    fn max_body(&self) -> usize {
        (self.max_total as usize) - RECORD_HEADER
    }
}

/// The largest record (header included) a ring of `capacity` bytes takes: half the ring, so a
/// producer waiting for room for it never waits for more than half the ring to drain, and a
/// record plus the padding before a wrap always fit.
pub const fn max_record_total(capacity: usize) -> usize {
    capacity / 2
}

/// The largest record body a ring of `capacity` bytes takes.
pub const fn max_record_body(capacity: usize) -> usize {
    max_record_total(capacity) - RECORD_HEADER
}

/// Writes a fresh ring header into `memory` (which must be zeroed). `salt` should be random.
pub fn init_ring<M: RingMemory>(
    memory: &M,
    capacity: usize,
    salt: u64,
) -> Result<(), RingInitError> {
    if !capacity.is_power_of_two() || capacity < MIN_CAPACITY {
        return Err(RingInitError::BadCapacity { capacity });
    }
    let needed = ring_memory_len(capacity);
    if memory.len() < needed {
        return Err(RingInitError::TooSmall {
            len: memory.len(),
            capacity,
            needed,
        });
    }
    let max_total = max_record_total(capacity) as u64;
    // SAFETY: every offset below is a fixed, aligned header word inside `needed <= len` bytes.
    unsafe {
        memory.store_u64(word::VERSION, VERSION, Ordering::Relaxed);
        memory.store_u64(word::CAPACITY, capacity as u64, Ordering::Relaxed);
        memory.store_u64(word::MAX_RECORD, max_total, Ordering::Relaxed);
        memory.store_u64(word::SALT, salt, Ordering::Relaxed);
        // The checked words start at 0 with valid checks.
        memory.store_u64(word::HEAD_CHECK, check_of(0, salt), Ordering::Relaxed);
        memory.store_u64(word::WATERMARK_CHECK, check_of(0, salt), Ordering::Relaxed);
        memory.store_u64(word::PROGRESS_CHECK, check_of(0, salt), Ordering::Relaxed);
        // SYNC POINT "header": publishes the words above to `read_layout`'s acquire load.
        memory.store_u64(word::MAGIC, RING_MAGIC, Ordering::Release);
    }
    Ok(())
}

fn read_layout<M: RingMemory>(memory: &M) -> Result<Layout, RingCorrupted> {
    let bad = |what: String| Err(RingCorrupted::Header(what));
    if memory.len() < CONTROL_BYTES + MIN_CAPACITY {
        return bad(format!("memory of {} bytes is too small", memory.len()));
    }
    // SAFETY: fixed, aligned header words inside the first CONTROL_BYTES (checked above).
    let (magic, version, capacity, max_total, salt) = unsafe {
        (
            // SYNC POINT "header": pairs with `init_ring`'s release store of the magic.
            memory.load_u64(word::MAGIC, Ordering::Acquire),
            memory.load_u64(word::VERSION, Ordering::Relaxed),
            memory.load_u64(word::CAPACITY, Ordering::Relaxed),
            memory.load_u64(word::MAX_RECORD, Ordering::Relaxed),
            memory.load_u64(word::SALT, Ordering::Relaxed),
        )
    };
    if magic != RING_MAGIC {
        return bad(format!("magic {magic:#x}, expected {RING_MAGIC:#x}"));
    }
    if version != VERSION {
        return bad(format!("layout version {version}, expected {VERSION}"));
    }
    if !capacity.is_power_of_two()
        || capacity < MIN_CAPACITY as u64
        || (CONTROL_BYTES as u64).saturating_add(capacity) > memory.len() as u64
    {
        return bad(format!(
            "capacity {capacity} for memory of {} bytes",
            memory.len()
        ));
    }
    if !max_total.is_multiple_of(16) || max_total < 64 || max_total > capacity / 2 {
        return bad(format!(
            "maximum record {max_total} for capacity {capacity}"
        ));
    }
    Ok(Layout {
        capacity,
        mask: capacity - 1,
        max_total,
        salt,
    })
}

fn check_indices(head: u64, tail: u64, capacity: u64) -> Result<(), RingCorrupted> {
    if head > tail || tail - head > capacity {
        return Err(RingCorrupted::Tail {
            head,
            tail,
            capacity,
        });
    }
    Ok(())
}

fn is_closed<M: RingMemory>(memory: &M) -> bool {
    // SAFETY: fixed, aligned control word.
    // SYNC POINT "close": pairs with `Producer::close`'s release store.
    unsafe { memory.load_u64(word::PRODUCER_CLOSED, Ordering::Acquire) != 0 }
}

/// A ring consumer's last published progress (see [`Consumer::publish_progress`]), if its
/// check matches `salt` (the salt the ring was created with): `None` means the word is not
/// what the consumer stored.
pub fn read_progress<M: RingMemory>(memory: &M, salt: u64) -> Option<u64> {
    // SAFETY: fixed, aligned control words.
    // SYNC POINT "progress": pairs with `publish_progress`'s release store.
    let (progress, verified) =
        unsafe { load_checked(memory, word::CONSUMER_PROGRESS, word::PROGRESS_CHECK, salt) };
    verified.then_some(progress)
}

/// Records a ring's producer committed and its consumer read, as last published.
pub fn read_counts<M: RingMemory>(memory: &M) -> (u64, u64) {
    // SAFETY: fixed, aligned control words.
    unsafe {
        (
            memory.load_u64(word::RECORDS_WRITTEN, Ordering::Relaxed),
            memory.load_u64(word::RECORDS_READ, Ordering::Relaxed),
        )
    }
}

/// Bytes published but not yet released, as last published by both ends.
pub fn read_depth<M: RingMemory>(memory: &M) -> u64 {
    // SAFETY: fixed, aligned control words.
    unsafe {
        let tail = memory.load_u64(word::TAIL, Ordering::Relaxed);
        let head = memory.load_u64(word::HEAD, Ordering::Relaxed);
        tail.saturating_sub(head)
    }
}

/// A ring's latest watermark (see [`Producer::publish_watermark`]) if its check matches
/// `salt`.
fn read_watermark<M: RingMemory>(memory: &M, salt: u64) -> Option<u64> {
    // SAFETY: fixed, aligned control words.
    // SYNC POINT "watermark": pairs with the producer's release store.
    let (mark, verified) =
        unsafe { load_checked(memory, word::WATERMARK, word::WATERMARK_CHECK, salt) };
    verified.then_some(mark)
}

/// Offsets of the words fault-injection tests overwrite.
pub mod fault_offsets {
    use super::word;

    /// Every word of the control block, by name (fault tests corrupt each in turn).
    pub const CONTROL_WORDS: [(&str, usize); 21] = [
        ("magic", word::MAGIC),
        ("version", word::VERSION),
        ("capacity", word::CAPACITY),
        ("max_record", word::MAX_RECORD),
        ("salt", word::SALT),
        ("tail", word::TAIL),
        ("producer_beat", word::PRODUCER_BEAT),
        ("watermark", word::WATERMARK),
        ("producer_closed", word::PRODUCER_CLOSED),
        ("producer_pid", word::PRODUCER_PID),
        ("records_written", word::RECORDS_WRITTEN),
        ("watermark_check", word::WATERMARK_CHECK),
        ("head", word::HEAD),
        ("consumer_beat", word::CONSUMER_BEAT),
        ("consumer_pid", word::CONSUMER_PID),
        ("records_read", word::RECORDS_READ),
        ("progress", word::CONSUMER_PROGRESS),
        ("head_check", word::HEAD_CHECK),
        ("progress_check", word::PROGRESS_CHECK),
        ("consumer_waiting", word::CONSUMER_WAITING),
        ("producer_waiting", word::PRODUCER_WAITING),
    ];

    /// Offset of the producer's tail.
    pub const TAIL: usize = super::word::TAIL;
    /// Offset of the consumer's head.
    pub const HEAD: usize = super::word::HEAD;
    /// Offset of the producer's watermark.
    pub const WATERMARK: usize = super::word::WATERMARK;
    /// Offset of the producer-closed flag.
    pub const PRODUCER_CLOSED: usize = super::word::PRODUCER_CLOSED;
    /// Offset of the magic word.
    pub const MAGIC: usize = super::word::MAGIC;
    /// The first record's header (stamp at +0, length at +8, kind at +12).
    pub const FIRST_RECORD: usize = super::CONTROL_BYTES;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::memory::HeapMemory;
    use crate::data::wait::WaitStrategy;
    use std::sync::Arc;
    use std::time::Duration;

    fn ring(capacity: usize) -> (Producer<Arc<HeapMemory>>, Consumer<Arc<HeapMemory>>) {
        let memory = Arc::new(HeapMemory::new(ring_memory_len(capacity)));
        init_ring(&*memory, capacity, 0x5a5a_1234).unwrap();
        let producer = Producer::attach(Arc::clone(&memory), WaitStrategy::EFFICIENCY).unwrap();
        let consumer = Consumer::attach(memory, WaitStrategy::EFFICIENCY).unwrap();
        (producer, consumer)
    }

    fn soon() -> Duration {
        Duration::from_secs(5)
    }

    #[test]
    fn records_round_trip_in_order_across_wraps() {
        let (mut p, mut c) = ring(1024);
        let mut next_expected = 0u32;
        for i in 0..1000u32 {
            let body = vec![i as u8; (i % 90) as usize + 1];
            p.push(&body, soon()).unwrap();
            p.flush();
            c.poll(16, |r| {
                assert_eq!(r.body.len(), (next_expected % 90) as usize + 1);
                assert!(r.body.iter().all(|b| *b == next_expected as u8));
                next_expected += 1;
                Ok::<_, ()>(())
            })
            .unwrap();
        }
        assert_eq!(next_expected, 1000);
    }

    #[test]
    fn no_salt_makes_zeroed_memory_look_committed() {
        for salt in [0, 1, 2, 16, 17, u64::MAX, 1 << 63] {
            let memory = Arc::new(HeapMemory::new(ring_memory_len(1024)));
            init_ring(&*memory, 1024, salt).unwrap();
            let mut consumer = Consumer::attach(memory, WaitStrategy::EFFICIENCY).unwrap();
            assert_eq!(consumer.has_record(), Ok(false), "salt {salt}");
        }
    }

    #[test]
    fn too_large_record_is_refused_before_anything_is_written() {
        let (mut p, mut c) = ring(1024);
        let max = p.max_body();
        assert_eq!(
            p.push(&vec![0; max + 1], soon()),
            Err(PushError::TooLarge { len: max + 1, max })
        );
        assert_eq!(p.records(), 0);
        p.flush();
        assert!(!c.has_record().unwrap());
        p.push(&vec![7; max], soon()).unwrap();
        p.flush();
        assert_eq!(
            c.poll(8, |r| {
                assert_eq!(r.body.len(), max);
                Ok::<_, ()>(())
            })
            .unwrap(),
            1
        );
    }

    #[test]
    fn try_push_reports_full_without_writing() {
        let (mut p, _c) = ring(1024);
        let mut pushed = 0;
        while p.try_push(&[1; 100]).unwrap() {
            pushed += 1;
        }
        assert!(pushed >= 7, "{pushed}");
        assert_eq!(p.records(), pushed);
    }
}
