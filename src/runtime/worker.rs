//! The worker process: what a spawned child does from `worker_entry` to exit.
//!
//! Sequence: check the parent is still the supervisor; read the key from fd 3; connect and say
//! HELLO; receive the bootstrap bundle (once; a second is refused) and acknowledge it with its
//! correlation id; rebuild the graph from the bundled config and build this group's nodes; run
//! every `on_start` (a failure is reported as `bootstrap_error` and nothing is ingested); say
//! READY; wait for START_WORK — **no source reads a byte before it**; run the data loop; report
//! DRAINED; exit on STOP.
//!
//! A control thread handles START_WORK and STOP and exits the process if the supervisor goes
//! away; a heartbeat thread reports counters every `heartbeat_seconds`.

use crate::data::RingCorrupted;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::chain::Egress;
use super::dead_letter::{DeadLetterRecord, DeadLetters};
use super::inline::{LocalPipeline, RunError};
use super::summary::encode_reports;
use super::topology::Topology;
use crate::config::Config;
use crate::control::{
    BootstrapBundle, ControlAddress, ControlMessage, Endpoint, EndpointSettings, FrameSender,
    KEY_FD, MessageKind, ReadError, StopMode, WorkerCounters, WorkerSession, connect,
    read_inherited_key,
};
use crate::data::{
    Consumer, EnvelopeHeader, EnvelopeKind, PollError, Producer, PushError, Segment, StreamCheck,
    StreamError, WaitStrategy, push_envelope,
};
use crate::graph::{
    AlignedBuf, EncodeFn, Graph, MessageType, NodeError, NodeState, PartitionKey, Placement,
    RecordContext, Registry,
};
use crate::observability::span::Tracer;
use crate::observability::telemetry::RingSpanSink;
use crate::supervisor::spawn::env;

/// Worker exit statuses.
pub mod exit {
    /// The worker drained (or was stopped) and exited normally.
    pub const OK: i32 = 0;
    /// A node failed under the `fail` policy (reported as `node_error`).
    pub const NODE_ERROR: i32 = 1;
    /// Bootstrap failed (reported as `bootstrap_error`).
    pub const BOOTSTRAP: i32 = 2;
    /// The control channel failed or the supervisor went away.
    pub const CONTROL: i32 = 3;
    /// The worker's parent is not the supervisor that spawned it.
    pub const ORPHANED: i32 = 4;
}

/// Turns this process into a worker when it was spawned as one (never returns then), and
/// returns at once otherwise. A program that embeds the engine calls it first thing in `main`,
/// with the registry its workers need:
///
/// ```no_run
/// // First thing in `main`:
/// stream_kernel::worker_entry(stream_kernel::apps::fund_load::registry);
/// // ... the program proper: build and run a supervised pipeline ...
/// ```
pub fn worker_entry(make_registry: impl FnOnce() -> Registry) {
    if std::env::var(env::ROLE).as_deref() != Ok("worker") {
        return;
    }
    ignore_terminal_signals();
    let code = match WorkerEnv::from_env() {
        Ok(worker_env) => run_worker(&worker_env, make_registry()),
        Err(e) => {
            eprintln!("stream-kernel worker: {e}");
            exit::CONTROL
        }
    };
    crate::observability::otlp_logs::shutdown();
    std::process::exit(code);
}

/// A worker shares its supervisor's process group, so a terminal's Ctrl-C or hang-up (and a
/// service manager's SIGTERM to the whole group) reaches it too. Its lifecycle is the
/// supervisor's to drive: it drains or stops when told over the control channel, and dies
/// with the supervisor (death signal) if that goes away. So these signals are ignored here.
fn ignore_terminal_signals() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        // SAFETY: installing SIG_IGN runs no handler code; nothing else in this process has
        // installed handlers for these signals yet.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
}

/// What the supervisor told this worker through its environment.
#[derive(Debug, Clone)]
pub struct WorkerEnv {
    pub worker_id: String,
    pub number: u32,
    pub control: ControlAddress,
    pub supervisor_pid: u32,
    pub start_timeout: Duration,
    pub control_ttl: Duration,
    pub control_max_payload: u64,
}

impl WorkerEnv {
    fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
        let number = |name: &str| -> Result<u64, String> {
            var(name)?.parse().map_err(|e| format!("{name}: {e}"))
        };
        Ok(Self {
            worker_id: var(env::WORKER_ID)?,
            number: number(env::WORKER_NUMBER)? as u32,
            control: var(env::CONTROL)?.parse()?,
            supervisor_pid: number(env::SUPERVISOR_PID)? as u32,
            start_timeout: Duration::from_millis(number(env::START_TIMEOUT_MS)?),
            control_ttl: Duration::from_millis(number(env::CONTROL_TTL_MS)?),
            control_max_payload: number(env::CONTROL_MAX_PAYLOAD)?,
        })
    }
}

/// STOP as the data loop sees it.
const RUNNING: u8 = 0;
const STOP_GRACEFUL: u8 = 1;
const STOP_ABORT: u8 = 2;

/// State shared by the worker's threads.
struct Shared {
    worker_id: String,
    tx: Mutex<FrameSender>,
    session: Mutex<WorkerSession>,
    started: (Mutex<bool>, Condvar),
    stop: AtomicU8,
    records_in: AtomicU64,
    records_out: AtomicU64,
    /// Highest `seq` completed in order (the worker where records end: written and flushed).
    completed: AtomicU64,
    /// Nanoseconds spent waiting on rings (idle inbound, full outbound) since START_WORK.
    idle_ns: AtomicU64,
    /// The route cache's counters as of the last batch.
    route_cache: Mutex<Vec<u64>>,
    done: AtomicBool,
    /// STOP means "stop ingesting and drain" for the worker that holds the source, "stop at
    /// the next batch" for the others.
    holds_source: AtomicBool,
}

impl Shared {
    fn send(&self, message: &ControlMessage, correlation: u64) -> bool {
        match self.tx.lock() {
            Ok(mut tx) => tx.send(message, correlation).is_ok(),
            Err(_) => false,
        }
    }

    fn is_started(&self) -> bool {
        self.started.0.lock().map(|s| *s).unwrap_or(false)
    }

    fn add_idle(&self, waited: Duration) {
        self.idle_ns
            .fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) != RUNNING
    }

    /// The source's worker drains on a graceful STOP (SIGTERM semantics: everything read is
    /// finished); never when the run failed and was aborted.
    fn drain_on_stop(&self) -> bool {
        self.holds_source.load(Ordering::Relaxed) && self.stop.load(Ordering::Relaxed) != STOP_ABORT
    }

    /// Blocks until STOP arrives (woken by the control thread, no polling).
    fn wait_for_stop(&self) {
        let (lock, signal) = &self.started;
        let Ok(mut guard) = lock.lock() else { return };
        while !self.stopping() {
            match signal.wait_timeout(guard, Duration::from_secs(1)) {
                Ok((next, _)) => guard = next,
                Err(_) => return,
            }
        }
    }

    /// Waits for START_WORK (true) or STOP (false), at most `timeout`.
    fn wait_for_start(&self, timeout: Duration) -> bool {
        let (lock, signal) = &self.started;
        let deadline = Instant::now() + timeout;
        let Ok(mut started) = lock.lock() else {
            return false;
        };
        while !*started && !self.stopping() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            match signal.wait_timeout(started, (deadline - now).min(Duration::from_millis(200))) {
                Ok((guard, _)) => started = guard,
                Err(_) => return false,
            }
        }
        *started
    }

    fn fail(&self, category: &str, message: String) {
        tracing::error!(worker_id = %self.worker_id, category, "{message}");
        self.send(
            &ControlMessage::Failed {
                category: category.to_string(),
                message,
            },
            0,
        );
    }
}

