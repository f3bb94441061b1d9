//! The ring contract (docs/architecture.md RING-01, -03, -04, -05, max record size): in-order delivery
//! across wrap-around, two real processes over a memfd segment, typed errors for corrupted
//! shared memory, backpressure, and parking idle ends.
//!
//! This test binary is also its own child process: when `SK_RING_ROLE` is set, `main` runs that
//! role (for example the producer of RING-03) instead of the tests.

#[path = "support/checks.rs"]
mod checks;

use std::collections::VecDeque;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use checks::check;
use libtest_mimic::{Arguments, Failed, Trial};
use proptest::prelude::*;
use stream_kernel::data::ring::fault_offsets;
use stream_kernel::data::{
    Consumer, EnvelopeHeader, EnvelopeKind, HeapMemory, PollError, Producer, PushError, Readiness,
    RingCorrupted, Segment, WaitStrategy, clear_cloexec, init_ring, push_envelope, ring_memory_len,
};

const ROLE: &str = "SK_RING_ROLE";
const FD: &str = "SK_RING_FD";
const LEN: &str = "SK_RING_LEN";
const RECORDS: &str = "SK_RING_RECORDS";

/// RING-03 volume.
const CROSS_PROCESS_RECORDS: u64 = 10_000_000;

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        std::process::exit(run_child(&role));
    }
    let args = Arguments::from_args();
    let tests = vec![
        Trial::test(
            "ring_01_proptest_random_sizes_and_batches_across_wraps",
            ring_01,
        ),
        Trial::test("ring_03_ten_million_records_between_two_processes", ring_03),
        Trial::test("ring_04_corrupted_tail_is_a_typed_error", ring_04_tail),
        Trial::test("ring_04_corrupted_head_is_a_typed_error", ring_04_head),
        Trial::test(
            "ring_04_plausible_unchecked_head_never_frees_unread_space",
            ring_04_plausible_head,
        ),
        Trial::test(
            "ring_04_unchecked_watermark_is_ignored_until_repaired",
            ring_04_watermark,
        ),
        Trial::test(
            "ring_04_corrupted_length_and_kind_are_typed_errors",
            ring_04_record,
        ),
        Trial::test("ring_04_corrupted_header_refuses_to_attach", ring_04_header),
        Trial::test("ring_04_garbage_everywhere_never_panics", ring_04_garbage),
        Trial::test(
            "ring_05_blocked_producer_is_released_when_consumer_drains",
            ring_05_backpressure,
        ),
        Trial::test(
            "ring_05_idle_consumer_parks_under_every_profile",
            ring_05_idle_park,
        ),
        Trial::test(
            "max_record_size_is_refused_before_writing",
            max_record_refused,
        ),
    ];
    libtest_mimic::run(&args, tests).exit();
}

fn heap_ring(
    capacity: usize,
    wait: WaitStrategy,
) -> (Producer<Arc<HeapMemory>>, Consumer<Arc<HeapMemory>>) {
    let memory = Arc::new(HeapMemory::new(ring_memory_len(capacity)));
    init_ring(&*memory, capacity, 0xfeed_beef).expect("init");
    (
        Producer::attach(Arc::clone(&memory), wait).expect("producer"),
        Consumer::attach(memory, wait).expect("consumer"),
    )
}

fn far() -> Duration {
    Duration::from_secs(120)
}

/// The body of record `i` in generated sequences: its index, then a length-varying pattern.
fn body_of(i: u64, len: usize) -> Vec<u8> {
    let mut body = i.to_le_bytes().to_vec();
    body.extend((0..len.saturating_sub(8)).map(|k| (i as u8).wrapping_add(k as u8)));
    body.truncate(len.max(8));
    body
}

