//! Reading the YAML tree into the typed model, one function per section: each reads its keys
//! through the strict [`Section`] reader and fills every default, so the printed config
//! (`stream-kernel validate --print`) is the input plus defaults.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde_norway::Value;

use super::error::{ConfigErrorCode, ConfigPath};
// The model's types are this file's whole vocabulary.
use super::model::*;
use super::reader::{self as r, Diagnostics, Section};
use crate::config_choice;

impl Config {
    /// Reads the whole document. Node sections are kept raw here; the loader hands each to its
    /// node's factory for validation. Returns `None` only when the root is not a mapping.
    pub fn read(root: &Value, diag: &mut Diagnostics) -> Option<Self> {
        let mut doc = Section::open(root, ConfigPath::root(), diag)?;
        let version = read_version(&mut doc);
        let scenario = read_scenario(&mut doc);
        let pipeline = read_pipeline(&mut doc);
        let nodes = read_node_sections(&mut doc);
        let adapters = doc.section("adapters").map(read_adapters);
        let runtime = doc.section("runtime").map(read_runtime);
        drop(doc);
        Some(Self {
            version,
            scenario,
            pipeline,
            nodes,
            adapters: adapters.unwrap_or_else(default_adapters),
            runtime: runtime.unwrap_or_else(|| {
                read_runtime(Section::empty(ConfigPath::parse("runtime"), diag))
            }),
        })
    }
}

fn read_version(doc: &mut Section<'_, '_>) -> u32 {
    let path = doc.path_of("version");
    match doc.req("version", "expected `version: 1`", r::integer) {
        Some(1) => 1,
        Some(other) => {
            doc.diag().error(
                &path,
                ConfigErrorCode::Range,
                "expected 1 (the only config version)",
                format!("{other}"),
            );
            1
        }
        None => 1,
    }
}

fn read_scenario(doc: &mut Section<'_, '_>) -> Scenario {
    let present = doc.has("scenario");
    let Some(mut section) = doc.section("scenario") else {
        return Scenario {
            name: String::new(),
        };
    };
    if !present {
        let path = section.path().clone();
        section.diag().error(
            &path,
            ConfigErrorCode::Required,
            "expected `scenario: {name: ...}`",
            "nothing (key missing)",
        );
        return Scenario {
            name: String::new(),
        };
    }
    let name = section
        .req(
            "name",
            "expected a non-empty scenario name",
            r::non_empty_string,
        )
        .unwrap_or_default();
    Scenario { name }
}

fn read_pipeline(doc: &mut Section<'_, '_>) -> Pipeline {
    let default = || DEFAULT_PIPELINE.iter().map(|s| s.to_string()).collect();
    let Some(mut section) = doc.section("pipeline") else {
        return Pipeline { nodes: default() };
    };
    let path = section.path_of("nodes");
    let nodes = section.field("nodes", default(), r::string_list);
    if nodes.is_empty() {
        section.diag().error(
            &path,
            ConfigErrorCode::Range,
            "expected at least one node",
            "an empty sequence",
        );
    }
    Pipeline { nodes }
}

fn read_node_sections(doc: &mut Section<'_, '_>) -> BTreeMap<String, Value> {
    let path = doc.path_of("nodes");
    let mut out = BTreeMap::new();
    match doc.get("nodes") {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(map)) => {
            for (key, value) in map {
                match key {
                    Value::String(name) => {
                        out.insert(name.clone(), value.clone());
                    }
                    other => doc
                        .diag()
                        .type_error(&path, "expected node names as keys", other),
                }
            }
        }
        Some(other) => {
            doc.diag()
                .type_error(&path, "expected a mapping of node name to settings", other)
        }
    }
    out
}

fn default_adapters() -> Adapters {
    Adapters {
        source: SourceAdapter::file("input.txt"),
        sink: SinkAdapter::File {
            path: "output.txt".into(),
        },
        dead_letter: None,
        audit: None,
    }
}

