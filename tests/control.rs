//! The control-plane contract (docs/architecture.md P5PRE-CTRL-01..04, CTRL-05..08) against real
//! sockets, both transports, plus key hygiene: a worker's key never appears in its argv, its
//! environment, or any formatted error or log line.
//!
//! This binary is also its own child process: with `SK_CONTROL_ROLE=worker` its `main` runs a
//! worker that reads its key from the inherited pipe on fd 3 and says HELLO.

#[path = "support/checks.rs"]
mod checks;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use checks::check;
use libtest_mimic::{Arguments, Failed, Trial};
use proptest::prelude::*;
use stream_kernel::config::{Auth, AuthMode, Control, ControlTransport};
use stream_kernel::control::frame::{
    Direction, FrameHeader, PROTOCOL_VERSION, ReadError, RejectKind, encode_frame,
};
use stream_kernel::control::{
    BootstrapBundle, ControlAddress, ControlListener, ControlMessage, ControlServer, Endpoint,
    EndpointSettings, FrameChecker, KEY_FD, KeyDirectory, KeyPipe, MasterKey, MessageKind,
    SessionError, SupervisorSessions, WorkerKey, WorkerSession, connect, now_ms,
};

// ---- a global allocator that remembers the largest allocation while armed (CTRL-05)

struct Watching;
static ARMED: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only records sizes.
unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Watching = Watching;

const ROLE: &str = "SK_CONTROL_ROLE";
const ADDRESS: &str = "SK_CONTROL_ADDRESS";
const NUMBER: &str = "SK_CONTROL_NUMBER";
const WORKER_ID: &str = "SK_CONTROL_WORKER";
const SECOND: Duration = Duration::from_secs(1);
const PATIENCE: Duration = Duration::from_secs(10);

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("worker") {
        std::process::exit(child_worker());
    }
    let args = Arguments::from_args();
    let mut tests = Vec::new();
    for transport in [ControlTransport::TcpLocal, ControlTransport::Unix] {
        let t = transport;
        let name = |case: &str| format!("{case}::{}", transport_name(t));
        tests.push(Trial::test(
            name("ctrl_01_bundle_delivered_once_and_acked_with_its_correlation"),
            move || ctrl_01(t),
        ));
        tests.push(Trial::test(
            name("ctrl_02_second_bundle_is_duplicate_bootstrap"),
            move || ctrl_02(t),
        ));
        tests.push(Trial::test(
            name("ctrl_03_bad_tag_expired_future_replayed_each_rejected"),
            move || ctrl_03(t),
        ));
        tests.push(Trial::test(
            name("ctrl_04_start_before_ready_is_refused"),
            move || ctrl_04(t),
        ));
        tests.push(Trial::test(
            name("ctrl_05_oversized_length_refused_before_reading_or_allocating"),
            move || ctrl_05(t),
        ));
        tests.push(Trial::test(
            name("ctrl_06_cross_connection_replay_and_reflection_are_misrouted"),
            move || ctrl_06(t),
        ));
        tests.push(Trial::test(
            name("ctrl_07_garbage_client_dropped_while_a_session_keeps_working"),
            move || ctrl_07(t),
        ));
        tests.push(Trial::test(
            name("key_reaches_the_worker_only_through_the_pipe"),
            move || key_hygiene(t),
        ));
    }
    tests.push(Trial::test(
        "ctrl_08_proptest_random_and_mutated_frames_never_accepted",
        ctrl_08,
    ));
    libtest_mimic::run(&args, tests).exit();
}

fn transport_name(t: ControlTransport) -> &'static str {
    match t {
        ControlTransport::TcpLocal => "tcp_local",
        ControlTransport::Unix => "unix",
    }
}

fn control_config(transport: ControlTransport) -> Control {
    Control {
        transport,
        bind_host: "127.0.0.1".into(),
        bind_port: 0,
        auth: Auth {
            mode: AuthMode::Hmac,
            ttl_seconds: 30.0,
            nonce_cache_size: 1000,
        },
        max_payload_bytes: 64 * 1024,
        handshake_timeout_seconds: 5.0,
        max_pending_connections: 64,
    }
}