fn run_worker(worker_env: &WorkerEnv, registry: Registry) -> i32 {
    // The death signal was set between fork and exec; a parent that died before that left us
    // with another parent. Checked right after start, as supervisor.md asks.
    if nix::unistd::getppid().as_raw() as u32 != worker_env.supervisor_pid {
        eprintln!(
            "worker {}: parent is not supervisor {}; exiting",
            worker_env.worker_id, worker_env.supervisor_pid
        );
        return exit::ORPHANED;
    }
    // SAFETY: the supervisor moved the key pipe to fd 3 for this process alone.
    let key = match unsafe { read_inherited_key(KEY_FD) } {
        Ok(key) => key,
        Err(e) => {
            eprintln!("worker {}: {e}", worker_env.worker_id);
            return exit::CONTROL;
        }
    };
    let settings =
        EndpointSettings::new(worker_env.control_ttl, worker_env.control_max_payload, 4096);
    let endpoint = connect(&worker_env.control)
        .and_then(|stream| Endpoint::worker_side(stream, worker_env.number, key, settings));
    let mut endpoint = match endpoint {
        Ok(endpoint) => endpoint,
        Err(e) => {
            eprintln!("worker {}: {e}", worker_env.worker_id);
            return exit::CONTROL;
        }
    };
    let hello = ControlMessage::Hello {
        worker_id: worker_env.worker_id.clone(),
        pid: std::process::id(),
    };
    if let Err(e) = endpoint.send(&hello, 0) {
        eprintln!("worker {}: HELLO failed: {e}", worker_env.worker_id);
        return exit::CONTROL;
    }
    let mut session = WorkerSession::new(&worker_env.worker_id);
    let (bundle, correlation) = match receive_bundle(&mut endpoint, worker_env.start_timeout) {
        Ok(received) => received,
        Err(e) => {
            eprintln!("worker {}: no bootstrap bundle: {e}", worker_env.worker_id);
            return exit::CONTROL;
        }
    };
    if session.on_bootstrap().is_err() {
        return exit::CONTROL;
    }
    let ack = ControlMessage::Ack {
        kind: MessageKind::BootstrapBundle as u8,
        correlation,
    };
    if endpoint.send(&ack, correlation).is_err() {
        return exit::CONTROL;
    }
    let (tx, rx) = endpoint.split();
    let shared = Arc::new(Shared {
        worker_id: worker_env.worker_id.clone(),
        tx: Mutex::new(tx),
        session: Mutex::new(session),
        started: (Mutex::new(false), Condvar::new()),
        stop: AtomicU8::new(RUNNING),
        records_in: AtomicU64::new(0),
        records_out: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        idle_ns: AtomicU64::new(0),
        route_cache: Mutex::new(Vec::new()),
        done: AtomicBool::new(false),
        holds_source: AtomicBool::new(false),
    });
    run_bootstrapped(worker_env, registry, &bundle, rx, shared)
}

fn receive_bundle(
    endpoint: &mut Endpoint,
    timeout: Duration,
) -> Result<(BootstrapBundle, u64), String> {
    let received = endpoint.recv(timeout).map_err(|e| e.to_string())?;
    match received.message {
        ControlMessage::BootstrapBundle(bundle) => Ok((bundle, received.header.correlation)),
        other => Err(format!("expected BOOTSTRAP_BUNDLE, got {}", other.kind())),
    }
}

fn run_bootstrapped(
    worker_env: &WorkerEnv,
    registry: Registry,
    bundle: &BootstrapBundle,
    rx: crate::control::FrameReceiver,
    shared: Arc<Shared>,
) -> i32 {
    let config = match crate::config::load_str(&bundle.config_yaml, &registry) {
        Ok(loaded) => loaded.config,
        Err(report) => {
            shared.fail(
                "bootstrap_error",
                format!("bundled config does not load: {report}"),
            );
            return exit::BOOTSTRAP;
        }
    };
    let _ = crate::observability::logging::init(
        &config.runtime.observability.logging,
        crate::observability::logging::LogIdentity::current(&worker_env.worker_id),
    );
    let graph = match Graph::checked(&config, &registry) {
        Ok(graph) => graph,
        Err(report) => {
            shared.fail(
                "bootstrap_error",
                format!("bundled pipeline does not build a graph: {report}"),
            );
            return exit::BOOTSTRAP;
        }
    };
    let topology = Topology::of(&config, &graph);
    let mut pipeline = match build_pipeline(&config, &registry, &graph, bundle) {
        Ok(pipeline) => pipeline,
        Err(e) => {
            shared.fail("bootstrap_error", e.detail());
            return exit::BOOTSTRAP;
        }
    };
    let io = match GroupIo::attach(&config, bundle) {
        Ok(io) => io,
        Err(e) => {
            shared.fail("ring_corrupted", e);
            return exit::BOOTSTRAP;
        }
    };
    if let Err(e) = attach_telemetry(&config, bundle, &worker_env.worker_id, &mut pipeline) {
        shared.fail("ring_corrupted", e);
        return exit::BOOTSTRAP;
    }
    if let Err(e) = pipeline.start() {
        shared.fail("bootstrap_error", e.detail());
        return exit::BOOTSTRAP;
    }
    shared
        .holds_source
        .store(pipeline.source.is_some(), Ordering::Relaxed);
    let ready = shared
        .session
        .lock()
        .map(|mut s| s.on_ready().is_ok())
        .unwrap_or(false);
    if !ready
        || !shared.send(
            &ControlMessage::Ready {
                worker_id: worker_env.worker_id.clone(),
            },
            0,
        )
    {
        return exit::CONTROL;
    }
    spawn_control_thread(rx, Arc::clone(&shared));
    spawn_heartbeat_thread(
        heartbeat_interval(&config, &bundle.group),
        Arc::clone(&shared),
    );
    let readiness =
        Duration::from_secs_f64(config.runtime.platform.readiness.readiness_timeout_seconds);
    // Every worker of every group must be READY before START_WORK: allow for all of them.
    if !shared.wait_for_start(readiness + worker_env.start_timeout) {
        return exit_after_stop(&shared);
    }
    let Some(span) = topology.group(&bundle.group).cloned() else {
        shared.fail(
            "bootstrap_error",
            format!("group {} is not in the topology", bundle.group),
        );
        return exit::BOOTSTRAP;
    };
    let mut data = GroupData {
        config: &config,
        topology: &topology,
        span,
        pipeline: &mut pipeline,
        shared: &shared,
        next_group_keys: next_group_keys(&topology, &graph, &bundle.group),
        timed_count: 0,
        ends_chain: io.outbound.is_empty(),
        skip: bundle.skip,
        completed: 0,
    };
    let code = data.run(io);
    if code != exit::OK {
        return code;
    }
    exit_after_stop(&shared)
}

