//! A single-producer single-consumer ring of variable-length records in shared memory.
//!
//! Lamport's SPSC queue with variable-length records, cached peer indices and batched
//! publication (the shape of the LMAX Disruptor and Aeron's log buffers): the producer claims
//! space, encodes a record in place and commits it with one release store of its **commit
//! stamp**; the consumer reads committed records in place and releases a whole batch with one
//! store of its head.
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
//! commit flag: it is unique per lap (positions grow forever), so a record left from an
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
use std::time::Duration;

use super::memory::RingMemory;
use super::wait::{Check, WaitStrategy, wait_until, wake_if_waiting};

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
        // The value's acquire orders the check's load after it: a check read here is at least
        // as new as the value's own store (stored before it).
        let value = memory.load_u64(offset, Ordering::Acquire);
        (value, memory.load_u64(check, Ordering::Relaxed))
    };
    (value, stored == check_of(value, salt))
}

/// The ring's shared memory holds something a correct peer could not have written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingCorrupted {
    #[error("ring header is invalid: {0}")]
    Header(String),
    #[error("producer tail {tail} is outside [head {head}, head + capacity {capacity}]")]
    Tail { head: u64, tail: u64, capacity: u64 },
    #[error("consumer head {head} is outside [tail {tail} - capacity {capacity}, tail]")]
    Head { head: u64, tail: u64, capacity: u64 },
    #[error("record at position {position}: {detail}")]
    Record { position: u64, detail: String },
}

/// Creating a ring in memory failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingInitError {
    #[error("ring capacity {capacity} must be a power of two >= {MIN_CAPACITY}")]
    BadCapacity { capacity: usize },
    #[error("memory of {len} bytes is too small for a ring of {capacity} bytes (needs {needed})")]
    TooSmall {
        len: usize,
        capacity: usize,
        needed: usize,
    },
}

/// Writing a record failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The record does not fit the ring's maximum record size; nothing was written.
    #[error("record of {len} bytes exceeds the ring's maximum record body of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// The consumer did not free space before the deadline (backpressure).
    #[error("ring full: the consumer freed no space before the deadline")]
    TimedOut,
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
    // The largest record is a quarter of the ring: a producer waiting for room for it never
    // waits for more than three quarters of the ring to drain.
    let max_total = (capacity / 4) as u64;
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

/// The writing end of a ring.
pub struct Producer<M: RingMemory> {
    memory: M,
    layout: Layout,
    cursor: ProducerCursor,
    wait: WaitStrategy,
    /// Time spent blocked on a full ring (process-local; feeds the worker's busy share).
    stalled: Duration,
}

/// The producer's private positions.
#[derive(Debug, Clone, Copy)]
struct ProducerCursor {
    /// Next write position (local; published as `TAIL` by `flush`).
    tail: u64,
    /// Last `TAIL` published.
    published: u64,
    /// The consumer's head as last read; may be stale (older), never newer.
    head_cache: u64,
    records: u64,
}

impl ProducerCursor {
    fn free(&self, layout: &Layout) -> u64 {
        layout.capacity - (self.tail - self.head_cache)
    }

    /// Re-reads the consumer's head, checking it against our tail.
    fn refresh_head<M: RingMemory>(
        &mut self,
        memory: &M,
        layout: &Layout,
    ) -> Result<(), RingCorrupted> {
        // SAFETY: fixed, aligned control words.
        // SYNC POINT "release": pairs with the consumer's release store of `HEAD`; after it the
        // bytes the consumer read are free for us to overwrite.
        let (head, verified) =
            unsafe { load_checked(memory, word::HEAD, word::HEAD_CHECK, layout.salt) };
        // A head the consumer cannot have written (past our tail, a ring behind, backwards, or
        // off a record boundary) is corrupted, verified or not.
        if head > self.tail
            || self.tail - head > layout.capacity
            || head < self.head_cache
            || !head.is_multiple_of(16)
        {
            return Err(RingCorrupted::Head {
                head,
                tail: self.tail,
                capacity: layout.capacity,
            });
        }
        // A plausible head whose check does not match is not trusted: the space stays taken
        // until the consumer's next release repairs the word.
        if verified {
            self.head_cache = head;
        }
        Ok(())
    }
}