config_choice! {
    enum SourceKind { File = "file", Stdin = "stdin", Generator = "generator" }
}

config_choice! {
    enum SinkKind { File = "file", Stdout = "stdout" }
}

config_choice! {
    enum FileKind { File = "file" }
}

fn read_adapters(mut section: Section<'_, '_>) -> Adapters {
    let defaults = default_adapters();
    let source = section
        .section("source")
        .map(read_source_adapter)
        .unwrap_or(defaults.source);
    let sink = section
        .section("sink")
        .map(read_sink_adapter)
        .unwrap_or(defaults.sink);
    let dead_letter = section
        .present_section("dead_letter")
        .map(read_file_adapter);
    let audit = section.present_section("audit").map(read_file_adapter);
    Adapters {
        source,
        sink,
        dead_letter,
        audit,
    }
}

fn path_field(section: &mut Section<'_, '_>, default: &str) -> PathBuf {
    PathBuf::from(section.field("path", default.to_string(), r::non_empty_string))
}

fn read_source_adapter(mut section: Section<'_, '_>) -> SourceAdapter {
    match section.field("kind", SourceKind::File, r::choice) {
        SourceKind::File => SourceAdapter::File {
            path: path_field(&mut section, "input.txt"),
            max_line_bytes: max_line_field(&mut section),
        },
        SourceKind::Stdin => SourceAdapter::Stdin {
            max_line_bytes: max_line_field(&mut section),
        },
        SourceKind::Generator => SourceAdapter::Generator {
            lines: section.field("lines", 100_000, r::unsigned),
            seed: section.field("seed", 1, r::unsigned),
        },
    }
}

fn max_line_field(section: &mut Section<'_, '_>) -> u64 {
    section.field("max_line_bytes", DEFAULT_MAX_LINE_BYTES, r::positive_u64)
}

fn read_sink_adapter(mut section: Section<'_, '_>) -> SinkAdapter {
    match section.field("kind", SinkKind::File, r::choice) {
        SinkKind::File => SinkAdapter::File {
            path: path_field(&mut section, "output.txt"),
        },
        SinkKind::Stdout => SinkAdapter::Stdout,
    }
}

fn read_file_adapter(mut section: Section<'_, '_>) -> FileAdapter {
    let FileKind::File = section.field("kind", FileKind::File, r::choice);
    let path = section.req("path", "expected a file path", r::non_empty_string);
    FileAdapter::File {
        path: PathBuf::from(path.unwrap_or_default()),
    }
}

fn read_runtime(mut section: Section<'_, '_>) -> RuntimeConfig {
    let sink_mode = section
        .section("ordering")
        .map(|mut s| s.field("sink_mode", SinkMode::SourceSeq, r::choice))
        .unwrap_or(SinkMode::SourceSeq);
    let platform = section
        .section("platform")
        .map(read_platform)
        .unwrap_or_else(default_platform);
    let observability = section
        .section("observability")
        .map(read_observability)
        .unwrap_or_else(default_observability);
    let on_node_error = section.field("on_node_error", NodeErrorPolicy::Fail, r::choice);
    let journal = section
        .section("journal")
        .map(read_journal)
        .unwrap_or_default();
    let latency = section
        .section("latency")
        .map(read_latency)
        .unwrap_or_default();
    RuntimeConfig {
        ordering: OrderingConfig { sink_mode },
        platform,
        observability,
        on_node_error,
        journal,
        latency,
    }
}

fn read_latency(mut section: Section<'_, '_>) -> LatencyConfig {
    let defaults = LatencyConfig::default();
    LatencyConfig {
        max_output_delay_us: section.field(
            "max_output_delay_us",
            defaults.max_output_delay_us,
            r::positive_u64,
        ),
    }
}

