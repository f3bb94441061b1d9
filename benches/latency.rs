//! Latency bench (docs/performance.md): how long a record takes from the moment it is due on
//! the CLI's stdin to the moment its output line can be read from the CLI's stdout, measured
//! from outside, open loop, at fixed arrival rates.
//!
//! A feeder thread writes lines to `stream-kernel run -c CONFIG --input - --output -` on a
//! fixed schedule (1k, 10k, 100k records/s, and as fast as the pipe takes them); a reader
//! takes the time at which each output line arrives. Each record's latency counts from its
//! *scheduled* send time, so a feeder or a pipeline that falls behind is charged for it (no
//! coordinated omission). Every input line is a valid load attempt with a unique id, so output
//! line `k` belongs to input line `k` (checked on every line).
//!
//! In the same run, for reference: `cat` (the harness alone: two pipes and a process), and
//! the hand-written fund-load program with a flush-when-idle loop (the bench binary itself,
//! `LATENCY_PEER=1`). The runs alternate round by round so that all see the same machine;
//! each cell is the median of the rounds. The run's own summary (its `--report` JSON) is set
//! beside the external figures.
//!
//! `cargo bench --bench latency`. Environment: `LATENCY_RATES` (default `1000,10000,100000,max`),
//! `LATENCY_SECONDS` per cell (default 3), `LATENCY_ROUNDS` (default 3), `LATENCY_RUNS` (a
//! comma-separated subset of `cat,peer,inline,4g-balanced,4g-latency,4g-efficiency`).

#[path = "peer/fund_load_by_hand.rs"]
mod peer;

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Lines sent (and answered) before the timed schedule starts: the pipeline is up. One fewer
/// than the engine's latency sample period, so that the run's own histogram (which measures
/// records 64, 128, ...) leaves them out too.
const WARM_UP: usize = 63;
/// The longest a cell may take beyond its schedule before it is abandoned.
const CELL_DEADLINE: Duration = Duration::from_secs(120);
/// A `cat` p50 above this says the machine is too busy for the figures to mean anything.
const BUSY_MACHINE_CAT_P50: Duration = Duration::from_millis(1);
/// A spinning thread that receives less than this share of a CPU shares its core.
const MIN_CPU_SHARE: f64 = 0.9;

fn main() {
    if std::env::var_os("LATENCY_PEER").is_some() {
        run_peer();
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rates = parse_rates(&env_text("LATENCY_RATES", "1000,10000,100000,max"));
    let seconds = env_text("LATENCY_SECONDS", "3").parse().unwrap_or(3.0_f64);
    let rounds = env_text("LATENCY_ROUNDS", "3")
        .parse()
        .unwrap_or(3usize)
        .max(1);
    let wanted = env_text(
        "LATENCY_RUNS",
        "cat,peer,inline,4g-balanced,4g-latency,4g-efficiency",
    );
    // Kept after the run: each program's stderr (the CLI's summary) and report, per cell.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("latency-bench");
    std::fs::create_dir_all(&dir).expect("the bench's directory");
    println!("work directory (summaries, reports): {}", dir.display());
    let runs: Vec<Run> = all_runs(&dir)
        .into_iter()
        .filter(|r| wanted.split(',').any(|w| w.trim() == r.name))
        .collect();
    println!("{}", machine_line());
    let cpu_share = spinning_cpu_share(Duration::from_millis(300));
    println!(
        "a thread spinning 300 ms received {:.0}% of a CPU",
        cpu_share * 100.0
    );
    println!(
        "latency bench: {} rounds, {seconds} s per cell, runs alternate within each round",
        rounds
    );
    let mut table = Vec::new();
    for rate in &rates {
        let lines = rate.lines(seconds);
        let input = input_lines(WARM_UP + lines);
        let mut cells: Vec<Vec<Cell>> = vec![Vec::new(); runs.len()];
        for round in 0..rounds {
            for (i, run) in runs.iter().enumerate() {
                match measure(run, *rate, &input, &dir, round) {
                    Ok(cell) => cells[i].push(cell),
                    Err(e) => eprintln!("{} at {}: {e}", run.name, rate.label()),
                }
            }
        }
        for (run, cells) in runs.iter().zip(cells) {
            if let Some(median) = Cell::median(&cells) {
                table.push((run.name, *rate, median));
            }
        }
    }
    print_table(&table);
    judge(
        &table,
        cpu_share.min(spinning_cpu_share(Duration::from_millis(300))),
    );
}

/// The share of `wall` a spinning thread spends on a CPU: below [`MIN_CPU_SHARE`], something
/// else runs on its core and the machine is oversubscribed.
fn spinning_cpu_share(wall: Duration) -> f64 {
    let cpu = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into our timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    };
    let (cpu_start, start) = (cpu(), Instant::now());
    while start.elapsed() < wall {
        std::hint::spin_loop();
    }
    (cpu() - cpu_start).as_secs_f64() / start.elapsed().as_secs_f64()
}

