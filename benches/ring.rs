//! Ring benchmark (benchmarks.md): our shared-memory ring against other IPC stacks, in one run.
//!
//! Every message is a real envelope: the 64-byte header plus an rkyv payload of 64 B, 1 KiB or
//! 64 KiB. Our ring encodes it in place in the ring; every other peer encodes it into a buffer
//! and sends the bytes (their natural use). The receiver always validates the header and
//! accesses the payload with bytecheck. Cross-process peers run as a child of this binary: it
//! re-executes itself with `SK_BENCH_ROLE` set, and `main` runs that role before criterion
//! sees the arguments.
//!
//! Groups: `calib` (cache-line ping-pong between two processes: the "hop"; run first and last,
//! the run is discarded if they differ by more than 20%; plus a futex ping-pong), `rtt/<size>`,
//! `tput/<size>`, `envelope/<size>`, `memcpy`, and `wake` (a parked consumer's wake-up). The
//! final table prints every peer's p50 as a multiple of ours and of the calibration hop.
//!
//! Short run: `tools/bench-ring.sh` (or `cargo bench --bench ring -- --quick`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use rkyv::ser::allocator::Arena;
use stream_kernel::data::memory::{futex_wait, futex_wake};
use stream_kernel::data::{
    Consumer, ENVELOPE_HEADER, EnvelopeHeader, EnvelopeKind, Producer, Readiness, Segment,
    WaitStrategy, clear_cloexec, init_ring, push_envelope, ring_memory_len,
};
use stream_kernel::graph::{AlignedBuf, Message, encode_into};

const ROLE: &str = "SK_BENCH_ROLE";
const ARG: &str = "SK_BENCH_ARG";
const SIZES: [usize; 3] = [64, 1024, 64 * 1024];
/// Ring data bytes (a 64 KiB record needs a ring of at least 256 KiB; 4 MiB is the default).
const RING_BYTES: usize = 4 << 20;
/// Messages per batch before the producer publishes (throughput runs).
const BATCH: u64 = 64;
/// Target value meaning "acknowledge" on an end-of-stream marker; `u32::MAX` means "exit".
const ACK: u32 = 1;
const EXIT: u32 = u32::MAX;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct BenchPayload {
    bytes: Vec<u8>,
}

fn payload_of(size: usize) -> BenchPayload {
    BenchPayload {
        bytes: (0..size).map(|i| i as u8).collect(),
    }
}

fn far() -> Duration {
    Duration::from_secs(60)
}

/// Checks a received envelope the same way for every peer; returns (kind, target).
fn check_envelope(body: &[u8]) -> (EnvelopeKind, u32) {
    let (header, payload) = EnvelopeHeader::read(body).expect("valid envelope");
    if header.kind == EnvelopeKind::Data {
        let archived = BenchPayload::access(payload).expect("valid payload");
        std::hint::black_box(archived.bytes.len());
    }
    (header.kind, header.target)
}

/// Encodes envelope + payload into `buf` (the path of every peer but ours).
fn encode_message(
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

fn marker(buf: &mut AlignedBuf, target: u32) -> usize {
    let mut header = EnvelopeHeader::data(0, target);
    header.kind = EnvelopeKind::EndOfStream;
    let (head, _) = buf
        .as_mut_bytes()
        .split_first_chunk_mut::<ENVELOPE_HEADER>()
        .expect("buffer");
    header.write(0, head);
    ENVELOPE_HEADER
}

// ---------------------------------------------------------------------------------------------
// Links: the measuring side of each peer.

/// The measuring endpoint of one peer.
trait Link {
    /// Sends one data envelope of the current size.
    fn send(&mut self, seq: u64);
    /// Publishes anything buffered (per batch).
    fn flush(&mut self) {}
    /// Sends an end-of-stream marker with `target` (ACK: answer it; EXIT: stop).
    fn send_marker(&mut self, target: u32);
    /// Waits for one envelope from the peer and returns its kind.
    fn recv(&mut self) -> EnvelopeKind;
}

/// Round trips: send one, receive the echo.
fn measure_rtt(link: &mut dyn Link, iters: u64) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        link.send(i);
        link.flush();
        let kind = link.recv();
        debug_assert_eq!(kind, EnvelopeKind::Data);
    }
    start.elapsed()
}

/// One-way stream: `iters` messages, then a marker the peer acknowledges once it has read all.
fn measure_tput(link: &mut dyn Link, iters: u64) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        link.send(i);
        if i % BATCH == BATCH - 1 {
            link.flush();
        }
    }
    link.send_marker(ACK);
    link.flush();
    let kind = link.recv();
    assert_eq!(kind, EnvelopeKind::EndOfStream, "peer acknowledged");
    start.elapsed()
}

// ---- ours

struct RingLink {
    tx: Producer<Segment>,
    rx: Consumer<Segment>,
    payload: BenchPayload,
    arena: Arena,
}