fn read_journal(mut section: Section<'_, '_>) -> JournalConfig {
    let defaults = JournalConfig::default();
    JournalConfig {
        enabled: section.field("enabled", defaults.enabled, r::boolean),
        interval_seconds: section.field(
            "interval_seconds",
            defaults.interval_seconds,
            r::positive_seconds,
        ),
    }
}

fn default_platform() -> Platform {
    Platform {
        bootstrap: Bootstrap {
            mode: BootstrapMode::Inline,
        },
        execution_ipc: ExecutionIpc {
            transport: IpcTransport::SharedMemory,
            ring_bytes: DEFAULT_RING_BYTES,
            validate_payloads: true,
            control: None,
        },
        process_groups: Vec::new(),
        readiness: Readiness {
            enabled: true,
            start_work_on_all_groups_ready: true,
            readiness_timeout_seconds: 30.0,
        },
        routing_cache: RoutingCache::default(),
        health: Health {
            enabled: true,
            bind: "127.0.0.1:0".to_string(),
            expose: false,
            linger_seconds: 0,
            push_gateway: None,
            push_job: DEFAULT_PUSH_JOB.to_string(),
        },
        cross_host: None,
    }
}

fn read_platform(mut section: Section<'_, '_>) -> Platform {
    let defaults = default_platform();
    let mode = section
        .section("bootstrap")
        .map(|mut s| s.field("mode", BootstrapMode::Inline, r::choice))
        .unwrap_or(BootstrapMode::Inline);
    let mut execution_ipc = section
        .section("execution_ipc")
        .map(read_execution_ipc)
        .unwrap_or(defaults.execution_ipc);
    // Defaults mean defaults: a supervised run without a control block gets the default one
    // (loopback TCP, HMAC), as `validate --print` shows.
    if mode == BootstrapMode::ProcessSupervisor && execution_ipc.control.is_none() {
        execution_ipc.control = Some(default_control());
    }
    let process_groups = read_process_groups(&mut section);
    let largest_start_timeout = process_groups
        .iter()
        .map(|g| g.start_timeout_seconds)
        .fold(None, |acc: Option<f64>, t| {
            Some(acc.map_or(t, |a| a.max(t)))
        })
        .unwrap_or(30.0);
    let readiness = section
        .section("readiness")
        .map(|s| read_readiness(s, largest_start_timeout))
        .unwrap_or(defaults.readiness);
    let routing_cache = section
        .section("routing_cache")
        .map(read_routing_cache)
        .unwrap_or(defaults.routing_cache);
    let health = section
        .section("health")
        .map(read_health)
        .unwrap_or(defaults.health);
    let cross_host = section.present_section("cross_host").map(read_cross_host);
    Platform {
        bootstrap: Bootstrap { mode },
        execution_ipc,
        process_groups,
        readiness,
        routing_cache,
        health,
        cross_host,
    }
}

/// `runtime.platform.execution_ipc.ring_bytes` when not given (or not usable): 4 MiB.
const DEFAULT_RING_BYTES: u64 = 4 * 1024 * 1024;

fn read_execution_ipc(mut section: Section<'_, '_>) -> ExecutionIpc {
    let transport = section.field("transport", IpcTransport::SharedMemory, r::choice);
    let ring_path = section.path_of("ring_bytes");
    let ring_bytes = match section.opt("ring_bytes", r::integer) {
        None => DEFAULT_RING_BYTES,
        Some(v) => {
            let ok = v >= i128::from(MIN_RING_BYTES)
                && v <= i128::from(MAX_RING_BYTES)
                && (v as u64).is_power_of_two();
            if !ok {
                section.diag().error(
                    &ring_path,
                    ConfigErrorCode::Range,
                    format!("expected a power of two in {MIN_RING_BYTES}..={MAX_RING_BYTES}"),
                    format!("{v}"),
                );
                DEFAULT_RING_BYTES
            } else {
                v as u64
            }
        }
    };
    let validate_payloads = section.field("validate_payloads", true, r::boolean);
    let control = if section.has("control") {
        // A control block of the wrong type was already reported; stand in the defaults so
        // that it is not reported a second time as missing.
        Some(
            section
                .present_section("control")
                .map(read_control)
                .unwrap_or_else(default_control),
        )
    } else {
        None
    };
    ExecutionIpc {
        transport,
        ring_bytes,
        validate_payloads,
        control,
    }
}

