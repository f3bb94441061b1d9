//! Worker lifecycle: the six states, the failure categories, the event catalogue, and the
//! registry that records them.
//!
//! State machine (docs/architecture.md): `starting -> ready -> running -> stopping -> stopped`, and
//! `failed` from any state. Only the supervisor's loop changes a worker's state; every change
//! emits a structured [`LifecycleEvent`] (with `ts`, `worker_id`, `group`, `pid` and its own
//! fields) that is kept in order and rendered through the logging plane, one line each.

use crate::observability::logging::LogValue;
use std::time::{Duration, Instant};

use crate::control::WorkerCounters;

/// Where a worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkerState {
    /// Spawned; READY not yet received.
    Starting,
    /// READY received; waiting for START_WORK.
    Ready,
    /// Processing records.
    Running,
    /// Told to stop; draining.
    Stopping,
    /// Exited after being told to.
    Stopped,
    /// Failed (with a [`FailureCategory`]).
    Failed,
}

impl WorkerState {
    /// The state's label in events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }

    /// Every state, for gauges.
    pub const ALL: [WorkerState; 6] = [
        Self::Starting,
        Self::Ready,
        Self::Running,
        Self::Stopping,
        Self::Stopped,
        Self::Failed,
    ];
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub use crate::control::FailureCategory;

/// The event catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A worker process was spawned.
    WorkerSpawned,
    /// A worker received and accepted its bootstrap bundle.
    WorkerBootstrapLoaded,
    /// A worker is READY.
    WorkerReady,
    /// A worker was told to start work.
    WorkerRunning,
    /// A worker was told to stop.
    WorkerStopping,
    /// A worker exited after being told to.
    WorkerStopped,
    /// A worker failed.
    WorkerFailed,
    /// The supervisor spawns the groups.
    SupervisorStartGroups,
    /// The supervisor waits for every READY.
    SupervisorWaitReady,
    /// The supervisor starts the workload.
    SupervisorStartWorkload,
    /// The supervisor stops the workers gracefully.
    SupervisorGracefulStop,
    /// The supervisor kills the workers.
    SupervisorForceStop,
}

impl EventKind {
    /// The event's name in logs (`worker_ready`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WorkerSpawned => "worker_spawned",
            Self::WorkerBootstrapLoaded => "worker_bootstrap_loaded",
            Self::WorkerReady => "worker_ready",
            Self::WorkerRunning => "worker_running",
            Self::WorkerStopping => "worker_stopping",
            Self::WorkerStopped => "worker_stopped",
            Self::WorkerFailed => "worker_failed",
            Self::SupervisorStartGroups => "supervisor_start_groups",
            Self::SupervisorWaitReady => "supervisor_wait_ready",
            Self::SupervisorStartWorkload => "supervisor_start_workload",
            Self::SupervisorGracefulStop => "supervisor_graceful_stop",
            Self::SupervisorForceStop => "supervisor_force_stop",
        }
    }
}

/// One lifecycle event.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleEvent {
    /// Unix time, milliseconds.
    pub ts: u64,
    /// What happened.
    pub kind: EventKind,
    /// The worker it happened to, if any.
    pub worker_id: Option<String>,
    /// The worker's group, if any.
    pub group: Option<String>,
    /// The worker's process id, if any.
    pub pid: Option<u32>,
    /// The event's own fields, in order (`startup_ms`, `mode`, `category`, ...).
    pub fields: Vec<(&'static str, LogValue)>,
}

impl LifecycleEvent {
    fn value(&self, name: &str) -> Option<&LogValue> {
        self.fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// A text field (`mode`, `exit`, `category`, ...).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.value(name)?.as_text()
    }

    /// A numeric field (`duration_ms`, `startup_ms`, ...).
    pub fn number(&self, name: &str) -> Option<u64> {
        self.value(name)?.as_u64()
    }
}

/// What the supervisor knows of one worker.
#[derive(Debug, Clone)]
pub struct WorkerRecord {
    /// The worker's id (`group#n`).
    pub id: String,
    /// The worker's group.
    pub group: String,
    /// 1-based index within the group.
    pub index: u32,
    /// 1-based number within the run (control frames carry it).
    pub number: u32,
    /// Its process id once spawned.
    pub pid: Option<u32>,
    /// Its lifecycle state.
    pub state: WorkerState,
    /// When it was spawned.
    pub spawned_at: Option<Instant>,
    /// When its last heartbeat arrived.
    pub last_heartbeat: Option<Instant>,
    /// Its counters as of the last heartbeat.
    pub counters: WorkerCounters,
    /// `exit 0`, `signal SIGKILL`, ... once reaped.
    pub exit: Option<String>,
    /// Why it failed, if it did.
    pub failure: Option<(FailureCategory, String)>,
    /// How it was told to stop (`graceful`, `forced`, `abort`), if it was.
    pub stop_mode: Option<&'static str>,
    /// In the last group of the chain: its DRAINED means the run's records are all through.
    pub ends_chain: bool,
    /// In the first group: its source reads the run's input.
    pub holds_source: bool,
    /// It reported DRAINED.
    pub drained: bool,
    /// The worker's control connection is open (its frames may still be in flight).
    pub connected: bool,
    /// Reaped, waiting for the connection's last frames before the exit is judged.
    pub pending_exit: Option<(std::process::ExitStatus, Instant)>,
}

/// One worker in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSnapshot {
    /// The worker's id.
    pub id: String,
    /// Its process id.
    pub pid: Option<u32>,
    /// Its lifecycle state.
    pub state: WorkerState,
    /// Time since the last heartbeat (or since spawn when none yet).
    pub heartbeat_age: Option<Duration>,
    /// Its counters as of the last heartbeat.
    pub counters: WorkerCounters,
    /// Why it failed, if it did.
    pub failure: Option<(FailureCategory, String)>,
}

/// Group -> workers, as `snapshot()` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Each group with its workers, in spawn order.
    pub groups: Vec<(String, Vec<WorkerSnapshot>)>,
}

impl Snapshot {
    /// Every worker, in spawn order.
    pub fn workers(&self) -> impl Iterator<Item = &WorkerSnapshot> {
        self.groups.iter().flat_map(|(_, workers)| workers.iter())
    }

    /// The worker with this id.
    pub fn worker(&self, id: &str) -> Option<&WorkerSnapshot> {
        self.workers().find(|w| w.id == id)
    }
}

/// Builds a snapshot from the records, grouped in spawn order.
pub fn snapshot_of(records: &[WorkerRecord]) -> Snapshot {
    let mut groups: Vec<(String, Vec<WorkerSnapshot>)> = Vec::new();
    for record in records {
        let worker = WorkerSnapshot {
            id: record.id.clone(),
            pid: record.pid,
            state: record.state,
            heartbeat_age: record
                .last_heartbeat
                .or(record.spawned_at)
                .map(|t| t.elapsed()),
            counters: record.counters.clone(),
            failure: record.failure.clone(),
        };
        match groups.iter_mut().find(|(name, _)| *name == record.group) {
            Some((_, workers)) => workers.push(worker),
            None => groups.push((record.group.clone(), vec![worker])),
        }
    }
    Snapshot { groups }
}