/// The partition keys of the partitioned nodes in the group after `group`, by graph index.
fn next_group_keys(
    topology: &Topology,
    graph: &Graph,
    group: &str,
) -> HashMap<usize, PartitionKey> {
    let Some(next) = topology.next(group) else {
        return HashMap::new();
    };
    (next.first..=next.last)
        .filter_map(|i| match &graph.nodes.get(i)?.state {
            NodeState::Partitioned(key) => Some((i, key.clone())),
            _ => None,
        })
        .collect()
}

/// The ring (of `rings`, one per worker of the next group) that a partition hash maps to.
/// The hash is mixed first: key hashes of ids are not uniform in their low bits.
fn partition_ring(hash: u64, rings: usize) -> usize {
    let mut z = hash ^ (hash >> 31);
    z = z.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((z ^ (z >> 29)) % rings.max(1) as u64) as usize
}

/// Points the pipeline's tracer at this worker's telemetry ring (tracing on).
fn attach_telemetry(
    config: &Config,
    bundle: &BootstrapBundle,
    worker_id: &str,
    pipeline: &mut LocalPipeline,
) -> Result<(), String> {
    let Some(binding) = &bundle.telemetry else {
        return Ok(());
    };
    // SAFETY: the supervisor passed this fd to this worker alone (spawn.rs).
    let segment = unsafe { Segment::open_inherited(binding.fd, binding.len as usize) }
        .map_err(|e| format!("telemetry ring: {e}"))?;
    let producer = Producer::attach(segment, WaitStrategy::EFFICIENCY)
        .map_err(|e| format!("telemetry ring: {e}"))?;
    pipeline.env.tracer = Some(Tracer::new(
        config.runtime.observability.tracing.sample_ratio,
        worker_id.to_string(),
        Box::new(RingSpanSink::new(producer)),
    ));
    Ok(())
}

fn heartbeat_interval(config: &Config, group: &str) -> Duration {
    config
        .runtime
        .platform
        .process_groups
        .iter()
        .find(|g| g.name == group)
        .map_or(Duration::from_secs(5), |g| {
            Duration::from_secs_f64(g.heartbeat_seconds)
        })
}

fn build_pipeline(
    config: &Config,
    registry: &Registry,
    graph: &Graph,
    bundle: &BootstrapBundle,
) -> Result<LocalPipeline, RunError> {
    let placement = Placement {
        group: bundle.group.clone(),
        worker_index: bundle.worker_index,
        workers: bundle.workers,
    };
    let local: Vec<bool> = graph
        .nodes
        .iter()
        .map(|n| bundle.node_names.contains(&n.name))
        .collect();
    LocalPipeline::build(
        config,
        registry,
        graph,
        &placement,
        |i| local[i],
        bundle.run_id,
        bundle.skip,
    )
}

/// The rings of one worker: inbound from the previous group, outbound to the next.
struct GroupIo {
    inbound: Vec<Consumer<Segment>>,
    outbound: Vec<Producer<Segment>>,
}

impl GroupIo {
    fn attach(config: &Config, bundle: &BootstrapBundle) -> Result<Self, String> {
        let profile = config
            .runtime
            .platform
            .process_groups
            .iter()
            .find(|g| g.name == bundle.group)
            .map_or(WaitStrategy::BALANCED, |g| {
                WaitStrategy::for_profile(g.runner_profile)
            });
        let mut io = Self {
            inbound: Vec::new(),
            outbound: Vec::new(),
        };
        for binding in &bundle.rings {
            // SAFETY: the supervisor passed this fd to this worker alone (spawn.rs).
            let segment = unsafe { Segment::open_inherited(binding.fd, binding.len as usize) }
                .map_err(|e| format!("ring with {}: {e}", binding.peer))?;
            if binding.inbound {
                io.inbound.push(
                    Consumer::attach(segment, profile)
                        .map_err(|e| format!("ring from {}: {e}", binding.peer))?,
                );
            } else {
                io.outbound.push(
                    Producer::attach(segment, profile)
                        .map_err(|e| format!("ring to {}: {e}", binding.peer))?,
                );
            }
        }
        Ok(io)
    }
}

/// How long one blocked push waits before checking whether the run is stopping.
const PUSH_SLICE: Duration = Duration::from_millis(100);
/// How long one idle wait on the inbound ring lasts before checking STOP.
const WAIT_SLICE: Duration = Duration::from_millis(100);
/// A merge with no record on any ring waits this long on one ring before looking at the next.
const MERGE_IDLE_SLICE: Duration = Duration::from_millis(1);
/// Idle merge rounds (about a millisecond each) before it waits in [`WAIT_SLICE`]s.
const IDLE_ROUNDS_BEFORE_PARKING: u64 = 200;
/// Records taken from the inbound ring per batch (one release, one publish, one flush).
const BATCH: usize = 256;

/// The pseudo-category of [`WorkerFailure::stopped`].
const STOPPED: &str = "stopped";

/// A worker's failure, with its category.
struct WorkerFailure {
    category: &'static str,
    message: String,
    /// The record a node failed on (node errors only): everything before it is complete.
    failed_seq: Option<u64>,
    /// An output that failed to write: every record through this `seq` is written.
    written_through: Option<u64>,
}

impl WorkerFailure {
    fn ring(message: String) -> Self {
        Self {
            category: "ring_corrupted",
            message,
            failed_seq: None,
            written_through: None,
        }
    }

    /// A node error that is not about one record (opening or flushing an adapter).
    fn node(message: String) -> Self {
        Self {
            category: "node_error",
            message,
            failed_seq: None,
            written_through: None,
        }
    }

    /// The supervisor stopped the run (abort) while this worker was handing a record on:
    /// not a failure, the worker ends as interrupted.
    fn stopped() -> Self {
        Self {
            category: STOPPED,
            message: "stopped by the supervisor before the end of its input".to_string(),
            failed_seq: None,
            written_through: None,
        }
    }

    fn is_stopped(&self) -> bool {
        self.category == STOPPED
    }

    /// Handing a record or marker on failed: a stopping run, or a ring problem.
    fn handing_on(context: impl std::fmt::Display, error: NodeError) -> Self {
        match error {
            NodeError::Stopped => Self::stopped(),
            other => Self::ring(format!("{context}: {other}")),
        }
    }

    /// A batch flush of the outputs failed.
    fn flush(failure: &super::chain::NodeFailure) -> Self {
        Self {
            category: "node_error",
            message: format!("node `{}` failed to flush: {}", failure.node, failure.error),
            failed_seq: None,
            written_through: failure.error.written_through(),
        }
    }
}

/// Where a worker's values go when they leave its local chain: the next group's ring, or,
/// in the worker that holds the sink, the dead-letter adapter.
struct WorkerEgress<'s> {
    outbound: Vec<Producer<Segment>>,
    group_index: u16,
    dead_letters: Option<DeadLetters>,
    arena: rkyv::ser::allocator::Arena,
    /// Values sent on for the record being processed (0 after it: a drop).
    forwarded: u64,
    sent: u64,
    shared: &'s Shared,
    ring_error: Option<String>,
    /// How values pick one of several outbound rings (one per worker of the next group).
    routing: OutboundRouting,
    /// Watermark bookkeeping for the outbound rings.
    marks: Watermarks,
}

/// Ring choice when the next group has several workers: by the target node's partition key
/// (same key, same worker, always) or round robin for stateless targets. Ring `k` leads to
/// worker `k + 1` of the next group in every producer, so a key maps to one worker run-wide.
#[derive(Default)]
struct OutboundRouting {
    /// Partition keys of the next group's partitioned nodes, by graph index.
    keys: HashMap<usize, PartitionKey>,
    next: usize,
    /// Where a value is encoded to compute its key before it is copied into its ring.
    scratch: AlignedBuf,
}