fn default_control() -> Control {
    Control {
        transport: ControlTransport::TcpLocal,
        bind_host: "127.0.0.1".to_string(),
        bind_port: 0,
        auth: Auth {
            mode: AuthMode::Hmac,
            ttl_seconds: 30.0,
            nonce_cache_size: 100_000,
        },
        max_payload_bytes: 1_048_576,
        handshake_timeout_seconds: 5.0,
        max_pending_connections: 64,
    }
}

fn read_control(mut section: Section<'_, '_>) -> Control {
    let transport = section.field("transport", ControlTransport::TcpLocal, r::choice);
    let host_path = section.path_of("bind_host");
    let bind_host = section.field("bind_host", "127.0.0.1".to_string(), r::string);
    if transport == ControlTransport::TcpLocal {
        check_loopback_host(&bind_host, &host_path, section.diag());
    }
    let port_path = section.path_of("bind_port");
    let bind_port = section
        .opt("bind_port", r::integer)
        .and_then(|v| r::in_range(v, 0, 65535, &port_path, section.diag()))
        .map_or(0, |v| v as u16);
    let auth = section.section("auth").map(read_auth).unwrap_or(Auth {
        mode: AuthMode::Hmac,
        ttl_seconds: 30.0,
        nonce_cache_size: 100_000,
    });
    let max_payload_bytes = section.field("max_payload_bytes", 1_048_576, r::positive_u64);
    let handshake_timeout_seconds =
        section.field("handshake_timeout_seconds", 5.0, r::positive_seconds);
    let max_pending_connections = section.field("max_pending_connections", 64, r::positive_u64);
    Control {
        transport,
        bind_host,
        bind_port,
        auth,
        max_payload_bytes,
        handshake_timeout_seconds,
        max_pending_connections,
    }
}

fn check_loopback_host(host: &str, path: &ConfigPath, diag: &mut Diagnostics) {
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => {}
        Ok(_) => diag.error(
            path,
            ConfigErrorCode::NotLoopback,
            "expected a loopback address (127.0.0.0/8 or ::1): the control port must not be reachable from other hosts",
            format!("{host:?}"),
        ),
        Err(_) if host == "localhost" => {}
        Err(_) => diag.error(
            path,
            ConfigErrorCode::Invalid,
            "expected a loopback IP address such as 127.0.0.1",
            format!("{host:?}"),
        ),
    }
}

fn read_auth(mut section: Section<'_, '_>) -> Auth {
    Auth {
        mode: section.field("mode", AuthMode::Hmac, r::choice),
        ttl_seconds: section.field("ttl_seconds", 30.0, r::positive_seconds),
        nonce_cache_size: section.field("nonce_cache_size", 100_000, r::positive_u64),
    }
}

fn read_process_groups(section: &mut Section<'_, '_>) -> Vec<ProcessGroup> {
    let path = section.path_of("process_groups");
    let Some(value) = section.get("process_groups") else {
        return Vec::new();
    };
    let items = match value {
        Value::Sequence(items) => items,
        Value::Null => return Vec::new(),
        other => {
            section
                .diag()
                .type_error(&path, "expected a sequence of process groups", other);
            return Vec::new();
        }
    };
    let diag = section.diag();
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            Section::open(item, path.index(i), diag).map(|s| read_process_group(s, i))
        })
        .collect()
}

