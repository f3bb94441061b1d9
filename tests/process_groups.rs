//! Process-group execution (docs/architecture.md P5PRE-EXEC-01..04, P5PRE-SMOKE-01/02/04, the route
//! cache in a real run, docs/failures-and-resume.md R5) and embedding, with real worker processes.
//!
//! This test binary is also the worker executable: `main` calls `worker_entry` first with the
//! fund-load registry plus the test nodes (`support/test_nodes.rs`), as an embedding program
//! does. Tests run one at a time: each starts several processes on a small machine.

#[path = "support/test_nodes.rs"]
mod test_nodes;

#[path = "support/fund_load_runs.rs"]
mod fund_load_runs;

#[path = "support/checks.rs"]
mod checks;

#[path = "support/needs.rs"]
mod needs;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use checks::check;
use libtest_mimic::{Failed, Trial};
use needs::Need;
use stream_kernel::config::{self, Config};
use stream_kernel::supervisor::{
    EventKind, FailureCategory, ReplyKind, RunEnd, SupervisedRun, Supervisor, SupervisorOptions,
    WorkerState, run_supervised,
};

use fund_load_runs::{Profile, generated_input, inline_run, process_run, sample_input};

fn main() {
    let tests = vec![
        Trial::test("exec_01_a_node_in_group_b_runs_in_bs_process", exec_01),
        Trial::test("exec_02_an_in_group_edge_touches_no_ring", exec_02),
        Trial::test(
            "exec_03_trace_id_reply_to_and_seq_survive_four_hops",
            exec_03,
        ),
        Trial::test(
            "exec_04_no_source_byte_is_read_before_global_readiness",
            exec_04,
        ),
        Trial::test(
            "route_cache_counters_of_a_real_run_reach_the_summary",
            route_in_a_run,
        ),
        Trial::test(
            "route_unknown_target_in_a_worker_fails_naming_target_and_node",
            route_unknown_target,
        ),
        needs::trial(
            "smoke_01_fund_load_runs_in_four_groups",
            &[Need::Sample],
            smoke_01,
        ),
        needs::trial(
            "smoke_02_four_groups_byte_identical_to_inline_on_the_sample",
            &[Need::Sample],
            smoke_02_sample,
        ),
        Trial::test(
            "smoke_02_four_groups_byte_identical_to_inline_on_200k_generated_lines",
            smoke_02_generated,
        ),
        Trial::test("smoke_04_lifecycle_timeline_is_deterministic", smoke_04),
        Trial::test("r5_node_error_under_fail_policy_fails_the_run", r5_fail),
        Trial::test(
            "r5_node_error_under_dead_letter_policy_completes_the_rest",
            r5_dead_letter,
        ),
        Trial::test(
            "r5_node_panic_is_a_node_error_under_both_policies",
            r5_panic,
        ),
        needs::trial(
            "embedding_example_answers_every_line_like_the_inline_run",
            &[Need::Sample],
            embedding_example,
        ),
    ];
    checks::run_serially(registry, tests);
}

/// Fund-load's nodes and the test nodes (`ticker`, `fail_on`, `record`, ...).
fn registry() -> stream_kernel::graph::Registry {
    test_nodes::with_fund_load()
}

/// A process-mode config of test nodes. `groups`: `(name, [nodes])` in order.
fn probe_config(
    dir: &Path,
    pipeline: &[&str],
    nodes: &str,
    groups: &[(&str, &[&str])],
    extra_runtime: &str,
) -> Config {
    let groups: Vec<String> = groups
        .iter()
        .map(|(name, nodes)| {
            format!(
                "{{name: {name}, nodes: [{}], heartbeat_seconds: 0.5, start_timeout_seconds: 10, stop_timeout_seconds: 5}}",
                nodes.join(", ")
            )
        })
        .collect();
    let yaml = format!(
        r#"
version: 1
scenario: {{name: process-groups-test}}
pipeline: {{nodes: [{pipeline}]}}
nodes: {{{nodes}}}
adapters:
  sink: {{kind: file, path: {out}}}
  dead_letter: {{kind: file, path: {dead}}}
runtime:
  {extra_runtime}
  platform:
    bootstrap: {{mode: process_supervisor}}
    execution_ipc:
      ring_bytes: 262144
      control: {{transport: tcp_local}}
    process_groups: [{groups}]
    health: {{enabled: false}}
"#,
        pipeline = pipeline.join(", "),
        groups = groups.join(", "),
        out = dir.join("out.txt").display(),
        dead = dir.join("dead.jsonl").display(),
    );
    config::load_str(&yaml, &registry())
        .unwrap_or_else(|r| panic!("{r}\n{yaml}"))
        .config
}

