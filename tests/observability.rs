//! Observability contract (docs/operating.md): spans of the 4-group fund-load run reach a real
//! OTLP receiver (gRPC and HTTP) in this test, the Jaeger agent bridge's UDP packets decode
//! with an independent thrift reader, a dead or hanging endpoint changes nothing but its own
//! counters, the queue's counters always add up, sampling is by trace and complete, the
//! standard OTEL_* variables suffice, and lifecycle events reach both log exporters.
//!
//! The test binary is also the worker executable (`main` calls `worker_entry` first).

#[path = "support/fund_load_runs.rs"]
mod fund_load_runs;
#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;
#[path = "support/test_nodes.rs"]
mod test_nodes;

#[path = "support/checks.rs"]
mod checks;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use checks::check;
use fund_load_runs::generated_input;
use libtest_mimic::{Failed, Trial};
use otlp_receiver::{Protocol, ReceivedSpan, Receiver, wait_for_spans};
use stream_kernel::config::{self, Config};
use stream_kernel::observability::export::ExporterCounters;
use stream_kernel::runtime::RunSummary;
use stream_kernel::supervisor::{SupervisorOptions, run_supervised};

/// Fund-load's nodes and the test nodes (`ticker`, `fail_on`, `record`, ...).
fn registry() -> stream_kernel::graph::Registry {
    test_nodes::with_fund_load()
}

fn main() {
    let tests = vec![
        Trial::test("obs_01_otlp_grpc_receiver_gets_connected_traces", || {
            obs_01(Protocol::Grpc)
        }),
        Trial::test("obs_01_otlp_http_receiver_gets_connected_traces", || {
            obs_01(Protocol::Http)
        }),
        Trial::test("obs_02_bridge_packets_decode_as_jaeger_thrift", obs_02),
        Trial::test("obs_03_refusing_endpoint_changes_only_its_counters", || {
            obs_03(Endpoint::Refusing)
        }),
        Trial::test("obs_03_hanging_endpoint_changes_only_its_counters", || {
            obs_03(Endpoint::Hanging)
        }),
        Trial::test(
            "obs_04_counters_add_up_under_a_flood_for_both_policies",
            obs_04,
        ),
        Trial::test(
            "obs_05_sampling_ten_percent_of_traces_each_complete",
            obs_05,
        ),
        Trial::test("obs_06_otel_env_vars_alone_are_enough_to_export", obs_06),
        Trial::test(
            "otel_env_protocol_sampler_traceparent_and_sdk_disabled",
            otel_env_spec,
        ),
        Trial::test(
            "export_failures_warn_rate_limited_and_the_exit_wait_is_bounded_and_shown",
            export_failures_reported,
        ),
        Trial::test(
            "error_log_lines_carry_the_records_trace_and_span_ids",
            error_log_carries_trace_ids,
        ),
        Trial::test("otlp_over_tls_grpc_with_a_private_ca", || {
            otlp_over_tls(Protocol::Grpc)
        }),
        Trial::test("otlp_over_tls_http_with_a_private_ca", || {
            otlp_over_tls(Protocol::Http)
        }),
        Trial::test(
            "smoke_03_one_chain_per_record_across_groups_and_traceparent",
            smoke_03,
        ),
        Trial::test("log_01_lifecycle_events_once_in_stdout_and_jsonl", log_01),
        Trial::test(
            "log_otlp_lifecycle_events_reach_an_otlp_logs_receiver",
            log_otlp,
        ),
    ];
    checks::run_serially(registry, tests);
}

/// Nodes of the fund-load graph: a sampled record has one span per node.
const NODES: usize = 9;
const GROUPS: [&str; 4] = [
    "execution.ingress",
    "execution.features",
    "execution.policy",
    "execution.egress",
];

/// The bundled config of `placement` with `observability` (YAML, indented for `runtime:`)
/// appended, reading `input` and writing into `dir`.
fn traced_config(
    placement: &str,
    observability: &str,
    input: &Path,
    dir: &Path,
) -> Result<Config, Failed> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("configs/fund_load_experiment_{placement}.yml"));
    let mut yaml = std::fs::read_to_string(&path)?;
    if !observability.is_empty() {
        yaml.push_str("  observability:\n");
        for line in observability.lines() {
            yaml.push_str("    ");
            yaml.push_str(line);
            yaml.push('\n');
        }
    }
    let mut config = config::load_str(&yaml, &registry())
        .map_err(|r| format!("{}: {r}\n{yaml}", path.display()))?
        .config;
    fund_load_runs::point_at(&mut config, input, dir);
    config.runtime.platform.health.enabled = false;
    Ok(config)
}

fn run(config: &Config) -> Result<RunSummary, Failed> {
    if config.is_process_mode() {
        let run = run_supervised(config, &registry(), &SupervisorOptions::default())
            .map_err(|e| e.to_string())?;
        check(
            matches!(run.end, stream_kernel::supervisor::RunEnd::Drained),
            || format!("run ended {:?}", run.end),
        )?;
        Ok(run.summary)
    } else {
        stream_kernel::runtime::run_inline(config, &registry(), &Default::default())
            .map_err(|e| e.to_string().into())
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    input: PathBuf,
}

impl Fixture {
    fn new(lines: u64) -> Result<Self, Failed> {
        let dir = tempfile::tempdir()?;
        let input = dir.path().join("input.txt");
        generated_input(&input, lines)?;
        Ok(Self { dir, input })
    }

    fn out(&self, name: &str) -> Result<PathBuf, Failed> {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path)?;
        Ok(path)
    }
}

fn only(counters: &[ExporterCounters], kind: &str) -> Result<ExporterCounters, Failed> {
    counters
        .iter()
        .find(|c| c.kind == kind)
        .cloned()
        .ok_or_else(|| format!("no `{kind}` exporter in {counters:?}").into())
}

fn adds_up(c: &ExporterCounters) -> Result<(), Failed> {
    check(c.exported + c.dropped + c.failed == c.produced, || {
        format!("exported + dropped + failed != produced: {c:?}")
    })
}

