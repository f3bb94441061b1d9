//! How a worker's data loop fails: the failure's category, what it says, where the outputs
//! are complete, and whether it is a failure at all (a stop). Shared by the data loop and the
//! inbound merge, which both end a worker's run with one.

use crate::control::FailureCategory;
use crate::data::{RingCorrupted, StreamError};
use crate::graph::NodeError;
use crate::runtime::pipeline::{NodeFailure, RecordTrace};
use crate::runtime::resume::ResumeRefused;

/// A worker's failure, with its category.
pub(in crate::runtime::worker) struct WorkerFailure {
    pub(in crate::runtime::worker) category: FailureCategory,
    /// Not a failure: the run is being stopped (see [`WorkerFailure::stopped`]).
    pub(in crate::runtime::worker) stopped: bool,
    pub(in crate::runtime::worker) message: String,
    /// The record a node failed on (node errors only): everything before it is complete.
    pub(in crate::runtime::worker) failed_seq: Option<u64>,
    /// An output that failed to write: every record through this `seq` is written.
    pub(in crate::runtime::worker) written_through: Option<u64>,
    /// The failed record's trace (node errors on a record).
    pub(in crate::runtime::worker) trace: Option<RecordTrace>,
    /// The output is stdout and its reader closed it (`| head`): reported to the supervisor
    /// like any failure, but not logged as an error of the run's.
    pub(in crate::runtime::worker) reader_gone: bool,
}

impl WorkerFailure {
    /// A failure of `category` about no record in particular.
    fn of(category: FailureCategory, message: String) -> Self {
        Self {
            category,
            stopped: false,
            message,
            failed_seq: None,
            written_through: None,
            trace: None,
            reader_gone: false,
        }
    }

    pub(in crate::runtime::worker) fn ring(message: String) -> Self {
        Self::of(FailureCategory::RingCorrupted, message)
    }

    /// A node error that is not about one record (opening or flushing an adapter).
    pub(in crate::runtime::worker) fn node(message: String) -> Self {
        Self::of(FailureCategory::NodeError, message)
    }

    /// The supervisor stopped the run (abort) while this worker was handing a record on:
    /// not a failure, the worker ends as interrupted.
    pub(in crate::runtime::worker) fn stopped() -> Self {
        Self {
            stopped: true,
            ..Self::node("stopped by the supervisor before the end of its input".to_string())
        }
    }

    pub(in crate::runtime::worker) fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Handing a record or marker on failed: a stopping run, or a ring problem.
    pub(in crate::runtime::worker) fn handing_on(
        context: impl std::fmt::Display,
        error: NodeError,
    ) -> Self {
        match error {
            error if error.is_stopped() => Self::stopped(),
            other => Self::ring(format!("{context}: {other}")),
        }
    }

    /// A resumed run's input is not the one its journal describes.
    pub(in crate::runtime::worker) fn refused(refused: ResumeRefused) -> Self {
        Self::of(FailureCategory::ResumeRefused, refused.to_string())
    }

    /// A batch flush of the outputs failed.
    pub(in crate::runtime::worker) fn flush(failure: &NodeFailure) -> Self {
        if let Some(refused) = crate::runtime::resume::refusal_of(&failure.error) {
            return Self::refused(refused);
        }
        Self {
            written_through: failure.error.written_through(),
            reader_gone: failure.error.reader_gone(),
            ..Self::node(format!(
                "node `{}` failed to flush: {}",
                failure.node, failure.error
            ))
        }
    }
}

pub(in crate::runtime::worker) fn ring_failure(e: RingCorrupted) -> WorkerFailure {
    WorkerFailure::ring(format!("inbound ring: {e}"))
}

pub(in crate::runtime::worker) fn stream_failure(e: StreamError) -> WorkerFailure {
    WorkerFailure::ring(format!("inbound ring: {e}"))
}
