//! In-process execution of a chain of nodes: emitted values become direct calls.
//!
//! Owns the hot path shared by the inline runtime and every worker: a node's output is encoded
//! into the next local node's input buffer and that node runs at once (depth first), so one
//! record travels the whole local chain before the next is read, in order, with no queue. A
//! value for a node that is not local leaves through the [`Egress`] (a ring, in a worker);
//! values with no downstream node are terminal outputs, and dead letters go to the egress too.
//!
//! Node failures follow `runtime.on_node_error`: under `fail` the first failure is recorded
//! (node, `seq`, message) and unwinds the chain as [`NodeError::Downstream`]; under
//! `dead_letter` a node's own failure sends the record to the dead-letter adapter and the run
//! goes on. I/O, encoding and payload errors always fail the run: they are not about the record.

use std::time::Instant;

use rkyv::ser::allocator::Arena;

use super::routes::Routes;
use crate::config::NodeErrorPolicy;
use crate::graph::{
    AlignedBuf, EmitTarget, EncodeError, EncodeFn, ErasedNode, MessageType, NodeError, OutputPort,
    RecordContext,
};
use crate::observability::span::{SpanRecord, Tracer, span_id_for, unix_ns};

/// Per-node counters of one process.
#[derive(Debug, Clone, Default)]
pub struct NodeStats {
    pub records_in: u64,
    pub records_out: u64,
    pub errors: u64,
    /// Self time (excluding downstream nodes) of the records that were timed.
    pub sampled_busy_ns: u64,
    pub sampled_records: u64,
}

impl NodeStats {
    /// Estimated busy time over all records (self time scaled from the timed sample).
    pub fn estimated_busy_ns(&self) -> u64 {
        self.busy_estimate_over(self.records_in)
    }

    /// The timed sample's self time scaled to `calls` calls.
    pub fn busy_estimate_over(&self, calls: u64) -> u64 {
        if self.sampled_records == 0 {
            return 0;
        }
        (u128::from(self.sampled_busy_ns) * u128::from(calls) / u128::from(self.sampled_records))
            as u64
    }
}

/// One record in every `TIMING_SAMPLE` is timed node by node: reading a clock costs about as
/// much as a small node, so timing every record would distort what it measures.
pub const TIMING_SAMPLE: u64 = 16;

/// A local node with its input buffer.
pub struct Stage {
    pub name: String,
    /// Index in the graph.
    pub index: usize,
    pub node: Box<dyn ErasedNode>,
    pub input: AlignedBuf,
    pub stats: NodeStats,
}

impl Stage {
    pub fn new(name: String, index: usize, node: Box<dyn ErasedNode>) -> Self {
        Self {
            name,
            index,
            node,
            input: AlignedBuf::with_capacity(4096),
            stats: NodeStats::default(),
        }
    }
}

/// The first failure of a run under the `fail` policy.
#[derive(Debug)]
pub struct NodeFailure {
    pub node: String,
    pub seq: u64,
    pub error: NodeError,
}

/// Where values that leave the local chain go.
pub trait Egress {
    /// A value for node `target`, which is not local.
    fn forward(
        &mut self,
        target: usize,
        ctx: &RecordContext<'_>,
        ty: MessageType,
        encode: &mut EncodeFn<'_>,
    ) -> Result<(), NodeError>;

    /// A value emitted by node `from`, which has no downstream node.
    fn terminal(
        &mut self,
        from: usize,
        ctx: &RecordContext<'_>,
        ty: MessageType,
        encode: &mut EncodeFn<'_>,
    ) -> Result<(), NodeError>;

    /// The record `ctx.seq` goes to the dead-letter adapter.
    fn dead_letter(
        &mut self,
        ctx: &RecordContext<'_>,
        node: &str,
        reason: &str,
        detail: &str,
    ) -> Result<(), NodeError>;

    /// The dead-letter file this process writes, if it writes one (flushed and rolled back
    /// with the sinks' outputs).
    fn dead_letter_file(&mut self) -> Option<&mut super::dead_letter::DeadLetters> {
        None
    }
}

/// State shared by every call of one chain.
pub struct ChainEnv {
    pub routes: Routes,
    pub policy: NodeErrorPolicy,
    pub arena: Arena,
    pub failure: Option<NodeFailure>,
    /// Time of nested (downstream) calls, subtracted from the caller's self time.
    children_ns: u64,
    /// Whether the current record is timed.
    pub timing: bool,
    pub dead_lettered: u64,
    /// Span production, when tracing is on.
    pub tracer: Option<Tracer>,
    /// The error of the node whose span is being closed (set by the node's failure path).
    span_error: Option<String>,
}

