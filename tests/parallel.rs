//! Parallel workers (docs/architecture.md "Ordering and parallel workers", PAR-01..03): `workers: 2`
//! never changes a result. Stateless groups take records round robin, partitioned groups by
//! key, and every worker fed by several rings merges them by `seq` using watermarks.
//!
//! Runs real worker processes (this test binary doubles as the worker executable) and
//! compares each output with the inline (memory) profile's.

#[path = "support/fund_load_runs.rs"]
mod fund_load_runs;
#[path = "support/test_nodes.rs"]
mod test_nodes;

#[path = "support/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use checks::check;
use fund_load_runs::{Profile, generated_input, sample_input};
use libtest_mimic::{Failed, Trial};
use stream_kernel::config::{self, Config, SinkAdapter};
use stream_kernel::supervisor::{RunEnd, SupervisedRun, SupervisorOptions, run_supervised};

/// No run may take longer than this: a run that does is a stall.
const STALL: Duration = Duration::from_secs(120);

/// Fund-load's nodes and the test nodes (`ticker`, `fail_on`, `record`, ...).
fn registry() -> stream_kernel::graph::Registry {
    test_nodes::with_fund_load()
}

fn main() {
    let tests = vec![
        Trial::test(
            "par_01_round_robin_stage_between_order_sensitive_nodes",
            par_01,
        ),
        Trial::test(
            "par_01_fund_load_five_groups_parse_on_two_workers",
            par_01_fund_load,
        ),
        Trial::test("par_02_partitioned_stateful_node_skewed_keys", par_02),
        Trial::test(
            "par_02_fund_load_policy_partitioned_by_customer",
            par_02_fund_load,
        ),
        Trial::test(
            "par_03_an_idle_upstream_worker_does_not_stall_the_merge",
            par_03,
        ),
    ];
    checks::run_serially(registry, tests);
}

/// A tick pipeline: `nodes` in order, `groups` as (name, nodes, workers); `None` = inline.
fn tick_config(
    dir: &Path,
    nodes: &[&str],
    settings: &str,
    groups: Option<&[(&str, &[&str], u32)]>,
) -> Result<Config, Failed> {
    let platform = match groups {
        None => "bootstrap: {mode: inline}".to_string(),
        Some(groups) => {
            let groups: Vec<String> = groups
                .iter()
                .map(|(name, nodes, workers)| {
                    format!(
                        "{{name: {name}, nodes: [{}], workers: {workers}}}",
                        nodes.join(", ")
                    )
                })
                .collect();
            format!(
                "bootstrap: {{mode: process_supervisor}}\n    execution_ipc: {{ring_bytes: 262144, control: {{transport: tcp_local}}}}\n    process_groups: [{}]\n    health: {{enabled: false}}",
                groups.join(", ")
            )
        }
    };
    let yaml = format!(
        "version: 1\nscenario: {{name: parallel-test}}\npipeline: {{nodes: [{}]}}\nnodes: {{{settings}}}\nadapters:\n  sink: {{kind: file, path: \"{}\"}}\nruntime:\n  platform:\n    {platform}\n",
        nodes.join(", "),
        dir.join("out.txt").display(),
    );
    Ok(config::load_str(&yaml, &registry())
        .map_err(|r| format!("{r}\n{yaml}"))?
        .config)
}

/// Runs `config` (inline or supervised) and returns its output file.
fn output_of(config: &Config) -> Result<Vec<u8>, Failed> {
    let started = Instant::now();
    if config.is_process_mode() {
        let run = run_supervised(config, &registry(), &SupervisorOptions::default())
            .map_err(|e| e.to_string())?;
        check(matches!(run.end, RunEnd::Drained), || {
            format!("run ended {:?}", run.end)
        })?;
        report(&run);
    } else {
        stream_kernel::runtime::run_inline(config, &registry(), &Default::default())
            .map_err(|e| e.to_string())?;
    }
    check(started.elapsed() < STALL, || {
        format!("the run took {:?}", started.elapsed())
    })?;
    match &config.adapters.sink {
        SinkAdapter::File { path } => Ok(std::fs::read(path)?),
        SinkAdapter::Stdout => Err("these runs write a file".into()),
    }
}

/// Prints how the records split over the workers of each node.
fn report(run: &SupervisedRun) {
    let split: Vec<String> = run
        .summary
        .nodes
        .iter()
        .map(|n| format!("{}@{}={}", n.name, n.group, n.stats.records_in))
        .collect();
    println!("  records per worker: {}", split.join(" "));
}

