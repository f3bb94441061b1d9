//! One hop of the local chain: how a node's output reaches the next node of the same process
//! (by reference, through the stage's resolved [`Link`]) or leaves it (through the
//! [`Egress`]), and how a node's failure is handled under the error policy. The common case — an
//! untimed, untraced record — takes the short path in [`run_local`]: count it, call the node,
//! count what it emitted.

use super::*;
/// Where a stage's default edge leads, resolved when the pipeline is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// A later stage of this process, by position.
    Local(usize),
    /// A node of another process, by graph index: the value leaves through the egress.
    Remote(usize),
    /// No next node: a terminal output.
    Terminal,
}

/// A local node, built, with its link.
pub(crate) struct Stage {
    pub name: String,
    /// Index in the graph.
    pub index: usize,
    pub node: Box<dyn ErasedNode>,
    pub next: Link,
    pub stats: NodeStats,
}

/// The first failure of a run under the `fail` policy.
#[derive(Debug)]
pub struct NodeFailure {
    /// The node that failed.
    pub node: String,
    /// The record it failed on.
    pub seq: u64,
    /// What failed.
    pub error: NodeError,
    /// The failed record's trace, for the log line that reports the failure.
    pub trace: Option<RecordTrace>,
}

/// Where a record sits in the traces: its trace id, and the failing node's span id when the
/// record is sampled (the span exists, with the error on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordTrace {
    pub trace_id: [u8; 16],
    pub span_id: Option<u64>,
}

/// Logs a failure at ERROR; one about a record carries its trace and span ids, so a log search
/// leads to the failing span.
pub(crate) fn log_failure(
    worker_id: &str,
    category: &str,
    message: &str,
    trace: Option<RecordTrace>,
) {
    let Some(trace) = trace else {
        tracing::error!(worker_id, category, "{message}");
        return;
    };
    let (trace_id, span_id) = trace.hex();
    if trace.span_id.is_some() {
        tracing::error!(worker_id, category, trace_id = %trace_id, span_id = %span_id, "{message}");
    } else {
        // An unsampled record has no span: its trace id still finds it in sampled-out logs.
        tracing::error!(worker_id, category, trace_id = %trace_id, "{message}");
    }
}

impl RecordTrace {
    /// `trace_id` and (when sampled) `span_id` as W3C lower-case hex, for log fields.
    pub fn hex(&self) -> (String, String) {
        let trace: String = self.trace_id.iter().map(|b| format!("{b:02x}")).collect();
        let span = self
            .span_id
            .map_or_else(String::new, |s| format!("{s:016x}"));
        (trace, span)
    }
}

/// Where values that leave the local chain go.
pub(crate) trait Egress {
    /// A value for node `target`, which is not local.
    fn forward(
        &mut self,
        target: usize,
        ctx: &RecordContext<'_>,
        value: Value<'_>,
    ) -> Result<(), NodeError>;

    /// A value emitted by node `from`, which has no downstream node.
    fn terminal(
        &mut self,
        from: usize,
        ctx: &RecordContext<'_>,
        value: Value<'_>,
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
    fn dead_letter_file(&mut self) -> Option<&mut DeadLetters> {
        None
    }

    /// Envelopes written to other processes so far (0 for an egress that writes none): a
    /// record after which it did not grow left nothing downstream, so it ended here.
    fn envelopes_sent(&self) -> u64 {
        0
    }

    /// Publishes what is written but held back (a ring's unpublished batch): the source is
    /// about to wait for input.
    fn publish(&mut self) {}
}

/// End-to-end latency as a reader of the outputs sees it: a measured record that ended in this
/// process waits here until the output holding it reaches the operating system.
#[derive(Debug, Default)]
pub(crate) struct LatencyProbe {
    /// Measured records that ended, by taken latency.
    pub histogram: LatencyHistogram,
    /// Births of measured records whose output is still buffered.
    unwritten: Vec<u64>,
    /// When the outputs were last written (`None`: not yet).
    written_at: Option<Instant>,
}

/// Measured records waiting for their output's write, at most (beyond, they are taken at once:
/// an output that is never flushed must not grow this without bound).
const MAX_UNWRITTEN: usize = 1 << 16;

impl LatencyProbe {
    /// Whether the outputs were last written `bound` ago or longer (or never).
    pub fn written_before(&self, bound: Duration) -> bool {
        self.written_at.is_none_or(|at| at.elapsed() >= bound)
    }

