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

mod control;
mod data_loop;
mod egress;
mod failure;
mod merge;

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::pipeline::{LocalPipeline, PipelineRun, StartError};
use super::topology::Topology;
use crate::config::Config;
use crate::control::{
    BootstrapBundle, ControlAddress, ControlMessage, Endpoint, EndpointSettings, FailureCategory,
    KEY_FD, MessageKind, ReadError, WorkerKey, WorkerSession, connect, env, read_inherited_key,
};
use crate::data::{Consumer, Producer, Segment, WaitStrategy};
use crate::graph::{Graph, NodeState, PartitionKey, Placement, Registry};
use crate::observability::span::Tracer;
use crate::observability::telemetry::RingSpanSink;
use control::{RUNNING, Shared, exit_after_stop, spawn_control_thread, spawn_heartbeat_thread};
use data_loop::GroupData;
use std::collections::HashMap;

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
/// fn my_registry() -> stream_kernel::graph::Registry {
///     stream_kernel::graph::Registry::new() // ... register the program's nodes ...
/// }
///
/// // First thing in `main`:
/// stream_kernel::worker_entry(my_registry);
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
/// service manager's or an operator's signal to the whole group) reaches it too. Its
/// lifecycle is the supervisor's to drive: it drains or stops when told over the control
/// channel, and dies with the supervisor (death signal) if that goes away. So every signal
/// the supervisor treats as a stop is ignored here, and so are SIGXFSZ and SIGPIPE (write
/// errors of the output that hits them).
fn ignore_terminal_signals() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for number in super::signals::stop_signals() {
        let Ok(sig) = Signal::try_from(number) else {
            // Real-time signals have no `Signal` value: ignored through libc.
            // SAFETY: SIG_IGN runs no handler code; nothing in a worker handles them.
            unsafe { libc::signal(number, libc::SIG_IGN) };
            continue;
        };
        // SAFETY: installing SIG_IGN runs no handler code; nothing else in this process has
        // installed handlers for these signals yet.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    super::signals::ignore_write_signals();
}

/// What the supervisor told this worker through its environment.
#[derive(Debug, Clone)]
pub struct WorkerEnv {
    /// The worker's id (`group#n`).
    pub worker_id: String,
    /// The worker's 1-based number in the run.
    pub number: u32,
    /// Where the supervisor listens.
    pub control: ControlAddress,
    /// The supervisor's pid.
    pub supervisor_pid: u32,
    /// How long to wait for the bootstrap bundle.
    pub start_timeout: Duration,
    /// Accepted age of a control frame.
    pub control_ttl: Duration,
    /// The largest control message accepted.
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

fn run_worker(worker_env: &WorkerEnv, registry: Registry) -> i32 {
    // The death signal was set between fork and exec; a parent that died before that left us
    // with another parent. Checked right after start, as docs/architecture.md asks.
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
    let mut session = WorkerSession::new(&worker_env.worker_id);
    let (mut endpoint, bundle, correlation) = match open_session(worker_env, &key, &settings) {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!("worker {}: {e}", worker_env.worker_id);
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
        input_bytes: Arc::default(),
        nodes: Arc::default(),
        records_out: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        idle_ns: AtomicU64::new(0),
        route_cache: Mutex::new(Vec::new()),
        done: AtomicBool::new(false),
        holds_source: AtomicBool::new(false),
    });
    run_bootstrapped(worker_env, registry, &bundle, rx, shared)
}

/// Why opening the control session failed: worth another connection, or not.
enum OpenError {
    /// The connection was refused or closed before the bundle came: the supervisor sheds idle
    /// connections when too many wait for their HELLO (anyone on the host can open them), so
    /// a worker's early connection may be one of them.
    Retry(String),
    Fatal(String),
}

