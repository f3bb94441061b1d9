//! Control messages (docs/architecture.md "Messages"): what supervisor and workers say to each
//! other, as rkyv bodies. Validated (bytecheck) and deserialized only after the frame's tag,
//! direction, worker and version checks passed.

use rkyv::{Archive, Deserialize, Serialize};

/// The kind byte of each message, carried in the frame header (and checked against the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum MessageKind {
    /// [`ControlMessage::Hello`].
    Hello = 1,
    /// [`ControlMessage::BootstrapBundle`].
    BootstrapBundle = 2,
    /// [`ControlMessage::Ack`].
    Ack = 3,
    /// [`ControlMessage::Ready`].
    Ready = 4,
    /// [`ControlMessage::StartWork`].
    StartWork = 5,
    /// [`ControlMessage::Heartbeat`].
    Heartbeat = 6,
    /// [`ControlMessage::Drained`].
    Drained = 7,
    /// [`ControlMessage::Stop`].
    Stop = 8,
    /// [`ControlMessage::Failed`].
    Failed = 9,
}

impl MessageKind {
    /// The kind of a header's kind byte, if it is one.
    pub fn from_u8(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Self::Hello,
            2 => Self::BootstrapBundle,
            3 => Self::Ack,
            4 => Self::Ready,
            5 => Self::StartWork,
            6 => Self::Heartbeat,
            7 => Self::Drained,
            8 => Self::Stop,
            9 => Self::Failed,
            _ => return None,
        })
    }

    /// The message's name in the protocol (`HELLO`, `START_WORK`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hello => "HELLO",
            Self::BootstrapBundle => "BOOTSTRAP_BUNDLE",
            Self::Ack => "ACK",
            Self::Ready => "READY",
            Self::StartWork => "START_WORK",
            Self::Heartbeat => "HEARTBEAT",
            Self::Drained => "DRAINED",
            Self::Stop => "STOP",
            Self::Failed => "FAILED",
        }
    }
}

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One ring a worker attaches to, by inherited fd.
#[derive(Debug, Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct RingBinding {
    /// The fd number in the worker (inherited from the supervisor).
    pub fd: i32,
    /// Bytes of the segment (checked when mapping).
    pub len: u64,
    /// True: this worker consumes the ring; false: it produces into it.
    pub inbound: bool,
    /// Graph index of the node the ring's records target (inbound) or of the first node of
    /// the receiving group (outbound).
    pub node: u32,
    /// The worker at the other end (`group#n`), for diagnostics.
    pub peer: String,
}

/// Everything a worker needs to build and run its part of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct BootstrapBundle {
    /// The worker's process group.
    pub group: String,
    /// 1-based worker index within the group.
    pub worker_index: u32,
    /// Workers of the group.
    pub workers: u32,
    /// The validated config (YAML) the worker rebuilds its graph from.
    pub config_yaml: String,
    /// Names of the nodes this worker runs, in pipeline order.
    pub node_names: Vec<String>,
    /// The rings the worker attaches to.
    pub rings: Vec<RingBinding>,
    /// Per-worker telemetry ring, if tracing is on.
    pub telemetry: Option<RingBinding>,
    /// Run id (trace ids derive from it).
    pub run_id: u64,
    /// Input records a resumed run replays before the first new one (`--resume`,
    /// `--skip N`); sinks of a resumed run keep their outputs.
    pub skip: u64,
    /// A resumed run's output lengths at `skip`, by `<node>/<what>` (from its run journal).
    pub resume_lengths: Vec<(String, u64)>,
    /// The input positions a resumed run's source must reach (from its run journal).
    pub resume_positions: Vec<InputMark>,
    /// Diagnostics: the supervisor's correlation id for this bootstrap.
    pub correlation: u64,
}

/// An input position (the run journal's input check): bytes a source consumed through record
/// `seq`, and their digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct InputMark {
    /// The record.
    pub seq: u64,
    /// Bytes consumed through it.
    pub bytes: u64,
    /// xxh3-128 of those bytes (`None`: the source has no digest).
    pub digest: Option<u128>,
}

/// One output's length (the run journal).
#[derive(Debug, Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct OutputBytes {
    /// `<node>/<what>` (`sink/output`, `dead_letter`).
    pub key: String,
    /// Where it goes.
    pub path: String,
    /// Bytes of the records through the mark's `seq`.
    pub bytes: u64,
}

/// Every record-exact output's length once the records through `seq` are written and flushed
/// (the worker where records end).
#[derive(Debug, Clone, PartialEq, Eq, Default, Archive, Serialize, Deserialize)]
pub struct OutputMark {
    /// The record.
    pub seq: u64,
    /// Each output's length at it.
    pub outputs: Vec<OutputBytes>,
}

