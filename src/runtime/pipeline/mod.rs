//! The local pipeline: the nodes of one process, linked once when built, and every way a record
//! enters and leaves them. The inline runtime and every worker drive this one type; nothing
//! else runs nodes.
//!
//! A record travels the local chain depth first: a node's `emit` calls the next local node at
//! once, with a reference to the emitted value — no queue, no copy, no serialization — so one
//! record crosses every local node before the next is read, in order. Where the chain leaves
//! the process the value goes to the [`Egress`]: a ring (encoded once, straight into the slot),
//! the embedding host's reply ring, or a terminal output. Records enter from the local source
//! ([`LocalPipeline::drive_source`]) or from an inbound ring ([`LocalPipeline::run_encoded`],
//! decoded once for the first local node).
//!
//! Links are resolved when the pipeline is built: each stage knows whether its default edge
//! leads to a later local stage (by position), out of the process (to a node index), or
//! nowhere (a terminal output). Only named targets (`emit_to`) are looked up per record,
//! through the route cache. A panic is caught once per record, at its entry, and charged to
//! the node that was running.
//!
//! Node failures follow `runtime.on_node_error`: under `fail` the first failure is recorded
//! (node, `seq`, message) and unwinds the chain as [`NodeError::Halted`]; under
//! `dead_letter` a node's own failure sends the record to the dead-letter adapter and the run
//! goes on. I/O, encoding and payload errors always fail the run: they are not about the record.
//!
//! This file drives records; `build` makes and links the nodes, `hop` is one step of the
//! chain, `outputs` flushes and settles the outputs, `stats` keeps the figures.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::dead_letter::DeadLetters;
use super::journal::JournalKeeper;
use super::resume::{InputTrail, ResumeRefused};
use super::routes::Routes;
use super::summary::NodeStats;
use crate::config::NodeErrorPolicy;
use crate::graph::{
    EmitTarget, ErasedNode, ErasedSource, MessageType, NodeError, OutputPort, Pull, RecordContext,
    Value,
};
use crate::observability::ids::trace_id_for;
use crate::observability::latency::{self, LatencyHistogram};
use crate::observability::span::{SpanRecord, Tracer, span_id_for, unix_ns};

/// One record in every `TIMING_SAMPLE` is timed node by node: reading a clock costs about as
/// much as a small node, so timing every record would distort what it measures (and cost
/// more than the nodes). 1 in 256 still times thousands of records per node in a short run.
pub const TIMING_SAMPLE: u64 = 256;

/// Source records between two flushes of the local outputs (a batch boundary: a failure never
/// rolls an output back past the one before last). The same records carry input checkpoints,
/// so each flush is a completed record with a known input position (the run journal).
pub(crate) const OUTPUT_BATCH: u64 = super::resume::CHECKPOINT_EVERY;

mod build;
mod hop;
mod outputs;
mod stats;

pub use build::{PipelineRun, StartError};
pub use stats::PublishedNodes;

pub(crate) use hop::{ChainEnv, Egress, Link, Stage, log_failure};
pub use hop::{NodeFailure, RecordTrace};
use hop::{Port, panic_message, run_entry};

/// How a source run ended.
pub(crate) struct SourceRun {
    /// Highest `seq` emitted.
    pub last_seq: u64,
    /// Records emitted in this run.
    pub emitted: u64,
    /// Stopped by the stop check before the input ended.
    pub interrupted: bool,
    pub failure: Option<NodeFailure>,
    /// A resumed run's input is not the one its journal describes.
    pub refused: Option<ResumeRefused>,
}

/// The context of record `seq` as the source emits it: its trace id, and when it is sampled,
/// the source's span as the parent of the first node's span.
fn root_context<'g>(env: &ChainEnv, run_id: u64, group: &'g str, seq: u64) -> RecordContext<'g> {
    let derived = trace_id_for(run_id, seq);
    let mut ctx = RecordContext::new(seq, derived, group);
    if let Some(tracer) = &env.tracer {
        let (trace_id, parent, sampled) = tracer.root_of(derived);
        ctx.trace_id = trace_id;
        ctx.sampled = sampled;
        if sampled {
            ctx.parent_span = span_id_for(&trace_id, parent, 0);
        }
    }
    ctx
}