/// RING-01: random record sizes and batch sizes, single-threaded interleaving, across many
/// wrap-arounds: the consumer sees exactly the producer's sequence.
fn ring_01() -> Result<(), Failed> {
    let config = ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let strategy = (
        prop_oneof![Just(1024usize), Just(2048), Just(4096)],
        proptest::collection::vec((0usize..300, 1usize..12, any::<bool>()), 1..400),
    );
    runner
        .run(&strategy, |(capacity, steps)| {
            let (mut producer, mut consumer) = heap_ring(capacity, WaitStrategy::EFFICIENCY);
            let max = producer.max_body();
            let mut expected: VecDeque<Vec<u8>> = VecDeque::new();
            let mut next = 0u64;
            for (size, batch, in_place) in steps {
                let len = 8 + size.min(max - 8);
                let body = body_of(next, len);
                let written = if in_place {
                    // In-place encode of exactly `len` bytes; a zero deadline means "only if
                    // there is room now" (a push that would block times out, writing nothing).
                    match producer.push_with(
                        |slot| {
                            slot.get_mut(..body.len())?.copy_from_slice(&body);
                            Some(body.len())
                        },
                        Duration::ZERO,
                    ) {
                        Ok(_) => true,
                        Err(PushError::TimedOut) => false,
                        Err(e) => return Err(TestCaseError::fail(e.to_string())),
                    }
                } else {
                    producer.try_push(&body).expect("no corruption")
                };
                if written {
                    expected.push_back(body);
                    next += 1;
                }
                producer.flush();
                consumer
                    .poll(batch, |record| {
                        let want = expected.pop_front().expect("record the producer wrote");
                        prop_assert_eq!(record.body, &want[..]);
                        Ok(())
                    })
                    .map_err(|e| match e {
                        PollError::Handler(e) => e,
                        PollError::Corrupted(c) => TestCaseError::fail(c.to_string()),
                    })?;
            }
            // Drain the rest.
            while !expected.is_empty() {
                let got = consumer
                    .poll(usize::MAX, |record| {
                        let want = expected.pop_front().expect("record the producer wrote");
                        prop_assert_eq!(record.body, &want[..]);
                        Ok(())
                    })
                    .map_err(|e| match e {
                        PollError::Handler(e) => e,
                        PollError::Corrupted(c) => TestCaseError::fail(c.to_string()),
                    })?;
                prop_assert!(got > 0, "records missing: {}", expected.len());
            }
            Ok(())
        })
        .map_err(|e| Failed::from(e.to_string()))
}

fn run_child(role: &str) -> i32 {
    match role {
        "producer" => match child_producer() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("child producer failed: {e}");
                1
            }
        },
        other => {
            eprintln!("unknown role {other}");
            2
        }
    }
}

fn env_usize(name: &str) -> Result<usize, String> {
    std::env::var(name)
        .map_err(|_| format!("{name} not set"))?
        .parse()
        .map_err(|e| format!("{name}: {e}"))
}

/// RING-03 child: attaches to the inherited segment and writes the numbered records.
fn child_producer() -> Result<(), String> {
    let fd = env_usize(FD)? as i32;
    let len = env_usize(LEN)?;
    let records = env_usize(RECORDS)? as u64;
    // SAFETY: the parent passed this fd to us alone (cleared close-on-exec for this child).
    let segment = unsafe { Segment::open_inherited(fd, len) }.map_err(|e| e.to_string())?;
    let mut producer =
        Producer::attach(segment, WaitStrategy::BALANCED).map_err(|e| e.to_string())?;
    for i in 0..records {
        let payload_len = 8 + (i % 57) as usize;
        let mut header = EnvelopeHeader::data(i, 7);
        header.trace_id = [(i % 251) as u8; 16];
        header.reply_to = i ^ 0xabcd;
        push_envelope(
            &mut producer,
            &header,
            |slot| {
                let out = slot.get_mut(..payload_len)?;
                out[..8].copy_from_slice(&i.to_le_bytes());
                for (k, b) in out[8..].iter_mut().enumerate() {
                    *b = (i as u8).wrapping_mul(31).wrapping_add(k as u8);
                }
                Some(payload_len)
            },
            far(),
        )
        .map_err(|e| e.to_string())?;
        if i % 64 == 63 {
            producer.flush();
        }
    }
    producer.close();
    Ok(())
}

