//! The typed config contract (docs/configuration.md) with every default filled in.
//!
//! [`Config::read`] (in `sections.rs`) turns a YAML value tree into this model through the
//! strict section reader; invalid fields are reported and replaced by their default so that
//! reading continues and every error of the file is found in one pass. `Serialize` prints the
//! complete model (`stream-kernel validate --print`), which is the input plus defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use serde_norway::Value;

use crate::config_choice;

/// The fund-load pipeline, the default `pipeline.nodes`.
pub const DEFAULT_PIPELINE: [&str; 9] = [
    "source",
    "parse_load_attempt",
    "compute_time_keys",
    "idempotency_gate",
    "compute_features",
    "evaluate_policies",
    "update_windows",
    "format_output",
    "sink",
];

/// Smallest accepted ring size: a ring must hold a few maximal control records and envelopes.
pub const MIN_RING_BYTES: u64 = 64 * 1024;
/// Largest accepted ring size (1 GiB): beyond this, memory, not the ring, is the problem.
pub const MAX_RING_BYTES: u64 = 1 << 30;

/// A whole, validated run configuration.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Config {
    /// `version`: the config format version; only 1 exists.
    pub version: u32,
    /// `scenario`: what the run is called.
    pub scenario: Scenario,
    /// `pipeline`: the nodes, in order.
    pub pipeline: Pipeline,
    /// Per-node sections, normalised (defaults filled) by each node's factory.
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub nodes: BTreeMap<String, Value>,
    /// `adapters`: where records come from and where results go.
    pub adapters: Adapters,
    /// `runtime`: ordering, placement, IPC, observability and error policy.
    pub runtime: RuntimeConfig,
}

/// `scenario`: a name for the run (shown in logs, spans and the summary).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Scenario {
    /// The scenario's name.
    pub name: String,
}

/// `pipeline`: the chain of registered nodes every record passes.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Pipeline {
    /// Node names in order; each must be registered and its input must match the previous output.
    pub nodes: Vec<String>,
}

/// `adapters`: the run's input, output and optional side files.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Adapters {
    /// `adapters.source`: where input records come from.
    pub source: SourceAdapter,
    /// `adapters.sink`: where the last node's outputs go.
    pub sink: SinkAdapter,
    /// Records that cannot be processed (unreadable input, node errors under the
    /// `dead_letter` policy), one JSON object per line. Optional.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<FileAdapter>,
    /// One JSON object per decision explaining it (fund-load). Optional.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<FileAdapter>,
}

/// `adapters.source`: the run's input.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceAdapter {
    /// Newline-delimited records read from a file (a regular file, a FIFO or a device).
    File {
        /// The input file.
        path: PathBuf,
        /// The longest line kept, in bytes; the rest of a longer line is discarded (the line
        /// then usually fails to parse). Every ring must hold a record of this size.
        max_line_bytes: u64,
    },
    /// Newline-delimited records read from standard input.
    Stdin {
        /// As for `file`.
        max_line_bytes: u64,
    },
    /// A generated fund-load input (`stream-kernel gen`), never touching the disk.
    Generator {
        /// Number of lines to generate.
        lines: u64,
        /// Seed of the generator: the same seed gives the same lines.
        seed: u64,
    },
}

/// The longest input line kept by default (1 MiB).
pub const DEFAULT_MAX_LINE_BYTES: u64 = 1 << 20;

impl SourceAdapter {
    /// A file input with the default line limit.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::File {
            path: path.into(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }

    /// Standard input with the default line limit.
    pub fn stdin() -> Self {
        Self::Stdin {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }

    /// The longest line kept (`None` for a generator, whose lines are short).
    pub fn max_line_bytes(&self) -> Option<u64> {
        match self {
            Self::File { max_line_bytes, .. } | Self::Stdin { max_line_bytes } => {
                Some(*max_line_bytes)
            }
            Self::Generator { .. } => None,
        }
    }
}

/// `adapters.sink`: the run's output.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SinkAdapter {
    /// Decisions written to a file (created or truncated; never left with a torn line).
    File {
        /// The output file.
        path: PathBuf,
    },
    /// Decisions written to standard output.
    Stdout,
}

