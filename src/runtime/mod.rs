//! Runtime plane: executing a graph. Owns the local pipeline (the nodes of one process and how
//! records enter and leave them), the inline runtime (the memory profile), the worker process
//! runtime, routing, dead letters and the run summary. It must not parse configs (it receives
//! validated ones) nor know business rules (nodes carry them).

pub(crate) mod dead_letter;
mod inline;
pub mod journal;
pub(crate) mod pipeline;
pub(crate) mod resume;
pub(crate) mod room;
pub mod routes;
pub(crate) mod signals;
mod summary;
pub(crate) mod topology;
pub(crate) mod worker;

pub use inline::{
    OutputFn, RunError, RunOptions, RunProgress, run_inline, run_inline_with_outputs,
};
pub use pipeline::{NodeFailure, PipelineRun, TIMING_SAMPLE};
/// Where a resumed run resumes (`RunOptions::resume`); made from a run journal by the CLI.
pub use resume::ResumePlan;
pub use summary::{
    JournalPoint, NodeReport, NodeStats, RingReport, RunSummary, Timeline, WorkerReport,
};
pub use worker::worker_entry;