/// One node's figures in a worker, as of the worker's last publication (at most a few times a
/// second): records in and out, errors, the node's own counters (`bytes_read`, ...) and the
/// records it ended by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct NodeCount {
    /// The node's name.
    pub node: String,
    /// Records the node received.
    pub records_in: u64,
    /// Outputs the node emitted.
    pub records_out: u64,
    /// Records the node failed on.
    pub errors: u64,
    /// The node's own counters, `(name, value)`.
    pub counters: Vec<(String, u64)>,
    /// The records the node ended, by outcome.
    pub outcomes: Vec<crate::graph::Outcome>,
}

/// Counters a worker reports with each heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct WorkerCounters {
    /// Records the worker's first node received.
    pub records_in: u64,
    /// Input bytes the worker's source consumed (0 without a source).
    pub input_bytes: u64,
    /// Outputs the worker's last node emitted.
    pub records_out: u64,
    /// Highest `seq` completed in order (a sink's worker: written and flushed).
    pub completed: u64,
    /// Busy share of the last interval, in per mille (time not spent waiting on a ring).
    pub busy_per_mille: u32,
    /// Route cache counters (hits, misses, ... in the order the worker's runtime lists them),
    /// as of the worker's last batch.
    pub route_cache: Vec<u64>,
    /// Per node of the worker, as of its last publication.
    pub nodes: Vec<NodeCount>,
    /// End-to-end latency of the measured records that ended in this worker, per bucket of
    /// `observability::latency::BOUNDS_SECONDS` (`+Inf` last); empty elsewhere.
    pub latency_buckets: Vec<u64>,
    /// Sum of those latencies, nanoseconds.
    pub latency_sum_ns: u64,
    /// Input positions the source passed since the last heartbeat (the worker that holds it).
    pub input_marks: Vec<InputMark>,
    /// The outputs' lengths at the latest completed record that has an input position (the
    /// worker where records end).
    pub output_marks: Vec<OutputMark>,
}

/// One node's final figures in a worker's end-of-run report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct NodeFinal {
    /// Its counts and counters, as in a heartbeat.
    pub count: NodeCount,
    /// The group that ran it.
    pub group: String,
    /// Estimated self time over the whole run, nanoseconds (scaled from the timed sample).
    pub busy_ns: u64,
    /// Self time of the timed sample, nanoseconds.
    pub sampled_busy_ns: u64,
    /// Records in the timed sample.
    pub sampled_records: u64,
}

/// A worker's end-of-run report (in DRAINED): what the run summary is made of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct DrainReport {
    /// Per node of the worker, in pipeline order.
    pub nodes: Vec<NodeFinal>,
    /// Records this worker wrote to the dead-letter file.
    pub dead_lettered: u64,
    /// From the start of work to the drain, nanoseconds.
    pub elapsed_ns: u64,
    /// Of that, time not spent waiting on input or a ring, nanoseconds.
    pub busy_ns: u64,
    /// The worker's peak resident memory, KiB.
    pub peak_rss_kib: u64,
    /// The worker stopped on a stop request before its input ended.
    pub interrupted: bool,
    /// Route cache counters, in the order the worker's runtime lists them.
    pub route_cache: Vec<u64>,
    /// End-to-end latency of the measured records that ended in this worker, per bucket (as
    /// in [`WorkerCounters::latency_buckets`]).
    pub latency_buckets: Vec<u64>,
    /// Sum of those latencies, nanoseconds.
    pub latency_sum_ns: u64,
    /// Spans the worker's telemetry ring had no room for.
    pub spans_dropped: u64,
}

/// Why a worker failed: one stable set, used by workers to report and by the supervisor to
/// judge (events, errors, `/metrics` and the summary show [`FailureCategory::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Archive, Serialize, Deserialize)]
#[repr(u8)]
pub enum FailureCategory {
    /// A worker did not become READY within its start timeout.
    StartTimeout = 1,
    /// A worker could not set itself up (bundle, rings, node `on_start`).
    BootstrapError = 2,
    /// A worker missed its heartbeats.
    HeartbeatTimeout = 3,
    /// A worker died by a signal.
    Crashed = 4,
    /// A worker exited before it was told to.
    Exited = 5,
    /// A worker's control connection failed or sent frames that were refused.
    ControlError = 6,
    /// A node returned an error under the `fail` policy.
    NodeError = 7,
    /// A ring's shared memory broke the protocol.
    RingCorrupted = 8,
    /// The hand-off to or from another host (NATS JetStream) failed.
    CrossHost = 9,
    /// A resumed run's input is not the one its journal describes, or ends before the
    /// resume point: nothing was written.
    ResumeRefused = 10,
    /// The hand-off's server refused to store more records (its store or the account's
    /// JetStream limits are full): a rerun fails the same way until the limits change.
    CrossHostRefused = 11,
}

