//! The inline runtime (`bootstrap.mode: inline`, the memory profile): the whole graph in one
//! process, driven from its source through the local pipeline.
//!
//! It is the parity reference for the multiprocess profile: same nodes, same code, same
//! output bytes. Sources start after every node's `on_start` succeeded; end-of-stream runs each
//! node's hook in pipeline order, so final outputs still flow downstream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::dead_letter::DeadLetters;
use super::journal::{JournalKeeper, journal_path};
use super::pipeline::{Egress, LocalPipeline, PipelineRun, StartError};
use super::resume::{ResumePlan, ResumeRefused};
use super::summary::{RunSummary, WorkerReport};
use crate::config::{Config, ConfigReport};
use crate::files::journal::{Journal, JournalError, RunState};
use crate::graph::{AlignedBuf, Graph, NodeError, Placement, RecordContext, Registry, Value};
use crate::observability::export::{ExportPipeline, PipelineSink};
use crate::observability::span::Tracer;

/// Controls for a run that a caller may hold on to.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Set to stop the source at the next record; the run then drains and reports where it
    /// stopped.
    pub stop: Option<Arc<AtomicBool>>,
    /// What the source has read so far (for progress bars).
    pub progress: Option<Arc<RunProgress>>,
    /// Where a resumed run resumes (a stopped or failed run's completed range): records
    /// through `resume.after` are processed again, so that stateful nodes rebuild their
    /// state, but their outputs are not written again; the input is checked against the
    /// journal's positions. Empty: a fresh run.
    pub resume: ResumePlan,
    /// The run journal a resumed run continues (see [`crate::files::Journal`]); `None`: a
    /// fresh journal.
    pub journal: Option<Journal>,
}

/// Live progress of a run: records the source emitted and input bytes it consumed. The inline
/// runtime keeps it exact; a supervised run updates it from the source worker's heartbeats
/// (at least once a second).
#[derive(Debug, Default)]
pub struct RunProgress {
    /// Records the source emitted.
    pub records: AtomicU64,
    /// Input bytes the source consumed.
    pub input_bytes: Arc<AtomicU64>,
}

/// Why a run did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The config does not build a graph with this registry.
    #[error("{0}")]
    Config(ConfigReport),
    /// A node could not be built or its `on_start` failed; nothing was ingested.
    #[error("bootstrap_error: node `{node}` failed to start: {message}")]
    Bootstrap {
        /// The node.
        node: String,
        /// What failed.
        message: String,
    },
    /// A resumed run's input is not the one its journal describes; nothing was written.
    #[error("resume refused: {refused}")]
    ResumeRefused {
        /// Why.
        refused: Box<ResumeRefused>,
        /// What the run did before it noticed (it replayed records, wrote none).
        summary: Box<RunSummary>,
    },
    /// The run journal could not be written before the run started.
    #[error("{0}")]
    Journal(#[from] JournalError),
    /// A node failed on a record under the `fail` policy.
    #[error(
        "node_error: node `{node}` failed on record seq {seq}: {message}; records after seq {completed_through} were not completed"
    )]
    NodeFailed {
        /// The node.
        node: String,
        /// The record it failed on.
        seq: u64,
        /// What failed.
        message: String,
        /// Highest `seq` fully processed before the failing one.
        completed_through: u64,
        /// What the run did up to the failure.
        summary: Box<RunSummary>,
    },
}

impl From<StartError> for RunError {
    fn from(e: StartError) -> Self {
        Self::Bootstrap {
            node: e.node,
            message: e.message,
        }
    }
}

impl RunError {
    /// What went wrong, without the category prefix (for reports that print the category
    /// themselves).
    pub fn detail(&self) -> String {
        match self {
            Self::Config(report) => report.to_string(),
            Self::Bootstrap { node, message } => {
                format!("node `{node}` failed to start: {message}")
            }
            Self::NodeFailed {
                node, seq, message, ..
            } => format!("node `{node}` failed on record seq {seq}: {message}"),
            Self::ResumeRefused { refused, .. } => refused.to_string(),
            Self::Journal(error) => error.to_string(),
        }
    }
}

/// Terminal outputs of an inline run: `(context, encoded value)`.
pub type OutputFn<'o> = dyn FnMut(&RecordContext<'_>, &[u8]) + 'o;

struct InlineEgress<'o> {
    dead_letters: DeadLetters,
    outputs: Option<&'o mut OutputFn<'o>>,
    scratch: AlignedBuf,
    arena: rkyv::ser::allocator::Arena,
}

