//! Supervisor plane: starts, watches and stops worker processes; never on the data path.
//!
//! Owns spawning (re-exec with key and fds inherited), the lifecycle registry and its events,
//! the monitor (reaping, heartbeats, failure categories), signals, and the health endpoints.
//! Its loop is the only writer of worker state (see `run.rs` for the state machine).

pub(crate) mod health;
mod host;
#[cfg(feature = "health")]
mod http;
pub(crate) mod lifecycle;
pub(crate) mod monitor;
#[cfg(feature = "health")]
mod push;
mod run;
pub(crate) mod spawn;
mod telemetry;

pub use crate::runtime::signals::{ignore_write_signals, stop_signals};
pub use host::{HostError, Reply, ReplyKind, Runtime};
pub use lifecycle::{
    EventKind, FailureCategory, LifecycleEvent, Snapshot, WorkerSnapshot, WorkerState,
};
pub use run::{
    RunEnd, RunFailure, SupervisedRun, Supervisor, SupervisorError, SupervisorOptions,
    run_supervised,
};
pub use telemetry::TelemetryError;