/// RING-03: ten million envelopes from a child process through a memfd segment, every record's
/// header and payload checked, in order.
fn ring_03() -> Result<(), Failed> {
    let capacity = 1 << 20;
    let len = ring_memory_len(capacity);
    let segment = Segment::create("ring-03", len).map_err(|e| e.to_string())?;
    init_ring(&segment, capacity, 0x0123_4567_89ab_cdef).map_err(|e| e.to_string())?;
    let fd = segment.inheritable_fd();
    let mut child = {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .env(ROLE, "producer")
            .env(FD, fd.to_string())
            .env(LEN, len.to_string())
            .env(RECORDS, CROSS_PROCESS_RECORDS.to_string());
        // SAFETY: `clear_cloexec` only calls fcntl, which is async-signal-safe.
        unsafe { command.pre_exec(move || clear_cloexec(fd)) };
        command.spawn()?
    };
    let mut consumer =
        Consumer::attach(segment, WaitStrategy::BALANCED).map_err(|e| e.to_string())?;
    let mut next = 0u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let processed = consumer
            .poll(1024, |record| -> Result<(), String> {
                let (header, payload) =
                    EnvelopeHeader::read(record.body).map_err(|e| e.to_string())?;
                let i = next;
                if header.seq != i
                    || header.kind != EnvelopeKind::Data
                    || header.target != 7
                    || header.reply_to != i ^ 0xabcd
                    || header.trace_id != [(i % 251) as u8; 16]
                {
                    return Err(format!("record {i}: header {header:?}"));
                }
                let payload_len = 8 + (i % 57) as usize;
                if payload.len() != payload_len || payload[..8] != i.to_le_bytes() {
                    return Err(format!("record {i}: payload {payload:?}"));
                }
                for (k, b) in payload[8..].iter().enumerate() {
                    if *b != (i as u8).wrapping_mul(31).wrapping_add(k as u8) {
                        return Err(format!("record {i}: payload byte {k}"));
                    }
                }
                next += 1;
                Ok(())
            })
            .map_err(|e| match e {
                PollError::Handler(e) => e,
                PollError::Corrupted(c) => c.to_string(),
            })?;
        if processed == 0 {
            match consumer.wait(Duration::from_secs(1))? {
                Readiness::Closed => break,
                Readiness::Ready => {}
                Readiness::TimedOut if Instant::now() > deadline => {
                    let _ = child.kill();
                    return Err(format!("timed out after {next} records").into());
                }
                Readiness::TimedOut => {}
            }
        }
    }
    let status = child.wait()?;
    check(status.success(), || {
        format!("producer exited with {status}")
    })?;
    check(next == CROSS_PROCESS_RECORDS, || {
        format!("received {next} records")
    })
}

/// A ring over a real memfd segment, with the segment kept for fault injection.
type SegmentRing = (Arc<Segment>, Producer<Arc<Segment>>, Consumer<Arc<Segment>>);

fn segment_ring(capacity: usize) -> Result<SegmentRing, Failed> {
    let segment =
        Arc::new(Segment::create("ring-04", ring_memory_len(capacity)).map_err(|e| e.to_string())?);
    init_ring(&*segment, capacity, 42).map_err(|e| e.to_string())?;
    let producer = Producer::attach(Arc::clone(&segment), WaitStrategy::EFFICIENCY)?;
    let consumer = Consumer::attach(Arc::clone(&segment), WaitStrategy::EFFICIENCY)?;
    Ok((segment, producer, consumer))
}

fn is_corrupted<T: std::fmt::Debug>(result: Result<T, RingCorrupted>) -> Result<(), Failed> {
    match result {
        Err(_) => Ok(()),
        Ok(v) => Err(format!("expected RingCorrupted, got {v:?}").into()),
    }
}