impl OutboundRouting {
    fn round_robin(&mut self, rings: usize) -> usize {
        let ring = self.next % rings.max(1);
        self.next = self.next.wrapping_add(1);
        ring
    }
}

/// The watermark a worker publishes on each outbound ring: every record with `seq` at or
/// below it is fully processed and its outputs are written. Records are processed in `seq`
/// order (a merge feeds any worker with several inbound rings), so sending `seq` proves every
/// earlier record done; upstream watermarks prove it for records that sent nothing here.
#[derive(Default)]
struct Watermarks {
    /// Highest `seq` seen in an outgoing envelope.
    current: u64,
    /// Every record below `current` is done.
    done_through: u64,
    /// What the inbound rings prove done (records never routed to this worker included).
    upstream: u64,
    published: u64,
}

impl Watermarks {
    fn observe(&mut self, seq: u64) {
        if seq > self.current {
            self.done_through = self.done_through.max(seq - 1);
            self.current = seq;
        }
    }

    /// The watermark to publish now, if it moved.
    fn due(&mut self) -> Option<u64> {
        let mark = self.done_through.max(self.upstream);
        (mark > self.published).then(|| {
            self.published = mark;
            mark
        })
    }
}

/// Envelopes between watermark publications on the source's worker (others publish per batch).
const WATERMARK_EVERY: u64 = 256;

impl WorkerEgress<'_> {
    fn header_for(
        &self,
        ctx: &RecordContext<'_>,
        target: u32,
        kind: EnvelopeKind,
        route_hop: u16,
    ) -> EnvelopeHeader {
        EnvelopeHeader {
            seq: ctx.seq,
            trace_id: ctx.trace_id,
            parent_span_id: ctx.parent_span.to_be_bytes(),
            reply_to: ctx.reply_to,
            target,
            source_group: self.group_index,
            route_hop,
            trace_flags: u8::from(ctx.sampled),
            kind,
        }
    }

    /// Writes one envelope into the outbound ring, waiting out backpressure unless the run is
    /// being aborted.
    fn push(
        &mut self,
        ring: usize,
        header: &EnvelopeHeader,
        encode: &mut dyn FnMut(&mut [u8], &mut rkyv::ser::allocator::Arena) -> Option<usize>,
    ) -> Result<(), NodeError> {
        self.marks.observe(header.seq);
        if self.sent.is_multiple_of(WATERMARK_EVERY) {
            self.publish_watermark();
        }
        let Some(producer) = self.outbound.get_mut(ring) else {
            return Err(NodeError::failed(format!(
                "node {} is in another group and this worker has no ring to it",
                header.target
            )));
        };
        let arena = &mut self.arena;
        let stalled_before = producer.stalled();
        loop {
            let pushed = push_envelope(producer, header, |slot| encode(slot, arena), PUSH_SLICE);
            let stalled = producer.stalled();
            if stalled != stalled_before {
                self.shared.add_idle(stalled - stalled_before);
            }
            match pushed {
                Ok(_) => {
                    self.forwarded += 1;
                    self.sent += 1;
                    return Ok(());
                }
                Err(PushError::TimedOut)
                    if self.shared.stopping() && !self.shared.drain_on_stop() =>
                {
                    return Err(NodeError::Stopped);
                }
                Err(PushError::TimedOut) => {}
                Err(PushError::TooLarge { len, max }) => {
                    return Err(NodeError::failed(format!(
                        "an envelope of more than {len} bytes does not fit the ring (max {max})"
                    )));
                }
                Err(PushError::Corrupted(e)) => {
                    self.ring_error = Some(e.to_string());
                    return Err(NodeError::failed(format!("outbound ring corrupted: {e}")));
                }
            }
        }
    }

    /// Forwards an envelope received from upstream, one hop further.
    fn forward_raw(&mut self, header: &EnvelopeHeader, payload: &[u8]) -> Result<(), NodeError> {
        let mut header = *header;
        header.route_hop = header.route_hop.saturating_add(1);
        header.source_group = self.group_index;
        let ring = self.routing.round_robin(self.outbound.len());
        self.push(ring, &header, &mut |slot, _| {
            slot.get_mut(..payload.len())?.copy_from_slice(payload);
            Some(payload.len())
        })
    }

    /// An end-of-stream marker (on every outbound ring) or a drop marker (on one); a drop
    /// marker keeps the record's `reply_to`, so an embedding host learns that its request
    /// produced nothing.
    fn marker(&mut self, kind: EnvelopeKind, seq: u64, reply_to: u64) -> Result<(), NodeError> {
        let mut header = EnvelopeHeader::data(seq, 0);
        header.kind = kind;
        header.reply_to = reply_to;
        header.source_group = self.group_index;
        if kind == EnvelopeKind::EndOfStream {
            for ring in 0..self.outbound.len() {
                // Each ring's end counts that ring's records, so its consumer can prove it
                // read them all.
                let records = self.outbound[ring].records();
                let end = EnvelopeHeader {
                    source_group: self.group_index,
                    ..EnvelopeHeader::end_of_stream(seq, records)
                };
                self.push(ring, &end, &mut |_, _| Some(0))?;
            }
            return Ok(());
        }
        let ring = self.routing.round_robin(self.outbound.len());
        self.push(ring, &header, &mut |_, _| Some(0))
    }

    /// Publishes the watermark on every outbound ring when it moved (which also publishes the
    /// rings' tails and wakes parked consumers).
    fn publish_watermark(&mut self) {
        if let Some(mark) = self.marks.due() {
            for producer in &mut self.outbound {
                producer.publish_watermark(mark);
            }
        }
    }

    fn flush(&mut self) {
        self.publish_watermark();
        for producer in &mut self.outbound {
            producer.flush();
        }
    }

    /// The ring for a value for node `target`: by the target's partition key when it has
    /// one (the value is encoded into scratch first: returns its length), else round robin.
    fn ring_for(
        &mut self,
        target: usize,
        encode: &mut EncodeFn<'_>,
    ) -> Result<(usize, Option<usize>), NodeError> {
        let rings = self.outbound.len();
        if rings <= 1 {
            return Ok((0, None));
        }
        let Some(key) = self.routing.keys.get(&target) else {
            return Ok((self.routing.round_robin(rings), None));
        };
        let len =
            super::chain::encode_growing_with(&mut self.routing.scratch, &mut self.arena, encode)?;
        // SAFETY: the scratch holds an archive of the target's input type that this process
        // encoded just now (the edge is type-checked), as `key_of_trusted` requires.
        let hash = unsafe { key.key_of_trusted(&self.routing.scratch.as_bytes()[..len]) };
        Ok((partition_ring(hash, rings), Some(len)))
    }
}

