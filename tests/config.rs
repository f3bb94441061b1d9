//! The config contract (docs/configuration.md): strict types, ranges, allowed values, unknown keys with
//! hints, cross-field rules, all errors at once sorted by path, and no panic on hostile input.
//! Every test asserts the dotted path and the stable code of each error it expects.

use serde_norway::Value;
use stream_kernel::apps::fund_load;
use stream_kernel::config::{self, ConfigErrorCode as Code, ConfigReport, LoadedConfig};

/// A complete, valid 4-group config (the docs/configuration.md example with every node placed).
const FULL_EXAMPLE: &str = r#"
version: 1
scenario: {name: baseline}
pipeline:
  nodes: [source, parse_load_attempt, compute_time_keys, idempotency_gate,
          compute_features, evaluate_policies, update_windows, format_output, sink]
nodes:
  compute_features: {monday_multiplier: {enabled: false, multiplier: 2.0}, prime_gate: {enabled: false}}
adapters:
  source: {kind: file, path: input.txt}
  sink:   {kind: file, path: output.txt}
  dead_letter: {kind: file, path: rejects.jsonl}
runtime:
  ordering: {sink_mode: source_seq}
  platform:
    bootstrap: {mode: process_supervisor}
    execution_ipc:
      transport: shared_memory
      ring_bytes: 4194304
      validate_payloads: true
      control:
        transport: tcp_local
        bind_host: 127.0.0.1
        bind_port: 0
        auth: {mode: hmac, ttl_seconds: 30, nonce_cache_size: 100000}
        max_payload_bytes: 1048576
    process_groups:
      - name: execution.ingress
        nodes: [source, parse_load_attempt]
        workers: 1
        runner_profile: balanced
        heartbeat_seconds: 5
        start_timeout_seconds: 30
        stop_timeout_seconds: 30
        cpus: [1]
      - {name: execution.features, nodes: [compute_time_keys, idempotency_gate, compute_features]}
      - {name: execution.policy, nodes: [evaluate_policies, update_windows]}
      - {name: execution.egress, nodes: [format_output, sink]}
    readiness:
      enabled: true
      start_work_on_all_groups_ready: true
      readiness_timeout_seconds: 30
    routing_cache: {enabled: true, negative_cache: true, max_entries: 100000}
    health: {enabled: true, bind: "127.0.0.1:0"}
  observability:
    tracing:
      enabled: false
      sample_ratio: 1.0
      queue: {max_items: 65536, drop_policy: drop_newest, export_batch: 512, flush_interval_ms: 1000}
      exporters:
        - {kind: jsonl, settings: {path: trace.jsonl}}
    logging:
      level: info
      exporters: [{kind: stdout}]
      lifecycle_events: {enabled: true, level: info}
"#;

fn load(text: &str) -> Result<LoadedConfig, ConfigReport> {
    config::load_str(text, &fund_load::registry())
}

fn parse(text: &str) -> Value {
    serde_norway::from_str(text).expect("test YAML parses")
}

/// Sets the value at a dotted path (`a.b[0].c`) in a YAML tree, creating mappings on the way.
fn set(root: &mut Value, path: &str, value: Value) {
    let parsed = config::ConfigPath::parse(path);
    let segments: Vec<config::PathSegment> = path_segments(&parsed);
    let mut node = root;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        node = match segment {
            config::PathSegment::Key(key) => {
                let map = node.as_mapping_mut().expect("mapping on the path");
                if last {
                    map.insert(Value::String(key.clone()), value);
                    return;
                }
                map.entry(Value::String(key.clone()))
                    .or_insert_with(|| Value::Mapping(Default::default()))
            }
            config::PathSegment::Index(index) => {
                let seq = node.as_sequence_mut().expect("sequence on the path");
                if last {
                    seq[*index] = value;
                    return;
                }
                &mut seq[*index]
            }
        };
    }
}