fn env_text(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// An arrival rate: records per second, or as fast as the pipe takes them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rate {
    PerSecond(u64),
    Max,
}

impl Rate {
    fn label(&self) -> String {
        match self {
            Rate::PerSecond(n) if n % 1000 == 0 => format!("{}k/s", n / 1000),
            Rate::PerSecond(n) => format!("{n}/s"),
            Rate::Max => "max".to_string(),
        }
    }

    /// Timed lines in a cell of `seconds`.
    fn lines(&self, seconds: f64) -> usize {
        match self {
            Rate::PerSecond(n) => (*n as f64 * seconds) as usize,
            Rate::Max => (300_000.0 * seconds) as usize,
        }
    }
}

fn parse_rates(text: &str) -> Vec<Rate> {
    text.split(',')
        .filter_map(|r| match r.trim() {
            "max" => Some(Rate::Max),
            n => n.parse().ok().map(Rate::PerSecond),
        })
        .collect()
}

/// One program under test: the command, and whether it writes a `--report`.
struct Run {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    report: bool,
}

fn all_runs(dir: &Path) -> Vec<Run> {
    let cli = PathBuf::from(env!("CARGO_BIN_EXE_stream-kernel"));
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let cli_run = |name: &'static str, config: PathBuf| Run {
        name,
        program: cli.clone(),
        args: vec![
            "run".into(),
            "-c".into(),
            config.display().to_string(),
            "--input".into(),
            "-".into(),
            "--output".into(),
            "-".into(),
            "--dead-letter".into(),
            dir.join(format!("{name}.rejects.jsonl"))
                .display()
                .to_string(),
            "--quiet".into(),
        ],
        env: Vec::new(),
        report: true,
    };
    let mut runs = vec![
        Run {
            name: "cat",
            program: PathBuf::from("cat"),
            args: Vec::new(),
            env: Vec::new(),
            report: false,
        },
        Run {
            name: "peer",
            program: std::env::current_exe().expect("this bench's path"),
            args: Vec::new(),
            env: vec![("LATENCY_PEER".into(), "1".into())],
            report: false,
        },
        cli_run("inline", configs.join("fund_load_experiment_inline.yml")),
    ];
    for (name, profile) in [
        ("4g-balanced", "balanced"),
        ("4g-latency", "latency"),
        ("4g-efficiency", "efficiency"),
    ] {
        let config = with_profile(
            &configs.join("fund_load_experiment_4proc.yml"),
            profile,
            dir,
        );
        runs.push(cli_run(name, config));
    }
    runs
}

/// The 4-group config with every group on runner profile `profile`.
fn with_profile(config: &Path, profile: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(config).expect("bundled 4-group config");
    let edited: String = text
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("- {name: execution.") && line.ends_with("]}") {
                format!("{}], runner_profile: {profile}}}", &line[..line.len() - 2])
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        edited.matches("runner_profile").count() >= 4,
        "the bundled 4-group config changed shape"
    );
    let path = dir.join(format!("4g-{profile}.yml"));
    std::fs::write(&path, edited).expect("write config");
    path
}

/// Canonical load attempts with unique ids: every line gives exactly one output line.
fn input_lines(count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * 96);
    for i in 0..count {
        let id = i + 1;
        let customer = 1 + i % 997;
        let day = 1 + (i / 86_400) % 28;
        let secs = i % 86_400;
        writeln!(
            out,
            "{{\"id\":\"{id}\",\"customer_id\":\"{customer}\",\"load_amount\":\"${}.{:02}\",\"time\":\"2000-01-{day:02}T{:02}:{:02}:{:02}Z\"}}",
            1 + i % 300,
            i % 100,
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
        .expect("write to a vector");
    }
    out
}

