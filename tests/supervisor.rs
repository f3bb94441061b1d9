//! The supervisor contract (docs/architecture.md P5PRE-SUP-01..06, P5PRE-LIFE-01..04, SUP-07..09) with
//! real processes and real signals.
//!
//! This test binary is also the worker executable: `main` calls `worker_entry` first, with a
//! registry of small test nodes (`support/test_nodes.rs`), exactly as an embedding program
//! does. Tests run one at a time: they measure detection latencies of real processes.

#[path = "support/test_nodes.rs"]
mod test_nodes;

#[path = "support/checks.rs"]
mod checks;

#[path = "support/http.rs"]
mod http;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use checks::{alive, check, parent_of};
use http::http_get;
use libtest_mimic::{Failed, Trial};
use stream_kernel::config::{self, Config};
use stream_kernel::control::now_ms;
use stream_kernel::supervisor::{
    EventKind, FailureCategory, LifecycleEvent, RunEnd, Supervisor, SupervisorError,
    SupervisorOptions, WorkerState, run_supervised,
};

fn main() {
    let tests = vec![
        Trial::test("sup_01_workers_are_real_child_processes", sup_01),
        Trial::test(
            "sup_02_never_ready_is_start_timeout_naming_the_worker",
            sup_02,
        ),
        Trial::test(
            "sup_03_graceful_stop_stops_every_worker_with_exit_0",
            sup_03,
        ),
        Trial::test(
            "sup_04_worker_ignoring_stop_is_forced_after_its_timeout",
            sup_04,
        ),
        Trial::test("sup_05_workers_3_gives_exactly_3_processes", sup_05),
        Trial::test("sup_06_every_phase_is_one_console_line", sup_06),
        Trial::test("life_01_spawn_order_is_config_order", life_01),
        Trial::test("life_02_sigstopped_worker_is_heartbeat_timeout", life_02),
        Trial::test("life_03_kill_9_is_crashed_sigkill_within_100ms", life_03),
        Trial::test("life_04_sigterm_drains_then_exits_143", life_04),
        Trial::test(
            "sup_07_kill_9_of_the_supervisor_takes_every_worker_down",
            sup_07,
        ),
        Trial::test("sup_08_readyz_follows_the_gate_and_metrics_parse", sup_08),
        Trial::test(
            "sup_09_failing_on_start_is_bootstrap_error_and_nothing_is_ingested",
            sup_09,
        ),
        Trial::test(
            "zz_no_worker_process_or_socket_is_left_behind",
            no_leftovers,
        ),
    ];
    checks::run_serially(test_nodes::registry, tests);
}

/// A process-mode config of test nodes: `groups` is YAML for `process_groups`.
fn config(dir: &Path, pipeline: &str, nodes: &str, groups: &str, extra_platform: &str) -> Config {
    let yaml = format!(
        r#"
version: 1
scenario: {{name: supervisor-test}}
pipeline: {{nodes: [{pipeline}]}}
nodes: {{{nodes}}}
adapters:
  sink: {{kind: file, path: {out}}}
runtime:
  ordering: {{sink_mode: completion}}
  platform:
    bootstrap: {{mode: process_supervisor}}
    execution_ipc:
      control: {{transport: tcp_local}}
    process_groups: {groups}
    health: {{enabled: true, bind: "127.0.0.1:0"}}
    {extra_platform}
"#,
        out = dir.join("out.txt").display()
    );
    config::load_str(&yaml, &test_nodes::registry())
        .unwrap_or_else(|r| panic!("{r}\n{yaml}"))
        .config
}

fn group(name: &str, nodes: &str, extra: &str) -> String {
    format!(
        "{{name: {name}, nodes: [{nodes}], heartbeat_seconds: 0.2, start_timeout_seconds: 5, stop_timeout_seconds: 2 {extra}}}"
    )
}

fn launch(config: &Config) -> Result<Supervisor, Failed> {
    Supervisor::launch(
        config,
        &test_nodes::registry(),
        &SupervisorOptions::default(),
    )
    .map_err(|e| e.to_string().into())
}

fn events_of(events: &[LifecycleEvent], kind: EventKind) -> Vec<&LifecycleEvent> {
    events.iter().filter(|e| e.kind == kind).collect()
}