impl<M: RingMemory> Producer<M> {
    /// Attaches to an initialised ring as its only producer.
    pub fn attach(memory: M, wait: WaitStrategy) -> Result<Self, RingCorrupted> {
        let layout = read_layout(&memory)?;
        // SAFETY: fixed, aligned control words inside the validated layout.
        let (tail, head) = unsafe {
            memory.store_u64(
                word::PRODUCER_PID,
                u64::from(std::process::id()),
                Ordering::Relaxed,
            );
            (
                memory.load_u64(word::TAIL, Ordering::Acquire),
                memory.load_u64(word::HEAD, Ordering::Acquire),
            )
        };
        check_indices(head, tail, layout.capacity)?;
        Ok(Self {
            memory,
            layout,
            cursor: ProducerCursor {
                tail,
                published: tail,
                head_cache: head,
                records: 0,
            },
            wait,
            stalled: Duration::ZERO,
        })
    }

    /// Time this producer spent blocked on a full ring.
    pub fn stalled(&self) -> Duration {
        self.stalled
    }

    /// Largest record body this ring accepts.
    pub fn max_body(&self) -> usize {
        self.layout.max_body()
    }

    pub fn capacity(&self) -> usize {
        self.layout.capacity as usize
    }

    /// Records committed by this producer.
    pub fn records(&self) -> u64 {
        self.cursor.records
    }

    fn free(&self) -> u64 {
        self.cursor.free(&self.layout)
    }

    fn refresh_head(&mut self) -> Result<(), RingCorrupted> {
        self.cursor.refresh_head(&self.memory, &self.layout)
    }

    /// Blocks until `need` bytes are free (or `timeout` passes).
    fn wait_for_space(&mut self, need: u64, timeout: Duration) -> Result<(), PushError> {
        if self.free() >= need {
            return Ok(());
        }
        self.refresh_head()?;
        if self.free() >= need {
            return Ok(());
        }
        // Records we committed but did not publish must be visible to a consumer we wait on.
        self.flush();
        let Self {
            memory,
            layout,
            cursor,
            wait,
            stalled,
        } = self;
        let blocked_at = std::time::Instant::now();
        // SAFETY: PRODUCER_WAITING is the producer's futex word in the waiters line; only this
        // producer sets it.
        let ready = unsafe {
            wait_until(&*memory, word::PRODUCER_WAITING, wait, timeout, |_| {
                cursor
                    .refresh_head(&*memory, layout)
                    .map(|()| cursor.free(layout) >= need)
            })
        };
        *stalled += blocked_at.elapsed();
        let ready = ready?;
        if ready {
            Ok(())
        } else {
            Err(PushError::TimedOut)
        }
    }

    /// Writes a padding record from `tail` to the end of the data area.
    fn pad_to_end(&mut self) {
        let offset = self.layout.data_offset(self.cursor.tail);
        let to_end = self.layout.capacity - (self.cursor.tail & self.layout.mask);
        self.commit_at(offset, (to_end as usize) - RECORD_HEADER, KIND_PAD, to_end);
    }

    /// Writes the record header and the commit stamp of a record filled at `offset`.
    fn commit_at(&mut self, offset: usize, body_len: usize, kind: u32, total: u64) {
        // SAFETY: [offset, offset + total) lies inside the data area and is free (checked by
        // the caller against `free()`), so this producer owns it until it publishes the stamp.
        unsafe {
            let header = self.memory.bytes_mut(offset + 8, 8);
            header[..4].copy_from_slice(&(body_len as u32).to_le_bytes());
            header[4..].copy_from_slice(&kind.to_le_bytes());
            // SYNC POINT "commit": pairs with the consumer's acquire load of the stamp; the
            // header and body written before it are visible to a consumer that sees it.
            self.memory.store_u64(
                offset,
                self.layout.stamp(self.cursor.tail),
                Ordering::Release,
            );
        }
        self.cursor.tail += total;
    }