/// Connects, says HELLO and waits for the bootstrap bundle. A connection lost before the
/// bundle is opened again, after a short backoff, until the start timeout.
fn open_session(
    worker_env: &WorkerEnv,
    key: &WorkerKey,
    settings: &Arc<EndpointSettings>,
) -> Result<(Endpoint, BootstrapBundle, u64), String> {
    let deadline = std::time::Instant::now() + worker_env.start_timeout;
    let mut backoff = Duration::from_millis(5);
    loop {
        match try_open_session(worker_env, key, settings, deadline) {
            Ok(opened) => return Ok(opened),
            Err(OpenError::Retry(e)) if std::time::Instant::now() + backoff < deadline => {
                tracing::debug!(worker_id = %worker_env.worker_id, "control connection lost before the bundle ({e}); connecting again");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
            Err(OpenError::Retry(e) | OpenError::Fatal(e)) => {
                return Err(format!("no bootstrap bundle: {e}"));
            }
        }
    }
}

fn try_open_session(
    worker_env: &WorkerEnv,
    key: &WorkerKey,
    settings: &Arc<EndpointSettings>,
    deadline: std::time::Instant,
) -> Result<(Endpoint, BootstrapBundle, u64), OpenError> {
    let stream = connect(&worker_env.control).map_err(|e| OpenError::Retry(e.to_string()))?;
    let mut endpoint =
        Endpoint::worker_side(stream, worker_env.number, key.clone(), Arc::clone(settings))
            .map_err(|e| OpenError::Fatal(e.to_string()))?;
    let hello = ControlMessage::Hello {
        worker_id: worker_env.worker_id.clone(),
        pid: std::process::id(),
    };
    endpoint
        .send(&hello, 0)
        .map_err(|e| OpenError::Retry(format!("HELLO failed: {e}")))?;
    let wait = deadline.saturating_duration_since(std::time::Instant::now());
    let received = endpoint.recv(wait).map_err(|e| match e {
        ReadError::Closed | ReadError::Io(_) => OpenError::Retry(e.to_string()),
        other => OpenError::Fatal(other.to_string()),
    })?;
    match received.message {
        ControlMessage::BootstrapBundle(bundle) => {
            Ok((endpoint, bundle, received.header.correlation))
        }
        other => Err(OpenError::Fatal(format!(
            "expected BOOTSTRAP_BUNDLE, got {}",
            other.kind()
        ))),
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
                FailureCategory::BootstrapError,
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
                FailureCategory::BootstrapError,
                format!("bundled pipeline does not build a graph: {report}"),
            );
            return exit::BOOTSTRAP;
        }
    };
    let topology = Topology::of(&config, &graph);
    let mut pipeline = match build_pipeline(&config, &registry, &graph, bundle, &shared.input_bytes)
    {
        Ok(pipeline) => pipeline,
        Err(e) => {
            shared.fail(FailureCategory::BootstrapError, e.to_string());
            return exit::BOOTSTRAP;
        }
    };
    pipeline.stats_out = Some((Arc::clone(&shared.nodes), None));
    let io = match GroupIo::attach(&config, bundle) {
        Ok(io) => io,
        Err(e) => {
            shared.fail(FailureCategory::RingCorrupted, e);
            return exit::BOOTSTRAP;
        }
    };
    if let Err(e) = attach_telemetry(&config, bundle, &worker_env.worker_id, &mut pipeline) {
        shared.fail(FailureCategory::RingCorrupted, e);
        return exit::BOOTSTRAP;
    }
    if let Err(e) = pipeline.start() {
        shared.fail(FailureCategory::BootstrapError, e.to_string());
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
    let threads = spawn_control_thread(rx, Arc::clone(&shared)).and_then(|()| {
        spawn_heartbeat_thread(
            heartbeat_interval(&config, &bundle.group),
            Arc::clone(&shared),
        )
    });
    if let Err(e) = threads {
        shared.fail(
            FailureCategory::BootstrapError,
            format!("cannot start the worker's threads: {e}"),
        );
        return exit::BOOTSTRAP;
    }
    let readiness =
        Duration::from_secs_f64(config.runtime.platform.readiness.readiness_timeout_seconds);
    // Every worker of every group must be READY before START_WORK: allow for all of them.
    if !shared.wait_for_start(readiness + worker_env.start_timeout) {
        return exit_after_stop(&shared);
    }
    let Some(span) = topology.group(&bundle.group).cloned() else {
        shared.fail(
            FailureCategory::BootstrapError,
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
        resume: resume_plan_of(bundle),
        completed: 0,
        marked_through: 0,
        pending_mark: None,
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

/// Points the pipeline's tracer at this worker's telemetry ring (tracing on).
pub(super) fn attach_telemetry(
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
        crate::observability::span::Sampler::of(&config.runtime.observability.tracing),
        worker_id.to_string(),
        Box::new(RingSpanSink::new(producer)),
    ));
    Ok(())
}

pub(super) fn heartbeat_interval(config: &Config, group: &str) -> Duration {
    config
        .process_group(group)
        .map_or(Duration::from_secs(5), |g| {
            Duration::from_secs_f64(g.heartbeat_seconds)
        })
}

pub(super) fn build_pipeline(
    config: &Config,
    registry: &Registry,
    graph: &Graph,
    bundle: &BootstrapBundle,
    input_bytes: &Arc<AtomicU64>,
) -> Result<LocalPipeline, StartError> {
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
    crate::observability::ids::set_current_run(bundle.run_id);
    let run = PipelineRun {
        run_id: bundle.run_id,
        resume: resume_plan_of(bundle),
        input_bytes: Arc::clone(input_bytes),
    };
    LocalPipeline::build(config, registry, graph, &placement, |i| local[i], &run)
}

/// The resume plan the supervisor sent (empty for a fresh run).
pub(super) fn resume_plan_of(bundle: &BootstrapBundle) -> crate::runtime::resume::ResumePlan {
    crate::runtime::resume::ResumePlan {
        after: bundle.skip,
        output_lengths: bundle.resume_lengths.iter().cloned().collect(),
        input_positions: bundle
            .resume_positions
            .iter()
            .map(crate::runtime::resume::checkpoint_of)
            .collect(),
    }
}

/// The rings of one worker: inbound from the previous group, outbound to the next.
pub(super) struct GroupIo {
    pub(super) inbound: Vec<Consumer<Segment>>,
    pub(super) outbound: Vec<Producer<Segment>>,
}

impl GroupIo {
    pub(super) fn attach(config: &Config, bundle: &BootstrapBundle) -> Result<Self, String> {
        let profile = config
            .process_group(&bundle.group)
            .map_or(WaitStrategy::BALANCED, |g| wait_strategy(g.runner_profile));
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

/// The ring wait budget of a group's `runner_profile` (the data plane knows budgets, not
/// configs).
fn wait_strategy(profile: crate::config::RunnerProfile) -> WaitStrategy {
    use crate::config::RunnerProfile;
    match profile {
        RunnerProfile::Latency => WaitStrategy::LATENCY,
        RunnerProfile::Balanced => WaitStrategy::BALANCED,
        RunnerProfile::Efficiency => WaitStrategy::EFFICIENCY,
    }
}
