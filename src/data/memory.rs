//! The memory a ring lives in, behind one trait so the ring's protocol can be model-checked.
//!
//! [`RingMemory`] is every operation the ring performs on its memory: atomic loads and stores
//! of its control words and commit stamps, fences, byte access to record bodies, futex wait and
//! wake on 32-bit words, and the spin / yield hints of its wait loop. The real implementation is
//! a shared mapping ([`super::segment::Segment`]); [`HeapMemory`] is the same layout on the heap
//! for one-process use and tests; a test-only loom implementation runs the protocol under a
//! model checker (Miri and loom cannot see `MAP_SHARED` memory, so the ring is generic instead).
//!
//! **Offsets are trusted here**: the ring validates every index it reads from shared memory
//! before turning it into an offset, and the `unsafe` methods state what the caller guarantees.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Operations a ring performs on its memory.
///
/// # Safety
///
/// Implementors guarantee that `len()` bytes are valid for the life of the value, that the
/// atomic operations are real atomics on that memory (visible to every other mapping of it),
/// and that `wait_u32` / `wake_u32` implement futex semantics: `wait_u32` returns when the word
/// no longer holds `expected`, after a `wake_u32`, or at the timeout, and never misses a wake
/// issued after the word changed.
pub unsafe trait RingMemory: Send + Sync {
    /// Length of the memory in bytes.
    fn len(&self) -> usize;

    /// True when the memory has no bytes (never for a usable ring).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Atomic load of the 8-byte word at `offset`.
    ///
    /// # Safety
    ///
    /// `offset` is 8-aligned and `offset + 8 <= len()`.
    unsafe fn load_u64(&self, offset: usize, order: Ordering) -> u64;

    /// Atomic store of the 8-byte word at `offset`.
    ///
    /// # Safety
    ///
    /// As for [`RingMemory::load_u64`].
    unsafe fn store_u64(&self, offset: usize, value: u64, order: Ordering);

    /// Atomic load of the 4-byte word at `offset`.
    ///
    /// # Safety
    ///
    /// `offset` is 4-aligned and `offset + 4 <= len()`.
    unsafe fn load_u32(&self, offset: usize, order: Ordering) -> u32;

    /// Atomic store of the 4-byte word at `offset`.
    ///
    /// # Safety
    ///
    /// As for [`RingMemory::load_u32`].
    unsafe fn store_u32(&self, offset: usize, value: u32, order: Ordering);

    /// A memory fence (the model checker needs its own).
    fn fence(&self, order: Ordering) {
        std::sync::atomic::fence(order);
    }

    /// Exclusive view of `len` bytes at `offset`, for a producer writing a claimed slot.
    ///
    /// # Safety
    ///
    /// The range is in bounds, and the ring protocol gives the caller exclusive ownership of
    /// it until it is committed (no other view of it is alive or will be created meanwhile).
    #[allow(clippy::mut_from_ref)]
    unsafe fn bytes_mut(&self, offset: usize, len: usize) -> &mut [u8];

    /// Shared view of `len` bytes at `offset`, for a consumer reading a committed record.
    ///
    /// # Safety
    ///
    /// The range is in bounds and committed, and will not be written until the caller
    /// releases it.
    unsafe fn bytes(&self, offset: usize, len: usize) -> &[u8];

    /// Futex wait: sleeps while the 4-byte word at `offset` holds `expected`, at most `timeout`.
    ///
    /// # Safety
    ///
    /// As for [`RingMemory::load_u32`].
    unsafe fn wait_u32(&self, offset: usize, expected: u32, timeout: Duration);

    /// Futex wake: wakes the waiters of the 4-byte word at `offset`.
    ///
    /// # Safety
    ///
    /// As for [`RingMemory::load_u32`].
    unsafe fn wake_u32(&self, offset: usize);

    /// One step of a spin loop.
    fn spin_hint(&self) {
        std::hint::spin_loop();
    }

    /// Gives up the CPU.
    fn yield_now(&self) {
        std::thread::yield_now();
    }
}