/// A process's local nodes and what drives them: the source (if this process holds it), the
/// chain of other local nodes with their links, and the chain's shared state.
pub(crate) struct LocalPipeline {
    pub source: Option<Box<dyn ErasedSource>>,
    pub source_name: String,
    source_next: Link,
    pub source_stats: NodeStats,
    pub stages: Vec<Stage>,
    pub env: ChainEnv,
    pub group: String,
    pub run_id: u64,
    /// Where the node figures are published for the heartbeat (a worker's pipeline), and when
    /// they last were.
    pub stats_out: Option<(PublishedNodes, Option<Instant>)>,
    /// This process runs the pipeline's last node: records end here, and their latency is
    /// observed here.
    ends_records: bool,
    /// The source's input positions (this process holds the source).
    pub(crate) trail: InputTrail,
    /// A resumed run replays the records through this `seq`.
    resume_after: u64,
    /// The run journal, when this process keeps it (the inline runtime).
    pub(crate) journal: Option<JournalKeeper>,
    /// `runtime.latency.max_output_delay_us`: while input keeps coming (the source never
    /// waits), outputs are still written at least this often.
    max_output_delay: Duration,
}

/// Records between two looks at the clock for [`LatencyConfig::max_output_delay_us`]: a clock
/// read per record would cost more than the records.
///
/// [`LatencyConfig::max_output_delay_us`]: crate::config::LatencyConfig::max_output_delay_us
const DELAY_CHECK_EVERY: u64 = 32;

impl LocalPipeline {
    /// A caught panic of record `ctx`: charged to the node that was running, under the policy.
    fn panicked(
        &mut self,
        panic: &(dyn std::any::Any + Send),
        ctx: &RecordContext<'_>,
        egress: &mut dyn Egress,
    ) -> Result<(), NodeError> {
        let running = self.env.running;
        let name = match self.stages.iter_mut().find(|s| s.index == running) {
            Some(stage) => {
                stage.stats.errors += 1;
                stage.name.clone()
            }
            None => self.source_name.clone(),
        };
        let error = NodeError::Panicked(panic_message(panic));
        self.env.handle_failure(&name, ctx, error, egress)
    }