impl Egress for WorkerEgress<'_> {
    fn dead_letter_file(&mut self) -> Option<&mut DeadLetters> {
        self.dead_letters.as_mut()
    }

    fn forward(
        &mut self,
        target: usize,
        ctx: &RecordContext<'_>,
        _ty: MessageType,
        encode: &mut EncodeFn<'_>,
    ) -> Result<(), NodeError> {
        let header = self.header_for(
            ctx,
            target as u32,
            EnvelopeKind::Data,
            ctx.route_hop.saturating_add(1),
        );
        match self.ring_for(target, encode)? {
            (ring, None) => self.push(ring, &header, &mut |slot, arena| encode(slot, arena).ok()),
            (ring, Some(len)) => {
                let bytes = std::mem::take(&mut self.routing.scratch);
                let pushed = self.push(ring, &header, &mut |slot, _| {
                    slot.get_mut(..len)?
                        .copy_from_slice(&bytes.as_bytes()[..len]);
                    Some(len)
                });
                self.routing.scratch = bytes;
                pushed
            }
        }
    }

    /// A terminal output goes back to the embedding host when this worker has a ring to it
    /// (the last group of an embedded run); a batch run has no reader and discards it, as the
    /// inline runtime does without an output callback.
    fn terminal(
        &mut self,
        _from: usize,
        ctx: &RecordContext<'_>,
        _ty: MessageType,
        encode: &mut EncodeFn<'_>,
    ) -> Result<(), NodeError> {
        if self.outbound.is_empty() {
            return Ok(());
        }
        let header = self.header_for(
            ctx,
            crate::data::TERMINAL_TARGET,
            EnvelopeKind::Data,
            ctx.route_hop,
        );
        self.push(0, &header, &mut |slot, arena| encode(slot, arena).ok())
    }

    fn dead_letter(
        &mut self,
        ctx: &RecordContext<'_>,
        node: &str,
        reason: &str,
        detail: &str,
    ) -> Result<(), NodeError> {
        if let Some(dead_letters) = &mut self.dead_letters {
            return dead_letters.write(ctx.seq, node, reason, detail);
        }
        let record = DeadLetterRecord {
            node: node.to_string(),
            reason: reason.to_string(),
            detail: detail.to_string(),
        };
        let header = self.header_for(
            ctx,
            0,
            EnvelopeKind::DeadLetter,
            ctx.route_hop.saturating_add(1),
        );
        let ring = self.routing.round_robin(self.outbound.len());
        self.push(ring, &header, &mut |slot, arena| {
            crate::graph::encode_into(&record, slot, arena).ok()
        })
    }
}

/// The next step of a k-way merge.
enum MergePick {
    /// Take the head of this ring: it is the smallest `seq` anywhere.
    Take(usize),
    /// This ring may still send something smaller than the smallest head: wait for it.
    Wait(usize),
    /// No ring has a record: the next one may come on any of them.
    Idle,
    /// Every ring ended.
    Ended,
}

fn ring_failure(e: RingCorrupted) -> WorkerFailure {
    WorkerFailure::ring(format!("inbound ring: {e}"))
}

fn stream_failure(e: StreamError) -> WorkerFailure {
    WorkerFailure::ring(format!("inbound ring: {e}"))
}

/// The header of a ring's head record, if one is committed.
fn head_of(ring: &mut Consumer<Segment>) -> Result<Option<EnvelopeHeader>, WorkerFailure> {
    let Some(body) = ring.peek().map_err(ring_failure)? else {
        return Ok(None);
    };
    let (header, _) = EnvelopeHeader::read(body)
        .map_err(|e| WorkerFailure::ring(format!("inbound envelope: {e}")))?;
    Ok(Some(header))
}

/// Chooses the next record of a k-way merge by `seq` (ties: the lower ring). End-of-stream
/// markers are checked and consumed here and end their ring. Equal `seq`s on two rings only
/// happen when a node upstream emits several values for one record (fan-out) and they went to
/// different workers: their order is then by ring, not by emission (no bundled node does
/// that). `heads` caches each ring's head `seq` (a committed record does not change until it
/// is taken; the caller clears a ring's entry when it takes its head), so each pick looks only
/// at the rings whose head is not known yet.
fn merge_pick(
    rings: &mut [Consumer<Segment>],
    streams: &mut [StreamCheck],
    heads: &mut [Option<u64>],
) -> Result<MergePick, WorkerFailure> {
    let mut marks = vec![u64::MAX; rings.len()];
    for (r, ring) in rings.iter_mut().enumerate() {
        if streams[r].ended() || heads[r].is_some() {
            continue;
        }
        // Watermark before head: a watermark read first covers every record committed
        // before it, so a ring found empty afterwards has nothing at or below it.
        marks[r] = ring.watermark();
        match head_of(ring)? {
            Some(header) if header.kind == EnvelopeKind::EndOfStream => {
                streams[r].admit(&header).map_err(stream_failure)?;
                ring.advance().map_err(ring_failure)?;
            }
            head => heads[r] = head.map(|h| h.seq),
        }
    }
    let Some((smallest, seq)) = heads
        .iter()
        .enumerate()
        .filter_map(|(r, head)| head.map(|seq| (r, seq)))
        .min_by_key(|(r, seq)| (*seq, *r))
    else {
        return Ok(if streams.iter().all(StreamCheck::ended) {
            MergePick::Ended
        } else {
            MergePick::Idle
        });
    };
    let holding_back = (0..rings.len())
        .find(|&o| o != smallest && !streams[o].ended() && heads[o].is_none() && marks[o] < seq);
    Ok(match holding_back {
        Some(o) => MergePick::Wait(o),
        None => MergePick::Take(smallest),
    })
}

/// Every inbound record at or below the returned `seq` has been taken: for each ring still
/// open, its head's `seq - 1`, or its watermark when it is empty.
fn inbound_done_through(
    rings: &mut [Consumer<Segment>],
    streams: &[StreamCheck],
) -> Result<u64, WorkerFailure> {
    let mut through = u64::MAX;
    for (r, ring) in rings.iter_mut().enumerate() {
        if streams[r].ended() {
            continue;
        }
        let mark = ring.watermark();
        let done = match head_of(ring)? {
            Some(header) => header.seq.saturating_sub(1),
            None => mark,
        };
        through = through.min(done);
    }
    Ok(if through == u64::MAX { 0 } else { through })
}

/// Waits at most `slice` on one inbound ring for a record or a moved watermark. A ring found
/// closed before its end-of-stream record arrived was cut short: a failure, never an end.
fn wait_on_ring(
    ring: &mut Consumer<Segment>,
    stream: &StreamCheck,
    slice: Duration,
    shared: &Shared,
) -> Result<(), WorkerFailure> {
    let waiting = Instant::now();
    // A moved watermark wakes us too: it must travel on even when no record comes this way
    // (a skewed partition), or a merge downstream would wait for it.
    let mark = ring.watermark();
    let woke = ring.wait_for_watermark(slice, mark);
    shared.add_idle(waiting.elapsed());
    match woke.map_err(ring_failure)? {
        crate::data::Readiness::Closed => stream.closed().map_err(stream_failure),
        _ => Ok(()),
    }
}

/// One worker's share of the run.
struct GroupData<'a> {
    config: &'a Config,
    topology: &'a Topology,
    span: crate::runtime::topology::GroupSpan,
    pipeline: &'a mut LocalPipeline,
    shared: &'a Arc<Shared>,
    /// Partition keys of the next group's partitioned nodes (routing to its workers).
    next_group_keys: HashMap<usize, PartitionKey>,
    /// Records run by this worker (picks the ones whose node times are sampled).
    timed_count: u64,
    /// No outbound ring: this worker is where records end (the sink's worker, or the last
    /// group of a run whose terminal outputs have no reader). It writes dead letters, absorbs
    /// drop markers and publishes its progress for crash accounting.
    ends_chain: bool,
    /// Input records the source skips (a resumed run).
    skip: u64,
    /// Highest `seq` this worker handled completely (records arrive in `seq` order).
    completed: u64,
}