    /// Fills and commits one record in `window` bytes at the current position; `None` when the
    /// record did not fit.
    fn try_fill(
        &mut self,
        window: u64,
        fill: &mut impl FnMut(&mut [u8]) -> Option<usize>,
    ) -> Option<usize> {
        let offset = self.layout.data_offset(self.cursor.tail);
        let body_window = (window as usize) - RECORD_HEADER;
        // SAFETY: `window <= min(free, to_end, max_total)`, so the body range is inside the
        // data area and owned by this producer until committed.
        let slot = unsafe { self.memory.bytes_mut(offset + RECORD_HEADER, body_window) };
        let len = fill(slot).filter(|len| *len <= body_window)?;
        let total = align16((RECORD_HEADER + len) as u64);
        self.commit_at(offset, len, KIND_DATA, total);
        self.cursor.records += 1;
        Some(len)
    }

    /// Writes one record whose body `fill` encodes in place into the slot it is given, returning
    /// the body length (or `None` if the slot is too small). Blocks (backpressure) until there
    /// is room, at most `timeout`. A body that does not fit even the largest slot is
    /// [`PushError::TooLarge`] and no record is written.
    pub fn push_with(
        &mut self,
        mut fill: impl FnMut(&mut [u8]) -> Option<usize>,
        timeout: Duration,
    ) -> Result<usize, PushError> {
        let min_window = (RECORD_HEADER + 16) as u64;
        // Optimistic: whatever contiguous room there is.
        let window = self.contiguous_window();
        if window >= min_window {
            if let Some(len) = self.try_fill(window, &mut fill) {
                return Ok(len);
            }
            if window == self.layout.max_total {
                return Err(self.too_large());
            }
        }
        // Make a full-size window: wrap if the end is near, then wait for room.
        let to_end = self.layout.capacity - (self.cursor.tail & self.layout.mask);
        if to_end < self.layout.max_total {
            self.wait_for_space(to_end, timeout)?;
            self.pad_to_end();
        }
        self.wait_for_space(self.layout.max_total, timeout)?;
        self.try_fill(self.layout.max_total, &mut fill)
            .ok_or_else(|| self.too_large())
    }

    fn too_large(&self) -> PushError {
        PushError::TooLarge {
            len: self.layout.max_body() + 1,
            max: self.layout.max_body(),
        }
    }

    /// Contiguous bytes writable at the current position without waiting or wrapping.
    fn contiguous_window(&mut self) -> u64 {
        let to_end = self.layout.capacity - (self.cursor.tail & self.layout.mask);
        let cap = to_end.min(self.layout.max_total);
        if self.free() < cap {
            // Cached head is stale or the ring is full-ish: one look at the real head.
            let _ = self.refresh_head();
        }
        self.free().min(cap)
    }

    /// Writes `body` as one record, blocking until there is room (at most `timeout`). Bodies
    /// larger than [`Producer::max_body`] are refused before anything is written.
    pub fn push(&mut self, body: &[u8], timeout: Duration) -> Result<(), PushError> {
        if body.len() > self.max_body() {
            return Err(PushError::TooLarge {
                len: body.len(),
                max: self.max_body(),
            });
        }
        self.push_with(
            |slot| {
                let target = slot.get_mut(..body.len())?;
                target.copy_from_slice(body);
                Some(body.len())
            },
            timeout,
        )
        .map(drop)
    }

    /// Writes `body` if there is room now; `Ok(false)` when the ring is full (nothing written).
    pub fn try_push(&mut self, body: &[u8]) -> Result<bool, PushError> {
        if body.len() > self.max_body() {
            return Err(PushError::TooLarge {
                len: body.len(),
                max: self.max_body(),
            });
        }
        let total = align16((RECORD_HEADER + body.len()) as u64);
        let to_end = self.layout.capacity - (self.cursor.tail & self.layout.mask);
        let need = if to_end < total {
            to_end + total
        } else {
            total
        };
        if self.free() < need {
            self.refresh_head()?;
            if self.free() < need {
                return Ok(false);
            }
        }
        if to_end < total {
            self.pad_to_end();
        }
        let written = self.try_fill(total, &mut |slot: &mut [u8]| {
            slot.get_mut(..body.len())?.copy_from_slice(body);
            Some(body.len())
        });
        Ok(written.is_some())
    }