/// Checks that `spans` hold `records` complete traces: one root (the source) each, every
/// other span's parent in the same trace, one span per node, all four groups present, and
/// `handoff_from` exactly on the first node of each later group.
fn check_traces(spans: &[ReceivedSpan], records: usize) -> Result<(), Failed> {
    let mut traces: HashMap<&[u8], Vec<&ReceivedSpan>> = HashMap::new();
    for span in spans {
        traces.entry(&span.trace_id).or_default().push(span);
    }
    check(traces.len() == records, || {
        format!("{} traces for {records} records", traces.len())
    })?;
    for (trace, spans) in &traces {
        check(spans.len() == NODES, || {
            format!("trace {trace:02x?}: {} spans", spans.len())
        })?;
        let ids: BTreeSet<&[u8]> = spans.iter().map(|s| s.span_id.as_slice()).collect();
        let roots: Vec<_> = spans.iter().filter(|s| s.parent.is_empty()).collect();
        check(roots.len() == 1 && roots[0].name == "source", || {
            format!("trace {trace:02x?}: roots {roots:?}")
        })?;
        for span in spans.iter().filter(|s| !s.parent.is_empty()) {
            check(ids.contains(span.parent.as_slice()), || {
                format!("{span:?}: parent not in the trace")
            })?;
        }
        let groups: BTreeSet<&str> = spans
            .iter()
            .filter_map(|s| s.attributes.get("process_group").map(String::as_str))
            .collect();
        check(groups.len() == 4, || {
            format!("trace {trace:02x?}: groups {groups:?}")
        })?;
        let handoffs = spans
            .iter()
            .filter(|s| s.attributes.contains_key("handoff_from"))
            .count();
        check(handoffs == 3, || {
            format!("trace {trace:02x?}: {handoffs} hand-offs")
        })?;
        for span in spans {
            for key in [
                "process_group",
                "route_hop",
                "worker_id",
                "seq",
                "scenario",
                "status",
            ] {
                check(span.attributes.contains_key(key), || {
                    format!("{span:?}: no attribute {key}")
                })?;
            }
            for key in [
                "service.name",
                "service.version",
                "service.instance.id",
                "process.pid",
                "host.name",
            ] {
                check(span.resource.contains_key(key), || {
                    format!("{span:?}: no resource attribute {key}")
                })?;
            }
            // A hand-off's receiving node consumes a message from another process; every
            // other node span is internal (OTLP kinds: 1 internal, 5 consumer).
            let expected = if span.attributes.contains_key("handoff_from") {
                5
            } else {
                1
            };
            check(span.kind == expected, || {
                format!("{span:?}: kind {} (expected {expected})", span.kind)
            })?;
        }
        let pids: BTreeSet<&str> = spans
            .iter()
            .filter_map(|s| s.resource.get("process.pid").map(String::as_str))
            .collect();
        check(pids.len() == 4, || {
            format!("trace {trace:02x?}: spans from pids {pids:?}")
        })?;
    }
    Ok(())
}

fn otlp_tracing(protocol: Protocol, endpoint: &str, extra: &str) -> String {
    let protocol = match protocol {
        Protocol::Grpc => "grpc",
        Protocol::Http => "http/protobuf",
    };
    format!(
        "tracing:\n  enabled: true\n  sample_ratio: 1.0\n{extra}  exporters:\n    - kind: otel_otlp\n      settings: {{protocol: {protocol}, endpoint: \"{endpoint}\", timeout_seconds: 1.0, service_name: obs-test}}\n"
    )
}

/// P5PRE-OBS-01: a 4-group run's spans in a real OTLP receiver, one trace per record, parent
/// links intact across the four processes, attributes and resource as specified.
fn obs_01(protocol: Protocol) -> Result<(), Failed> {
    const LINES: usize = 200;
    let fixture = Fixture::new(LINES as u64)?;
    let receiver = Receiver::start(protocol)?;
    let config = traced_config(
        "4proc",
        &otlp_tracing(protocol, &receiver.endpoint, ""),
        &fixture.input,
        &fixture.out("run")?,
    )?;
    let summary = run(&config)?;
    let counters = only(&summary.spans, "otel_otlp")?;
    adds_up(&counters)?;
    check(
        counters.produced == (LINES * NODES) as u64 && counters.exported == counters.produced,
        || format!("{counters:?}"),
    )?;
    let spans = wait_for_spans(&receiver, LINES * NODES);
    check(spans.len() == LINES * NODES, || {
        format!("received {} spans", spans.len())
    })?;
    check_traces(&spans, LINES)?;
    check(
        spans
            .iter()
            .all(|s| s.resource.get("service.name").map(String::as_str) == Some("obs-test")),
        || "service.name".into(),
    )
}

// ---------------------------------------------------------------------------------------------
// P5PRE-OBS-02: the OpenTracing bridge, decoded with the `thrift` crate's compact protocol.