impl GroupData<'_> {
    fn run(&mut self, io: GroupIo) -> i32 {
        let dead_letters = if self.ends_chain {
            match DeadLetters::open(self.config.adapters.dead_letter.as_ref(), self.skip) {
                Ok(dead_letters) => Some(dead_letters),
                Err(e) => {
                    self.shared.fail("node_error", e.to_string());
                    return exit::NODE_ERROR;
                }
            }
        } else {
            None
        };
        let mut egress = WorkerEgress {
            outbound: io.outbound,
            group_index: self.span.index,
            dead_letters,
            arena: rkyv::ser::allocator::Arena::new(),
            forwarded: 0,
            sent: 0,
            shared: self.shared,
            ring_error: None,
            routing: OutboundRouting {
                keys: std::mem::take(&mut self.next_group_keys),
                ..OutboundRouting::default()
            },
            marks: Watermarks::default(),
        };
        let started = Instant::now();
        let mut inbound = io.inbound;
        let outcome = if self.pipeline.source.is_some() {
            self.run_source(&mut egress)
        } else {
            self.run_inbound(&mut inbound, &mut egress)
        };
        let (last_seq, records, interrupted) = match outcome {
            Ok(done) => done,
            Err(failure) if failure.is_stopped() => (
                self.completed,
                self.shared.records_in.load(Ordering::Relaxed),
                true,
            ),
            Err(failure) => {
                self.complete_before_failure(&failure, &mut egress, &inbound);
                self.shared.fail(failure.category, failure.message);
                return exit::NODE_ERROR;
            }
        };
        let reports = self.pipeline.reports();
        let mut report = encode_reports(&reports);
        let elapsed = started.elapsed();
        let idle = Duration::from_nanos(self.shared.idle_ns.load(Ordering::Relaxed));
        report.push_str(&format!(
            "#dead_lettered={}\n#elapsed_ns={}\n#busy_ns={}\n#peak_rss_kib={}\n#interrupted={}\n#sent={}\n",
            egress.dead_letters.as_ref().map_or(0, DeadLetters::count),
            elapsed.as_nanos(),
            elapsed.saturating_sub(idle).as_nanos(),
            crate::observability::process::peak_rss_kib().unwrap_or(0),
            interrupted,
            egress.sent,
        ));
        for (name, value) in self.pipeline.env.routes.cache_counters().pairs() {
            report.push_str(&format!("#route_cache.{name}={value}\n"));
        }
        if let Some(tracer) = self.pipeline.env.tracer.as_mut() {
            tracer.sink.close();
            report.push_str(&format!(
                "#spans_produced={}\n#spans_dropped={}\n",
                tracer.produced,
                tracer.sink.dropped()
            ));
        }
        self.shared.done.store(true, Ordering::Relaxed);
        self.shared.send(
            &ControlMessage::Drained {
                last_seq,
                records,
                report,
            },
            0,
        );
        exit::OK
    }

    /// The run failed here: every record before the failing one (or before what an output
    /// could not write) is good, so it is completed rather than lost. The worker where records
    /// end settles its outputs to exactly that range and publishes it as its progress; any
    /// other worker, for a node error, publishes what it forwarded and passes end of stream
    /// on, and the supervisor lets the groups after it drain before stopping them.
    fn complete_before_failure(
        &mut self,
        failure: &WorkerFailure,
        egress: &mut WorkerEgress<'_>,
        inbound: &[Consumer<Segment>],
    ) {
        let mut through = failure
            .failed_seq
            .map_or(self.completed, |seq| seq.saturating_sub(1));
        if let Some(written) = failure.written_through {
            through = through.min(written);
        }
        if self.ends_chain {
            let settled = self.pipeline.settle_outputs(egress, through);
            for consumer in inbound {
                consumer.publish_progress(settled);
            }
            return;
        }
        let Some(seq) = failure.failed_seq else {
            return;
        };
        egress.flush();
        // Best effort: the push gives up when the supervisor stops the run.
        let _ = egress.marker(EnvelopeKind::EndOfStream, seq.saturating_sub(1), 0);
        egress.flush();
    }

    fn node_failure(
        &self,
        failure: super::chain::NodeFailure,
        egress: &WorkerEgress<'_>,
    ) -> WorkerFailure {
        if let Some(ring) = &egress.ring_error {
            return WorkerFailure::ring(ring.clone());
        }
        let message = format!(
            "node `{}` failed on seq {}: {}",
            failure.node, failure.seq, failure.error
        );
        // An input that did not validate is the transport's fault, not the node's.
        if matches!(failure.error, NodeError::Payload(_)) {
            return WorkerFailure::ring(message);
        }
        WorkerFailure {
            category: "node_error",
            message,
            failed_seq: Some(failure.seq),
            written_through: failure.error.written_through(),
        }
    }

    /// The worker that holds the source: pull, run the local chain, forward; then drain.
    fn run_source(
        &mut self,
        egress: &mut WorkerEgress<'_>,
    ) -> Result<(u64, u64, bool), WorkerFailure> {
        let shared = Arc::clone(self.shared);
        let stop = move || shared.stopping();
        let shared = Arc::clone(self.shared);
        let progress = move |n: u64| shared.records_in.store(n, Ordering::Relaxed);
        let run = self.pipeline.drive_source(egress, 0, &stop, &progress);
        self.completed = run.last_seq;
        if let Some(failure) = run.failure {
            return Err(self.node_failure(failure, egress));
        }
        match self.finish(egress, run.last_seq) {
            Ok(()) => Ok((run.last_seq, run.emitted, run.interrupted)),
            // Aborted while passing end of stream on: what was read is reported as such.
            Err(failure) if failure.is_stopped() => Ok((run.last_seq, run.emitted, true)),
            Err(failure) => Err(failure),
        }
    }

    /// Runs end of stream locally, flushes, and passes end of stream on.
    fn finish(
        &mut self,
        egress: &mut WorkerEgress<'_>,
        last_seq: u64,
    ) -> Result<(), WorkerFailure> {
        if let Some(failure) = self.pipeline.finish(egress, last_seq) {
            return Err(self.node_failure(failure, egress));
        }
        self.flush_sink(egress)?;
        if !egress.outbound.is_empty() {
            egress
                .marker(EnvelopeKind::EndOfStream, last_seq, 0)
                .map_err(|e| WorkerFailure::handing_on("passing end of stream on", e))?;
        }
        egress.flush();
        Ok(())
    }

    /// In the worker where records end: hands every output to the operating system (a batch
    /// boundary).
    fn flush_sink(&mut self, egress: &mut WorkerEgress<'_>) -> Result<(), WorkerFailure> {
        if !self.ends_chain {
            return Ok(());
        }
        self.pipeline
            .flush_outputs(egress)
            .map_err(|failure| WorkerFailure::flush(&failure))
    }

    /// A worker fed by the previous group: consume, run the local chain in place in the ring,
    /// forward; on end of stream, drain.
    fn run_inbound(
        &mut self,
        inbound: &mut [Consumer<Segment>],
        egress: &mut WorkerEgress<'_>,
    ) -> Result<(u64, u64, bool), WorkerFailure> {
        if inbound.len() > 1 {
            return self.run_merged(inbound, egress);
        }
        let trusted = !self.config.runtime.platform.execution_ipc.validate_payloads;
        let mut completed = 0u64;
        let mut consumed = 0u64;
        let mut streams = vec![StreamCheck::default(); inbound.len()];
        while !streams.iter().all(StreamCheck::ended) {
            if self.shared.stopping() && !self.shared.drain_on_stop() {
                // Abort: report how far this worker got.
                return Ok((completed, consumed, true));
            }
            let mut any = false;
            for (r, consumer) in inbound.iter_mut().enumerate() {
                let stream = &mut streams[r];
                if stream.ended() {
                    continue;
                }
                let mut step = BatchStep::default();
                let polled = consumer.poll(BATCH, |record| {
                    self.handle_record(record.body, trusted, egress, &mut step, stream)
                });
                match polled {
                    Ok(n) => {
                        any |= n > 0;
                        consumed += n as u64;
                    }
                    Err(PollError::Corrupted(e)) => return Err(ring_failure(e)),
                    Err(PollError::Handler(failure)) => return Err(failure),
                }
                completed = completed.max(step.completed);
            }
            if self.ends_chain && any {
                self.flush_sink(egress)?;
                self.publish_progress(inbound, completed);
            }
            egress.marks.upstream = inbound_done_through(inbound, &streams)?;
            egress.flush();
            self.publish_counters(consumed, egress);
            if !any && let Some(r) = streams.iter().position(|s| !s.ended()) {
                wait_on_ring(&mut inbound[r], &streams[r], WAIT_SLICE, self.shared)?;
            }
        }
        self.finish(egress, completed)?;
        if self.ends_chain {
            self.publish_progress(inbound, completed);
        }
        Ok((completed, consumed, false))
    }

    /// A worker fed by several rings (the previous group runs several workers): a k-way merge
    /// by `seq`. The smallest head is taken once every other ring's head is past it or its
    /// watermark says nothing at or below it will come; a ring whose end of stream arrived
    /// no longer holds anything back. So the local chain sees records in `seq` order, as inline.
    fn run_merged(
        &mut self,
        inbound: &mut [Consumer<Segment>],
        egress: &mut WorkerEgress<'_>,
    ) -> Result<(u64, u64, bool), WorkerFailure> {
        let trusted = !self.config.runtime.platform.execution_ipc.validate_payloads;
        let mut streams = vec![StreamCheck::default(); inbound.len()];
        let mut heads = vec![None; inbound.len()];
        let (mut completed, mut consumed) = (0u64, 0u64);
        let mut idle_rounds = 0u64;
        while !streams.iter().all(StreamCheck::ended) {
            if self.shared.stopping() && !self.shared.drain_on_stop() {
                return Ok((completed, consumed, true));
            }
            let mut step = BatchStep::default();
            let mut taken = 0;
            let mut blocked_on = None;
            let mut idle = false;
            while taken < BATCH {
                match merge_pick(inbound, &mut streams, &mut heads)? {
                    MergePick::Take(r) => {
                        heads[r] = None;
                        let body = inbound[r].peek().map_err(ring_failure)?.ok_or_else(|| {
                            WorkerFailure::ring("inbound ring: a peeked record vanished".into())
                        })?;
                        self.handle_record(body, trusted, egress, &mut step, &mut streams[r])?;
                        inbound[r].advance().map_err(ring_failure)?;
                        taken += 1;
                    }
                    MergePick::Wait(r) => {
                        blocked_on = Some(r);
                        break;
                    }
                    MergePick::Idle => {
                        idle = true;
                        break;
                    }
                    MergePick::Ended => break,
                }
            }
            for consumer in inbound.iter_mut() {
                consumer.release();
            }
            consumed += taken as u64;
            completed = completed.max(step.completed);
            if self.ends_chain && taken > 0 {
                self.flush_sink(egress)?;
                self.publish_progress(inbound, completed);
            }
            egress.marks.upstream = inbound_done_through(inbound, &streams)?;
            egress.flush();
            self.publish_counters(consumed, egress);
            idle_rounds = if idle && taken == 0 {
                idle_rounds + 1
            } else {
                0
            };
            let wait_on = match (taken, blocked_on, idle) {
                (0, Some(r), _) => Some((r, WAIT_SLICE)),
                // Nothing anywhere: the next record may come on any ring, so look at them in
                // turn with short waits; after a while of nothing, park for longer.
                (0, None, true) => {
                    let open: Vec<usize> = (0..inbound.len())
                        .filter(|r| !streams[*r].ended())
                        .collect();
                    let slice = if idle_rounds > IDLE_ROUNDS_BEFORE_PARKING {
                        WAIT_SLICE
                    } else {
                        MERGE_IDLE_SLICE
                    };
                    open.get(idle_rounds as usize % open.len().max(1))
                        .map(|r| (*r, slice))
                }
                _ => None,
            };
            if let Some((r, slice)) = wait_on {
                wait_on_ring(&mut inbound[r], &streams[r], slice, self.shared)?;
            }
        }
        self.finish(egress, completed)?;
        if self.ends_chain {
            self.publish_progress(inbound, completed);
        }
        Ok((completed, consumed, false))
    }

    /// In the worker where records end: every record through `seq` is written (flushed).
    fn publish_progress(&self, inbound: &[Consumer<Segment>], seq: u64) {
        for consumer in inbound {
            consumer.publish_progress(seq);
        }
        self.shared.completed.store(seq, Ordering::Relaxed);
    }

    /// What the heartbeat thread reports: records in and out, route cache counters.
    fn publish_counters(&self, consumed: u64, egress: &WorkerEgress<'_>) {
        self.shared.records_in.store(consumed, Ordering::Relaxed);
        self.shared
            .records_out
            .store(egress.sent, Ordering::Relaxed);
        if let Ok(mut counters) = self.shared.route_cache.lock() {
            counters.clear();
            let route = self.pipeline.env.routes.cache_counters();
            counters.extend(route.pairs().iter().map(|(_, v)| *v));
        }
    }

    /// One inbound envelope.
    fn handle_record(
        &mut self,
        body: &[u8],
        trusted: bool,
        egress: &mut WorkerEgress<'_>,
        step: &mut BatchStep,
        stream: &mut StreamCheck,
    ) -> Result<(), WorkerFailure> {
        let (header, payload) = EnvelopeHeader::read(body)
            .map_err(|e| WorkerFailure::ring(format!("inbound envelope: {e}")))?;
        stream.admit(&header).map_err(stream_failure)?;
        let ends_chain = self.ends_chain;
        let forwarded_failure = |e: NodeError| {
            WorkerFailure::handing_on(format_args!("forwarding seq {}", header.seq), e)
        };
        match header.kind {
            EnvelopeKind::EndOfStream => return Ok(()),
            EnvelopeKind::DropMarker if ends_chain => {}
            EnvelopeKind::DeadLetter if ends_chain => {
                let record =
                    <DeadLetterRecord as crate::graph::Message>::access(payload).map_err(|e| {
                        WorkerFailure::ring(format!("dead letter of seq {}: {e}", header.seq))
                    })?;
                if let Some(dead_letters) = &mut egress.dead_letters {
                    dead_letters
                        .write(
                            header.seq,
                            record.node.as_str(),
                            record.reason.as_str(),
                            record.detail.as_str(),
                        )
                        .map_err(|e| WorkerFailure {
                            written_through: e.written_through(),
                            ..WorkerFailure::node(e.to_string())
                        })?;
                }
            }
            EnvelopeKind::DropMarker | EnvelopeKind::DeadLetter => {
                egress
                    .forward_raw(&header, payload)
                    .map_err(forwarded_failure)?;
            }
            EnvelopeKind::Data => {
                let target = header.target as usize;
                let local = self.pipeline.stages.iter().position(|s| s.index == target);
                let Some(position) = local else {
                    egress
                        .forward_raw(&header, payload)
                        .map_err(forwarded_failure)?;
                    step.completed = step.completed.max(header.seq);
                    self.completed = self.completed.max(header.seq);
                    return Ok(());
                };
                self.run_local(position, &header, payload, trusted, egress)?;
            }
        }
        step.completed = step.completed.max(header.seq);
        self.completed = self.completed.max(header.seq);
        Ok(())
    }

    /// Runs the local chain on one envelope's payload, read in place in the ring.
    fn run_local(
        &mut self,
        position: usize,
        header: &EnvelopeHeader,
        payload: &[u8],
        trusted: bool,
        egress: &mut WorkerEgress<'_>,
    ) -> Result<(), WorkerFailure> {
        let handoff_from = self.topology.name_of(header.source_group);
        let ctx = RecordContext {
            seq: header.seq,
            trace_id: header.trace_id,
            process_group: &self.span.name,
            handoff_from,
            route_hop: header.route_hop,
            reply_to: header.reply_to,
            parent_span: u64::from_be_bytes(header.parent_span_id),
            sampled: header.trace_flags & 1 == 1,
        };
        egress.forwarded = 0;
        // Sample by this worker's own count, not by `seq`: with round robin over workers,
        // every multiple of the sample period could land on one worker.
        self.timed_count = self.timed_count.wrapping_add(1);
        self.pipeline.env.timing = self.timed_count.is_multiple_of(super::chain::TIMING_SAMPLE);
        let (stage, rest) = self.pipeline.stages[position..]
            .split_first_mut()
            .unwrap_or_else(|| unreachable!("position comes from a search of the stages"));
        let super::chain::Stage {
            name,
            index,
            node,
            stats,
            ..
        } = stage;
        let result = super::chain::run_node(
            name,
            *index,
            node.as_mut(),
            stats,
            payload,
            trusted,
            &ctx,
            rest,
            &mut self.pipeline.env,
            egress,
        );
        if let Err(NodeError::Stopped) = result {
            return Err(WorkerFailure::stopped());
        }
        if result.is_err() {
            let failure = self
                .pipeline
                .env
                .failure
                .take()
                .unwrap_or(super::chain::NodeFailure {
                    node: name.clone(),
                    seq: header.seq,
                    error: NodeError::failed("unknown failure"),
                });
            return Err(self.node_failure(failure, egress));
        }
        // Nothing left this worker for a record that did not end here: a drop, marked so
        // that the sink's accounting of `seq` stays complete.
        if egress.forwarded == 0 && !self.ends_chain {
            egress
                .marker(EnvelopeKind::DropMarker, header.seq, header.reply_to)
                .map_err(|e| {
                    WorkerFailure::handing_on(format_args!("marking seq {} dropped", header.seq), e)
                })?;
        }
        Ok(())
    }
}