/// Whether `name` may name a group or a host: letters (any script), digits, `.`, `_`, `-`.
/// Names appear in worker ids, log lines, metrics labels and file names; control characters,
/// spaces and quotes there would forge or break them.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Reads a name field that must be a [`is_plain_name`].
fn plain_name(section: &mut Section<'_, '_>, key: &str, name: Option<String>) -> Option<String> {
    let name = name?;
    if !is_plain_name(&name) {
        let path = section.path_of(key);
        section.diag().error(
            &path,
            ConfigErrorCode::Invalid,
            "1 to 64 letters, digits, `.`, `_` or `-` (names appear in worker ids, logs and metrics)",
            format!("{:?}", crate::text::printable(&name)),
        );
    }
    Some(name)
}

fn read_process_group(mut section: Section<'_, '_>, index: usize) -> ProcessGroup {
    let name = section.req("name", "expected a group name", r::non_empty_string);
    let name = plain_name(&mut section, "name", name).unwrap_or_else(|| format!("group{index}"));
    let nodes_path = section.path_of("nodes");
    let nodes = section.req(
        "nodes",
        "expected the list of nodes this group runs",
        r::string_list,
    );
    if nodes.as_ref().is_some_and(Vec::is_empty) {
        section.diag().error(
            &nodes_path,
            ConfigErrorCode::Range,
            "at least one node (a group without nodes would run workers that do nothing)",
            "an empty sequence",
        );
    }
    let nodes = nodes.unwrap_or_default();
    let cpus_path = section.path_of("cpus");
    let cpus = section.opt("cpus", r::u32_list);
    if let Some(cpus) = &cpus
        && cpus.is_empty()
    {
        section.diag().error(
            &cpus_path,
            ConfigErrorCode::Range,
            "expected at least one CPU index",
            "an empty sequence",
        );
    }
    ProcessGroup {
        name,
        nodes,
        workers: section.field("workers", 1, r::positive_u32),
        runner_profile: section.field("runner_profile", RunnerProfile::Balanced, r::choice),
        heartbeat_seconds: section.field("heartbeat_seconds", 5.0, r::positive_seconds),
        start_timeout_seconds: section.field("start_timeout_seconds", 30.0, r::positive_seconds),
        stop_timeout_seconds: section.field("stop_timeout_seconds", 30.0, r::positive_seconds),
        cpus,
        host: {
            let host = section.opt("host", r::non_empty_string);
            plain_name(&mut section, "host", host)
        },
    }
}

fn read_cross_host(mut section: Section<'_, '_>) -> CrossHost {
    let stream_path = section.path_of("stream");
    let stream = section.field("stream", "stream_kernel".to_string(), r::non_empty_string);
    if !stream
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        section.diag().error(
            &stream_path,
            ConfigErrorCode::Invalid,
            "expected letters, digits, `_` and `-` only (it names a JetStream stream and subjects)",
            format!("{stream:?}"),
        );
    }
    let url_path = section.path_of("url");
    let url = section.opt("url", r::non_empty_string);
    if let Some(url) = &url
        && let Some(bad) = url
            .split(',')
            .map(str::trim)
            .find(|one| !plausible_nats_url(one))
    {
        section.diag().error(
            &url_path,
            ConfigErrorCode::Invalid,
            "one or more server URLs separated by commas, each nats://host:port or tls://host:port (host:port alone is taken as nats://)",
            format!("{bad:?} in {url:?}"),
        );
    }
    let replicas_path = section.path_of("replicas");
    let replicas = section.field("replicas", 1, r::positive_u32);
    if !matches!(replicas, 1 | 3 | 5) {
        section.diag().error(
            &replicas_path,
            ConfigErrorCode::Range,
            "1, 3 or 5 (a JetStream stream keeps an odd number of copies, at most 5)",
            replicas.to_string(),
        );
    }
    let max_age_path = section.path_of("max_age_seconds");
    let max_age_seconds = section.field("max_age_seconds", 86_400.0, r::number);
    if max_age_seconds < 0.0 || !max_age_seconds.is_finite() {
        section.diag().error(
            &max_age_path,
            ConfigErrorCode::Range,
            "seconds, 0 or more (0: messages never expire)",
            max_age_seconds.to_string(),
        );
    }
    CrossHost {
        transport: section.field("transport", CrossHostTransport::NatsJetstream, r::choice),
        url,
        replicas,
        max_age_seconds,
        stream,
        storage: section.field("storage", StreamStorage::File, r::choice),
        records_per_message: section.field("records_per_message", 256, r::positive_u32),
        max_in_flight: section.field("max_in_flight", 64, r::positive_u32),
        ack_wait_seconds: section.field("ack_wait_seconds", 10.0, r::positive_seconds),
        connect_timeout_seconds: section.field(
            "connect_timeout_seconds",
            10.0,
            r::positive_seconds,
        ),
        idle_timeout_seconds: section.field("idle_timeout_seconds", 120.0, r::positive_seconds),
        dedup_window_seconds: section.field("dedup_window_seconds", 600.0, r::positive_seconds),
        credentials: section
            .section("credentials")
            .map(read_nats_credentials)
            .unwrap_or_default(),
    }
}