impl ChainEnv {
    pub fn new(routes: Routes, policy: NodeErrorPolicy) -> Self {
        Self {
            routes,
            policy,
            arena: Arena::new(),
            failure: None,
            children_ns: 0,
            timing: false,
            dead_lettered: 0,
            tracer: None,
            span_error: None,
        }
    }

    /// Records the span of node `node` (graph index `index`) that ran record `ctx` from
    /// `start_ns` until now, when the record is sampled and tracing is on.
    pub fn record_span(
        &mut self,
        node: &str,
        ctx: &RecordContext<'_>,
        span_id: u64,
        start_ns: u64,
        error: Option<String>,
    ) {
        let Some(tracer) = self.tracer.as_mut() else {
            return;
        };
        let span = SpanRecord {
            trace_id: ctx.trace_id,
            span_id,
            parent_span_id: ctx.parent_span,
            name: node.to_string(),
            process_group: ctx.process_group.to_string(),
            handoff_from: ctx.handoff_from.map(str::to_string),
            route_hop: ctx.route_hop,
            worker_id: tracer.worker_id.clone(),
            pid: tracer.pid,
            seq: ctx.seq,
            start_unix_ns: start_ns,
            end_unix_ns: unix_ns(),
            error,
        };
        tracer.record(span);
    }

    /// Whether record `ctx` gets spans in this process.
    pub fn traces(&self, ctx: &RecordContext<'_>) -> bool {
        ctx.sampled && self.tracer.is_some()
    }

    /// Applies the error policy to a node's failure on record `ctx.seq`.
    pub fn handle_failure(
        &mut self,
        node: &str,
        ctx: &RecordContext<'_>,
        error: NodeError,
        egress: &mut dyn Egress,
    ) -> Result<(), NodeError> {
        // A node's own failures (errors and panics) follow the policy; transport problems
        // (payloads that do not validate, rings) always fail the run. A node that panicked
        // keeps running for the next record under `dead_letter`, with whatever state the
        // panic left: the policy trades that risk for availability, as the user chose.
        let policy_applies = matches!(error, NodeError::Failed(_) | NodeError::Panicked(_));
        if policy_applies && self.policy == NodeErrorPolicy::DeadLetter {
            self.dead_lettered += 1;
            return egress.dead_letter(ctx, node, "NODE_ERROR", &error.to_string());
        }
        if self.failure.is_none() {
            self.failure = Some(NodeFailure {
                node: node.to_string(),
                seq: ctx.seq,
                error,
            });
        }
        Err(NodeError::Downstream)
    }
}

/// Encodes with `encode` into `buf`, doubling it until the value fits.
pub fn encode_growing_with(
    buf: &mut AlignedBuf,
    arena: &mut Arena,
    encode: &mut EncodeFn<'_>,
) -> Result<usize, EncodeError> {
    loop {
        match encode(buf.as_mut_bytes(), arena) {
            Ok(len) => return Ok(len),
            Err(e) if buf.capacity() >= crate::graph::MAX_SCRATCH_BYTES => return Err(e),
            Err(_) => {
                let next = (buf.capacity() * 2).min(crate::graph::MAX_SCRATCH_BYTES);
                buf.grow_to(next);
            }
        }
    }
}

/// Runs `call`, adding its self time (its duration minus the nested node calls it made) to
/// `stats` when the current record is timed.
pub fn timed<R>(
    env: &mut ChainEnv,
    stats: &mut NodeStats,
    call: impl FnOnce(&mut ChainEnv) -> R,
) -> R {
    if !env.timing {
        return call(env);
    }
    let outer_children = std::mem::take(&mut env.children_ns);
    let started = Instant::now();
    let result = call(env);
    let total = started.elapsed().as_nanos() as u64;
    let children = std::mem::replace(&mut env.children_ns, outer_children + total);
    stats.sampled_busy_ns += total.saturating_sub(children);
    stats.sampled_records += 1;
    result
}

