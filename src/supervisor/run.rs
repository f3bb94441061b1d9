//! The supervisor's loop: launch, readiness gate, start, run, stop.
//!
//! Worker state machine (changed only here): `starting` (spawned, handshaking) -> `ready`
//! (READY received) -> `running` (START_WORK acknowledged) -> `stopping` (STOP sent) ->
//! `stopped` (reaped), and `failed` from any state with a [`FailureCategory`]. Monitor threads
//! report; [`Supervisor::pump`] applies one event at a time and runs the watchdog (start
//! timeouts, heartbeat timeouts), so every decision happens on one thread in one order.
//!
//! Any worker failure fails the run: the others are stopped gracefully, then forcibly after the
//! largest `stop_timeout_seconds`. Every spawned worker is stopped on every exit path.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::health::{
    HealthError, HealthServer, HealthState, MetricsView, notify_ready, notify_stopping,
};
use super::lifecycle::{
    EventKind, FailureCategory, LifecycleEvent, Snapshot, WorkerRecord, WorkerState, snapshot_of,
};
use super::monitor::{
    Event, describe_exit, signal_name, spawn_acceptor, spawn_reader, spawn_reaper,
    spawn_signal_thread,
};
use super::spawn::{SpawnError, WorkerLaunch, current_exe, spawn_worker};
use crate::config::{Config, ConfigReport, LifecycleLevel};
use crate::control::{
    BootstrapBundle, ControlError, ControlListener, ControlMessage, ControlServer,
    EndpointSettings, FrameSender, KeyDirectory, KeyError, MasterKey, MessageKind, RingBinding,
    SessionError, StopMode, SupervisorSessions, now_ms,
};
use crate::graph::{Graph, NodeRole, Registry};
use crate::runtime::routes::RouteCacheCounters;
use crate::runtime::{
    NodeReport, RingReport, RunSummary, WorkerReport, decode_reports, report_field, report_flag,
};

/// How long a reaped worker's connection may stay open before its exit is judged anyway.
const EXIT_GRACE: Duration = Duration::from_millis(200);

/// How a supervised run is set up.
#[derive(Debug, Clone, Default)]
pub struct SupervisorOptions {
    /// Executable to spawn workers from (default: this process's own binary, which must call
    /// [`crate::worker_entry`] first thing in `main`).
    pub worker_exe: Option<PathBuf>,
    /// Turn SIGTERM / SIGINT into a graceful stop (a second SIGINT forces it). The CLI does.
    pub handle_signals: bool,
    /// Set to request a graceful stop from another thread.
    pub stop: Option<Arc<AtomicBool>>,
    /// The caller is an embedding host (see [`crate::supervisor::Runtime`]): when the pipeline
    /// has no source, plan a ring from the host into each worker of the first group; when its
    /// last node is not a sink, a ring from each worker of the last group back to the host.
    pub host_rings: bool,
    /// Input records the source skips before the first one (resuming a stopped run); sinks
    /// then append to their outputs.
    pub skip: u64,
}

/// A supervised run could not be set up or did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("{0}")]
    Config(ConfigReport),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error(transparent)]
    Health(#[from] HealthError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("workers not ready after {waited_ms} ms: {}", describe_laggards(.laggards))]
    NotReady {
        waited_ms: u128,
        laggards: Vec<(String, WorkerState)>,
    },
    #[error("worker {} (group {}) failed: {}: {}", .0.worker, .0.group, .0.category, .0.detail)]
    WorkerFailed(RunFailure),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("{0}")]
    Setup(String),
}