/// `nats://host:port`, `tls://host:port`, `ws://...` or a bare `host:port`: a scheme (if any)
/// the client knows, a host, a numeric port (if any), no spaces.
fn plausible_nats_url(url: &str) -> bool {
    let rest = match url.split_once("://") {
        Some(("nats" | "tls" | "ws" | "wss", rest)) => rest,
        Some(_) => return false,
        None => url,
    };
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port, None),
    };
    !host.is_empty()
        && !host_port.contains(char::is_whitespace)
        && port.is_none_or(|p| p.parse::<u16>().is_ok())
}

fn read_nats_credentials(mut section: Section<'_, '_>) -> NatsCredentials {
    let path = |s: &mut Section<'_, '_>, key| s.opt(key, r::non_empty_string).map(PathBuf::from);
    NatsCredentials {
        token_file: path(&mut section, "token_file"),
        user: section.opt("user", r::non_empty_string),
        password_file: path(&mut section, "password_file"),
        nkey_seed_file: path(&mut section, "nkey_seed_file"),
        creds_file: path(&mut section, "creds_file"),
        tls_ca_file: path(&mut section, "tls_ca_file"),
        tls_cert_file: path(&mut section, "tls_cert_file"),
        tls_key_file: path(&mut section, "tls_key_file"),
    }
}

fn read_readiness(mut section: Section<'_, '_>, largest_start_timeout: f64) -> Readiness {
    Readiness {
        enabled: section.field("enabled", true, r::boolean),
        start_work_on_all_groups_ready: section.field(
            "start_work_on_all_groups_ready",
            true,
            r::boolean,
        ),
        readiness_timeout_seconds: section.field(
            "readiness_timeout_seconds",
            largest_start_timeout,
            r::positive_seconds,
        ),
    }
}

fn read_routing_cache(mut section: Section<'_, '_>) -> RoutingCache {
    RoutingCache {
        enabled: section.field("enabled", true, r::boolean),
        negative_cache: section.field("negative_cache", true, r::boolean),
        max_entries: section.field("max_entries", 100_000, r::positive_u64),
    }
}