    /// Publishes the tail (occupancy, liveness) and wakes a parked consumer. Call once per
    /// batch: records are visible to a polling consumer as soon as they are committed, but a
    /// parked one is only woken here.
    pub fn flush(&mut self) {
        if self.cursor.tail == self.cursor.published {
            return;
        }
        // SAFETY: fixed, aligned control words.
        unsafe {
            self.memory
                .store_u64(word::TAIL, self.cursor.tail, Ordering::Release);
            self.memory.store_u64(
                word::RECORDS_WRITTEN,
                self.cursor.records,
                Ordering::Relaxed,
            );
            let beat = self.memory.load_u64(word::PRODUCER_BEAT, Ordering::Relaxed);
            self.memory
                .store_u64(word::PRODUCER_BEAT, beat.wrapping_add(1), Ordering::Relaxed);
        }
        self.cursor.published = self.cursor.tail;
        // SAFETY: CONSUMER_WAITING is the consumer's futex word.
        unsafe { wake_if_waiting(&self.memory, word::CONSUMER_WAITING) };
    }

    /// Publishes a watermark: no record with `seq <= watermark` will be written after this.
    pub fn publish_watermark(&mut self, watermark: u64) {
        // SAFETY: fixed, aligned control word.
        // SYNC POINT "watermark": pairs with `Consumer::watermark`'s acquire load; records
        // committed before it are visible to a consumer that reads the new watermark.
        unsafe {
            store_checked(
                &self.memory,
                word::WATERMARK,
                word::WATERMARK_CHECK,
                watermark,
                self.layout.salt,
                Ordering::Release,
            )
        };
        self.flush();
        // SAFETY: CONSUMER_WAITING is the consumer's futex word.
        unsafe { wake_if_waiting(&self.memory, word::CONSUMER_WAITING) };
    }

    /// Marks the ring closed: the consumer sees [`Readiness::Closed`] once it has read
    /// everything.
    pub fn close(&mut self) {
        self.flush();
        // SAFETY: fixed, aligned control word.
        unsafe {
            self.memory
                .store_u64(word::PRODUCER_CLOSED, 1, Ordering::Release)
        };
        // SAFETY: CONSUMER_WAITING is the consumer's futex word.
        unsafe { wake_if_waiting(&self.memory, word::CONSUMER_WAITING) };
    }

    /// Bytes written but not yet released by the consumer (as last seen).
    pub fn occupancy(&self) -> u64 {
        self.cursor.tail - self.cursor.head_cache
    }

    /// The consumer's liveness counter (advances on every batch it releases).
    pub fn consumer_heartbeat(&self) -> u64 {
        // SAFETY: fixed, aligned control word.
        unsafe { self.memory.load_u64(word::CONSUMER_BEAT, Ordering::Relaxed) }
    }

    pub fn memory(&self) -> &M {
        &self.memory
    }
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

/// The reading end of a ring.
pub struct Consumer<M: RingMemory> {
    memory: M,
    layout: Layout,
    cursor: ConsumerCursor,
    wait: WaitStrategy,
}

/// The consumer's private positions.
#[derive(Debug, Clone, Copy)]
struct ConsumerCursor {
    /// Next read position (local). May be ahead of the producer's published tail: records are
    /// readable as soon as they are committed, the tail is published once per batch.
    head: u64,
    /// Last `HEAD` published (released).
    released: u64,
    /// Highest producer tail seen; the published tail never goes backwards.
    tail_seen: u64,
    records: u64,
    /// The last verified watermark (they only grow).
    watermark: u64,
}

impl ConsumerCursor {
    /// Reads the producer's published tail, checking `tail_seen <= tail <= head + capacity`.
    fn load_tail<M: RingMemory>(
        &mut self,
        memory: &M,
        layout: &Layout,
    ) -> Result<u64, RingCorrupted> {
        // SAFETY: fixed, aligned control word.
        // SYNC POINT "flush": pairs with the producer's release store of `TAIL`.
        let tail = unsafe { memory.load_u64(word::TAIL, Ordering::Acquire) };
        // A published tail is a record boundary (16-aligned), never goes backwards, and never
        // runs more than a ring ahead of what we read.
        if !tail.is_multiple_of(16)
            || tail < self.tail_seen
            || tail > self.head.saturating_add(layout.capacity)
        {
            return Err(RingCorrupted::Tail {
                head: self.head,
                tail,
                capacity: layout.capacity,
            });
        }
        self.tail_seen = tail;
        Ok(tail)
    }