#[derive(Debug, Clone)]
enum Thrift {
    Bool(bool),
    Int(i64),
    Double(#[allow(dead_code)] f64),
    Bytes(Vec<u8>),
    Struct(BTreeMap<i16, Thrift>),
    List(Vec<Thrift>),
}

impl Thrift {
    fn field(&self, id: i16) -> Option<&Thrift> {
        match self {
            Self::Struct(fields) => fields.get(&id),
            _ => None,
        }
    }
    fn int(&self, id: i16) -> Option<i64> {
        match self.field(id)? {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }
    fn text(&self, id: i16) -> Option<String> {
        match self.field(id)? {
            Self::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
    fn list(&self, id: i16) -> &[Thrift] {
        match self.field(id) {
            Some(Self::List(items)) => items,
            _ => &[],
        }
    }
}

fn read_value(
    p: &mut dyn thrift::protocol::TInputProtocol,
    ty: thrift::protocol::TType,
) -> thrift::Result<Thrift> {
    use thrift::protocol::TType;
    Ok(match ty {
        TType::Bool => Thrift::Bool(p.read_bool()?),
        TType::I08 => Thrift::Int(i64::from(p.read_i8()?)),
        TType::I16 => Thrift::Int(i64::from(p.read_i16()?)),
        TType::I32 => Thrift::Int(i64::from(p.read_i32()?)),
        TType::I64 => Thrift::Int(p.read_i64()?),
        TType::Double => Thrift::Double(p.read_double()?),
        TType::String => Thrift::Bytes(p.read_bytes()?),
        TType::Struct => {
            p.read_struct_begin()?;
            let mut fields = BTreeMap::new();
            loop {
                let field = p.read_field_begin()?;
                if field.field_type == TType::Stop {
                    break;
                }
                let value = read_value(p, field.field_type)?;
                fields.insert(field.id.unwrap_or(0), value);
                p.read_field_end()?;
            }
            p.read_struct_end()?;
            Thrift::Struct(fields)
        }
        TType::List => {
            let list = p.read_list_begin()?;
            let items = (0..list.size)
                .map(|_| read_value(p, list.element_type))
                .collect::<thrift::Result<_>>()?;
            p.read_list_end()?;
            Thrift::List(items)
        }
        other => {
            return Err(thrift::Error::Protocol(thrift::ProtocolError::new(
                thrift::ProtocolErrorKind::InvalidData,
                format!("unexpected type {other:?}"),
            )));
        }
    })
}

/// One Agent.emitBatch packet: (service name, spans).
fn decode_emit_batch(packet: &[u8]) -> Result<(String, Vec<Thrift>), Failed> {
    let mut protocol = thrift::protocol::TCompactInputProtocol::new(packet);
    let message = thrift::protocol::TInputProtocol::read_message_begin(&mut protocol)
        .map_err(|e| e.to_string())?;
    check(message.name == "emitBatch", || {
        format!("message {}", message.name)
    })?;
    let args =
        read_value(&mut protocol, thrift::protocol::TType::Struct).map_err(|e| e.to_string())?;
    let batch = args.field(1).ok_or("no batch")?;
    let service = batch
        .field(1)
        .and_then(|p| p.text(1))
        .ok_or("no process.serviceName")?;
    Ok((service, batch.list(2).to_vec()))
}

fn tags(span: &Thrift) -> BTreeMap<String, String> {
    span.list(10)
        .iter()
        .filter_map(|tag| {
            let value = tag
                .text(3)
                .or_else(|| tag.int(6).map(|i| i.to_string()))
                .or_else(|| match tag.field(5) {
                    Some(Thrift::Bool(b)) => Some(b.to_string()),
                    _ => None,
                })?;
            Some((tag.text(1)?, value))
        })
        .collect()
}

/// P5PRE-OBS-02: the OpenTracing bridge's UDP packets, decoded by an independent Jaeger
/// thrift decoder, carry the mapped operation names, tags, logs and references.
fn obs_02() -> Result<(), Failed> {
    const LINES: usize = 40;
    let fixture = Fixture::new(LINES as u64)?;
    let agent = UdpSocket::bind("127.0.0.1:0")?;
    agent.set_read_timeout(Some(Duration::from_millis(500)))?;
    let tracing = format!(
        "tracing:\n  enabled: true\n  sample_ratio: 1.0\n  exporters:\n    - kind: opentracing_bridge\n      settings: {{agent: \"{}\", service_name: bridge-test}}\n",
        agent.local_addr()?
    );
    // The inline profile too runs every node; a failing node shows the error mapping.
    let config = traced_config("4proc", &tracing, &fixture.input, &fixture.out("run")?)?;
    let summary = run(&config)?;
    let counters = only(&summary.spans, "opentracing_bridge")?;
    adds_up(&counters)?;
    let mut spans = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(20);
    while spans.len() < LINES * NODES && Instant::now() < deadline {
        let Ok(n) = agent.recv(&mut buf) else {
            continue;
        };
        let (service, batch) = decode_emit_batch(&buf[..n])?;
        check(service == "bridge-test", || format!("service {service}"))?;
        spans.extend(batch);
    }
    check(spans.len() == LINES * NODES, || {
        format!("{} spans decoded, {counters:?}", spans.len())
    })?;
    let ids: BTreeSet<(i64, i64, i64)> = spans
        .iter()
        .map(|s| {
            (
                s.int(2).unwrap_or(0),
                s.int(1).unwrap_or(0),
                s.int(3).unwrap_or(0),
            )
        })
        .collect();
    let mut names = BTreeSet::new();
    for span in &spans {
        let name = span.text(5).ok_or("no operationName")?;
        names.insert(name.clone());
        let tags = tags(span);
        for key in [
            "process_group",
            "route_hop",
            "worker_id",
            "seq",
            "scenario",
            "status",
        ] {
            check(tags.contains_key(key), || {
                format!("{name}: no tag {key} in {tags:?}")
            })?;
        }
        let parent = span.int(4).unwrap_or(0);
        let refs = span.list(6);
        if name == "source" {
            check(parent == 0 && refs.is_empty(), || {
                format!("source has a parent: {span:?}")
            })?;
            continue;
        }
        // The parent is a ChildOf reference (refType 0) to a span of the same trace.
        let child_of = refs
            .iter()
            .find(|r| r.int(1) == Some(0))
            .ok_or_else(|| format!("{name}: no ChildOf in {refs:?}"))?;
        let key = (
            child_of.int(3).unwrap_or(0),
            child_of.int(2).unwrap_or(0),
            child_of.int(4).unwrap_or(0),
        );
        check(ids.contains(&key), || {
            format!("{name}: ChildOf {key:?} is not a span of the run")
        })?;
    }
    check(names.len() == NODES, || {
        format!("operation names {names:?}")
    })?;
    bridge_error_mapping(&agent)
}

/// Two groups (`ticker` | `fail_on`, `record`) where `fail_on` fails on record 7 of 10, under
/// the error `policy`, writing into `dir`, with `observability` (YAML indented for its block).
fn fail_on_config(dir: &Path, policy: &str, observability: &str) -> String {
    format!(
        r#"
version: 1
scenario: {{name: fail-on}}
pipeline: {{nodes: [ticker, fail_on, record]}}
nodes: {{ticker: {{records: 10}}, fail_on: {{seq: 7, panic: false}}}}
adapters:
  sink: {{kind: file, path: "{out}"}}
  dead_letter: {{kind: file, path: "{dead}"}}
runtime:
  on_node_error: {policy}
  platform:
    bootstrap: {{mode: process_supervisor}}
    execution_ipc: {{control: {{transport: tcp_local}}}}
    process_groups: [{{name: g1, nodes: [ticker]}}, {{name: g2, nodes: [fail_on, record]}}]
    health: {{enabled: false}}
  observability:
{observability}"#,
        out = dir.join("out.txt").display(),
        dead = dir.join("dead.jsonl").display(),
    )
}

/// A node error under `dead_letter` becomes the tag `error=true` and a log with
/// `event=error`, `error.kind` and `message` on that node's span.
fn bridge_error_mapping(agent: &UdpSocket) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let observability = format!(
        "    tracing:\n      enabled: true\n      exporters: [{{kind: opentracing_bridge, settings: {{agent: \"{}\"}}}}]\n",
        agent.local_addr()?
    );
    let yaml = fail_on_config(dir.path(), "dead_letter", &observability);
    let config = config::load_str(&yaml, &registry())
        .map_err(|r| r.to_string())?
        .config;
    run(&config)?;
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Ok(n) = agent.recv(&mut buf) else {
            continue;
        };
        let (_, spans) = decode_emit_batch(&buf[..n])?;
        for span in spans {
            if span.text(5).as_deref() != Some("fail_on")
                || tags(&span).get("seq").map(String::as_str) != Some("7")
            {
                continue;
            }
            let tags = tags(&span);
            check(
                tags.get("error").map(String::as_str) == Some("true")
                    && tags.get("status").map(String::as_str) == Some("error"),
                || format!("error tags {tags:?}"),
            )?;
            let logs = span.list(11);
            let fields: BTreeMap<String, String> = logs
                .iter()
                .flat_map(|log| {
                    log.list(2)
                        .iter()
                        .filter_map(|f| Some((f.text(1)?, f.text(3)?)))
                })
                .collect();
            check(
                fields.get("event").map(String::as_str) == Some("error")
                    && fields.contains_key("error.kind")
                    && fields
                        .get("message")
                        .is_some_and(|m| m.contains(test_nodes::FAIL_ON_MESSAGE)),
                || format!("error log {fields:?}"),
            )?;
            return Ok(());
        }
    }
    Err("no span of `fail_on` on seq 7 arrived".into())
}

// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Endpoint {
    /// Nothing listens: connections are refused.
    Refusing,
    /// Accepts connections and never answers.
    Hanging,
}

/// A TCP endpoint of `kind`; the listener (hanging) lives as long as the returned value.
fn dead_endpoint(kind: Endpoint) -> Result<(String, Option<TcpListener>), Failed> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr: SocketAddr = listener.local_addr()?;
    match kind {
        Endpoint::Refusing => {
            drop(listener);
            Ok((format!("http://{addr}"), None))
        }
        Endpoint::Hanging => Ok((format!("http://{addr}"), Some(listener))),
    }
}

