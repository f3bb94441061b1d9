//! What every peer shares: the message, the envelope checks, the measuring loops, child
//! processes and the sample store the report reads.

use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rkyv::ser::allocator::Arena;
use stream_kernel::data::{ENVELOPE_HEADER, EnvelopeHeader, EnvelopeKind, clear_cloexec};
use stream_kernel::graph::{AlignedBuf, Message, encode_into, encode_into_uninit};

pub const ROLE: &str = "SK_BENCH_ROLE";
pub const ARG: &str = "SK_BENCH_ARG";
pub const SIZES: [usize; 3] = [64, 1024, 64 * 1024];
/// Ring data bytes (a 64 KiB record needs a ring of at least 256 KiB; 4 MiB is the default).
pub const RING_BYTES: usize = 4 << 20;
/// Messages per batch before the producer publishes (throughput runs), for every peer that
/// can batch.
pub const BATCH: u64 = 64;
/// Target value meaning "acknowledge" on an end-of-stream marker; `u32::MAX` means "exit".
pub const ACK: u32 = 1;
pub const EXIT: u32 = u32::MAX;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BenchPayload {
    pub bytes: Vec<u8>,
}

pub fn payload_of(size: usize) -> BenchPayload {
    BenchPayload {
        bytes: (0..size).map(|i| i as u8).collect(),
    }
}

pub fn far() -> Duration {
    Duration::from_secs(60)
}

/// Checks a received envelope the same way for every peer (header, then the payload's
/// archive with bytecheck, in place); returns (kind, target).
pub fn check_envelope(body: &[u8]) -> (EnvelopeKind, u32) {
    let (header, payload) = EnvelopeHeader::read(body).expect("valid envelope");
    if header.kind == EnvelopeKind::Data {
        let archived = BenchPayload::access(payload).expect("valid payload");
        std::hint::black_box(archived.bytes.len());
    }
    (header.kind, header.target)
}

/// Encodes envelope + payload into `buf` (peers that send bytes from a buffer).
pub fn encode_message(
    buf: &mut AlignedBuf,
    arena: &mut Arena,
    seq: u64,
    payload: &BenchPayload,
) -> usize {
    let bytes = buf.as_mut_bytes();
    let (head, rest) = bytes
        .split_first_chunk_mut::<ENVELOPE_HEADER>()
        .expect("buffer");
    let len = encode_into(payload, rest, arena).expect("payload fits");
    EnvelopeHeader::data(seq, 0).write(len as u32, head);
    ENVELOPE_HEADER + len
}

/// Encodes envelope + payload into memory that need not be initialised (a typed slot, a
/// loaned sample); returns the envelope's length, every byte of which is then written.
pub fn encode_message_uninit(
    out: &mut [MaybeUninit<u8>],
    arena: &mut Arena,
    seq: u64,
    payload: &BenchPayload,
) -> usize {
    let (head, rest) = out.split_at_mut(ENVELOPE_HEADER);
    let len = encode_into_uninit(payload, rest, arena).expect("payload fits");
    let mut header = [0u8; ENVELOPE_HEADER];
    EnvelopeHeader::data(seq, 0).write(len as u32, &mut header);
    head.write_copy_of_slice(&header);
    ENVELOPE_HEADER + len
}

/// Writes an end-of-stream marker with `target` into uninitialised memory; returns its length.
pub fn marker_uninit(out: &mut [MaybeUninit<u8>], target: u32) -> usize {
    let mut header = [0u8; ENVELOPE_HEADER];
    marker_header(target).write(0, &mut header);
    out[..ENVELOPE_HEADER].write_copy_of_slice(&header);
    ENVELOPE_HEADER
}

pub fn marker_header(target: u32) -> EnvelopeHeader {
    let mut header = EnvelopeHeader::data(0, target);
    header.kind = EnvelopeKind::EndOfStream;
    header
}

pub fn marker(buf: &mut AlignedBuf, target: u32) -> usize {
    let (head, _) = buf
        .as_mut_bytes()
        .split_first_chunk_mut::<ENVELOPE_HEADER>()
        .expect("buffer");
    marker_header(target).write(0, head);
    ENVELOPE_HEADER
}

