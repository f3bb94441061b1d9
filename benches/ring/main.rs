//! Ring benchmark (docs/performance.md): our shared-memory ring against other IPC stacks, in one run.
//!
//! Every message is a real envelope: the envelope header plus an rkyv payload of 64 B, 1 KiB
//! or 64 KiB, and the receiver always validates the header and accesses the payload with
//! bytecheck. Each peer is driven the way its own documentation recommends for this job, and
//! the report says how (see `PEERS`). Cross-process peers run as a child of this binary: it
//! re-executes itself with `SK_BENCH_ROLE` set, and `main` runs that role before criterion
//! sees the arguments.
//!
//! Files: `common` (message, checks, measuring loops), one file per peer family (`ours`,
//! `streams`, `ipc_channel`, `iceoryx2`, `slots`: rtrb and crossbeam-channel), `calib`
//! (cache-line and futex ping-pong), `report` (the final table).
//!
//! Groups: `calib` (run first and last; the run is discarded if they differ by more than
//! 20%), `rtt/<size>`, `tput/<size>`, `envelope/<size>`, `memcpy`, `minimal` (two-thread
//! stream loops of rtrb and ours with no harness), and `wake` (a parked
//! consumer's wake-up). Short run: `tools/bench-ring.sh`; `SK_BENCH_GROUPS=rtt,tput` limits a
//! run to some groups.

mod calib;
mod common;
mod iceoryx2;
mod ipc_channel;
mod ours;
mod report;
mod slots;
mod streams;

use std::process::Child;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use rkyv::ser::allocator::Arena;
use stream_kernel::data::{
    Consumer, ENVELOPE_HEADER, HeapMemory, WaitStrategy, init_ring, ring_memory_len,
};
use stream_kernel::graph::{AlignedBuf, Message, encode_into};

use common::{
    ARG, BATCH, BenchPayload, EXIT, Link, RING_BYTES, ROLE, SIZES, measure_rtt, measure_tput,
    payload_of, record, record_value, thread_cpu,
};

/// A peer of the benchmark: its id in the tables and how it is driven.
pub struct Peer {
    pub id: &'static str,
    pub how: &'static str,
}

/// Peers in report order.
pub const PEERS: [Peer; 12] = [
    Peer {
        id: "ours-latency",
        how: "our ring, two processes, latency profile, one publication per batch",
    },
    Peer {
        id: "ours-balanced",
        how: "our ring, two processes, balanced profile (parks when idle)",
    },
    Peer {
        id: "ours-per-message",
        how: "our ring, two processes, latency profile, published after every message",
    },
    Peer {
        id: "ours-threads",
        how: "our ring, two threads of one process (heap memory)",
    },
    Peer {
        id: "iceoryx2",
        how: "iceoryx2 0.10 pub-sub, 16-aligned payloads, encoded into the loan, validated in the sample, busy poll",
    },
    Peer {
        id: "ipc-channel",
        how: "ipc-channel bytes; received Vec copied to align for rkyv",
    },
    Peer {
        id: "unix-socket",
        how: "Unix stream socket, 256 KiB buffered writer, flushed per batch",
    },
    Peer {
        id: "unix-socket-per-msg",
        how: "Unix stream socket, one write per message",
    },
    Peer {
        id: "pipe",
        how: "pipe (1 MiB), 256 KiB buffered writer, flushed per batch",
    },
    Peer {
        id: "crossbeam-slots",
        how: "crossbeam-channel, 64-aligned fixed slots by value (in-process)",
    },
    Peer {
        id: "crossbeam-bytes",
        how: "crossbeam-channel, an owned Vec<u8> per message (in-process)",
    },
    Peer {
        id: "rtrb-slots",
        how: "rtrb, 64-aligned fixed slots, one chunk and commit per batch, read in place (in-process only)",
    },
];

fn make_peer(peer: &str, size: usize, echo: bool) -> (Box<dyn Link>, Option<Child>) {
    let child = |(link, child): (Box<dyn Link>, Child)| (link, Some(child));
    match peer {
        "ours-latency" => child(ours::ours(WaitStrategy::LATENCY, size, echo, false)),
        "ours-balanced" => child(ours::ours(WaitStrategy::BALANCED, size, echo, false)),
        "ours-efficiency" => child(ours::ours(WaitStrategy::EFFICIENCY, size, echo, false)),
        "ours-per-message" => child(ours::ours(WaitStrategy::LATENCY, size, echo, true)),
        "ours-threads" => (ours::ours_threads(size, echo), None),
        "iceoryx2" => child(iceoryx2::iceoryx2_peer(size, echo)),
        "ipc-channel" => child(ipc_channel::ipc_channel_peer(size, echo)),
        "unix-socket" => child(streams::unix_socket(size, echo, true)),
        "unix-socket-per-msg" => child(streams::unix_socket(size, echo, false)),
        "pipe" => child(streams::pipe_peer(size, echo)),
        "crossbeam-slots" => (slots::crossbeam_slots_peer(size, echo), None),
        "crossbeam-bytes" => (slots::crossbeam_bytes_peer(size, echo), None),
        "rtrb-slots" => (slots::rtrb_peer(size, echo), None),
        other => panic!("unknown peer {other}"),
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
        measure_tput(link, 100, BATCH)
    };
    assert!(!elapsed.is_zero(), "{peer}: no work done");
}