fn run(config: &Config) -> Result<SupervisedRun, Failed> {
    run_supervised(config, &registry(), &SupervisorOptions::default())
        .map_err(|e| e.to_string().into())
}

/// One hop as the probe sink wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SeenHop {
    pid: u32,
    group: String,
    handoff_from: String,
    route_hop: u16,
    seq: u64,
    trace: String,
}

/// The probe sink's file: per record `n`, its hops.
fn read_probes(path: &Path) -> Result<BTreeMap<u64, Vec<SeenHop>>, Failed> {
    let text = std::fs::read_to_string(path)?;
    let mut probes = BTreeMap::new();
    for line in text.lines() {
        let (n, hops) = line.split_once('\t').ok_or("no tab")?;
        let hops = hops
            .split(';')
            .map(|h| {
                let f: Vec<&str> = h.split(',').collect();
                Ok(SeenHop {
                    pid: f[0].parse()?,
                    group: f[1].to_string(),
                    handoff_from: f[2].to_string(),
                    route_hop: f[3].parse()?,
                    seq: f[4].parse()?,
                    trace: f[5].to_string(),
                })
            })
            .collect::<Result<Vec<_>, Failed>>()?;
        probes.insert(n.parse()?, hops);
    }
    Ok(probes)
}

const PROBE_PIPELINE: &[&str] = &[
    "ticker",
    "probe_start",
    "probe_a",
    "probe_b",
    "probe_c",
    "probe_d",
    "probe_sink",
];
const PROBE_GROUPS: &[(&str, &[&str])] = &[
    ("g1", &["ticker", "probe_start", "probe_a"]),
    ("g2", &["probe_b", "probe_c"]),
    ("g3", &["probe_d"]),
    ("g4", &["probe_sink"]),
];
const PROBES: u64 = 2000;

fn probe_run(dir: &Path) -> Result<(SupervisedRun, BTreeMap<u64, Vec<SeenHop>>), Failed> {
    let config = probe_config(
        dir,
        PROBE_PIPELINE,
        &format!("ticker: {{records: {PROBES}}}"),
        PROBE_GROUPS,
        "",
    );
    let run = run(&config)?;
    check(run.end == RunEnd::Drained, || format!("{:?}", run.end))?;
    let probes = read_probes(&dir.join("out.txt"))?;
    check(probes.len() as u64 == PROBES, || {
        format!("{} probes", probes.len())
    })?;
    Ok((run, probes))
}

/// The pid each worker was spawned with, from the lifecycle events.
fn spawned_pids(run: &SupervisedRun) -> BTreeMap<String, u32> {
    run.events
        .iter()
        .filter(|e| e.kind == EventKind::WorkerSpawned)
        .filter_map(|e| Some((e.group.clone()?, e.pid?)))
        .collect()
}

/// P5PRE-EXEC-01: every node runs in the process of its group's worker: hops of one group
/// share that worker's pid, hops of different groups never share a pid, and none is ours.
fn exec_01() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (run, probes) = probe_run(dir.path())?;
    let pids = spawned_pids(&run);
    check(pids.len() == 4, || format!("{pids:?}"))?;
    let expected_groups = ["g1", "g1", "g2", "g2", "g3", "g4"];
    for hops in probes.values() {
        check(hops.len() == expected_groups.len(), || format!("{hops:?}"))?;
        for (hop, group) in hops.iter().zip(expected_groups) {
            check(hop.group == group, || format!("{hop:?} is not in {group}"))?;
            check(Some(&hop.pid) == pids.get(group), || {
                format!("{hop:?} ran outside {group}'s worker {:?}", pids.get(group))
            })?;
            check(hop.pid != std::process::id(), || {
                format!("{hop:?} ran in the test process")
            })?;
        }
        // The emitter of each cross-group edge is another process than its receiver.
        check(hops[1].pid != hops[2].pid, || format!("{hops:?}"))?;
        check(hops[3].pid != hops[4].pid, || format!("{hops:?}"))?;
        check(hops[4].pid != hops[5].pid, || format!("{hops:?}"))?;
    }
    Ok(())
}