/// A dead OTLP endpoint is named in a WARN line (exporter, endpoint, error), once and not
/// once per failed batch; against a hanging endpoint the end of the run waits no longer than
/// the exporter's timeout and the summary says how long it waited and that it gave up.
fn export_failures_reported() -> Result<(), Failed> {
    const LINES: usize = 3_000;
    let fixture = Fixture::new(LINES as u64)?;
    let (refusing, _) = dead_endpoint(Endpoint::Refusing)?;
    let exporters = format!(
        "[{{kind: otel_otlp, settings: {{endpoint: \"{refusing}\", timeout_seconds: 1.0}}}}]"
    );
    let output = cli_run(&fixture, "refusing", &exporters, &[])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    check(output.status.success(), || stderr.to_string())?;
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("span export via otel_otlp"))
        .collect();
    check(
        !warnings.is_empty() && warnings.iter().all(|l| l.contains(&refusing)),
        || format!("no WARN naming {refusing}:\n{stderr}"),
    )?;
    // 27,000 spans in batches of 512: dozens of failed calls, a handful of lines at most.
    check(warnings.len() <= 3, || {
        format!(
            "{} warning lines: not rate-limited\n{stderr}",
            warnings.len()
        )
    })?;

    let (hanging, _listener) = dead_endpoint(Endpoint::Hanging)?;
    let exporters = format!(
        "[{{kind: otel_otlp, settings: {{endpoint: \"{hanging}\", timeout_seconds: 1.0}}}}]"
    );
    let started = std::time::Instant::now();
    let output = cli_run(&fixture, "hanging", &exporters, &[])?;
    check(output.status.success(), || {
        String::from_utf8_lossy(&output.stderr).into_owned()
    })?;
    let waited = exit_wait_ms(&output)?;
    check(waited <= 2_500, || {
        format!("exit wait {waited} ms for a 1 s timeout")
    })?;
    check(started.elapsed().as_secs() < 60, || {
        format!("the run took {:?}", started.elapsed())
    })?;
    // With no timeout in the config, OTEL_EXPORTER_OTLP_TIMEOUT (milliseconds) decides.
    let exporters = format!("[{{kind: otel_otlp, settings: {{endpoint: \"{hanging}\"}}}}]");
    let output = cli_run(
        &fixture,
        "hanging-env",
        &exporters,
        &[("OTEL_EXPORTER_OTLP_TIMEOUT", "300")],
    )?;
    let waited = exit_wait_ms(&output)?;
    // The end of a run waits at least its 2 s drain budget; without the variable it would be
    // the default 10 s.
    check(waited <= 2_500, || {
        format!("exit wait {waited} ms with OTEL_EXPORTER_OTLP_TIMEOUT=300")
    })?;
    // A variable that cannot be used is said, not ignored.
    let (refusing, _) = dead_endpoint(Endpoint::Refusing)?;
    let exporters = format!("[{{kind: otel_otlp, settings: {{endpoint: \"{refusing}\"}}}}]");
    let output = cli_run(
        &fixture,
        "bad-env",
        &exporters,
        &[
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ],
    )?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    for variable in ["OTEL_TRACES_SAMPLER", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
        check(
            stderr
                .lines()
                .any(|l| l.starts_with("warning:") && l.contains(variable)),
            || format!("no warning about {variable}:\n{stderr}"),
        )?;
    }
    Ok(())
}

/// How long the end of a run waited for the OTLP exporter, from its summary's span line.
fn exit_wait_ms(output: &std::process::Output) -> Result<u64, Failed> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("spans via otel_otlp"))
        .ok_or_else(|| format!("no span line in the summary:\n{stdout}"))?;
    let waited = line
        .split("exit wait ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|ms| ms.parse().ok())
        .ok_or_else(|| format!("no exit wait in {line:?}"))?;
    Ok(waited)
}

/// P5PRE-OBS-03: the output is identical to tracing off and every span of the exporter is
/// counted failed (every record sampled, 2,000 lines). Then R10's figure: the same dead
/// endpoint at the bundled OTLP config's sampling (1%) against tracing off, alternating three
/// rounds on `STREAM_KERNEL_R10_LINES` records (the median ratio is printed, not asserted).
fn obs_03(kind: Endpoint) -> Result<(), Failed> {
    const LINES: usize = 2_000;
    let fixture = Fixture::new(LINES as u64)?;
    let off_dir = fixture.out("off")?;
    run(&traced_config("4proc", "", &fixture.input, &off_dir)?)?;
    let (endpoint, _listener) = dead_endpoint(kind)?;
    let on_dir = fixture.out("on")?;
    let config = traced_config(
        "4proc",
        &otlp_tracing(Protocol::Grpc, &endpoint, ""),
        &fixture.input,
        &on_dir,
    )?;
    let on = run(&config)?;
    check(
        std::fs::read(off_dir.join("output.txt"))? == std::fs::read(on_dir.join("output.txt"))?,
        || "output differs".into(),
    )?;
    let counters = only(&on.spans, "otel_otlp")?;
    adds_up(&counters)?;
    check(counters.produced == (LINES * NODES) as u64, || {
        format!("{counters:?}")
    })?;
    // Every span that reached the exporter failed; at sample_ratio 1.0 a burst can also
    // overflow a worker's telemetry ring (counted as dropped, never waited for).
    check(
        counters.exported == 0
            && counters.failed > 0
            && counters.failed + counters.dropped == counters.produced,
        || format!("{counters:?}"),
    )?;
    r10_throughput(kind, &endpoint)
}