impl Egress for InlineEgress<'_> {
    fn forward(
        &mut self,
        target: usize,
        _ctx: &RecordContext<'_>,
        _value: Value<'_>,
    ) -> Result<(), NodeError> {
        Err(NodeError::failed(format!(
            "inline runtime has no remote node {target}; every node is local"
        )))
    }

    fn terminal(
        &mut self,
        _from: usize,
        ctx: &RecordContext<'_>,
        value: Value<'_>,
    ) -> Result<(), NodeError> {
        let Some(outputs) = self.outputs.as_mut() else {
            return Ok(());
        };
        let len = crate::graph::encode_growing(value, &mut self.scratch, &mut self.arena)?;
        outputs(ctx, &self.scratch.as_bytes()[..len]);
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

    fn dead_letter_file(&mut self) -> Option<&mut DeadLetters> {
        Some(&mut self.dead_letters)
    }
}

/// The nodes one process runs: its source (if it holds it) and its other nodes in order.
/// Starts the span exporters of an inline run and points the pipeline's tracer at them.
fn start_inline_tracing(
    config: &Config,
    run_id: u64,
    pipeline: &mut LocalPipeline,
) -> Result<Option<std::sync::Arc<ExportPipeline>>, RunError> {
    let started =
        crate::observability::export::start_for_run(config, run_id, None).map_err(|e| {
            RunError::Bootstrap {
                node: "tracing".to_string(),
                message: e.to_string(),
            }
        })?;
    let Some(export) = started.map(std::sync::Arc::new) else {
        return Ok(None);
    };
    pipeline.env.tracer = Some(Tracer::new(
        crate::observability::span::Sampler::of(&config.runtime.observability.tracing),
        "inline".to_string(),
        Box::new(PipelineSink(std::sync::Arc::clone(&export))),
    ));
    Ok(Some(export))
}

/// The failure as an ERROR log line, with the record's trace and span ids when it has them.
fn log_node_failure(failure: &super::pipeline::NodeFailure) {
    if failure.error.reader_gone() {
        // `| head` had enough: not an error of the run's (the exit status says it stopped).
        tracing::info!(
            worker_id = "inline",
            "the reader of stdout closed it; the output is complete through seq {}",
            failure.error.written_through().unwrap_or(0)
        );
        return;
    }
    let message = format!(
        "node `{}` failed on seq {}: {}",
        failure.node, failure.seq, failure.error
    );
    super::pipeline::log_failure("inline", "node_error", &message, failure.trace);
}

/// Runs the graph of `config` inline.
pub fn run_inline(
    config: &Config,
    registry: &Registry,
    options: &RunOptions,
) -> Result<RunSummary, RunError> {
    run_inline_with_outputs(config, registry, options, None)
}

