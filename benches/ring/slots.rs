//! In-process typed queues, driven as their docs recommend for fixed-size messages: each
//! envelope lives in a cache-line-aligned slot of a fixed size.
//!
//! - rtrb: a ring of slots; the producer takes a chunk of uninitialised slots for a whole
//!   batch (`write_chunk_uninit`), encodes each envelope in place and commits the chunk once;
//!   the consumer validates envelopes in place in a read chunk and releases it once. rtrb is
//!   in-process only (it cannot be shared between processes): the in-process floor.
//! - crossbeam-channel: slots sent by value (the channel moves each slot in and out), and the
//!   "owned bytes" row: a `Vec<u8>` per message, allocated on one thread and freed on the other.

use std::mem::MaybeUninit;

use rkyv::ser::allocator::Arena;
use stream_kernel::data::{ENVELOPE_HEADER, EnvelopeKind};
use stream_kernel::graph::AlignedBuf;

use crate::common::{
    BATCH, BenchPayload, EXIT, Link, RING_BYTES, check_envelope, copy_aligned, encode_message,
    encode_message_uninit, marker, marker_uninit, payload_of,
};

/// One envelope in a fixed-size, 64-byte-aligned slot (the envelope starts the slot, so its
/// payload is 16-aligned for rkyv).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct Slot<const N: usize> {
    bytes: [MaybeUninit<u8>; N],
    len: usize,
}

impl<const N: usize> Slot<N> {
    /// The envelope this slot holds.
    fn body(&self) -> &[u8] {
        // SAFETY: `len` is only ever set by `fill_slot` to the number of bytes its writer
        // wrote at the start of `bytes`.
        unsafe { self.bytes[..self.len].assume_init_ref() }
    }
}

/// Fills a possibly uninitialised slot in place: `write` encodes into its bytes and returns
/// how many it wrote. Afterwards the slot is initialised (its bytes need no initialisation).
fn fill_slot<const N: usize>(
    slot: &mut MaybeUninit<Slot<N>>,
    write: impl FnOnce(&mut [MaybeUninit<u8>]) -> usize,
) {
    let slot = slot.as_mut_ptr();
    // SAFETY: `slot` points to writable memory for a `Slot<N>`; `bytes` is an array of
    // `MaybeUninit<u8>`, valid whatever the memory holds, so a reference to it is sound.
    let bytes = unsafe { &mut *std::ptr::addr_of_mut!((*slot).bytes) };
    let len = write(bytes);
    // SAFETY: as above; writing the one field that needs initialising.
    unsafe { std::ptr::addr_of_mut!((*slot).len).write(len) };
}

/// Envelope bytes a slot holds for a payload size: the untraced header and the archive (the
/// payload's bytes and its 8-byte root, 16-aligned), so a slot is as small as the envelope
/// allows (128 bytes in all for 64 B: two cache lines).
pub const fn slot_bytes(size: usize) -> usize {
    (ENVELOPE_HEADER + size + 16).div_ceil(16) * 16
}

/// Slots per queue: the same bytes as our ring, and room for two batches.
fn capacity<const N: usize>() -> usize {
    (RING_BYTES / N).max(2 * BATCH as usize)
}

// ---- rtrb

