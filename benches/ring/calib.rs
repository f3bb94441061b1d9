//! Calibration between two processes: a cache-line ping-pong (the "hop", the floor of any
//! cross-process handoff on this machine) and a futex ping-pong (the floor of a wake-up).

use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use stream_kernel::data::Segment;
use stream_kernel::data::memory::{futex_wait, futex_wake};

use crate::common::{spawn_child, thread_cpu};

/// Two words 128 bytes apart in one shared segment.
pub struct Calib {
    segment: Segment,
    child: Child,
}

const CALIB_A: usize = 0;
const CALIB_B: usize = 128;

pub fn calib_start(role: &str) -> Calib {
    let segment = Segment::create("bench-calib", 4096).expect("segment");
    let child = spawn_child(role, &segment.fd().to_string(), &[segment.fd()]);
    Calib { segment, child }
}

impl Calib {
    fn a(&self) -> &AtomicU64 {
        // SAFETY: offset 0 of a live, page-aligned 4 KiB mapping; only accessed atomically.
        unsafe { AtomicU64::from_ptr(self.segment.as_ptr().add(CALIB_A) as *mut u64) }
    }
    fn b(&self) -> &AtomicU64 {
        // SAFETY: offset 128 of the same mapping, as above.
        unsafe { AtomicU64::from_ptr(self.segment.as_ptr().add(CALIB_B) as *mut u64) }
    }
    pub fn stop(mut self) {
        self.a().store(u64::MAX, Ordering::Release);
        futex_wake_word(self.a());
        let _ = self.child.wait();
    }
}

fn futex_wake_word(word: &AtomicU64) {
    // SAFETY: the low half of a live, aligned 8-byte word is a valid futex word (little endian).
    unsafe { futex_wake(word.as_ptr().cast::<u32>()) };
}

fn futex_wait_word(word: &AtomicU64, expected: u64) {
    // SAFETY: as in `futex_wake_word`; the low half is compared with `expected`'s low half.
    unsafe {
        futex_wait(
            word.as_ptr().cast::<u32>(),
            expected as u32,
            Duration::from_millis(100),
        )
    };
}

/// `iters` cache-line round trips, and the share of their wall time this thread was on a CPU
/// (a spinning thread that is not is sharing its core: the machine is oversubscribed).
pub fn calib_spin_rtt(calib: &Calib, iters: u64) -> (Duration, f64) {
    let base = calib.b().load(Ordering::Acquire);
    let cpu = thread_cpu();
    let start = Instant::now();
    for i in 1..=iters {
        calib.a().store(base + i, Ordering::Release);
        while calib.b().load(Ordering::Acquire) != base + i {
            std::hint::spin_loop();
        }
    }
    let wall = start.elapsed();
    let share = (thread_cpu() - cpu).as_secs_f64() / wall.as_secs_f64().max(1e-9);
    (wall, share)
}

/// One futex round trip: publish `value`, wake the child, sleep until it echoes `value`.
fn futex_round_trip(calib: &Calib, value: u64) {
    calib.a().store(value, Ordering::Release);
    futex_wake_word(calib.a());
    loop {
        let seen = calib.b().load(Ordering::Acquire);
        if seen == value {
            return;
        }
        futex_wait_word(calib.b(), seen);
    }
}

pub fn calib_futex_rtt(calib: &Calib, iters: u64) -> Duration {
    let base = calib.b().load(Ordering::Acquire);
    let start = Instant::now();
    for i in 1..=iters {
        futex_round_trip(calib, base + i);
    }
    start.elapsed()
}

/// Futex round trips that each start after an idle gap (not timed), like a parked consumer's.
pub fn calib_futex_rtt_after_gap(calib: &Calib, iters: u64) -> Duration {
    let base = calib.b().load(Ordering::Acquire);
    let mut total = Duration::ZERO;
    for i in 1..=iters {
        std::thread::sleep(WAKE_GAP);
        let start = Instant::now();
        futex_round_trip(calib, base + i);
        total += start.elapsed();
    }
    total
}

/// Idle time before each wake-up measurement: long enough for every waiter to park.
pub const WAKE_GAP: Duration = Duration::from_millis(2);

pub fn child_calib(arg: &str, futex: bool) {
    let fd = arg.parse().expect("fd");
    // SAFETY: the parent passed this fd to this child alone.
    let segment = unsafe { Segment::open_inherited(fd, 4096) }.expect("segment");
    // SAFETY: offsets 0 and 128 of the live mapping, accessed atomically only.
    let (a, b) = unsafe {
        (
            AtomicU64::from_ptr(segment.as_ptr().add(CALIB_A) as *mut u64),
            AtomicU64::from_ptr(segment.as_ptr().add(CALIB_B) as *mut u64),
        )
    };
    let mut last = 0;
    loop {
        let seen = a.load(Ordering::Acquire);
        if seen == u64::MAX {
            return;
        }
        if seen != last {
            last = seen;
            b.store(seen, Ordering::Release);
            if futex {
                futex_wake_word(b);
            }
        } else if futex {
            futex_wait_word(a, seen);
        } else {
            std::hint::spin_loop();
        }
    }
}