/// A supervisor with `workers` known workers.
struct Harness {
    server: ControlServer,
    master: MasterKey,
    ids: Vec<String>,
}

impl Harness {
    fn new(transport: ControlTransport, workers: usize) -> Self {
        let config = control_config(transport);
        let master = MasterKey::generate().unwrap();
        let ids: Vec<String> = (1..=workers).map(|n| format!("group#{n}")).collect();
        let directory = Arc::new(KeyDirectory::derive(&master, &ids));
        let listener = ControlListener::bind(&config).unwrap();
        let server =
            ControlServer::new(listener, directory, EndpointSettings::from_config(&config));
        Self {
            server,
            master,
            ids,
        }
    }

    fn key(&self, number: u32) -> WorkerKey {
        self.master.derive(&self.ids[number as usize - 1])
    }

    /// Worker `number` connects and says HELLO; returns its endpoint.
    fn worker(&self, number: u32) -> Endpoint {
        let stream = connect(self.server.address()).unwrap();
        let settings = EndpointSettings::new(Duration::from_secs(30), 64 * 1024, 1000);
        let mut endpoint =
            Endpoint::worker_side(stream, number, self.key(number), settings).unwrap();
        endpoint
            .send(
                &ControlMessage::Hello {
                    worker_id: self.ids[number as usize - 1].clone(),
                    pid: std::process::id(),
                },
                0,
            )
            .unwrap();
        endpoint
    }

    fn accept(&self) -> stream_kernel::control::Accepted {
        self.server
            .accept(PATIENCE)
            .unwrap()
            .expect("a worker connected")
    }

    fn bundle(&self, number: u32, correlation: u64) -> ControlMessage {
        ControlMessage::BootstrapBundle(BootstrapBundle {
            group: "group".into(),
            worker_index: number,
            workers: self.ids.len() as u32,
            config_yaml: "version: 1\n".into(),
            node_names: vec!["source".into()],
            rings: Vec::new(),
            telemetry: None,
            run_id: 42,
            skip: 0,
            resume_lengths: Vec::new(),
            resume_positions: Vec::new(),
            correlation,
        })
    }
}

/// P5PRE-CTRL-01: the bundle is delivered once per worker and acknowledged with the same
/// correlation id.
fn ctrl_01(transport: ControlTransport) -> Result<(), Failed> {
    let h = Harness::new(transport, 2);
    let mut sessions = SupervisorSessions::new(h.ids.clone());
    let workers: Vec<Endpoint> = (1..=2).map(|n| h.worker(n)).collect();
    let mut accepted: Vec<_> = (0..2).map(|_| h.accept()).collect();
    accepted.sort_by_key(|a| a.number);
    for (a, mut worker) in accepted.into_iter().zip(workers) {
        let mut endpoint = a.endpoint;
        sessions.on_hello(&a.worker_id)?;
        let correlation = 1000 + u64::from(a.number);
        sessions.send_bootstrap(&a.worker_id, correlation)?;
        endpoint.send(&h.bundle(a.number, correlation), correlation)?;
        // Worker side: one bundle, acknowledged with its correlation id.
        let got = worker.recv(PATIENCE)?;
        let mut session = WorkerSession::new(&a.worker_id);
        session.on_bootstrap()?;
        check(got.header.correlation == correlation, || {
            "bundle correlation".into()
        })?;
        worker.send(
            &ControlMessage::Ack {
                kind: MessageKind::BootstrapBundle as u8,
                correlation: got.header.correlation,
            },
            got.header.correlation,
        )?;
        let ack = endpoint.recv(PATIENCE)?;
        let ControlMessage::Ack {
            kind,
            correlation: acked,
        } = ack.message
        else {
            return Err(format!("expected ACK, got {:?}", ack.message).into());
        };
        check(
            kind == MessageKind::BootstrapBundle as u8 && acked == correlation,
            || "ack".into(),
        )?;
        sessions.on_ack(&a.worker_id, MessageKind::BootstrapBundle, acked)?;
        check(
            sessions.phase(&a.worker_id)
                == Some(stream_kernel::control::session::SupervisorPhase::BootstrapLoaded),
            || "bootstrap loaded".into(),
        )?;
    }
    Ok(())
}