struct RtrbLink<const N: usize> {
    tx: rtrb::Producer<Slot<N>>,
    rx: rtrb::Consumer<Slot<N>>,
    arena: Arena,
    payload: BenchPayload,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Takes `count` free slots (spinning while the queue is full), lets `fill` write each in
/// place, and commits them at once.
fn rtrb_write<const N: usize>(
    tx: &mut rtrb::Producer<Slot<N>>,
    count: usize,
    mut fill: impl FnMut(usize, &mut [MaybeUninit<u8>]) -> usize,
) {
    let mut chunk = loop {
        match tx.write_chunk_uninit(count) {
            Ok(chunk) => break chunk,
            Err(_) => std::hint::spin_loop(),
        }
    };
    let (first, second) = chunk.as_mut_slices();
    for (i, slot) in first.iter_mut().chain(second.iter_mut()).enumerate() {
        fill_slot(slot, |bytes| fill(i, bytes));
    }
    // SAFETY: `fill_slot` initialised every slot of the chunk.
    unsafe { chunk.commit_all() };
}

/// Waits for at least one slot and hands every readable one (at most `max`) to `read`, in
/// place; releases them at once.
fn rtrb_read<const N: usize>(
    rx: &mut rtrb::Consumer<Slot<N>>,
    max: usize,
    mut read: impl FnMut(&[u8]),
) {
    let mut available = rx.slots();
    while available == 0 {
        std::hint::spin_loop();
        available = rx.slots();
    }
    let chunk = rx
        .read_chunk(available.min(max))
        .expect("slots are readable");
    let (first, second) = chunk.as_slices();
    for slot in first.iter().chain(second) {
        read(slot.body());
    }
    chunk.commit_all();
}

impl<const N: usize> Link for RtrbLink<N> {
    fn send(&mut self, seq: u64) {
        self.send_batch(seq, 1);
    }
    fn send_batch(&mut self, first: u64, count: u64) {
        let (arena, payload) = (&mut self.arena, &self.payload);
        rtrb_write(&mut self.tx, count as usize, |i, bytes| {
            encode_message_uninit(bytes, arena, first + i as u64, payload)
        });
    }
    fn send_marker(&mut self, target: u32) {
        rtrb_write(&mut self.tx, 1, |_, bytes| marker_uninit(bytes, target));
    }
    fn recv(&mut self) -> EnvelopeKind {
        let mut kind = None;
        rtrb_read(&mut self.rx, 1, |body| kind = Some(check_envelope(body).0));
        kind.expect("one slot read")
    }
}

impl<const N: usize> Drop for RtrbLink<N> {
    fn drop(&mut self) {
        self.send_marker(EXIT);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn rtrb_serve<const N: usize>(
    mut rx: rtrb::Consumer<Slot<N>>,
    mut tx: rtrb::Producer<Slot<N>>,
    echo: bool,
) {
    loop {
        let mut exit = false;
        rtrb_read(&mut rx, 256, |body| {
            let (kind, target) = check_envelope(body);
            if kind == EnvelopeKind::EndOfStream && target == EXIT {
                exit = true;
            } else if echo || kind == EnvelopeKind::EndOfStream {
                rtrb_write(&mut tx, 1, |_, out| {
                    out[..body.len()].write_copy_of_slice(body);
                    body.len()
                });
            }
        });
        if exit {
            return;
        }
    }
}

fn rtrb_typed<const N: usize>(size: usize, echo: bool) -> Box<dyn Link> {
    let (request_tx, request_rx) = rtrb::RingBuffer::<Slot<N>>::new(capacity::<N>());
    let (reply_tx, reply_rx) = rtrb::RingBuffer::<Slot<N>>::new(capacity::<N>());
    let thread = std::thread::spawn(move || rtrb_serve(request_rx, reply_tx, echo));
    Box::new(RtrbLink {
        tx: request_tx,
        rx: reply_rx,
        arena: Arena::new(),
        payload: payload_of(size),
        thread: Some(thread),
    })
}

pub fn rtrb_peer(size: usize, echo: bool) -> Box<dyn Link> {
    match size {
        64 => rtrb_typed::<{ slot_bytes(64) }>(size, echo),
        1024 => rtrb_typed::<{ slot_bytes(1024) }>(size, echo),
        _ => rtrb_typed::<{ slot_bytes(64 * 1024) }>(size, echo),
    }
}

// ---- crossbeam-channel, slots by value

struct CrossbeamSlotLink<const N: usize> {
    tx: crossbeam_channel::Sender<Slot<N>>,
    rx: crossbeam_channel::Receiver<Slot<N>>,
    arena: Arena,
    payload: BenchPayload,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn filled<const N: usize>(write: impl FnOnce(&mut [MaybeUninit<u8>]) -> usize) -> Slot<N> {
    let mut slot = MaybeUninit::<Slot<N>>::uninit();
    fill_slot(&mut slot, write);
    // SAFETY: `fill_slot` initialised the slot.
    unsafe { slot.assume_init() }
}

impl<const N: usize> Link for CrossbeamSlotLink<N> {
    fn send(&mut self, seq: u64) {
        let (arena, payload) = (&mut self.arena, &self.payload);
        let slot = filled::<N>(|bytes| encode_message_uninit(bytes, arena, seq, payload));
        self.tx.send(slot).expect("send");
    }
    fn send_marker(&mut self, target: u32) {
        self.tx
            .send(filled::<N>(|bytes| marker_uninit(bytes, target)))
            .expect("send");
    }
    fn recv(&mut self) -> EnvelopeKind {
        let slot = self.rx.recv().expect("recv");
        check_envelope(slot.body()).0
    }
}

impl<const N: usize> Drop for CrossbeamSlotLink<N> {
    fn drop(&mut self) {
        self.send_marker(EXIT);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn crossbeam_typed<const N: usize>(size: usize, echo: bool) -> Box<dyn Link> {
    let (request_tx, request_rx) = crossbeam_channel::bounded::<Slot<N>>(capacity::<N>());
    let (reply_tx, reply_rx) = crossbeam_channel::bounded::<Slot<N>>(capacity::<N>());
    let thread = std::thread::spawn(move || {
        while let Ok(slot) = request_rx.recv() {
            let (kind, target) = check_envelope(slot.body());
            if kind == EnvelopeKind::EndOfStream && target == EXIT {
                return;
            }
            if echo || kind == EnvelopeKind::EndOfStream {
                reply_tx.send(slot).expect("echo");
            }
        }
    });
    Box::new(CrossbeamSlotLink {
        tx: request_tx,
        rx: reply_rx,
        arena: Arena::new(),
        payload: payload_of(size),
        thread: Some(thread),
    })
}

pub fn crossbeam_slots_peer(size: usize, echo: bool) -> Box<dyn Link> {
    match size {
        64 => crossbeam_typed::<{ slot_bytes(64) }>(size, echo),
        1024 => crossbeam_typed::<{ slot_bytes(1024) }>(size, echo),
        _ => crossbeam_typed::<{ slot_bytes(64 * 1024) }>(size, echo),
    }
}

// ---- crossbeam-channel, owned bytes per message

struct CrossbeamBytesLink {
    tx: crossbeam_channel::Sender<Vec<u8>>,
    rx: crossbeam_channel::Receiver<Vec<u8>>,
    buf: AlignedBuf,
    rbuf: AlignedBuf,
    arena: Arena,
    payload: BenchPayload,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Link for CrossbeamBytesLink {
    fn send(&mut self, seq: u64) {
        let len = encode_message(&mut self.buf, &mut self.arena, seq, &self.payload);
        self.tx
            .send(self.buf.as_bytes()[..len].to_vec())
            .expect("send");
    }
    fn send_marker(&mut self, target: u32) {
        let len = marker(&mut self.buf, target);
        self.tx
            .send(self.buf.as_bytes()[..len].to_vec())
            .expect("send");
    }
    fn recv(&mut self) -> EnvelopeKind {
        let bytes = self.rx.recv().expect("recv");
        let len = copy_aligned(&mut self.rbuf, &bytes);
        check_envelope(&self.rbuf.as_bytes()[..len]).0
    }
}

impl Drop for CrossbeamBytesLink {
    fn drop(&mut self) {
        self.send_marker(EXIT);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn crossbeam_bytes_peer(size: usize, echo: bool) -> Box<dyn Link> {
    let (request_tx, request_rx) = crossbeam_channel::bounded::<Vec<u8>>(512);
    let (reply_tx, reply_rx) = crossbeam_channel::bounded::<Vec<u8>>(512);
    let thread = std::thread::spawn(move || {
        let mut buf = AlignedBuf::with_capacity(128 * 1024);
        while let Ok(bytes) = request_rx.recv() {
            let len = copy_aligned(&mut buf, &bytes);
            let (kind, target) = check_envelope(&buf.as_bytes()[..len]);
            if kind == EnvelopeKind::EndOfStream && target == EXIT {
                return;
            }
            if echo || kind == EnvelopeKind::EndOfStream {
                reply_tx.send(bytes).expect("echo");
            }
        }
    });
    Box::new(CrossbeamBytesLink {
        tx: request_tx,
        rx: reply_rx,
        buf: AlignedBuf::with_capacity(128 * 1024),
        rbuf: AlignedBuf::with_capacity(128 * 1024),
        arena: Arena::new(),
        payload: payload_of(size),
        thread: Some(thread),
    })
}

/// The minimal two-thread rtrb loop for this job, with no bench harness around it: a producer
/// fills chunks of [`BATCH`] 64 B envelopes in place and commits each chunk, a consumer thread
/// validates every envelope in place and releases what it read, counting into an atomic the
/// producer waits on. The ring and the consumer live across samples (no set-up is timed); the
/// yardstick the `rtrb-slots` row is measured against (same queue, same capacity).
pub struct RtrbMinimal {
    tx: rtrb::Producer<Slot<{ slot_bytes(64) }>>,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    consumer: Option<std::thread::JoinHandle<()>>,
    payload: BenchPayload,
    arena: Arena,
    sent: u64,
}

impl RtrbMinimal {
    pub fn start() -> Self {
        use std::sync::atomic::Ordering;
        const N: usize = slot_bytes(64);
        let (tx, mut rx) = rtrb::RingBuffer::<Slot<N>>::new(capacity::<N>());
        let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (counter, stopping) = (std::sync::Arc::clone(&read), std::sync::Arc::clone(&stop));
        let consumer = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let available = rx.slots();
                if available == 0 {
                    std::hint::spin_loop();
                    continue;
                }
                let chunk = rx.read_chunk(available).expect("slots are readable");
                let (first, second) = chunk.as_slices();
                for slot in first.iter().chain(second) {
                    std::hint::black_box(check_envelope(slot.body()));
                }
                chunk.commit_all();
                counter.fetch_add(available as u64, Ordering::Release);
            }
        });
        Self {
            tx,
            read,
            stop,
            consumer: Some(consumer),
            payload: payload_of(64),
            arena: Arena::new(),
            sent: 0,
        }
    }

    /// `iters` messages through, timed until the consumer has checked the last.
    pub fn run(&mut self, iters: u64) -> std::time::Duration {
        use std::sync::atomic::Ordering;
        let target = self.sent + iters;
        let start = std::time::Instant::now();
        while self.sent < target {
            let count = BATCH.min(target - self.sent);
            let (arena, payload, first) = (&mut self.arena, &self.payload, self.sent);
            rtrb_write(&mut self.tx, count as usize, |i, bytes| {
                encode_message_uninit(bytes, arena, first + i as u64, payload)
            });
            self.sent += count;
        }
        while self.read.load(Ordering::Acquire) < target {
            std::hint::spin_loop();
        }
        start.elapsed()
    }
}

impl Drop for RtrbMinimal {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(consumer) = self.consumer.take() {
            let _ = consumer.join();
        }
    }
}