/// The figures of one cell: one run at one rate.
#[derive(Debug, Clone, Default)]
struct Cell {
    /// Records per second achieved by the feeder over the timed part.
    achieved: f64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
    /// The run's own figures, estimated from its report's histogram.
    summary_p50: Option<Duration>,
    summary_p99: Option<Duration>,
}

impl Cell {
    fn median(cells: &[Cell]) -> Option<Cell> {
        if cells.is_empty() {
            return None;
        }
        let mid = |f: &dyn Fn(&Cell) -> Duration| {
            let mut v: Vec<Duration> = cells.iter().map(f).collect();
            v.sort();
            v[v.len() / 2]
        };
        let mid_opt = |f: &dyn Fn(&Cell) -> Option<Duration>| {
            let mut v: Vec<Duration> = cells.iter().filter_map(f).collect();
            v.sort();
            v.get(v.len() / 2).copied()
        };
        let mut achieved: Vec<f64> = cells.iter().map(|c| c.achieved).collect();
        achieved.sort_by(f64::total_cmp);
        Some(Cell {
            achieved: achieved[achieved.len() / 2],
            p50: mid(&|c| c.p50),
            p99: mid(&|c| c.p99),
            p999: mid(&|c| c.p999),
            max: mid(&|c| c.max),
            summary_p50: mid_opt(&|c| c.summary_p50),
            summary_p99: mid_opt(&|c| c.summary_p99),
        })
    }
}

/// Runs `run` once at `rate` over `input` (warm-up lines first).
fn measure(run: &Run, rate: Rate, input: &[u8], dir: &Path, round: usize) -> Result<Cell, String> {
    let report = dir.join(format!(
        "{}-{}-{round}.json",
        run.name,
        rate.label().replace('/', "")
    ));
    let mut command = Command::new(&run.program);
    command.args(&run.args);
    if run.report {
        command.arg("--report").arg(&report);
    }
    for (k, v) in &run.env {
        command.env(k, v);
    }
    let stderr = std::fs::File::create(dir.join(format!(
        "{}-{}-{round}.stderr",
        run.name,
        rate.label().replace('/', "")
    )))
    .map_err(|e| e.to_string())?;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", run.program.display()))?;
    let result = time_child(&mut child, rate, input);
    let status = wait_with_deadline(&mut child, Duration::from_secs(30));
    let mut cell = result?;
    if !status.is_some_and(|s| s.success()) {
        return Err(format!(
            "{} ended with {status:?}; its stderr is in {}",
            run.name,
            dir.display()
        ));
    }
    if run.report {
        let (p50, p99) = summary_quantiles(&report)?;
        cell.summary_p50 = p50;
        cell.summary_p99 = p99;
    }
    Ok(cell)
}

fn wait_with_deadline(child: &mut Child, deadline: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    child.wait().ok()
}

/// Feeds `input` to the child on `rate`'s schedule and times every output line.
fn time_child(child: &mut Child, rate: Rate, input: &[u8]) -> Result<Cell, String> {
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let line_ends: Vec<usize> = input
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    let timed = line_ends.len() - WARM_UP;
    let (start_tx, start_rx) = mpsc::channel::<Instant>();
    let (sent_tx, sent_rx) = mpsc::channel::<Vec<Instant>>();
    let input_owned = input.to_vec();
    let ends = line_ends.clone();
    let feeder = thread::spawn(move || feed(stdin, &input_owned, &ends, rate, &start_rx, &sent_tx));
    let arrivals = read_arrivals(stdout, line_ends.len(), &start_tx)?;
    let _ = feeder.join();
    let scheduled = sent_rx.recv().map_err(|_| "the feeder ended early")?;
    if arrivals.len() < line_ends.len() {
        return Err(format!(
            "{} of {} output lines arrived",
            arrivals.len(),
            line_ends.len()
        ));
    }
    let mut latencies: Vec<Duration> = (0..timed)
        .map(|k| arrivals[WARM_UP + k].saturating_duration_since(scheduled[k]))
        .collect();
    latencies.sort();
    let quantile =
        |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let span = scheduled[timed - 1].saturating_duration_since(scheduled[0]);
    Ok(Cell {
        achieved: timed as f64 / span.as_secs_f64().max(1e-9),
        p50: quantile(0.5),
        p99: quantile(0.99),
        p999: quantile(0.999),
        max: *latencies.last().unwrap_or(&Duration::ZERO),
        summary_p50: None,
        summary_p99: None,
    })
}