    /// The header of the next committed record, skipping padding: `Some((body_len, total))`,
    /// `None` when the next record is not committed yet.
    ///
    /// A [`Check::Quick`] look reads only the next stamp (what a spinning or polling consumer
    /// needs); [`Check::Thorough`] also cross-checks an uncommitted stamp against the producer's
    /// published tail, which detects a corrupted stamp.
    fn next_committed<M: RingMemory>(
        &mut self,
        memory: &M,
        layout: &Layout,
        check: Check,
    ) -> Result<Option<(usize, u64)>, RingCorrupted> {
        loop {
            let offset = layout.data_offset(self.head);
            let expected = layout.stamp(self.head);
            // SAFETY: `offset` is a 16-aligned position inside the data area (masked).
            // SYNC POINT "commit": pairs with the producer's release store of the stamp.
            let mut stamp = unsafe { memory.load_u64(offset, Ordering::Acquire) };
            if stamp != expected && check == Check::Quick {
                return Ok(None);
            }
            if stamp != expected {
                // Not committed, unless the producer's published tail says otherwise: its tail
                // is stored after the stamp, so a tail past us means the stamp must be visible.
                if self.load_tail(memory, layout)? <= self.head {
                    return Ok(None);
                }
                // SAFETY: as above.
                stamp = unsafe { memory.load_u64(offset, Ordering::Acquire) };
                if stamp != expected {
                    return Err(RingCorrupted::Record {
                        position: self.head,
                        detail: format!(
                            "stamp {stamp:#x}, expected {expected:#x}, though the producer published past it"
                        ),
                    });
                }
            }
            // SAFETY: the record header is inside the data area (16 bytes at a 16-aligned
            // offset) and committed (stamp acquired above).
            let header = unsafe { memory.bytes(offset + 8, 8) };
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let kind = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let total = align16(RECORD_HEADER as u64 + u64::from(len));
            let to_end = layout.capacity - (self.head & layout.mask);
            let corrupted = |detail: String| RingCorrupted::Record {
                position: self.head,
                detail,
            };
            match kind {
                KIND_PAD if total == to_end => {
                    self.head += total;
                    continue;
                }
                KIND_PAD => {
                    return Err(corrupted(format!(
                        "padding of {total} bytes, {to_end} to the end"
                    )));
                }
                KIND_DATA if total <= layout.max_total && total <= to_end => {
                    return Ok(Some((len as usize, total)));
                }
                KIND_DATA => {
                    return Err(corrupted(format!(
                        "length {len} exceeds the maximum record or the end of the ring"
                    )));
                }
                other => return Err(corrupted(format!("unknown record kind {other:#x}"))),
            }
        }
    }
}

fn is_closed<M: RingMemory>(memory: &M) -> bool {
    // SAFETY: fixed, aligned control word.
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

/// One committed record, read in place.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    /// The body bytes, 16-aligned.
    pub body: &'a [u8],
    /// The record's position in the ring (for diagnostics).
    pub position: u64,
}

/// Processing a batch of records stopped.
#[derive(Debug, thiserror::Error)]
pub enum PollError<E> {
    #[error(transparent)]
    Corrupted(#[from] RingCorrupted),
    /// The record handler failed; the records up to and including that one were released.
    #[error("record handler failed")]
    Handler(E),
}

impl<M: RingMemory> Consumer<M> {
    /// Attaches to an initialised ring as its only consumer.
    pub fn attach(memory: M, wait: WaitStrategy) -> Result<Self, RingCorrupted> {
        let layout = read_layout(&memory)?;
        // SAFETY: fixed, aligned control words inside the validated layout.
        let (head, tail) = unsafe {
            memory.store_u64(
                word::CONSUMER_PID,
                u64::from(std::process::id()),
                Ordering::Relaxed,
            );
            (
                memory.load_u64(word::HEAD, Ordering::Acquire),
                memory.load_u64(word::TAIL, Ordering::Acquire),
            )
        };
        check_indices(head, tail, layout.capacity)?;
        Ok(Self {
            memory,
            layout,
            cursor: ConsumerCursor {
                head,
                released: head,
                tail_seen: tail,
                records: 0,
                watermark: 0,
            },
            wait,
        })
    }