/// A side file of the run (`adapters.dead_letter`, `adapters.audit`).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FileAdapter {
    /// A file, created or replaced by the run.
    File {
        /// The file's path.
        path: PathBuf,
    },
}

impl FileAdapter {
    /// The file's path.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::File { path } => path,
        }
    }
}

/// `runtime`: how the pipeline runs.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RuntimeConfig {
    /// `runtime.ordering`: the order in which results reach the sink.
    pub ordering: OrderingConfig,
    /// `runtime.platform`: inline or supervised processes, rings, control channel, groups, health.
    pub platform: Platform,
    /// `runtime.observability`: spans and logs.
    pub observability: Observability,
    /// What happens when a node returns an error for a record: `fail` stops the run and names
    /// the node and `seq`; `dead_letter` sends the record to the dead-letter adapter and goes on.
    pub on_node_error: NodeErrorPolicy,
    /// `runtime.journal`: the run journal beside the output file (resume after any stop).
    pub journal: JournalConfig,
    /// `runtime.latency`: how long a record that is ready may wait in an output buffer.
    pub latency: LatencyConfig,
}

/// `runtime.latency`: outputs are written at once whenever the source or a worker has nothing
/// more to read; while input keeps coming, records are batched, but none waits in an output
/// buffer (a sink's file buffer, a ring batch not yet published) longer than this bound.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct LatencyConfig {
    /// The longest a processed record waits for its output to be written or handed on, in
    /// microseconds, while input keeps arriving (when none is waiting, it is written at once).
    pub max_output_delay_us: u64,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        Self {
            max_output_delay_us: 1_000,
        }
    }
}

/// `runtime.journal`: the state file `<output>.journal` that says which prefix of a run is
/// complete, so that `run --resume` continues any stopped, failed or killed run exactly.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct JournalConfig {
    /// Keep a journal when the sink writes a file.
    pub enabled: bool,
    /// The longest time between two journal updates while the run goes (each update is a
    /// small file written, fsynced and renamed).
    pub interval_seconds: f64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_seconds: 1.0,
        }
    }
}

config_choice! {
    /// `runtime.ordering.sink_mode`.
    pub enum SinkMode { SourceSeq = "source_seq", Completion = "completion" }
}

config_choice! {
    /// `runtime.on_node_error`.
    pub enum NodeErrorPolicy { Fail = "fail", DeadLetter = "dead_letter" }
}

/// `runtime.ordering`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct OrderingConfig {
    /// `source_seq` writes results in input order; `completion` as they finish.
    pub sink_mode: SinkMode,
}

/// `runtime.platform`: where nodes run and how processes talk.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Platform {
    /// `runtime.platform.bootstrap`: inline or supervised processes.
    pub bootstrap: Bootstrap,
    /// `runtime.platform.execution_ipc`: the rings between groups and the control channel.
    pub execution_ipc: ExecutionIpc,
    /// `runtime.platform.process_groups`: which nodes run in which worker processes.
    pub process_groups: Vec<ProcessGroup>,
    /// `runtime.platform.readiness`: the READY gate before data flows.
    pub readiness: Readiness,
    /// `runtime.platform.routing_cache`: the cache of resolved hand-off targets.
    pub routing_cache: RoutingCache,
    /// `runtime.platform.health`: the `/metrics`, `/readyz` and `/livez` endpoint.
    pub health: Health,
    /// How records cross between hosts, when groups are placed on several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_host: Option<CrossHost>,
}

config_choice! {
    /// `runtime.platform.bootstrap.mode`.
    pub enum BootstrapMode { Inline = "inline", ProcessSupervisor = "process_supervisor" }
}

/// `runtime.platform.bootstrap`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Bootstrap {
    /// `inline` (one process) or `process_supervisor` (supervised worker processes).
    pub mode: BootstrapMode,
}

config_choice! {
    /// `runtime.platform.execution_ipc.transport`.
    pub enum IpcTransport { SharedMemory = "shared_memory" }
}

