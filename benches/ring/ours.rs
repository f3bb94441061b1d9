//! Our ring: cross-process (a child echoes or acknowledges), batched as the runtime uses it or
//! published per message, and between two threads of one process (the in-process floor next to
//! rtrb).

use std::process::Child;
use std::sync::Arc;

use rkyv::ser::allocator::Arena;
use stream_kernel::data::{
    Consumer, EnvelopeHeader, EnvelopeKind, HeapMemory, Producer, Readiness, RingMemory, Segment,
    WaitStrategy, init_ring, push_envelope, ring_memory_len,
};
use stream_kernel::graph::encode_into;

use crate::common::{
    BenchPayload, EXIT, Link, RING_BYTES, check_envelope, far, marker_header, payload_of,
    spawn_child,
};

pub struct RingLink<M: RingMemory> {
    tx: Producer<M>,
    rx: Consumer<M>,
    payload: BenchPayload,
    arena: Arena,
    /// Publish every message (the unbatched row) instead of once per batch.
    per_message: bool,
    echo: Option<std::thread::JoinHandle<()>>,
}

impl<M: RingMemory> Link for RingLink<M> {
    fn send(&mut self, seq: u64) {
        push_bench_envelope(&mut self.tx, seq, &self.payload, &mut self.arena);
        if self.per_message {
            self.tx.flush();
        }
    }
    fn flush(&mut self) {
        self.tx.flush();
    }
    fn send_marker(&mut self, target: u32) {
        push_envelope(&mut self.tx, &marker_header(target), |_| Some(0), far())
            .expect("push marker");
        self.tx.flush();
    }
    fn recv(&mut self) -> EnvelopeKind {
        loop {
            let mut kind = None;
            self.rx
                .poll(1, |r| {
                    kind = Some(check_envelope(r.body).0);
                    Ok::<_, ()>(())
                })
                .expect("poll");
            if let Some(kind) = kind {
                return kind;
            }
            if self.rx.wait(far()).expect("wait") == Readiness::Closed {
                panic!("peer closed the ring");
            }
        }
    }
}

impl<M: RingMemory> Drop for RingLink<M> {
    fn drop(&mut self) {
        if let Some(thread) = self.echo.take() {
            self.send_marker(EXIT);
            let _ = thread.join();
        }
    }
}

/// One data envelope `seq` with the bench payload, encoded in place in the ring.
fn push_bench_envelope<M: RingMemory>(
    tx: &mut Producer<M>,
    seq: u64,
    payload: &BenchPayload,
    arena: &mut Arena,
) {
    let header = EnvelopeHeader::data(seq, 0);
    push_envelope(
        tx,
        &header,
        |slot| encode_into(payload, slot, arena).ok(),
        far(),
    )
    .expect("push");
}

fn ring_pair(capacity: usize) -> (Segment, Segment) {
    let make = |name| {
        let segment = Segment::create(name, ring_memory_len(capacity)).expect("segment");
        init_ring(&segment, capacity, 0x5eed_1234_5678_9abc).expect("init");
        segment
    };
    (make("bench-request"), make("bench-reply"))
}

/// Cross-process: requests out on one segment, replies back on another.
pub fn ours(
    profile: WaitStrategy,
    size: usize,
    echo: bool,
    per_message: bool,
) -> (Box<dyn Link>, Child) {
    let (request, reply) = ring_pair(RING_BYTES);
    let arg = format!(
        "{},{},{},{},{}",
        request.fd(),
        reply.fd(),
        ring_memory_len(RING_BYTES),
        profile_name(profile),
        echo
    );
    let child = spawn_child("ours", &arg, &[request.fd(), reply.fd()]);
    let link = RingLink {
        tx: Producer::attach(request, profile).expect("attach"),
        rx: Consumer::attach(reply, profile).expect("attach"),
        payload: payload_of(size),
        arena: Arena::new(),
        per_message,
        echo: None,
    };
    (Box::new(link), child)
}

/// Two threads of this process, heap memory: the same protocol without a process boundary.
pub fn ours_threads(size: usize, echo: bool) -> Box<dyn Link> {
    let make = || {
        let memory = Arc::new(HeapMemory::new(ring_memory_len(RING_BYTES)));
        init_ring(&*memory, RING_BYTES, 0x5eed_0000_0000_0001).expect("init");
        memory
    };
    let (request, reply) = (make(), make());
    let profile = WaitStrategy::LATENCY;
    let rx = Consumer::attach(Arc::clone(&request), profile).expect("attach");
    let tx = Producer::attach(Arc::clone(&reply), profile).expect("attach");
    let thread = std::thread::spawn(move || serve(rx, tx, echo));
    Box::new(RingLink {
        tx: Producer::attach(request, profile).expect("attach"),
        rx: Consumer::attach(reply, profile).expect("attach"),
        payload: payload_of(size),
        arena: Arena::new(),
        per_message: false,
        echo: Some(thread),
    })
}

