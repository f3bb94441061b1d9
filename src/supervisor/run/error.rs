//! Why a supervised run could not be set up or did not complete.

use super::RunFailure;
use crate::config::ConfigReport;
use crate::control::{ControlError, KeyError, SessionError};
use crate::supervisor::health::HealthError;
use crate::supervisor::lifecycle::WorkerState;
use crate::supervisor::spawn::SpawnError;

/// A supervised run could not be set up or did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The config is not valid.
    #[error("{0}")]
    Config(ConfigReport),
    /// The control channel could not be set up.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// A worker could not be spawned.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The health endpoint could not be started.
    #[error(transparent)]
    Health(#[from] HealthError),
    /// A worker key could not be made or handed over.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// A thread the supervisor needs could not be started (a process or memory limit).
    #[error("the supervisor {0}")]
    Thread(std::io::Error),
    /// This process was started as another run's worker but its program did not call
    /// [`crate::worker_entry`] first thing: it must not start workers of its own.
    #[error(
        "this process was started as a worker of another run but did not become one: its program must call stream_kernel::worker_entry first thing in main"
    )]
    NotAWorker,
    /// The signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// Workers did not become READY within the readiness timeout.
    #[error("workers not ready after {waited_ms} ms: {}", describe_laggards(.laggards))]
    NotReady {
        /// Milliseconds waited.
        waited_ms: u128,
        /// The workers not READY, with their states.
        laggards: Vec<(String, WorkerState)>,
    },
    /// A worker failed; the run stopped.
    #[error("worker {} (group {}) failed: {}: {}", .0.worker, .0.group, .0.category, .0.detail)]
    WorkerFailed(RunFailure),
    /// A control message broke the session rules.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A ring could not be created, initialised or shared with its workers.
    #[error("ring {ring}: {detail}")]
    Ring {
        /// The ring (`producer->consumer`, or the segment's name).
        ring: String,
        /// What failed.
        detail: String,
    },
    /// Span export could not be set up (telemetry rings, exporters, the drain thread).
    #[error(transparent)]
    Telemetry(#[from] crate::supervisor::telemetry::TelemetryError),
    /// `--run-id` is not a run id.
    #[error("run id {0:?}: expected 1 to 64 letters, digits, `_` or `-`")]
    RunId(String),
    /// A `process_supervisor` config without a control block reached the supervisor.
    #[error("process_supervisor mode needs a control block")]
    NoControl,
    /// The program to start as workers was not found.
    #[error("cannot find the worker executable: {0}")]
    WorkerExecutable(std::io::Error),
    /// A worker has no key in the run's key directory.
    #[error("no control key for worker {0}")]
    NoKey(String),
    /// The embedded runtime was given a pipeline without nodes.
    #[error("the pipeline has no nodes")]
    EmptyPipeline,
    /// The run journal could not be written before the run started.
    #[error("{0}")]
    Journal(crate::files::journal::JournalError),
    /// The hand-off between hosts failed.
    #[error("cross-host hand-off: {0}")]
    CrossHost(#[from] crate::cross_host::CrossHostError),
}

fn describe_laggards(laggards: &[(String, WorkerState)]) -> String {
    laggards
        .iter()
        .map(|(w, s)| format!("{w} ({s})"))
        .collect::<Vec<_>>()
        .join(", ")
}