/// What one inbound batch saw.
#[derive(Default)]
struct BatchStep {
    completed: u64,
}

/// After the work: waits for STOP (the supervisor sends it once every sink drained).
fn exit_after_stop(shared: &Arc<Shared>) -> i32 {
    shared.wait_for_stop();
    exit::OK
}

fn spawn_control_thread(mut rx: crate::control::FrameReceiver, shared: Arc<Shared>) {
    std::thread::spawn(move || {
        loop {
            match rx.recv(Duration::from_millis(500)) {
                Ok(received) => handle_control(&shared, received),
                Err(ReadError::TimedOut) => {}
                Err(ReadError::Rejected(e)) => {
                    tracing::warn!(worker_id = %shared.worker_id, "control frame rejected: {e}");
                }
                Err(ReadError::Closed | ReadError::Io(_)) => {
                    // The supervisor is gone: nothing may outlive it.
                    std::process::exit(exit::CONTROL);
                }
            }
        }
    });
}

fn handle_control(shared: &Arc<Shared>, received: crate::control::Received) {
    let correlation = received.header.correlation;
    match received.message {
        ControlMessage::StartWork { .. } => {
            let accepted = shared
                .session
                .lock()
                .map(|mut s| s.on_start_work())
                .unwrap_or(Ok(()));
            match accepted {
                Ok(()) => {
                    let (lock, signal) = &shared.started;
                    if let Ok(mut started) = lock.lock() {
                        *started = true;
                    }
                    signal.notify_all();
                    shared.send(
                        &ControlMessage::Ack {
                            kind: MessageKind::StartWork as u8,
                            correlation,
                        },
                        correlation,
                    );
                }
                Err(e) => tracing::warn!(worker_id = %shared.worker_id, "{e}"),
            }
        }
        ControlMessage::Stop { mode, .. } => {
            if let Ok(mut session) = shared.session.lock() {
                session.on_stop();
            }
            shared.send(
                &ControlMessage::Ack {
                    kind: MessageKind::Stop as u8,
                    correlation,
                },
                correlation,
            );
            if mode == StopMode::Forced {
                std::process::exit(exit::OK);
            }
            // Set under the lock the waiters sleep on, so none misses the notification.
            let stop = if mode == StopMode::Abort {
                STOP_ABORT
            } else {
                STOP_GRACEFUL
            };
            if let Ok(_guard) = shared.started.0.lock() {
                shared.stop.store(stop, Ordering::Relaxed);
            }
            shared.started.1.notify_all();
        }
        _ => {}
    }
}