/// R10: throughput with the endpoint dead for the whole run, at 1% sampling, against tracing
/// off on the same input, three alternating rounds; output identical in every round.
fn r10_throughput(kind: Endpoint, endpoint: &str) -> Result<(), Failed> {
    let lines: u64 = std::env::var("STREAM_KERNEL_R10_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let fixture = Fixture::new(lines)?;
    let mut ratios = Vec::new();
    let mut counted = 0;
    for round in 0..3 {
        let off_dir = fixture.out(&format!("r10-off-{round}"))?;
        let off = run(&traced_config("4proc", "", &fixture.input, &off_dir)?)?;
        let on_dir = fixture.out(&format!("r10-on-{round}"))?;
        let tracing = otlp_tracing(Protocol::Grpc, endpoint, "")
            .replace("sample_ratio: 1.0", "sample_ratio: 0.01");
        let on = run(&traced_config("4proc", &tracing, &fixture.input, &on_dir)?)?;
        check(
            std::fs::read(off_dir.join("output.txt"))? == std::fs::read(on_dir.join("output.txt"))?,
            || "output differs".into(),
        )?;
        let counters = only(&on.spans, "otel_otlp")?;
        adds_up(&counters)?;
        counted = counters.failed + counters.dropped;
        ratios.push(off.elapsed.as_secs_f64() / on.elapsed.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "R10 OTLP endpoint {} for the whole run ({lines} records, 1% sampled, 3 rounds): output identical; {counted} spans failed or dropped, all counted; throughput {:.2}x tracing off (median; rounds {:.2}-{:.2})",
        match kind {
            Endpoint::Refusing => "down",
            Endpoint::Hanging => "hanging",
        },
        ratios[1],
        ratios[0],
        ratios[2],
    );
    Ok(())
}

/// OBS-04: a 64-item queue flooded (every record sampled, an exporter that hangs and one that
/// writes a file): for each policy, every exporter's counters add up exactly.
fn obs_04() -> Result<(), Failed> {
    let fixture = Fixture::new(5_000)?;
    let (endpoint, _listener) = dead_endpoint(Endpoint::Hanging)?;
    for policy in ["drop_newest", "drop_oldest"] {
        let dir = fixture.out(policy)?;
        let tracing = format!(
            "tracing:\n  enabled: true\n  sample_ratio: 1.0\n  queue: {{max_items: 64, drop_policy: {policy}, export_batch: 16, flush_interval_ms: 10}}\n  exporters:\n    - {{kind: otel_otlp, settings: {{protocol: grpc, endpoint: \"{endpoint}\", timeout_seconds: 0.2}}}}\n    - {{kind: jsonl, settings: {{path: \"{}\"}}}}\n",
            dir.join("spans.jsonl").display()
        );
        let summary = run(&traced_config("inline", &tracing, &fixture.input, &dir)?)?;
        let otlp = only(&summary.spans, "otel_otlp")?;
        let jsonl = only(&summary.spans, "jsonl")?;
        // Every exporter sees every span (bad input lines end early: fewer than 9 each).
        check(
            otlp.produced == jsonl.produced && otlp.produced > 4_000 * NODES as u64,
            || format!("{policy}: {otlp:?} / {jsonl:?}"),
        )?;
        for c in [&otlp, &jsonl] {
            adds_up(c)?;
        }
        check(otlp.dropped > 0 && otlp.exported == 0, || {
            format!("{policy}: the flood did not overflow: {otlp:?}")
        })?;
        let lines = std::fs::read_to_string(dir.join("spans.jsonl"))?
            .lines()
            .count() as u64;
        check(lines == jsonl.exported, || {
            format!("{policy}: {lines} lines for {jsonl:?}")
        })?;
        println!("OBS-04 {policy}: otlp {otlp:?}; jsonl {jsonl:?}");
    }
    Ok(())
}

/// Spans of a jsonl file grouped by trace id.
fn jsonl_traces(path: &Path) -> Result<BTreeMap<String, Vec<serde_json::Value>>, Failed> {
    let mut traces: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for line in std::fs::read_to_string(path)?.lines() {
        let span: serde_json::Value = serde_json::from_str(line)?;
        let trace = span["trace_id"].as_str().ok_or("no trace_id")?.to_string();
        traces.entry(trace).or_default().push(span);
    }
    Ok(traces)
}

/// OBS-05: `sample_ratio: 0.1` on 100k records: 10% +- 1% of the records are traced, each
/// trace complete (every node, one chain).
fn obs_05() -> Result<(), Failed> {
    const LINES: u64 = 100_000;
    let fixture = Fixture::new(LINES)?;
    let dir = fixture.out("run")?;
    let tracing = format!(
        "tracing:\n  enabled: true\n  sample_ratio: 0.1\n  queue: {{max_items: 1000000}}\n  exporters: [{{kind: jsonl, settings: {{path: \"{}\"}}}}]\n",
        dir.join("spans.jsonl").display()
    );
    let summary = run(&traced_config("4proc", &tracing, &fixture.input, &dir)?)?;
    let counters = only(&summary.spans, "jsonl")?;
    adds_up(&counters)?;
    check(counters.dropped == 0, || format!("{counters:?}"))?;
    let traces = jsonl_traces(&dir.join("spans.jsonl"))?;
    let share = traces.len() as f64 / LINES as f64;
    println!(
        "OBS-05: {} of {LINES} records traced ({:.2}%)",
        traces.len(),
        share * 100.0
    );
    check((0.09..=0.11).contains(&share), || format!("{share}"))?;
    // Complete: one root, every parent present, and every record that reached the sink has
    // all its spans (a bad input line ends at the parser, dead-lettered).
    let mut full = 0;
    for (trace, spans) in &traces {
        let ids: BTreeSet<String> = spans.iter().map(|s| s["span_id"].to_string()).collect();
        let roots = spans
            .iter()
            .filter(|s| s["parent_span_id"].is_null())
            .count();
        check(roots == 1, || format!("trace {trace}: {roots} roots"))?;
        check(
            spans
                .iter()
                .filter(|s| !s["parent_span_id"].is_null())
                .all(|s| ids.contains(&s["parent_span_id"].to_string())),
            || format!("trace {trace}: broken chain"),
        )?;
        let reached_sink = spans.iter().any(|s| s["name"] == "sink");
        check(!reached_sink || spans.len() == NODES, || {
            format!("trace {trace}: {} spans", spans.len())
        })?;
        full += usize::from(reached_sink);
    }
    check(full as f64 > traces.len() as f64 * 0.95, || {
        format!("only {full} of {} traces reached the sink", traces.len())
    })
}

/// OBS-06: `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_SERVICE_NAME` with a settings-less
/// `otel_otlp` exporter: spans arrive, under that service name (the CLI, as a user runs it).
fn obs_06() -> Result<(), Failed> {
    const LINES: usize = 50;
    let fixture = Fixture::new(LINES as u64)?;
    let receiver = Receiver::start(Protocol::Grpc)?;
    let output = cli_run(
        &fixture,
        "obs06",
        "[{kind: otel_otlp}]",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "obs06-service"),
        ],
    )?;
    check(output.status.success(), || {
        format!("run failed: {}", String::from_utf8_lossy(&output.stderr))
    })?;
    let spans = wait_for_spans(&receiver, LINES * NODES);
    check(spans.len() == LINES * NODES, || {
        format!("{} spans received", spans.len())
    })?;
    check(
        spans
            .iter()
            .all(|s| s.resource.get("service.name").map(String::as_str) == Some("obs06-service")),
        || "service.name is not OTEL_SERVICE_NAME".into(),
    )
}