    /// Runs local stage `position` on a payload read from a ring, and everything it emits.
    pub fn run_encoded(
        &mut self,
        position: usize,
        payload: &[u8],
        trusted: bool,
        ctx: &RecordContext<'_>,
        egress: &mut dyn Egress,
    ) -> Result<(), NodeError> {
        self.env.enter(ctx);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let stages = self.stages.get_mut(position..).unwrap_or_default();
            run_entry(
                stages,
                position,
                payload,
                trusted,
                ctx,
                &mut self.env,
                &mut *egress,
            )
        }));
        match outcome {
            Ok(result) => {
                if result.is_ok() {
                    // Elsewhere a record that left nothing is marked dropped (and ends there).
                    self.record_ended(ctx.born_ns, false);
                }
                result
            }
            Err(panic) => self.panicked(panic.as_ref(), ctx, egress),
        }
    }

    /// One pull of the source, and everything it emits locally. `stop` answers the source's
    /// waits for input ([`crate::graph::Emitter::idle`]).
    fn pull_once(
        &mut self,
        source: &mut dyn ErasedSource,
        ctx: &RecordContext<'_>,
        egress: &mut dyn Egress,
        stop: &dyn Fn() -> bool,
    ) -> (Result<Pull, NodeError>, u64) {
        let started = self.env.timing.then(Instant::now);
        self.env.enter(ctx);
        self.env.running = 0;
        let stamp_birth = self.env.source_birth.is_measured();
        let mut port = Port {
            from: 0,
            next: self.source_next,
            downstream: &mut self.stages,
            offset: 0,
            env: &mut self.env,
            egress,
            ctx,
            emitted: 0,
            stop: Some(stop),
            stamp_birth,
        };
        let pulled = source.pull(&mut port);
        let emitted = port.emitted;
        if let Some(started) = started {
            let total = started.elapsed().as_nanos() as u64;
            let children = std::mem::take(&mut self.env.children_ns);
            self.source_stats.add_sample(total.saturating_sub(children));
        }
        (pulled, emitted)
    }

    /// Pulls the local source until it is exhausted, `stop()` says so, or a node fails.
    /// Records are numbered from `after + 1`. `progress` holds the count of records emitted,
    /// stored after every record (a relaxed store to a line only this thread writes: readers
    /// such as the heartbeat and the progress bar see an exact count, also while the source
    /// waits for input); the local outputs are flushed every [`OUTPUT_BATCH`] records.
    pub fn drive_source(
        &mut self,
        egress: &mut dyn Egress,
        after: u64,
        stop: &dyn Fn() -> bool,
        progress: &AtomicU64,
    ) -> SourceRun {
        let mut seq = after;
        let mut run = SourceRun {
            last_seq: after,
            emitted: 0,
            interrupted: false,
            failure: None,
            refused: None,
        };
        let Some(mut source) = self.source.take() else {
            return run;
        };
        let group = self.group.clone();
        loop {
            if stop() {
                run.interrupted = true;
                break;
            }
            let next = seq + 1;
            self.env.timing = next.is_multiple_of(TIMING_SAMPLE);
            let ctx = root_context(&self.env, self.run_id, &group, next);
            let span_start = if ctx.sampled { unix_ns() } else { 0 };
            // Only a measured record asks the egress what it sent (a dynamic call).
            let measured = latency::is_measured(next);
            self.env.source_birth.begin(measured);
            let sent_before = if measured { egress.envelopes_sent() } else { 0 };
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                self.pull_once(source.as_mut(), &ctx, &mut *egress, stop)
            }));
            let (pulled, emitted) = match outcome {
                Ok(done) => done,
                Err(panic) => {
                    let handled = self.panicked(panic.as_ref(), &ctx, &mut *egress);
                    (handled.map(|()| Pull::Emitted), 1)
                }
            };
            self.source_stats.records_out += emitted;
            match pulled {
                Ok(Pull::Emitted) => {
                    if measured {
                        let nothing_left = egress.envelopes_sent() == sent_before;
                        self.record_ended(self.env.source_birth.born_ns(), nothing_left);
                    }
                    if ctx.sampled {
                        let caller = self.env.tracer.as_ref().and_then(|t| t.parent);
                        let root = RecordContext {
                            parent_span: caller.map_or(0, |p| p.span_id),
                            ..ctx
                        };
                        let name = self.source_name.clone();
                        self.env
                            .record_span(&name, &root, ctx.parent_span, span_start, None);
                    }
                    seq = next;
                    // For a source, `records_in` counts pulls that emitted a record.
                    self.source_stats.records_in += 1;
                    run.emitted += 1;
                    progress.store(run.emitted, Ordering::Relaxed);
                    if seq.is_multiple_of(TIMING_SAMPLE) {
                        self.publish_stats();
                    }
                    if self.trail.due(seq) {
                        let position = source.position();
                        if let Err(refused) = self.trail.record(seq, position) {
                            run.refused = Some(refused);
                            break;
                        }
                    }
                    if seq.is_multiple_of(OUTPUT_BATCH) {
                        if let Err(failure) = self.flush_outputs(egress) {
                            run.failure = Some(*failure);
                            break;
                        }
                        self.journal_completed(seq, egress);
                    } else if seq.is_multiple_of(DELAY_CHECK_EVERY)
                        && self.env.latency.written_before(self.max_output_delay)
                        && let Err(failure) = self.flush_outputs(egress)
                    {
                        run.failure = Some(*failure);
                        break;
                    }
                }
                Ok(Pull::Exhausted) => {
                    if seq < self.resume_after {
                        run.refused = Some(ResumeRefused::InputTooShort {
                            input: self.trail.input().to_string(),
                            records: seq,
                            after: self.resume_after,
                        });
                    }
                    break;
                }
                // The run is being stopped while this record was on its way: it is not
                // complete, and no node failed.
                Err(error) if error.is_stopped() => {
                    run.interrupted = true;
                    break;
                }
                Err(NodeError::Halted(_)) => {
                    run.failure = self.env.failure.take();
                    break;
                }
                Err(error) => {
                    run.failure = Some(NodeFailure {
                        node: self.source_name.clone(),
                        seq: next,
                        error,
                        trace: None,
                    });
                    break;
                }
            }
        }
        if run.failure.is_none() && run.refused.is_none() {
            let position = source.position();
            if let Err(refused) = self.trail.record_last(seq, position) {
                run.refused = Some(refused);
            }
        }
        self.source = Some(source);
        progress.store(run.emitted, Ordering::Relaxed);
        run.last_seq = seq;
        run
    }

    /// Every record through `seq` is in the outputs (they were just flushed): the journal, if
    /// this process keeps it, completes `seq` when the source's position there is known.
    pub(crate) fn journal_completed(&mut self, seq: u64, egress: &mut dyn Egress) {
        if self.journal.is_none() {
            return;
        }
        let Some(at) = self.trail.at(seq) else {
            return;
        };
        let outputs = self.output_lengths(egress);
        if let Some(journal) = self.journal.as_mut() {
            journal.completed(at, outputs);
        }
    }

    /// Every record-exact output of this process and the bytes its records take, keyed
    /// `<node>/<what>` (the dead-letter file: `dead_letter`).
    pub(crate) fn output_lengths(
        &self,
        egress: &mut dyn Egress,
    ) -> Vec<crate::files::journal::OutputLength> {
        use crate::files::journal::OutputLength;
        let mut lengths: Vec<OutputLength> = self
            .stages
            .iter()
            .flat_map(|stage| {
                stage.node.outputs().into_iter().map(|o| OutputLength {
                    key: format!("{}/{}", stage.name, o.what),
                    path: o.name,
                    bytes: o.bytes,
                })
            })
            .collect();
        if let Some(progress) = egress.dead_letter_file().and_then(|d| d.progress()) {
            lengths.push(OutputLength {
                key: DeadLetters::KEY.to_string(),
                path: progress.name,
                bytes: progress.bytes,
            });
        }
        lengths
    }

    /// Runs every local node's end-of-stream hook in pipeline order (outputs flow downstream);
    /// returns the failure, if one happened.
    pub fn finish(&mut self, egress: &mut dyn Egress, last_seq: u64) -> Option<NodeFailure> {
        self.env.timing = false;
        let group = self.group.clone();
        let ctx = RecordContext::new(last_seq, trace_id_for(self.run_id, last_seq), &group);
        self.env.enter(&ctx);
        for position in 0..self.stages.len() {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                self.end_stage(position, &ctx, &mut *egress)
            }));
            let result = match outcome {
                Ok(result) => result,
                Err(panic) => self.panicked(panic.as_ref(), &ctx, &mut *egress),
            };
            match result {
                Ok(()) => {}
                Err(error) if error.is_stopped() => {}
                Err(_) => return self.env.failure.take(),
            }
        }
        None
    }

    fn end_stage(
        &mut self,
        position: usize,
        ctx: &RecordContext<'_>,
        egress: &mut dyn Egress,
    ) -> Result<(), NodeError> {
        let Some((stage, downstream)) = self.stages[position..].split_first_mut() else {
            return Ok(());
        };
        self.env.running = stage.index;
        let mut port = Port {
            from: stage.index,
            next: stage.next,
            downstream,
            offset: position + 1,
            env: &mut self.env,
            egress: &mut *egress,
            ctx,
            emitted: 0,
            stop: None,
            stamp_birth: false,
        };
        let result = stage.node.on_end_of_stream(&mut port);
        stage.stats.records_out += port.emitted;
        match result {
            Ok(()) => Ok(()),
            Err(error @ NodeError::Halted(_)) => Err(error),
            Err(error) => {
                stage.stats.errors += 1;
                self.env.handle_failure(&stage.name, ctx, error, egress)
            }
        }
    }
}
