//! The node API: what a processing step implements, and the type-erased form the runtimes run.
//!
//! A [`Node`] reads its input by reference, emits typed outputs through an [`Emitter`], and may
//! hook start and end-of-stream. A [`Source`] has no input and produces records; the runtime
//! numbers them with `seq`. Nodes never see transport headers: [`RecordContext`] is the
//! read-only view of the envelope a node is allowed.
//!
//! The runtimes (inline, worker) hold nodes as [`ErasedNode`] / [`ErasedSource`] and give them
//! an [`OutputPort`] that decides where an emitted value goes: a direct call of the next node in
//! the same process, with a reference to the value (nothing is copied or serialized), or a slot
//! claimed in a shared-memory ring, where the value is encoded once.

use std::marker::PhantomData;

use super::message::{Message, MessageType, PayloadError, Value};
pub use crate::files::lines::InputPosition;
pub use crate::files::writer::OutputProgress;

/// Read-only facts about the record a node is processing.
#[derive(Debug, Clone, Copy)]
pub struct RecordContext<'a> {
    /// Source sequence number (fund-load: the 1-based input line).
    pub seq: u64,
    /// W3C trace id, the same on every hop of this record.
    pub trace_id: [u8; 16],
    /// The process group running this node (`inline` in the memory profile).
    pub process_group: &'a str,
    /// The group that handed this record over, on the first node after a cross-group hop.
    pub handoff_from: Option<&'a str>,
    /// Cross-group hand-offs so far.
    pub route_hop: u16,
    /// The embedding caller's correlation id: carried along, never shown to nodes.
    pub(crate) reply_to: u64,
    /// The span that emitted this record's value (0: none), the parent of the next span.
    pub(crate) parent_span: u64,
    /// Whether this record is traced (head sampling at the source).
    pub(crate) sampled: bool,
    /// When the source emitted the record (unix ns) if its end-to-end latency is measured,
    /// else 0 (one record in 64; the runtime stamps it at the source and counts it where it ends).
    pub(crate) born_ns: u64,
}

impl<'a> RecordContext<'a> {
    /// A context for a record entering the graph in `process_group`.
    pub fn new(seq: u64, trace_id: [u8; 16], process_group: &'a str) -> Self {
        Self {
            seq,
            trace_id,
            process_group,
            handoff_from: None,
            route_hop: 0,
            reply_to: 0,
            parent_span: 0,
            sampled: false,
            born_ns: 0,
        }
    }
}

/// A node's failure for one record or one lifecycle hook.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node's own failure, in its words.
    #[error("{0}")]
    Failed(String),
    /// The node panicked; the runtime caught it at the node boundary.
    #[error("panicked: {0}")]
    Panicked(String),
    /// The input archive did not validate (only with `validate_payloads: true`).
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// An output did not encode.
    #[error(transparent)]
    Encode(#[from] super::message::EncodeError),
    /// `emit_to` named a node that the graph cannot reach from here.
    #[error("node `{node}` emitted to unknown target `{target}`")]
    UnknownTarget {
        /// The emitting node.
        node: String,
        /// The target it named.
        target: String,
    },
    /// `emit_to` named a node whose input type differs from the emitted type.
    #[error("node `{node}` emitted {emitted} to `{target}`, which reads {expected}")]
    TargetTypeMismatch {
        /// The emitting node.
        node: String,
        /// The target it named.
        target: String,
        /// The type emitted.
        emitted: MessageType,
        /// The type the target reads.
        expected: MessageType,
    },
    /// Reading or writing an adapter (file, stdout) failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// An output (file, stdout) could not be written; every record through
    /// `written_through` is completely written and none after it (see [`crate::files::writer`]).
    #[error(transparent)]
    Output(Box<crate::files::writer::OutputError>),
    /// The runtime ended this call: a node further down already failed (the runtime holds
    /// that failure) or the run is stopping. A node never makes one; it returns the one it
    /// got from an emit or the port as it came (`?`), and the runtime takes it from there.
    #[error("{0}")]
    Halted(Halt),
}