// SAFETY: forwards every operation to the pointee, which upholds the contract.
unsafe impl<M: RingMemory + ?Sized> RingMemory for std::sync::Arc<M> {
    fn len(&self) -> usize {
        (**self).len()
    }
    unsafe fn load_u64(&self, offset: usize, order: Ordering) -> u64 {
        // SAFETY: same preconditions, forwarded.
        unsafe { (**self).load_u64(offset, order) }
    }
    unsafe fn store_u64(&self, offset: usize, value: u64, order: Ordering) {
        // SAFETY: same preconditions, forwarded.
        unsafe { (**self).store_u64(offset, value, order) }
    }
    unsafe fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        // SAFETY: same preconditions, forwarded.
        unsafe { (**self).load_u32(offset, order) }
    }
    unsafe fn store_u32(&self, offset: usize, value: u32, order: Ordering) {
        // SAFETY: same preconditions, forwarded.
        unsafe { (**self).store_u32(offset, value, order) }
    }
    fn fence(&self, order: Ordering) {
        (**self).fence(order);
    }
    unsafe fn bytes_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        // SAFETY: same preconditions, forwarded.
        unsafe { (**self).bytes_mut(offset, len) }
    }
    unsafe fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        // SAFETY: same preconditions, forwarded.
        unsafe { (**self).bytes(offset, len) }
    }
    unsafe fn wait_u32(&self, offset: usize, expected: u32, timeout: Duration) {
        // SAFETY: same preconditions, forwarded.
        unsafe { (**self).wait_u32(offset, expected, timeout) }
    }
    unsafe fn wake_u32(&self, offset: usize) {
        // SAFETY: same preconditions, forwarded.
        unsafe { (**self).wake_u32(offset) }
    }
    fn spin_hint(&self) {
        (**self).spin_hint();
    }
    fn yield_now(&self) {
        (**self).yield_now();
    }
}

/// Futex wait on a word anywhere in memory (shared mappings included: no PRIVATE flag).
///
/// # Safety
///
/// `word` points to a live, 4-aligned `u32` for the duration of the call.
pub unsafe fn futex_wait(word: *const u32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: FUTEX_WAIT reads the word at `word` (live and aligned per the caller) and the
    // timespec on our stack; a spurious return (EINTR, EAGAIN, ETIMEDOUT) is fine for callers,
    // which re-check their condition in a loop.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0,
        );
    }
}

/// Futex wake of every waiter of a word.
///
/// # Safety
///
/// `word` points to a live, 4-aligned `u32`.
pub unsafe fn futex_wake(word: *const u32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key; it is live and aligned per the caller.
    unsafe {
        libc::syscall(libc::SYS_futex, word, libc::FUTEX_WAKE, i32::MAX, 0, 0, 0);
    }
}

/// Ring memory backed by a raw pointer range that outlives it (a mapping, or a heap buffer).
pub(crate) struct RawMemory {
    base: *mut u8,
    len: usize,
}

// SAFETY: the memory is only accessed through atomics and through byte ranges whose
// exclusivity the ring protocol guarantees; the pointer itself may move between threads.
unsafe impl Send for RawMemory {}
// SAFETY: as above; shared access is what the atomics and the protocol are for.
unsafe impl Sync for RawMemory {}

impl RawMemory {
    /// # Safety
    ///
    /// `base` is 128-aligned, valid for reads and writes of `len` bytes for the life of the
    /// value, and only accessed through this value's methods (or other mappings of the same
    /// memory that follow the same protocol).
    pub(crate) unsafe fn new(base: *mut u8, len: usize) -> Self {
        Self { base, len }
    }

    fn word64(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset.is_multiple_of(8) && offset + 8 <= self.len);
        // SAFETY: in bounds and aligned per the trait method's caller; AtomicU64 has the size
        // and alignment of u64, and all access to this word is atomic.
        unsafe { AtomicU64::from_ptr(self.base.add(offset).cast()) }
    }

    fn word32(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset.is_multiple_of(4) && offset + 4 <= self.len);
        // SAFETY: as in `word64`, for a 4-byte word.
        unsafe { AtomicU32::from_ptr(self.base.add(offset).cast()) }
    }
}