/// RING-04: a tail beyond `head + capacity` (or behind head) is reported by the consumer.
fn ring_04_tail() -> Result<(), Failed> {
    for garbage in [u64::MAX, 1 << 40, 5] {
        let (segment, mut producer, mut consumer) = segment_ring(4096)?;
        producer.push(&[1; 32], far())?;
        producer.flush();
        consumer
            .poll(8, |_| Ok::<_, ()>(()))
            .map_err(|e| format!("{e}"))?;
        // SAFETY: deliberate fault injection on a ring no other thread uses.
        unsafe { segment.write_at(fault_offsets::TAIL, &garbage.to_le_bytes()) };
        // The variant names the tail, and the garbage it read.
        for result in [
            consumer.has_record().map(drop),
            consumer.occupancy().map(drop),
        ] {
            match result {
                Err(RingCorrupted::Tail { tail, .. }) if tail == garbage => {}
                other => {
                    return Err(format!(
                        "tail {garbage}: expected a corrupted tail, got {other:?}"
                    )
                    .into());
                }
            }
        }
    }
    Ok(())
}

/// RING-04: a head outside `[tail - capacity, tail]` is reported by the producer.
fn ring_04_head() -> Result<(), Failed> {
    for garbage in [u64::MAX, 1 << 40] {
        let (segment, mut producer, _consumer) = segment_ring(4096)?;
        // SAFETY: deliberate fault injection on a ring no other thread uses.
        unsafe { segment.write_at(fault_offsets::HEAD, &garbage.to_le_bytes()) };
        // Fill until the producer must look at the head.
        let mut outcome = Ok(true);
        for _ in 0..200 {
            outcome = producer.try_push(&[2; 100]);
            if outcome.is_err() {
                break;
            }
        }
        match outcome {
            Err(PushError::Corrupted(RingCorrupted::Head { .. })) => {}
            other => return Err(format!("expected a corrupted head, got {other:?}").into()),
        }
    }
    Ok(())
}

/// RING-04: a head moved forward by a plausible amount (a record boundary the producer wrote,
/// inside the ring) but without its check word is not trusted: the producer never overwrites
/// records the consumer has not read, and the consumer's next release repairs the word.
fn ring_04_plausible_head() -> Result<(), Failed> {
    let (segment, mut producer, mut consumer) = segment_ring(4096)?;
    // Fill the ring.
    let mut written = 0u32;
    while producer.try_push(&written.to_le_bytes().repeat(16))? {
        written += 1;
    }
    producer.flush();
    // Pretend the consumer read half of it: a head 2 KiB on, a record boundary in the ring.
    // SAFETY: a fixed, aligned control word of this ring.
    let head = unsafe {
        stream_kernel::data::RingMemory::load_u64(&*segment, fault_offsets::HEAD, Ordering::Relaxed)
    };
    let forged = head + 2048;
    // SAFETY: deliberate fault injection on a ring no other thread uses.
    unsafe { segment.write_at(fault_offsets::HEAD, &forged.to_le_bytes()) };
    check(!producer.try_push(&[9; 64])?, || {
        "the producer trusted a head without its check and overwrote unread records".into()
    })?;
    // Every record is still there, in order.
    let mut next = 0u32;
    consumer
        .poll(usize::MAX, |r| {
            let value = u32::from_le_bytes([r.body[0], r.body[1], r.body[2], r.body[3]]);
            if value == next {
                next += 1;
                Ok(())
            } else {
                Err(format!("record {value} where {next} was due"))
            }
        })
        .map_err(|e| format!("{e:?}"))?;
    check(next == written, || format!("read {next} of {written}"))?;
    // The consumer's release repaired the word: the producer has room again.
    check(producer.try_push(&[9; 64])?, || {
        "no room after the release".into()
    })
}