impl FailureCategory {
    /// Every category.
    pub const ALL: [FailureCategory; 11] = [
        Self::StartTimeout,
        Self::BootstrapError,
        Self::HeartbeatTimeout,
        Self::Crashed,
        Self::Exited,
        Self::ControlError,
        Self::NodeError,
        Self::RingCorrupted,
        Self::CrossHost,
        Self::ResumeRefused,
        Self::CrossHostRefused,
    ];

    /// The category's label in events, errors, metrics and the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StartTimeout => "start_timeout",
            Self::BootstrapError => "bootstrap_error",
            Self::HeartbeatTimeout => "heartbeat_timeout",
            Self::Crashed => "crashed",
            Self::Exited => "exited",
            Self::ControlError => "control_error",
            Self::NodeError => "node_error",
            Self::RingCorrupted => "ring_corrupted",
            Self::CrossHost => "cross_host",
            Self::ResumeRefused => "resume_refused",
            Self::CrossHostRefused => "cross_host_refused",
        }
    }
}

impl std::fmt::Display for FailureCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a worker should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, Serialize, Deserialize)]
#[repr(u8)]
pub enum StopMode {
    /// Stop ingesting, drain what is in flight, exit.
    Graceful = 1,
    /// Exit at once.
    Forced = 2,
    /// The run failed: stop ingesting and do not wait to drain (a peer may be gone, so a
    /// full ring may never empty); finish cleanly with what is complete.
    Abort = 3,
}

pub use message::{ArchivedControlMessage, ControlMessage, ControlMessageResolver};

/// The message enum in its own scope: rkyv's derived resolver enum has undocumented fields.
#[allow(missing_docs)]
mod message {
    use super::*;

    /// Every control message.
    #[derive(Debug, Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
    pub enum ControlMessage {
        /// w -> s, first frame: proves key possession.
        Hello {
            /// The worker's id (`group#n`).
            worker_id: String,
            /// The worker's process id.
            pid: u32,
        },
        /// s -> w.
        BootstrapBundle(BootstrapBundle),
        /// both: `kind` acknowledged, with the acknowledged frame's correlation id.
        Ack {
            /// Kind byte of the acknowledged message.
            kind: u8,
            /// Correlation id of the acknowledged frame.
            correlation: u64,
        },
        /// w -> s: every node's `on_start` succeeded and the rings are attached.
        Ready {
            /// The worker's id.
            worker_id: String,
        },
        /// s -> w: the workers that had to be READY (all of them).
        StartWork {
            /// Ids of the workers that had to be READY.
            required: Vec<String>,
        },
        /// w -> s.
        Heartbeat {
            /// The worker's id.
            worker_id: String,
            /// The worker's counters.
            counters: WorkerCounters,
        },
        /// w -> s: a sink finished (or stopped): the last `seq` it completed, and counts.
        Drained {
            /// The last `seq` completed in order.
            last_seq: u64,
            /// Records completed.
            records: u64,
            /// The worker's figures, for the run summary.
            report: DrainReport,
            /// The source's last input positions (the worker that holds it).
            input_marks: Vec<InputMark>,
            /// The outputs' lengths at `last_seq` (the worker where records end).
            output_mark: Option<OutputMark>,
        },
        /// s -> w.
        Stop {
            /// Drain first (`graceful`), exit at once (`forced`), or stop without draining (`abort`).
            mode: StopMode,
            /// Milliseconds the worker has to stop.
            deadline_ms: u64,
        },
        /// w -> s: the worker failed (category as in docs/architecture.md).
        Failed {
            /// Why it failed.
            category: FailureCategory,
            /// What failed, naming the node, ring or peer.
            message: String,
        },
    }
}

impl ControlMessage {
    /// The message's kind (the header's kind byte).
    pub fn kind(&self) -> MessageKind {
        match self {
            Self::Hello { .. } => MessageKind::Hello,
            Self::BootstrapBundle(_) => MessageKind::BootstrapBundle,
            Self::Ack { .. } => MessageKind::Ack,
            Self::Ready { .. } => MessageKind::Ready,
            Self::StartWork { .. } => MessageKind::StartWork,
            Self::Heartbeat { .. } => MessageKind::Heartbeat,
            Self::Drained { .. } => MessageKind::Drained,
            Self::Stop { .. } => MessageKind::Stop,
            Self::Failed { .. } => MessageKind::Failed,
        }
    }
}