/// `runtime.platform.execution_ipc`: the data plane between worker processes.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ExecutionIpc {
    /// Only `shared_memory` (memfd-backed rings) exists.
    pub transport: IpcTransport,
    /// Bytes of each ring's data area: a power of two, 64 KiB..1 GiB.
    pub ring_bytes: u64,
    /// Validate every archived payload read from a ring (bytecheck) before a node sees it.
    pub validate_payloads: bool,
    /// `runtime.platform.execution_ipc.control`: required with `process_supervisor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<Control>,
}

config_choice! {
    /// `runtime.platform.execution_ipc.control.transport`.
    pub enum ControlTransport { TcpLocal = "tcp_local", Unix = "unix" }
}

config_choice! {
    /// `runtime.platform.execution_ipc.control.auth.mode`.
    pub enum AuthMode { Hmac = "hmac" }
}

/// `runtime.platform.execution_ipc.control`: the supervisor's authenticated control channel.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Control {
    /// `tcp_local` (loopback TCP) or `unix` (a socket in a private directory).
    pub transport: ControlTransport,
    /// Loopback address the TCP control socket binds.
    pub bind_host: String,
    /// Port of the TCP control socket; 0 picks a free one.
    pub bind_port: u16,
    /// `auth`: how control frames are authenticated.
    pub auth: Auth,
    /// The largest control frame payload accepted, in bytes.
    pub max_payload_bytes: u64,
    /// How long a new connection may take to send its HELLO before it is closed.
    pub handshake_timeout_seconds: f64,
    /// Connections that may wait for their HELLO at once (the oldest is closed beyond it).
    pub max_pending_connections: u64,
}

/// `runtime.platform.execution_ipc.control.auth`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Auth {
    /// Only `hmac` (HMAC-SHA256 with a per-run key) exists.
    pub mode: AuthMode,
    /// How old a signed frame may be before it is refused, in seconds.
    pub ttl_seconds: f64,
    /// Nonces remembered to refuse replays.
    pub nonce_cache_size: u64,
}

config_choice! {
    /// How a worker waits for its rings: spin, spin-then-park, or park at once.
    pub enum RunnerProfile { Balanced = "balanced", Latency = "latency", Efficiency = "efficiency" }
    aliases { "sync" => Balanced }
}

/// `runtime.platform.process_groups[]`: nodes that run together in worker processes.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ProcessGroup {
    /// The group's name (unique; used in logs, spans, metrics and failures).
    pub name: String,
    /// The pipeline nodes this group runs, a contiguous run of `pipeline.nodes`.
    pub nodes: Vec<String>,
    /// Worker processes of the group (more than one partitions a stateful group).
    pub workers: u32,
    /// How the group's workers wait for their rings.
    pub runner_profile: RunnerProfile,
    /// Interval of a worker's heartbeats; three missed ones declare it dead.
    pub heartbeat_seconds: f64,
    /// How long a worker may take to become READY.
    pub start_timeout_seconds: f64,
    /// How long a worker may take to drain and stop.
    pub stop_timeout_seconds: f64,
    /// CPUs the group's workers are pinned to (none: not pinned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Vec<u32>>,
    /// The host this group runs on (`stream-kernel run --host NAME`); absent: the local host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

config_choice! {
    /// `runtime.platform.cross_host.transport`.
    pub enum CrossHostTransport { NatsJetstream = "nats_jetstream" }
}

config_choice! {
    /// `runtime.platform.cross_host.storage`: where the JetStream stream keeps its messages.
    pub enum StreamStorage { File = "file", Memory = "memory" }
}

/// `runtime.platform.cross_host`: edges between groups on different hosts are JetStream
/// subjects of one stream per run.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct CrossHost {
    /// Only `nats_jetstream` exists.
    pub transport: CrossHostTransport,
    /// Server URL(s), comma separated; absent: `NATS_URL`, else `nats://127.0.0.1:4222`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Stream name prefix: the run's stream is `{stream}_{run id}`, its subjects
    /// `{stream}.{run id}.{producer}.{consumer}`.
    pub stream: String,
    /// Where the stream keeps its messages.
    pub storage: StreamStorage,
    /// Copies of the stream the cluster keeps (1, 3 or 5; at most the cluster's size): with 3 a
    /// run survives the loss of the node that leads the stream.
    pub replicas: u32,
    /// A message older than this is dropped by the server: a stream a failed or abandoned run
    /// left behind expires on its own (0: never). Longer than any run's hand-off.
    pub max_age_seconds: f64,
    /// Ring records packed into one JetStream message.
    pub records_per_message: u32,
    /// Messages published and not yet acknowledged, per edge.
    pub max_in_flight: u32,
    /// How long a publish waits for the server's acknowledgement before it is retried.
    pub ack_wait_seconds: f64,
    /// Connecting to the server and setting up the stream, at start.
    pub connect_timeout_seconds: f64,
    /// How long a host waits for the next message from an upstream host before failing.
    pub idle_timeout_seconds: f64,
    /// The stream's publish de-duplication window (`Nats-Msg-Id`).
    pub dedup_window_seconds: f64,
    /// Credentials: file paths only, so that secrets never appear in argv, config or logs.
    pub credentials: NatsCredentials,
}