/// Why the runtime ended a node's call (see [`NodeError::Halted`]): the runtime's own signal,
/// opaque to nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halt(pub(crate) HaltReason);

/// The runtime's reasons behind a [`Halt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HaltReason {
    /// A node further down the chain failed; the runtime already holds that failure.
    Downstream,
    /// The run is stopping; the source stops at the next record.
    Stopped,
}

impl std::fmt::Display for Halt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            HaltReason::Downstream => "a downstream node failed",
            HaltReason::Stopped => "stopped",
        })
    }
}

impl From<crate::files::writer::OutputError> for NodeError {
    fn from(error: crate::files::writer::OutputError) -> Self {
        Self::Output(Box::new(error))
    }
}

impl NodeError {
    /// A node further down the chain failed; the runtime already holds that failure.
    pub(crate) const DOWNSTREAM: Self = Self::Halted(Halt(HaltReason::Downstream));
    /// The run is stopping.
    pub(crate) const STOPPED: Self = Self::Halted(Halt(HaltReason::Stopped));

    /// The runtime ended the call (a failure further down, or the run stopping): not this
    /// node's failure.
    pub fn is_halted(&self) -> bool {
        matches!(self, Self::Halted(_))
    }

    /// The run is stopping.
    pub(crate) fn is_stopped(&self) -> bool {
        matches!(self, Self::Halted(Halt(HaltReason::Stopped)))
    }

    /// A node failure with its message.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed(message.into())
    }

    /// An adapter failure: what was being read or written, and the system's error.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    /// The output that failed is stdout, whose reader closed it (see
    /// [`crate::files::writer::OutputError::reader_gone`]).
    pub fn reader_gone(&self) -> bool {
        matches!(self, Self::Output(e) if e.reader_gone())
    }

    /// For a failed output: every record through this `seq` is completely written.
    pub fn written_through(&self) -> Option<u64> {
        match self {
            Self::Output(e) => Some(e.written_through),
            _ => None,
        }
    }
}

/// Where an emitted value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitTarget<'a> {
    /// The default edge: the next node of `pipeline.nodes`.
    Next,
    /// A node named at run time (resolved through the route cache).
    Named(&'a str),
}

/// The runtime side of an [`Emitter`]: delivers values.
pub trait OutputPort {
    /// Delivers one value to `target`: by reference to a node of this process, encoded into a
    /// ring for a node of another.
    fn emit(&mut self, target: EmitTarget<'_>, value: Value<'_>) -> Result<(), NodeError>;

    /// Sends the current record to the dead-letter adapter with a reason code and a detail.
    fn dead_letter(&mut self, reason: &str, detail: &str) -> Result<(), NodeError>;

    /// A source is about to wait for input: the runtime publishes what is pending (buffered
    /// outputs, a ring's unpublished batch), and says whether to go on waiting (an error
    /// [`NodeError::Halted`] when the run is stopping). Ports of other nodes do nothing.
    fn idle(&mut self) -> Result<(), NodeError> {
        Ok(())
    }
}

/// A node's typed handle for its outputs.
pub struct Emitter<'p, T> {
    port: &'p mut dyn OutputPort,
    _output: PhantomData<fn(&T)>,
}

impl<'p, T: Message> Emitter<'p, T> {
    /// An emitter of `T` values over a runtime's port.
    pub fn new(port: &'p mut dyn OutputPort) -> Self {
        Self {
            port,
            _output: PhantomData,
        }
    }

    /// Emits `value` on the default edge (the next node in `pipeline.nodes`).
    #[inline]
    pub fn emit(&mut self, value: &T) -> Result<(), NodeError> {
        self.port.emit(EmitTarget::Next, Value::of(value))
    }