/// P5PRE-EXEC-02: only cross-group edges have rings; each carries every record once (plus end
/// of stream); the in-group edge `probe_b -> probe_c` is a direct call (no ring, no hand-off).
fn exec_02() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (run, probes) = probe_run(dir.path())?;
    let rings: BTreeMap<&str, u64> = run
        .summary
        .rings
        .iter()
        .map(|r| (r.name.as_str(), r.records))
        .collect();
    let expected: BTreeMap<&str, u64> = [
        ("g1#1->g2#1", PROBES + 1),
        ("g2#1->g3#1", PROBES + 1),
        ("g3#1->g4#1", PROBES + 1),
    ]
    .into();
    check(rings == expected, || {
        format!("rings {rings:?}, expected {expected:?}")
    })?;
    let probe_c = run
        .summary
        .nodes
        .iter()
        .find(|n| n.name == "probe_c")
        .ok_or("no probe_c report")?;
    check(probe_c.stats.records_in == PROBES, || {
        format!("probe_c took {} records", probe_c.stats.records_in)
    })?;
    for hops in probes.values() {
        let (b, c) = (&hops[2], &hops[3]);
        check(b.handoff_from == "g1" && c.handoff_from.is_empty(), || {
            format!("handoff_from: b {b:?}, c {c:?}")
        })?;
        check(b.route_hop == c.route_hop, || {
            format!("the in-group edge counted a hop: {b:?} -> {c:?}")
        })?;
    }
    Ok(())
}

/// P5PRE-EXEC-03: through an embedding host, records cross four groups (three hand-offs); every
/// node sees the `seq` and trace id the host's record got, the reply carries the host's
/// `reply_to`, and `route_hop` counts 3 at the end.
fn exec_03() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let config = probe_config(
        dir.path(),
        &["probe_start", "probe_a", "probe_b", "probe_c", "probe_d"],
        "",
        &[
            ("g1", &["probe_start"]),
            ("g2", &["probe_a"]),
            ("g3", &["probe_b", "probe_c"]),
            ("g4", &["probe_d"]),
        ],
        "",
    );
    let mut runtime =
        stream_kernel::Runtime::start(&config, &registry(), &SupervisorOptions::default())?;
    let mut submitted = BTreeMap::new();
    for i in 0..200u64 {
        let reply_to = 0x00C0_FFEE_0000 + i * 7;
        let seq = runtime.submit(reply_to, &test_nodes::Tick { n: i })?;
        submitted.insert(seq, reply_to);
    }
    let (replies, _run) = runtime.finish()?;
    check(replies.len() == submitted.len(), || {
        format!("{} replies", replies.len())
    })?;
    for reply in &replies {
        check(reply.kind == ReplyKind::Output, || format!("{reply:?}"))?;
        check(submitted.get(&reply.seq) == Some(&reply.reply_to), || {
            format!(
                "seq {} came back with reply_to {:#x}, submitted {:?}",
                reply.seq,
                reply.reply_to,
                submitted.get(&reply.seq)
            )
        })?;
        check(reply.route_hop == 3, || {
            format!("route_hop {}", reply.route_hop)
        })?;
        let probe = reply.value::<test_nodes::Probe>()?;
        let hops: Vec<(u64, [u8; 16], u16)> = probe
            .hops
            .iter()
            .map(|h| (h.seq.to_native(), h.trace_id, h.route_hop.to_native()))
            .collect();
        check(hops.len() == 5, || format!("{hops:?}"))?;
        for (seq, trace, _) in &hops {
            // Untraced envelopes carry no trace id: every hop derives the same, non-zero one.
            check(
                *seq == reply.seq && *trace == reply.trace_id && *trace != [0; 16],
                || {
                    format!(
                        "seq {} trace {:?}: hops {hops:?}",
                        reply.seq, reply.trace_id
                    )
                },
            )?;
        }
        let route: Vec<u16> = hops.iter().map(|h| h.2).collect();
        check(route == [0, 1, 2, 2, 3], || {
            format!("route_hop by node {route:?}")
        })?;
    }
    Ok(())
}