    /// A record born at `born_ns` ended with no output to wait for.
    pub fn observe_now(&mut self, born_ns: u64) {
        self.histogram.observe_since(born_ns, unix_ns());
    }

    /// A record born at `born_ns` ended in an output not written yet.
    #[inline]
    pub fn unwritten(&mut self, born_ns: u64) {
        self.unwritten.push(born_ns);
        if self.unwritten.len() >= MAX_UNWRITTEN {
            self.written();
        }
    }

    /// The outputs were written: every waiting record's latency is taken now.
    pub fn written(&mut self) {
        self.written_at = Some(Instant::now());
        if self.unwritten.is_empty() {
            return;
        }
        let now = unix_ns();
        for born in self.unwritten.drain(..) {
            self.histogram.observe_since(born, now);
        }
    }
}

/// When the record the source is producing was born: a measured record (one in
/// [`crate::observability::latency::LATENCY_SAMPLE`]) is stamped when the source first hands
/// it on, after the read that brought it.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SourceBirth {
    measured: bool,
    born_ns: u64,
}

impl SourceBirth {
    /// The source starts on its next record.
    pub fn begin(&mut self, measured: bool) {
        *self = Self {
            measured,
            born_ns: 0,
        };
    }

    #[inline]
    pub fn is_measured(&self) -> bool {
        self.measured
    }

    /// The record's birth: now, at its first emission.
    fn stamp(&mut self) -> u64 {
        if self.born_ns == 0 {
            self.born_ns = unix_ns().max(1);
        }
        self.born_ns
    }

    /// The record's birth, 0 when it is not measured or was not handed on.
    pub fn born_ns(&self) -> u64 {
        self.born_ns
    }
}

/// State shared by every call of one chain.
pub(crate) struct ChainEnv {
    pub routes: Routes,
    pub policy: NodeErrorPolicy,
    pub failure: Option<NodeFailure>,
    /// Time of nested (downstream) calls, subtracted from the caller's self time.
    pub(super) children_ns: u64,
    /// Whether the current record is timed.
    pub timing: bool,
    /// Whether the current record is timed or traced here: set once per record where it
    /// enters, so that a hop checks one flag.
    observed: bool,
    pub dead_lettered: u64,
    /// Span production, when tracing is on.
    pub tracer: Option<Tracer>,
    /// The error of the node whose span is being closed (set by the node's failure path).
    span_error: Option<String>,
    /// Graph index of the node running now: a caught panic is charged to it.
    pub(super) running: usize,
    /// Stage position of each local node, by graph index (named targets).
    pub(super) local: Vec<Option<usize>>,
    /// Every node's name, by graph index (errors and dead letters name the emitting node).
    names: Vec<String>,
    /// End-to-end latency of the records that end in this process.
    pub latency: LatencyProbe,
    /// The birth of the record the source is producing.
    pub source_birth: SourceBirth,
}

impl ChainEnv {
    pub(super) fn new(
        routes: Routes,
        policy: NodeErrorPolicy,
        local: Vec<Option<usize>>,
        names: Vec<String>,
    ) -> Self {
        Self {
            routes,
            policy,
            failure: None,
            children_ns: 0,
            timing: false,
            observed: false,
            dead_lettered: 0,
            tracer: None,
            span_error: None,
            running: 0,
            local,
            names,
            latency: LatencyProbe::default(),
            source_birth: SourceBirth::default(),
        }
    }

    /// The name of node `index` (graph index).
    pub(super) fn name_of(&self, index: usize) -> &str {
        self.names.get(index).map_or("", String::as_str)
    }

    /// Marks where record `ctx` enters this process: whether its hops are timed or traced.
    pub(super) fn enter(&mut self, ctx: &RecordContext<'_>) {
        self.children_ns = 0;
        self.observed = self.timing || self.traces(ctx);
    }