/// P5PRE-CTRL-02: a second bundle for the same worker is refused with `DuplicateBootstrap`,
/// on both sides, and nothing changes.
fn ctrl_02(transport: ControlTransport) -> Result<(), Failed> {
    let h = Harness::new(transport, 1);
    let mut worker = h.worker(1);
    let mut supervisor = h.accept().endpoint;
    let mut sessions = SupervisorSessions::new(h.ids.clone());
    sessions.on_hello("group#1")?;
    sessions.send_bootstrap("group#1", 7)?;
    // The supervisor's rules refuse a second bundle...
    check(
        sessions.send_bootstrap("group#1", 8)
            == Err(SessionError::DuplicateBootstrap {
                worker: "group#1".into(),
            }),
        || "supervisor allowed a second bundle".into(),
    )?;
    // ...and a worker that receives two (a broken or hostile supervisor) refuses the second.
    supervisor.send(&h.bundle(1, 7), 7)?;
    supervisor.send(&h.bundle(1, 8), 8)?;
    let mut session = WorkerSession::new("group#1");
    worker.recv(PATIENCE)?;
    session.on_bootstrap()?;
    worker.recv(PATIENCE)?;
    let second = session.on_bootstrap();
    check(
        second
            == Err(SessionError::DuplicateBootstrap {
                worker: "group#1".into(),
            }),
        || format!("{second:?}"),
    )?;
    check(
        session.phase() == stream_kernel::control::WorkerPhase::Bootstrapped,
        || "state changed".into(),
    )
}

fn raw_frame(
    key: &WorkerKey,
    worker: u32,
    direction: Direction,
    issued_at_ms: u64,
    nonce: [u8; 16],
    seq: u64,
    message: &ControlMessage,
) -> Vec<u8> {
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(message).unwrap();
    let header = FrameHeader {
        version: PROTOCOL_VERSION,
        kind: message.kind() as u8,
        direction: direction as u8,
        worker,
        correlation: 1,
        issued_at_ms,
        nonce,
        seq,
    };
    let mut out = Vec::new();
    encode_frame(key, &header, &body, &mut out);
    out
}

fn heartbeat() -> ControlMessage {
    ControlMessage::Heartbeat {
        worker_id: "group#1".into(),
        counters: Default::default(),
    }
}

/// A raw connection that has said HELLO as worker 1 (sequence 1 used).
fn raw_worker(h: &Harness) -> (stream_kernel::control::ControlStream, Endpoint) {
    let mut stream = connect(h.server.address()).unwrap();
    let hello = ControlMessage::Hello {
        worker_id: "group#1".into(),
        pid: 1,
    };
    stream
        .write_all(&raw_frame(
            &h.key(1),
            1,
            Direction::ToSupervisor,
            now_ms(),
            [1; 16],
            1,
            &hello,
        ))
        .unwrap();
    let accepted = h.accept();
    (stream, accepted.endpoint)
}

fn rejected(
    outcome: Result<stream_kernel::control::Received, ReadError>,
    kind: RejectKind,
) -> Result<(), Failed> {
    match outcome {
        Err(ReadError::Rejected(e)) if e.kind() == kind => Ok(()),
        other => Err(format!("expected {kind:?}, got {other:?}").into()),
    }
}