impl Link for RingLink {
    fn send(&mut self, seq: u64) {
        let header = EnvelopeHeader::data(seq, 0);
        let (payload, arena) = (&self.payload, &mut self.arena);
        push_envelope(
            &mut self.tx,
            &header,
            |slot| encode_into(payload, slot, arena).ok(),
            far(),
        )
        .expect("push");
    }
    fn flush(&mut self) {
        self.tx.flush();
    }
    fn send_marker(&mut self, target: u32) {
        let mut header = EnvelopeHeader::data(0, target);
        header.kind = EnvelopeKind::EndOfStream;
        push_envelope(&mut self.tx, &header, |_| Some(0), far()).expect("push marker");
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

fn ring_pair(capacity: usize) -> (Segment, Segment) {
    let make = |name| {
        let segment = Segment::create(name, ring_memory_len(capacity)).expect("segment");
        init_ring(&segment, capacity, 0x5eed_1234_5678_9abc).expect("init");
        segment
    };
    (make("bench-request"), make("bench-reply"))
}

fn spawn_child(role: &str, arg: &str, inherit: &[RawFd]) -> Child {
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

/// Our ring, parent side: requests out on one segment, replies back on another.
fn ours(profile: WaitStrategy, size: usize, echo: bool) -> (Box<dyn Link>, Child) {
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
    };
    (Box::new(link), child)
}

fn profile_name(profile: WaitStrategy) -> &'static str {
    if profile == WaitStrategy::LATENCY {
        "latency"
    } else {
        "balanced"
    }
}

fn child_ours(arg: &str) {
    let parts: Vec<&str> = arg.split(',').collect();
    let (request_fd, reply_fd, len) = (
        parts[0].parse().expect("fd"),
        parts[1].parse().expect("fd"),
        parts[2].parse().expect("len"),
    );
    let profile = if parts[3] == "latency" {
        WaitStrategy::LATENCY
    } else {
        WaitStrategy::BALANCED
    };
    let echo = parts[4] == "true";
    // SAFETY: the parent passed these fds to this child alone.
    let (request, reply) = unsafe {
        (
            Segment::open_inherited(request_fd, len).expect("request segment"),
            Segment::open_inherited(reply_fd, len).expect("reply segment"),
        )
    };
    let mut rx = Consumer::attach(request, profile).expect("attach");
    let mut tx = Producer::attach(reply, profile).expect("attach");
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

// ---- byte-stream peers (Unix socket, pipe): length-prefixed frames

struct StreamLink<W: Write, R: Read> {
    tx: W,
    rx: R,
    buf: AlignedBuf,
    rbuf: AlignedBuf,
    arena: Arena,
    payload: BenchPayload,
}

fn write_frame(w: &mut impl Write, bytes: &[u8]) {
    w.write_all(&(bytes.len() as u32).to_le_bytes())
        .expect("write");
    w.write_all(bytes).expect("write");
}

fn read_frame<'b>(r: &mut impl Read, buf: &'b mut AlignedBuf) -> Option<&'b [u8]> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).ok()?;
    let len = u32::from_le_bytes(len) as usize;
    buf.grow_to(len);
    let bytes = &mut buf.as_mut_bytes()[..len];
    r.read_exact(bytes).ok()?;
    Some(bytes)
}

impl<W: Write, R: Read> Link for StreamLink<W, R> {
    fn send(&mut self, seq: u64) {
        let len = encode_message(&mut self.buf, &mut self.arena, seq, &self.payload);
        write_frame(&mut self.tx, &self.buf.as_bytes()[..len]);
    }
    fn flush(&mut self) {
        self.tx.flush().expect("flush");
    }
    fn send_marker(&mut self, target: u32) {
        let len = marker(&mut self.buf, target);
        write_frame(&mut self.tx, &self.buf.as_bytes()[..len]);
        self.tx.flush().expect("flush");
    }
    fn recv(&mut self) -> EnvelopeKind {
        check_envelope(read_frame(&mut self.rx, &mut self.rbuf).expect("frame")).0
    }
}

fn stream_echo(mut rx: impl Read, mut tx: impl Write, echo: bool) {
    let mut buf = AlignedBuf::with_capacity(128 * 1024);
    while let Some(frame) = read_frame(&mut rx, &mut buf) {
        let (kind, target) = check_envelope(frame);
        if kind == EnvelopeKind::EndOfStream && target == EXIT {
            return;
        }
        if echo || kind == EnvelopeKind::EndOfStream {
            write_frame(&mut tx, frame);
            tx.flush().expect("flush");
        }
    }
}

/// A Unix stream socket; `buffered` streams through a 256 KiB writer (many messages per
/// system call), otherwise every message is its own `write` (request/response style).
fn unix_socket(size: usize, echo: bool, buffered: bool) -> (Box<dyn Link>, Child) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let fd = theirs.as_raw_fd();
    let child = spawn_child("unix", &format!("{fd},{echo}"), &[fd]);
    drop(theirs);
    let capacity = if buffered { 256 * 1024 } else { 0 };
    let tx = std::io::BufWriter::with_capacity(capacity, ours.try_clone().expect("clone"));
    let link = StreamLink {
        tx,
        rx: std::io::BufReader::with_capacity(256 * 1024, ours),
        buf: AlignedBuf::with_capacity(128 * 1024),
        rbuf: AlignedBuf::with_capacity(128 * 1024),
        arena: Arena::new(),
        payload: payload_of(size),
    };
    (Box::new(link), child)
}

fn child_unix(arg: &str) {
    let (fd, echo) = arg.split_once(',').expect("arg");
    // SAFETY: the parent passed this socket fd to this child alone.
    let socket = unsafe { UnixStream::from_raw_fd(fd.parse().expect("fd")) };
    let rx = std::io::BufReader::with_capacity(256 * 1024, socket.try_clone().expect("clone"));
    stream_echo(
        rx,
        std::io::BufWriter::with_capacity(256 * 1024, socket),
        echo == "true",
    );
}