// SAFETY: real atomics on the mapped bytes, real futexes on their addresses; bounds and
// alignment are the callers' preconditions, checked in debug builds.
unsafe impl RingMemory for RawMemory {
    fn len(&self) -> usize {
        self.len
    }
    unsafe fn load_u64(&self, offset: usize, order: Ordering) -> u64 {
        self.word64(offset).load(order)
    }
    unsafe fn store_u64(&self, offset: usize, value: u64, order: Ordering) {
        self.word64(offset).store(value, order);
    }
    unsafe fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        self.word32(offset).load(order)
    }
    unsafe fn store_u32(&self, offset: usize, value: u32, order: Ordering) {
        self.word32(offset).store(value, order);
    }
    unsafe fn bytes_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        debug_assert!(offset + len <= self.len);
        // SAFETY: in bounds, and exclusively owned by the caller per the ring protocol.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(offset), len) }
    }
    unsafe fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        debug_assert!(offset + len <= self.len);
        // SAFETY: in bounds, committed and not written until released, per the caller.
        unsafe { std::slice::from_raw_parts(self.base.add(offset), len) }
    }
    unsafe fn wait_u32(&self, offset: usize, expected: u32, timeout: Duration) {
        // SAFETY: the word is in bounds and aligned per the caller, and lives as long as self.
        unsafe { futex_wait(self.word32(offset).as_ptr(), expected, timeout) }
    }
    unsafe fn wake_u32(&self, offset: usize) {
        // SAFETY: as in `wait_u32`.
        unsafe { futex_wake(self.word32(offset).as_ptr()) }
    }
}

/// A ring's memory on the heap, for rings between threads of one process and for tests.
pub struct HeapMemory {
    raw: RawMemory,
    // Owns the storage `raw` points into; 128-byte aligned blocks.
    _storage: Box<[Aligned128]>,
}

#[repr(C, align(128))]
#[derive(Clone, Copy)]
struct Aligned128([u8; 128]);

impl HeapMemory {
    /// Zeroed heap memory of at least `len` bytes (rounded up to 128).
    pub fn new(len: usize) -> Self {
        let blocks = len.div_ceil(128).max(1);
        let mut storage = vec![Aligned128([0; 128]); blocks].into_boxed_slice();
        let base = storage.as_mut_ptr().cast::<u8>();
        // SAFETY: `storage` is 128-aligned, `blocks * 128` bytes long, owned by this value and
        // never moved (a boxed slice's heap buffer stays put), so it outlives `raw`.
        let raw = unsafe { RawMemory::new(base, blocks * 128) };
        Self {
            raw,
            _storage: storage,
        }
    }
}

// SAFETY: forwards to `RawMemory` over storage this value owns.
unsafe impl RingMemory for HeapMemory {
    fn len(&self) -> usize {
        self.raw.len()
    }
    unsafe fn load_u64(&self, offset: usize, order: Ordering) -> u64 {
        // SAFETY: same preconditions, forwarded.
        unsafe { self.raw.load_u64(offset, order) }
    }
    unsafe fn store_u64(&self, offset: usize, value: u64, order: Ordering) {
        // SAFETY: same preconditions, forwarded.
        unsafe { self.raw.store_u64(offset, value, order) }
    }
    unsafe fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        // SAFETY: same preconditions, forwarded.
        unsafe { self.raw.load_u32(offset, order) }
    }
    unsafe fn store_u32(&self, offset: usize, value: u32, order: Ordering) {
        // SAFETY: same preconditions, forwarded.
        unsafe { self.raw.store_u32(offset, value, order) }
    }
    unsafe fn bytes_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        // SAFETY: same preconditions, forwarded.
        unsafe { self.raw.bytes_mut(offset, len) }
    }
    unsafe fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        // SAFETY: same preconditions, forwarded.
        unsafe { self.raw.bytes(offset, len) }
    }
    unsafe fn wait_u32(&self, offset: usize, expected: u32, timeout: Duration) {
        // SAFETY: same preconditions, forwarded.
        unsafe { self.raw.wait_u32(offset, expected, timeout) }
    }
    unsafe fn wake_u32(&self, offset: usize) {
        // SAFETY: same preconditions, forwarded.
        unsafe { self.raw.wake_u32(offset) }
    }
}