/// The read offset of the file `path` open in process `pid` (`None` when not open there).
fn read_offset(pid: u32, path: &Path) -> Option<u64> {
    let target = std::fs::canonicalize(path).ok()?;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        if std::fs::read_link(entry.path()).ok()? != target {
            continue;
        }
        let fd = entry.file_name();
        let info =
            std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.to_string_lossy())).ok()?;
        return info
            .lines()
            .find_map(|l| l.strip_prefix("pos:"))
            .and_then(|v| v.trim().parse().ok());
    }
    None
}

/// P5PRE-EXEC-04: while one worker is held back from READY, the source's worker is READY with
/// its input file open at offset 0 and nothing taken in; once everyone is ready the run
/// proceeds and completes.
fn exec_04() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("input.txt");
    generated_input(&input, 5_000)?;
    let yaml = format!(
        r#"
version: 1
scenario: {{name: readiness-gate}}
pipeline:
  nodes: [source, hold_lines, parse_load_attempt, compute_time_keys, idempotency_gate,
          compute_features, evaluate_policies, update_windows, format_output, sink]
nodes: {{hold_lines: {{hold_ms: 2000}}}}
adapters:
  source: {{kind: file, path: {input}}}
  sink: {{kind: file, path: {out}}}
runtime:
  ordering: {{sink_mode: source_seq}}
  platform:
    bootstrap: {{mode: process_supervisor}}
    execution_ipc: {{control: {{transport: tcp_local}}}}
    process_groups:
      - {{name: ingress, nodes: [source]}}
      - {{name: rest, nodes: [hold_lines, parse_load_attempt, compute_time_keys, idempotency_gate, compute_features, evaluate_policies, update_windows, format_output, sink], start_timeout_seconds: 20}}
    health: {{enabled: false}}
"#,
        input = input.display(),
        out = dir.path().join("out.txt").display(),
    );
    let config = config::load_str(&yaml, &registry())
        .map_err(|r| format!("{r}"))?
        .config;
    let mut supervisor = Supervisor::launch(&config, &registry(), &SupervisorOptions::default())?;
    let state = |s: &Supervisor, id: &str| {
        s.snapshot()
            .workers()
            .find(|w| w.id == id)
            .map(|w| (w.state, w.pid, w.counters.records_in))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while state(&supervisor, "ingress#1").map(|s| s.0) != Some(WorkerState::Ready) {
        check(std::time::Instant::now() < deadline, || {
            "the source's worker never became ready".into()
        })?;
        supervisor.pump(Duration::from_millis(10));
    }
    // The source's worker is READY, the other one is still in its 2 s `on_start`.
    let (_, pid, records_in) = state(&supervisor, "ingress#1").ok_or("no ingress worker")?;
    let held = state(&supervisor, "rest#1").ok_or("no rest worker")?.0;
    check(held == WorkerState::Starting, || {
        format!("rest#1 is {held} already; the hold did not hold")
    })?;
    let pid = pid.ok_or("no pid")?;
    // Give a source that ignored the gate time to read.
    std::thread::sleep(Duration::from_millis(300));
    supervisor.pump(Duration::from_millis(10));
    let offset = read_offset(pid, &input);
    check(offset == Some(0), || {
        format!("input offset in the source worker before START_WORK: {offset:?}")
    })?;
    check(records_in == 0, || {
        format!("{records_in} records taken in before the gate opened")
    })?;
    supervisor.wait_ready()?;
    supervisor.start_work()?;
    let end = supervisor.run_until_done();
    supervisor.stop_all();
    check(end == RunEnd::Drained, || format!("{end:?}"))?;
    let lines = std::fs::read_to_string(dir.path().join("out.txt"))?
        .lines()
        .count();
    check(lines > 4_000, || format!("{lines} output lines"))
}

