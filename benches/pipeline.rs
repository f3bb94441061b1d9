//! Pipeline benchmark (docs/performance.md): the fund-load experiment job on a generated 1 M-line
//! input, inline (one process) vs the 4-group profile (four worker processes) vs the 5-group
//! one (parsing on two workers), alternating in one run so all see the same machine. Prints
//! records/s of each, the ratios to inline, and the peak resident memory of each run (all
//! processes together for the supervised ones).
//!
//! With `PIPELINE_TRACING=1` it compares the 4-group run with tracing off, with
//! `sample_ratio: 0.01` exporting OTLP/gRPC to a receiver in this process, and exporting to an
//! endpoint that refuses connections (docs/operating.md's overhead targets).
//!
//! `cargo bench --bench pipeline` (`PIPELINE_LINES`, `PIPELINE_ROUNDS` override the defaults).
//! The bench binary is also the worker executable: `main` calls `worker_entry` first.

#[path = "../tests/support/fund_load_runs.rs"]
mod fund_load_runs;
#[path = "../tests/support/otlp_receiver.rs"]
mod otlp_receiver;
#[path = "peer/fund_load_by_hand.rs"]
mod peer;

use std::path::Path;
use std::time::Duration;

use fund_load_runs::{Profile, bundled_config, generated_input};
use stream_kernel::apps::fund_load;
use stream_kernel::runtime::{RunSummary, run_inline};
use stream_kernel::supervisor::{SupervisorOptions, run_supervised};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resets this process's peak RSS (VmHWM) so the next run reports its own peak, not the last one's.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn inline(input: &Path, dir: &Path) -> RunSummary {
    let registry = fund_load::registry();
    let config = bundled_config(&registry, Profile::Experiment, "inline", input, dir)
        .expect("inline config");
    reset_peak_rss();
    run_inline(&config, &registry, &Default::default()).expect("inline run")
}

/// A supervised run of the bundled experiment config `placement` (`4proc`, `5proc`).
fn groups(placement: &str, input: &Path, dir: &Path) -> RunSummary {
    let registry = fund_load::registry();
    let config = bundled_config(&registry, Profile::Experiment, placement, input, dir)
        .expect("bundled config");
    reset_peak_rss();
    run_supervised(&config, &registry, &SupervisorOptions::default())
        .expect("supervised run")
        .summary
}

fn four_groups(input: &Path, dir: &Path) -> RunSummary {
    groups("4proc", input, dir)
}

/// The hand-written peer on the same input: records/s as the engine's summaries measure them
/// (from the first record to the last output written) and its peak RSS.
fn by_hand(input: &Path, dir: &Path) -> RunSummary {
    reset_peak_rss();
    let started = std::time::Instant::now();
    let counts = peer::run(
        input,
        &dir.join("output.txt"),
        &dir.join("rejects.jsonl"),
        &peer::Settings::experiment(),
    )
    .expect("hand-written run");
    RunSummary {
        records_in: counts.lines,
        elapsed: started.elapsed(),
        peak_rss_kib: stream_kernel::observability::process::peak_rss_kib().unwrap_or(0),
        ..RunSummary::default()
    }
}

