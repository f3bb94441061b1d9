//! Record identity: run ids and the W3C trace id each record carries on every hop.
//!
//! A record's trace id is derived from a random per-run id and its `seq`, so every process of
//! a run computes the same id for the same record without coordination.

/// A run id as text (16 hex digits), as logs and the run journal show it.
pub fn run_id_text(run_id: u64) -> String {
    format!("{run_id:016x}")
}

/// The run this process is part of, once it is known (0: not yet): its log records carry it.
static CURRENT_RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// This process now works for run `run_id`.
pub fn set_current_run(run_id: u64) {
    CURRENT_RUN.store(run_id, std::sync::atomic::Ordering::Relaxed);
}

/// The run this process works for, as text, once known.
pub fn current_run() -> Option<String> {
    let id = CURRENT_RUN.load(std::sync::atomic::Ordering::Relaxed);
    (id != 0).then(|| run_id_text(id))
}

/// A fresh random run id (from the OS RNG through std's hasher keys; never zero).
pub fn new_run_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish() | 1
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The 16-byte W3C trace id of record `seq` in run `run_id` (never all zeros).
pub fn trace_id_for(run_id: u64, seq: u64) -> [u8; 16] {
    let high = mix(run_id ^ mix(seq));
    let low = run_id.rotate_left(17) ^ seq;
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&high.to_be_bytes());
    id[8..].copy_from_slice(&low.to_be_bytes());
    if id == [0; 16] {
        id[15] = 1;
    }
    id
}