/// RING-04: a watermark word without its check is ignored (the last verified watermark
/// stands) until the producer publishes the next one.
fn ring_04_watermark() -> Result<(), Failed> {
    let (segment, mut producer, mut consumer) = segment_ring(4096)?;
    producer.publish_watermark(10);
    check(consumer.watermark() == 10, || "verified watermark".into())?;
    // SAFETY: deliberate fault injection on a ring no other thread uses.
    unsafe { segment.write_at(fault_offsets::WATERMARK, &u64::MAX.to_le_bytes()) };
    check(consumer.watermark() == 10, || {
        "a watermark without its check was trusted".into()
    })?;
    producer.publish_watermark(11);
    check(consumer.watermark() == 11, || "repaired watermark".into())
}

/// RING-04: an overlong length, a bad kind or a broken stamp in a record header are typed
/// errors; nothing is read out of bounds.
fn ring_04_record() -> Result<(), Failed> {
    let cases: [(usize, Vec<u8>); 4] = [
        (8, u32::MAX.to_le_bytes().to_vec()),        // length
        (8, 5000u32.to_le_bytes().to_vec()),         // length past the end of the ring
        (12, 0xdead_beefu32.to_le_bytes().to_vec()), // kind
        (0, 0x1234u64.to_le_bytes().to_vec()),       // stamp, while the tail says committed
    ];
    for (field, bytes) in cases {
        let (segment, mut producer, mut consumer) = segment_ring(4096)?;
        producer.push(&[3; 48], far())?;
        producer.flush();
        // SAFETY: deliberate fault injection on a ring no other thread uses.
        unsafe { segment.write_at(fault_offsets::FIRST_RECORD + field, &bytes) };
        // A bad length or kind fails the poll itself; a broken stamp looks "not committed yet"
        // to a quick poll and is caught by the thorough check a consumer runs before it parks.
        match consumer.poll(8, |_| Ok::<_, ()>(())) {
            Err(PollError::Corrupted(RingCorrupted::Record { .. })) => {}
            Ok(0) => match consumer.has_record() {
                Err(RingCorrupted::Record { .. }) => {}
                other => {
                    return Err(format!(
                        "field {field}: expected a corrupted stamp, got {other:?}"
                    )
                    .into());
                }
            },
            other => {
                return Err(
                    format!("field {field}: expected a corrupted record, got {other:?}").into(),
                );
            }
        }
        match consumer.wait(Duration::from_secs(5)) {
            Err(RingCorrupted::Record { .. }) => {}
            other => return Err(format!("field {field}: waiting must fail, got {other:?}").into()),
        }
    }
    Ok(())
}

/// RING-04: a ring whose header is garbage cannot be attached.
fn ring_04_header() -> Result<(), Failed> {
    let (segment, _producer, _consumer) = segment_ring(4096)?;
    // SAFETY: deliberate fault injection.
    unsafe { segment.write_at(fault_offsets::MAGIC, &[0xff; 8]) };
    is_corrupted(Consumer::attach(Arc::clone(&segment), WaitStrategy::EFFICIENCY).map(drop))?;
    is_corrupted(Producer::attach(segment, WaitStrategy::EFFICIENCY).map(drop))
}

/// RING-04: random garbage over the whole control block and data area, many times: every
/// operation returns (records or typed errors), none panics.
fn ring_04_garbage() -> Result<(), Failed> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..500 {
        let (segment, mut producer, mut consumer) = segment_ring(1024)?;
        for k in 0..(round % 9) {
            let _ = producer.try_push(&vec![k as u8; 40 + k * 13]);
        }
        producer.flush();
        let writes = 1 + next() % 8;
        for _ in 0..writes {
            let offset = (next() as usize) % (segment.len() - 8);
            // SAFETY: deliberate fault injection, in bounds (offset + 8 <= len).
            unsafe { segment.write_at(offset, &next().to_le_bytes()) };
        }
        for _ in 0..4 {
            let _ = consumer.poll(16, |r| {
                std::hint::black_box(r.body.len());
                Ok::<_, ()>(())
            });
            let _ = producer.try_push(&[9; 64]);
            producer.flush();
            let _ = consumer.occupancy();
        }
    }
    Ok(())
}