fn bench_calib(c: &mut Criterion, label: &str) {
    let mut group = c.benchmark_group("calib");
    let calib = calib::calib_start("calib-spin");
    let id = format!("calib/hop-{label}");
    group.bench_function(BenchmarkId::new("hop", label), |b| {
        // One iteration = one round trip = two hops.
        b.iter_custom(|iters| {
            let (rtt, cpu_share) = calib::calib_spin_rtt(&calib, iters);
            record_value(&format!("calib/cpu-share-{label}"), cpu_share);
            record(&id, iters * 2, rtt) / 2
        });
    });
    calib.stop();
    group.finish();
}

fn bench_rtt(c: &mut Criterion, size: usize) {
    let mut group = c.benchmark_group(format!("rtt/{size}"));
    for Peer { id: peer, .. } in PEERS {
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
    for Peer { id: peer, .. } in PEERS {
        let (mut link, child) = make_peer(peer, size, false);
        check_peer(link.as_mut(), peer, false);
        let id = format!("tput/{size}/{peer}");
        group.bench_function(peer, |b| {
            b.iter_custom(|iters| record(&id, iters, measure_tput(link.as_mut(), iters, BATCH)));
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

/// The minimal two-thread stream loops (64 B), no harness: what rtrb and our ring cost for
/// this job when nothing else is timed, and what the `rtrb-slots` row adds to rtrb.
fn bench_minimal(c: &mut Criterion) {
    let mut group = c.benchmark_group("minimal");
    let mut rtrb = slots::RtrbMinimal::start();
    group.bench_function("rtrb", |b| {
        b.iter_custom(|iters| record("minimal/rtrb", iters, rtrb.run(iters)));
    });
    drop(rtrb);
    let mut ours = ours::OursMinimal::start();
    group.bench_function("ours", |b| {
        b.iter_custom(|iters| record("minimal/ours", iters, ours.run(iters)));
    });
    drop(ours);
    group.finish();
}

/// A parked balanced consumer's wake-up: the child parks between messages (the gap is not
/// timed), so each round trip starts with a futex wake. Compared with a plain futex ping-pong
/// after the same gap, measured just before.
fn bench_wake(c: &mut Criterion) {
    let mut group = c.benchmark_group("wake");
    let calib = calib::calib_start("calib-futex");
    group.bench_function("futex-rtt", |b| {
        b.iter_custom(|iters| {
            record(
                "calib/futex-rtt",
                iters,
                calib::calib_futex_rtt(&calib, iters),
            )
        });
    });
    group.bench_function("futex-rtt-after-idle", |b| {
        b.iter_custom(|iters| {
            record(
                "calib/futex-rtt-after-idle",
                iters,
                calib::calib_futex_rtt_after_gap(&calib, iters),
            )
        });
    });
    calib.stop();
    for profile in ["balanced", "efficiency"] {
        let (mut link, child) = make_peer(&format!("ours-{profile}"), 64, true);
        let id = format!("{profile}-parked-rtt");
        group.bench_function(&id, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    std::thread::sleep(calib::WAKE_GAP);
                    let start = Instant::now();
                    link.send(i);
                    link.flush();
                    link.recv();
                    total += start.elapsed();
                }
                record(&format!("wake/{id}"), iters, total)
            });
        });
        finish_peer(link, child);
    }
    group.finish();
}

/// CPU share of a balanced consumer waiting one second on an idle ring.
fn idle_consumer_cpu_share() -> f64 {
    let memory = HeapMemory::new(ring_memory_len(1 << 16));
    init_ring(&memory, 1 << 16, 1).expect("init");
    let mut consumer = Consumer::attach(memory, WaitStrategy::BALANCED).expect("attach");
    let start = thread_cpu();
    let wall = Instant::now();
    let _ = consumer.wait(Duration::from_secs(1));
    (thread_cpu() - start).as_secs_f64() / wall.elapsed().as_secs_f64()
}

fn run_child(role: &str) {
    let arg = std::env::var(ARG).unwrap_or_default();
    match role {
        "ours" => ours::child_ours(&arg),
        "unix" => streams::child_unix(&arg),
        "pipe" => streams::child_pipe(&arg),
        "ipc-channel" => ipc_channel::child_ipc_channel(&arg),
        "iceoryx2" => iceoryx2::child_iceoryx2(&arg),
        "calib-spin" => calib::child_calib(&arg, false),
        "calib-futex" => calib::child_calib(&arg, true),
        other => panic!("unknown bench role {other}"),
    }
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        run_child(&role);
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
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
    if run("minimal") {
        bench_minimal(&mut criterion);
    }
    if run("wake") {
        bench_wake(&mut criterion);
    }
    bench_calib(&mut criterion, "last");
    criterion.final_summary();
    report::report(idle_consumer_cpu_share());
}
