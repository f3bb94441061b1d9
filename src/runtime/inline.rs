//! The inline runtime (`bootstrap.mode: inline`, the memory profile): the whole graph in one
//! process, one record at a time through direct calls.
//!
//! It is the parity reference for the multiprocess profile: same nodes, same code, same
//! output bytes. Sources start after every node's `on_start` succeeded; end-of-stream runs each
//! node's hook in pipeline order, so final outputs still flow downstream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::chain::{
    ChainEnv, ChainPort, Egress, NodeFailure, NodeStats, Stage, TIMING_SAMPLE, timed,
};
use super::context::trace_id_for;
use super::dead_letter::DeadLetters;
use super::routes::Routes;
use super::summary::{NodeReport, RunSummary, WorkerReport};
use crate::config::{Config, ConfigReport};
use crate::graph::{
    AlignedBuf, BuildContext, BuiltNode, EncodeFn, ErasedSource, Graph, MessageType, NodeError,
    Placement, Pull, RecordContext, Registry, Services,
};
use crate::observability::export::{ExportPipeline, PipelineSink};
use crate::observability::span::{Tracer, span_id_for, unix_ns};

/// Controls for a run that a caller may hold on to.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Set to stop the source at the next record; the run then drains and reports where it
    /// stopped.
    pub stop: Option<Arc<AtomicBool>>,
    /// Records the source has emitted so far (for progress bars).
    pub progress: Option<Arc<AtomicU64>>,
    /// Resume after this `seq` (a stopped or failed run's completed range): records through
    /// it are processed again, so that stateful nodes rebuild their state, but their outputs
    /// are not written again (sinks append what follows). 0: a fresh run.
    pub skip: u64,
}

