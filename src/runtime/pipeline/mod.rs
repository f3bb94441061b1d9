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

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::dead_letter::DeadLetters;
use super::journal::JournalKeeper;
use super::resume::{InputTrail, ResumePlan, ResumeRefused};
use super::routes::Routes;
use super::summary::{NodeReport, NodeStats};
use crate::config::{Config, NodeErrorPolicy};
use crate::control::NodeCount;
use crate::graph::{
    BuildContext, BuiltNode, EmitTarget, ErasedNode, ErasedSource, Graph, MessageType, NodeError,
    NodeRole, OutputPort, Placement, Pull, RecordContext, Registry, Services, Value,
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

mod hop;

pub(crate) use hop::{ChainEnv, Egress, Link, Stage, log_failure};
pub use hop::{NodeFailure, RecordTrace};
use hop::{Port, panic_message, run_entry};

/// What a worker's data thread publishes for its heartbeat thread.
#[derive(Debug, Clone, Default)]
pub struct PublishedStats {
    /// Per local node.
    pub nodes: Vec<NodeCount>,
    /// End-to-end latency of the measured records that ended here.
    pub latency: LatencyHistogram,
    /// Input positions the source passed, not yet sent (the heartbeat takes them).
    pub input_marks: Vec<crate::control::InputMark>,
    /// The outputs' lengths at the latest completed checkpoint record (the worker where
    /// records end).
    pub output_marks: Vec<crate::control::OutputMark>,
}

/// Input positions a heartbeat carries at most (the newest): a heartbeat stays far below the
/// control frame limit, and the journal needs only recent ones.
const MAX_MARKS_PER_BEAT: usize = 4096;

/// Where a worker's data thread publishes its figures for the heartbeat thread.
pub type PublishedNodes = Arc<parking_lot::Mutex<PublishedStats>>;

/// How often a worker's node figures are published for its heartbeat (which carries them at
/// least once a second).
const STATS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

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

/// The routing table as seen from `group`: in process mode every node's group is its chain
/// position; inline, everything is group 0.
fn routes_for(config: &Config, graph: &Graph, group: &str) -> Routes {
    let routes =
        Routes::from_graph(graph).with_cache(config.runtime.platform.routing_cache.clone());
    if !config.is_process_mode() {
        return routes;
    }
    let topology = super::topology::Topology::of(config, graph);
    let groups = (0..graph.nodes.len())
        .map(|node| topology.group_of_node(node).map_or(0, |g| g.index))
        .collect();
    let home = topology.group(group).map_or(0, |g| g.index);
    routes.with_groups(groups, home)
}

/// Building or starting the local nodes failed; nothing was ingested.
#[derive(Debug, thiserror::Error)]
#[error("node `{node}` failed to start: {message}")]
pub struct StartError {
    pub node: String,
    pub message: String,
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

/// What a local pipeline is built for: its run, where a resumed run resumes, and the counter
/// its source reports consumed input bytes into ([`crate::graph::InputProgress`]).
#[derive(Debug, Clone, Default)]
pub struct PipelineRun {
    /// The run's id (trace ids derive from it).
    pub run_id: u64,
    /// Where a resumed run resumes (empty: a fresh run).
    pub resume: ResumePlan,
    /// Input bytes the source consumed.
    pub input_bytes: Arc<AtomicU64>,
}

impl LocalPipeline {
    /// Builds the nodes of `graph` for which `is_local` holds, in pipeline order, and links
    /// them (does not start them).
    pub fn build(
        config: &Config,
        registry: &Registry,
        graph: &Graph,
        placement: &Placement,
        is_local: impl Fn(usize) -> bool,
        run: &PipelineRun,
    ) -> Result<Self, StartError> {
        let (run_id, resume_after) = (run.run_id, run.resume.after);
        let mut services = Services::default();
        let input_bytes = Arc::clone(&run.input_bytes);
        services.get_or_insert_with(|| crate::graph::InputProgress(input_bytes));
        let mut source = None;
        let mut source_name = String::new();
        let mut built = Vec::new();
        let null = serde_norway::Value::Null;
        for (index, node) in graph.nodes.iter().enumerate().filter(|(i, _)| is_local(*i)) {
            let start_error = |message: String| StartError {
                node: node.name.clone(),
                message,
            };
            let factory = registry
                .get(&node.name)
                .ok_or_else(|| start_error("not in the node registry".to_string()))?;
            let mut ctx = BuildContext {
                node: &node.name,
                settings: config.nodes.get(&node.name).unwrap_or(&null),
                config,
                placement,
                services: &mut services,
                resume_after,
                output_lengths: &run.resume.output_lengths,
            };
            match factory
                .build(&mut ctx)
                .map_err(|e| start_error(e.to_string()))?
            {
                BuiltNode::Source(s) if node.role == NodeRole::Source => {
                    source = Some(s);
                    source_name = node.name.clone();
                }
                BuiltNode::Source(_) => {
                    return Err(start_error("a source must be the first node".to_string()));
                }
                BuiltNode::Node(n) => built.push((node.name.clone(), index, n)),
            }
        }
        let routes = routes_for(config, graph, &placement.group);
        let mut local = vec![None; graph.nodes.len()];
        for (position, (_, index, _)) in built.iter().enumerate() {
            local[*index] = Some(position);
        }
        let link_of = |index: usize| match routes.next_of(index) {
            None => Link::Terminal,
            Some(next) => match local.get(next).copied().flatten() {
                Some(position) => Link::Local(position),
                None => Link::Remote(next),
            },
        };
        let stages = built
            .into_iter()
            .map(|(name, index, node)| Stage {
                name,
                index,
                node,
                next: link_of(index),
                stats: NodeStats::default(),
            })
            .collect();
        let source_next = link_of(0);
        Ok(Self {
            source,
            source_name,
            source_next,
            source_stats: NodeStats::default(),
            stages,
            env: ChainEnv::new(
                routes,
                config.runtime.on_node_error,
                local,
                graph.nodes.iter().map(|n| n.name.clone()).collect(),
            ),
            group: placement.group.clone(),
            stats_out: None,
            run_id,
            ends_records: graph.nodes.len().checked_sub(1).is_some_and(&is_local),
            trail: InputTrail::new(
                &run.resume.input_positions,
                crate::text::printable(&super::journal::input_identity(config).name).into_owned(),
            ),
            resume_after,
            journal: None,
            max_output_delay: Duration::from_micros(config.runtime.latency.max_output_delay_us),
        })
    }

    /// Calls every local node's `on_start`, source first.
    pub fn start(&mut self) -> Result<(), StartError> {
        if let Some(source) = self.source.as_mut() {
            source.on_start().map_err(|e| StartError {
                node: self.source_name.clone(),
                message: e.to_string(),
            })?;
        }
        for stage in &mut self.stages {
            stage.node.on_start().map_err(|e| StartError {
                node: stage.name.clone(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// The position of local node `index` (graph index), if it runs here.
    pub fn position_of(&self, index: usize) -> Option<usize> {
        self.env.local.get(index).copied().flatten()
    }

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

    /// Hands every local output (sinks' files, the dead-letter file) to the operating system:
    /// a batch boundary. A failure names the output and the first record not written.
    /// Publishes the node figures for the heartbeat, at most every [`STATS_EVERY`] (callers
    /// call it at batch boundaries).
    pub fn publish_stats(&mut self) {
        let Some((out, last)) = &mut self.stats_out else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < STATS_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        let out = Arc::clone(out);
        let counts: Vec<NodeCount> = self
            .reports()
            .into_iter()
            .map(|r| NodeCount {
                node: r.name,
                records_in: r.stats.records_in,
                records_out: r.stats.records_out,
                errors: r.stats.errors,
                counters: r.counters,
                outcomes: r.outcomes,
            })
            .collect();
        let marks = self.trail.drain();
        let mut out = out.lock();
        out.nodes = counts;
        out.latency = self.env.latency.histogram;
        out.input_marks
            .extend(marks.into_iter().map(super::resume::mark_of));
        let excess = out.input_marks.len().saturating_sub(MAX_MARKS_PER_BEAT);
        out.input_marks.drain(..excess);
    }

    /// A record born at `born_ns` (0: not measured) ended now in this process. Where records
    /// end (written by the sink, dead-lettered, or handed to the embedding host) its latency
    /// is taken when its output reaches the operating system, at the next
    /// [`LocalPipeline::outputs_written`]: what a reader of the output sees. A record that left
    /// nothing downstream and no output (`nothing_left`, outside the last process) ends here.
    #[inline]
    pub(crate) fn record_ended(&mut self, born_ns: u64, nothing_left: bool) {
        if born_ns == 0 {
            return;
        }
        if self.ends_records {
            self.env.latency.unwritten(born_ns);
        } else if nothing_left {
            self.env.latency.observe_now(born_ns);
        }
    }

    /// Every output of this process reached the operating system (a flush, a published ring
    /// batch): the records waiting in them are now visible to a reader.
    pub(crate) fn outputs_written(&mut self) {
        self.env.latency.written();
    }

    /// End-to-end latency of the measured records that ended in this process.
    pub fn latency(&self) -> LatencyHistogram {
        self.env.latency.histogram
    }

    /// Hands every output of this process to the operating system: the local nodes' buffers,
    /// the dead-letter file, the batch of the outbound rings.
    pub fn flush_outputs(&mut self, egress: &mut dyn Egress) -> Result<(), Box<NodeFailure>> {
        self.publish_stats();
        let output_failure = |node: &str, error: NodeError| {
            Box::new(NodeFailure {
                seq: error.written_through().map_or(0, |w| w + 1),
                node: node.to_string(),
                error,
                trace: None,
            })
        };
        for stage in &mut self.stages {
            stage
                .node
                .flush()
                .map_err(|e| output_failure(&stage.name, e))?;
        }
        if let Some(dead_letters) = egress.dead_letter_file() {
            dead_letters
                .flush()
                .map_err(|e| output_failure("dead_letter", e))?;
        }
        egress.publish();
        self.outputs_written();
        Ok(())
    }

    /// The end of the input: the dead-letter file ends its replay (a resumed run) and every
    /// local output is flushed.
    pub fn finish_outputs(&mut self, egress: &mut dyn Egress) -> Result<(), Box<NodeFailure>> {
        if let Some(dead_letters) = egress.dead_letter_file()
            && let Err(error) = dead_letters.finish()
        {
            return Err(Box::new(NodeFailure {
                seq: error.written_through().map_or(0, |w| w + 1),
                node: "dead_letter".to_string(),
                error,
                trace: None,
            }));
        }
        self.flush_outputs(egress)
    }

    /// After a failure: cuts every local output back to the records through the returned
    /// `seq` (at most `completed`; less when an output could not be written that far) and
    /// hands over what is left. What the outputs hold is then exactly what the run reports.
    pub fn settle_outputs(&mut self, egress: &mut dyn Egress, completed: u64) -> u64 {
        let mut through = completed;
        // No flush first: a flush would make the last batch final and move the window a
        // failure may roll back (see `RecordWriter::flush`); `truncate_after` writes out what
        // it keeps.
        // An output that cannot write out what it keeps lowers the point for all of them:
        // repeat until every output ends at the same record.
        loop {
            let before = through;
            for stage in &mut self.stages {
                let cut = stage.node.truncate_after(through);
                lower_to_written(&mut through, cut, &stage.name);
            }
            if let Some(dead_letters) = egress.dead_letter_file() {
                let cut = dead_letters.truncate_after(through);
                lower_to_written(&mut through, cut, "dead_letter");
            }
            if through == before {
                return through;
            }
        }
    }

    /// Per-node reports of this process.
    pub fn reports(&self) -> Vec<NodeReport> {
        let mut nodes = Vec::with_capacity(self.stages.len() + 1);
        if let Some(source) = &self.source {
            nodes.push(NodeReport {
                name: self.source_name.clone(),
                group: self.group.clone(),
                busy_ns: self
                    .source_stats
                    .busy_estimate_over(self.source_stats.records_in),
                stats: self.source_stats.clone(),
                counters: source.counters(),
                outcomes: Vec::new(),
            });
        }
        nodes.extend(self.stages.iter().map(|s| NodeReport {
            name: s.name.clone(),
            group: self.group.clone(),
            busy_ns: s.stats.estimated_busy_ns(),
            stats: s.stats.clone(),
            counters: s.node.counters(),
            outcomes: s.node.outcomes(),
        }));
        nodes
    }
}

/// An output that failed while a failed run settles its outputs: what it could write bounds
/// the completed range; the failure itself was already reported, this one is logged.
fn lower_to_written(through: &mut u64, result: Result<(), NodeError>, node: &str) {
    if let Err(error) = result {
        if let Some(written) = error.written_through() {
            *through = (*through).min(written);
        }
        tracing::error!(node, "{error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A preempted sample does not dominate a node's estimate; a slow node keeps its time.
    #[test]
    fn an_outlier_sample_is_capped() {
        let mut stats = NodeStats::default();
        for _ in 0..100 {
            stats.add_sample(1_000);
        }
        stats.add_sample(50_000_000);
        assert!(stats.sampled_busy_ns < 100 * 1_000 + 100_000, "{stats:?}");
        let mut slow = NodeStats::default();
        for _ in 0..100 {
            slow.add_sample(2_000_000);
        }
        assert_eq!(slow.sampled_busy_ns, 200_000_000);
    }
}