/// P5PRE-SUP-01: start spawns real OS processes; each pid is alive and a child of ours.
fn sup_01() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let groups = format!(
        "[{}, {}]",
        group("a", "ticker", ""),
        group("b", "record", "")
    );
    let config = config(
        dir.path(),
        "ticker, record",
        "ticker: {records: 0}",
        &groups,
        "",
    );
    let mut supervisor = launch(&config)?;
    supervisor.wait_ready()?;
    let snapshot = supervisor.snapshot();
    check(snapshot.workers().count() == 2, || format!("{snapshot:?}"))?;
    for worker in snapshot.workers() {
        let pid = worker.pid.ok_or("no pid")?;
        check(alive(pid), || {
            format!("{} (pid {pid}) is not alive", worker.id)
        })?;
        check(parent_of(pid) == Some(std::process::id()), || {
            format!("{} is not our child", worker.id)
        })?;
        check(worker.state == WorkerState::Ready, || {
            format!("{} is {}", worker.id, worker.state)
        })?;
    }
    supervisor.stop_all();
    Ok(())
}

/// P5PRE-SUP-02: a worker that never says READY yields `start_timeout` within its deadline
/// plus a little slack, naming it.
fn sup_02() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let groups = format!(
        "[{}, {}]",
        group("a", "ticker", ""),
        "{name: b, nodes: [hang, record], heartbeat_seconds: 0.2, start_timeout_seconds: 1, stop_timeout_seconds: 1}"
    );
    let config = config(
        dir.path(),
        "ticker, hang, record",
        "ticker: {records: 0}",
        &groups,
        "readiness: {readiness_timeout_seconds: 20}",
    );
    let started = Instant::now();
    let mut supervisor = launch(&config)?;
    let outcome = supervisor.wait_ready();
    let waited = started.elapsed();
    supervisor.stop_all();
    match outcome {
        Err(SupervisorError::WorkerFailed(failure)) => {
            check(failure.category == FailureCategory::StartTimeout, || {
                format!("{failure:?}")
            })?;
            check(failure.worker == "b#1", || format!("{failure:?}"))?;
        }
        other => return Err(format!("expected start_timeout, got {other:?}").into()),
    }
    check(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(3),
        || format!("detected after {waited:?}"),
    )
}

/// P5PRE-SUP-03: a graceful stop moves every worker to `stopped`, mode graceful, exit 0.
fn sup_03() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let groups = format!("[{}]", group("all", "ticker, pass, record", ""));
    let config = config(
        dir.path(),
        "ticker, pass, record",
        "ticker: {records: 100}",
        &groups,
        "",
    );
    let run = run_supervised(
        &config,
        &test_nodes::registry(),
        &SupervisorOptions::default(),
    )?;
    check(run.end == RunEnd::Drained, || format!("{:?}", run.end))?;
    let stopped = events_of(&run.events, EventKind::WorkerStopped);
    check(stopped.len() == 1, || format!("{stopped:?}"))?;
    for event in stopped {
        check(
            event.field("mode") == Some("graceful") && event.field("exit") == Some("exit 0"),
            || format!("{event:?}"),
        )?;
    }
    let output = std::fs::read_to_string(dir.path().join("out.txt"))?;
    check(output.lines().count() == 100, || {
        format!("{} lines", output.lines().count())
    })
}

/// P5PRE-SUP-04: a worker that cannot honour STOP is killed after its stop timeout; the events
/// say `forced`.
fn sup_04() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let groups = "[{name: all, nodes: [ticker, stuck, record], heartbeat_seconds: 0.2, start_timeout_seconds: 5, stop_timeout_seconds: 1}]";
    let config = config(
        dir.path(),
        "ticker, stuck, record",
        "ticker: {records: 5}",
        groups,
        "",
    );
    let mut supervisor = launch(&config)?;
    supervisor.wait_ready()?;
    supervisor.start_work()?;
    // Let the stuck node take its first record.
    let settle = Instant::now() + Duration::from_millis(300);
    while Instant::now() < settle {
        supervisor.pump(Duration::from_millis(20));
    }
    let started = Instant::now();
    supervisor.stop_all();
    let took = started.elapsed();
    let events = supervisor.events();
    let forced = events_of(events, EventKind::WorkerStopping)
        .into_iter()
        .any(|e| e.field("mode") == Some("forced"));
    check(forced, || "no forced worker_stopping".into())?;
    let stopped = events_of(events, EventKind::WorkerStopped);
    let killed = stopped.len() == 1
        && stopped[0].field("mode") == Some("forced")
        && stopped[0]
            .field("exit")
            .is_some_and(|e| e.contains("SIGKILL"));
    check(killed, || format!("{stopped:?}"))?;
    check(
        !events_of(events, EventKind::SupervisorForceStop).is_empty(),
        || "no supervisor_force_stop".into(),
    )?;
    check(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        || format!("stop took {took:?}"),
    )
}