/// Why a run did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The config does not build a graph with this registry.
    #[error("{0}")]
    Config(ConfigReport),
    /// A node could not be built or its `on_start` failed; nothing was ingested.
    #[error("bootstrap_error: node `{node}` failed to start: {message}")]
    Bootstrap { node: String, message: String },
    /// A node failed on a record under the `fail` policy.
    #[error(
        "node_error: node `{node}` failed on record seq {seq}: {message}; records after seq {completed_through} were not completed"
    )]
    NodeFailed {
        node: String,
        seq: u64,
        message: String,
        /// Highest `seq` fully processed before the failing one.
        completed_through: u64,
        summary: Box<RunSummary>,
    },
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
        _ty: MessageType,
        _encode: &mut EncodeFn<'_>,
    ) -> Result<(), NodeError> {
        Err(NodeError::failed(format!(
            "inline runtime has no remote node {target}; every node is local"
        )))
    }

    fn terminal(
        &mut self,
        _from: usize,
        ctx: &RecordContext<'_>,
        _ty: MessageType,
        encode: &mut EncodeFn<'_>,
    ) -> Result<(), NodeError> {
        let Some(outputs) = self.outputs.as_mut() else {
            return Ok(());
        };
        let len = super::chain::encode_growing_with(&mut self.scratch, &mut self.arena, encode)?;
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
pub(crate) struct LocalNodes {
    pub source: Option<Box<dyn ErasedSource>>,
    pub stages: Vec<Stage>,
}

/// Builds the nodes of `graph` for which `is_local` holds, in pipeline order. A local source
/// is returned apart; `on_start` is not called here.
pub(crate) fn build_nodes(
    config: &Config,
    registry: &Registry,
    graph: &Graph,
    placement: &Placement,
    is_local: &dyn Fn(usize) -> bool,
    resume_after: u64,
) -> Result<LocalNodes, RunError> {
    let mut services = Services::default();
    let mut source = None;
    let mut stages = Vec::new();
    let null = serde_norway::Value::Null;
    for (index, node) in graph.nodes.iter().enumerate().filter(|(i, _)| is_local(*i)) {
        let factory = registry
            .get(&node.name)
            .ok_or_else(|| RunError::Bootstrap {
                node: node.name.clone(),
                message: "not in the node registry".to_string(),
            })?;
        let mut ctx = BuildContext {
            node: &node.name,
            settings: config.nodes.get(&node.name).unwrap_or(&null),
            config,
            placement,
            services: &mut services,
            resume_after,
        };
        let built = factory.build(&mut ctx).map_err(|e| RunError::Bootstrap {
            node: node.name.clone(),
            message: e.to_string(),
        })?;
        match built {
            BuiltNode::Source(s) => source = Some(s),
            BuiltNode::Node(n) => stages.push(Stage::new(node.name.clone(), index, n)),
        }
    }
    Ok(LocalNodes { source, stages })
}

/// Calls every node's `on_start`, source first.
pub(crate) fn start_nodes(
    source: Option<&mut Box<dyn ErasedSource>>,
    source_name: &str,
    stages: &mut [Stage],
) -> Result<(), RunError> {
    if let Some(source) = source {
        source.on_start().map_err(|e| RunError::Bootstrap {
            node: source_name.to_string(),
            message: e.to_string(),
        })?;
    }
    for stage in stages {
        stage.node.on_start().map_err(|e| RunError::Bootstrap {
            node: stage.name.clone(),
            message: e.to_string(),
        })?;
    }
    Ok(())
}

/// Runs every local stage's end-of-stream hook in pipeline order; outputs flow downstream.
pub(crate) fn end_of_stream(
    stages: &mut [Stage],
    ctx: &RecordContext<'_>,
    env: &mut ChainEnv,
    egress: &mut dyn Egress,
) -> Result<(), NodeError> {
    for position in 0..stages.len() {
        let (stage, rest) = stages[position..]
            .split_first_mut()
            .unwrap_or_else(|| unreachable!("position < len"));
        let mut port = ChainPort {
            from: stage.index,
            from_name: &stage.name,
            downstream: rest,
            env: &mut *env,
            egress: &mut *egress,
            ctx,
            emitted: 0,
        };
        let result = stage.node.on_end_of_stream(&mut port);
        stage.stats.records_out += port.emitted;
        match result {
            Ok(()) => {}
            Err(NodeError::Downstream) => return Err(NodeError::Downstream),
            Err(NodeError::Stopped) => return Err(NodeError::Stopped),
            Err(error) => {
                stage.stats.errors += 1;
                env.handle_failure(&stage.name, ctx, error, egress)?;
            }
        }
    }
    Ok(())
}

/// A process's local nodes and what drives them: the source (if this process holds it), the
/// chain of other local nodes, and the chain's shared state. Used by the inline runtime and by
/// every worker.
pub(crate) struct LocalPipeline {
    pub source: Option<Box<dyn ErasedSource>>,
    pub source_name: String,
    pub source_stats: NodeStats,
    pub stages: Vec<Stage>,
    pub env: ChainEnv,
    pub group: String,
    pub run_id: u64,
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

/// Source records between two flushes of the local outputs (a batch boundary: a failure never
/// rolls an output back past the one before last).
pub(crate) const OUTPUT_BATCH: u64 = 4096;

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

/// How a source run ended.
pub(crate) struct SourceRun {
    /// Highest `seq` emitted.
    pub last_seq: u64,
    /// Records emitted in this run.
    pub emitted: u64,
    /// Stopped by the stop check before the input ended.
    pub interrupted: bool,
    pub failure: Option<NodeFailure>,
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

impl LocalPipeline {
    /// Builds the local nodes of `graph` for `placement` (does not start them).
    pub fn build(
        config: &Config,
        registry: &Registry,
        graph: &Graph,
        placement: &Placement,
        is_local: impl Fn(usize) -> bool,
        run_id: u64,
        resume_after: u64,
    ) -> Result<Self, RunError> {
        let LocalNodes { source, stages } =
            build_nodes(config, registry, graph, placement, &is_local, resume_after)?;
        let source_name = graph
            .nodes
            .iter()
            .enumerate()
            .find(|(i, n)| is_local(*i) && n.role == crate::graph::NodeRole::Source)
            .map_or_else(String::new, |(_, n)| n.name.clone());
        Ok(Self {
            source,
            source_name,
            source_stats: NodeStats::default(),
            stages,
            env: ChainEnv::new(
                routes_for(config, graph, &placement.group),
                config.runtime.on_node_error,
            ),
            group: placement.group.clone(),
            run_id,
        })
    }

    /// Calls every local node's `on_start`.
    pub fn start(&mut self) -> Result<(), RunError> {
        start_nodes(self.source.as_mut(), &self.source_name, &mut self.stages)
    }

    /// Pulls the local source until it is exhausted, `stop()` says so, or a node fails.
    /// Records are numbered from `after + 1`. `progress` gets the count now and then.
    pub fn drive_source(
        &mut self,
        egress: &mut dyn Egress,
        after: u64,
        stop: &dyn Fn() -> bool,
        progress: &dyn Fn(u64),
    ) -> SourceRun {
        let mut seq = after;
        let mut run = SourceRun {
            last_seq: after,
            emitted: 0,
            interrupted: false,
            failure: None,
        };
        let Some(mut source) = self.source.take() else {
            return run;
        };
        loop {
            if stop() {
                run.interrupted = true;
                break;
            }
            let next = seq + 1;
            self.env.timing = next.is_multiple_of(TIMING_SAMPLE);
            let ctx = root_context(&self.env, self.run_id, &self.group, next);
            let span_start = if ctx.sampled { unix_ns() } else { 0 };
            let Self {
                stages,
                env,
                source_name,
                source_stats,
                ..
            } = self;
            let (pulled, emitted) = timed(env, source_stats, |env| {
                let mut port = ChainPort {
                    from: 0,
                    from_name: source_name,
                    downstream: stages,
                    env,
                    egress: &mut *egress,
                    ctx: &ctx,
                    emitted: 0,
                };
                let pulled = source.pull(&mut port);
                (pulled, port.emitted)
            });
            self.source_stats.records_out += emitted;
            match pulled {
                Ok(Pull::Emitted) => {
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
                    if seq.is_multiple_of(1024) {
                        progress(run.emitted);
                    }
                    if run.emitted.is_multiple_of(OUTPUT_BATCH)
                        && let Err(failure) = self.flush_outputs(egress)
                    {
                        run.failure = Some(*failure);
                        break;
                    }
                }
                Ok(Pull::Exhausted) => break,
                // The run is being stopped while this record was on its way: it is not
                // complete, and no node failed.
                Err(NodeError::Stopped) => {
                    run.interrupted = true;
                    break;
                }
                Err(NodeError::Downstream) => {
                    run.failure = self.env.failure.take();
                    break;
                }
                Err(error) => {
                    run.failure = Some(NodeFailure {
                        node: self.source_name.clone(),
                        seq: next,
                        error,
                    });
                    break;
                }
            }
        }
        self.source = Some(source);
        progress(run.emitted);
        run.last_seq = seq;
        run
    }

    /// Hands every local output (sinks' files, the dead-letter file) to the operating system:
    /// a batch boundary. A failure names the output and the first record not written.
    pub fn flush_outputs(&mut self, egress: &mut dyn Egress) -> Result<(), Box<NodeFailure>> {
        let output_failure = |node: &str, error: NodeError| {
            Box::new(NodeFailure {
                seq: error.written_through().map_or(0, |w| w + 1),
                node: node.to_string(),
                error,
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
        Ok(())
    }

    /// After a failure: hands over what is complete, then cuts every local output back to the
    /// records through the returned `seq` (at most `completed`; less when an output could not
    /// be written that far). What the outputs hold is then exactly what the run reports.
    pub fn settle_outputs(&mut self, egress: &mut dyn Egress, completed: u64) -> u64 {
        let mut through = completed;
        for stage in &mut self.stages {
            lower_to_written(&mut through, stage.node.flush(), &stage.name);
        }
        if let Some(dead_letters) = egress.dead_letter_file() {
            lower_to_written(&mut through, dead_letters.flush(), "dead_letter");
        }
        for stage in &mut self.stages {
            let cut = stage.node.truncate_after(through);
            lower_to_written(&mut through, cut, &stage.name);
        }
        if let Some(dead_letters) = egress.dead_letter_file() {
            let cut = dead_letters.truncate_after(through);
            lower_to_written(&mut through, cut, "dead_letter");
        }
        through
    }

    /// Runs every local node's end-of-stream hook; returns the failure, if one happened.
    pub fn finish(&mut self, egress: &mut dyn Egress, last_seq: u64) -> Option<NodeFailure> {
        self.env.timing = false;
        let run_id = self.run_id;
        let group = self.group.clone();
        let ctx = RecordContext::new(last_seq, trace_id_for(run_id, last_seq), &group);
        match end_of_stream(&mut self.stages, &ctx, &mut self.env, egress) {
            Ok(()) | Err(NodeError::Stopped) => None,
            Err(_) => self.env.failure.take(),
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
            });
        }
        nodes.extend(self.stages.iter().map(|s| NodeReport {
            name: s.name.clone(),
            group: self.group.clone(),
            busy_ns: s.stats.estimated_busy_ns(),
            stats: s.stats.clone(),
            counters: s.node.counters(),
        }));
        nodes
    }
}

/// Starts the span exporters of an inline run and points the pipeline's tracer at them.
fn start_inline_tracing(
    config: &Config,
    run_id: u64,
    pipeline: &mut LocalPipeline,
) -> Result<Option<std::sync::Arc<ExportPipeline>>, RunError> {
    let started = crate::observability::export::start_for_run(config, run_id).map_err(|e| {
        RunError::Bootstrap {
            node: "tracing".to_string(),
            message: e.to_string(),
        }
    })?;
    let Some(export) = started.map(std::sync::Arc::new) else {
        return Ok(None);
    };
    pipeline.env.tracer = Some(Tracer::new(
        config.runtime.observability.tracing.sample_ratio,
        "inline".to_string(),
        Box::new(PipelineSink(std::sync::Arc::clone(&export))),
    ));
    Ok(Some(export))
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
    let graph = Graph::checked(config, registry).map_err(RunError::Config)?;
    crate::config::check_run_files(config).map_err(RunError::Config)?;
    let placement = Placement::inline();
    let run_id = super::context::new_run_id();
    let mut pipeline = LocalPipeline::build(
        config,
        registry,
        &graph,
        &placement,
        |_| true,
        run_id,
        options.skip,
    )?;
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
        dead_letters: DeadLetters::open(config.adapters.dead_letter.as_ref(), options.skip)
            .map_err(|e| RunError::Bootstrap {
                node: "dead_letter".to_string(),
                message: e.to_string(),
            })?,
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
    let progress = |n: u64| {
        if let Some(p) = &options.progress {
            p.store(n, Ordering::Relaxed);
        }
    };
    // A resumed run replays the records its predecessor completed: stateful nodes rebuild
    // their state from them, and the outputs (which already hold them) are not written again.
    let run = pipeline.drive_source(&mut egress, 0, &stop, &progress);
    let mut failure = run.failure;
    if failure.is_none() {
        failure = pipeline.finish(&mut egress, run.last_seq);
    }
    if failure.is_none() {
        failure = pipeline.flush_outputs(&mut egress).err().map(|f| *f);
    }
    let completed_through = match &failure {
        None => run.last_seq,
        Some(failure) => {
            let before = failure.seq.saturating_sub(1);
            let written = failure.error.written_through().unwrap_or(before);
            pipeline.settle_outputs(&mut egress, before.min(written))
        }
    };
    let peak_rss_kib = crate::observability::process::peak_rss_kib().unwrap_or(0);
    let summary = RunSummary {
        profile: "inline".to_string(),
        records_in: run.emitted,
        skipped: options.skip.min(run.last_seq),
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
    };
    if let Some(failure) = failure {
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