/// The CLI on the 4-group config with tracing on through `exporters` (a YAML flow sequence),
/// with `env` set and every other OpenTelemetry variable of this process removed.
fn cli_run(
    fixture: &Fixture,
    name: &str,
    exporters: &str,
    env: &[(&str, &str)],
) -> Result<std::process::Output, Failed> {
    let dir = fixture.out(name)?;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/fund_load_experiment_4proc.yml");
    let mut yaml = std::fs::read_to_string(path)?;
    yaml.push_str(&format!(
        "    health: {{enabled: false}}\n  observability:\n    tracing:\n      enabled: true\n      exporters: {exporters}\n"
    ));
    let config = dir.join("config.yml");
    std::fs::write(&config, yaml)?;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_stream-kernel"));
    command
        .args(["run", "-c"])
        .arg(&config)
        .arg("--input")
        .arg(&fixture.input)
        .arg("--output")
        .arg(dir.join("out.txt"));
    for (key, _) in std::env::vars() {
        if key.starts_with("OTEL_") || key == "TRACEPARENT" {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    Ok(command.output()?)
}

/// Spans in a jsonl trace file (0 when the file was never written).
fn spans_in(path: &Path) -> Result<usize, Failed> {
    Ok(match std::fs::read_to_string(path) {
        Ok(text) => text.lines().filter(|l| !l.trim().is_empty()).count(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e.into()),
    })
}

/// The OpenTelemetry SDK variables a config leaves to the environment: the protocol (an HTTP
/// endpoint with no protocol in the config works once `OTEL_EXPORTER_OTLP_PROTOCOL` says
/// `http/protobuf`), the sampler (`always_off`, and the parent-based default following a
/// `TRACEPARENT` whose flags are `00`, which `always_on` overrides), and `OTEL_SDK_DISABLED`.
fn otel_env_spec() -> Result<(), Failed> {
    const LINES: usize = 40;
    let fixture = Fixture::new(LINES as u64)?;
    let http = Receiver::start(Protocol::Http)?;
    let output = cli_run(
        &fixture,
        "protocol",
        "[{kind: otel_otlp}]",
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", http.endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ],
    )?;
    check(output.status.success(), || {
        String::from_utf8_lossy(&output.stderr).into_owned()
    })?;
    let spans = wait_for_spans(&http, LINES * NODES);
    check(spans.len() == LINES * NODES, || {
        format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf: {} spans received",
            spans.len()
        )
    })?;

    let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, Env<'_>, usize); 4] = [
        ("default", &[], LINES * NODES),
        ("always-off", &[("OTEL_TRACES_SAMPLER", "always_off")], 0),
        ("parent-unsampled", &[("TRACEPARENT", unsampled)], 0),
        (
            "always-on-over-parent",
            &[
                ("TRACEPARENT", unsampled),
                ("OTEL_TRACES_SAMPLER", "always_on"),
            ],
            LINES * NODES,
        ),
    ];
    for (name, env, expected) in cases {
        let trace = fixture.out(name)?.join("trace.jsonl");
        let exporters = format!(
            "[{{kind: jsonl, settings: {{path: \"{}\"}}}}]",
            trace.display()
        );
        let output = cli_run(&fixture, name, &exporters, env)?;
        check(output.status.success(), || {
            String::from_utf8_lossy(&output.stderr).into_owned()
        })?;
        let spans = spans_in(&trace)?;
        check(spans == expected, || {
            format!("{name} {env:?}: {spans} spans, expected {expected}")
        })?;
    }

    let grpc = Receiver::start(Protocol::Grpc)?;
    let trace = fixture.out("disabled")?.join("trace.jsonl");
    let exporters = format!(
        "[{{kind: otel_otlp, settings: {{endpoint: \"{}\"}}}}, {{kind: jsonl, settings: {{path: \"{}\"}}}}]",
        grpc.endpoint,
        trace.display()
    );
    let output = cli_run(
        &fixture,
        "disabled",
        &exporters,
        &[("OTEL_SDK_DISABLED", "true")],
    )?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    check(
        output.status.success() && stderr.contains("OTEL_SDK_DISABLED"),
        || stderr.to_string(),
    )?;
    check(spans_in(&trace)? == LINES * NODES, || {
        "OTEL_SDK_DISABLED stopped the engine's own jsonl exporter".into()
    })?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    check(grpc.spans().is_empty(), || {
        format!(
            "OTEL_SDK_DISABLED=true, yet {} spans reached OTLP",
            grpc.spans().len()
        )
    })
}

/// P5PRE-SMOKE-03: each sampled record's spans form one parent/child chain through all four
/// groups (source -> ... -> sink); with `TRACEPARENT` set, the whole run joins the caller's
/// trace under the caller's span.
fn smoke_03() -> Result<(), Failed> {
    const LINES: usize = 300;
    let fixture = Fixture::new(LINES as u64)?;
    let dir = fixture.out("run")?;
    let spans_path = dir.join("spans.jsonl");
    let tracing = format!(
        "tracing:\n  enabled: true\n  sample_ratio: 1.0\n  exporters: [{{kind: jsonl, settings: {{path: \"{}\"}}}}]\n",
        spans_path.display()
    );
    run(&traced_config("4proc", &tracing, &fixture.input, &dir)?)?;
    let traces = jsonl_traces(&spans_path)?;
    check(traces.len() == LINES, || format!("{} traces", traces.len()))?;
    for (trace, spans) in &traces {
        // Walk from the root: each span has exactly one child, ending at the sink.
        let mut parent = serde_json::Value::Null;
        let mut names = Vec::new();
        let mut groups = BTreeSet::new();
        loop {
            let children: Vec<_> = spans
                .iter()
                .filter(|s| s["parent_span_id"] == parent)
                .collect();
            match children.as_slice() {
                [] => break,
                [only] => {
                    names.push(only["name"].as_str().unwrap_or("").to_string());
                    groups.insert(only["process_group"].as_str().unwrap_or("").to_string());
                    parent = only["span_id"].clone();
                }
                many => {
                    return Err(
                        format!("trace {trace}: {} children of {parent}", many.len()).into(),
                    );
                }
            }
        }
        check(
            names.len() == NODES
                && names.first().map(String::as_str) == Some("source")
                && names.last().map(String::as_str) == Some("sink"),
            || format!("trace {trace}: chain {names:?}"),
        )?;
        check(groups.len() == GROUPS.len(), || {
            format!("trace {trace}: groups {groups:?}")
        })?;
    }

    // TRACEPARENT: the CLI run (a child process) becomes part of the caller's trace.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let config = dir.join("config.yml");
    let tp_spans = dir.join("tp.jsonl");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/fund_load_experiment_4proc.yml");
    let mut yaml = std::fs::read_to_string(path)?;
    yaml.push_str(&format!(
        "    health: {{enabled: false}}\n  observability:\n    tracing:\n      enabled: true\n      exporters: [{{kind: jsonl, settings: {{path: \"{}\"}}}}]\n",
        tp_spans.display()
    ));
    std::fs::write(&config, yaml)?;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stream-kernel"))
        .args(["run", "-c"])
        .arg(&config)
        .arg("--input")
        .arg(&fixture.input)
        .arg("--output")
        .arg(dir.join("tp-out.txt"))
        .env("TRACEPARENT", format!("00-{caller_trace}-{caller_span}-01"))
        .output()?;
    check(output.status.success(), || {
        String::from_utf8_lossy(&output.stderr).into_owned()
    })?;
    let traces = jsonl_traces(&tp_spans)?;
    check(
        traces.keys().collect::<Vec<_>>() == vec![caller_trace],
        || format!("traces {:?}", traces.keys().take(3).collect::<Vec<_>>()),
    )?;
    let spans = &traces[caller_trace];
    check(spans.len() == LINES * NODES, || {
        format!("{} spans", spans.len())
    })?;
    let roots: Vec<_> = spans.iter().filter(|s| s["name"] == "source").collect();
    check(
        roots.iter().all(|s| s["parent_span_id"] == caller_span),
        || "a source span is not a child of the caller's span".into(),
    )
}

