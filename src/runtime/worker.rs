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

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::chain::Egress;
use super::dead_letter::DeadLetters;
use super::inline::{LocalPipeline, RunError};
use super::summary::encode_reports;
use crate::config::Config;
use crate::control::{
    BootstrapBundle, ControlAddress, ControlMessage, Endpoint, EndpointSettings, FrameSender,
    KEY_FD, MessageKind, ReadError, StopMode, WorkerCounters, WorkerSession, connect,
    read_inherited_key,
};
use crate::graph::{EncodeFn, Graph, MessageType, NodeError, Placement, RecordContext, Registry};
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
    let code = match WorkerEnv::from_env() {
        Ok(worker_env) => run_worker(&worker_env, make_registry()),
        Err(e) => {
            eprintln!("stream-kernel worker: {e}");
            exit::CONTROL
        }
    };
    std::process::exit(code);
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

/// State shared by the worker's threads.
struct Shared {
    worker_id: String,
    tx: Mutex<FrameSender>,
    session: Mutex<WorkerSession>,
    started: (Mutex<bool>, Condvar),
    stop: AtomicU8,
    records_in: AtomicU64,
    records_out: AtomicU64,
    source_bytes: AtomicU64,
    done: AtomicBool,
}

impl Shared {
    fn send(&self, message: &ControlMessage, correlation: u64) -> bool {
        match self.tx.lock() {
            Ok(mut tx) => tx.send(message, correlation).is_ok(),
            Err(_) => false,
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) != RUNNING
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
        source_bytes: AtomicU64::new(0),
        done: AtomicBool::new(false),
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
    let mut pipeline = match build_pipeline(&config, &registry, bundle) {
        Ok(pipeline) => pipeline,
        Err(e) => {
            shared.fail("bootstrap_error", e.to_string());
            return exit::BOOTSTRAP;
        }
    };
    if let Err(e) = pipeline.start() {
        shared.fail("bootstrap_error", e.to_string());
        return exit::BOOTSTRAP;
    }
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
    let code = run_data(&config, &mut pipeline, &shared);
    if code != exit::OK {
        return code;
    }
    exit_after_stop(&shared)
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
    bundle: &BootstrapBundle,
) -> Result<LocalPipeline, RunError> {
    let mut diag = crate::config::reader::Diagnostics::default();
    let Some(graph) = Graph::check(config, registry, &mut diag) else {
        return Err(RunError::Config(crate::config::ConfigReport {
            errors: diag.errors,
            warnings: diag.warnings,
        }));
    };
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
        &graph,
        &placement,
        |i| local[i],
        bundle.run_id,
    )
}

/// Where a worker's values go when they leave its local chain. Rings to other groups arrive
/// with process-group execution; until then a worker runs groups that hold their whole path.
struct WorkerEgress {
    dead_letters: DeadLetters,
}

impl Egress for WorkerEgress {
    fn forward(
        &mut self,
        target: usize,
        _ctx: &RecordContext<'_>,
        _ty: MessageType,
        _encode: &mut EncodeFn<'_>,
    ) -> Result<(), NodeError> {
        Err(NodeError::failed(format!(
            "node {target} is in another group and this worker has no ring to it"
        )))
    }

    fn terminal(
        &mut self,
        _from: usize,
        _ctx: &RecordContext<'_>,
        _ty: MessageType,
        _encode: &mut EncodeFn<'_>,
    ) -> Result<(), NodeError> {
        Ok(())
    }

    fn dead_letter(
        &mut self,
        ctx: &RecordContext<'_>,
        node: &str,
        reason: &str,
        detail: &str,
    ) -> Result<(), NodeError> {
        self.dead_letters.write(ctx.seq, node, reason, detail)
    }
}

/// Runs the worker's data loop; reports DRAINED (or FAILED).
fn run_data(config: &Config, pipeline: &mut LocalPipeline, shared: &Arc<Shared>) -> i32 {
    let dead_letters = match DeadLetters::open(config.adapters.dead_letter.as_ref()) {
        Ok(dead_letters) => dead_letters,
        Err(e) => {
            shared.fail("node_error", e.to_string());
            return exit::NODE_ERROR;
        }
    };
    let mut egress = WorkerEgress { dead_letters };
    if pipeline.source.is_none() {
        // Nothing to ingest and no inbound ring: wait for STOP.
        shared.wait_for_stop();
        return exit::OK;
    }
    let stop = || shared.stopping();
    let progress = |n: u64| shared.records_in.store(n, Ordering::Relaxed);
    let started = Instant::now();
    let run = pipeline.drive_source(&mut egress, 0, &stop, &progress);
    let mut failure = run.failure;
    if failure.is_none() {
        failure = pipeline.finish(&mut egress, run.last_seq);
    }
    if failure.is_none()
        && let Err(e) = egress.dead_letters.flush()
    {
        shared.fail("node_error", e.to_string());
        return exit::NODE_ERROR;
    }
    let reports = pipeline.reports();
    shared.records_out.store(
        reports.last().map_or(0, |r| r.stats.records_in),
        Ordering::Relaxed,
    );
    if let Some(failure) = failure {
        shared.fail(
            "node_error",
            format!(
                "node `{}` failed on seq {}: {}",
                failure.node, failure.seq, failure.error
            ),
        );
        return exit::NODE_ERROR;
    }
    let mut report = encode_reports(&reports);
    report.push_str(&format!(
        "#dead_lettered={}\n#elapsed_ns={}\n#interrupted={}\n",
        egress.dead_letters.count(),
        started.elapsed().as_nanos(),
        run.interrupted
    ));
    shared.done.store(true, Ordering::Relaxed);
    shared.send(
        &ControlMessage::Drained {
            last_seq: run.last_seq,
            records: run.emitted,
            report,
        },
        0,
    );
    exit::OK
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
            if let Ok(_guard) = shared.started.0.lock() {
                shared.stop.store(STOP_GRACEFUL, Ordering::Relaxed);
            }
            shared.started.1.notify_all();
        }
        _ => {}
    }
}

fn spawn_heartbeat_thread(interval: Duration, shared: Arc<Shared>) {
    std::thread::spawn(move || {
        loop {
            let counters = WorkerCounters {
                records_in: shared.records_in.load(Ordering::Relaxed),
                records_out: shared.records_out.load(Ordering::Relaxed),
                ring_depths: Vec::new(),
                busy_per_mille: 0,
                source_bytes: shared.source_bytes.load(Ordering::Relaxed),
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