    /// Emits `value` to the node named `target` (which must read `T`).
    pub fn emit_to(&mut self, target: &str, value: &T) -> Result<(), NodeError> {
        self.port.emit(EmitTarget::Named(target), Value::of(value))
    }

    /// Sends the current record to the dead-letter adapter instead of emitting it.
    pub fn dead_letter(&mut self, reason: &str, detail: &str) -> Result<(), NodeError> {
        self.port.dead_letter(reason, detail)
    }

    /// For sources: call before waiting for input (and again at least every 100 ms while
    /// waiting). Everything the run holds back is published, so that records already read
    /// reach their outputs while the source waits; an error [`NodeError::Halted`] says the run is
    /// stopping and the source must return it without emitting.
    pub fn idle(&mut self) -> Result<(), NodeError> {
        self.port.idle()
    }
}

/// A processing step with a typed input.
///
/// ```
/// use stream_kernel::graph::{Emitter, Node, NodeError, RecordContext};
///
/// #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
/// struct Celsius(f64);
/// #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
/// struct Fahrenheit(f64);
///
/// struct ToFahrenheit;
/// impl Node for ToFahrenheit {
///     type Input = Celsius;
///     type Output = Fahrenheit;
///     fn process(
///         &mut self,
///         input: &Celsius,
///         _ctx: &RecordContext<'_>,
///         out: &mut Emitter<'_, Fahrenheit>,
///     ) -> Result<(), NodeError> {
///         out.emit(&Fahrenheit(input.0 * 9.0 / 5.0 + 32.0))
///     }
/// }
/// ```
pub trait Node: Send + 'static {
    /// The type the node reads.
    type Input: Message;
    /// The type the node emits.
    type Output: Message;

    /// Processes one record: the value the upstream node emitted (in this process, by
    /// reference; from another process, decoded once from its ring).
    fn process(
        &mut self,
        input: &Self::Input,
        ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Self::Output>,
    ) -> Result<(), NodeError>;

    /// Runs once before the first record; a failure is a `bootstrap_error` and nothing starts.
    fn on_start(&mut self) -> Result<(), NodeError> {
        Ok(())
    }

    /// Runs once after the last record; may emit final outputs and must flush what it holds.
    fn on_end_of_stream(&mut self, _out: &mut Emitter<'_, Self::Output>) -> Result<(), NodeError> {
        Ok(())
    }

    /// The node's own counters of events for the run summary (`("blank_lines", 3)`, ...).
    fn counters(&self) -> Vec<(String, u64)> {
        Vec::new()
    }

    /// The records this node ended, by outcome (see [`Outcome`]); a node that decides
    /// nothing returns none (the default).
    fn outcomes(&self) -> Vec<Outcome> {
        Vec::new()
    }

    /// Makes everything written so far durable (handed to the operating system). The runtime
    /// calls it at batch boundaries before it reports records as completed; sinks with
    /// buffers implement it.
    fn flush(&mut self) -> Result<(), NodeError> {
        Ok(())
    }

    /// After a failure: removes from the node's outputs everything written for records after
    /// `seq`, so that a failed run's outputs hold exactly the records it reports as completed.
    /// `seq` is never below the last batch boundary whose `flush` succeeded on every node.
    /// Sinks that write through [`crate::files::writer::RecordWriter`] forward it there.
    fn truncate_after(&mut self, seq: u64) -> Result<(), NodeError> {
        let _ = seq;
        Ok(())
    }

    /// The node's record-exact outputs and the bytes their records take so far: the run
    /// journal records them at completed records, and a resumed run cuts the outputs back to
    /// them. Sinks that write through [`crate::files::writer::RecordWriter`] return each
    /// writer's [`RecordWriter::progress`](crate::files::writer::RecordWriter::progress).
    fn outputs(&self) -> Vec<OutputProgress> {
        Vec::new()
    }
}