/// Busy share between two heartbeats: wall time minus time spent waiting on rings.
#[derive(Default)]
struct BusyMeter {
    last: Option<(Instant, u64)>,
}

impl BusyMeter {
    fn sample(&mut self, working: bool, idle_ns: u64) -> u32 {
        let now = Instant::now();
        let previous = self.last.replace((now, idle_ns));
        let (Some((then, idle_then)), true) = (previous, working) else {
            return 0;
        };
        let wall = now.duration_since(then).as_nanos().max(1) as u64;
        let idle = idle_ns.saturating_sub(idle_then).min(wall);
        ((wall - idle) * 1000 / wall) as u32
    }
}

fn spawn_heartbeat_thread(interval: Duration, shared: Arc<Shared>) {
    std::thread::spawn(move || {
        let mut busy = BusyMeter::default();
        loop {
            let working = shared.is_started() && !shared.done.load(Ordering::Relaxed);
            let counters = WorkerCounters {
                records_in: shared.records_in.load(Ordering::Relaxed),
                records_out: shared.records_out.load(Ordering::Relaxed),
                completed: shared.completed.load(Ordering::Relaxed),
                busy_per_mille: busy.sample(working, shared.idle_ns.load(Ordering::Relaxed)),
                route_cache: shared
                    .route_cache
                    .lock()
                    .map(|c| c.clone())
                    .unwrap_or_default(),
            };
            let beat = ControlMessage::Heartbeat {
                worker_id: shared.worker_id.clone(),
                counters,
            };
            if !shared.send(&beat, 0) {
                std::process::exit(exit::CONTROL);
            }
            std::thread::sleep(interval);
        }
    });
}