/// P5PRE-SUP-05: `workers: 3` gives exactly three processes for that group, ids `#1..#3`.
fn sup_05() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let groups = format!(
        "[{}, {}, {}]",
        group("src", "ticker", ""),
        group("mid", "pass", ", workers: 3"),
        group("out", "record", "")
    );
    let config = config(
        dir.path(),
        "ticker, pass, record",
        "ticker: {records: 0}",
        &groups,
        "",
    );
    let mut supervisor = launch(&config)?;
    supervisor.wait_ready()?;
    let snapshot = supervisor.snapshot();
    let mid = snapshot
        .groups
        .iter()
        .find(|(name, _)| name == "mid")
        .map(|(_, w)| w.clone())
        .ok_or("no group mid")?;
    let ids: Vec<&str> = mid.iter().map(|w| w.id.as_str()).collect();
    check(ids == ["mid#1", "mid#2", "mid#3"], || format!("{ids:?}"))?;
    let mut pids: Vec<u32> = mid.iter().filter_map(|w| w.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    check(pids.len() == 3 && pids.iter().all(|p| alive(*p)), || {
        format!("{pids:?}")
    })?;
    supervisor.stop_all();
    Ok(())
}

fn sample_config(dir: &Path, profile_extra: &str, lines_source: &str) -> PathBuf {
    let path = dir.join("config.yml");
    std::fs::write(
        &path,
        format!(
            r#"
version: 1
scenario: {{name: baseline}}
adapters:
  source: {lines_source}
  sink: {{kind: file, path: {out}}}
runtime:
  platform:
    bootstrap: {{mode: process_supervisor}}
    execution_ipc:
      control: {{transport: unix}}
    process_groups:
      - {{name: all, nodes: [source, parse_load_attempt, compute_time_keys, idempotency_gate, compute_features, evaluate_policies, update_windows, format_output, sink], heartbeat_seconds: 0.5, stop_timeout_seconds: 10}}
    {profile_extra}
"#,
            out = dir.join("output.txt").display()
        ),
    )
    .expect("write config");
    path
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stream-kernel"))
}

/// P5PRE-SUP-06: every phase's lifecycle events appear on the console log (stderr, by
/// default: stdout may carry data), one line each, in the `ts level [worker_id pid] event k=v`
/// format.
fn sup_06() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let config = sample_config(dir.path(), "", "{kind: generator, lines: 2000, seed: 1}");
    let out = cli().args(["run", "-c"]).arg(&config).output()?;
    check(out.status.success(), || {
        String::from_utf8_lossy(&out.stderr).into()
    })?;
    let stdout = String::from_utf8_lossy(&out.stderr);
    for event in [
        "worker_spawned",
        "supervisor_start_groups",
        "worker_bootstrap_loaded",
        "worker_ready",
        "supervisor_wait_ready",
        "worker_running",
        "supervisor_start_workload",
        "worker_stopping",
        "worker_stopped",
        "supervisor_graceful_stop",
    ] {
        let lines: Vec<&str> = stdout
            .lines()
            .filter(|l| l.split_whitespace().nth(4) == Some(event))
            .collect();
        check(lines.len() == 1, || format!("{event}: {lines:?}\n{stdout}"))?;
        let line = lines[0];
        let fields: Vec<&str> = line.split_whitespace().collect();
        check(
            fields[0].ends_with('Z') && fields[1] == "INFO" && fields[2].starts_with('['),
            || format!("format: {line}"),
        )?;
    }
    Ok(())
}