/// P5PRE-CTRL-03: a bad tag, an expired or future `issued_at`, and a replayed nonce are each
/// rejected with their own kind; a bad tag closes the connection.
fn ctrl_03(transport: ControlTransport) -> Result<(), Failed> {
    let h = Harness::new(transport, 1);
    let ttl_ms = 30_000;
    // Expired and future.
    let (mut stream, mut supervisor) = raw_worker(&h);
    stream.write_all(&raw_frame(
        &h.key(1),
        1,
        Direction::ToSupervisor,
        now_ms() - ttl_ms - 5_000,
        [2; 16],
        2,
        &heartbeat(),
    ))?;
    rejected(supervisor.recv(PATIENCE), RejectKind::Expired)?;
    stream.write_all(&raw_frame(
        &h.key(1),
        1,
        Direction::ToSupervisor,
        now_ms() + ttl_ms + 5_000,
        [3; 16],
        2,
        &heartbeat(),
    ))?;
    rejected(supervisor.recv(PATIENCE), RejectKind::Expired)?;
    // A good frame, then the same bytes again: replayed.
    let good = raw_frame(
        &h.key(1),
        1,
        Direction::ToSupervisor,
        now_ms(),
        [4; 16],
        2,
        &heartbeat(),
    );
    stream.write_all(&good)?;
    supervisor.recv(PATIENCE)?;
    stream.write_all(&good)?;
    rejected(supervisor.recv(PATIENCE), RejectKind::Replayed)?;
    // Out of order: a fresh nonce but a skipped sequence number.
    stream.write_all(&raw_frame(
        &h.key(1),
        1,
        Direction::ToSupervisor,
        now_ms(),
        [5; 16],
        9,
        &heartbeat(),
    ))?;
    rejected(supervisor.recv(PATIENCE), RejectKind::OutOfOrder)?;
    // A frame signed with another key: bad tag, and the connection is closed.
    let stranger = MasterKey::generate().unwrap().derive("group#1");
    stream.write_all(&raw_frame(
        &stranger,
        1,
        Direction::ToSupervisor,
        now_ms(),
        [6; 16],
        3,
        &heartbeat(),
    ))?;
    rejected(supervisor.recv(PATIENCE), RejectKind::BadTag)?;
    let mut byte = [0u8; 1];
    stream.set_nonblocking_for_test();
    let after = std::io::Read::read(&mut stream, &mut byte);
    check(matches!(after, Ok(0)), || {
        format!("connection not closed: {after:?}")
    })?;
    let metrics = h.server.metrics();
    for (kind, count) in [
        (RejectKind::Expired, 2),
        (RejectKind::Replayed, 1),
        (RejectKind::OutOfOrder, 1),
        (RejectKind::BadTag, 1),
    ] {
        check(metrics.rejected(kind) == count, || {
            format!("{kind:?} counted {}", metrics.rejected(kind))
        })?;
    }
    Ok(())
}

trait ForTest {
    fn set_nonblocking_for_test(&self);
}

impl ForTest for stream_kernel::control::ControlStream {
    fn set_nonblocking_for_test(&self) {
        match self {
            stream_kernel::control::ControlStream::Tcp(s) => {
                s.set_read_timeout(Some(SECOND)).unwrap()
            }
            stream_kernel::control::ControlStream::Unix(s) => {
                s.set_read_timeout(Some(SECOND)).unwrap()
            }
        }
    }
}

/// P5PRE-CTRL-04: START_WORK before the required workers are READY is refused, naming them, by
/// the supervisor's rules; a worker that receives it early refuses it and never ingests.
fn ctrl_04(transport: ControlTransport) -> Result<(), Failed> {
    let h = Harness::new(transport, 2);
    let mut sessions = SupervisorSessions::new(h.ids.clone());
    let mut worker = h.worker(1);
    let mut supervisor = h.accept().endpoint;
    sessions.on_hello("group#1")?;
    sessions.send_bootstrap("group#1", 1)?;
    sessions.on_ack("group#1", MessageKind::BootstrapBundle, 1)?;
    sessions.on_ready("group#1")?;
    check(
        sessions.start_work()
            == Err(SessionError::StartBeforeReady {
                missing: vec!["group#2".into()],
            }),
        || "start allowed with group#2 not ready".into(),
    )?;
    // A START_WORK that reaches a worker before its READY is refused by the worker.
    supervisor.send(
        &ControlMessage::StartWork {
            required: h.ids.clone(),
        },
        2,
    )?;
    let got = worker.recv(PATIENCE)?;
    check(got.kind() == MessageKind::StartWork, || {
        "start delivered".into()
    })?;
    let mut session = WorkerSession::new("group#1");
    session.on_bootstrap()?;
    let early = session.on_start_work();
    check(
        early
            == Err(SessionError::StartBeforeReady {
                missing: vec!["group#1".into()],
            }),
        || format!("{early:?}"),
    )?;
    check(!session.may_ingest(), || {
        "ingestion allowed before READY".into()
    })
}