/// The route cache in a real run: `router` emits every record to `record` by name, so its
/// worker misses once and hits for every later record; `pass` (the default next node) sees
/// nothing.
fn route_in_a_run() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let records = 500;
    let config = probe_config(
        dir.path(),
        &["ticker", "router", "pass", "record"],
        &format!("ticker: {{records: {records}}}, router: {{target: record}}"),
        &[("g1", &["ticker", "router"]), ("g2", &["pass", "record"])],
        "",
    );
    let run = run(&config)?;
    check(run.end == RunEnd::Drained, || format!("{:?}", run.end))?;
    let route = run.summary.route_cache;
    check(
        route.misses == 1 && route.hits == records - 1 && route.positive_entries == 1,
        || format!("{route:?}"),
    )?;
    let pass = run
        .summary
        .nodes
        .iter()
        .find(|n| n.name == "pass")
        .ok_or("no pass report")?;
    check(pass.stats.records_in == 0, || {
        format!("pass took {}", pass.stats.records_in)
    })?;
    let out = std::fs::read_to_string(dir.path().join("out.txt"))?;
    check(out.lines().count() as u64 == records, || {
        format!("{} lines", out.lines().count())
    })
}

/// An unknown explicit target is a typed node error naming the target and the node.
fn route_unknown_target() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let config = probe_config(
        dir.path(),
        &["ticker", "router", "pass", "record"],
        "ticker: {records: 50}, router: {target: nowhere}",
        &[("g1", &["ticker", "router"]), ("g2", &["pass", "record"])],
        "",
    );
    let run = run(&config)?;
    let RunEnd::Failed(failure) = &run.end else {
        return Err(format!("expected a failure, got {:?}", run.end).into());
    };
    check(
        failure.category == FailureCategory::NodeError
            && failure.detail.contains("router")
            && failure.detail.contains("nowhere")
            && failure.detail.contains("seq 1"),
        || format!("{failure:?}"),
    )
}

/// P5PRE-SMOKE-01: fund-load end to end in the 4-group profile on the public sample: every
/// non-blank line is answered, and the counts add up.
fn smoke_01() -> Result<(), Failed> {
    let sample = sample_input().ok_or("the public sample is absent")?;
    let dir = tempfile::tempdir()?;
    let run = process_run(&registry(), Profile::Experiment, &sample, dir.path())?;
    check(run.end == RunEnd::Drained, || format!("{:?}", run.end))?;
    check(run.summary.workers.len() == 4, || {
        format!("{} workers reported", run.summary.workers.len())
    })?;
    let output = std::fs::read_to_string(dir.path().join("output.txt"))?;
    let input_lines = std::fs::read_to_string(&sample)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count() as u64;
    let accepted = run.summary.outcome_records("accepted").unwrap_or(0);
    let declined = run.summary.outcome_records("declined").unwrap_or(0);
    check(
        output.lines().count() as u64 == accepted + declined
            && accepted + declined + run.summary.dead_lettered == input_lines,
        || {
            format!(
                "{} output lines, {accepted} accepted + {declined} declined + {} dead-lettered, {input_lines} input lines",
                output.lines().count(),
                run.summary.dead_lettered
            )
        },
    )
}

