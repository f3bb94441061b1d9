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
