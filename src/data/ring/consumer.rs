//! The consumer's side: read committed records in place, release a batch with one head store,
//! publish progress, and wait (bounded spin, then park) when the ring is empty.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{
    KIND_DATA, KIND_PAD, Layout, RECORD_HEADER, Readiness, RingCorrupted, align16, check_indices,
    is_closed, read_layout, read_watermark, store_checked, word,
};
use crate::data::memory::RingMemory;
use crate::data::wait::{WaitStrategy, wait_until, wake_if_waiting};

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
    /// Next read position (local); never past the producer's published tail.
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

    /// The header of the next published record, skipping padding: `Some((body_len, total))`,
    /// `None` when the producer has not published past `head` yet.
    ///
    /// Visibility is gated on the published tail, not on the next record's stamp: a caught-up
    /// consumer then watches one control word the producer writes once per batch, instead of
    /// the data line the producer is filling (which would bounce that line between the cores
    /// on every record). The stamp of a published record is still checked: a stamp that does
    /// not match although the tail passed it is corruption.
    #[inline]
    fn next_published<M: RingMemory>(
        &mut self,
        memory: &M,
        layout: &Layout,
    ) -> Result<Option<(usize, u64)>, RingCorrupted> {
        loop {
            if self.head >= self.tail_seen && self.load_tail(memory, layout)? <= self.head {
                return Ok(None);
            }
            let offset = layout.data_offset(self.head);
            let expected = layout.stamp(self.head);
            // SAFETY: `offset` is a 16-aligned position inside the data area (masked).
            // SYNC POINT "commit": pairs with the producer's release store of the stamp (which
            // also happened before its release of a tail past this record, "flush").
            let stamp = unsafe { memory.load_u64(offset, Ordering::Acquire) };
            if stamp != expected {
                return Err(RingCorrupted::Record {
                    position: self.head,
                    detail: format!(
                        "stamp {stamp:#x}, expected {expected:#x}, though the producer published past it"
                    ),
                });
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
    /// The ring's shared memory is corrupted.
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
            // SYNC POINT "attach": pairs with the releases of `HEAD` ("release") and `TAIL`
            // ("flush") by the ends this one replaces or meets: it starts from what they
            // published.
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

    /// Bytes of the ring's data area.
    pub fn capacity(&self) -> usize {
        self.layout.capacity as usize
    }

    /// Records read by this consumer.
    pub fn records(&self) -> u64 {
        self.cursor.records
    }

    fn next_published(&mut self) -> Result<Option<(usize, u64)>, RingCorrupted> {
        self.cursor.next_published(&self.memory, &self.layout)
    }

    /// True when a record is published and unread.
    pub fn has_record(&mut self) -> Result<bool, RingCorrupted> {
        self.next_published().map(|next| next.is_some())
    }

    /// Processes up to `max_records` committed records in place, in order, then releases them
    /// all with one store. Returns how many were processed (0 when none was published: one look
    /// at the producer's tail).
    #[inline]
    pub fn poll<E>(
        &mut self,
        max_records: usize,
        mut on_record: impl FnMut(RecordRef<'_>) -> Result<(), E>,
    ) -> Result<usize, PollError<E>> {
        let mut processed = 0;
        let mut outcome = Ok(());
        while processed < max_records {
            let Some((len, total)) = self.next_published()? else {
                break;
            };
            let position = self.cursor.head;
            let offset = self.layout.data_offset(position) + RECORD_HEADER;
            // SAFETY: the body is inside the data area (bounds checked in `next_published`),
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
        let Some((len, _)) = self.cursor.next_published(&self.memory, &self.layout)? else {
            return Ok(None);
        };
        let offset = self.layout.data_offset(self.cursor.head) + RECORD_HEADER;
        // SAFETY: as in `poll`: inside the data area, committed, not released until `release`.
        Ok(Some(unsafe { self.memory.bytes(offset, len) }))
    }

    /// Consumes the record [`Consumer::peek`] returned (no-op when none is committed).
    pub fn advance(&mut self) -> Result<(), RingCorrupted> {
        if let Some((_, total)) = self.cursor.next_published(&self.memory, &self.layout)? {
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
    /// the ring's watermark moved; `also` gets the ring's memory for `read_watermark`).
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
            wait_until(&*memory, word::CONSUMER_WAITING, wait, timeout, || {
                if cursor.next_published(&*memory, layout)?.is_some() || also(&*memory) {
                    return Ok(true);
                }
                // Closed is final only once nothing is left: re-check after seeing the flag.
                if is_closed(&*memory) && cursor.next_published(&*memory, layout)?.is_none() {
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

    /// The producer's latest verified watermark (see [`super::Producer::publish_watermark`]); a
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

    /// The ring's shared memory.
    pub fn memory(&self) -> &M {
        &self.memory
    }
}