fn read_health(mut section: Section<'_, '_>) -> Health {
    let enabled = section.field("enabled", true, r::boolean);
    let bind_path = section.path_of("bind");
    let bind = section.field("bind", "127.0.0.1:0".to_string(), r::string);
    let expose = section.field("expose", false, r::boolean);
    let linger_seconds = section.field("linger_seconds", 0, r::unsigned);
    let push_path = section.path_of("push_gateway");
    let push_gateway = section.opt("push_gateway", r::non_empty_string);
    if let Some(url) = &push_gateway
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        section.diag().error(
            &push_path,
            ConfigErrorCode::Invalid,
            "an http:// or https:// URL of a Pushgateway, such as http://127.0.0.1:9091",
            format!("{url:?}"),
        );
    }
    let push_job = section.field(
        "push_job",
        DEFAULT_PUSH_JOB.to_string(),
        r::non_empty_string,
    );
    match bind.parse::<SocketAddr>() {
        Err(_) => section.diag().error(
            &bind_path,
            ConfigErrorCode::Invalid,
            "expected a socket address such as 127.0.0.1:0",
            format!("{bind:?}"),
        ),
        Ok(address) if !address.ip().is_loopback() && !expose => section.diag().error(
            &bind_path,
            ConfigErrorCode::NotLoopback,
            "a loopback address (health endpoints serve /metrics to anyone who reaches them); set `health.expose: true` to listen beyond this host",
            format!("{bind:?}"),
        ),
        Ok(_) => {}
    }
    Health {
        enabled,
        bind,
        expose,
        linger_seconds,
        push_gateway,
        push_job,
    }
}

/// `runtime.platform.health.push_job` when not given.
const DEFAULT_PUSH_JOB: &str = "stream_kernel";

fn default_observability() -> Observability {
    Observability {
        tracing: default_tracing(),
        logging: default_logging(),
    }
}

fn default_tracing() -> Tracing {
    Tracing {
        enabled: false,
        sampler: None,
        sample_ratio: None,
        queue: SpanQueue {
            max_items: 65_536,
            drop_policy: DropPolicy::DropNewest,
            export_batch: 512,
            flush_interval_ms: 1000,
        },
        exporters: vec![TraceExporter::Jsonl(JsonlSettings {
            path: "trace.jsonl".into(),
            flush_every_n: 1,
            fsync: false,
        })],
    }
}

fn default_logging() -> Logging {
    Logging {
        level: LogLevel::Info,
        exporters: vec![LogExporter::Stderr],
        lifecycle_events: LifecycleEvents {
            enabled: true,
            level: LifecycleLevel::Info,
        },
    }
}

fn read_observability(mut section: Section<'_, '_>) -> Observability {
    let tracing = section
        .section("tracing")
        .map(read_tracing)
        .unwrap_or_else(default_tracing);
    let logging = section
        .section("logging")
        .map(read_logging)
        .unwrap_or_else(default_logging);
    Observability { tracing, logging }
}

fn read_tracing(mut section: Section<'_, '_>) -> Tracing {
    let defaults = default_tracing();
    let enabled = section.field("enabled", false, r::boolean);
    let sampler = section.opt("sampler", r::choice);
    let sample_ratio = section.opt("sample_ratio", r::ratio);
    let queue = section
        .section("queue")
        .map(|mut q| SpanQueue {
            max_items: q.field("max_items", 65_536, r::positive_u64),
            drop_policy: q.field("drop_policy", DropPolicy::DropNewest, r::choice),
            export_batch: q.field("export_batch", 512, r::positive_u64),
            flush_interval_ms: q.field("flush_interval_ms", 1000, r::positive_u64),
        })
        .unwrap_or(defaults.queue);
    let exporters =
        read_exporter_list(&mut section, read_trace_exporter).unwrap_or(defaults.exporters);
    Tracing {
        enabled,
        sampler,
        sample_ratio,
        queue,
        exporters,
    }
}

fn read_exporter_list<T>(
    section: &mut Section<'_, '_>,
    read_one: fn(Section<'_, '_>) -> Option<T>,
) -> Option<Vec<T>> {
    let path = section.path_of("exporters");
    let value = section.get("exporters")?;
    let Value::Sequence(items) = value else {
        section
            .diag()
            .type_error(&path, "expected a sequence of exporters", value);
        return None;
    };
    let diag = section.diag();
    Some(
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| Section::open(item, path.index(i), diag).and_then(read_one))
            .collect(),
    )
}

