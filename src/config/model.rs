//! The typed config contract (config.md) with every default filled in.
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
    pub version: u32,
    pub scenario: Scenario,
    pub pipeline: Pipeline,
    /// Per-node sections, normalised (defaults filled) by each node's factory.
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub nodes: BTreeMap<String, Value>,
    pub adapters: Adapters,
    pub runtime: RuntimeConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Scenario {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Pipeline {
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Adapters {
    pub source: SourceAdapter,
    pub sink: SinkAdapter,
    /// Records that cannot be processed (unreadable input, node errors under the
    /// `dead_letter` policy), one JSON object per line. Optional.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<FileAdapter>,
    /// One JSON object per decision explaining it (fund-load). Optional.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<FileAdapter>,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceAdapter {
    File {
        path: PathBuf,
    },
    Stdin,
    /// A generated fund-load input (`stream-kernel gen`), never touching the disk.
    Generator {
        lines: u64,
        seed: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SinkAdapter {
    File { path: PathBuf },
    Stdout,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FileAdapter {
    File { path: PathBuf },
}

impl FileAdapter {
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::File { path } => path,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RuntimeConfig {
    pub ordering: OrderingConfig,
    pub platform: Platform,
    pub observability: Observability,
    /// What happens when a node returns an error for a record: `fail` stops the run and names
    /// the node and `seq`; `dead_letter` sends the record to the dead-letter adapter and goes on.
    pub on_node_error: NodeErrorPolicy,
}

config_choice! {
    /// `runtime.ordering.sink_mode`.
    pub enum SinkMode { SourceSeq = "source_seq", Completion = "completion" }
}

config_choice! {
    /// `runtime.on_node_error`.
    pub enum NodeErrorPolicy { Fail = "fail", DeadLetter = "dead_letter" }
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct OrderingConfig {
    pub sink_mode: SinkMode,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Platform {
    pub bootstrap: Bootstrap,
    pub execution_ipc: ExecutionIpc,
    pub process_groups: Vec<ProcessGroup>,
    pub readiness: Readiness,
    pub routing_cache: RoutingCache,
    pub health: Health,
    /// How records cross between hosts, when groups are placed on several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_host: Option<CrossHost>,
}

config_choice! {
    /// `runtime.platform.bootstrap.mode`.
    pub enum BootstrapMode { Inline = "inline", ProcessSupervisor = "process_supervisor" }
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Bootstrap {
    pub mode: BootstrapMode,
}

config_choice! {
    pub enum IpcTransport { SharedMemory = "shared_memory" }
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ExecutionIpc {
    pub transport: IpcTransport,
    pub ring_bytes: u64,
    pub validate_payloads: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<Control>,
}

config_choice! {
    pub enum ControlTransport { TcpLocal = "tcp_local", Unix = "unix" }
}

config_choice! {
    pub enum AuthMode { Hmac = "hmac" }
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Control {
    pub transport: ControlTransport,
    pub bind_host: String,
    pub bind_port: u16,
    pub auth: Auth,
    pub max_payload_bytes: u64,
    /// How long a new connection may take to send its HELLO before it is closed.
    pub handshake_timeout_seconds: f64,
    /// Connections that may wait for their HELLO at once (the oldest is closed beyond it).
    pub max_pending_connections: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Auth {
    pub mode: AuthMode,
    pub ttl_seconds: f64,
    pub nonce_cache_size: u64,
}

config_choice! {
    /// How a worker waits for its rings: spin, spin-then-park, or park at once.
    pub enum RunnerProfile { Balanced = "balanced", Latency = "latency", Efficiency = "efficiency" }
    aliases { "sync" => Balanced }
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ProcessGroup {
    pub name: String,
    pub nodes: Vec<String>,
    pub workers: u32,
    pub runner_profile: RunnerProfile,
    pub heartbeat_seconds: f64,
    pub start_timeout_seconds: f64,
    pub stop_timeout_seconds: f64,
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
    pub transport: CrossHostTransport,
    /// Server URL(s), comma separated; absent: `NATS_URL`, else `nats://127.0.0.1:4222`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Stream name prefix: the run's stream is `{stream}_{run id}`, its subjects
    /// `{stream}.{run id}.{producer}.{consumer}`.
    pub stream: String,
    pub storage: StreamStorage,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nkey_seed_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creds_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Readiness {
    pub enabled: bool,
    pub start_work_on_all_groups_ready: bool,
    pub readiness_timeout_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RoutingCache {
    pub enabled: bool,
    pub negative_cache: bool,
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

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Health {
    pub enabled: bool,
    pub bind: String,
    /// A bind address other than loopback must be asked for: `/metrics` then answers anyone
    /// who can reach the host (logged at WARN when the run starts).
    pub expose: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Observability {
    pub tracing: Tracing,
    pub logging: Logging,
}

config_choice! {
    pub enum DropPolicy { DropNewest = "drop_newest", DropOldest = "drop_oldest" }
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Tracing {
    pub enabled: bool,
    /// `None`: `OTEL_TRACES_SAMPLER`, else `parentbased_traceidratio`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampler: Option<SamplerKind>,
    /// `None`: `OTEL_TRACES_SAMPLER_ARG`, else 1.0 (the ratio of the `traceidratio` samplers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_ratio: Option<f64>,
    pub queue: SpanQueue,
    pub exporters: Vec<TraceExporter>,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SpanQueue {
    pub max_items: u64,
    pub drop_policy: DropPolicy,
    pub export_batch: u64,
    pub flush_interval_ms: u64,
}

config_choice! {
    pub enum TraceExporterKind {
        Jsonl = "jsonl", Stdout = "stdout", OtelOtlp = "otel_otlp", OpentracingBridge = "opentracing_bridge"
    }
}

config_choice! {
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
    Jsonl(JsonlSettings),
    Stdout,
    OtelOtlp(OtlpSettings),
    OpentracingBridge(BridgeSettings),
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct JsonlSettings {
    pub path: PathBuf,
    pub flush_every_n: u64,
    pub fsync: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct OtlpSettings {
    /// `None`: `OTEL_EXPORTER_OTLP_(TRACES_|LOGS_)PROTOCOL`, else `grpc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<OtlpProtocol>,
    /// `None`: `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`, else the protocol's localhost default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub timeout_seconds: f64,
    /// `None`: `OTEL_SERVICE_NAME`, else `stream-kernel`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    pub service_name_by_process_group: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct BridgeSettings {
    pub agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

config_choice! {
    pub enum LogLevel { Error = "error", Warn = "warn", Info = "info", Debug = "debug", Trace = "trace" }
}

config_choice! {
    pub enum LifecycleLevel { Info = "info", Debug = "debug" }
}

config_choice! {
    pub enum LogExporterKind {
        Stderr = "stderr", Stdout = "stdout", Jsonl = "jsonl", OtelLogsOtlp = "otel_logs_otlp"
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Logging {
    pub level: LogLevel,
    pub exporters: Vec<LogExporter>,
    pub lifecycle_events: LifecycleEvents,
}

/// One log exporter: `{kind: ..., settings: {...}}`.
#[derive(Debug, Clone, PartialEq)]
pub enum LogExporter {
    /// Human lines on stderr (the default: stdout may carry the run's data).
    Stderr,
    /// Human lines on stdout (refused when the sink or a span exporter writes stdout).
    Stdout,
    Jsonl {
        path: PathBuf,
    },
    OtelLogsOtlp(OtlpSettings),
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct LifecycleEvents {
    pub enabled: bool,
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
            timeout_seconds: f64,
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

    pub fn is_process_mode(&self) -> bool {
        self.runtime.platform.bootstrap.mode == BootstrapMode::ProcessSupervisor
    }
}