fn pipe_pair() -> (std::fs::File, std::fs::File) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    // Bigger pipe buffers for the 64 KiB case (the default is 64 KiB).
    // SAFETY: F_SETPIPE_SZ on a pipe fd we own.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
    (std::fs::File::from(r), std::fs::File::from(w))
}

fn pipe_peer(size: usize, echo: bool) -> (Box<dyn Link>, Child) {
    let (request_r, request_w) = pipe_pair();
    let (reply_r, reply_w) = pipe_pair();
    let (cr, cw) = (request_r.as_raw_fd(), reply_w.as_raw_fd());
    let child = spawn_child("pipe", &format!("{cr},{cw},{echo}"), &[cr, cw]);
    drop((request_r, reply_w));
    let link = StreamLink {
        tx: std::io::BufWriter::with_capacity(256 * 1024, request_w),
        rx: std::io::BufReader::with_capacity(256 * 1024, reply_r),
        buf: AlignedBuf::with_capacity(128 * 1024),
        rbuf: AlignedBuf::with_capacity(128 * 1024),
        arena: Arena::new(),
        payload: payload_of(size),
    };
    (Box::new(link), child)
}

fn child_pipe(arg: &str) {
    let parts: Vec<&str> = arg.split(',').collect();
    // SAFETY: the parent passed these pipe fds to this child alone.
    let (rx, tx) = unsafe {
        (
            std::fs::File::from_raw_fd(parts[0].parse().expect("fd")),
            std::fs::File::from_raw_fd(parts[1].parse().expect("fd")),
        )
    };
    stream_echo(
        std::io::BufReader::with_capacity(256 * 1024, rx),
        std::io::BufWriter::with_capacity(256 * 1024, tx),
        parts[2] == "true",
    );
}

// ---- ipc-channel

type Handshake = (
    ipc_channel::ipc::IpcBytesSender,
    ipc_channel::ipc::IpcBytesReceiver,
);

struct IpcChannelLink {
    tx: ipc_channel::ipc::IpcBytesSender,
    rx: ipc_channel::ipc::IpcBytesReceiver,
    buf: AlignedBuf,
    rbuf: AlignedBuf,
    arena: Arena,
    payload: BenchPayload,
}

fn copy_aligned(buf: &mut AlignedBuf, bytes: &[u8]) -> usize {
    buf.grow_to(bytes.len());
    buf.as_mut_bytes()[..bytes.len()].copy_from_slice(bytes);
    bytes.len()
}

impl Link for IpcChannelLink {
    fn send(&mut self, seq: u64) {
        let len = encode_message(&mut self.buf, &mut self.arena, seq, &self.payload);
        self.tx.send(&self.buf.as_bytes()[..len]).expect("send");
    }
    fn send_marker(&mut self, target: u32) {
        let len = marker(&mut self.buf, target);
        self.tx.send(&self.buf.as_bytes()[..len]).expect("send");
    }
    fn recv(&mut self) -> EnvelopeKind {
        let bytes = self.rx.recv().expect("recv");
        // ipc-channel hands back a Vec<u8> (1-aligned): align it for rkyv, as a user must.
        let len = copy_aligned(&mut self.rbuf, &bytes);
        check_envelope(&self.rbuf.as_bytes()[..len]).0
    }
}

fn ipc_channel_peer(size: usize, echo: bool) -> (Box<dyn Link>, Child) {
    let (server, name) = ipc_channel::ipc::IpcOneShotServer::<Handshake>::new().expect("server");
    let child = spawn_child("ipc-channel", &format!("{name},{echo}"), &[]);
    let (_, (tx, rx)) = server.accept().expect("accept");
    let link = IpcChannelLink {
        tx,
        rx,
        buf: AlignedBuf::with_capacity(128 * 1024),
        rbuf: AlignedBuf::with_capacity(128 * 1024),
        arena: Arena::new(),
        payload: payload_of(size),
    };
    (Box::new(link), child)
}

fn child_ipc_channel(arg: &str) {
    let (name, echo) = arg.rsplit_once(',').expect("arg");
    let (request_tx, request_rx) = ipc_channel::ipc::bytes_channel().expect("channel");
    let (reply_tx, reply_rx) = ipc_channel::ipc::bytes_channel().expect("channel");
    let bootstrap =
        ipc_channel::ipc::IpcSender::<Handshake>::connect(name.to_string()).expect("connect");
    bootstrap.send((request_tx, reply_rx)).expect("handshake");
    let mut buf = AlignedBuf::with_capacity(128 * 1024);
    while let Ok(bytes) = request_rx.recv() {
        let len = copy_aligned(&mut buf, &bytes);
        let (kind, target) = check_envelope(&buf.as_bytes()[..len]);
        if kind == EnvelopeKind::EndOfStream && target == EXIT {
            return;
        }
        if echo == "true" || kind == EnvelopeKind::EndOfStream {
            reply_tx.send(&bytes).expect("echo");
        }
    }
}

// ---- iceoryx2 (ipc publish-subscribe, busy polling: its fastest mode)

use iceoryx2::prelude::*;

struct IceLink {
    _node: Node<ipc::Service>,
    publisher: iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>,
    subscriber: iceoryx2::port::subscriber::Subscriber<ipc::Service, [u8], ()>,
    buf: AlignedBuf,
    rbuf: AlignedBuf,
    arena: Arena,
    payload: BenchPayload,
}