/// RING-05: a producer blocked on a full ring stays blocked until the consumer drains, then
/// completes.
fn ring_05_backpressure() -> Result<(), Failed> {
    let (mut producer, mut consumer) = heap_ring(4096, WaitStrategy::BALANCED);
    while producer.try_push(&[5; 200])? {}
    let draining = Arc::new(AtomicBool::new(false));
    let draining_seen = Arc::clone(&draining);
    let blocked = std::thread::spawn(move || -> Result<bool, PushError> {
        producer.push(&[6; 200], Duration::from_secs(60))?;
        producer.flush();
        // The push only returned once the consumer had started draining.
        Ok(draining_seen.load(Ordering::SeqCst))
    });
    std::thread::sleep(Duration::from_millis(300));
    check(!blocked.is_finished(), || {
        "push on a full ring returned without room".into()
    })?;
    draining.store(true, Ordering::SeqCst);
    let mut bodies = 0;
    let finished_after_drain = loop {
        bodies += consumer
            .poll(4, |_| Ok::<_, ()>(()))
            .map_err(|e| format!("{e}"))?;
        if blocked.is_finished() {
            break blocked.join().map_err(|_| "producer thread panicked")??;
        }
        consumer.wait(Duration::from_millis(100))?;
    };
    check(finished_after_drain, || {
        "producer released before the drain".into()
    })?;
    check(bodies > 0, || "nothing drained".into())
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// RING-05: a consumer waiting one second on an empty ring parks: it uses under 50 ms of CPU,
/// whatever its profile; and a record written meanwhile wakes it.
fn ring_05_idle_park() -> Result<(), Failed> {
    for profile in [
        WaitStrategy::LATENCY,
        WaitStrategy::BALANCED,
        WaitStrategy::EFFICIENCY,
    ] {
        let (mut producer, mut consumer) = heap_ring(4096, profile);
        let cpu_before = thread_cpu_time();
        let outcome = consumer.wait(Duration::from_secs(1))?;
        let cpu = thread_cpu_time() - cpu_before;
        check(outcome == Readiness::TimedOut, || format!("{outcome:?}"))?;
        check(cpu < Duration::from_millis(50), || {
            format!("{profile:?}: idle wait used {cpu:?} of CPU")
        })?;

        let waiter = std::thread::spawn(move || {
            let outcome = consumer.wait(Duration::from_secs(60));
            (outcome, consumer.has_record())
        });
        std::thread::sleep(Duration::from_millis(200));
        producer.push(&[1; 16], far())?;
        producer.flush();
        let (outcome, has) = waiter.join().map_err(|_| "waiter panicked")?;
        check(outcome == Ok(Readiness::Ready) && has == Ok(true), || {
            format!("{outcome:?} {has:?}")
        })?;
    }
    Ok(())
}

/// A record larger than the maximum record size is refused before anything is written, both
/// for known sizes and for in-place encodes that overflow the largest slot.
fn max_record_refused() -> Result<(), Failed> {
    let (mut producer, mut consumer) = heap_ring(4096, WaitStrategy::EFFICIENCY);
    let max = producer.max_body();
    let refused = producer.push(&vec![1; max + 1], far());
    check(
        refused == Err(PushError::TooLarge { len: max + 1, max }),
        || format!("{refused:?}"),
    )?;
    let refused = producer.push_with(|_slot| None, far());
    check(matches!(refused, Err(PushError::TooLarge { .. })), || {
        format!("{refused:?}")
    })?;
    producer.flush();
    check(!consumer.has_record()?, || {
        "a refused record became visible".into()
    })?;
    check(producer.records() == 0, || {
        "a refused record was counted".into()
    })?;
    producer.push(&vec![2; max], far())?;
    producer.flush();
    let got = consumer.poll(4, |r| {
        if r.body.len() == max {
            Ok(())
        } else {
            Err(r.body.len())
        }
    });
    check(matches!(got, Ok(1)), || format!("{got:?}"))
}