/// Writes the warm-up lines, waits for the reader's start signal, then writes each timed line
/// when it is due (all lines due by now in one write). Sends back each timed line's scheduled
/// time (for `Rate::Max`, the time its write began).
fn feed(
    stdin: std::process::ChildStdin,
    input: &[u8],
    ends: &[usize],
    rate: Rate,
    start: &mpsc::Receiver<Instant>,
    sent: &mpsc::Sender<Vec<Instant>>,
) {
    precise_sleeps();
    let mut stdin = stdin;
    let warm_end = ends[WARM_UP - 1];
    if stdin.write_all(&input[..warm_end]).is_err() {
        return;
    }
    let Ok(t0) = start.recv() else {
        return;
    };
    let timed = &ends[WARM_UP..];
    let mut scheduled = Vec::with_capacity(timed.len());
    let mut from = warm_end;
    let mut k = 0;
    while k < timed.len() {
        let due_end = match rate {
            Rate::Max => {
                let until = (k + 256).min(timed.len());
                scheduled.extend(std::iter::repeat_n(Instant::now(), until - k));
                until
            }
            Rate::PerSecond(per_second) => {
                let at =
                    |k: usize| t0 + Duration::from_nanos(k as u64 * 1_000_000_000 / per_second);
                let due = at(k);
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                }
                let now = Instant::now();
                let mut until = k;
                while until < timed.len() && (until == k || at(until) <= now) {
                    scheduled.push(at(until));
                    until += 1;
                }
                until
            }
        };
        let to = timed[due_end - 1];
        if stdin.write_all(&input[from..to]).is_err() {
            return;
        }
        from = to;
        k = due_end;
    }
    drop(stdin);
    let _ = sent.send(scheduled);
}

/// Asks for 1 ns timer slack, so that a sleep of the feeder ends when it should, not up to
/// 50 µs later.
fn precise_sleeps() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer and changes only this thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Reads the output, taking the time at which each line arrives; after the warm-up lines it
/// gives the feeder its start time. Checks that line `k` is the answer to input line `k`.
fn read_arrivals(
    stdout: std::process::ChildStdout,
    expected: usize,
    start: &mpsc::Sender<Instant>,
) -> Result<Vec<Instant>, String> {
    let mut stdout = BufReader::with_capacity(1 << 16, stdout).into_inner();
    let mut arrivals = Vec::with_capacity(expected);
    let mut buf = vec![0u8; 1 << 20];
    let mut partial: Vec<u8> = Vec::new();
    let deadline = Instant::now() + CELL_DEADLINE;
    while arrivals.len() < expected {
        let n = match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(format!("reading the output: {e}")),
        };
        let now = Instant::now();
        for &b in &buf[..n] {
            if b != b'\n' {
                partial.push(b);
                continue;
            }
            let k = arrivals.len();
            check_line(&partial, k)?;
            partial.clear();
            arrivals.push(now);
            if arrivals.len() == WARM_UP {
                let _ = start.send(Instant::now() + Duration::from_millis(20));
            }
        }
        if now > deadline {
            return Err("the cell passed its deadline".into());
        }
    }
    Ok(arrivals)
}

/// Output line `k` must be the decision on the input line with id `k + 1`.
fn check_line(line: &[u8], k: usize) -> Result<(), String> {
    let want = format!("{{\"id\":\"{}\",", k + 1);
    if line.starts_with(want.as_bytes()) {
        Ok(())
    } else {
        Err(format!(
            "output line {} is {:?}, not the answer to input line {}",
            k + 1,
            String::from_utf8_lossy(line),
            k + 1
        ))
    }
}