/// What [`Source::pull`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pull {
    /// One record was emitted (it received the next `seq`).
    Emitted,
    /// The input is exhausted.
    Exhausted,
}

/// A node with no input: reads an adapter and emits one record per input unit.
///
/// Each emitted record receives the next `seq` (starting at 1), so a source must emit exactly
/// one record per input unit to keep `seq` meaningful (fund-load: one per input line).
pub trait Source: Send + 'static {
    /// The type the source emits.
    type Output: Message;

    /// Runs once before the first pull; a failure is a `bootstrap_error` and nothing starts.
    fn on_start(&mut self) -> Result<(), NodeError> {
        Ok(())
    }

    /// Emits the next record, or reports that the input is exhausted.
    fn pull(&mut self, out: &mut Emitter<'_, Self::Output>) -> Result<Pull, NodeError>;

    /// The source's own counters for the run summary (bytes read, ...).
    fn counters(&self) -> Vec<(String, u64)> {
        Vec::new()
    }

    /// Where the source is in its input after the last record it emitted: bytes consumed and
    /// a digest of them (see [`crate::files::lines::LineReader::position`]). The run journal
    /// records it, and a resumed run's source must reach the same positions, or the resume is
    /// refused. `None` (the default): the input cannot be checked, and a resume trusts it.
    fn position(&mut self) -> Option<InputPosition> {
        None
    }
}

/// Records a node ended with one outcome of the application's (`accepted`, or `declined` for a
/// reason): what the pipeline decided, as opposed to a counter of events (bytes read, blank
/// lines). The engine sums outcomes over workers and shows them in the run summary, the
/// `--report` page and `/metrics` (`stream_kernel_node_outcomes_total{outcome, reason}`),
/// without knowing what they mean.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Outcome {
    /// The outcome (`accepted`, `declined`, ...).
    pub outcome: String,
    /// Why, when the outcome has reasons (`DAILY_AMOUNT_LIMIT`); empty otherwise.
    pub reason: String,
    /// Records that ended with it.
    pub records: u64,
}

impl Outcome {
    /// `records` that ended with `outcome`, for no particular reason.
    pub fn new(outcome: impl Into<String>, records: u64) -> Self {
        Self {
            outcome: outcome.into(),
            reason: String::new(),
            records,
        }
    }

    /// Adds `more` into `total`: records of the same outcome and reason are summed, a new one
    /// is appended (so the order is that of first declaration).
    pub fn sum_into(total: &mut Vec<Outcome>, more: &[Outcome]) {
        for outcome in more {
            match total
                .iter_mut()
                .find(|t| t.outcome == outcome.outcome && t.reason == outcome.reason)
            {
                Some(sum) => sum.records += outcome.records,
                None => total.push(outcome.clone()),
            }
        }
    }

    /// `records` that ended with `outcome` for `reason`.
    pub fn with_reason(
        outcome: impl Into<String>,
        reason: impl Into<String>,
        records: u64,
    ) -> Self {
        Self {
            outcome: outcome.into(),
            reason: reason.into(),
            records,
        }
    }
}

/// The output type of a sink: a sink emits nothing.
#[derive(Debug, Clone, Copy, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Nothing;

/// A node as the runtimes hold it: input as bytes, output through a port.
pub trait ErasedNode: Send {
    /// [`Node::on_start`].
    fn on_start(&mut self) -> Result<(), NodeError>;

    /// Processes a value emitted by a node of this process.
    fn process(
        &mut self,
        input: Value<'_>,
        ctx: &RecordContext<'_>,
        port: &mut dyn OutputPort,
    ) -> Result<(), NodeError>;

    /// Processes an encoded input read from a ring. `trusted` skips validation: only for
    /// same-binary peers when the user opted out (`validate_payloads: false`).
    fn process_encoded(
        &mut self,
        payload: &[u8],
        trusted: bool,
        ctx: &RecordContext<'_>,
        port: &mut dyn OutputPort,
    ) -> Result<(), NodeError>;

