//! Supervisor timings (docs/performance.md): spawn to all-READY for 4 workers, and a graceful stop
//! after the pipeline drained, p50 over 20 runs each, from the supervisor's own phase events.
//!
//! `cargo bench --bench supervisor`. The bench binary is also the worker executable: `main`
//! calls `worker_entry` first, as any program that embeds the engine does.

#[path = "../tests/support/test_nodes.rs"]
mod test_nodes;

use stream_kernel::config::{self, Config};
use stream_kernel::supervisor::{EventKind, RunEnd, Supervisor, SupervisorOptions};

const RUNS: usize = 20;

fn config(dir: &std::path::Path, pipeline: &str, ticks: u64, groups: &str) -> Config {
    let yaml = format!(
        r#"
version: 1
scenario: {{name: supervisor-bench}}
pipeline: {{nodes: [{pipeline}]}}
nodes: {{ticker: {{records: {ticks}}}}}
adapters:
  sink: {{kind: file, path: {out}}}
runtime:
  ordering: {{sink_mode: completion}}
  platform:
    bootstrap: {{mode: process_supervisor}}
    execution_ipc:
      control: {{transport: tcp_local}}
    process_groups: {groups}
    health: {{enabled: false}}
  observability:
    logging: {{lifecycle_events: {{enabled: false}}}}
"#,
        out = dir.join("out.txt").display()
    );
    config::load_str(&yaml, &test_nodes::registry())
        .unwrap_or_else(|r| panic!("{r}"))
        .config
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[((values.len() - 1) as f64 * p).round() as usize]
}

fn phase_ms(supervisor: &Supervisor, kind: EventKind) -> f64 {
    supervisor
        .events()
        .iter()
        .find(|e| e.kind == kind)
        .and_then(|e| e.field("duration_ms")?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn main() {
    stream_kernel::worker_entry(test_nodes::registry);
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = test_nodes::registry();
    // Four groups, one worker each, as the 4-group fund-load profile.
    let four = config(
        dir.path(),
        "ticker, pass, stuck, record",
        0,
        "[{name: a, nodes: [ticker]}, {name: b, nodes: [pass]}, {name: c, nodes: [stuck]}, {name: d, nodes: [record]}]",
    );
    let mut startup = Vec::new();
    for _ in 0..RUNS {
        let mut supervisor =
            Supervisor::launch(&four, &registry, &SupervisorOptions::default()).expect("launch");
        supervisor.wait_ready().expect("ready");
        // From the first spawn to the last READY: the start-groups and wait-ready phases.
        startup.push(
            phase_ms(&supervisor, EventKind::SupervisorStartGroups)
                + phase_ms(&supervisor, EventKind::SupervisorWaitReady),
        );
        supervisor.stop_all();
    }
    let drained = config(
        dir.path(),
        "ticker, pass, record",
        1000,
        "[{name: all, nodes: [ticker, pass, record]}]",
    );
    let mut stop = Vec::new();
    for _ in 0..RUNS {
        let mut supervisor =
            Supervisor::launch(&drained, &registry, &SupervisorOptions::default()).expect("launch");
        supervisor.wait_ready().expect("ready");
        supervisor.start_work().expect("start");
        assert_eq!(supervisor.run_until_done(), RunEnd::Drained);
        // From STOP to every worker reaped.
        let started = std::time::Instant::now();
        supervisor.stop_all();
        stop.push(started.elapsed().as_secs_f64() * 1e3);
    }
    println!("== stream-kernel supervisor timings ({RUNS} runs each) ==");
    println!(
        "spawn to all READY, 4 workers:   p50 {:.1} ms   p90 {:.1} ms   (target p50 <= 50 ms)",
        percentile(&mut startup, 0.5),
        percentile(&mut startup, 0.9)
    );
    println!(
        "graceful stop after drain:       p50 {:.1} ms   p90 {:.1} ms   (target p50 <= 50 ms)",
        percentile(&mut stop, 0.5),
        percentile(&mut stop, 0.9)
    );
}