/// P5PRE-SMOKE-02 on one input, both profiles: output and dead letters byte-identical.
fn compare_profiles(input: &Path) -> Result<(), Failed> {
    for profile in [Profile::Baseline, Profile::Experiment] {
        let inline_dir = tempfile::tempdir()?;
        let process_dir = tempfile::tempdir()?;
        inline_run(&registry(), profile, input, inline_dir.path())?;
        let run = process_run(&registry(), profile, input, process_dir.path())?;
        check(run.end == RunEnd::Drained, || format!("{:?}", run.end))?;
        for file in ["output.txt", "rejects.jsonl"] {
            let inline = std::fs::read(inline_dir.path().join(file))?;
            let process = std::fs::read(process_dir.path().join(file))?;
            check(!inline.is_empty() || file == "rejects.jsonl", || {
                format!("{profile:?}: empty inline {file}")
            })?;
            check(inline == process, || {
                format!(
                    "{profile:?} {file}: inline {} bytes, 4 groups {} bytes, first difference at byte {}",
                    inline.len(),
                    process.len(),
                    inline
                        .iter()
                        .zip(&process)
                        .position(|(a, b)| a != b)
                        .unwrap_or(inline.len().min(process.len()))
                )
            })?;
        }
    }
    Ok(())
}

/// P5PRE-SMOKE-02 on the public sample.
fn smoke_02_sample() -> Result<(), Failed> {
    let sample = sample_input().ok_or("the public sample is absent")?;
    compare_profiles(&sample)
}

/// P5PRE-SMOKE-02 on 200k generated lines.
fn smoke_02_generated() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("input.txt");
    generated_input(&input, 200_000)?;
    compare_profiles(&input)
}

/// P5PRE-SMOKE-04: each of the 4 workers goes spawned -> bootstrap_loaded -> ready -> running
/// -> stopping -> stopped, spawns follow config order, and no worker runs before all are
/// ready (the gate).
fn smoke_04() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("input.txt");
    generated_input(&input, 2_000)?;
    let run = process_run(&registry(), Profile::Experiment, &input, dir.path())?;
    check(run.end == RunEnd::Drained, || format!("{:?}", run.end))?;
    let timeline = [
        EventKind::WorkerSpawned,
        EventKind::WorkerBootstrapLoaded,
        EventKind::WorkerReady,
        EventKind::WorkerRunning,
        EventKind::WorkerStopping,
        EventKind::WorkerStopped,
    ];
    let workers = [
        "execution.ingress#1",
        "execution.features#1",
        "execution.policy#1",
        "execution.egress#1",
    ];
    for kind in timeline {
        let count = run.events.iter().filter(|e| e.kind == kind).count();
        check(count == 4, || format!("{count} {kind:?} events"))?;
    }
    for worker in workers {
        let kinds: Vec<EventKind> = run
            .events
            .iter()
            .filter(|e| e.worker_id.as_deref() == Some(worker))
            .map(|e| e.kind)
            .collect();
        check(kinds == timeline, || format!("{worker}: {kinds:?}"))?;
    }
    let spawned: Vec<&str> = run
        .events
        .iter()
        .filter(|e| e.kind == EventKind::WorkerSpawned)
        .filter_map(|e| e.worker_id.as_deref())
        .collect();
    check(spawned == workers, || format!("spawn order {spawned:?}"))?;
    let position = |kind: EventKind, last: bool| {
        let mut at = run
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind == kind)
            .map(|(i, _)| i);
        if last { at.next_back() } else { at.next() }
    };
    check(
        position(EventKind::WorkerReady, true) < position(EventKind::WorkerRunning, false),
        || "a worker ran before every worker was ready".into(),
    )
}

/// A three-group run of 100 ticks through `fail_on` (failing on seq 37).
fn r5_config(dir: &Path, policy: &str, panic: bool) -> Config {
    probe_config(
        dir,
        &["ticker", "fail_on", "record"],
        &format!("ticker: {{records: 100}}, fail_on: {{seq: 37, panic: {panic}}}"),
        &[
            ("g1", &["ticker"]),
            ("g2", &["fail_on"]),
            ("g3", &["record"]),
        ],
        &format!("on_node_error: {policy}"),
    )
}

fn numbers(path: &Path) -> Result<Vec<u64>, Failed> {
    std::fs::read_to_string(path)?
        .lines()
        .map(|l| l.parse::<u64>().map_err(Failed::from))
        .collect()
}