/// P5PRE-LIFE-01: workers are spawned in config order (groups in order, workers by index),
/// the same way every time.
fn life_01() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let groups = format!(
        "[{}, {}, {}]",
        group("first", "ticker", ""),
        group("second", "pass", ", workers: 2"),
        group("third", "record", "")
    );
    let config = config(
        dir.path(),
        "ticker, pass, record",
        "ticker: {records: 0}",
        &groups,
        "",
    );
    let expected = ["first#1", "second#1", "second#2", "third#1"];
    for _ in 0..2 {
        let mut supervisor = launch(&config)?;
        supervisor.wait_ready()?;
        let spawned: Vec<String> = events_of(supervisor.events(), EventKind::WorkerSpawned)
            .iter()
            .filter_map(|e| e.worker_id.clone())
            .collect();
        supervisor.stop_all();
        check(spawned == expected, || format!("{spawned:?}"))?;
    }
    Ok(())
}

/// P5PRE-LIFE-02: a SIGSTOPped worker is marked `heartbeat_timeout` within three heartbeats
/// plus slack.
fn life_02() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let groups = format!(
        "[{}, {}]",
        group("a", "ticker", ""),
        group("b", "record", "")
    );
    // A source that keeps running for the whole test: a worker that has drained is no longer
    // judged on heartbeats (its work is done), so the SIGSTOP must hit a live run.
    let config = config(
        dir.path(),
        "ticker, record",
        "ticker: {records: 1000000, delay_us: 1000}",
        &groups,
        "",
    );
    let mut supervisor = launch(&config)?;
    supervisor.wait_ready()?;
    supervisor.start_work()?;
    let pid = supervisor.pid_of("b#1").ok_or("no pid")?;
    let stopped_at = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )?;
    let deadline = stopped_at + Duration::from_secs(10);
    while supervisor.failure().is_none() && Instant::now() < deadline {
        supervisor.pump(Duration::from_millis(20));
    }
    let detected = stopped_at.elapsed();
    let failure = supervisor.failure().cloned();
    supervisor.stop_all();
    let failure = failure.ok_or("no failure detected")?;
    check(
        failure.worker == "b#1" && failure.category == FailureCategory::HeartbeatTimeout,
        || format!("{failure:?}"),
    )?;
    // Three heartbeats (0.6 s) plus one more interval of slack for the last beat in flight.
    check(detected < Duration::from_millis(600 + 200 + 400), || {
        format!("detected after {detected:?}")
    })
}

/// P5PRE-LIFE-03: `kill -9` of a worker is seen as `crashed` (SIGKILL) within 100 ms of its
/// death.
fn life_03() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let groups = format!(
        "[{}, {}]",
        group("a", "ticker", ""),
        group("b", "record", "")
    );
    let config = config(
        dir.path(),
        "ticker, record",
        "ticker: {records: 0}",
        &groups,
        "",
    );
    let mut supervisor = launch(&config)?;
    supervisor.wait_ready()?;
    supervisor.start_work()?;
    let pid = supervisor.pid_of("a#1").ok_or("no pid")?;
    let killed_ms = now_ms();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while supervisor.failure().is_none() && Instant::now() < deadline {
        supervisor.pump(Duration::from_millis(100));
    }
    let event = events_of(supervisor.events(), EventKind::WorkerFailed)
        .first()
        .map(|e| (*e).clone());
    supervisor.stop_all();
    let event = event.ok_or("no worker_failed")?;
    check(event.field("category") == Some("crashed"), || {
        format!("{event:?}")
    })?;
    check(
        event.field("detail").is_some_and(|d| d.contains("SIGKILL")),
        || format!("{event:?}"),
    )?;
    let latency = event.ts.saturating_sub(killed_ms);
    check(latency <= 100, || {
        format!("detected {latency} ms after the kill")
    })
}

/// Runs the CLI, sends `signal` after `after`, and returns its status with its summary
/// (stdout) followed by its log (stderr).
fn run_cli_with_signal(
    config: &Path,
    after: Duration,
    signal: nix::sys::signal::Signal,
) -> Result<(std::process::ExitStatus, String), Failed> {
    let mut child = cli()
        .args(["run", "-c"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().ok_or("stdout")?));
    let stderr = read_all(Box::new(child.stderr.take().ok_or("stderr")?));
    std::thread::sleep(after);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)?;
    let status = child.wait()?;
    let text = stdout.join().map_err(|_| "reader")? + &stderr.join().map_err(|_| "reader")?;
    Ok((status, text))
}