/// CTRL-05: a declared length over the limit is refused before the body is read (no body is
/// ever sent here, so reading it would hang) and without allocating the declared size.
fn ctrl_05(transport: ControlTransport) -> Result<(), Failed> {
    let h = Harness::new(transport, 1);
    let (mut stream, mut supervisor) = raw_worker(&h);
    stream.write_all(&0xffff_fff0u32.to_be_bytes())?;
    LARGEST.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    let outcome = supervisor.recv(PATIENCE);
    ARMED.store(false, Ordering::SeqCst);
    rejected(outcome, RejectKind::TooLarge)?;
    let largest = LARGEST.load(Ordering::SeqCst);
    check(largest < 1 << 20, || format!("allocated {largest} bytes"))
}

/// CTRL-06: a frame captured on worker 1's connection and replayed on worker 2's is
/// misrouted; a frame reflected back towards its sender fails the direction check.
fn ctrl_06(transport: ControlTransport) -> Result<(), Failed> {
    let h = Harness::new(transport, 2);
    let (mut stream1, mut supervisor1) = raw_worker(&h);
    let mut stream2 = connect(h.server.address()).unwrap();
    let hello2 = ControlMessage::Hello {
        worker_id: "group#2".into(),
        pid: 2,
    };
    stream2.write_all(&raw_frame(
        &h.key(2),
        2,
        Direction::ToSupervisor,
        now_ms(),
        [20; 16],
        1,
        &hello2,
    ))?;
    let mut supervisor2 = h.accept().endpoint;
    let captured = raw_frame(
        &h.key(1),
        1,
        Direction::ToSupervisor,
        now_ms(),
        [21; 16],
        2,
        &heartbeat(),
    );
    stream2.write_all(&captured)?;
    rejected(supervisor2.recv(PATIENCE), RejectKind::Misrouted)?;
    // Reflection: a supervisor-to-worker frame (signed with worker 1's key, as the
    // supervisor signs them) sent back to the supervisor.
    let reflected = raw_frame(
        &h.key(1),
        1,
        Direction::ToWorker,
        now_ms(),
        [22; 16],
        2,
        &heartbeat(),
    );
    stream1.write_all(&reflected)?;
    rejected(supervisor1.recv(PATIENCE), RejectKind::Misrouted)?;
    // And on the worker side: its own frame reflected back to it.
    let worker = h.worker(1);
    let _accepted = h.accept();
    let mut checker = FrameChecker::for_worker(
        1,
        h.key(1),
        EndpointSettings::new(Duration::from_secs(30), 65536, 100),
    );
    let own = raw_frame(
        &h.key(1),
        1,
        Direction::ToSupervisor,
        now_ms(),
        [23; 16],
        1,
        &heartbeat(),
    );
    rejected(checker.check(&mut &own[..]), RejectKind::Misrouted)?;
    worker.tx.close();
    Ok(())
}