    pub fn capacity(&self) -> usize {
        self.layout.capacity as usize
    }

    /// Records read by this consumer.
    pub fn records(&self) -> u64 {
        self.cursor.records
    }

    fn next_committed(&mut self, check: Check) -> Result<Option<(usize, u64)>, RingCorrupted> {
        self.cursor
            .next_committed(&self.memory, &self.layout, check)
    }

    /// True when a record is committed and unread (with the thorough consistency check).
    pub fn has_record(&mut self) -> Result<bool, RingCorrupted> {
        self.next_committed(Check::Thorough)
            .map(|next| next.is_some())
    }

    /// Processes up to `max_records` committed records in place, in order, then releases them
    /// all with one store. Returns how many were processed (0 when none was committed: a quick
    /// look at the next stamp; [`Consumer::wait`] runs the thorough checks before sleeping).
    pub fn poll<E>(
        &mut self,
        max_records: usize,
        mut on_record: impl FnMut(RecordRef<'_>) -> Result<(), E>,
    ) -> Result<usize, PollError<E>> {
        let mut processed = 0;
        let mut outcome = Ok(());
        while processed < max_records {
            let Some((len, total)) = self.next_committed(Check::Quick)? else {
                break;
            };
            let position = self.cursor.head;
            let offset = self.layout.data_offset(position) + RECORD_HEADER;
            // SAFETY: the body is inside the data area (bounds checked in `next_committed`),
            // committed, and not released until `release` below.
            let body = unsafe { self.memory.bytes(offset, len) };
            self.cursor.head += total;
            self.cursor.records += 1;
            processed += 1;
            if let Err(e) = on_record(RecordRef { body, position }) {
                outcome = Err(PollError::Handler(e));
                break;
            }
        }
        self.release();
        outcome.map(|()| processed)
    }

    /// The next committed record's body, read in place without consuming it (`None` when
    /// none is committed). [`Consumer::advance`] consumes it; [`Consumer::release`] frees the
    /// space of what was consumed. Used by a k-way merge that must look at every ring's head
    /// before it takes one.
    pub fn peek(&mut self) -> Result<Option<&[u8]>, RingCorrupted> {
        let Some((len, _)) =
            self.cursor
                .next_committed(&self.memory, &self.layout, Check::Quick)?
        else {
            return Ok(None);
        };
        let offset = self.layout.data_offset(self.cursor.head) + RECORD_HEADER;
        // SAFETY: as in `poll`: inside the data area, committed, not released until `release`.
        Ok(Some(unsafe { self.memory.bytes(offset, len) }))
    }

    /// Consumes the record [`Consumer::peek`] returned (no-op when none is committed).
    pub fn advance(&mut self) -> Result<(), RingCorrupted> {
        if let Some((_, total)) =
            self.cursor
                .next_committed(&self.memory, &self.layout, Check::Quick)?
        {
            self.cursor.head += total;
            self.cursor.records += 1;
        }
        Ok(())
    }

    /// Publishes the read position, freeing space, and wakes a producer parked on a full ring.
    pub fn release(&mut self) {
        if self.cursor.head == self.cursor.released {
            return;
        }
        // SAFETY: fixed, aligned control words.
        unsafe {
            // SYNC POINT "release": pairs with the producer's acquire load of `HEAD`; our reads
            // of the released records happen before it may overwrite them.
            store_checked(
                &self.memory,
                word::HEAD,
                word::HEAD_CHECK,
                self.cursor.head,
                self.layout.salt,
                Ordering::Release,
            );
            self.memory
                .store_u64(word::RECORDS_READ, self.cursor.records, Ordering::Relaxed);
            let beat = self.memory.load_u64(word::CONSUMER_BEAT, Ordering::Relaxed);
            self.memory
                .store_u64(word::CONSUMER_BEAT, beat.wrapping_add(1), Ordering::Relaxed);
        }
        self.cursor.released = self.cursor.head;
        // SAFETY: PRODUCER_WAITING is the producer's futex word.
        unsafe { wake_if_waiting(&self.memory, word::PRODUCER_WAITING) };
    }

    /// Blocks until a record is committed, the ring is closed and drained, or `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Result<Readiness, RingCorrupted> {
        self.wait_for(timeout, |_| false)
    }