/// The length of this size's envelope (the same for every message of a run).
pub fn envelope_len(payload: &BenchPayload) -> usize {
    let mut buf = AlignedBuf::with_capacity(payload.bytes.len() + 4096);
    encode_message(&mut buf, &mut Arena::new(), 0, payload)
}

pub fn copy_aligned(buf: &mut AlignedBuf, bytes: &[u8]) -> usize {
    buf.grow_to(bytes.len());
    buf.as_mut_bytes()[..bytes.len()].copy_from_slice(bytes);
    bytes.len()
}

/// The measuring endpoint of one peer.
pub trait Link {
    /// Sends one data envelope of the current size.
    fn send(&mut self, seq: u64);
    /// Publishes anything buffered (per batch).
    fn flush(&mut self) {}
    /// Sends `count` envelopes and publishes them: one batch. Peers with a batch API (a
    /// chunked ring commit) override it; the others send one by one and flush.
    fn send_batch(&mut self, first: u64, count: u64) {
        for seq in first..first + count {
            self.send(seq);
        }
        self.flush();
    }
    /// Sends an end-of-stream marker with `target` (ACK: answer it; EXIT: stop).
    fn send_marker(&mut self, target: u32);
    /// Waits for one envelope from the peer and returns its kind.
    fn recv(&mut self) -> EnvelopeKind;
}

/// Round trips: send one, receive the echo.
pub fn measure_rtt(link: &mut dyn Link, iters: u64) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        link.send(i);
        link.flush();
        let kind = link.recv();
        debug_assert_eq!(kind, EnvelopeKind::Data);
    }
    start.elapsed()
}

/// One-way stream: `iters` messages in batches of `batch`, then a marker the peer
/// acknowledges once it has read (and checked) all.
pub fn measure_tput(link: &mut dyn Link, iters: u64, batch: u64) -> Duration {
    let start = Instant::now();
    let mut sent = 0;
    while sent < iters {
        let count = batch.min(iters - sent);
        link.send_batch(sent, count);
        sent += count;
    }
    link.send_marker(ACK);
    link.flush();
    let kind = link.recv();
    assert_eq!(kind, EnvelopeKind::EndOfStream, "peer acknowledged");
    start.elapsed()
}

pub fn spawn_child(role: &str, arg: &str, inherit: &[RawFd]) -> Child {
    let mut command = Command::new(std::env::current_exe().expect("current exe"));
    command.env(ROLE, role).env(ARG, arg).stdin(Stdio::null());
    let fds = inherit.to_vec();
    // SAFETY: only prctl and fcntl (async-signal-safe) run between fork and exec. The death
    // signal makes a child exit with this bench, so a failed run leaves no process behind.
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            for fd in &fds {
                clear_cloexec(*fd)?;
            }
            Ok(())
        });
    }
    command.spawn().expect("spawn bench child")
}

// ---------------------------------------------------------------------------------------------
// Our own record of every sample, for the final ratio table.

/// Per-iteration time of every sample, by benchmark id.
fn samples() -> &'static Mutex<BTreeMap<String, Vec<f64>>> {
    static SAMPLES: OnceLock<Mutex<BTreeMap<String, Vec<f64>>>> = OnceLock::new();
    SAMPLES.get_or_init(Default::default)
}

pub fn record(id: &str, iters: u64, total: Duration) -> Duration {
    if iters > 0 {
        let per_iter = total.as_secs_f64() / iters as f64;
        samples()
            .lock()
            .expect("samples")
            .entry(id.to_string())
            .or_default()
            .push(per_iter);
    }
    total
}

/// Keeps one measured value (not a time per iteration) under `id`.
pub fn record_value(id: &str, value: f64) {
    samples()
        .lock()
        .expect("samples")
        .entry(id.to_string())
        .or_default()
        .push(value);
}

/// CPU time this thread has received.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

pub fn p50(id: &str) -> Option<f64> {
    let map = samples().lock().expect("samples");
    let mut values = map.get(id)?.clone();
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied()
}