/// An exporter's `kind` and its `settings` section. Settings cannot be checked without a
/// kind: then only the kind is reported.
fn exporter_kind<'v, 'a, K: r::Choice>(
    section: &'a mut Section<'v, '_>,
    expected: &str,
) -> Option<(K, Section<'v, 'a>)> {
    let Some(kind) = section.req("kind", expected, r::choice::<K>) else {
        section.has("settings");
        return None;
    };
    Some((kind, section.section("settings")?))
}

fn read_trace_exporter(mut section: Section<'_, '_>) -> Option<TraceExporter> {
    let (kind, mut settings) =
        exporter_kind::<TraceExporterKind>(&mut section, "expected an exporter kind")?;
    let exporter = match kind {
        TraceExporterKind::Jsonl => TraceExporter::Jsonl(JsonlSettings {
            path: path_field(&mut settings, "trace.jsonl"),
            flush_every_n: settings.field("flush_every_n", 1, r::positive_u64),
            fsync: settings.field("fsync", false, r::boolean),
        }),
        TraceExporterKind::Stdout => TraceExporter::Stdout,
        TraceExporterKind::OtelOtlp => {
            TraceExporter::OtelOtlp(read_otlp_settings(&mut settings, true))
        }
        TraceExporterKind::OpentracingBridge => {
            let agent_path = settings.path_of("agent");
            let agent = settings.field("agent", "127.0.0.1:6831".to_string(), r::string);
            if agent.parse::<SocketAddr>().is_err() && !agent.contains(':') {
                settings.diag().error(
                    &agent_path,
                    ConfigErrorCode::Invalid,
                    "expected host:port of a Jaeger agent (UDP compact thrift)",
                    format!("{agent:?}"),
                );
            }
            TraceExporter::OpentracingBridge(BridgeSettings {
                agent,
                service_name: settings.opt("service_name", r::non_empty_string),
            })
        }
    };
    Some(exporter)
}

fn read_otlp_settings(settings: &mut Section<'_, '_>, for_traces: bool) -> OtlpSettings {
    OtlpSettings {
        protocol: settings.opt("protocol", r::choice),
        endpoint: settings.opt("endpoint", r::non_empty_string),
        headers: settings.field("headers", BTreeMap::new(), r::string_map),
        timeout_seconds: settings.opt("timeout_seconds", r::positive_seconds),
        service_name: settings.opt("service_name", r::non_empty_string),
        service_name_by_process_group: if for_traces {
            settings.field("service_name_by_process_group", false, r::boolean)
        } else {
            false
        },
    }
}

fn read_logging(mut section: Section<'_, '_>) -> Logging {
    let defaults = default_logging();
    let level = section.field("level", LogLevel::Info, r::choice);
    let exporters =
        read_exporter_list(&mut section, read_log_exporter).unwrap_or(defaults.exporters);
    let lifecycle_events = section
        .section("lifecycle_events")
        .map(|mut s| LifecycleEvents {
            enabled: s.field("enabled", true, r::boolean),
            level: s.field("level", LifecycleLevel::Info, r::choice),
        })
        .unwrap_or(defaults.lifecycle_events);
    Logging {
        level,
        exporters,
        lifecycle_events,
    }
}

fn read_log_exporter(mut section: Section<'_, '_>) -> Option<LogExporter> {
    let (kind, mut settings) =
        exporter_kind::<LogExporterKind>(&mut section, "expected a log exporter kind")?;
    Some(match kind {
        LogExporterKind::Stderr => LogExporter::Stderr,
        LogExporterKind::Stdout => LogExporter::Stdout,
        LogExporterKind::Jsonl => LogExporter::Jsonl {
            path: path_field(&mut settings, "log.jsonl"),
        },
        LogExporterKind::OtelLogsOtlp => {
            LogExporter::OtelLogsOtlp(read_otlp_settings(&mut settings, false))
        }
    })
}