/// `runtime.platform.cross_host.credentials`: every field optional. Environment fallbacks:
/// `NATS_TOKEN`, `NATS_USER` + `NATS_PASSWORD`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct NatsCredentials {
    /// A file holding the server token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// User name for user + password authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A file holding the password for `user`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// A file holding an nkey seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nkey_seed_file: Option<PathBuf>,
    /// A NATS credentials file (JWT and nkey seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creds_file: Option<PathBuf>,
    /// CA certificate (PEM) that signs the server's certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
}

/// `runtime.platform.readiness`: the gate that holds data until workers are READY.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Readiness {
    /// Wait for READY handshakes before any record flows.
    pub enabled: bool,
    /// Start only when every group's workers are READY (else each group on its own READY).
    pub start_work_on_all_groups_ready: bool,
    /// How long the gate waits for every worker's READY, in seconds.
    pub readiness_timeout_seconds: f64,
}

/// `runtime.platform.routing_cache`: resolved hand-off targets kept per worker.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RoutingCache {
    /// Cache resolved targets.
    pub enabled: bool,
    /// Also cache targets that do not resolve (the record still fails with a typed error).
    pub negative_cache: bool,
    /// The most entries kept; the oldest is evicted first.
    pub max_entries: u64,
}

impl Default for RoutingCache {
    fn default() -> Self {
        Self {
            enabled: true,
            negative_cache: true,
            max_entries: 100_000,
        }
    }
}

/// `runtime.platform.health`: the HTTP endpoint for `/metrics`, `/readyz`, `/livez`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Health {
    /// Serve the endpoint.
    pub enabled: bool,
    /// Address to bind (`127.0.0.1:0` picks a free loopback port).
    pub bind: String,
    /// A bind address other than loopback must be asked for: `/metrics` then answers anyone
    /// who can reach the host (logged at WARN when the run starts).
    pub expose: bool,
    /// Seconds the endpoint keeps answering after the run ended (its final figures), so that a
    /// scrape after a short run still finds them; 0: it closes with the run.
    pub linger_seconds: u64,
    /// `http://host:9091` of a Prometheus Pushgateway: the run's final figures are pushed there
    /// when it ends (the batch-job convention: a scrape can miss a short run, a push cannot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_gateway: Option<String>,
    /// The `job` label the figures are pushed under (grouping key `job/<push_job>/instance/<host>`).
    pub push_job: String,
}

/// `runtime.observability`: spans and logs.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Observability {
    /// `runtime.observability.tracing`: spans of every node execution.
    pub tracing: Tracing,
    /// `runtime.observability.logging`: log records and lifecycle events.
    pub logging: Logging,
}

config_choice! {
    /// `runtime.observability.tracing.queue.drop_policy`: which span a full queue drops.
    pub enum DropPolicy { DropNewest = "drop_newest", DropOldest = "drop_oldest" }
}

/// `runtime.observability.tracing`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Tracing {
    /// Record spans at all.
    pub enabled: bool,
    /// `None`: `OTEL_TRACES_SAMPLER`, else `parentbased_traceidratio`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampler: Option<SamplerKind>,
    /// `None`: `OTEL_TRACES_SAMPLER_ARG`, else 1.0 (the ratio of the `traceidratio` samplers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_ratio: Option<f64>,
    /// The bounded queue between the hot path and the exporters.
    pub queue: SpanQueue,
    /// Where spans go.
    pub exporters: Vec<TraceExporter>,
}