/// R5 under `fail`: the run fails with `node_error` naming the node and seq 37, everything
/// before it is complete and reported so.
fn r5_check_fail(panic: bool) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let run = run(&r5_config(dir.path(), "fail", panic))?;
    let RunEnd::Failed(failure) = &run.end else {
        return Err(format!("expected a failure, got {:?}", run.end).into());
    };
    check(
        failure.category == FailureCategory::NodeError
            && failure.worker == "g2#1"
            && failure.detail.contains("`fail_on`")
            && failure.detail.contains("seq 37")
            && failure.detail.contains(test_nodes::FAIL_ON_MESSAGE),
        || format!("{failure:?}"),
    )?;
    check(run.completed_through == 36, || {
        format!("completed through {}", run.completed_through)
    })?;
    let written = numbers(&dir.path().join("out.txt"))?;
    check(written == (1..=36).collect::<Vec<_>>(), || {
        format!("written {written:?}")
    })?;
    println!(
        "R5 {} on record 37, policy fail: node_error naming `fail_on` and seq 37, records 1-36 written and reported complete",
        if panic { "a panic" } else { "an error" }
    );
    Ok(())
}

/// R5 under `dead_letter`: record 37 is dead-lettered with the node and reason, the other 99
/// complete.
fn r5_check_dead_letter(panic: bool) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let run = run(&r5_config(dir.path(), "dead_letter", panic))?;
    check(run.end == RunEnd::Drained, || format!("{:?}", run.end))?;
    let written = numbers(&dir.path().join("out.txt"))?;
    let expected: Vec<u64> = (1..=100).filter(|n| *n != 37).collect();
    check(written == expected, || format!("written {written:?}"))?;
    check(run.summary.dead_lettered == 1, || {
        format!("{} dead-lettered", run.summary.dead_lettered)
    })?;
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl"))?;
    let lines: Vec<serde_json::Value> = dead
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    check(lines.len() == 1, || format!("dead letters: {dead}"))?;
    let letter = &lines[0];
    check(
        letter["line"] == 37
            && letter["node"] == "fail_on"
            && letter.to_string().contains(test_nodes::FAIL_ON_MESSAGE),
        || format!("dead letter {letter}"),
    )?;
    println!(
        "R5 {} on record 37, policy dead_letter: record 37 dead-lettered with node and reason, the other 99 complete",
        if panic { "a panic" } else { "an error" }
    );
    Ok(())
}

fn r5_fail() -> Result<(), Failed> {
    r5_check_fail(false)
}

fn r5_dead_letter() -> Result<(), Failed> {
    r5_check_dead_letter(false)
}

fn r5_panic() -> Result<(), Failed> {
    r5_check_fail(true)?;
    r5_check_dead_letter(true)
}

/// The embedding example (`examples/embed_fund_load.rs`) answers every line of the sample, and
/// its responses are the inline run's output lines.
fn embedding_example() -> Result<(), Failed> {
    let sample = sample_input().ok_or("the public sample is absent")?;
    let example = fund_load_runs::example_binary("embed_fund_load")?;
    let output = std::process::Command::new(&example)
        .arg(&sample)
        .output()
        .map_err(|e| format!("running {}: {e}", example.display()))?;
    check(output.status.success(), || {
        format!(
            "{} exited {:?}: {}",
            example.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let stdout = String::from_utf8(output.stdout)?;
    let input_lines = std::fs::read_to_string(&sample)?.lines().count();
    check(stdout.lines().count() == input_lines, || {
        format!("{} replies for {input_lines} lines", stdout.lines().count())
    })?;
    let responses: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_once('\t').map(|(_, r)| r))
        .filter(|r| !r.starts_with('('))
        .collect();
    let dir = tempfile::tempdir()?;
    inline_run(&registry(), Profile::Experiment, &sample, dir.path())?;
    let inline = std::fs::read_to_string(dir.path().join("output.txt"))?;
    let inline: Vec<&str> = inline.lines().collect();
    check(responses == inline, || {
        format!(
            "{} responses vs {} inline lines; first difference at {:?}",
            responses.len(),
            inline.len(),
            responses.iter().zip(&inline).position(|(a, b)| a != b)
        )
    })
}