/// Inline and process outputs of the tick pipeline, compared.
fn same_as_inline(
    nodes: &[&str],
    settings: &str,
    groups: &[(&str, &[&str], u32)],
) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (inline_dir, process_dir) = (dir.path().join("inline"), dir.path().join("process"));
    std::fs::create_dir_all(&inline_dir)?;
    std::fs::create_dir_all(&process_dir)?;
    let expected = output_of(&tick_config(&inline_dir, nodes, settings, None)?)?;
    let got = output_of(&tick_config(&process_dir, nodes, settings, Some(groups))?)?;
    check(!expected.is_empty(), || {
        "the inline run wrote nothing".into()
    })?;
    check(got == expected, || {
        let first = got
            .split(|b| *b == b'\n')
            .zip(expected.split(|b| *b == b'\n'))
            .position(|(a, b)| a != b);
        format!(
            "output differs from inline (first differing line {first:?}; {} vs {} bytes)",
            got.len(),
            expected.len()
        )
    })
}

/// PAR-01: `workers: 2` on a stateless stage between the source and an order-sensitive
/// (stateful) node: round robin splits the stage, the merge restores `seq` order.
fn par_01() -> Result<(), Failed> {
    same_as_inline(
        &["ticker", "pass", "keyed_count", "record"],
        "ticker: {records: 20000}, keyed_count: {spread: 7}",
        &[
            ("g1", &["ticker"], 1),
            ("g2", &["pass"], 2),
            ("g3", &["keyed_count", "record"], 1),
        ],
    )
}

/// The bundled `config_name` pointed at `input`, writing into `dir`.
fn bundled(config_name: &str, input: &Path, dir: &Path) -> Result<Config, Failed> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("configs/{config_name}.yml"));
    let mut config = config::load_file(&path, &registry())
        .map_err(|r| format!("{}: {r}", path.display()))?
        .config;
    fund_load_runs::point_at(&mut config, input, dir);
    config.runtime.platform.health.enabled = false;
    Ok(config)
}

/// `parallel` (a bundled config name) gives the same output and dead letters as the inline
/// profile of `profile`, on the public sample (when present) and on 200k generated lines.
fn fund_load_same_as_inline(profile: Profile, parallel: &str) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let generated = dir.path().join("generated.txt");
    generated_input(&generated, 200_000)?;
    let mut inputs: Vec<PathBuf> = sample_input().into_iter().collect();
    if inputs.is_empty() {
        println!("  public sample absent: generated input only");
    }
    inputs.push(generated);
    let inline_name = match profile {
        Profile::Baseline => "fund_load_baseline_inline",
        Profile::Experiment => "fund_load_experiment_inline",
    };
    for (i, input) in inputs.iter().enumerate() {
        let (a, b) = (
            dir.path().join(format!("inline{i}")),
            dir.path().join(format!("parallel{i}")),
        );
        std::fs::create_dir_all(&a)?;
        std::fs::create_dir_all(&b)?;
        let expected = output_of(&bundled(inline_name, input, &a)?)?;
        let got = output_of(&bundled(parallel, input, &b)?)?;
        check(got == expected, || {
            format!(
                "{parallel} on {}: output differs from inline",
                input.display()
            )
        })?;
        check(
            std::fs::read(a.join("rejects.jsonl"))? == std::fs::read(b.join("rejects.jsonl"))?,
            || format!("{parallel} on {}: dead letters differ", input.display()),
        )?;
    }
    Ok(())
}

/// PAR-01 on the product: parsing on two workers (5 groups), baseline and experiment.
fn par_01_fund_load() -> Result<(), Failed> {
    fund_load_same_as_inline(Profile::Baseline, "fund_load_baseline_5proc")?;
    fund_load_same_as_inline(Profile::Experiment, "fund_load_experiment_5proc")
}

/// PAR-02: a partitioned stateful node on two workers, with a hot key (one worker gets ~99%
/// of the records): per-key counts equal inline's, so every key stayed on one worker in order.
fn par_02() -> Result<(), Failed> {
    same_as_inline(
        &["ticker", "keyed_count", "record"],
        "ticker: {records: 20000}, keyed_count: {spread: 100}",
        &[
            ("g1", &["ticker"], 1),
            ("g2", &["keyed_count"], 2),
            ("g3", &["record"], 1),
        ],
    )
}

/// PAR-02 on the product: the baseline policy group partitioned by `customer_id`.
fn par_02_fund_load() -> Result<(), Failed> {
    fund_load_same_as_inline(Profile::Baseline, "fund_load_baseline_4proc_partitioned")
}

/// PAR-03: every tick has the same key, so one worker of the partitioned group never gets a
/// record; its watermark still advances and the merge downstream finishes.
fn par_03() -> Result<(), Failed> {
    same_as_inline(
        &["ticker", "keyed_count", "pass", "record"],
        "ticker: {records: 20000}, keyed_count: {spread: 0}",
        &[
            ("g1", &["ticker"], 1),
            ("g2", &["keyed_count"], 2),
            ("g3", &["pass", "record"], 1),
        ],
    )
}