/// `runtime.observability.tracing.queue`: a bounded queue that counts what it drops.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SpanQueue {
    /// The most spans queued; beyond it spans are dropped and counted.
    pub max_items: u64,
    /// Which span is dropped when the queue is full.
    pub drop_policy: DropPolicy,
    /// Spans per export call.
    pub export_batch: u64,
    /// Longest time a span waits in the queue before an export, in milliseconds.
    pub flush_interval_ms: u64,
}

config_choice! {
    /// `kind` of a span exporter.
    pub enum TraceExporterKind {
        Jsonl = "jsonl", Stdout = "stdout", OtelOtlp = "otel_otlp", OpentracingBridge = "opentracing_bridge"
    }
}

config_choice! {
    /// `protocol` of an OTLP exporter.
    pub enum OtlpProtocol { Grpc = "grpc", HttpProtobuf = "http/protobuf" }
}

config_choice! {
    /// Head samplers, named as `OTEL_TRACES_SAMPLER` names them. The `parentbased_*` ones follow
    /// a caller's `TRACEPARENT` sampled flag and use the named sampler for records without one.
    pub enum SamplerKind {
        AlwaysOn = "always_on", AlwaysOff = "always_off", TraceIdRatio = "traceidratio",
        ParentBasedAlwaysOn = "parentbased_always_on", ParentBasedAlwaysOff = "parentbased_always_off",
        ParentBasedTraceIdRatio = "parentbased_traceidratio"
    }
}

/// One span exporter: `{kind: ..., settings: {...}}`.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceExporter {
    /// Spans as JSON lines in a file.
    Jsonl(JsonlSettings),
    /// Spans as JSON lines on standard output.
    Stdout,
    /// Spans to an OTLP receiver (gRPC or HTTP).
    OtelOtlp(OtlpSettings),
    /// Spans to a Jaeger agent (OpenTracing, UDP compact thrift).
    OpentracingBridge(BridgeSettings),
}

/// Settings of the `jsonl` span exporter.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct JsonlSettings {
    /// The file spans are appended to.
    pub path: PathBuf,
    /// Flush the file every this many spans.
    pub flush_every_n: u64,
    /// `fsync` after every flush.
    pub fsync: bool,
}

/// Settings of the OTLP exporters (spans and logs).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct OtlpSettings {
    /// `None`: `OTEL_EXPORTER_OTLP_(TRACES_|LOGS_)PROTOCOL`, else `grpc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<OtlpProtocol>,
    /// `None`: `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`, else the protocol's localhost default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Extra request headers (e.g. an API key).
    pub headers: BTreeMap<String, String>,
    /// Deadline of one export call, in seconds. `None`: `OTEL_EXPORTER_OTLP_(TRACES_|LOGS_)TIMEOUT`
    /// (milliseconds, as the OpenTelemetry variables give it), else 10.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// `None`: `OTEL_SERVICE_NAME`, else `stream-kernel`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Name each worker's service after its process group (`{service}-{group}`).
    pub service_name_by_process_group: bool,
}

impl OtlpSettings {
    /// The deadline of one export call (the environment is consulted when the run starts;
    /// 10 s when nothing set it).
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(
            self.timeout_seconds
                .unwrap_or(DEFAULT_OTLP_TIMEOUT_SECONDS)
                .max(0.001),
        )
    }
}

/// An OTLP export call's deadline when neither the config nor the environment sets one.
pub const DEFAULT_OTLP_TIMEOUT_SECONDS: f64 = 10.0;

/// Settings of the `opentracing_bridge` span exporter.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct BridgeSettings {
    /// The Jaeger agent's `host:port`.
    pub agent: String,
    /// Service name reported to Jaeger (none: as for OTLP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

config_choice! {
    /// `runtime.observability.logging.level`.
    pub enum LogLevel { Error = "error", Warn = "warn", Info = "info", Debug = "debug", Trace = "trace" }
}

config_choice! {
    /// `runtime.observability.logging.lifecycle_events.level`.
    pub enum LifecycleLevel { Info = "info", Debug = "debug" }
}