/// P5PRE-LIFE-04: SIGTERM mid-run drains first: every completed record is written in order, the
/// exit status is 143, and the forced path is not taken.
fn life_04() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("input.txt");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input)?);
    stream_kernel::apps::fund_load::generator::write_lines(3_000_000, 9, &mut file)?;
    file.flush()?;
    drop(file);
    let config = sample_config(
        dir.path(),
        "",
        &format!("{{kind: file, path: {}}}", input.display()),
    );
    let (status, stdout) = run_cli_with_signal(
        &config,
        Duration::from_millis(1500),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    check(status.code() == Some(143), || {
        format!("{status:?}\n{stdout}")
    })?;
    check(!stdout.contains("supervisor_force_stop"), || {
        format!("forced:\n{stdout}")
    })?;
    check(
        stdout.contains("worker_stopped group=all mode=graceful exit=exit 0"),
        || stdout.clone(),
    )?;
    // The output is a prefix of the inline run's output over the same input.
    let partial = std::fs::read(dir.path().join("output.txt"))?;
    let reference_dir = tempfile::tempdir()?;
    let reference = reference_dir.path().join("full.txt");
    let out = cli()
        .args(["run", "-c"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/configs/fund_load_baseline_inline.yml"
        ))
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&reference)
        .current_dir(reference_dir.path())
        .output()?;
    check(out.status.success(), || {
        String::from_utf8_lossy(&out.stderr).into()
    })?;
    let full = std::fs::read(&reference)?;
    check(!partial.is_empty() && partial.len() < full.len(), || {
        format!("partial {} of {} bytes", partial.len(), full.len())
    })?;
    check(full.starts_with(&partial), || {
        "drained output is not a prefix of the full output".into()
    })?;
    check(partial.ends_with(b"\n"), || {
        "last record only partly written".into()
    })?;
    check(stdout.contains("resume with --skip"), || stdout.clone())
}