pub fn profile_name(profile: WaitStrategy) -> &'static str {
    if profile == WaitStrategy::LATENCY {
        "latency"
    } else if profile == WaitStrategy::EFFICIENCY {
        "efficiency"
    } else {
        "balanced"
    }
}

/// The other end: checks every envelope in place, echoes data (when asked) and markers.
fn serve<M: RingMemory>(mut rx: Consumer<M>, mut tx: Producer<M>, echo: bool) {
    loop {
        let mut exit = false;
        let got = rx
            .poll(256, |r| {
                let (kind, target) = check_envelope(r.body);
                match kind {
                    EnvelopeKind::EndOfStream if target == EXIT => exit = true,
                    _ if echo || kind == EnvelopeKind::EndOfStream => {
                        tx.push(r.body, far()).expect("echo");
                    }
                    _ => {}
                }
                Ok::<_, ()>(())
            })
            .expect("poll");
        tx.flush();
        if exit {
            return;
        }
        if got == 0 && rx.wait(far()).expect("wait") == Readiness::Closed {
            return;
        }
    }
}

pub fn child_ours(arg: &str) {
    let parts: Vec<&str> = arg.split(',').collect();
    let (request_fd, reply_fd, len) = (
        parts[0].parse().expect("fd"),
        parts[1].parse().expect("fd"),
        parts[2].parse().expect("len"),
    );
    let profile = match parts[3] {
        "latency" => WaitStrategy::LATENCY,
        "efficiency" => WaitStrategy::EFFICIENCY,
        _ => WaitStrategy::BALANCED,
    };
    // SAFETY: the parent passed these fds to this child alone.
    let (request, reply) = unsafe {
        (
            Segment::open_inherited(request_fd, len).expect("request segment"),
            Segment::open_inherited(reply_fd, len).expect("reply segment"),
        )
    };
    let rx = Consumer::attach(request, profile).expect("attach");
    let tx = Producer::attach(reply, profile).expect("attach");
    serve(rx, tx, parts[4] == "true");
}

/// The same minimal two-thread loop as `slots::RtrbMinimal` on our ring (heap memory, latency
/// profile): the producer encodes each 64 B envelope in place and publishes every
/// [`crate::common::BATCH`]; the consumer validates each in place, releases per poll and
/// counts into an atomic the producer waits on. Ring and consumer live across samples.
pub struct OursMinimal {
    tx: Producer<Arc<HeapMemory>>,
    read: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    consumer: Option<std::thread::JoinHandle<()>>,
    payload: BenchPayload,
    arena: Arena,
    sent: u64,
}

impl OursMinimal {
    pub fn start() -> Self {
        use std::sync::atomic::Ordering;
        let memory = Arc::new(HeapMemory::new(ring_memory_len(RING_BYTES)));
        init_ring(&*memory, RING_BYTES, 0x5eed_0000_0000_0002).expect("init");
        let profile = WaitStrategy::LATENCY;
        let mut rx = Consumer::attach(Arc::clone(&memory), profile).expect("attach");
        let tx = Producer::attach(memory, profile).expect("attach");
        let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (counter, stopping) = (Arc::clone(&read), Arc::clone(&stop));
        let consumer = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let got = rx
                    .poll(usize::MAX, |r| {
                        std::hint::black_box(check_envelope(r.body));
                        Ok::<_, ()>(())
                    })
                    .expect("poll");
                if got == 0 {
                    std::hint::spin_loop();
                } else {
                    counter.fetch_add(got as u64, Ordering::Release);
                }
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
            push_bench_envelope(&mut self.tx, self.sent, &self.payload, &mut self.arena);
            self.sent += 1;
            if self.sent.is_multiple_of(crate::common::BATCH) {
                self.tx.flush();
            }
        }
        self.tx.flush();
        while self.read.load(Ordering::Acquire) < target {
            std::hint::spin_loop();
        }
        start.elapsed()
    }
}

impl Drop for OursMinimal {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(consumer) = self.consumer.take() {
            let _ = consumer.join();
        }
    }
}