config_choice! {
    /// `kind` of a log exporter.
    pub enum LogExporterKind {
        Stderr = "stderr", Stdout = "stdout", Jsonl = "jsonl", OtelLogsOtlp = "otel_logs_otlp"
    }
}

/// `runtime.observability.logging`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Logging {
    /// The least severe level written.
    pub level: LogLevel,
    /// Where log records go.
    pub exporters: Vec<LogExporter>,
    /// Lifecycle events (worker spawned, READY, stopped, ...).
    pub lifecycle_events: LifecycleEvents,
}

/// One log exporter: `{kind: ..., settings: {...}}`.
#[derive(Debug, Clone, PartialEq)]
pub enum LogExporter {
    /// Human lines on stderr (the default: stdout may carry the run's data).
    Stderr,
    /// Human lines on stdout (refused when the sink or a span exporter writes stdout).
    Stdout,
    /// JSON lines in a file.
    Jsonl {
        /// The log file.
        path: PathBuf,
    },
    /// Log records to an OTLP receiver.
    OtelLogsOtlp(OtlpSettings),
}

/// `runtime.observability.logging.lifecycle_events`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct LifecycleEvents {
    /// Log lifecycle events at all.
    pub enabled: bool,
    /// The level lifecycle events are logged at.
    pub level: LifecycleLevel,
}

// ---------------------------------------------------------------------------------------------
// Printing of the tagged exporter enums as `{kind, settings}`.

impl Serialize for TraceExporter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        match self {
            Self::Jsonl(settings) => {
                map.serialize_entry("kind", "jsonl")?;
                map.serialize_entry("settings", settings)?;
            }
            Self::Stdout => map.serialize_entry("kind", "stdout")?,
            Self::OtelOtlp(settings) => {
                map.serialize_entry("kind", "otel_otlp")?;
                map.serialize_entry("settings", settings)?;
            }
            Self::OpentracingBridge(settings) => {
                map.serialize_entry("kind", "opentracing_bridge")?;
                map.serialize_entry("settings", settings)?;
            }
        }
        map.end()
    }
}

impl Serialize for LogExporter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        #[derive(Serialize, schemars::JsonSchema)]
        struct PathOnly<'a> {
            path: &'a PathBuf,
        }
        /// Log exporters have no per-group service name: print only the keys they accept.
        #[derive(Serialize, schemars::JsonSchema)]
        struct LogOtlp<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            protocol: Option<OtlpProtocol>,
            #[serde(skip_serializing_if = "Option::is_none")]
            endpoint: &'a Option<String>,
            headers: &'a BTreeMap<String, String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            timeout_seconds: Option<f64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            service_name: &'a Option<String>,
        }
        let mut map = s.serialize_map(None)?;
        match self {
            Self::Stderr => map.serialize_entry("kind", "stderr")?,
            Self::Stdout => map.serialize_entry("kind", "stdout")?,
            Self::Jsonl { path } => {
                map.serialize_entry("kind", "jsonl")?;
                map.serialize_entry("settings", &PathOnly { path })?;
            }
            Self::OtelLogsOtlp(settings) => {
                map.serialize_entry("kind", "otel_logs_otlp")?;
                let printed = LogOtlp {
                    protocol: settings.protocol,
                    endpoint: &settings.endpoint,
                    headers: &settings.headers,
                    timeout_seconds: settings.timeout_seconds,
                    service_name: &settings.service_name,
                };
                map.serialize_entry("settings", &printed)?;
            }
        }
        map.end()
    }
}

impl Config {
    /// The process group that holds `node`, if any.
    pub fn group_of(&self, node: &str) -> Option<&ProcessGroup> {
        self.runtime
            .platform
            .process_groups
            .iter()
            .find(|g| g.nodes.iter().any(|n| n == node))
    }

    /// The process group named `name`.
    pub fn process_group(&self, name: &str) -> Option<&ProcessGroup> {
        self.runtime
            .platform
            .process_groups
            .iter()
            .find(|g| g.name == name)
    }

    /// Whether the run uses supervised worker processes.
    pub fn is_process_mode(&self) -> bool {
        self.runtime.platform.bootstrap.mode == BootstrapMode::ProcessSupervisor
    }
}