fn describe_laggards(laggards: &[(String, WorkerState)]) -> String {
    laggards
        .iter()
        .map(|(w, s)| format!("{w} ({s})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first worker failure of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFailure {
    pub worker: String,
    pub group: String,
    pub category: FailureCategory,
    pub detail: String,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Every sink drained its input.
    Drained,
    /// A worker failed.
    Failed(RunFailure),
    /// Stopped by a signal (SIGTERM / SIGINT) or a stop request (`None`).
    Interrupted(Option<i32>),
}

/// What a supervised run reports.
#[derive(Debug, Clone)]
pub struct SupervisedRun {
    pub end: RunEnd,
    pub summary: RunSummary,
    /// Highest `seq` every sink completed in order (written, dead-lettered or dropped).
    pub completed_through: u64,
    /// Highest `seq` the source read.
    pub source_last_seq: u64,
    pub events: Vec<LifecycleEvent>,
}

impl SupervisedRun {
    /// Milliseconds of a supervisor phase (`supervisor_wait_ready`, ...), from its event.
    pub fn phase_ms(&self, kind: EventKind) -> Option<u64> {
        self.events
            .iter()
            .find(|e| e.kind == kind)
            .and_then(|e| e.field("duration_ms")?.parse().ok())
    }

    /// Spawn of the first worker to READY of the last: the start-groups and wait-ready phases.
    pub fn startup_ms(&self) -> Option<u64> {
        Some(
            self.phase_ms(EventKind::SupervisorStartGroups)?
                + self.phase_ms(EventKind::SupervisorWaitReady)?,
        )
    }
}

/// A worker the supervisor plans to run.
#[derive(Debug, Clone)]
struct WorkerPlan {
    nodes: Vec<String>,
    heartbeat: Duration,
    start_timeout: Duration,
    stop_timeout: Duration,
    cpus: Option<Vec<u32>>,
    rings: Vec<RingBinding>,
    inherit: Vec<i32>,
    /// The worker reads the supervisor's stdin (it holds a source whose adapter is stdin).
    stdin: bool,
}

/// A supervised run in progress.
pub struct Supervisor {
    config: Config,
    config_yaml: String,
    records: Vec<WorkerRecord>,
    plans: Vec<WorkerPlan>,
    server: Arc<ControlServer>,
    events: Receiver<Event>,
    events_tx: Sender<Event>,
    senders: HashMap<String, FrameSender>,
    sessions: SupervisorSessions,
    log: Vec<LifecycleEvent>,
    health_state: Arc<HealthState>,
    health: Option<HealthServer>,
    acceptor_shutdown: Arc<AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
    signals: Option<signal_hook::iterator::Handle>,
    external_stop: Option<Arc<AtomicBool>>,
    run_id: u64,
    /// Input records the source skips (a resumed run).
    skip: u64,
    /// Control connections refused so far (bad HELLO, idle, garbage).
    refused_connections: u64,
    next_correlation: u64,
    failure: Option<RunFailure>,
    stop_signal: Option<Option<i32>>,
    force_requested: bool,
    drained: BTreeMap<String, (u64, u64, String)>,
    lifecycle_enabled: bool,
    lifecycle_level: LifecycleLevel,
    work_started_at: Option<Instant>,
    failure_counts: HashMap<FailureCategory, u64>,
    /// Every ring of the run, mapped here too (metrics, crash accounting).
    rings: Vec<PlannedRing>,
    /// Peak and summed ring depth samples, per ring, for the summary.
    ring_samples: Vec<(u64, u64, u64)>,
    /// Telemetry rings, drain thread and span exporters (tracing on).
    telemetry: Option<super::telemetry::RunTelemetry>,
}

/// One ring between a worker and a worker of the next group (or the embedding host).
struct PlannedRing {
    name: String,
    segment: crate::data::Segment,
    /// The salt the ring was created with (verifies its checked words).
    salt: u64,
    /// The consuming worker (`None`: the host).
    consumer: Option<usize>,
    /// The end the embedding host holds, for host rings.
    host: Option<HostEnd>,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Whatever happened, nothing outlives the supervisor.
        for record in &self.records {
            if record.exit.is_none()
                && let Some(pid) = record.pid
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        self.acceptor_shutdown.store(true, Ordering::Relaxed);
        // The acceptor holds the listener: joining it removes a Unix socket's directory.
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        if let Some(signals) = self.signals.take() {
            signals.close();
        }
        self.health_state.alive.store(false, Ordering::Relaxed);
    }
}

impl Supervisor {
    /// Plans the workers, opens the control listener and health server, and spawns every
    /// worker in config order (groups in order, workers by index). Returns once all are spawned.
    pub fn launch(
        config: &Config,
        registry: &Registry,
        options: &SupervisorOptions,
    ) -> Result<Self, SupervisorError> {
        let launched_at = Instant::now();
        let graph = Graph::checked(config, registry).map_err(SupervisorError::Config)?;
        crate::config::check_run_files(config).map_err(SupervisorError::Config)?;
        // Whatever the transport: directories of supervisors killed earlier are cleaned here.
        crate::control::remove_stale_socket_dirs();
        let control = config
            .runtime
            .platform
            .execution_ipc
            .control
            .clone()
            .ok_or_else(|| {
                SupervisorError::Setup("process_supervisor mode needs a control block".into())
            })?;
        let (records, mut plans) = plan_workers(config, &graph);
        let rings = plan_rings(config, &graph, &records, &mut plans, options.host_rings)?;
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        let run_id = crate::observability::ids::new_run_id();
        let telemetry = super::telemetry::RunTelemetry::start(config, &ids, run_id, |i, fd| {
            plans[i].inherit.push(fd);
        })?;
        let master = MasterKey::generate()?;
        let directory = Arc::new(KeyDirectory::derive(&master, &ids));
        let listener = ControlListener::bind(&control)?;
        let server = Arc::new(
            ControlServer::new(
                listener,
                Arc::clone(&directory),
                EndpointSettings::from_config(&control),
            )
            .with_handshakes(
                Duration::from_secs_f64(control.handshake_timeout_seconds),
                control.max_pending_connections as usize,
            ),
        );
        let health_state = Arc::new(HealthState::default());
        health_state.alive.store(true, Ordering::Relaxed);
        let health = if config.runtime.platform.health.enabled {
            let server = HealthServer::start(
                &config.runtime.platform.health.bind,
                Arc::clone(&health_state),
            )?;
            if config.runtime.platform.health.expose {
                tracing::warn!(
                    worker_id = "supervisor",
                    "health endpoints (/metrics included) listen on {} and answer anyone who reaches it (health.expose: true)",
                    server.address()
                );
            }
            Some(server)
        } else {
            None
        };
        let (events_tx, events) = crossbeam_channel::unbounded();
        let acceptor_shutdown = Arc::new(AtomicBool::new(false));
        let acceptor = spawn_acceptor(
            Arc::clone(&server),
            events_tx.clone(),
            Arc::clone(&acceptor_shutdown),
        );
        let signals = if options.handle_signals {
            Some(spawn_signal_thread(events_tx.clone()).map_err(SupervisorError::Signals)?)
        } else {
            None
        };
        let logging = &config.runtime.observability.logging;
        let mut supervisor = Self {
            config_yaml: config.to_yaml(),
            config: config.clone(),
            records,
            plans,
            server,
            events,
            events_tx,
            senders: HashMap::new(),
            sessions: SupervisorSessions::new(ids),
            log: Vec::new(),
            health_state,
            health,
            acceptor_shutdown,
            acceptor: Some(acceptor),
            signals,
            external_stop: options.stop.clone(),
            run_id,
            skip: options.skip,
            refused_connections: 0,
            next_correlation: 1,
            failure: None,
            stop_signal: None,
            force_requested: false,
            drained: BTreeMap::new(),
            lifecycle_enabled: logging.lifecycle_events.enabled,
            lifecycle_level: logging.lifecycle_events.level,
            work_started_at: None,
            failure_counts: HashMap::new(),
            ring_samples: vec![(0, 0, 0); rings.len()],
            rings,
            telemetry,
        };
        let exe = match &options.worker_exe {
            Some(exe) => exe.clone(),
            None => current_exe().map_err(|e| {
                SupervisorError::Setup(format!("cannot find the worker executable: {e}"))
            })?,
        };
        supervisor.spawn_all(&exe, &directory, &control)?;
        supervisor.emit_phase(EventKind::SupervisorStartGroups, launched_at);
        Ok(supervisor)
    }

    fn spawn_all(
        &mut self,
        exe: &std::path::Path,
        directory: &KeyDirectory,
        control: &crate::config::Control,
    ) -> Result<(), SupervisorError> {
        let address = self.server.address().clone();
        for i in 0..self.records.len() {
            let (id, number) = (self.records[i].id.clone(), self.records[i].number);
            let plan = &self.plans[i];
            let key = directory
                .key(number)
                .cloned()
                .ok_or_else(|| SupervisorError::Setup(format!("no key for worker {id}")))?;
            let launch = WorkerLaunch {
                exe,
                worker_id: &id,
                number,
                control: &address,
                start_timeout: plan.start_timeout,
                control_ttl: Duration::from_secs_f64(control.auth.ttl_seconds),
                control_max_payload: control.max_payload_bytes,
                inherit: &plan.inherit,
                cpus: plan.cpus.as_deref(),
                stdin: plan.stdin,
            };
            let child = match spawn_worker(&launch, &key) {
                Ok(child) => child,
                Err(e) => {
                    self.stop_all();
                    return Err(e.into());
                }
            };
            let record = &mut self.records[i];
            record.pid = Some(child.id());
            record.spawned_at = Some(Instant::now());
            spawn_reaper(id.clone(), child, self.events_tx.clone());
            self.emit_worker(i, EventKind::WorkerSpawned, Vec::new());
        }
        self.refresh_metrics();
        Ok(())
    }

    /// The health server's address, when enabled.
    pub fn health_address(&self) -> Option<std::net::SocketAddr> {
        self.health.as_ref().map(HealthServer::address)
    }

    /// Group -> workers: id, pid, state, last heartbeat age, counters.
    pub fn snapshot(&self) -> Snapshot {
        snapshot_of(&self.records)
    }

    /// The lifecycle events so far, in order.
    pub fn events(&self) -> &[LifecycleEvent] {
        &self.log
    }

    /// The pid of a worker.
    pub fn pid_of(&self, worker: &str) -> Option<u32> {
        self.records
            .iter()
            .find(|r| r.id == worker)
            .and_then(|r| r.pid)
    }

    /// Control-plane rejections by kind.
    pub fn control_metrics(&self) -> &crate::control::ControlMetrics {
        self.server.metrics()
    }

    /// The first failure, if any.
    pub fn failure(&self) -> Option<&RunFailure> {
        self.failure.as_ref()
    }

    // ---------------------------------------------------------------------------------------
    // Events

    fn index_of(&self, worker: &str) -> Option<usize> {
        self.records.iter().position(|r| r.id == worker)
    }

    fn lifecycle_level(&self) -> tracing::Level {
        crate::observability::logging::lifecycle_level(self.lifecycle_level)
    }

    fn record_event(&mut self, event: LifecycleEvent) {
        if self.lifecycle_enabled {
            let worker = event
                .worker_id
                .clone()
                .unwrap_or_else(|| "supervisor".into());
            let pid = event.pid.unwrap_or_else(std::process::id).to_string();
            let pairs = event
                .group
                .iter()
                .map(|g| ("group", g.as_str()))
                .chain(event.fields.iter().map(|(k, v)| (*k, v.as_str())));
            let fields = crate::observability::logging::pack_fields(pairs);
            let kind = event.kind.as_str();
            match self.lifecycle_level() {
                tracing::Level::DEBUG => {
                    tracing::debug!(target: "lifecycle", worker_id = %worker, pid = %pid, lifecycle_fields = %fields, "{kind}")
                }
                _ => {
                    tracing::info!(target: "lifecycle", worker_id = %worker, pid = %pid, lifecycle_fields = %fields, "{kind}")
                }
            }
        }
        self.log.push(event);
    }

    fn emit_worker(&mut self, index: usize, kind: EventKind, fields: Vec<(&'static str, String)>) {
        let record = &self.records[index];
        let event = LifecycleEvent {
            ts: now_ms(),
            kind,
            worker_id: Some(record.id.clone()),
            group: Some(record.group.clone()),
            pid: record.pid,
            fields,
        };
        self.record_event(event);
    }

    fn emit_phase(&mut self, kind: EventKind, since: Instant) {
        let event = LifecycleEvent {
            ts: now_ms(),
            kind,
            worker_id: None,
            group: None,
            pid: Some(std::process::id()),
            fields: vec![("duration_ms", since.elapsed().as_millis().to_string())],
        };
        self.record_event(event);
    }

    /// Waits at most `timeout` for one event and applies it; then runs the watchdog.
    pub fn pump(&mut self, timeout: Duration) {
        match self.events.recv_timeout(timeout) {
            Ok(event) => self.apply(event),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {}
        }
        // Apply everything else already queued before judging timeouts.
        while let Ok(event) = self.events.try_recv() {
            self.apply(event);
        }
        self.watchdog();
        if self
            .external_stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
            && self.stop_signal.is_none()
        {
            self.stop_signal = Some(None);
        }
        self.refresh_metrics();
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Accepted(accepted) => self.on_accepted(*accepted),
            Event::Refused(detail) => {
                // A flood of bad connections must not flood the log: the first few are
                // logged, then one line per hundred.
                self.refused_connections += 1;
                let n = self.refused_connections;
                if n <= 5 || n.is_multiple_of(100) {
                    tracing::warn!(
                        worker_id = "supervisor",
                        refused = n,
                        "control connection refused: {detail}"
                    );
                }
            }
            Event::Frame { worker, received } => self.on_frame(&worker, received),
            Event::ControlProblem {
                worker,
                detail,
                closed,
            } => {
                if closed && let Some(index) = self.index_of(&worker) {
                    self.records[index].connected = false;
                    // Every frame the worker sent before dying has now been applied.
                    if let Some((status, at)) = self.records[index].pending_exit.take() {
                        self.judge_exit(index, status, at);
                    }
                }
                // A closed connection is judged by the reaper (exit status); a rejected frame
                // on an authenticated connection is a control error.
                if !closed || detail != "control connection closed" {
                    let stopping = self.index_of(&worker).is_some_and(|i| {
                        matches!(
                            self.records[i].state,
                            WorkerState::Stopping | WorkerState::Stopped
                        )
                    });
                    if !stopping && !detail.starts_with("control connection") {
                        self.fail(&worker, FailureCategory::ControlError, detail);
                    }
                }
            }
            Event::Exited { worker, status, at } => self.on_exit(&worker, status, at),
            Event::Signal(signal) => self.on_signal(signal),
        }
    }

    fn on_accepted(&mut self, accepted: crate::control::Accepted) {
        let worker = accepted.worker_id.clone();
        let Some(index) = self.index_of(&worker) else {
            return;
        };
        if let Err(e) = self.sessions.on_hello(&worker) {
            tracing::warn!(worker_id = %worker, "{e}");
            accepted.endpoint.tx.close();
            return;
        }
        let (tx, rx) = accepted.endpoint.split();
        self.records[index].connected = true;
        spawn_reader(worker.clone(), rx, self.events_tx.clone());
        self.senders.insert(worker.clone(), tx);
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        if let Err(e) = self.sessions.send_bootstrap(&worker, correlation) {
            self.fail(&worker, FailureCategory::ControlError, e.to_string());
            return;
        }
        let record = &self.records[index];
        let plan = &self.plans[index];
        let bundle = ControlMessage::BootstrapBundle(BootstrapBundle {
            group: record.group.clone(),
            worker_index: record.index,
            workers: self
                .records
                .iter()
                .filter(|r| r.group == record.group)
                .count() as u32,
            config_yaml: self.config_yaml.clone(),
            node_names: plan.nodes.clone(),
            rings: plan.rings.clone(),
            telemetry: self.telemetry.as_ref().and_then(|t| t.binding(index)),
            run_id: self.run_id,
            skip: self.skip,
            correlation,
        });
        self.send(&worker, &bundle, correlation);
    }

    fn send(&mut self, worker: &str, message: &ControlMessage, correlation: u64) -> bool {
        let Some(tx) = self.senders.get_mut(worker) else {
            return false;
        };
        match tx.send(message, correlation) {
            Ok(()) => true,
            Err(e) => {
                let stopping = self.index_of(worker).is_some_and(|i| {
                    matches!(
                        self.records[i].state,
                        WorkerState::Stopping | WorkerState::Stopped | WorkerState::Failed
                    )
                });
                if !stopping {
                    self.fail(
                        worker,
                        FailureCategory::ControlError,
                        format!("cannot send {}: {e}", message.kind()),
                    );
                }
                false
            }
        }
    }

    fn on_frame(&mut self, worker: &str, received: crate::control::Received) {
        let Some(index) = self.index_of(worker) else {
            return;
        };
        match received.message {
            ControlMessage::Ack { kind, correlation } => {
                let Some(kind) = MessageKind::from_u8(kind) else {
                    return;
                };
                if let Err(e) = self.sessions.on_ack(worker, kind, correlation) {
                    self.fail(worker, FailureCategory::ControlError, e.to_string());
                    return;
                }
                match kind {
                    MessageKind::BootstrapBundle => {
                        self.emit_worker(
                            index,
                            EventKind::WorkerBootstrapLoaded,
                            vec![("correlation_id", correlation.to_string())],
                        );
                    }
                    MessageKind::StartWork => {
                        self.records[index].state = WorkerState::Running;
                        self.records[index].last_heartbeat = Some(Instant::now());
                        self.emit_worker(index, EventKind::WorkerRunning, Vec::new());
                    }
                    _ => {}
                }
            }
            ControlMessage::Ready { .. } => {
                if let Err(e) = self.sessions.on_ready(worker) {
                    self.fail(worker, FailureCategory::ControlError, e.to_string());
                    return;
                }
                let record = &mut self.records[index];
                record.state = WorkerState::Ready;
                record.last_heartbeat = Some(Instant::now());
                let startup_ms = record.spawned_at.map_or(0, |t| t.elapsed().as_millis());
                self.emit_worker(
                    index,
                    EventKind::WorkerReady,
                    vec![("startup_ms", startup_ms.to_string())],
                );
            }
            ControlMessage::Heartbeat { counters, .. } => {
                let record = &mut self.records[index];
                record.last_heartbeat = Some(Instant::now());
                record.counters = counters;
            }
            ControlMessage::Drained {
                last_seq,
                records,
                report,
            } => {
                self.records[index].drained = true;
                self.drained
                    .insert(worker.to_string(), (last_seq, records, report));
            }
            ControlMessage::Failed { category, message } => {
                self.fail(worker, category, message);
            }
            other => {
                self.fail(
                    worker,
                    FailureCategory::ControlError,
                    format!("unexpected {} from a worker", other.kind()),
                );
            }
        }
    }

    fn on_exit(&mut self, worker: &str, status: std::process::ExitStatus, at: Instant) {
        let Some(index) = self.index_of(worker) else {
            return;
        };
        if self.records[index].connected {
            // Its last frames (a FAILED saying why) may still be in the socket: judge the exit
            // once the reader reaches the end of the connection (or after a short grace).
            self.records[index].pending_exit = Some((status, at));
            return;
        }
        self.judge_exit(index, status, at);
    }

    /// Records a reaped worker: a stop it was asked for, or a failure by exit status.
    fn judge_exit(&mut self, index: usize, status: std::process::ExitStatus, at: Instant) {
        let worker = self.records[index].id.clone();
        let worker = worker.as_str();
        let exit = describe_exit(&status);
        let record = &mut self.records[index];
        record.exit = Some(exit.clone());
        let lifetime_ms = record
            .spawned_at
            .map_or(0, |t| at.duration_since(t).as_millis());
        let expected = record.state == WorkerState::Stopping;
        let failed_before = record.state == WorkerState::Failed;
        if !expected && !failed_before {
            use std::os::unix::process::ExitStatusExt;
            let (category, detail) = match status.signal() {
                Some(signal) => (
                    FailureCategory::Crashed,
                    format!("killed by {}", signal_name(signal)),
                ),
                None => (FailureCategory::Exited, format!("unexpected {exit}")),
            };
            self.fail(worker, category, detail);
        }
        let record = &mut self.records[index];
        if record.state != WorkerState::Failed {
            record.state = WorkerState::Stopped;
        }
        let mode = record.stop_mode.unwrap_or("none");
        self.emit_worker(
            index,
            EventKind::WorkerStopped,
            vec![
                ("mode", mode.to_string()),
                ("exit", exit),
                ("duration_ms", lifetime_ms.to_string()),
            ],
        );
    }

    fn on_signal(&mut self, signal: i32) {
        let interrupt = signal == signal_hook::consts::SIGINT;
        if interrupt && self.stop_signal == Some(Some(signal)) {
            self.force_requested = true;
        }
        if self.stop_signal.is_none() {
            self.stop_signal = Some(Some(signal));
        }
    }

    /// Marks `worker` failed (first failure of the run is kept) and emits `worker_failed`.
    fn fail(&mut self, worker: &str, category: FailureCategory, detail: String) {
        let Some(index) = self.index_of(worker) else {
            return;
        };
        let record = &mut self.records[index];
        if matches!(record.state, WorkerState::Failed | WorkerState::Stopped) {
            return;
        }
        record.state = WorkerState::Failed;
        record.failure = Some((category, detail.clone()));
        *self.failure_counts.entry(category).or_default() += 1;
        if self.failure.is_none() {
            self.failure = Some(RunFailure {
                worker: worker.to_string(),
                group: record.group.clone(),
                category,
                detail: detail.clone(),
            });
        }
        self.emit_worker(
            index,
            EventKind::WorkerFailed,
            vec![
                ("category", category.as_str().to_string()),
                ("detail", detail),
            ],
        );
        if category == FailureCategory::HeartbeatTimeout {
            // Judged dead: it would not hear a STOP, so waiting for one only delays the end.
            self.kill(index);
        }
    }

    /// SIGKILL to worker `index` if it is still alive.
    fn kill(&mut self, index: usize) {
        let record = &mut self.records[index];
        if record.exit.is_some() {
            return;
        }
        record.stop_mode = Some("forced");
        if let Some(pid) = record.pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// Start timeouts, heartbeat timeouts, and exits whose connection never closed.
    fn watchdog(&mut self) {
        let now = Instant::now();
        for index in 0..self.records.len() {
            if let Some((status, at)) = self.records[index].pending_exit
                && now.duration_since(at) > EXIT_GRACE
            {
                self.records[index].pending_exit = None;
                self.records[index].connected = false;
                self.judge_exit(index, status, at);
            }
        }
        let mut late: Vec<(String, FailureCategory, String)> = Vec::new();
        for (record, plan) in self.records.iter().zip(&self.plans) {
            match record.state {
                WorkerState::Starting => {
                    if let Some(spawned) = record.spawned_at
                        && now.duration_since(spawned) > plan.start_timeout
                    {
                        late.push((
                            record.id.clone(),
                            FailureCategory::StartTimeout,
                            format!("no READY within {:.1} s", plan.start_timeout.as_secs_f64()),
                        ));
                    }
                }
                WorkerState::Ready | WorkerState::Running => {
                    let limit = plan.heartbeat * 3;
                    if let Some(last) = record.last_heartbeat
                        && now.duration_since(last) > limit
                        && !record.drained
                    {
                        late.push((
                            record.id.clone(),
                            FailureCategory::HeartbeatTimeout,
                            format!(
                                "no heartbeat for {} ms (limit {} ms)",
                                now.duration_since(last).as_millis(),
                                limit.as_millis()
                            ),
                        ));
                    }
                }
                _ => {}
            }
        }
        for (worker, category, detail) in late {
            self.fail(&worker, category, detail);
        }
    }

    fn refresh_metrics(&mut self) {
        // Depths come from shared memory a crashing peer may have scribbled on: bounded by the
        // ring's size, summed without overflow.
        let capacity = self.config.runtime.platform.execution_ipc.ring_bytes;
        for (ring, sample) in self.rings.iter().zip(self.ring_samples.iter_mut()) {
            let depth = crate::data::read_depth(&ring.segment).min(capacity);
            sample.0 = sample.0.max(depth);
            sample.1 = sample.1.saturating_add(depth);
            sample.2 += 1;
        }
        let mut view = MetricsView {
            workers: self
                .records
                .iter()
                .map(|r| (r.id.clone(), r.group.clone(), r.state.as_str()))
                .collect(),
            control_rejections: self
                .server
                .metrics()
                .snapshot()
                .into_iter()
                .map(|(k, v)| (k.as_str(), v))
                .collect(),
            failures: FailureCategory::ALL
                .iter()
                .map(|c| (c.as_str(), self.failure_counts.get(c).copied().unwrap_or(0)))
                .collect(),
            worker_records: self
                .records
                .iter()
                .map(|r| (r.id.clone(), r.counters.records_in))
                .collect(),
            worker_busy: self
                .records
                .iter()
                .map(|r| (r.id.clone(), u64::from(r.counters.busy_per_mille)))
                .collect(),
            route_cache: self.route_cache_counters().pairs().to_vec(),
            spans: self
                .telemetry
                .as_ref()
                .map(|t| t.counters())
                .unwrap_or_default()
                .iter()
                .flat_map(|c| {
                    [
                        (c.kind.clone(), "produced", c.produced),
                        (c.kind.clone(), "exported", c.exported),
                        (c.kind.clone(), "dropped", c.dropped),
                        (c.kind.clone(), "failed", c.failed),
                    ]
                })
                .collect(),
            ..MetricsView::default()
        };
        view.restarts = 0;
        view.ring_depths = self
            .rings
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    crate::data::read_depth(&r.segment).min(capacity),
                )
            })
            .collect();
        view.ring_records = self
            .rings
            .iter()
            .map(|r| (r.name.clone(), crate::data::read_counts(&r.segment).0))
            .collect();
        if let Ok(mut metrics) = self.health_state.metrics.lock() {
            *metrics = view;
        }
    }

    // ---------------------------------------------------------------------------------------
    // Phases

    fn all_in(&self, states: &[WorkerState]) -> bool {
        self.records.iter().all(|r| states.contains(&r.state))
    }

    /// Waits until every worker is READY. Fails at once when a worker fails, and at
    /// `readiness_timeout_seconds` naming every worker that is not ready and its state.
    pub fn wait_ready(&mut self) -> Result<(), SupervisorError> {
        let started = Instant::now();
        let timeout = Duration::from_secs_f64(
            self.config
                .runtime
                .platform
                .readiness
                .readiness_timeout_seconds,
        );
        loop {
            if let Some(failure) = &self.failure {
                return Err(SupervisorError::WorkerFailed(failure.clone()));
            }
            if self.all_in(&[WorkerState::Ready, WorkerState::Running]) {
                self.emit_phase(EventKind::SupervisorWaitReady, started);
                return Ok(());
            }
            if started.elapsed() >= timeout {
                let laggards = self
                    .records
                    .iter()
                    .filter(|r| r.state != WorkerState::Ready)
                    .map(|r| (r.id.clone(), r.state))
                    .collect();
                return Err(SupervisorError::NotReady {
                    waited_ms: started.elapsed().as_millis(),
                    laggards,
                });
            }
            self.pump(Duration::from_millis(20));
        }
    }

    /// Opens the readiness gate and sends START_WORK to every worker.
    pub fn start_work(&mut self) -> Result<(), SupervisorError> {
        let started = Instant::now();
        let required = self.sessions.start_work()?;
        self.health_state.gate_open.store(true, Ordering::Relaxed);
        notify_ready();
        self.work_started_at = Some(Instant::now());
        let workers: Vec<String> = self.records.iter().map(|r| r.id.clone()).collect();
        for worker in &workers {
            let correlation = self.next_correlation;
            self.next_correlation += 1;
            let message = ControlMessage::StartWork {
                required: required.clone(),
            };
            self.send(worker, &message, correlation);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.all_in(&[WorkerState::Running, WorkerState::Stopped])
            && self.failure.is_none()
            && Instant::now() < deadline
        {
            self.pump(Duration::from_millis(10));
        }
        self.emit_phase(EventKind::SupervisorStartWorkload, started);
        // The gate is open: a failure from here on belongs to the run, which
        // `run_until_done` reports with its accounting.
        Ok(())
    }

    /// Runs until every worker drained, a worker fails, or a stop is requested. A drained run
    /// is checked before it counts as one: the sinks must have completed exactly what the
    /// source read, or the run fails as `ring_corrupted` naming the records in no output.
    pub fn run_until_done(&mut self) -> RunEnd {
        loop {
            if let Some(failure) = &self.failure {
                return RunEnd::Failed(failure.clone());
            }
            if let Some(signal) = self.stop_signal {
                return RunEnd::Interrupted(signal);
            }
            if self.all_drained() {
                self.check_accounting();
                return match &self.failure {
                    Some(failure) => RunEnd::Failed(failure.clone()),
                    None => RunEnd::Drained,
                };
            }
            self.pump(Duration::from_millis(50));
        }
    }

    fn all_drained(&self) -> bool {
        self.records
            .iter()
            .all(|r| self.drained.contains_key(&r.id))
    }

    /// Every record the source read must be completed by the sinks (written, dead-lettered
    /// or dropped on purpose): end of stream is proven by the counts, never assumed.
    fn check_accounting(&mut self) {
        let read = self
            .records
            .iter()
            .filter(|r| r.holds_source)
            .filter_map(|r| self.drained.get(&r.id).map(|(last, _, _)| *last))
            .max();
        // Records submitted by an embedding host are accounted for by its replies.
        let Some(read) = read else { return };
        let completed = self.completed_through();
        if completed == read {
            return;
        }
        let Some(sink) = self
            .records
            .iter()
            .find(|r| r.ends_chain)
            .map(|r| r.id.clone())
        else {
            return;
        };
        let detail = if completed < read {
            format!(
                "the source read through seq {read} but the sinks completed through seq {completed}: records {} to {read} reached no output",
                completed + 1
            )
        } else {
            format!(
                "the sinks report seq {completed} complete, beyond what the source read (seq {read})"
            )
        };
        self.fail(&sink, FailureCategory::RingCorrupted, detail);
    }

    /// An interrupted run (SIGTERM, SIGINT, stop request): the workers holding sources stop
    /// ingesting at their next record and end-of-stream drains the pipeline; once every sink
    /// reported DRAINED (or the largest stop timeout passed, or a second SIGINT), everyone stops.
    pub fn drain_then_stop(&mut self) {
        let stop_timeout = self.largest_stop_timeout();
        let deadline_ms = now_ms() + stop_timeout.as_millis() as u64;
        self.health_state.stopping.store(true, Ordering::Relaxed);
        let sources: Vec<usize> = (0..self.records.len())
            .filter(|i| self.records[*i].holds_source && self.records[*i].exit.is_none())
            .collect();
        for index in sources {
            let worker = self.records[index].id.clone();
            let correlation = self.next_correlation;
            self.next_correlation += 1;
            self.send(
                &worker,
                &ControlMessage::Stop {
                    mode: StopMode::Graceful,
                    deadline_ms,
                },
                correlation,
            );
        }
        let deadline = Instant::now() + stop_timeout;
        while !self.last_group_drained()
            && self.failure.is_none()
            && !self.force_requested
            && Instant::now() < deadline
        {
            self.pump(Duration::from_millis(5));
        }
        self.stop_all();
    }

    /// Stops every worker: STOP (graceful) to those that can hear it, then SIGKILL to whoever
    /// is alive after the largest `stop_timeout_seconds` (or at once after a second SIGINT).
    pub fn stop_all(&mut self) {
        self.health_state.stopping.store(true, Ordering::Relaxed);
        notify_stopping();
        let graceful_started = Instant::now();
        let stop_timeout = self.largest_stop_timeout();
        let deadline_ms = now_ms() + stop_timeout.as_millis() as u64;
        let mut immediate: Vec<usize> = Vec::new();
        for index in 0..self.records.len() {
            let record = &self.records[index];
            // Gone, or already killed (judged dead): nothing to ask.
            if record.exit.is_some() || record.stop_mode == Some("forced") {
                continue;
            }
            // A worker that never said READY runs no control thread yet: it cannot hear STOP.
            let can_hear = matches!(
                self.sessions.phase(&record.id),
                Some(
                    crate::control::session::SupervisorPhase::Ready
                        | crate::control::session::SupervisorPhase::Running
                )
            );
            if !can_hear {
                immediate.push(index);
                continue;
            }
            let worker = record.id.clone();
            if record.state != WorkerState::Failed {
                self.records[index].state = WorkerState::Stopping;
            }
            self.records[index].stop_mode = Some("graceful");
            self.emit_worker(
                index,
                EventKind::WorkerStopping,
                vec![("mode", "graceful".into())],
            );
            let correlation = self.next_correlation;
            self.next_correlation += 1;
            // A failed run is not drained: a crashed peer may leave a ring that never
            // empties, and the source's worker would wait on it until killed.
            let mode = if self.failure.is_some() {
                StopMode::Abort
            } else {
                StopMode::Graceful
            };
            self.send(
                &worker,
                &ControlMessage::Stop { mode, deadline_ms },
                correlation,
            );
        }
        let deadline = Instant::now() + stop_timeout;
        while !immediate.is_empty() || self.records.iter().any(|r| r.exit.is_none()) {
            if !immediate.is_empty() || self.force_requested || Instant::now() >= deadline {
                break;
            }
            self.pump(Duration::from_millis(5));
        }
        self.emit_phase(EventKind::SupervisorGracefulStop, graceful_started);
        if self.records.iter().any(|r| r.exit.is_none()) {
            self.force_stop();
        }
        self.acceptor_shutdown.store(true, Ordering::Relaxed);
        self.health_state.gate_open.store(false, Ordering::Relaxed);
    }

    fn force_stop(&mut self) {
        let started = Instant::now();
        for index in 0..self.records.len() {
            if self.records[index].exit.is_some() {
                continue;
            }
            if self.records[index].state != WorkerState::Failed {
                self.records[index].state = WorkerState::Stopping;
            }
            self.records[index].stop_mode = Some("forced");
            self.emit_worker(
                index,
                EventKind::WorkerStopping,
                vec![("mode", "forced".into())],
            );
            if let Some(pid) = self.records[index].pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.records.iter().any(|r| r.exit.is_none()) && Instant::now() < deadline {
            self.pump(Duration::from_millis(5));
        }
        self.emit_phase(EventKind::SupervisorForceStop, started);
    }

    /// The run summary, from every worker's DRAINED report.
    pub fn summary(&self) -> RunSummary {
        let order: HashMap<&str, usize> = self
            .config
            .pipeline
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let mut nodes: Vec<NodeReport> = self
            .drained
            .values()
            .flat_map(|(_, _, report)| decode_reports(report))
            .collect();
        nodes.sort_by_key(|n| order.get(n.name.as_str()).copied().unwrap_or(usize::MAX));
        // Records the source read: from its DRAINED report, or (a source worker that failed)
        // its last heartbeat.
        let records_in = self
            .records
            .iter()
            .filter(|r| r.holds_source)
            .map(|r| {
                self.drained
                    .get(&r.id)
                    .map_or(r.counters.records_in, |(_, records, _)| *records)
            })
            .sum();
        let elapsed_ns = self
            .drained
            .values()
            .filter_map(|(_, _, r)| report_field(r, "elapsed_ns"))
            .max()
            .unwrap_or(0);
        let workers = self.worker_reports();
        RunSummary {
            profile: "process_supervisor".to_string(),
            records_in,
            skipped: self.skip.min(self.source_last_seq()),
            last_seq: self.completed_through(),
            elapsed: if elapsed_ns > 0 {
                Duration::from_nanos(elapsed_ns)
            } else {
                self.work_started_at.map_or(Duration::ZERO, |t| t.elapsed())
            },
            dead_lettered: self
                .drained
                .values()
                .filter_map(|(_, _, r)| report_field(r, "dead_lettered"))
                .sum(),
            dead_letter_path: self
                .config
                .adapters
                .dead_letter
                .as_ref()
                .map(|d| d.path().to_path_buf()),
            interrupted: self
                .drained
                .values()
                .any(|(_, _, r)| report_flag(r, "interrupted"))
                || self.stop_signal.is_some(),
            nodes,
            peak_rss_kib: crate::observability::process::peak_rss_kib().unwrap_or(0)
                + workers.iter().map(|w| w.peak_rss_kib).sum::<u64>(),
            workers,
            rings: self.ring_report(),
            route_cache: self.route_cache_counters(),
            spans: self
                .telemetry
                .as_ref()
                .map(|t| t.counters())
                .unwrap_or_default(),
        }
    }

    /// Ends span export: the drain thread reads what the workers left, the exporters get
    /// their deadline. Call after every worker stopped.
    fn finish_telemetry(&mut self) {
        let worker_dropped = self
            .drained
            .values()
            .filter_map(|(_, _, r)| report_field(r, "spans_dropped"))
            .sum();
        if let Some(telemetry) = self.telemetry.as_mut() {
            telemetry.finish(worker_dropped);
        }
    }

    /// Each worker that reported DRAINED: its elapsed and busy time and peak memory.
    fn worker_reports(&self) -> Vec<WorkerReport> {
        self.records
            .iter()
            .filter_map(|record| {
                let (_, _, report) = self.drained.get(&record.id)?;
                let field = |name| report_field(report, name).unwrap_or(0);
                Some(WorkerReport {
                    id: record.id.clone(),
                    group: record.group.clone(),
                    elapsed: Duration::from_nanos(field("elapsed_ns")),
                    busy: Duration::from_nanos(field("busy_ns")),
                    peak_rss_kib: field("peak_rss_kib"),
                })
            })
            .collect()
    }

    /// Route cache counters summed over the workers' DRAINED reports (or, for a worker that
    /// has not drained, its last heartbeat); `generation` is the highest seen.
    fn route_cache_counters(&self) -> RouteCacheCounters {
        let mut total = RouteCacheCounters::default();
        for record in &self.records {
            let values: Vec<u64> = match self.drained.get(&record.id) {
                Some((_, _, report)) => RouteCacheCounters::default()
                    .pairs()
                    .iter()
                    .map(|(name, _)| {
                        report_field(report, &format!("route_cache.{name}")).unwrap_or(0)
                    })
                    .collect(),
                None => record.counters.route_cache.clone(),
            };
            total.add(&values);
        }
        total
    }

    /// Highest `seq` every sink completed: from its DRAINED report, or, when the sink's
    /// worker died, from the progress it published in its inbound ring after each flush (a
    /// progress word that fails its check falls back to the last heartbeat's figure).
    pub fn completed_through(&self) -> u64 {
        (0..self.records.len())
            .filter(|i| self.records[*i].ends_chain)
            .map(|i| match self.drained.get(&self.records[i].id) {
                Some((last, _, _)) => *last,
                None => self
                    .rings
                    .iter()
                    .filter(|r| r.consumer == Some(i))
                    .map(|r| {
                        crate::data::read_progress(&r.segment, r.salt)
                            .unwrap_or(self.records[i].counters.completed)
                    })
                    .min()
                    .unwrap_or(0),
            })
            .min()
            .unwrap_or(0)
    }

    /// Per ring: records through it, and its peak and mean occupancy as sampled at every
    /// supervisor wake-up (heartbeats, control frames, and at least every 50 ms).
    pub fn ring_report(&self) -> Vec<RingReport> {
        let capacity = self.config.runtime.platform.execution_ipc.ring_bytes;
        self.rings
            .iter()
            .zip(&self.ring_samples)
            .map(|(r, (peak, sum, n))| RingReport {
                name: r.name.clone(),
                records: crate::data::read_counts(&r.segment).0,
                capacity_bytes: capacity,
                peak_bytes: *peak,
                mean_bytes: if *n > 0 { sum / n } else { 0 },
            })
            .collect()
    }

    /// The run's id (trace ids of its records derive from it).
    pub fn run_id(&self) -> u64 {
        self.run_id
    }

    /// The rings whose other end belongs to an embedding host.
    pub(crate) fn host_rings(
        &self,
    ) -> impl Iterator<Item = (&str, HostEnd, &crate::data::Segment)> {
        self.rings
            .iter()
            .filter_map(|r| Some((r.name.as_str(), r.host?, &r.segment)))
    }

    /// Waits, at most the largest stop timeout, for the last group to report DRAINED (an
    /// embedding host has sent end of stream and read every reply).
    pub(crate) fn wait_drained(&mut self) -> RunEnd {
        let deadline = Instant::now() + self.largest_stop_timeout();
        loop {
            if let Some(failure) = &self.failure {
                return RunEnd::Failed(failure.clone());
            }
            if self.last_group_drained() {
                return RunEnd::Drained;
            }
            if Instant::now() >= deadline {
                return RunEnd::Interrupted(None);
            }
            self.pump(Duration::from_millis(20));
        }
    }

    /// A node error (policy `fail`) leaves its worker alive long enough to pass on every
    /// record before the failing one, with end of stream: the groups after it complete those
    /// (at most the largest stop timeout) so the report says exactly what was done.
    fn drain_after_node_error(&mut self, failure: &RunFailure) {
        let failed_at_end = self
            .records
            .iter()
            .any(|r| r.id == failure.worker && r.ends_chain);
        if failed_at_end {
            return;
        }
        let deadline = Instant::now() + self.largest_stop_timeout();
        let last_group_gone = |s: &Self| {
            s.records
                .iter()
                .any(|r| r.ends_chain && r.exit.is_some() && !s.drained.contains_key(&r.id))
        };
        while !self.last_group_drained()
            && !last_group_gone(self)
            && !self.force_requested
            && Instant::now() < deadline
        {
            self.pump(Duration::from_millis(5));
        }
    }

    fn last_group_drained(&self) -> bool {
        let mut last = self.records.iter().filter(|r| r.ends_chain).peekable();
        last.peek().is_some() && last.all(|r| self.drained.contains_key(&r.id))
    }

    fn largest_stop_timeout(&self) -> Duration {
        self.plans
            .iter()
            .map(|p| p.stop_timeout)
            .max()
            .unwrap_or(Duration::from_secs(30))
    }

    /// Every worker's id and pid.
    pub fn workers(&self) -> Vec<(String, Option<u32>)> {
        self.records.iter().map(|r| (r.id.clone(), r.pid)).collect()
    }

    /// Highest `seq` the source read (from its DRAINED report or its last heartbeat).
    pub fn source_last_seq(&self) -> u64 {
        self.records
            .iter()
            .filter(|r| r.holds_source)
            .map(|r| {
                self.drained
                    .get(&r.id)
                    .map_or(r.counters.records_in, |(last, _, _)| *last)
            })
            .max()
            .unwrap_or(0)
    }
}

/// Which end of a ring the embedding host holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostEnd {
    /// The host produces into the ring (submissions to the first group).
    Producer,
    /// The host consumes the ring (terminal outputs of the last group).
    Consumer,
}

/// Creates the run's rings and records each worker end in its plan (binding in the bundle, fd
/// to inherit): one per (worker, worker of the next group) pair, plus, for an embedding host,
/// one from the host into each first-group worker and one from each last-group worker back.
fn plan_rings(
    config: &Config,
    graph: &Graph,
    records: &[WorkerRecord],
    plans: &mut [WorkerPlan],
    host_rings: bool,
) -> Result<Vec<PlannedRing>, SupervisorError> {
    let topology = crate::runtime::topology::Topology::of(config, graph);
    let capacity = config.runtime.platform.execution_ipc.ring_bytes as usize;
    let mut planner = RingPlanner {
        capacity,
        len: crate::data::ring_memory_len(capacity),
        rings: Vec::new(),
    };
    let workers_of = |group: &str| -> Vec<usize> {
        (0..records.len())
            .filter(|i| records[*i].group == group)
            .collect()
    };
    for pair in topology.groups.windows(2) {
        let (from, to) = (&pair[0], &pair[1]);
        for p in workers_of(&from.name) {
            for c in workers_of(&to.name) {
                let name = format!("{}->{}", records[p].id, records[c].id);
                let (segment, salt) = planner.create(&name)?;
                let node = to.first as u32;
                planner.bind(plans, p, &segment, false, node, &records[c].id);
                planner.bind(plans, c, &segment, true, node, &records[p].id);
                planner.rings.push(PlannedRing {
                    name,
                    segment,
                    salt,
                    consumer: Some(c),
                    host: None,
                });
            }
        }
    }
    if !host_rings {
        return Ok(planner.rings);
    }
    let last_is_sink = graph.nodes.last().is_some_and(|n| n.role == NodeRole::Sink);
    if let (false, Some(first)) = (graph.has_source(), topology.groups.first()) {
        for c in workers_of(&first.name) {
            let name = format!("host->{}", records[c].id);
            let (segment, salt) = planner.create(&name)?;
            planner.bind(plans, c, &segment, true, first.first as u32, "host");
            planner.rings.push(PlannedRing {
                name,
                segment,
                salt,
                consumer: Some(c),
                host: Some(HostEnd::Producer),
            });
        }
    }
    if let (false, Some(last)) = (last_is_sink, topology.groups.last()) {
        for p in workers_of(&last.name) {
            let name = format!("{}->host", records[p].id);
            let (segment, salt) = planner.create(&name)?;
            let target = crate::data::TERMINAL_TARGET;
            planner.bind(plans, p, &segment, false, target, "host");
            planner.rings.push(PlannedRing {
                name,
                segment,
                salt,
                consumer: None,
                host: Some(HostEnd::Consumer),
            });
        }
    }
    Ok(planner.rings)
}

/// Creates ring segments of one size and binds their ends to workers.
struct RingPlanner {
    capacity: usize,
    len: usize,
    rings: Vec<PlannedRing>,
}

impl RingPlanner {
    /// A fresh ring and the salt it was initialised with.
    fn create(&self, name: &str) -> Result<(crate::data::Segment, u64), SupervisorError> {
        let segment = crate::data::Segment::create(name, self.len)
            .map_err(|e| SupervisorError::Setup(e.to_string()))?;
        let mut salt = [0u8; 8];
        getrandom::fill(&mut salt).map_err(|e| SupervisorError::Setup(e.to_string()))?;
        let salt = u64::from_le_bytes(salt);
        crate::data::init_ring(&segment, self.capacity, salt)
            .map_err(|e| SupervisorError::Setup(e.to_string()))?;
        Ok((segment, salt))
    }

    /// Records one end of `segment` in worker `worker`'s plan.
    fn bind(
        &self,
        plans: &mut [WorkerPlan],
        worker: usize,
        segment: &crate::data::Segment,
        inbound: bool,
        node: u32,
        peer: &str,
    ) {
        let fd = segment.inheritable_fd();
        plans[worker].rings.push(RingBinding {
            fd,
            len: self.len as u64,
            inbound,
            node,
            peer: peer.to_string(),
        });
        plans[worker].inherit.push(fd);
    }
}

/// Workers in spawn order (groups in config order, workers by index) with their plans.
fn plan_workers(config: &Config, graph: &Graph) -> (Vec<WorkerRecord>, Vec<WorkerPlan>) {
    let mut records = Vec::new();
    let mut plans = Vec::new();
    let topology = crate::runtime::topology::Topology::of(config, graph);
    let last_group = topology.groups.last().map(|g| g.name.clone());
    for group in &config.runtime.platform.process_groups {
        let holds = |role: NodeRole| {
            graph
                .nodes
                .iter()
                .any(|n| n.role == role && group.nodes.contains(&n.name))
        };
        for index in 1..=group.workers {
            records.push(WorkerRecord {
                id: format!("{}#{index}", group.name),
                group: group.name.clone(),
                index,
                number: records.len() as u32 + 1,
                pid: None,
                state: WorkerState::Starting,
                spawned_at: None,
                last_heartbeat: None,
                counters: Default::default(),
                exit: None,
                failure: None,
                stop_mode: None,
                ends_chain: last_group.as_deref() == Some(group.name.as_str()),
                holds_source: holds(NodeRole::Source),
                drained: false,
                connected: false,
                pending_exit: None,
            });
            plans.push(WorkerPlan {
                nodes: graph
                    .nodes
                    .iter()
                    .filter(|n| group.nodes.contains(&n.name))
                    .map(|n| n.name.clone())
                    .collect(),
                heartbeat: Duration::from_secs_f64(group.heartbeat_seconds),
                start_timeout: Duration::from_secs_f64(group.start_timeout_seconds),
                stop_timeout: Duration::from_secs_f64(group.stop_timeout_seconds),
                cpus: group.cpus.clone(),
                rings: Vec::new(),
                inherit: Vec::new(),
                // The source runs in this worker, so the input on stdin must reach it.
                stdin: holds(NodeRole::Source)
                    && matches!(config.adapters.source, crate::config::SourceAdapter::Stdin),
            });
        }
    }
    (records, plans)
}

/// Runs a whole supervised batch: launch, wait for readiness, start, run until the sinks
/// drain (or a failure or a signal), stop everyone, and report.
pub fn run_supervised(
    config: &Config,
    registry: &Registry,
    options: &SupervisorOptions,
) -> Result<SupervisedRun, SupervisorError> {
    let mut supervisor = Supervisor::launch(config, registry, options)?;
    if let Err(e) = supervisor
        .wait_ready()
        .and_then(|()| supervisor.start_work())
    {
        supervisor.stop_all();
        return Err(e);
    }
    let end = supervisor.run_until_done();
    Ok(finish_run(supervisor, end))
}

/// Stops every worker after a run ended with `end` (an interrupted run drains first) and
/// builds the report.
pub(crate) fn finish_run(mut supervisor: Supervisor, end: RunEnd) -> SupervisedRun {
    match &end {
        RunEnd::Interrupted(_) => supervisor.drain_then_stop(),
        RunEnd::Failed(failure) if failure.category == FailureCategory::NodeError => {
            supervisor.drain_after_node_error(failure);
            supervisor.stop_all();
        }
        _ => supervisor.stop_all(),
    }
    supervisor.finish_telemetry();
    // A run that drained but had a worker fail while stopping is still a failed run.
    let end = match (&end, supervisor.failure()) {
        (RunEnd::Drained, Some(failure)) => RunEnd::Failed(failure.clone()),
        _ => end,
    };
    SupervisedRun {
        summary: supervisor.summary(),
        completed_through: supervisor.completed_through(),
        source_last_seq: supervisor.source_last_seq(),
        events: supervisor.events().to_vec(),
        end,
    }
}