/// P5PRE-LOG-01: every lifecycle event of a run appears exactly once in the stdout log and
/// once in the jsonl log, with its fields; at `level: debug` they appear, at `info` a
/// `lifecycle_events.level: debug` event stream is hidden.
fn log_01() -> Result<(), Failed> {
    let fixture = Fixture::new(100)?;
    let dir = fixture.out("run")?;
    let log_path = dir.join("log.jsonl");
    let run_cli = |lifecycle_level: &str,
                   log_level: &str,
                   log_path: &Path|
     -> Result<std::process::Output, Failed> {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/fund_load_experiment_4proc.yml");
        let mut yaml = std::fs::read_to_string(path)?;
        yaml.push_str(&format!(
            "    health: {{enabled: false}}\n  observability:\n    logging:\n      level: {log_level}\n      exporters: [{{kind: stdout}}, {{kind: jsonl, settings: {{path: \"{}\"}}}}]\n      lifecycle_events: {{enabled: true, level: {lifecycle_level}}}\n",
            log_path.display()
        ));
        let config = dir.join(format!("config-{lifecycle_level}-{log_level}.yml"));
        std::fs::write(&config, yaml)?;
        Ok(
            std::process::Command::new(env!("CARGO_BIN_EXE_stream-kernel"))
                .args(["run", "-c"])
                .arg(&config)
                .arg("--input")
                .arg(&fixture.input)
                .arg("--output")
                .arg(dir.join("out.txt"))
                .output()?,
        )
    };
    let output = run_cli("info", "info", &log_path)?;
    check(output.status.success(), || {
        String::from_utf8_lossy(&output.stderr).into_owned()
    })?;
    let console = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Vec<serde_json::Value> = std::fs::read_to_string(&log_path)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let events = [
        "worker_spawned",
        "worker_bootstrap_loaded",
        "worker_ready",
        "worker_running",
        "worker_stopping",
        "worker_stopped",
        "supervisor_start_groups",
        "supervisor_wait_ready",
        "supervisor_start_workload",
        "supervisor_graceful_stop",
    ];
    let is_event =
        |message: &str, event: &str| message == event || message.starts_with(&format!("{event} "));
    for event in events {
        let who: Vec<String> = if event.starts_with("worker_") {
            GROUPS.iter().map(|g| format!("{g}#1")).collect()
        } else {
            vec!["supervisor".to_string()]
        };
        for worker in who {
            let prefix = format!("[{worker} ");
            let in_console = console
                .lines()
                .filter(|l| {
                    l.contains(&prefix)
                        && l.split_once("] ").is_some_and(|(_, m)| is_event(m, event))
                })
                .count();
            let in_json = json
                .iter()
                .filter(|j| {
                    j["worker_id"] == worker.as_str()
                        && is_event(j["message"].as_str().unwrap_or(""), event)
                })
                .count();
            check(in_console == 1 && in_json == 1, || {
                format!(
                    "{event} for {worker}: {in_console} console lines, {in_json} json lines\n{console}"
                )
            })?;
        }
    }
    check(
        console.contains("worker_spawned group=execution.ingress"),
        || "fields missing from the console line".into(),
    )?;
    check(
        json.iter()
            .any(|j| j["message"] == "worker_spawned" && j["group"] == "execution.ingress")
            && json
                .iter()
                .any(|j| j["message"] == "supervisor_start_groups" && j["duration_ms"].is_u64()),
        || "fields missing from the jsonl records".into(),
    )?;
    let hidden_path = dir.join("hidden.jsonl");
    let output = run_cli("debug", "info", &hidden_path)?;
    check(output.status.success(), || {
        String::from_utf8_lossy(&output.stderr).into_owned()
    })?;
    let console = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let hidden = std::fs::read_to_string(&hidden_path).unwrap_or_default();
    check(
        !console.contains("worker_ready") && !hidden.contains("worker_ready"),
        || format!("debug lifecycle events shown at info:\n{console}"),
    )
}