/// p50 and p99 of the run's own latency histogram, as its `--report` JSON estimates them.
fn summary_quantiles(report: &Path) -> Result<(Option<Duration>, Option<Duration>), String> {
    let text = std::fs::read_to_string(report)
        .map_err(|e| format!("reading the report {}: {e}", report.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let seconds = |key: &str| json["latency"][key].as_f64().map(Duration::from_secs_f64);
    Ok((seconds("p50_seconds"), seconds("p99_seconds")))
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn print_table(table: &[(&str, Rate, Cell)]) {
    println!();
    println!("| run | rate | achieved/s | p50 | p99 | p99.9 | max | summary p50 | summary p99 |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, rate, c) in table {
        println!(
            "| {name} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
            rate.label(),
            c.achieved,
            fmt(c.p50),
            fmt(c.p99),
            fmt(c.p999),
            fmt(c.max),
            c.summary_p50.map_or("-".into(), fmt),
            c.summary_p99.map_or("-".into(), fmt),
        );
    }
}

/// The targets (docs/performance.md), each met or missed; none at all when the machine is
/// oversubscribed (a spinning thread did not get its CPU before or after the cells) or `cat`
/// alone shows it too busy.
fn judge(table: &[(&str, Rate, Cell)], cpu_share: f64) {
    println!();
    if cpu_share < MIN_CPU_SHARE {
        println!(
            "run INVALID: a spinning thread received {:.0}% of a CPU (below {:.0}%): the machine is oversubscribed, no target is judged",
            cpu_share * 100.0,
            MIN_CPU_SHARE * 100.0
        );
        return;
    }
    if let Some((_, _, cat)) = table.iter().find(|(n, _, _)| *n == "cat")
        && cat.p50 > BUSY_MACHINE_CAT_P50
    {
        println!(
            "run INVALID: `cat` alone took p50 {} (above {}): the machine is busy, no target is judged",
            fmt(cat.p50),
            fmt(BUSY_MACHINE_CAT_P50)
        );
        return;
    }
    let ms = Duration::from_millis;
    let us = Duration::from_micros;
    for (name, rate, c) in table {
        let Rate::PerSecond(per_second) = rate else {
            continue;
        };
        let mut checks: Vec<(String, bool)> = Vec::new();
        match (*name, *per_second) {
            ("4g-balanced", 1000 | 10_000) => {
                checks.push((format!("p50 {} <= 250 µs", fmt(c.p50)), c.p50 <= us(250)));
                checks.push((format!("p99 {} <= 2 ms", fmt(c.p99)), c.p99 <= ms(2)));
            }
            ("4g-balanced", 100_000) => {
                checks.push((format!("p99 {} <= 5 ms", fmt(c.p99)), c.p99 <= ms(5)));
            }
            ("inline", 1000 | 10_000 | 100_000) => {
                checks.push((format!("p50 {} <= 50 µs", fmt(c.p50)), c.p50 <= us(50)));
                checks.push((format!("p99 {} <= 1 ms", fmt(c.p99)), c.p99 <= ms(1)));
            }
            _ => {}
        }
        if let (Some(s50), Some(s99)) = (c.summary_p50, c.summary_p99) {
            let within = |a: Duration, b: Duration| {
                let (a, b) = (a.as_secs_f64(), b.as_secs_f64());
                a.max(b) <= 2.0 * a.min(b)
            };
            checks.push((
                format!("summary p50 {} within 2x of {}", fmt(s50), fmt(c.p50)),
                within(s50, c.p50),
            ));
            checks.push((
                format!("summary p99 {} within 2x of {}", fmt(s99), fmt(c.p99)),
                within(s99, c.p99),
            ));
        }
        for (what, met) in checks {
            println!(
                "{name} at {}: {what}: {}",
                rate.label(),
                if met { "met" } else { "MISSED" }
            );
        }
    }
}

fn machine_line() -> String {
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "machine: {cpus} CPUs, {model}; load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// The hand-written peer, stdin to stdout, flushing whenever it would wait for input.
fn run_peer() {
    let stdin = BufReader::with_capacity(1 << 20, std::io::stdin().lock());
    let stdout = BufWriter::with_capacity(1 << 18, std::io::stdout().lock());
    let mut dead = Vec::new();
    if let Err(e) = peer::adjudicate(
        stdin,
        stdout,
        &mut dead,
        &peer::Settings::experiment(),
        peer::Flush::WhenIdle,
    ) {
        eprintln!("peer: {e}");
        std::process::exit(1);
    }
}