/// CTRL-07: a local client that connects and sends garbage is disconnected, while an
/// authenticated session on another connection keeps working.
fn ctrl_07(transport: ControlTransport) -> Result<(), Failed> {
    let h = Harness::new(transport, 1);
    let mut worker = h.worker(1);
    let mut supervisor = h.accept().endpoint;
    let mut garbage = connect(h.server.address()).unwrap();
    garbage.write_all(&[0x00, 0x00, 0x01, 0x00])?;
    garbage.write_all(&[0xab; 256])?;
    let refused = h.server.accept(PATIENCE);
    check(refused.is_err(), || {
        format!("garbage accepted: {refused:?}")
    })?;
    garbage.set_nonblocking_for_test();
    let mut byte = [0u8; 1];
    check(matches!(garbage.read(&mut byte), Ok(0)), || {
        "garbage client not disconnected".into()
    })?;
    for i in 0..5u64 {
        worker.send(&heartbeat(), i)?;
        let got = supervisor.recv(PATIENCE)?;
        check(got.kind() == MessageKind::Heartbeat, || "heartbeat".into())?;
        supervisor.send(
            &ControlMessage::Ack {
                kind: MessageKind::Heartbeat as u8,
                correlation: i,
            },
            i,
        )?;
        check(worker.recv(PATIENCE)?.kind() == MessageKind::Ack, || {
            "ack".into()
        })?;
    }
    Ok(())
}

