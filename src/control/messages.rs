//! Control messages (control-plane.md "Messages"): what supervisor and workers say to each
//! other, as rkyv bodies. Validated (bytecheck) and deserialized only after the frame's tag,
//! direction, worker and version checks passed.

use rkyv::{Archive, Deserialize, Serialize};

/// The kind byte of each message, carried in the frame header (and checked against the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum MessageKind {
    Hello = 1,
    BootstrapBundle = 2,
    Ack = 3,
    Ready = 4,
    StartWork = 5,
    Heartbeat = 6,
    Drained = 7,
    Stop = 8,
    Failed = 9,
}

impl MessageKind {
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
    pub group: String,
    /// 1-based worker index within the group.
    pub worker_index: u32,
    pub workers: u32,
    /// The validated config (YAML) the worker rebuilds its graph from.
    pub config_yaml: String,
    /// Names of the nodes this worker runs, in pipeline order.
    pub node_names: Vec<String>,
    pub rings: Vec<RingBinding>,
    /// Per-worker telemetry ring, if tracing is on.
    pub telemetry: Option<RingBinding>,
    /// Run id (trace ids derive from it).
    pub run_id: u64,
    /// Input records the source skips before the first one (a resumed run, `--skip N`); sinks
    /// of a resumed run append to their outputs.
    pub skip: u64,
    /// Diagnostics: the supervisor's correlation id for this bootstrap.
    pub correlation: u64,
}

/// One node's figures in a worker, as of the worker's last publication (at most a few times a
/// second): records in and out, errors, and the node's own counters (`accepted`,
/// `declined.DAILY_AMOUNT_LIMIT`, `bytes_read`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct NodeCount {
    pub node: String,
    pub records_in: u64,
    pub records_out: u64,
    pub errors: u64,
    pub counters: Vec<(String, u64)>,
}

/// Counters a worker reports with each heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct WorkerCounters {
    pub records_in: u64,
    /// Input bytes the worker's source consumed (0 without a source).
    pub input_bytes: u64,
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
}

/// Why a worker failed: one stable set, used by workers to report and by the supervisor to
/// judge (events, errors, `/metrics` and the summary show [`FailureCategory::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Archive, Serialize, Deserialize)]
#[repr(u8)]
pub enum FailureCategory {
    StartTimeout = 1,
    BootstrapError = 2,
    HeartbeatTimeout = 3,
    Crashed = 4,
    Exited = 5,
    ControlError = 6,
    NodeError = 7,
    RingCorrupted = 8,
    /// The hand-off to or from another host (NATS JetStream) failed.
    CrossHost = 9,
}

impl FailureCategory {
    pub const ALL: [FailureCategory; 9] = [
        Self::StartTimeout,
        Self::BootstrapError,
        Self::HeartbeatTimeout,
        Self::Crashed,
        Self::Exited,
        Self::ControlError,
        Self::NodeError,
        Self::RingCorrupted,
        Self::CrossHost,
    ];

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

/// Every control message.
#[derive(Debug, Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub enum ControlMessage {
    /// w -> s, first frame: proves key possession.
    Hello { worker_id: String, pid: u32 },
    /// s -> w.
    BootstrapBundle(BootstrapBundle),
    /// both: `kind` acknowledged, with the acknowledged frame's correlation id.
    Ack { kind: u8, correlation: u64 },
    /// w -> s: every node's `on_start` succeeded and the rings are attached.
    Ready { worker_id: String },
    /// s -> w: the workers that had to be READY (all of them).
    StartWork { required: Vec<String> },
    /// w -> s.
    Heartbeat {
        worker_id: String,
        counters: WorkerCounters,
    },
    /// w -> s: a sink finished (or stopped): the last `seq` it completed, and counts.
    Drained {
        last_seq: u64,
        records: u64,
        /// Node counters and stats as `name=value` lines, for the run summary.
        report: String,
    },
    /// s -> w.
    Stop { mode: StopMode, deadline_ms: u64 },
    /// w -> s: the worker failed (category as in supervisor.md).
    Failed {
        category: FailureCategory,
        message: String,
    },
}

impl ControlMessage {
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