/// The hand-written peer, inline, 4 groups and 5 groups (parsing on two workers), alternating,
/// same input; ratios are to the hand-written peer of the same round.
fn compare_placements(input: &Path, dir: &Path, lines: u64, rounds: usize) {
    let names = ["by-hand", "inline", "4proc", "5proc"];
    let outputs: Vec<_> = names.iter().map(|n| dir.join(n)).collect();
    for out in &outputs {
        std::fs::create_dir_all(out).expect("output dir");
    }
    let mut rates = vec![Vec::new(); names.len()];
    let mut ratios = vec![Vec::new(); names.len()];
    let mut rss = vec![0u64; names.len()];
    let mut four_vs_inline = Vec::new();
    for round in 1..=rounds {
        let runs = [
            by_hand(input, &outputs[0]),
            inline(input, &outputs[1]),
            groups("4proc", input, &outputs[2]),
            groups("5proc", input, &outputs[3]),
        ];
        let base = rate(&runs[0]);
        let line: Vec<String> = names
            .iter()
            .zip(&runs)
            .map(|(n, r)| format!("{n} {:.0} rec/s ({:.2}x)", rate(r), rate(r) / base))
            .collect();
        println!("round {round}: {}", line.join(" | "));
        four_vs_inline.push(rate(&runs[2]) / rate(&runs[1]));
        for (i, run) in runs.iter().enumerate() {
            rates[i].push(rate(run));
            ratios[i].push(rate(run) / base);
            rss[i] = rss[i].max(run.peak_rss_kib);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let reference = std::fs::read(outputs[1].join("output.txt")).ok();
    let reference_rejects = std::fs::read(outputs[1].join("rejects.jsonl")).ok();
    println!("== stream-kernel pipeline benchmark ({lines} generated lines, experiment) ==");
    let labels = [
        "hand-written peer (1 thread)",
        "inline (1 process)",
        "4 groups (5 processes)",
        "5 groups, parse x2 (7 processes)",
    ];
    for i in 0..names.len() {
        let same = std::fs::read(outputs[i].join("output.txt")).ok() == reference
            && std::fs::read(outputs[i].join("rejects.jsonl")).ok() == reference_rejects;
        println!(
            "{:<34} p50 {:>10.0} rec/s   ratio to hand-written p50 {:.2}x   peak RSS {:>7.1} MiB   output and rejects identical: {same}",
            labels[i],
            median(&mut rates[i]),
            median(&mut ratios[i]),
            rss[i] as f64 / 1024.0,
        );
    }
    let peer_rates = &rates[0];
    let spread = peer_rates.iter().copied().fold(0.0, f64::max)
        / peer_rates.iter().copied().fold(f64::INFINITY, f64::min);
    let targets = [
        ("inline >= 1.0x the peer", median(&mut ratios[1]), 1.0, true),
        (
            "4 groups >= 1.2x the peer",
            median(&mut ratios[2]),
            1.2,
            true,
        ),
        (
            "4 groups >= 1.3x inline",
            median(&mut four_vs_inline),
            1.3,
            true,
        ),
        (
            "5 groups >= 1.0x the peer",
            median(&mut ratios[3]),
            1.0,
            true,
        ),
        (
            "inline peak RSS <= 1.0x the peer's",
            rss[1] as f64 / rss[0].max(1) as f64,
            1.0,
            false,
        ),
    ];
    // The same job's rate swinging between rounds means the machine was busy or throttled:
    // ratios from such a run say nothing.
    if spread > 1.3 {
        println!(
            "run INVALID: the peer's rate moved {spread:.2}x between rounds (a busy or throttled machine); rerun on a quiet one"
        );
        return;
    }
    for (target, value, bound, at_least) in targets {
        let met = if at_least {
            value >= bound
        } else {
            value <= bound
        };
        let verdict = if met { "met" } else { "missed" };
        println!("target {target}: {value:.2}x: {verdict}");
    }
}

fn rate(summary: &RunSummary) -> f64 {
    summary.records_in as f64 / summary.elapsed.as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// The 4-group config with OTLP/gRPC tracing at 1% to `endpoint`.
fn traced(input: &Path, dir: &Path, endpoint: &str) -> stream_kernel::config::Config {
    let registry = fund_load::registry();
    let mut config = bundled_config(&registry, Profile::Experiment, "4proc", input, dir)
        .expect("4-group config");
    let tracing = &mut config.runtime.observability.tracing;
    tracing.enabled = true;
    tracing.sample_ratio = Some(0.01);
    tracing.exporters = vec![stream_kernel::config::TraceExporter::OtelOtlp(
        stream_kernel::config::OtlpSettings {
            protocol: Some(stream_kernel::config::OtlpProtocol::Grpc),
            endpoint: Some(endpoint.to_string()),
            headers: Default::default(),
            timeout_seconds: Some(2.0),
            service_name: Some("pipeline-bench".into()),
            service_name_by_process_group: false,
        },
    )];
    config
}

fn supervised(config: &stream_kernel::config::Config) -> RunSummary {
    run_supervised(
        config,
        &fund_load::registry(),
        &SupervisorOptions::default(),
    )
    .expect("4-group run")
    .summary
}

/// Tracing off vs on (receiver up) vs on (endpoint refusing), alternating, same input.
fn tracing_overhead(input: &Path, dir: &Path, lines: u64, rounds: usize) {
    let receiver = otlp_receiver::Receiver::start(otlp_receiver::Protocol::Grpc).expect("receiver");
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        format!("http://{}", listener.local_addr().expect("addr"))
    };
    let outs: Vec<_> = ["off", "on", "down"].iter().map(|n| dir.join(n)).collect();
    for out in &outs {
        std::fs::create_dir_all(out).expect("output dir");
    }
    let (mut off, mut on, mut down) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let a = four_groups(input, &outs[0]);
        let b = supervised(&traced(input, &outs[1], &receiver.endpoint));
        let c = supervised(&traced(input, &outs[2], &refused));
        println!(
            "round {round}: off {:.0} rec/s | otlp {:.0} rec/s ({:.2}x) {:?} | endpoint down {:.0} rec/s ({:.2}x) {:?}",
            rate(&a),
            rate(&b),
            rate(&b) / rate(&a),
            b.spans.first(),
            rate(&c),
            rate(&c) / rate(&a),
            c.spans.first(),
        );
        off.push(rate(&a));
        on.push(rate(&b) / rate(&a));
        down.push(rate(&c) / rate(&a));
    }
    let same = |i: usize| {
        std::fs::read(outs[0].join("output.txt")).ok()
            == std::fs::read(outs[i].join("output.txt")).ok()
    };
    println!(
        "== stream-kernel tracing overhead ({lines} generated lines, 4 groups, sample_ratio 0.01) =="
    );
    println!("tracing off       p50 {:>10.0} rec/s", median(&mut off));
    println!(
        "OTLP to receiver  p50 ratio {:.2}x of off (target >= 0.9x); output identical: {}",
        median(&mut on),
        same(1)
    );
    println!(
        "OTLP endpoint down p50 ratio {:.2}x of off (target >= 0.9x); output identical: {}",
        median(&mut down),
        same(2)
    );
    println!("spans received by the receiver: {}", receiver.spans().len());
}

fn main() {
    stream_kernel::worker_entry(fund_load::registry);
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no flag: stay short.
    let benching = std::env::args().any(|a| a == "--bench");
    let lines = env_or("PIPELINE_LINES", if benching { 1_000_000 } else { 20_000 });
    let rounds = env_or("PIPELINE_ROUNDS", if benching { 5 } else { 1 }).max(1) as usize;
    if std::env::var("PIPELINE_TRACING").is_ok_and(|v| v == "1") {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("input.txt");
        generated_input(&input, lines).expect("generated input");
        tracing_overhead(&input, dir.path(), lines, rounds);
        return;
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input.txt");
    generated_input(&input, lines).expect("generated input");
    compare_placements(&input, dir.path(), lines, rounds);
}