/// CTRL-08 (CI slice): 10^5 random and mutated frames through the full check pipeline, on both
/// sides: no panic, and no frame accepted unless it is a captured original seen the first time.
fn ctrl_08() -> Result<(), Failed> {
    let master = MasterKey::generate().unwrap();
    let ids = vec!["group#1".to_string(), "group#2".to_string()];
    let directory = Arc::new(KeyDirectory::derive(&master, &ids));
    let key = master.derive("group#1");
    let originals: Vec<Vec<u8>> = (1..=8u64)
        .map(|seq| {
            raw_frame(
                &key,
                1,
                Direction::ToSupervisor,
                now_ms(),
                [seq as u8; 16],
                seq,
                &heartbeat(),
            )
        })
        .collect();
    let cases: u32 = std::env::var("STREAM_KERNEL_R7_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rss_before = resident_kib();
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let mutation = (
        0usize..8,
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        any::<Option<usize>>(),
        prop::collection::vec(any::<u8>(), 0..96),
        0u8..3,
    );
    let settings = EndpointSettings::new(Duration::from_secs(30), 4096, 100_000);
    runner
        .run(&mutation, |(which, flips, cut, random, mode)| {
            let mut frame = match mode {
                0 => random.clone(),
                _ => originals[which].clone(),
            };
            for (at, bits) in &flips {
                if !frame.is_empty() {
                    let i = at % frame.len();
                    frame[i] ^= bits;
                }
            }
            if let Some(cut) = cut {
                frame.truncate(cut % (frame.len() + 1));
            }
            if mode == 2 {
                frame.extend_from_slice(&random);
            }
            let mut supervisor =
                FrameChecker::for_supervisor(Arc::clone(&directory), Arc::clone(&settings));
            if let Ok(received) = supervisor.check(&mut &frame[..]) {
                let original = originals.iter().any(|o| frame.starts_with(o));
                prop_assert!(original, "forged frame accepted: {received:?}");
            }
            let mut worker = FrameChecker::for_worker(1, key.clone(), Arc::clone(&settings));
            prop_assert!(
                worker.check(&mut &frame[..]).is_err(),
                "worker accepted a frame addressed to the supervisor"
            );
            Ok(())
        })
        .map_err(|e| Failed::from(e.to_string()))?;
    let rss_after = resident_kib();
    println!(
        "R7 frames: {cases} random, truncated, oversized and bit-flipped frames through both sides' checks: 0 panics, 0 frames accepted without the key, RSS {rss_before} -> {rss_after} KiB"
    );
    Ok(())
}

/// This process's resident memory in KiB.
fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// A worker's key reaches it only through the inherited pipe: not in its argv, not in its
/// environment, not in any formatted error or log line of the run.
fn key_hygiene(transport: ControlTransport) -> Result<(), Failed> {
    let h = Harness::new(transport, 1);
    let key = h.key(1);
    let pipe = KeyPipe::with_key(&key)?;
    let read_fd = pipe.read_fd();
    let mut command = Command::new(std::env::current_exe()?);
    command
        .env(ROLE, "worker")
        .env(ADDRESS, h.server.address().to_string())
        .env(NUMBER, "1")
        .env(WORKER_ID, "group#1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: only dup2 (async-signal-safe) runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // When the pipe already is fd 3, dup2 does nothing and leaves close-on-exec set
            // (the test threads run in parallel, so fd 3 may be free when the pipe is made).
            if read_fd == KEY_FD {
                if libc::fcntl(KEY_FD, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(read_fd, KEY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    drop(pipe);
    let Some(accepted) = h.server.accept(PATIENCE)? else {
        let mut child = child;
        let _ = child.kill();
        let output = child.wait_with_output()?;
        return Err(format!(
            "the worker did not connect; its stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    };
    check(accepted.worker_id == "group#1", || "hello".into())?;
    let pid = child.id();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    let environ = std::fs::read(format!("/proc/{pid}/environ"))?;
    let mut endpoint = accepted.endpoint;
    endpoint.send(
        &ControlMessage::Stop {
            mode: stream_kernel::control::StopMode::Graceful,
            deadline_ms: 0,
        },
        1,
    )?;
    let output = child.wait_with_output()?;
    check(output.status.success(), || {
        format!("worker failed: {}", String::from_utf8_lossy(&output.stderr))
    })?;
    let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let debug = format!("{:?}", key.as_bytes());
    let haystacks: [(&str, &[u8]); 4] = [
        ("argv", &cmdline),
        ("environment", &environ),
        ("stdout", &output.stdout),
        ("stderr", &output.stderr),
    ];
    for (name, bytes) in haystacks {
        let text = String::from_utf8_lossy(bytes);
        check(!contains(bytes, key.as_bytes()), || {
            format!("raw key bytes in {name}")
        })?;
        check(!text.contains(&hex) && !text.contains(&debug), || {
            format!("key text in {name}")
        })?;
    }
    // Formatted keys and key errors are redacted.
    let formatted = [
        format!("{key:?}"),
        format!("{key}"),
        format!("{:?}", h.master),
        format!(
            "{}",
            stream_kernel::control::KeyError::WrongLength { fd: 3, got: 31 }
        ),
    ];
    for text in formatted {
        check(!text.contains(&hex) && !text.contains(&debug), || {
            format!("key in {text}")
        })?;
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The child worker of `key_hygiene`: key from fd 3, HELLO, wait for STOP, say what it did.
fn child_worker() -> i32 {
    let run = || -> Result<(), String> {
        // SAFETY: fd 3 was set up for this process alone by the parent (dup2 in pre_exec).
        let key = unsafe { stream_kernel::control::read_inherited_key(KEY_FD) }
            .map_err(|e| e.to_string())?;
        let address: ControlAddress = std::env::var(ADDRESS).map_err(|e| e.to_string())?.parse()?;
        let number: u32 = std::env::var(NUMBER)
            .map_err(|e| e.to_string())?
            .parse()
            .map_err(|e| format!("{e}"))?;
        let worker_id = std::env::var(WORKER_ID).map_err(|e| e.to_string())?;
        let stream = connect(&address).map_err(|e| e.to_string())?;
        let settings = EndpointSettings::new(Duration::from_secs(30), 65536, 100);
        let mut endpoint =
            Endpoint::worker_side(stream, number, key, settings).map_err(|e| e.to_string())?;
        eprintln!("worker {worker_id}: connected to {address}, key from fd {KEY_FD}");
        endpoint
            .send(
                &ControlMessage::Hello {
                    worker_id,
                    pid: std::process::id(),
                },
                0,
            )
            .map_err(|e| e.to_string())?;
        let stop = endpoint.recv(PATIENCE).map_err(|e| e.to_string())?;
        println!("worker: received {}", stop.kind());
        Ok(())
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("worker failed: {e}");
            1
        }
    }
}
