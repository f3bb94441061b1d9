//! Waiting for a ring: a bounded spin, then yields, then a futex park (an eventcount).
//!
//! `runner_profile` picks the budget: `latency` spins longest (the waiter keeps its core),
//! `balanced` spins briefly then parks, `efficiency` parks almost at once. Every profile ends in
//! a park: on a 2-core machine running five processes, a waiter that never sleeps starves the
//! process it waits for.
//!
//! The park is an eventcount on a 32-bit flag in the ring's waiters line (see Vyukov's
//! eventcount, and the "announce, re-check, sleep" pattern of futex-based condition variables):
//! the waiter stores 1 (announce), issues a SeqCst fence, re-checks its condition, and only then
//! sleeps with `FUTEX_WAIT(flag, 1)`. The other side, after publishing, fences (SeqCst) and
//! issues `FUTEX_WAKE` **only** when it reads the flag as 1, clearing it first. The two fences
//! make it impossible for both sides to miss each other (store-buffering is forbidden with
//! SeqCst fences), so no wake-up is lost, and an idle pipeline makes no system calls.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::memory::RingMemory;

/// How long to spin and yield before parking, and how long one park lasts at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitStrategy {
    /// Busy-wait iterations (`spin_loop` hint each).
    pub spins: u32,
    /// `sched_yield` iterations after the spins.
    pub yields: u32,
    /// Longest single futex sleep; the waiter then re-checks its condition and deadline.
    pub park: Duration,
}

impl WaitStrategy {
    /// Spin long (tens of microseconds), yield, then park.
    pub const LATENCY: Self = Self {
        spins: 2_000,
        yields: 200,
        park: Duration::from_millis(20),
    };
    /// Spin briefly (about a microsecond), yield a few times, then park.
    pub const BALANCED: Self = Self {
        spins: 64,
        yields: 2,
        park: Duration::from_millis(50),
    };
    /// Park almost at once.
    pub const EFFICIENCY: Self = Self {
        spins: 16,
        yields: 0,
        park: Duration::from_millis(100),
    };
}

impl Default for WaitStrategy {
    fn default() -> Self {
        Self::BALANCED
    }
}

/// Waits until `ready` returns true or `timeout` passes; `flag` is the waiter's futex word.
/// The clock is read only once the waiter reaches the park phase, so short waits cost no
/// system call. Returns whether the condition became true.
///
/// # Safety
///
/// `flag` is a 4-aligned offset of a 32-bit word inside `memory` that only this waiter sets
/// and only its peer clears (the ring's waiters line).
pub(crate) unsafe fn wait_until<M: RingMemory, E>(
    memory: &M,
    flag: usize,
    strategy: &WaitStrategy,
    timeout: Duration,
    mut ready: impl FnMut() -> Result<bool, E>,
) -> Result<bool, E> {
    for _ in 0..strategy.spins {
        if ready()? {
            return Ok(true);
        }
        memory.spin_hint();
    }
    for _ in 0..strategy.yields {
        if ready()? {
            return Ok(true);
        }
        memory.yield_now();
    }
    let deadline = Instant::now() + timeout;
    loop {
        // Announce, then re-check: SYNC POINT "park" pairs with the peer's SeqCst fence before
        // it reads the flag (see the module doc).
        // SAFETY: `flag` is a valid word offset per this function's contract.
        unsafe { memory.store_u32(flag, 1, Ordering::Relaxed) };
        memory.fence(Ordering::SeqCst);
        if ready()? {
            // SAFETY: as above.
            unsafe { memory.store_u32(flag, 0, Ordering::Relaxed) };
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            // SAFETY: as above.
            unsafe { memory.store_u32(flag, 0, Ordering::Relaxed) };
            return Ok(false);
        }
        let sleep = strategy.park.min(deadline - now);
        // SAFETY: as above. Returns at once if the peer already cleared the flag.
        unsafe { memory.wait_u32(flag, 1, sleep) };
        // SAFETY: as above. Clears our announcement whether we were woken or timed out.
        unsafe { memory.store_u32(flag, 0, Ordering::Relaxed) };
        if ready()? {
            return Ok(true);
        }
    }
}

/// The peer side: after publishing, wakes the waiter parked on `flag`, if any.
///
/// # Safety
///
/// As for [`wait_until`].
pub(crate) unsafe fn wake_if_waiting<M: RingMemory>(memory: &M, flag: usize) -> bool {
    // SYNC POINT "park": this fence orders our preceding publication before the flag read.
    memory.fence(Ordering::SeqCst);
    // SAFETY: `flag` is valid per this function's contract.
    if unsafe { memory.load_u32(flag, Ordering::Relaxed) } == 0 {
        return false;
    }
    // SAFETY: as above. Cleared before waking so that a waiter that has not yet called
    // FUTEX_WAIT returns from it at once.
    unsafe {
        memory.store_u32(flag, 0, Ordering::Relaxed);
        memory.wake_u32(flag);
    }
    true
}