type IcePublisher = iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>;
type IceSubscriber = iceoryx2::port::subscriber::Subscriber<ipc::Service, [u8], ()>;

fn ice_endpoints(
    node: &Node<ipc::Service>,
    out: &str,
    inp: &str,
    max_len: usize,
) -> (IcePublisher, IceSubscriber) {
    let service = |name: &str| {
        node.service_builder(&name.try_into().expect("service name"))
            .publish_subscribe::<[u8]>()
            .enable_safe_overflow(false)
            .subscriber_max_buffer_size(512)
            .history_size(0)
            .open_or_create()
            .expect("service")
    };
    let publisher = service(out)
        .publisher_builder()
        .initial_max_slice_len(max_len)
        .max_loaned_samples(4)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .expect("publisher");
    let subscriber = service(inp)
        .subscriber_builder()
        .buffer_size(512)
        .create()
        .expect("subscriber");
    (publisher, subscriber)
}

fn ice_send(
    publisher: &iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>,
    bytes: &[u8],
) {
    let sample = publisher.loan_slice_uninit(bytes.len()).expect("loan");
    sample.write_from_slice(bytes).send().expect("send");
}

impl Link for IceLink {
    fn send(&mut self, seq: u64) {
        let len = encode_message(&mut self.buf, &mut self.arena, seq, &self.payload);
        ice_send(&self.publisher, &self.buf.as_bytes()[..len]);
    }
    fn send_marker(&mut self, target: u32) {
        let len = marker(&mut self.buf, target);
        ice_send(&self.publisher, &self.buf.as_bytes()[..len]);
    }
    fn recv(&mut self) -> EnvelopeKind {
        loop {
            if let Some(sample) = self.subscriber.receive().expect("receive") {
                // iceoryx2 slices of u8 are 1-aligned: copy to align for rkyv, as a user must.
                let len = copy_aligned(&mut self.rbuf, sample.payload());
                return check_envelope(&self.rbuf.as_bytes()[..len]).0;
            }
            std::hint::spin_loop();
        }
    }
}

fn iceoryx2_peer(size: usize, echo: bool) -> (Box<dyn Link>, Child) {
    let base = format!("sk-bench-{}-{}-{}", std::process::id(), size, echo);
    let node = NodeBuilder::new().create::<ipc::Service>().expect("node");
    let max_len = size + 1024;
    let (publisher, subscriber) = ice_endpoints(
        &node,
        &format!("{base}-req"),
        &format!("{base}-rep"),
        max_len,
    );
    let child = spawn_child("iceoryx2", &format!("{base},{max_len},{echo}"), &[]);
    // Wait until the child's subscriber is connected.
    while service_subscribers(&node, &base) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let link = IceLink {
        _node: node,
        publisher,
        subscriber,
        buf: AlignedBuf::with_capacity(128 * 1024),
        rbuf: AlignedBuf::with_capacity(128 * 1024),
        arena: Arena::new(),
        payload: payload_of(size),
    };
    (Box::new(link), child)
}

fn service_subscribers(node: &Node<ipc::Service>, base: &str) -> usize {
    node.service_builder(&format!("{base}-req").as_str().try_into().expect("name"))
        .publish_subscribe::<[u8]>()
        .open()
        .map(|s| s.dynamic_config().number_of_subscribers())
        .unwrap_or(0)
}

fn child_iceoryx2(arg: &str) {
    let parts: Vec<&str> = arg.split(',').collect();
    let (base, max_len, echo) = (parts[0], parts[1].parse().expect("len"), parts[2] == "true");
    let node = NodeBuilder::new().create::<ipc::Service>().expect("node");
    let (publisher, subscriber) = ice_endpoints(
        &node,
        &format!("{base}-rep"),
        &format!("{base}-req"),
        max_len,
    );
    let mut buf = AlignedBuf::with_capacity(128 * 1024);
    loop {
        let Some(sample) = subscriber.receive().expect("receive") else {
            std::hint::spin_loop();
            continue;
        };
        let len = copy_aligned(&mut buf, sample.payload());
        let (kind, target) = check_envelope(&buf.as_bytes()[..len]);
        if kind == EnvelopeKind::EndOfStream && target == EXIT {
            return;
        }
        if echo || kind == EnvelopeKind::EndOfStream {
            ice_send(&publisher, &buf.as_bytes()[..len]);
        }
    }
}

// ---- in-process peers: crossbeam-channel and rtrb, with an echo thread