fn path_segments(path: &config::ConfigPath) -> Vec<config::PathSegment> {
    // ConfigPath keeps its segments private; rebuild them from the display form.
    let text = path.to_string();
    let mut out = Vec::new();
    for part in text.split('.') {
        let (key, rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        out.push(config::PathSegment::Key(key.to_string()));
        for index in rest.split('[').filter(|s| !s.is_empty()) {
            out.push(config::PathSegment::Index(
                index.trim_end_matches(']').parse().unwrap(),
            ));
        }
    }
    out
}

fn with(path: &str, yaml_value: &str) -> Value {
    let mut root = parse(FULL_EXAMPLE);
    set(&mut root, path, parse(yaml_value));
    root
}

fn errors_of(root: &Value) -> ConfigReport {
    let text = serde_norway::to_string(root).unwrap();
    match load(&text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(report) => report,
    }
}

fn assert_error(report: &ConfigReport, path: &str, code: Code) {
    assert!(
        report.has(path, code),
        "expected {code} at {path}, got:\n{report}"
    );
}

#[test]
fn full_example_is_accepted() {
    load(FULL_EXAMPLE).unwrap_or_else(|r| panic!("{r}"));
}

/// P5PRE-CFG-01: `workers: "2"` and `workers: true` are type errors (no coercion).
#[test]
fn cfg_01_workers_of_the_wrong_type_is_a_type_error() {
    for bad in [r#""2""#, "true"] {
        let report = errors_of(&with("runtime.platform.process_groups[0].workers", bad));
        assert_error(
            &report,
            "runtime.platform.process_groups[0].workers",
            Code::Type,
        );
        assert_eq!(report.errors.len(), 1, "{report}");
    }
}

/// P5PRE-CFG-02: `workers: 0` and `workers: -1` are range errors at the same path.
#[test]
fn cfg_02_workers_out_of_range_is_a_range_error() {
    for bad in ["0", "-1"] {
        let report = errors_of(&with("runtime.platform.process_groups[0].workers", bad));
        assert_error(
            &report,
            "runtime.platform.process_groups[0].workers",
            Code::Range,
        );
        assert_eq!(report.errors.len(), 1, "{report}");
    }
}

/// P5PRE-CFG-03: bad control fields give one error per field, each with its path.
#[test]
fn cfg_03_control_block_errors_each_carry_their_path() {
    let base = "runtime.platform.execution_ipc.control";
    let mut root = parse(FULL_EXAMPLE);
    set(&mut root, &format!("{base}.bind_host"), parse("0.0.0.0"));
    set(&mut root, &format!("{base}.bind_port"), parse("70000"));
    set(&mut root, &format!("{base}.auth.mode"), parse("token"));
    let report = errors_of(&root);
    assert_error(&report, &format!("{base}.bind_host"), Code::NotLoopback);
    assert_error(&report, &format!("{base}.bind_port"), Code::Range);
    assert_error(&report, &format!("{base}.auth.mode"), Code::NotAllowed);
    assert_eq!(report.errors.len(), 3, "{report}");

    let report = errors_of(&with(base, "5"));
    assert_error(&report, base, Code::Type);
    assert_eq!(report.errors.len(), 1, "{report}");
}

/// P5PRE-CFG-04: an unknown tracing exporter kind lists the allowed kinds.
#[test]
fn cfg_04_unknown_tracing_exporter_lists_allowed_kinds() {
    let report = errors_of(&with(
        "runtime.observability.tracing.exporters",
        "[{kind: zipkin_native}]",
    ));
    let path = "runtime.observability.tracing.exporters[0].kind";
    assert_error(&report, path, Code::NotAllowed);
    let message = report.at(path).next().unwrap().to_string();
    for kind in ["jsonl", "stdout", "otel_otlp", "opentracing_bridge"] {
        assert!(message.contains(kind), "{message}");
    }
    assert_eq!(report.errors.len(), 1, "{report}");
}

/// P5PRE-CFG-05, revised: a supervised run without `execution_ipc.control` gets the default
/// control block (loopback TCP, HMAC) rather than an error — defaults mean defaults — and a
/// control block of the wrong type is still an error at its path.
#[test]
fn cfg_05_process_mode_without_a_control_block_gets_the_default_one() {
    let mut root = parse(FULL_EXAMPLE);
    root["runtime"]["platform"]["execution_ipc"]
        .as_mapping_mut()
        .unwrap()
        .remove("control");
    let loaded = load(&serde_norway::to_string(&root).unwrap()).unwrap_or_else(|r| panic!("{r}"));
    let control = loaded
        .config
        .runtime
        .platform
        .execution_ipc
        .control
        .as_ref()
        .expect("the default control block");
    assert_eq!(control.bind_host, "127.0.0.1");
    assert!(loaded.config.to_yaml().contains("control:"));
    let report = errors_of(&with("runtime.platform.execution_ipc.control", "5"));
    assert_error(
        &report,
        "runtime.platform.execution_ipc.control",
        Code::Type,
    );
}

/// P5PRE-CFG-06: bad logging exporter kind and lifecycle level list the allowed values.
#[test]
fn cfg_06_logging_kinds_and_levels_list_allowed_values() {
    let mut root = parse(FULL_EXAMPLE);
    set(
        &mut root,
        "runtime.observability.logging.exporters",
        parse("[{kind: console_colorized}]"),
    );
    set(
        &mut root,
        "runtime.observability.logging.lifecycle_events.level",
        parse("warning"),
    );
    let report = errors_of(&root);
    let kind = "runtime.observability.logging.exporters[0].kind";
    let level = "runtime.observability.logging.lifecycle_events.level";
    assert_error(&report, kind, Code::NotAllowed);
    assert_error(&report, level, Code::NotAllowed);
    let kind_message = report.at(kind).next().unwrap().to_string();
    assert!(kind_message.contains("stdout") && kind_message.contains("otel_logs_otlp"));
    let level_message = report.at(level).next().unwrap().to_string();
    assert!(level_message.contains("info") && level_message.contains("debug"));
    assert_eq!(report.errors.len(), 2, "{report}");
}

/// P5PRE-CFG-07: readiness timeout 0 and `enabled: "yes"` are errors at both paths.
#[test]
fn cfg_07_readiness_errors_at_both_paths() {
    let report = errors_of(&with(
        "runtime.platform.readiness",
        r#"{readiness_timeout_seconds: 0, enabled: "yes"}"#,
    ));
    assert_error(
        &report,
        "runtime.platform.readiness.readiness_timeout_seconds",
        Code::Range,
    );
    assert_error(&report, "runtime.platform.readiness.enabled", Code::Type);
    assert_eq!(report.errors.len(), 2, "{report}");
}

/// Every leaf of `input` is present with an equal value in `printed` (numbers numerically).
fn assert_contains(printed: &Value, input: &Value, path: &str) {
    match (input, printed) {
        (Value::Mapping(want), Value::Mapping(have)) => {
            for (key, value) in want {
                let key_text = key.as_str().unwrap();
                let got = have
                    .get(key)
                    .unwrap_or_else(|| panic!("printed config lacks {path}.{key_text}"));
                assert_contains(got, value, &format!("{path}.{key_text}"));
            }
        }
        (Value::Sequence(want), Value::Sequence(have)) => {
            assert_eq!(want.len(), have.len(), "length of {path}");
            for (i, (w, h)) in want.iter().zip(have).enumerate() {
                assert_contains(h, w, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            assert_eq!(a.as_f64(), b.as_f64(), "number at {path}");
        }
        (want, have) => assert_eq!(want, have, "value at {path}"),
    }
}

/// CFG-08: the full example is accepted and printing it gives the input plus defaults.
#[test]
fn cfg_08_full_example_prints_as_input_plus_defaults() {
    let loaded = load(FULL_EXAMPLE).unwrap_or_else(|r| panic!("{r}"));
    let printed_text = loaded.config.to_yaml();
    let printed = parse(&printed_text);
    assert_contains(&printed, &parse(FULL_EXAMPLE), "");
    // Defaults the input did not spell out are filled in.
    let group = &printed["runtime"]["platform"]["process_groups"][3];
    assert_eq!(group["workers"].as_u64(), Some(1));
    assert_eq!(group["runner_profile"].as_str(), Some("balanced"));
    assert_eq!(group["heartbeat_seconds"].as_f64(), Some(5.0));
    assert_eq!(
        printed["nodes"]["evaluate_policies"]["daily_amount_limit"].as_f64(),
        Some(5000.0)
    );
    assert_eq!(
        printed["nodes"]["compute_time_keys"]["week_start"].as_str(),
        Some("MON")
    );
    assert_eq!(printed["runtime"]["on_node_error"].as_str(), Some("fail"));
    // Printing is a fixed point: the printed config loads to the same model.
    let reloaded = load(&printed_text).unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(reloaded.config, loaded.config);
}

/// CFG-08 (defaults): a minimal config is completed with every documented default.
#[test]
fn cfg_08_minimal_config_gets_every_default() {
    let loaded = load("version: 1\nscenario: {name: s}\n").unwrap_or_else(|r| panic!("{r}"));
    let c = &loaded.config;
    assert_eq!(c.pipeline.nodes.len(), 9);
    assert_eq!(
        c.runtime.platform.bootstrap.mode,
        config::BootstrapMode::Inline
    );
    assert_eq!(c.runtime.platform.execution_ipc.ring_bytes, 4_194_304);
    assert!(c.runtime.platform.execution_ipc.validate_payloads);
    assert_eq!(c.runtime.platform.readiness.readiness_timeout_seconds, 30.0);
    assert_eq!(c.runtime.platform.routing_cache.max_entries, 100_000);
    assert_eq!(c.runtime.platform.health.bind, "127.0.0.1:0");
    assert_eq!(c.runtime.observability.tracing.queue.max_items, 65_536);
    assert_eq!(
        c.runtime.observability.logging.level,
        config::LogLevel::Info
    );
    assert_eq!(c.runtime.ordering.sink_mode, config::SinkMode::SourceSeq);
}

/// CFG-09: five different mistakes give five errors in one report, sorted by path.
#[test]
fn cfg_09_five_mistakes_five_errors_sorted_by_path() {
    let mut root = parse(FULL_EXAMPLE);
    set(&mut root, "scenario.name", parse(r#""""#));
    set(
        &mut root,
        "runtime.platform.process_groups[1].workers",
        parse("0"),
    );
    set(
        &mut root,
        "runtime.platform.execution_ipc.ring_bytes",
        parse("1000"),
    );
    set(
        &mut root,
        "runtime.observability.tracing.sample_ratio",
        parse("1.5"),
    );
    set(&mut root, "adapters.source.kind", parse("kafka"));
    let report = errors_of(&root);
    let paths: Vec<String> = report.errors.iter().map(|e| e.path.to_string()).collect();
    assert_eq!(
        paths,
        [
            "adapters.source.kind",
            "runtime.observability.tracing.sample_ratio",
            "runtime.platform.execution_ipc.ring_bytes",
            "runtime.platform.process_groups[1].workers",
            "scenario.name",
        ],
        "{report}"
    );
    let codes: Vec<Code> = report.errors.iter().map(|e| e.code).collect();
    assert_eq!(
        codes,
        [
            Code::NotAllowed,
            Code::Range,
            Code::Range,
            Code::Range,
            Code::Range
        ]
    );
}

/// CFG-10: a misspelled key is an unknown-key error with a "did you mean" hint.
#[test]
fn cfg_10_typo_gets_a_did_you_mean_hint() {
    let mut root = parse(FULL_EXAMPLE);
    let platform = root["runtime"]["platform"].as_mapping_mut().unwrap();
    let groups = platform.remove("process_groups").unwrap();
    platform.insert(Value::String("proces_groups".into()), groups);
    let report = errors_of(&root);
    let path = "runtime.platform.proces_groups";
    assert_error(&report, path, Code::UnknownKey);
    let message = report.at(path).next().unwrap().to_string();
    assert!(
        message.contains("did you mean `process_groups`"),
        "{message}"
    );
}

/// CFG-11: a node in two groups and a node in none are both reported, naming node and groups.
#[test]
fn cfg_11_double_and_missing_placement_are_both_reported() {
    let mut root = parse(FULL_EXAMPLE);
    // `compute_features` moves from features to policy too; `sink` is dropped from egress.
    set(
        &mut root,
        "runtime.platform.process_groups[2].nodes",
        parse("[evaluate_policies, update_windows, compute_features]"),
    );
    set(
        &mut root,
        "runtime.platform.process_groups[3].nodes",
        parse("[format_output]"),
    );
    let report = errors_of(&root);
    let duplicate = "runtime.platform.process_groups[2].nodes[2]";
    assert_error(&report, duplicate, Code::Duplicate);
    let message = report.at(duplicate).next().unwrap().to_string();
    assert!(
        message.contains("compute_features")
            && message.contains("execution.features")
            && message.contains("execution.policy"),
        "{message}"
    );
    assert_error(&report, "runtime.platform.process_groups", Code::Unplaced);
    let message = report
        .at("runtime.platform.process_groups")
        .next()
        .unwrap()
        .to_string();
    assert!(message.contains("sink"), "{message}");
    assert_eq!(report.errors.len(), 2, "{report}");
}

/// CFG-12: `workers: 2` on a group holding a stateful node without a partition key is rejected
/// with the node's name (experiment: the global prime gate makes the policy nodes global).
#[test]
fn cfg_12_parallel_global_state_is_rejected_with_the_node_name() {
    let mut root = with("runtime.platform.process_groups[2].workers", "2");
    set(
        &mut root,
        "nodes.compute_features.prime_gate.enabled",
        parse("true"),
    );
    let report = errors_of(&root);
    let path = "runtime.platform.process_groups[2].workers";
    assert_error(&report, path, Code::CannotParallelize);
    let messages: Vec<String> = report.at(path).map(|e| e.to_string()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("evaluate_policies") && m.contains("without a partition key")),
        "{messages:?}"
    );
}

/// CFG-12 (the accepted side): in the baseline the policy nodes are partitioned by
/// `customer_id`, so `workers: 2` on their group is valid (records are routed by that key).
#[test]
fn cfg_12_partitioned_policy_group_may_run_two_workers() {
    let root = with("runtime.platform.process_groups[2].workers", "2");
    let text = serde_norway::to_string(&root).unwrap();
    let loaded = load(&text).unwrap_or_else(|report| panic!("rejected:\n{report}"));
    assert_eq!(loaded.config.runtime.platform.process_groups[2].workers, 2);
}

/// CFG-12: a parallel group whose first node has no partition key cannot route records to
/// its partitioned node (`idempotency_gate`, key `id`): rejected naming both nodes.
#[test]
fn cfg_12_parallel_group_needs_a_partitioned_first_node() {
    let report = errors_of(&with("runtime.platform.process_groups[1].workers", "2"));
    let path = "runtime.platform.process_groups[1].workers";
    assert_error(&report, path, Code::CannotParallelize);
    let message = report.at(path).next().unwrap().to_string();
    assert!(
        message.contains("idempotency_gate") && message.contains("compute_time_keys"),
        "{message}"
    );
}

/// CFG-12: source and sink groups stay single workers, naming the node.
#[test]
fn cfg_12_source_and_sink_groups_stay_single() {
    for (group, node) in [(0, "source"), (3, "sink")] {
        let path = format!("runtime.platform.process_groups[{group}].workers");
        let report = errors_of(&with(&path, "2"));
        assert_error(&report, &path, Code::CannotParallelize);
        let message = report.at(&path).next().unwrap().to_string();
        assert!(message.contains(&format!("`{node}`")), "{message}");
    }
}

/// CFG-13: malformed YAML gives one error with line and column.
#[test]
fn cfg_13_malformed_yaml_reports_line_and_column() {
    let report = load("version: 1\nscenario: {name: x\nruntime: [\n").unwrap_err();
    assert_eq!(report.errors.len(), 1, "{report}");
    let error = &report.errors[0];
    assert_eq!(error.code, Code::Syntax);
    assert!(
        error.found.contains("line") && error.found.contains("column"),
        "{error}"
    );
}

/// CFG-13: an empty file (or only comments) is one clear error.
#[test]
fn cfg_13_empty_file_is_one_clear_error() {
    for text in ["", "   \n", "# only a comment\n---\n"] {
        let report = load(text).unwrap_err();
        assert_eq!(report.errors.len(), 1, "{report}");
        assert_eq!(report.errors[0].code, Code::Empty);
    }
}

/// CFG-13: ten megabytes of garbage (random bytes, deep nesting, a long scalar) never panic
/// and give one clear error.
#[test]
fn cfg_13_ten_megabytes_of_garbage_is_one_error_and_no_panic() {
    let registry = fund_load::registry();
    let mut state = 0x1234_5678_u64;
    let random: Vec<u8> = (0..10 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let nested = "[".repeat(10 * 1024 * 1024).into_bytes();
    let long_scalar = "x".repeat(10 * 1024 * 1024).into_bytes();
    let printable: Vec<u8> = random.iter().map(|b| b' ' + b % 94).collect();
    for garbage in [random, nested, long_scalar, printable] {
        let report = config::load_bytes(&garbage, &registry).unwrap_err();
        assert_eq!(report.errors.len(), 1, "{report}");
        let text = report.errors[0].to_string();
        assert!(text.contains("line"), "no position in {text}");
    }
}

/// Node sections are validated by their factories with the same path format.
#[test]
fn node_sections_are_validated_with_dotted_paths() {
    let mut root = parse(FULL_EXAMPLE);
    set(
        &mut root,
        "nodes.evaluate_policies",
        parse("{daily_amount_limt: 10}"),
    );
    set(
        &mut root,
        "nodes.compute_time_keys.week_start",
        parse("MONDAY"),
    );
    set(&mut root, "nodes.not_a_node", parse("{}"));
    let report = errors_of(&root);
    let typo = "nodes.evaluate_policies.daily_amount_limt";
    assert_error(&report, typo, Code::UnknownKey);
    assert!(
        report
            .at(typo)
            .next()
            .unwrap()
            .to_string()
            .contains("daily_amount_limit")
    );
    assert_error(
        &report,
        "nodes.compute_time_keys.week_start",
        Code::NotAllowed,
    );
    assert_error(&report, "nodes.not_a_node", Code::UnknownKey);
}

/// Pipeline edges are type-checked: a mismatch names both nodes and both types.
#[test]
fn edge_type_mismatch_names_both_nodes_and_types() {
    let text =
        "version: 1\nscenario: {name: s}\npipeline: {nodes: [source, compute_time_keys, sink]}\n";
    let report = load(text).unwrap_err();
    assert_error(&report, "pipeline.nodes[1]", Code::EdgeTypeMismatch);
    let message = report.at("pipeline.nodes[1]").next().unwrap().to_string();
    for part in ["source", "compute_time_keys", "Line", "LoadAttempt"] {
        assert!(message.contains(part), "{message}");
    }
}

/// Nodes sharing a per-worker store must be placed in one group.
#[test]
fn split_shared_store_is_rejected() {
    let mut root = parse(FULL_EXAMPLE);
    set(
        &mut root,
        "runtime.platform.process_groups[2].nodes",
        parse("[evaluate_policies]"),
    );
    set(
        &mut root,
        "runtime.platform.process_groups[3].nodes",
        parse("[update_windows, format_output, sink]"),
    );
    let report = errors_of(&root);
    assert_error(
        &report,
        "runtime.platform.process_groups[3].nodes",
        Code::SharedStoreSplit,
    );
}

/// A readiness timeout below a group's start timeout is accepted with a warning.
#[test]
fn short_readiness_timeout_is_a_warning() {
    let root = with("runtime.platform.readiness.readiness_timeout_seconds", "5");
    let loaded = load(&serde_norway::to_string(&root).unwrap()).unwrap();
    assert_eq!(loaded.warnings.len(), 4);
    assert!(
        loaded.warnings[0]
            .to_string()
            .contains("start_timeout_seconds")
    );
}

/// The shipped configs all validate.
#[test]
fn shipped_configs_validate() {
    let registry = fund_load::registry();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/configs");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml") {
            config::load_file(&path, &registry)
                .unwrap_or_else(|r| panic!("{}: {r}", path.display()));
            count += 1;
        }
    }
    assert!(count >= 4);
}

/// Health endpoints serve `/metrics`: a bind beyond loopback (every interface, or a public
/// address) must be asked for with `health.expose: true`.
#[test]
fn health_bind_beyond_loopback_needs_expose() {
    for bind in ["\"0.0.0.0:0\"", "\"8.8.8.8:80\"", "\"[::]:9000\""] {
        let report = errors_of(&with("runtime.platform.health.bind", bind));
        assert_error(&report, "runtime.platform.health.bind", Code::NotLoopback);
        assert!(report.to_string().contains("health.expose"), "{report}");
    }
    let mut exposed = with("runtime.platform.health.bind", "\"0.0.0.0:0\"");
    set(
        &mut exposed,
        "runtime.platform.health.expose",
        parse("true"),
    );
    load(&serde_norway::to_string(&exposed).unwrap()).expect("exposed on purpose");
    load(&serde_norway::to_string(&with("runtime.platform.health.bind", "\"[::1]:0\"")).unwrap())
        .expect("IPv6 loopback");
}

/// A UTF-8 byte order mark (some editors write one) is not "more than one document".
#[test]
fn a_leading_byte_order_mark_is_accepted() {
    let mut bytes = "\u{feff}".as_bytes().to_vec();
    bytes.extend_from_slice(FULL_EXAMPLE.as_bytes());
    config::load_bytes(&bytes, &fund_load::registry()).expect("BOM config loads");
}

/// The known keys of an unknown-key error are listed once each.
#[test]
fn unknown_key_lists_each_known_key_once() {
    let report = errors_of(&with("zzzzzz", "1"));
    let text = report.to_string();
    let listed = text
        .split("known keys: ")
        .nth(1)
        .and_then(|rest| rest.split(", found").next())
        .expect("a known-keys list");
    let keys: Vec<&str> = listed.split(", ").collect();
    let mut unique = keys.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(keys.len(), unique.len(), "{text}");
}

/// An integer beyond 64 bits is reported at its own path, not at the root.
#[test]
fn an_oversized_integer_is_reported_at_its_path() {
    let text = FULL_EXAMPLE.replace("ring_bytes: 4194304", "ring_bytes: 99999999999999999999999");
    let report = load(&text).unwrap_err();
    assert_error(
        &report,
        "runtime.platform.execution_ipc.ring_bytes",
        Code::Range,
    );
}

/// R8 (CI slice): valid configs mutated at random (values swapped for other types, keys
/// renamed, lines dropped or duplicated, bytes flipped) never panic, and every rejection
/// names a path. `tools/reliability.sh` runs more (`STREAM_KERNEL_R8_CASES`).
#[test]
fn r8_mutated_configs_never_panic_and_every_error_names_a_path() {
    let registry = fund_load::registry();
    let cases: u64 = std::env::var("STREAM_KERNEL_R8_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below.max(1)
    };
    let mut bundled = vec![FULL_EXAMPLE.to_string()];
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/configs")).unwrap() {
        bundled.push(std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    let replacements = [
        "true",
        "-1",
        "1e400",
        "\"x\"",
        "[]",
        "{}",
        "~",
        "0",
        "99999999999999999999",
        "\"\\u0000\"",
        "[[[[",
        "&a",
        "*a",
        "!!binary aGk=",
    ];
    let (mut rejected, mut accepted) = (0u64, 0u64);
    for _ in 0..cases {
        let base = &bundled[next(bundled.len() as u64) as usize];
        let mut lines: Vec<String> = base.lines().map(str::to_string).collect();
        for _ in 0..1 + next(3) {
            let at = next(lines.len() as u64) as usize;
            match next(5) {
                0 => {
                    if let Some((key, _)) = lines[at].split_once(": ") {
                        lines[at] = format!(
                            "{key}: {}",
                            replacements[next(replacements.len() as u64) as usize]
                        );
                    }
                }
                1 => lines[at] = lines[at].replacen(|c: char| c.is_ascii_lowercase(), "q", 1),
                2 => {
                    lines.remove(at);
                }
                3 => {
                    let copy = lines[at].clone();
                    lines.insert(at, copy);
                }
                _ => {
                    let mut bytes = lines[at].clone().into_bytes();
                    if !bytes.is_empty() {
                        let i = next(bytes.len() as u64) as usize;
                        bytes[i] = next(256) as u8;
                    }
                    lines[at] = String::from_utf8_lossy(&bytes).into_owned();
                }
            }
            if lines.is_empty() {
                break;
            }
        }
        let text = lines.join("\n");
        match config::load_bytes(text.as_bytes(), &registry) {
            Ok(_) => accepted += 1,
            Err(report) => {
                rejected += 1;
                assert!(
                    !report.errors.is_empty(),
                    "a rejection without errors:\n{text}"
                );
                for error in &report.errors {
                    // Syntax and empty-file errors are about the document itself (with a line
                    // and column), and a key that is not a string at the top level belongs
                    // there; everything else names the key at fault.
                    let at_root = error.path.is_root();
                    let about_the_document = matches!(
                        error.code,
                        Code::Syntax | Code::Empty | Code::Type | Code::TooLarge
                    ) || (error.code == Code::UnknownKey
                        && error.expected == "string keys only");
                    assert!(
                        !at_root || about_the_document,
                        "{error} is at the root:\n{text}"
                    );
                }
            }
        }
    }
    println!(
        "R8: {cases} mutated configs: {rejected} rejected (every error with a path or a line and column), {accepted} accepted, 0 panics"
    );
}

/// A group without nodes is an error at its `nodes` (300 of them once forked 304 processes
/// before the run failed).
#[test]
fn a_group_without_nodes_is_an_error() {
    let mut root = parse(FULL_EXAMPLE);
    let groups = root["runtime"]["platform"]["process_groups"]
        .as_sequence_mut()
        .unwrap();
    for i in 0..300 {
        groups.push(parse(&format!("{{name: empty{i}, nodes: []}}")));
    }
    let report = errors_of(&root);
    assert_error(
        &report,
        "runtime.platform.process_groups[4].nodes",
        Code::Range,
    );
    assert_error(
        &report,
        "runtime.platform.process_groups[303].nodes",
        Code::Range,
    );
}

/// Group and host names are letters (any script), digits, `.`, `_` and `-`: a newline or an
/// escape sequence in one would forge log lines and break metrics labels.
#[test]
fn group_and_host_names_are_plain() {
    for bad in [
        r#""ingress\nERROR forged""#,
        r#""a b""#,
        r#""x\u001b[31m""#,
        r#""""#,
    ] {
        let report = errors_of(&with("runtime.platform.process_groups[0].name", bad));
        assert!(
            report
                .at("runtime.platform.process_groups[0].name")
                .next()
                .is_some(),
            "{bad}: {report}"
        );
    }
    let report = errors_of(&with(
        "runtime.platform.process_groups[0].host",
        r#""h\nx""#,
    ));
    assert_error(
        &report,
        "runtime.platform.process_groups[0].host",
        Code::Invalid,
    );
    load(
        &serde_norway::to_string(&with(
            "runtime.platform.process_groups[0].name",
            "\"ingrès-1.a_b\"",
        ))
        .unwrap(),
    )
    .unwrap_or_else(|r| panic!("{r}"));
}