    /// [`Node::on_end_of_stream`].
    fn on_end_of_stream(&mut self, port: &mut dyn OutputPort) -> Result<(), NodeError>;

    /// [`Node::counters`].
    fn counters(&self) -> Vec<(String, u64)>;

    /// [`Node::outcomes`].
    fn outcomes(&self) -> Vec<Outcome>;

    /// [`Node::flush`].
    fn flush(&mut self) -> Result<(), NodeError>;

    /// [`Node::truncate_after`].
    fn truncate_after(&mut self, seq: u64) -> Result<(), NodeError>;

    /// [`Node::outputs`].
    fn outputs(&self) -> Vec<OutputProgress>;
}

/// A source as the runtimes hold it.
pub trait ErasedSource: Send {
    /// [`Source::on_start`].
    fn on_start(&mut self) -> Result<(), NodeError>;
    /// [`Source::pull`].
    fn pull(&mut self, port: &mut dyn OutputPort) -> Result<Pull, NodeError>;
    /// [`Source::counters`].
    fn counters(&self) -> Vec<(String, u64)>;
    /// [`Source::position`].
    fn position(&mut self) -> Option<InputPosition>;
}

pub(crate) struct TypedNode<N>(pub N);

impl<N: Node> ErasedNode for TypedNode<N> {
    fn on_start(&mut self) -> Result<(), NodeError> {
        self.0.on_start()
    }

    #[inline]
    fn process(
        &mut self,
        input: Value<'_>,
        ctx: &RecordContext<'_>,
        port: &mut dyn OutputPort,
    ) -> Result<(), NodeError> {
        // Edge types are checked when the graph is built and named targets when resolved:
        // a mismatch here is a runtime bug, reported as one rather than trusted.
        let Some(input) = input.downcast::<N::Input>() else {
            return Err(NodeError::failed(format!(
                "received {}, reads {}",
                input.ty(),
                MessageType::of::<N::Input>()
            )));
        };
        self.0.process(input, ctx, &mut Emitter::new(port))
    }

    fn process_encoded(
        &mut self,
        payload: &[u8],
        trusted: bool,
        ctx: &RecordContext<'_>,
        port: &mut dyn OutputPort,
    ) -> Result<(), NodeError> {
        let input = if trusted {
            // SAFETY: `trusted` is only passed by runtimes for same-binary peers when the user
            // opted out of validation; edge types are checked when the graph is built.
            unsafe { N::Input::decode_trusted(payload)? }
        } else {
            N::Input::decode(payload)?
        };
        self.0.process(&input, ctx, &mut Emitter::new(port))
    }

    fn on_end_of_stream(&mut self, port: &mut dyn OutputPort) -> Result<(), NodeError> {
        self.0.on_end_of_stream(&mut Emitter::new(port))
    }

    fn counters(&self) -> Vec<(String, u64)> {
        self.0.counters()
    }

    fn outcomes(&self) -> Vec<Outcome> {
        self.0.outcomes()
    }

    fn flush(&mut self) -> Result<(), NodeError> {
        self.0.flush()
    }

    fn truncate_after(&mut self, seq: u64) -> Result<(), NodeError> {
        self.0.truncate_after(seq)
    }

    fn outputs(&self) -> Vec<OutputProgress> {
        self.0.outputs()
    }
}

pub(crate) struct TypedSource<S>(pub S);

impl<S: Source> ErasedSource for TypedSource<S> {
    fn on_start(&mut self) -> Result<(), NodeError> {
        self.0.on_start()
    }

    fn pull(&mut self, port: &mut dyn OutputPort) -> Result<Pull, NodeError> {
        self.0.pull(&mut Emitter::new(port))
    }

    fn counters(&self) -> Vec<(String, u64)> {
        self.0.counters()
    }

    fn position(&mut self) -> Option<InputPosition> {
        self.0.position()
    }
}