/// `otel_logs_otlp`: the lifecycle events of a CLI run arrive as OTLP log records at a real
/// receiver, with their fields as attributes and the service as resource.
fn log_otlp() -> Result<(), Failed> {
    let fixture = Fixture::new(100)?;
    let dir = fixture.out("run")?;
    let receiver = Receiver::start(Protocol::Grpc)?;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/fund_load_experiment_4proc.yml");
    let mut yaml = std::fs::read_to_string(path)?;
    yaml.push_str(&format!(
        "    health: {{enabled: false}}\n  observability:\n    logging:\n      exporters: [{{kind: otel_logs_otlp, settings: {{protocol: grpc, endpoint: \"{0}\", service_name: logs-test}}}}]\n    tracing:\n      enabled: true\n      sample_ratio: 0.05\n      exporters: [{{kind: otel_otlp, settings: {{endpoint: \"{0}\", service_name: logs-test}}}}]\n",
        receiver.endpoint
    ));
    let config = dir.join("config.yml");
    std::fs::write(&config, yaml)?;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stream-kernel"))
        .args(["run", "-c"])
        .arg(&config)
        .arg("--input")
        .arg(&fixture.input)
        .arg("--output")
        .arg(dir.join("out.txt"))
        .output()?;
    check(output.status.success(), || {
        String::from_utf8_lossy(&output.stderr).into_owned()
    })?;
    let logs = receiver.logs();
    for group in GROUPS {
        let worker = format!("{group}#1");
        let spawned = logs
            .iter()
            .filter(|l| {
                l.body.starts_with("worker_spawned")
                    && l.attributes.get("worker_id") == Some(&worker)
            })
            .count();
        check(spawned == 1, || {
            format!("worker_spawned for {worker}: {spawned} records in {logs:?}")
        })?;
    }
    let start = logs
        .iter()
        .find(|l| l.body.starts_with("supervisor_start_groups"))
        .ok_or("no supervisor_start_groups record")?;
    check(
        start.int_attributes.iter().any(|k| k == "duration_ms")
            && start.severity == "INFO"
            && start.resource.get("service.name").map(String::as_str) == Some("logs-test"),
        || format!("duration_ms is not an integer attribute: {start:?}"),
    )?;
    // One identity scheme for both signals: a span's `service.instance.id` is
    // `worker/pid@host`, exactly what the log records about that worker name (worker_id, pid),
    // and the supervisor's own log resource follows the same scheme.
    let spans = wait_for_spans(&receiver, 1);
    let span_instances: BTreeSet<String> = spans
        .iter()
        .filter_map(|s| s.resource.get("service.instance.id").cloned())
        .collect();
    let host = start.resource.get("host.name").cloned().unwrap_or_default();
    let logged_instances: BTreeSet<String> = logs
        .iter()
        .filter_map(|l| {
            Some(format!(
                "{}/{}@{host}",
                l.attributes.get("worker_id")?,
                l.attributes.get("pid")?
            ))
        })
        .collect();
    check(
        !span_instances.is_empty() && span_instances.is_subset(&logged_instances),
        || format!("span instances {span_instances:?} not named by logs {logged_instances:?}"),
    )?;
    // pid is a number, as the resource's process.pid is; every record after the run started
    // carries the run id; the resource names the version.
    check(start.int_attributes.iter().any(|k| k == "pid"), || {
        format!("pid is not an integer attribute: {start:?}")
    })?;
    check(
        start.resource.get("service.version").map(String::as_str)
            == Some(env!("CARGO_PKG_VERSION")),
        || format!("no service.version on the log resource: {start:?}"),
    )?;
    let spawned = logs
        .iter()
        .filter(|l| l.body.starts_with("worker_spawned"))
        .collect::<Vec<_>>();
    check(
        !spawned.is_empty()
            && spawned.iter().all(|l| {
                l.attributes
                    .get("stream_kernel.run_id")
                    .is_some_and(|id| id.len() == 16)
            }),
        || format!("log records without the run id: {spawned:?}"),
    )?;
    let own = start
        .resource
        .get("service.instance.id")
        .cloned()
        .unwrap_or_default();
    check(
        own.starts_with("supervisor/") && own.ends_with(&format!("@{host}")),
        || format!("supervisor log resource instance {own:?}"),
    )
}

/// A private CA and a `localhost` server certificate it signed: (CA PEM, server cert and key).
fn private_ca() -> Result<(String, otlp_receiver::ServerCert), Failed> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "stream-kernel test CA");
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate()?;
    let server = rcgen::CertificateParams::new(vec!["localhost".to_string()])?
        .signed_by(&server_key, &issuer)?;
    Ok((
        ca_cert.pem(),
        otlp_receiver::ServerCert {
            cert_pem: server.pem(),
            key_pem: server_key.serialize_pem(),
        },
    ))
}

/// An `https://` OTLP endpoint whose certificate a private CA signed: with the CA in
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` every span arrives; without it the handshake fails and
/// every span is counted failed, the run itself unharmed.
fn otlp_over_tls(protocol: Protocol) -> Result<(), Failed> {
    const LINES: usize = 30;
    let fixture = Fixture::new(LINES as u64)?;
    let (ca_pem, server) = private_ca()?;
    let ca = fixture.out("ca")?.join("ca.pem");
    std::fs::write(&ca, &ca_pem)?;
    let receiver = Receiver::start_tls(protocol, &server)?;
    let protocol_name = match protocol {
        Protocol::Grpc => "grpc",
        Protocol::Http => "http/protobuf",
    };
    let exporters = format!(
        "[{{kind: otel_otlp, settings: {{protocol: {protocol_name}, endpoint: \"{}\", timeout_seconds: 2.0}}}}]",
        receiver.endpoint
    );
    let ca_path = ca.display().to_string();
    let output = cli_run(
        &fixture,
        &format!("tls-{protocol_name}").replace('/', "-"),
        &exporters,
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_path.as_str())],
    )?;
    check(output.status.success(), || {
        String::from_utf8_lossy(&output.stderr).into_owned()
    })?;
    let spans = wait_for_spans(&receiver, LINES * NODES);
    check(spans.len() == LINES * NODES, || {
        format!(
            "{} of {} spans over TLS\n{}",
            spans.len(),
            LINES * NODES,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let untrusted = cli_run(
        &fixture,
        &format!("untrusted-{protocol_name}").replace('/', "-"),
        &exporters,
        &[],
    )?;
    let stdout = String::from_utf8_lossy(&untrusted.stdout);
    check(untrusted.status.success(), || {
        String::from_utf8_lossy(&untrusted.stderr).into_owned()
    })?;
    check(
        stdout.contains(&format!("{} produced, 0 exported", LINES * NODES)),
        || format!("an untrusted certificate was accepted:\n{stdout}"),
    )
}

/// A node error's log line carries the failed record's trace id and the failing node's span
/// id, the same ids as the span that records the error (jsonl logs and spans).
fn error_log_carries_trace_ids() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (spans_path, logs_path) = (
        dir.path().join("spans.jsonl"),
        dir.path().join("logs.jsonl"),
    );
    let observability = format!(
        "    logging:\n      exporters: [{{kind: jsonl, settings: {{path: \"{}\"}}}}]\n    tracing:\n      enabled: true\n      exporters: [{{kind: jsonl, settings: {{path: \"{}\"}}}}]\n",
        logs_path.display(),
        spans_path.display()
    );
    let yaml = fail_on_config(dir.path(), "fail", &observability);
    let config = config::load_str(&yaml, &registry())
        .map_err(|r| r.to_string())?
        .config;
    let _ = run_supervised(&config, &registry(), &SupervisorOptions::default())
        .map_err(|e| e.to_string())?;
    let spans = std::fs::read_to_string(&spans_path)?;
    let failed_span: serde_json::Value = spans
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|s| s["name"] == "fail_on" && s["seq"] == 7)
        .ok_or("no span of fail_on on seq 7")?;
    let logs = std::fs::read_to_string(&logs_path)?;
    let error_line: serde_json::Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| {
            l["level"] == "ERROR"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("on seq 7"))
        })
        .ok_or_else(|| format!("no error line for seq 7 in\n{logs}"))?;
    check(
        error_line["trace_id"] == failed_span["trace_id"]
            && error_line["span_id"] == failed_span["span_id"],
        || format!("log {error_line} vs span {failed_span}"),
    )?;
    check(error_line["pid"].is_u64(), || {
        format!("pid is not a number: {error_line}")
    })
}