/// The text of a caught panic (`panic!` with a literal or a formatted message).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Runs `node` on one encoded input, then (depth first) everything it emits locally; a
/// sampled record gets a span covering the node's call, whose id is the parent of whatever
/// the node emits.
#[allow(clippy::too_many_arguments)]
pub fn run_node(
    name: &str,
    index: usize,
    node: &mut dyn ErasedNode,
    stats: &mut NodeStats,
    payload: &[u8],
    trusted: bool,
    ctx: &RecordContext<'_>,
    downstream: &mut [Stage],
    env: &mut ChainEnv,
    egress: &mut dyn Egress,
) -> Result<(), NodeError> {
    let span = env.traces(ctx).then(|| {
        (
            unix_ns(),
            span_id_for(&ctx.trace_id, ctx.parent_span, index),
        )
    });
    // What this node emits has its span as parent.
    let child = span.map(|(_, span_id)| RecordContext {
        parent_span: span_id,
        ..*ctx
    });
    let result = run_node_untraced(
        name,
        index,
        node,
        stats,
        payload,
        trusted,
        child.as_ref().unwrap_or(ctx),
        downstream,
        env,
        egress,
    );
    if let Some((start_ns, span_id)) = span {
        // Nested spans took their own errors already: what is left is this node's.
        let error = env.span_error.take();
        env.record_span(name, ctx, span_id, start_ns, error);
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn run_node_untraced(
    name: &str,
    index: usize,
    node: &mut dyn ErasedNode,
    stats: &mut NodeStats,
    payload: &[u8],
    trusted: bool,
    ctx: &RecordContext<'_>,
    downstream: &mut [Stage],
    env: &mut ChainEnv,
    egress: &mut dyn Egress,
) -> Result<(), NodeError> {
    stats.records_in += 1;
    let mut emitted = 0;
    let result = timed(env, stats, |env| {
        let mut port = ChainPort {
            from: index,
            from_name: name,
            downstream,
            env,
            egress: &mut *egress,
            ctx,
            emitted: 0,
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            node.process(payload, trusted, ctx, &mut port)
        }))
        .unwrap_or_else(|panic| Err(NodeError::Panicked(panic_message(panic.as_ref()))));
        emitted = port.emitted;
        result
    });
    stats.records_out += emitted;
    match result {
        Ok(()) => Ok(()),
        // Not this node's failure: one further down, or the run stopping under it.
        Err(NodeError::Downstream) => Err(NodeError::Downstream),
        Err(NodeError::Stopped) => Err(NodeError::Stopped),
        Err(error) => {
            stats.errors += 1;
            if env.traces(ctx) {
                env.span_error = Some(error.to_string());
            }
            env.handle_failure(name, ctx, error, egress)
        }
    }
}

/// Runs the local stage `target` (an index into `stages`) on a value encoded by `encode`.
fn run_local(
    stages: &mut [Stage],
    position: usize,
    ctx: &RecordContext<'_>,
    env: &mut ChainEnv,
    egress: &mut dyn Egress,
    encode: &mut EncodeFn<'_>,
) -> Result<(), NodeError> {
    let (stage, rest) = stages[position..]
        .split_first_mut()
        .unwrap_or_else(|| unreachable!("position comes from a search of `stages`"));
    let Stage {
        name,
        index,
        node,
        input,
        stats,
    } = stage;
    let len = encode_growing_with(input, &mut env.arena, encode)?;
    run_node(
        name,
        *index,
        node.as_mut(),
        stats,
        &input.as_bytes()[..len],
        true,
        ctx,
        rest,
        env,
        egress,
    )
}

/// The output port a node sees while the chain runs it.
pub struct ChainPort<'c, 'r> {
    pub from: usize,
    pub from_name: &'c str,
    pub downstream: &'c mut [Stage],
    pub env: &'c mut ChainEnv,
    pub egress: &'c mut dyn Egress,
    pub ctx: &'c RecordContext<'r>,
    pub emitted: u64,
}

impl ChainPort<'_, '_> {
    fn resolve(
        &mut self,
        target: EmitTarget<'_>,
        ty: MessageType,
    ) -> Result<Option<usize>, NodeError> {
        match target {
            EmitTarget::Next => Ok(self.env.routes.next_of(self.from)),
            EmitTarget::Named(name) => self
                .env
                .routes
                .resolve_named(self.from, self.from_name, name, ty)
                .map(Some),
        }
    }
}

impl OutputPort for ChainPort<'_, '_> {
    fn emit(
        &mut self,
        target: EmitTarget<'_>,
        ty: MessageType,
        encode: &mut EncodeFn<'_>,
    ) -> Result<(), NodeError> {
        self.emitted += 1;
        let Some(target) = self.resolve(target, ty)? else {
            return self.egress.terminal(self.from, self.ctx, ty, encode);
        };
        let local = self.downstream.iter().position(|s| s.index == target);
        // `handoff_from` is set only on the first node after a cross-group hop.
        let handed_over;
        let ctx = if self.ctx.handoff_from.is_none() {
            self.ctx
        } else {
            handed_over = RecordContext {
                handoff_from: None,
                ..*self.ctx
            };
            &handed_over
        };
        match local {
            Some(position) => run_local(
                self.downstream,
                position,
                ctx,
                self.env,
                self.egress,
                encode,
            ),
            None => self.egress.forward(target, ctx, ty, encode),
        }
    }

    fn dead_letter(&mut self, reason: &str, detail: &str) -> Result<(), NodeError> {
        self.env.dead_lettered += 1;
        self.egress
            .dead_letter(self.ctx, self.from_name, reason, detail)
    }
}