/// SUP-07: `kill -9` of the supervisor: every worker exits within a second.
fn sup_07() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let config = sample_config(
        dir.path(),
        "",
        "{kind: generator, lines: 50000000, seed: 1}",
    );
    // A killed supervisor cannot remove its control socket directory: the next run does that
    // (see `no_leftovers`), which `remove_stale_socket_dirs` runs in the test below.
    let mut child = cli()
        .args(["run", "-c"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stderr.take().ok_or("stderr")?;
    // Read until the worker is running, collecting worker pids from the lifecycle lines.
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains("worker_running") && Instant::now() < deadline {
        let n = stdout.read(&mut buf)?;
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let pids: Vec<u32> = seen
        .lines()
        .filter(|l| l.contains("worker_spawned"))
        .filter_map(|l| {
            l.split('[')
                .nth(1)?
                .split(']')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .collect();
    check(!pids.is_empty(), || format!("no worker pids in {seen}"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let killed = Instant::now();
    let _ = child.wait();
    while pids.iter().any(|p| alive(*p)) && killed.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = killed.elapsed();
    check(!pids.iter().any(|p| alive(*p)), || {
        format!("workers {pids:?} outlived the supervisor")
    })?;
    check(took < Duration::from_secs(1), || {
        format!("workers took {took:?} to exit")
    })
}

/// Checks Prometheus text 0.0.4 (what a scrape without `Accept` gets): comments and
/// `name{labels} value` samples, and no OpenMetrics `# EOF`.
fn parse_prometheus(text: &str) -> Result<usize, String> {
    let mut samples = 0;
    for line in text.lines() {
        if line.starts_with("# ") || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("bad line {line:?}"))?;
        value
            .parse::<f64>()
            .map_err(|_| format!("bad value in {line:?}"))?;
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(format!("bad metric name in {line:?}"));
        }
        if name_end < series.len() && !series.ends_with('}') {
            return Err(format!("bad labels in {line:?}"));
        }
        samples += 1;
    }
    if text.contains("# EOF") {
        return Err("# EOF in Prometheus text".into());
    }
    Ok(samples)
}

/// SUP-08: `/readyz` is 503 before the gate, 200 after, 503 while stopping; `/metrics` parses
/// as Prometheus text.
fn sup_08() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let groups = "[{name: all, nodes: [ticker, stuck, record], heartbeat_seconds: 0.2, start_timeout_seconds: 5, stop_timeout_seconds: 1}]";
    let config = config(
        dir.path(),
        "ticker, stuck, record",
        "ticker: {records: 3}",
        groups,
        "",
    );
    let mut supervisor = launch(&config)?;
    let address = supervisor.health_address().ok_or("no health server")?;
    check(http_get(address, "/livez")?.0 == 200, || "livez".into())?;
    check(http_get(address, "/readyz")?.0 == 503, || {
        "ready before the gate".into()
    })?;
    supervisor.wait_ready()?;
    check(http_get(address, "/readyz")?.0 == 503, || {
        "ready before START_WORK".into()
    })?;
    supervisor.start_work()?;
    check(http_get(address, "/readyz")?.0 == 200, || {
        "not ready after the gate".into()
    })?;
    let (status, metrics) = http_get(address, "/metrics")?;
    check(status == 200, || "metrics status".into())?;
    let samples = parse_prometheus(&metrics)?;
    check(
        samples > 10 && metrics.contains("stream_kernel_worker_state{"),
        || metrics.clone(),
    )?;
    // The stuck worker makes stopping last about a second: probe while it does.
    let prober = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        http_get(address, "/readyz")
            .map(|(s, _)| s)
            .map_err(|e| format!("{e:?}"))
    });
    supervisor.stop_all();
    let while_stopping = prober.join().map_err(|_| "prober")??;
    check(while_stopping == 503, || {
        format!("/readyz while stopping: {while_stopping}")
    })?;
    Ok(())
}

/// SUP-09: a node whose `on_start` fails is `bootstrap_error` with the node's message, and
/// nothing is ingested.
fn sup_09() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let groups = format!("[{}]", group("all", "ticker, fail_start, record", ""));
    let config = config(
        dir.path(),
        "ticker, fail_start, record",
        "ticker: {records: 1000}",
        &groups,
        "",
    );
    let mut supervisor = launch(&config)?;
    let outcome = supervisor.wait_ready();
    supervisor.stop_all();
    match outcome {
        Err(SupervisorError::WorkerFailed(failure)) => {
            check(failure.category == FailureCategory::BootstrapError, || {
                format!("{failure:?}")
            })?;
            check(
                failure.detail.contains(test_nodes::FAIL_START_MESSAGE)
                    && failure.detail.contains("fail_start"),
                || format!("{failure:?}"),
            )?;
        }
        other => return Err(format!("expected bootstrap_error, got {other:?}").into()),
    }
    let written = std::fs::read_to_string(dir.path().join("out.txt")).unwrap_or_default();
    check(written.is_empty(), || format!("ingested: {written}"))
}

/// After the suite: no worker process of ours and no control socket directory is left.
fn no_leftovers() -> Result<(), Failed> {
    std::thread::sleep(Duration::from_millis(200));
    let ours = std::process::id();
    let mut leftovers = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == ours || !alive(pid) {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let is_worker = environ
            .split(|b| *b == 0)
            .any(|kv| kv == b"STREAM_KERNEL_ROLE=worker");
        let supervisor_pid = environ
            .split(|b| *b == 0)
            .find_map(|kv| kv.strip_prefix(b"STREAM_KERNEL_SUPERVISOR_PID="))
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u32>().ok());
        if is_worker && (supervisor_pid == Some(ours) || supervisor_pid.is_some_and(|s| !alive(s)))
        {
            leftovers.push(pid);
        }
    }
    check(leftovers.is_empty(), || {
        format!("worker processes left: {leftovers:?}")
    })?;
    // SUP-07 kills a supervisor with -9; its directory is what the next run's sweep removes.
    stream_kernel::control::remove_stale_socket_dirs();
    let sockets: Vec<String> = std::fs::read_dir(std::env::temp_dir())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("stream-kernel-control-"))
        .collect();
    check(sockets.is_empty(), || {
        format!("control socket directories left: {sockets:?}")
    })
}
