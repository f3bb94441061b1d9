//! The producer's side: claim space, encode in place, commit with one stamp store, publish a
//! batch's tail and watermark, and wait (bounded spin, then park) when the ring is full.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{
    KIND_DATA, KIND_PAD, Layout, PushError, RECORD_HEADER, RingCorrupted, align16, check_indices,
    load_checked, read_layout, store_checked, word,
};
use crate::data::memory::RingMemory;

/// Free contiguous bytes below which a push looks at the consumer's real head before filling
/// (above it, the cached head is trusted: a record rarely needs more).
const OPTIMISTIC_WINDOW: u64 = 64 * 1024;
use crate::data::wait::{WaitStrategy, wait_until, wake_if_waiting};

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
            // SYNC POINT "attach": pairs with the releases of `TAIL` ("flush") and `HEAD`
            // ("release") by the ends this one replaces or meets.
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

    /// Bytes of the ring's data area.
    pub fn capacity(&self) -> usize {
        self.layout.capacity as usize
    }

    /// Records committed by this producer.
    pub fn records(&self) -> u64 {
        self.cursor.records
    }

    #[inline]
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
            wait_until(&*memory, word::PRODUCER_WAITING, wait, timeout, || {
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
    #[inline]
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
    #[inline]
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
    #[inline]
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
        // The record needs more than the window it was offered: wait for twice as much
        // contiguous room (wrapping when the end is nearer), up to the largest record, so that
        // a small record never waits for half the ring to drain.
        let mut need = (window.max(min_window) * 2).min(self.layout.max_total);
        loop {
            let to_end = self.layout.capacity - (self.cursor.tail & self.layout.mask);
            if to_end < need {
                self.wait_for_space(to_end, timeout)?;
                self.pad_to_end();
            }
            self.wait_for_space(need, timeout)?;
            // At least `need`: that much is free and the end is at least that far.
            let window = self.contiguous_window();
            if let Some(len) = self.try_fill(window, &mut fill) {
                return Ok(len);
            }
            if window >= self.layout.max_total {
                return Err(self.too_large());
            }
            need = (window * 2).min(self.layout.max_total);
        }
    }

    fn too_large(&self) -> PushError {
        PushError::TooLarge {
            len: self.layout.max_body() + 1,
            max: self.layout.max_body(),
        }
    }

    /// Contiguous bytes writable at the current position without waiting or wrapping. The
    /// consumer's head is read (a cache line the consumer writes) only when the cached view
    /// leaves less than [`OPTIMISTIC_WINDOW`]: records are usually far smaller, and a larger
    /// one takes the slow path of `push_with`.
    #[inline]
    fn contiguous_window(&mut self) -> u64 {
        let to_end = self.layout.capacity - (self.cursor.tail & self.layout.mask);
        let cap = to_end.min(self.layout.max_total);
        if self.free() < cap.min(OPTIMISTIC_WINDOW) {
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

    /// Commits `body` if there is room now (readable after the next [`Producer::flush`]);
    /// `Ok(false)` when the ring is full (nothing written).
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

    /// Publishes the tail and wakes a parked consumer: the records committed since the last
    /// flush become readable. Call once per batch, and whenever no more records follow soon (a
    /// record that waits for a batch to fill waits for nothing).
    pub fn flush(&mut self) {
        if self.cursor.tail == self.cursor.published {
            return;
        }
        // SAFETY: fixed, aligned control words.
        unsafe {
            // SYNC POINT "flush": pairs with the consumer's acquire load of `TAIL`; every
            // record committed before it is visible to a consumer that reads the new tail.
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
        // The records the watermark covers are published first: a consumer that reads the new
        // watermark then reads a tail that includes them.
        self.flush();
        // SAFETY: fixed, aligned control word.
        // SYNC POINT "watermark": pairs with `Consumer::watermark`'s acquire load; the tail
        // published above is visible to a consumer that reads the new watermark.
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
        // SAFETY: CONSUMER_WAITING is the consumer's futex word.
        unsafe { wake_if_waiting(&self.memory, word::CONSUMER_WAITING) };
    }

    /// Marks the ring closed: the consumer sees [`super::Readiness::Closed`] once it has read
    /// everything.
    pub fn close(&mut self) {
        self.flush();
        // SAFETY: fixed, aligned control word.
        // SYNC POINT "close": pairs with `is_closed`'s acquire load; the flush above is visible
        // to a consumer that sees the ring closed.
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

    /// The ring's shared memory.
    pub fn memory(&self) -> &M {
        &self.memory
    }
}
