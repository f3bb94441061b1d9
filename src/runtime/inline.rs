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
use super::summary::{NodeReport, RunSummary};
use crate::config::{Config, ConfigReport};
use crate::graph::{
    AlignedBuf, BuildContext, BuiltNode, EncodeFn, ErasedSource, Graph, MessageType, NodeError,
    Placement, Pull, RecordContext, Registry, Services,
};

/// Controls for a run that a caller may hold on to.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Set to stop the source at the next record; the run then drains and reports where it
    /// stopped.
    pub stop: Option<Arc<AtomicBool>>,
    /// Records the source has emitted so far (for progress bars).
    pub progress: Option<Arc<AtomicU64>>,
    /// Input records to skip before the first one (resuming a stopped run).
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
    is_local: impl Fn(usize) -> bool,
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
            Err(error) => {
                stage.stats.errors += 1;
                env.handle_failure(&stage.name, ctx, error, egress)?;
            }
        }
    }
    Ok(())
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
    let mut diag = crate::config::reader::Diagnostics::default();
    let Some(graph) = Graph::check(config, registry, &mut diag) else {
        return Err(RunError::Config(ConfigReport {
            errors: diag.errors,
            warnings: diag.warnings,
        }));
    };
    let placement = Placement::inline();
    let LocalNodes {
        mut source,
        mut stages,
    } = build_nodes(config, registry, &graph, &placement, |_| true)?;
    let source_name = graph
        .nodes
        .first()
        .map_or("source", |n| n.name.as_str())
        .to_string();
    start_nodes(source.as_mut(), &source_name, &mut stages)?;
    let Some(mut source) = source else {
        return Err(RunError::Bootstrap {
            node: source_name,
            message: "an inline run needs a source as the first pipeline node".to_string(),
        });
    };
    let mut egress = InlineEgress {
        dead_letters: DeadLetters::open(config.adapters.dead_letter.as_ref()).map_err(|e| {
            RunError::Bootstrap {
                node: "dead_letter".to_string(),
                message: e.to_string(),
            }
        })?,
        outputs,
        scratch: AlignedBuf::with_capacity(4096),
        arena: rkyv::ser::allocator::Arena::new(),
    };
    let mut env = ChainEnv::new(Routes::from_graph(&graph), config.runtime.on_node_error);
    let mut source_stats = NodeStats::default();
    let skipped = if options.skip > 0 {
        source.skip(options.skip).map_err(|e| RunError::Bootstrap {
            node: source_name.clone(),
            message: format!("skipping {} records: {e}", options.skip),
        })?
    } else {
        0
    };
    let run_id = super::context::new_run_id();
    let started = Instant::now();
    let mut seq = skipped;
    let mut interrupted = false;
    let mut failure: Option<NodeFailure> = None;
    loop {
        if options
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
        {
            interrupted = true;
            break;
        }
        let next = seq + 1;
        env.timing = next % TIMING_SAMPLE == 0;
        let ctx = RecordContext {
            seq: next,
            trace_id: trace_id_for(run_id, next),
            process_group: &placement.group,
            handoff_from: None,
            route_hop: 0,
        };
        let pulled = timed(&mut env, &mut source_stats, |env| {
            let mut port = ChainPort {
                from: 0,
                from_name: &source_name,
                downstream: &mut stages,
                env,
                egress: &mut egress,
                ctx: &ctx,
                emitted: 0,
            };
            let pulled = source.pull(&mut port);
            (pulled, port.emitted)
        });
        source_stats.records_out += pulled.1;
        match pulled.0 {
            Ok(Pull::Emitted) => {
                seq = next;
                // For a source, `records_in` counts pulls that emitted a record.
                source_stats.records_in += 1;
                if seq % 1024 == 0
                    && let Some(progress) = &options.progress
                {
                    progress.store(seq - skipped, Ordering::Relaxed);
                }
            }
            Ok(Pull::Exhausted) => break,
            Err(NodeError::Downstream) => {
                failure = env.failure.take();
                break;
            }
            Err(error) => {
                failure = Some(NodeFailure {
                    node: source_name.clone(),
                    seq: next,
                    error,
                });
                break;
            }
        }
    }
    if failure.is_none() {
        let ctx = RecordContext {
            seq,
            trace_id: trace_id_for(run_id, seq),
            process_group: &placement.group,
            handoff_from: None,
            route_hop: 0,
        };
        env.timing = false;
        if end_of_stream(&mut stages, &ctx, &mut env, &mut egress).is_err() {
            failure = env.failure.take();
        }
    }
    let flushed = egress.dead_letters.flush();
    if let Some(progress) = &options.progress {
        progress.store(seq - skipped, Ordering::Relaxed);
    }
    let mut nodes = vec![NodeReport {
        name: source_name.clone(),
        group: placement.group.clone(),
        busy_ns: source_stats.busy_estimate_over(source_stats.records_in),
        stats: source_stats,
        counters: source.counters(),
    }];
    nodes.extend(stages.iter().map(|s| NodeReport {
        name: s.name.clone(),
        group: placement.group.clone(),
        busy_ns: s.stats.estimated_busy_ns(),
        stats: s.stats.clone(),
        counters: s.node.counters(),
    }));
    let summary = RunSummary {
        profile: "inline".to_string(),
        records_in: seq - skipped,
        skipped,
        last_seq: if failure.is_some() {
            seq.saturating_sub(1)
        } else {
            seq
        },
        elapsed: started.elapsed(),
        dead_lettered: egress.dead_letters.count(),
        dead_letter_path: egress.dead_letters.destination().map(|p| p.to_path_buf()),
        interrupted,
        nodes,
    };
    if let Some(failure) = failure {
        return Err(RunError::NodeFailed {
            node: failure.node,
            seq: failure.seq,
            message: failure.error.to_string(),
            completed_through: failure.seq.saturating_sub(1),
            summary: Box::new(summary),
        });
    }
    if let Err(error) = flushed {
        return Err(RunError::NodeFailed {
            node: "dead_letter".to_string(),
            seq,
            message: error.to_string(),
            completed_through: seq,
            summary: Box::new(summary),
        });
    }
    Ok(summary)
}