struct CrossbeamLink {
    tx: crossbeam_channel::Sender<Vec<u8>>,
    rx: crossbeam_channel::Receiver<Vec<u8>>,
    buf: AlignedBuf,
    rbuf: AlignedBuf,
    arena: Arena,
    payload: BenchPayload,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Link for CrossbeamLink {
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

impl Drop for CrossbeamLink {
    fn drop(&mut self) {
        self.send_marker(EXIT);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn crossbeam_peer(size: usize, echo: bool) -> Box<dyn Link> {
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
    Box::new(CrossbeamLink {
        tx: request_tx,
        rx: reply_rx,
        buf: AlignedBuf::with_capacity(128 * 1024),
        rbuf: AlignedBuf::with_capacity(128 * 1024),
        arena: Arena::new(),
        payload: payload_of(size),
        thread: Some(thread),
    })
}

struct RtrbLink {
    tx: rtrb::Producer<u8>,
    rx: rtrb::Consumer<u8>,
    buf: AlignedBuf,
    rbuf: AlignedBuf,
    arena: Arena,
    payload: BenchPayload,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn rtrb_write(tx: &mut rtrb::Producer<u8>, bytes: &[u8]) {
    let frame_len = 4 + bytes.len();
    let mut chunk = loop {
        match tx.write_chunk(frame_len) {
            Ok(chunk) => break chunk,
            Err(_) => std::hint::spin_loop(),
        }
    };
    let (a, b) = chunk.as_mut_slices();
    let len = (bytes.len() as u32).to_le_bytes();
    let mut source = len.iter().chain(bytes.iter());
    for slot in a.iter_mut().chain(b.iter_mut()) {
        *slot = *source.next().unwrap_or(&0);
    }
    chunk.commit_all();
}

fn rtrb_read(rx: &mut rtrb::Consumer<u8>, buf: &mut AlignedBuf) -> usize {
    let len = loop {
        if let Ok(chunk) = rx.read_chunk(4) {
            let (a, b) = chunk.as_slices();
            let mut len = [0u8; 4];
            for (d, s) in len.iter_mut().zip(a.iter().chain(b.iter())) {
                *d = *s;
            }
            chunk.commit_all();
            break u32::from_le_bytes(len) as usize;
        }
        std::hint::spin_loop();
    };
    buf.grow_to(len);
    let chunk = loop {
        match rx.read_chunk(len) {
            Ok(chunk) => break chunk,
            Err(_) => std::hint::spin_loop(),
        }
    };
    let (a, b) = chunk.as_slices();
    buf.as_mut_bytes()[..a.len()].copy_from_slice(a);
    buf.as_mut_bytes()[a.len()..len].copy_from_slice(b);
    chunk.commit_all();
    len
}

impl Link for RtrbLink {
    fn send(&mut self, seq: u64) {
        let len = encode_message(&mut self.buf, &mut self.arena, seq, &self.payload);
        rtrb_write(&mut self.tx, &self.buf.as_bytes()[..len]);
    }
    fn send_marker(&mut self, target: u32) {
        let len = marker(&mut self.buf, target);
        rtrb_write(&mut self.tx, &self.buf.as_bytes()[..len]);
    }
    fn recv(&mut self) -> EnvelopeKind {
        let len = rtrb_read(&mut self.rx, &mut self.rbuf);
        check_envelope(&self.rbuf.as_bytes()[..len]).0
    }
}

impl Drop for RtrbLink {
    fn drop(&mut self) {
        self.send_marker(EXIT);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn rtrb_peer(size: usize, echo: bool) -> Box<dyn Link> {
    let (request_tx, mut request_rx) = rtrb::RingBuffer::<u8>::new(RING_BYTES);
    let (mut reply_tx, reply_rx) = rtrb::RingBuffer::<u8>::new(RING_BYTES);
    let thread = std::thread::spawn(move || {
        let mut buf = AlignedBuf::with_capacity(128 * 1024);
        loop {
            let len = rtrb_read(&mut request_rx, &mut buf);
            let (kind, target) = check_envelope(&buf.as_bytes()[..len]);
            if kind == EnvelopeKind::EndOfStream && target == EXIT {
                return;
            }
            if echo || kind == EnvelopeKind::EndOfStream {
                rtrb_write(&mut reply_tx, &buf.as_bytes()[..len]);
            }
        }
    });
    Box::new(RtrbLink {
        tx: request_tx,
        rx: reply_rx,
        buf: AlignedBuf::with_capacity(128 * 1024),
        rbuf: AlignedBuf::with_capacity(128 * 1024),
        arena: Arena::new(),
        payload: payload_of(size),
        thread: Some(thread),
    })
}

// ---------------------------------------------------------------------------------------------
// Calibration: cache-line ping-pong and futex ping-pong between two processes.

/// Two words 128 bytes apart in one shared segment.
struct Calib {
    segment: Segment,
    child: Child,
}

const CALIB_A: usize = 0;
const CALIB_B: usize = 128;

fn calib_start(role: &str) -> Calib {
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
    fn stop(mut self) {
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

fn calib_spin_rtt(calib: &Calib, iters: u64) -> Duration {
    let base = calib.b().load(Ordering::Acquire);
    let start = Instant::now();
    for i in 1..=iters {
        calib.a().store(base + i, Ordering::Release);
        while calib.b().load(Ordering::Acquire) != base + i {
            std::hint::spin_loop();
        }
    }
    start.elapsed()
}

fn calib_futex_rtt(calib: &Calib, iters: u64) -> Duration {
    let base = calib.b().load(Ordering::Acquire);
    let start = Instant::now();
    for i in 1..=iters {
        calib.a().store(base + i, Ordering::Release);
        futex_wake_word(calib.a());
        loop {
            let seen = calib.b().load(Ordering::Acquire);
            if seen == base + i {
                break;
            }
            futex_wait_word(calib.b(), seen);
        }
    }
    start.elapsed()
}

/// Futex round trips that each start after an idle gap (not timed), like a parked consumer's.
fn calib_futex_rtt_after_gap(calib: &Calib, iters: u64) -> Duration {
    let base = calib.b().load(Ordering::Acquire);
    let mut total = Duration::ZERO;
    for i in 1..=iters {
        std::thread::sleep(WAKE_GAP);
        let start = Instant::now();
        calib.a().store(base + i, Ordering::Release);
        futex_wake_word(calib.a());
        loop {
            let seen = calib.b().load(Ordering::Acquire);
            if seen == base + i {
                break;
            }
            futex_wait_word(calib.b(), seen);
        }
        total += start.elapsed();
    }
    total
}

/// Idle time before each wake-up measurement: long enough for every waiter to park.
const WAKE_GAP: Duration = Duration::from_millis(2);

fn child_calib(arg: &str, futex: bool) {
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

// ---------------------------------------------------------------------------------------------
// Results: our own record of every sample, for the final ratio table.

/// Per-iteration time of every sample, by benchmark id.
fn samples() -> &'static Mutex<BTreeMap<String, Vec<f64>>> {
    static SAMPLES: OnceLock<Mutex<BTreeMap<String, Vec<f64>>>> = OnceLock::new();
    SAMPLES.get_or_init(Default::default)
}

fn record(id: &str, iters: u64, total: Duration) -> Duration {
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

fn p50(id: &str) -> Option<f64> {
    let map = samples().lock().expect("samples");
    let mut values = map.get(id)?.clone();
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied()
}

// ---------------------------------------------------------------------------------------------
// Groups.

/// Peers in report order.
const PEERS: [&str; 9] = [
    "1-ours-latency",
    "2-ours-balanced",
    "3-iceoryx2",
    "4-ipc-channel",
    "5-unix-socket",
    "5b-unix-socket-per-msg",
    "6-pipe",
    "7-crossbeam-channel",
    "8-rtrb",
];

fn make_peer(peer: &str, size: usize, echo: bool) -> (Box<dyn Link>, Option<Child>) {
    match peer {
        "1-ours-latency" => {
            let (link, child) = ours(WaitStrategy::LATENCY, size, echo);
            (link, Some(child))
        }
        "2-ours-balanced" => {
            let (link, child) = ours(WaitStrategy::BALANCED, size, echo);
            (link, Some(child))
        }
        "3-iceoryx2" => {
            let (link, child) = iceoryx2_peer(size, echo);
            (link, Some(child))
        }
        "4-ipc-channel" => {
            let (link, child) = ipc_channel_peer(size, echo);
            (link, Some(child))
        }
        "5-unix-socket" => {
            let (link, child) = unix_socket(size, echo, true);
            (link, Some(child))
        }
        "5b-unix-socket-per-msg" => {
            let (link, child) = unix_socket(size, echo, false);
            (link, Some(child))
        }
        "6-pipe" => {
            let (link, child) = pipe_peer(size, echo);
            (link, Some(child))
        }
        "7-crossbeam-channel" => (crossbeam_peer(size, echo), None),
        _ => (rtrb_peer(size, echo), None),
    }
}

fn finish_peer(mut link: Box<dyn Link>, child: Option<Child>) {
    if let Some(mut child) = child {
        link.send_marker(EXIT);
        link.flush();
        drop(link);
        let _ = child.wait();
    }
}

/// Checks that a peer does the work before timing it: echo peers answer three round trips,
/// sink peers acknowledge a stream of 100 messages (each one header- and bytecheck-validated).
fn check_peer(link: &mut dyn Link, peer: &str, echo: bool) {
    let elapsed = if echo {
        measure_rtt(link, 3)
    } else {
        measure_tput(link, 100)
    };
    assert!(!elapsed.is_zero(), "{peer}: no work done");
}

fn bench_calib(c: &mut Criterion, label: &str) {
    let mut group = c.benchmark_group("calib");
    let calib = calib_start("calib-spin");
    let id = format!("calib/hop-{label}");
    group.bench_function(BenchmarkId::new("hop", label), |b| {
        // One iteration = one round trip = two hops.
        b.iter_custom(|iters| record(&id, iters * 2, calib_spin_rtt(&calib, iters)) / 2);
    });
    calib.stop();
    group.finish();
}

fn bench_rtt(c: &mut Criterion, size: usize) {
    let mut group = c.benchmark_group(format!("rtt/{size}"));
    for peer in PEERS {
        let (mut link, child) = make_peer(peer, size, true);
        check_peer(link.as_mut(), peer, true);
        let id = format!("rtt/{size}/{peer}");
        group.bench_function(peer, |b| {
            b.iter_custom(|iters| record(&id, iters, measure_rtt(link.as_mut(), iters)));
        });
        finish_peer(link, child);
    }
    group.finish();
}

fn bench_tput(c: &mut Criterion, size: usize) {
    let mut group = c.benchmark_group(format!("tput/{size}"));
    group.throughput(Throughput::Bytes((size + ENVELOPE_HEADER) as u64));
    for peer in PEERS {
        let (mut link, child) = make_peer(peer, size, false);
        check_peer(link.as_mut(), peer, false);
        let id = format!("tput/{size}/{peer}");
        group.bench_function(peer, |b| {
            b.iter_custom(|iters| record(&id, iters, measure_tput(link.as_mut(), iters)));
        });
        finish_peer(link, child);
    }
    group.finish();
}

fn bench_envelope(c: &mut Criterion, size: usize) {
    let mut group = c.benchmark_group(format!("envelope/{size}"));
    let payload = payload_of(size);
    let mut arena = Arena::new();
    let mut slot = AlignedBuf::with_capacity(size + 4096);
    let len = encode_into(&payload, slot.as_mut_bytes(), &mut arena).expect("fits");
    let encode_id = format!("envelope/{size}/encode");
    group.bench_function("encode-into-slot", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(
                    encode_into(&payload, slot.as_mut_bytes(), &mut arena).expect("fits"),
                );
            }
            record(&encode_id, iters, start.elapsed())
        });
    });
    let bytes = slot.as_bytes()[..len].to_vec();
    let mut aligned = AlignedBuf::with_capacity(len);
    aligned.as_mut_bytes()[..len].copy_from_slice(&bytes);
    group.bench_function("validated-access", |b| {
        b.iter(|| {
            let bytes = std::hint::black_box(&aligned.as_bytes()[..len]);
            std::hint::black_box(BenchPayload::access(bytes).expect("valid").bytes.len())
        });
    });
    group.bench_function("unchecked-access", |b| {
        b.iter(|| {
            let bytes = std::hint::black_box(&aligned.as_bytes()[..len]);
            // SAFETY: `aligned` holds an archive of BenchPayload encoded above by this process.
            std::hint::black_box(unsafe { BenchPayload::access_trusted(bytes) }.bytes.len())
        });
    });
    group.finish();
}

fn bench_memcpy(c: &mut Criterion) {
    let mut group = c.benchmark_group("memcpy");
    let chunk = 64 * 1024;
    group.throughput(Throughput::Bytes(chunk as u64));
    let source = vec![7u8; RING_BYTES];
    let mut target = vec![0u8; RING_BYTES];
    group.bench_function("64K", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for i in 0..iters as usize {
                let at = (i * chunk) % RING_BYTES;
                target[at..at + chunk].copy_from_slice(&source[at..at + chunk]);
                std::hint::black_box(&target[at]);
            }
            record("memcpy/64K", iters, start.elapsed())
        });
    });
    group.finish();
}

/// A parked balanced consumer's wake-up: the child parks between messages (the gap is not
/// timed), so each round trip starts with a futex wake. Compared with a plain futex ping-pong
/// after the same gap, measured just before.
fn bench_wake(c: &mut Criterion) {
    let mut group = c.benchmark_group("wake");
    // The futex references, measured right before the wake-up they are compared with.
    let calib = calib_start("calib-futex");
    group.bench_function("futex-rtt", |b| {
        b.iter_custom(|iters| record("calib/futex-rtt", iters, calib_futex_rtt(&calib, iters)));
    });
    group.bench_function("futex-rtt-after-idle", |b| {
        b.iter_custom(|iters| {
            record(
                "calib/futex-rtt-after-idle",
                iters,
                calib_futex_rtt_after_gap(&calib, iters),
            )
        });
    });
    calib.stop();
    let (mut link, child) = make_peer("2-ours-balanced", 64, true);
    group.bench_function("balanced-parked-rtt", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                std::thread::sleep(WAKE_GAP);
                let start = Instant::now();
                link.send(i);
                link.flush();
                link.recv();
                total += start.elapsed();
            }
            record("wake/balanced-parked-rtt", iters, total)
        });
    });
    finish_peer(link, child);
    group.finish();
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU share of a balanced consumer waiting one second on an idle ring.
fn idle_consumer_cpu_share() -> f64 {
    let memory = stream_kernel::data::HeapMemory::new(ring_memory_len(1 << 16));
    init_ring(&memory, 1 << 16, 1).expect("init");
    let mut consumer = Consumer::attach(memory, WaitStrategy::BALANCED).expect("attach");
    let start = thread_cpu();
    let wall = Instant::now();
    let _ = consumer.wait(Duration::from_secs(1));
    (thread_cpu() - start).as_secs_f64() / wall.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// The report.

fn fmt_time(seconds: f64) -> String {
    if seconds < 1e-6 {
        format!("{:.0} ns", seconds * 1e9)
    } else if seconds < 1e-3 {
        format!("{:.2} us", seconds * 1e6)
    } else {
        format!("{:.2} ms", seconds * 1e3)
    }
}

fn report(idle_share: f64) {
    let hop_first = p50("calib/hop-first").unwrap_or(f64::NAN);
    let hop_last = p50("calib/hop-last").unwrap_or(f64::NAN);
    let drift = (hop_last - hop_first).abs() / hop_first;
    let hop = (hop_first + hop_last) / 2.0;
    println!();
    println!("== stream-kernel ring benchmark ==");
    println!(
        "machine: {} ({} vCPU); date: {}; command: cargo bench --bench ring",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        today()
    );
    println!(
        "calibration hop (cache-line ping-pong, one way): first {} / last {} -> {}",
        fmt_time(hop_first),
        fmt_time(hop_last),
        if drift > 0.2 {
            format!(
                "DRIFT {:.0}% > 20%: this run is DISCARDED, run it again",
                drift * 100.0
            )
        } else {
            format!("drift {:.0}% (ok)", drift * 100.0)
        }
    );
    if let (Some(futex), Some(after_idle)) =
        (p50("calib/futex-rtt"), p50("calib/futex-rtt-after-idle"))
    {
        println!(
            "futex round trip between two processes: {} busy, {} after a {:?} idle gap",
            fmt_time(futex),
            fmt_time(after_idle),
            WAKE_GAP
        );
    }
    for size in SIZES {
        println!();
        println!("-- rtt/{size}: one-way latency (rtt/2), p50 --");
        println!(
            "{:<22} {:>12} {:>10} {:>10}",
            "peer", "one-way", "x ours", "x hop"
        );
        let ours = p50(&format!("rtt/{size}/1-ours-latency")).unwrap_or(f64::NAN) / 2.0;
        for peer in PEERS {
            if let Some(rtt) = p50(&format!("rtt/{size}/{peer}")) {
                let one_way = rtt / 2.0;
                println!(
                    "{peer:<22} {:>12} {:>10.2} {:>10.2}",
                    fmt_time(one_way),
                    one_way / ours,
                    one_way / hop
                );
            }
        }
        println!("-- tput/{size}: one-way stream, p50 per message --");
        println!(
            "{:<22} {:>12} {:>12} {:>11} {:>8}",
            "peer", "per msg", "msgs/s", "MB/s", "x ours"
        );
        let ours = p50(&format!("tput/{size}/1-ours-latency")).unwrap_or(f64::NAN);
        for peer in PEERS {
            if let Some(per) = p50(&format!("tput/{size}/{peer}")) {
                println!(
                    "{peer:<22} {:>12} {:>12.0} {:>11.1} {:>8.2}",
                    fmt_time(per),
                    1.0 / per,
                    (size + ENVELOPE_HEADER) as f64 / per / 1e6,
                    per / ours
                );
            }
        }
    }
    println!();
    println!("-- targets (benchmarks.md), same run --");
    let ours64 = p50("rtt/64/1-ours-latency").unwrap_or(f64::NAN) / 2.0;
    let ice64 = p50("rtt/64/3-iceoryx2").unwrap_or(f64::NAN) / 2.0;
    target(
        "one-way latency 64 B <= 2.0 hops",
        ours64 / hop,
        "hops",
        ours64 / hop <= 2.0,
    );
    target(
        "one-way latency 64 B <= 0.5x iceoryx2",
        ours64 / ice64,
        "x",
        ours64 / ice64 <= 0.5,
    );
    let t_ours = p50("tput/64/1-ours-latency").unwrap_or(f64::NAN);
    let t_unix = p50("tput/64/5-unix-socket").unwrap_or(f64::NAN);
    let t_ice = p50("tput/64/3-iceoryx2").unwrap_or(f64::NAN);
    target(
        "stream 64 B >= 30 M msgs/s",
        1.0 / t_ours / 1e6,
        "M/s",
        1.0 / t_ours >= 30e6,
    );
    target(
        "stream 64 B >= 20x Unix socket (buffered)",
        t_unix / t_ours,
        "x",
        t_unix / t_ours >= 20.0,
    );
    let t_unix1 = p50("tput/64/5b-unix-socket-per-msg").unwrap_or(f64::NAN);
    target(
        "stream 64 B >= 20x Unix socket (per message)",
        t_unix1 / t_ours,
        "x",
        t_unix1 / t_ours >= 20.0,
    );
    target(
        "stream 64 B >= 3x iceoryx2",
        t_ice / t_ours,
        "x",
        t_ice / t_ours >= 3.0,
    );
    let t_big = p50(&format!("tput/{}/1-ours-latency", 64 * 1024)).unwrap_or(f64::NAN);
    let memcpy = p50("memcpy/64K").unwrap_or(f64::NAN);
    target(
        "stream 64 KiB >= 0.8x memcpy bandwidth",
        memcpy / t_big,
        "x",
        memcpy / t_big >= 0.8,
    );
    target(
        "balanced idle consumer < 5% of a core",
        idle_share * 100.0,
        "%",
        idle_share < 0.05,
    );
    let wake = p50("wake/balanced-parked-rtt").unwrap_or(f64::NAN);
    let futex = p50("calib/futex-rtt-after-idle").unwrap_or(f64::NAN);
    target(
        "parked wake-up rtt <= 1 futex rtt (same gap)",
        wake / futex,
        "futex rtt",
        wake / futex <= 1.0,
    );
}

fn target(what: &str, value: f64, unit: &str, met: bool) {
    println!(
        "{:<42} {:>10.2} {:<10} {}",
        what,
        value,
        unit,
        if met { "met" } else { "MISSED" }
    );
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

fn today() -> String {
    Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn run_child(role: &str) {
    let arg = std::env::var(ARG).unwrap_or_default();
    match role {
        "ours" => child_ours(&arg),
        "unix" => child_unix(&arg),
        "pipe" => child_pipe(&arg),
        "ipc-channel" => child_ipc_channel(&arg),
        "iceoryx2" => child_iceoryx2(&arg),
        "calib-spin" => child_calib(&arg, false),
        "calib-futex" => child_calib(&arg, true),
        other => panic!("unknown bench role {other}"),
    }
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        run_child(&role);
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    // SK_BENCH_GROUPS=rtt,wake limits a run to some groups (calibration always runs).
    let only = std::env::var("SK_BENCH_GROUPS").ok();
    let run = |group: &str| {
        only.as_deref()
            .is_none_or(|g| g.split(',').any(|x| x == group))
    };
    bench_calib(&mut criterion, "first");
    if run("envelope") {
        for size in SIZES {
            bench_envelope(&mut criterion, size);
        }
    }
    if run("memcpy") {
        bench_memcpy(&mut criterion);
    }
    for size in SIZES {
        if run("rtt") {
            bench_rtt(&mut criterion, size);
        }
        if run("tput") {
            bench_tput(&mut criterion, size);
        }
    }
    if run("wake") {
        bench_wake(&mut criterion);
    }
    bench_calib(&mut criterion, "last");
    criterion.final_summary();
    report(idle_consumer_cpu_share());
}
