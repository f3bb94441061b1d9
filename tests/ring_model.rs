//! RING-02: the ring protocol under the loom model checker.
//!
//! The ring is generic over its memory, so here it runs over a `RingMemory` built from loom's
//! primitives: every control word and commit stamp is a loom atomic (loom explores the
//! orderings the C11 model allows, including stale reads), the futex is a loom mutex and
//! condition variable (a lost wake-up leaves a thread blocked forever, which loom reports as a
//! deadlock), and every 16-byte granule of record bytes is guarded by a loom `UnsafeCell` whose
//! accesses loom checks for causality (a body read that is not ordered after its write is
//! reported as a data race).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use loom::sync::atomic::{AtomicU32, AtomicU64};
use loom::sync::{Condvar, Mutex};
use stream_kernel::data::memory::RingMemory;
use stream_kernel::data::{
    Consumer, Producer, Readiness, WaitStrategy, init_ring, ring_memory_len,
};

struct ModelMemory {
    words64: Vec<AtomicU64>,
    words32: Vec<AtomicU32>,
    bytes: std::cell::UnsafeCell<Vec<u8>>,
    granules: Vec<loom::cell::UnsafeCell<()>>,
    futex: Mutex<()>,
    woken: Condvar,
}

// SAFETY: the byte buffer is only accessed through ranges the ring protocol makes exclusive,
// and loom's granule cells check exactly that; everything else is loom-synchronised.
unsafe impl Send for ModelMemory {}
// SAFETY: as above.
unsafe impl Sync for ModelMemory {}

impl ModelMemory {
    fn new(len: usize) -> Self {
        Self {
            words64: (0..len / 8).map(|_| AtomicU64::new(0)).collect(),
            words32: (0..len / 4).map(|_| AtomicU32::new(0)).collect(),
            bytes: std::cell::UnsafeCell::new(vec![0; len]),
            granules: (0..len / 16)
                .map(|_| loom::cell::UnsafeCell::new(()))
                .collect(),
            futex: Mutex::new(()),
            woken: Condvar::new(),
        }
    }
}

// SAFETY: loom atomics and a loom mutex/condvar futex; byte ranges are race-checked by loom.
unsafe impl RingMemory for ModelMemory {
    fn len(&self) -> usize {
        self.words64.len() * 8
    }
    unsafe fn load_u64(&self, offset: usize, order: Ordering) -> u64 {
        self.words64[offset / 8].load(order)
    }
    unsafe fn store_u64(&self, offset: usize, value: u64, order: Ordering) {
        self.words64[offset / 8].store(value, order);
    }
    unsafe fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        self.words32[offset / 4].load(order)
    }
    unsafe fn store_u32(&self, offset: usize, value: u32, order: Ordering) {
        self.words32[offset / 4].store(value, order);
    }
    fn fence(&self, order: Ordering) {
        loom::sync::atomic::fence(order);
    }
    unsafe fn bytes_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        for granule in &self.granules[offset / 16..(offset + len).div_ceil(16)] {
            granule.with_mut(|_| ());
        }
        // SAFETY: exclusive per the caller (and checked by the granule accesses above).
        unsafe { &mut (&mut *self.bytes.get())[offset..offset + len] }
    }
    unsafe fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        for granule in &self.granules[offset / 16..(offset + len).div_ceil(16)] {
            granule.with(|_| ());
        }
        // SAFETY: committed and not written until released, per the caller.
        unsafe { &(&*self.bytes.get())[offset..offset + len] }
    }
    unsafe fn wait_u32(&self, offset: usize, expected: u32, _timeout: Duration) {
        // No timeout in the model: a missed wake-up must show as a deadlock.
        let guard = self.futex.lock().unwrap();
        if self.words32[offset / 4].load(Ordering::SeqCst) != expected {
            return;
        }
        drop(self.woken.wait(guard).unwrap());
    }
    unsafe fn wake_u32(&self, _offset: usize) {
        let _guard = self.futex.lock().unwrap();
        self.woken.notify_all();
    }
    fn spin_hint(&self) {
        loom::thread::yield_now();
    }
    fn yield_now(&self) {
        loom::thread::yield_now();
    }
}

/// Park at once: spinning only multiplies the interleavings without testing more protocol.
const PARK_AT_ONCE: WaitStrategy = WaitStrategy {
    spins: 0,
    yields: 0,
    park: Duration::from_secs(3600),
};

const CAPACITY: usize = 1024;

fn far() -> Duration {
    Duration::from_secs(3600)
}

fn model(preemptions: usize, body: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder.check(body);
}

/// Records of `len` bytes whose content is their index, pushed one per flush, then closed;
/// the consumer parks whenever the ring is empty and must receive every record, in order.
fn deliver_all(records: u8, len: usize) {
    let memory = Arc::new(ModelMemory::new(ring_memory_len(CAPACITY)));
    init_ring(&*memory, CAPACITY, 0x77).unwrap();
    let mut producer = Producer::attach(Arc::clone(&memory), PARK_AT_ONCE).unwrap();
    let mut consumer = Consumer::attach(memory, PARK_AT_ONCE).unwrap();
    let writer = loom::thread::spawn(move || {
        for i in 0..records {
            producer.push(&vec![i; len], far()).unwrap();
            producer.flush();
        }
        producer.close();
    });
    let mut next = 0u8;
    loop {
        let read = consumer
            .poll(usize::MAX, |record| {
                assert!(
                    record.body.iter().all(|b| *b == next),
                    "record {next} corrupted"
                );
                assert_eq!(record.body.len(), len);
                next += 1;
                Ok::<_, ()>(())
            })
            .unwrap();
        if read == 0 {
            match consumer.wait(far()).unwrap() {
                Readiness::Closed => break,
                Readiness::Ready => {}
                Readiness::TimedOut => panic!("model waits have no timeout"),
            }
        }
    }
    assert_eq!(next, records, "records lost");
    writer.join().unwrap();
}

/// RING-02: no lost record and no lost wake-up for a consumer that parks on an empty ring.
#[test]
fn ring_02_no_lost_record_or_wakeup_consumer_parks() {
    model(2, || deliver_all(3, 40));
}

/// RING-02: the same across a wrap-around (bodies of a quarter ring force a padding record).
#[test]
fn ring_02_no_lost_record_across_wraparound() {
    model(1, || deliver_all(5, 200));
}

/// RING-02: backpressure: the producer parks on a full ring and the consumer's release wakes
/// it; nothing is lost and nobody sleeps forever.
#[test]
fn ring_02_no_lost_wakeup_for_a_producer_on_a_full_ring() {
    model(1, || {
        let memory = Arc::new(ModelMemory::new(ring_memory_len(CAPACITY)));
        init_ring(&*memory, CAPACITY, 0x99).unwrap();
        let mut producer = Producer::attach(Arc::clone(&memory), PARK_AT_ONCE).unwrap();
        let mut consumer = Consumer::attach(memory, PARK_AT_ONCE).unwrap();
        // 6 records of 224 bytes: more than the 1024-byte ring holds at once.
        let writer = loom::thread::spawn(move || {
            for i in 0..6u8 {
                producer.push(&[i; 200], far()).unwrap();
            }
            producer.close();
        });
        let mut next = 0u8;
        loop {
            let read = consumer
                .poll(1, |record| {
                    assert_eq!(record.body[0], next);
                    next += 1;
                    Ok::<_, ()>(())
                })
                .unwrap();
            if read == 0 && consumer.wait(far()).unwrap() == Readiness::Closed {
                break;
            }
        }
        assert_eq!(next, 6);
        writer.join().unwrap();
    });
}