    /// The link to node `index`: local by position, else remote.
    fn link_to_index(&self, index: usize) -> Link {
        match self.local.get(index).copied().flatten() {
            Some(position) => Link::Local(position),
            None => Link::Remote(index),
        }
    }

    /// The link to the node named `target` (through the route cache).
    fn link_to(&mut self, from: usize, target: &str, ty: MessageType) -> Result<Link, NodeError> {
        let from_name = self.names.get(from).map_or("", String::as_str);
        let index = self.routes.resolve_named(from, from_name, target, ty)?;
        Ok(self.link_to_index(index))
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
    #[inline]
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
            let span_id = self
                .traces(ctx)
                .then(|| span_id_for(&ctx.trace_id, ctx.parent_span, self.running));
            self.failure = Some(NodeFailure {
                node: node.to_string(),
                seq: ctx.seq,
                error,
                trace: Some(RecordTrace {
                    trace_id: ctx.trace_id,
                    span_id,
                }),
            });
        }
        Err(NodeError::DOWNSTREAM)
    }
}

/// The text of a caught panic (`panic!` with a literal or a formatted message).
pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// What a stage receives.
#[derive(Clone, Copy)]
enum Input<'v> {
    /// A value emitted in this process.
    Value(Value<'v>),
    /// An encoded value read from a ring.
    Encoded { payload: &'v [u8], trusted: bool },
}

/// Runs the first stage of `stages` (at `position`) on a value emitted in this process, and
/// through its port everything it emits locally: one hop. The common case — an untimed,
/// untraced record — takes the short path: count it, call the node, count what it emitted.
#[inline]
fn run_local(
    stages: &mut [Stage],
    position: usize,
    value: Value<'_>,
    ctx: &RecordContext<'_>,
    env: &mut ChainEnv,
    egress: &mut dyn Egress,
) -> Result<(), NodeError> {
    let Some((stage, downstream)) = stages.split_first_mut() else {
        return Err(no_local_stage(position));
    };
    if env.observed {
        let input = Input::Value(value);
        return run_stage_observed(stage, downstream, position, input, ctx, env, egress);
    }
    stage.stats.records_in += 1;
    env.running = stage.index;
    let mut port = Port {
        from: stage.index,
        next: stage.next,
        downstream,
        offset: position + 1,
        env: &mut *env,
        egress: &mut *egress,
        ctx,
        emitted: 0,
        stop: None,
        stamp_birth: false,
    };
    let result = stage.node.process(value, ctx, &mut port);
    stage.stats.records_out += port.emitted;
    match result {
        Ok(()) => Ok(()),
        Err(error) => stage_failed(stage, error, false, ctx, env, egress),
    }
}

/// Runs the first stage of `stages` on a payload read from a ring (the record's first hop in
/// this process), and through its port everything it emits locally.
pub(super) fn run_entry(
    stages: &mut [Stage],
    position: usize,
    payload: &[u8],
    trusted: bool,
    ctx: &RecordContext<'_>,
    env: &mut ChainEnv,
    egress: &mut dyn Egress,
) -> Result<(), NodeError> {
    let Some((stage, downstream)) = stages.split_first_mut() else {
        return Err(no_local_stage(position));
    };
    if env.observed {
        let input = Input::Encoded { payload, trusted };
        return run_stage_observed(stage, downstream, position, input, ctx, env, egress);
    }
    stage.stats.records_in += 1;
    env.running = stage.index;
    // What this node emits is no longer the first hop in this process.
    let handed_down = RecordContext {
        handoff_from: None,
        ..*ctx
    };
    let mut port = Port {
        from: stage.index,
        next: stage.next,
        downstream,
        offset: position + 1,
        env: &mut *env,
        egress: &mut *egress,
        ctx: &handed_down,
        emitted: 0,
        stop: None,
        stamp_birth: false,
    };
    let result = stage.node.process_encoded(payload, trusted, ctx, &mut port);
    stage.stats.records_out += port.emitted;
    match result {
        Ok(()) => Ok(()),
        Err(error) => stage_failed(stage, error, false, ctx, env, egress),
    }
}

#[cold]
fn no_local_stage(position: usize) -> NodeError {
    NodeError::failed(format!("no local node at position {position}"))
}

/// A stage's call returned an error: pass on what is not its own, count and apply the policy
/// to what is.
#[cold]
fn stage_failed(
    stage: &mut Stage,
    error: NodeError,
    traced: bool,
    ctx: &RecordContext<'_>,
    env: &mut ChainEnv,
    egress: &mut dyn Egress,
) -> Result<(), NodeError> {
    match error {
        // Not this node's failure: one further down, or the run stopping under it.
        NodeError::Halted(_) => Err(error),
        error => {
            stage.stats.errors += 1;
            if traced {
                env.span_error = Some(error.to_string());
            }
            env.handle_failure(&stage.name, ctx, error, egress)
        }
    }
}

/// [`run_stage`] for a record that is timed (one in [`TIMING_SAMPLE`]) or traced: the same,
/// with the node's self time and its span.
#[inline(never)]
fn run_stage_observed(
    stage: &mut Stage,
    downstream: &mut [Stage],
    position: usize,
    input: Input<'_>,
    ctx: &RecordContext<'_>,
    env: &mut ChainEnv,
    egress: &mut dyn Egress,
) -> Result<(), NodeError> {
    stage.stats.records_in += 1;
    env.running = stage.index;
    let traced = env.traces(ctx);
    let span = traced.then(|| {
        (
            unix_ns(),
            span_id_for(&ctx.trace_id, ctx.parent_span, stage.index),
        )
    });
    // What this node emits has its span as parent and is no longer the first hop here.
    let port_ctx = RecordContext {
        handoff_from: None,
        parent_span: span.map_or(ctx.parent_span, |(_, id)| id),
        ..*ctx
    };
    let started = env.timing.then(Instant::now);
    let outer_children = if env.timing {
        std::mem::take(&mut env.children_ns)
    } else {
        0
    };
    let mut port = Port {
        from: stage.index,
        next: stage.next,
        downstream,
        offset: position + 1,
        env: &mut *env,
        egress: &mut *egress,
        ctx: &port_ctx,
        emitted: 0,
        stop: None,
        stamp_birth: false,
    };
    let result = match input {
        Input::Value(value) => stage.node.process(value, ctx, &mut port),
        Input::Encoded { payload, trusted } => {
            stage.node.process_encoded(payload, trusted, ctx, &mut port)
        }
    };
    stage.stats.records_out += port.emitted;
    if let Some(started) = started {
        let total = started.elapsed().as_nanos() as u64;
        let children = std::mem::replace(&mut env.children_ns, outer_children + total);
        stage.stats.add_sample(total.saturating_sub(children));
    }
    // The node's own error is set on its span before the span closes, then the policy runs.
    let own_error = match &result {
        Err(NodeError::Halted(_)) | Ok(()) => None,
        Err(error) => Some(error.to_string()),
    };
    if let Some((start_ns, span_id)) = span {
        // Nested spans took their own errors already: what is left is this node's.
        let error = env.span_error.take().or(own_error);
        env.record_span(&stage.name, ctx, span_id, start_ns, error);
    }
    match result {
        Ok(()) => Ok(()),
        Err(error) => stage_failed(stage, error, false, ctx, env, egress),
    }
}

/// The output port a node emits through while the pipeline runs it.
pub(super) struct Port<'c, 'r> {
    /// The emitting node's graph index.
    pub(super) from: usize,
    pub(super) next: Link,
    /// The stages after the emitting one; `offset` is the position of the first.
    pub(super) downstream: &'c mut [Stage],
    pub(super) offset: usize,
    pub(super) env: &'c mut ChainEnv,
    pub(super) egress: &'c mut dyn Egress,
    pub(super) ctx: &'c RecordContext<'r>,
    pub(super) emitted: u64,
    /// The source's port only: whether the run is stopping (answers its waits for input).
    pub(super) stop: Option<&'c dyn Fn() -> bool>,
    /// The source's port, for a measured record: its birth is stamped at its first emission.
    pub(super) stamp_birth: bool,
}

impl OutputPort for Port<'_, '_> {
    #[inline]
    fn emit(&mut self, target: EmitTarget<'_>, value: Value<'_>) -> Result<(), NodeError> {
        if self.stamp_birth {
            return self.emit_measured(target, value);
        }
        self.emitted += 1;
        let link = match target {
            EmitTarget::Next => self.next,
            EmitTarget::Named(name) => self.env.link_to(self.from, name, value.ty())?,
        };
        match link {
            Link::Local(position) => {
                // Links only point downstream (built so, and named targets are resolved
                // forward only); a slice that does not exist fails the record, not the process.
                let downstream = position
                    .checked_sub(self.offset)
                    .and_then(|at| self.downstream.get_mut(at..))
                    .unwrap_or_default();
                run_local(downstream, position, value, self.ctx, self.env, self.egress)
            }
            // A timed record: the push (which may wait on a full ring) is not the node's own
            // time, like a local downstream node's is not.
            Link::Remote(target) if self.env.timing => {
                let started = Instant::now();
                let forwarded = self.egress.forward(target, self.ctx, value);
                self.env.children_ns += started.elapsed().as_nanos() as u64;
                forwarded
            }
            Link::Remote(target) => self.egress.forward(target, self.ctx, value),
            Link::Terminal => self.egress.terminal(self.from, self.ctx, value),
        }
    }

    fn dead_letter(&mut self, reason: &str, detail: &str) -> Result<(), NodeError> {
        self.env.dead_lettered += 1;
        let node = self.env.name_of(self.from);
        self.egress.dead_letter(self.ctx, node, reason, detail)
    }

    /// The source waits for input: what it already read goes out now (local outputs are
    /// flushed, a ring's batch is published), then the stop check answers.
    fn idle(&mut self) -> Result<(), NodeError> {
        self.flush_while_idle()?;
        match self.stop {
            Some(stop) if stop() => Err(NodeError::STOPPED),
            _ => Ok(()),
        }
    }
}

impl Port<'_, '_> {
    /// The source emits a measured record: it is born now, after the read that brought it
    /// (the time the source waited for input is not the record's). Off the hot path: one
    /// record in [`crate::observability::latency::LATENCY_SAMPLE`].
    #[cold]
    #[inline(never)]
    fn emit_measured(&mut self, target: EmitTarget<'_>, value: Value<'_>) -> Result<(), NodeError> {
        let ctx = RecordContext {
            born_ns: self.env.source_birth.stamp(),
            ..*self.ctx
        };
        let mut stamped = Port {
            from: self.from,
            next: self.next,
            downstream: &mut *self.downstream,
            offset: self.offset,
            env: &mut *self.env,
            egress: &mut *self.egress,
            ctx: &ctx,
            emitted: 0,
            stop: self.stop,
            stamp_birth: false,
        };
        let result = stamped.emit(target, value);
        self.emitted += stamped.emitted;
        result
    }

    /// The source's port: every output downstream of it is written now (local outputs are
    /// flushed, a ring's batch is published).
    fn flush_while_idle(&mut self) -> Result<(), NodeError> {
        if self.stop.is_none() {
            return Ok(());
        }
        let mut failed = None;
        for stage in self.downstream.iter_mut() {
            if let Err(error) = stage.node.flush() {
                failed = Some((stage.name.clone(), error));
                break;
            }
        }
        if let Some((node, error)) = failed {
            return Err(self.output_failed(&node, error));
        }
        if let Some(dead_letters) = self.egress.dead_letter_file()
            && let Err(error) = dead_letters.flush()
        {
            return Err(self.output_failed("dead_letter", error));
        }
        self.egress.publish();
        self.env.latency.written();
        Ok(())
    }

    /// An output that failed to flush while the source waited: the run's failure, named after
    /// the output's node, at the first record it could not write.
    #[cold]
    fn output_failed(&mut self, node: &str, error: NodeError) -> NodeError {
        if self.env.failure.is_none() {
            self.env.failure = Some(NodeFailure {
                seq: error.written_through().map_or(0, |w| w + 1),
                node: node.to_string(),
                error,
                trace: None,
            });
        }
        NodeError::DOWNSTREAM
    }
}