    /// Like [`Consumer::wait`], also returning `Ready` when `also` says so (for example when
    /// the ring's watermark moved; `also` gets the ring's memory for [`read_watermark`]).
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut also: impl FnMut(&M) -> bool,
    ) -> Result<Readiness, RingCorrupted> {
        let mut closed = false;
        let Self {
            memory,
            layout,
            cursor,
            wait,
        } = self;
        // SAFETY: CONSUMER_WAITING is the consumer's futex word; only this consumer sets it.
        let ready = unsafe {
            wait_until(&*memory, word::CONSUMER_WAITING, wait, timeout, |check| {
                if cursor.next_committed(&*memory, layout, check)?.is_some() || also(&*memory) {
                    return Ok(true);
                }
                // Closed is final only once nothing is left: re-check after seeing the flag.
                if is_closed(&*memory)
                    && cursor
                        .next_committed(&*memory, layout, Check::Thorough)?
                        .is_none()
                {
                    closed = true;
                    return Ok(true);
                }
                Ok(false)
            })
        }?;
        Ok(match (ready, closed) {
            (true, true) => Readiness::Closed,
            (true, false) => Readiness::Ready,
            (false, _) => Readiness::TimedOut,
        })
    }

    /// The producer's latest verified watermark (see [`Producer::publish_watermark`]); a
    /// watermark word whose check does not match leaves the last verified one in place.
    pub fn watermark(&mut self) -> u64 {
        if let Some(mark) = read_watermark(&self.memory, self.layout.salt) {
            self.cursor.watermark = self.cursor.watermark.max(mark);
        }
        self.cursor.watermark
    }

    /// Like [`Consumer::wait`], also returning `Ready` when the verified watermark moves past
    /// `mark`.
    pub fn wait_for_watermark(
        &mut self,
        timeout: Duration,
        mark: u64,
    ) -> Result<Readiness, RingCorrupted> {
        let salt = self.layout.salt;
        self.wait_for(timeout, |memory| {
            read_watermark(memory, salt).is_some_and(|m| m > mark)
        })
    }

    /// Publishes the consumer's progress (a sink: "every record through this `seq` is
    /// durably written"), readable by anyone mapping the ring, even after this process died.
    pub fn publish_progress(&self, seq: u64) {
        // SAFETY: fixed, aligned control word of the consumer's line.
        // SYNC POINT "progress": pairs with `read_progress`'s acquire load.
        unsafe {
            store_checked(
                &self.memory,
                word::CONSUMER_PROGRESS,
                word::PROGRESS_CHECK,
                seq,
                self.layout.salt,
                Ordering::Release,
            )
        };
    }

    /// Bytes published but not yet read, from the producer's last published tail.
    pub fn occupancy(&mut self) -> Result<u64, RingCorrupted> {
        self.cursor
            .load_tail(&self.memory, &self.layout)
            .map(|tail| tail.saturating_sub(self.cursor.head))
    }

    /// The producer's liveness counter (advances on every batch it publishes).
    pub fn producer_heartbeat(&self) -> u64 {
        // SAFETY: fixed, aligned control word.
        unsafe { self.memory.load_u64(word::PRODUCER_BEAT, Ordering::Relaxed) }
    }

    /// The producer's process id as it recorded it when attaching (0 before).
    pub fn producer_pid(&self) -> u32 {
        // SAFETY: fixed, aligned control word.
        unsafe { self.memory.load_u64(word::PRODUCER_PID, Ordering::Relaxed) as u32 }
    }

    pub fn memory(&self) -> &M {
        &self.memory
    }
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

    pub const TAIL: usize = super::word::TAIL;
    pub const HEAD: usize = super::word::HEAD;
    pub const WATERMARK: usize = super::word::WATERMARK;
    pub const PRODUCER_CLOSED: usize = super::word::PRODUCER_CLOSED;
    pub const MAGIC: usize = super::word::MAGIC;
    /// The first record's header (stamp at +0, length at +8, kind at +12).
    pub const FIRST_RECORD: usize = super::CONTROL_BYTES;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::memory::HeapMemory;
    use std::sync::Arc;

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