/// Runs the graph inline, handing every terminal output (a value emitted by a node with no
/// downstream node) to `outputs`.
pub fn run_inline_with_outputs<'o>(
    config: &Config,
    registry: &Registry,
    options: &RunOptions,
    outputs: Option<&'o mut OutputFn<'o>>,
) -> Result<RunSummary, RunError> {
    let resolved = crate::observability::otel_env::resolved(config);
    let config = &resolved;
    let graph = Graph::checked(config, registry).map_err(RunError::Config)?;
    crate::config::check_run_files(config).map_err(RunError::Config)?;
    let placement = Placement::inline();
    let run_id = crate::observability::ids::new_run_id();
    crate::observability::ids::set_current_run(run_id);
    let unobserved = RunProgress::default();
    let progress = options.progress.as_deref().unwrap_or(&unobserved);
    let run = PipelineRun {
        run_id,
        resume: options.resume.clone(),
        input_bytes: Arc::clone(&progress.input_bytes),
    };
    let mut pipeline = LocalPipeline::build(config, registry, &graph, &placement, |_| true, &run)?;
    let dead_letters = DeadLetters::open(
        config.adapters.dead_letter.as_ref(),
        options.resume.resume_point(DeadLetters::KEY),
    )
    .map_err(|e| RunError::Bootstrap {
        node: "dead_letter".to_string(),
        message: e.to_string(),
    })?;
    // Every output is open (none changed yet): the journal is written before any is.
    if let Some(path) = journal_path(config, registry) {
        let id = crate::observability::ids::run_id_text(run_id);
        pipeline.journal = Some(JournalKeeper::start(
            config,
            &path,
            id,
            options.journal.clone(),
        )?);
    }
    let export = start_inline_tracing(config, run_id, &mut pipeline)?;
    pipeline.start()?;
    if pipeline.source.is_none() {
        return Err(RunError::Bootstrap {
            node: graph
                .nodes
                .first()
                .map_or("source", |n| n.name.as_str())
                .to_string(),
            message: "an inline run needs a source as the first pipeline node".to_string(),
        });
    }
    let mut egress = InlineEgress {
        dead_letters,
        outputs,
        scratch: AlignedBuf::with_capacity(4096),
        arena: rkyv::ser::allocator::Arena::new(),
    };
    let started = Instant::now();
    let stop = || {
        options
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    };
    // A resumed run replays the records its predecessor completed: stateful nodes rebuild
    // their state from them, and the outputs (which already hold them) are not written again.
    let mut run = pipeline.drive_source(&mut egress, 0, &stop, &progress.records);
    let mut failure = run.failure.take();
    if failure.is_none() && run.refused.is_none() {
        failure = pipeline.finish(&mut egress, run.last_seq);
    }
    if failure.is_none() && run.refused.is_none() {
        failure = pipeline.finish_outputs(&mut egress).err().map(|f| *f);
    }
    // An output that is not the one being resumed refuses the run (nothing was written).
    if let Some(refused) = failure
        .as_ref()
        .and_then(|f| super::resume::refusal_of(&f.error))
    {
        run.refused = Some(refused);
        failure = None;
    }
    let completed_through = match &failure {
        None if run.refused.is_some() => options.resume.after.min(run.last_seq),
        None => run.last_seq,
        Some(failure) => {
            let before = failure.seq.saturating_sub(1);
            let written = failure.error.written_through().unwrap_or(before);
            pipeline.settle_outputs(&mut egress, before.min(written))
        }
    };
    if failure.is_none() && run.refused.is_none() {
        pipeline.journal_completed(run.last_seq, &mut egress);
    }
    let peak_rss_kib = crate::observability::process::peak_rss_kib().unwrap_or(0);
    let summary = RunSummary {
        profile: "inline".to_string(),
        records_in: run.emitted,
        skipped: options.resume.after.min(run.last_seq),
        last_seq: completed_through,
        elapsed: started.elapsed(),
        dead_lettered: egress.dead_letters.count(),
        dead_letter_path: egress.dead_letters.destination().map(|p| p.to_path_buf()),
        interrupted: run.interrupted,
        nodes: pipeline.reports(),
        workers: vec![WorkerReport {
            id: "inline".to_string(),
            group: "inline".to_string(),
            elapsed: started.elapsed(),
            busy: started.elapsed(),
            peak_rss_kib,
        }],
        rings: Vec::new(),
        route_cache: pipeline.env.routes.cache_counters(),
        peak_rss_kib,
        spans: export.map(|e| e.finish()).unwrap_or_default(),
        // The inline runtime serves no health endpoints (it has no workers to watch).
        health_address: None,
        latency: pipeline.latency(),
        run_id: crate::observability::ids::run_id_text(run_id),
        journal: pipeline.journal.as_ref().map(|j| super::JournalPoint {
            path: j.path().to_path_buf(),
            completed: j.completed_seq(),
        }),
    };
    let (state, outcome) = match (&failure, &run.refused) {
        (Some(failure), _) => (
            RunState::Failed,
            format!(
                "failed: node `{}` on seq {}: {}",
                failure.node, failure.seq, failure.error
            ),
        ),
        (None, Some(refused)) => (RunState::Failed, format!("resume refused: {refused}")),
        (None, None) if run.interrupted => (RunState::Stopped, "stopped".to_string()),
        (None, None) => (RunState::Complete, "completed".to_string()),
    };
    if let Some(journal) = pipeline.journal.as_mut()
        && let Err(e) = journal.finish(state, &outcome)
    {
        tracing::warn!(worker_id = "inline", "{e}");
    }
    if let Some(refused) = run.refused {
        return Err(RunError::ResumeRefused {
            refused: Box::new(refused),
            summary: Box::new(summary),
        });
    }
    if let Some(failure) = failure {
        log_node_failure(&failure);
        return Err(RunError::NodeFailed {
            node: failure.node,
            seq: failure.seq,
            message: failure.error.to_string(),
            completed_through,
            summary: Box::new(summary),
        });
    }
    Ok(summary)
}
