//! Fault injection against the real CLI (reliability.md R1, R3): `kill -9` of a random worker at
//! a random moment, and SIGTERM to the supervisor, on the 4-group fund-load job.
//!
//! Every run is checked against the inline (memory) profile: the output of a failed or stopped
//! run must hold every record through the `seq` the run reports, and nothing that the full run
//! would not have written in that place. `STREAM_KERNEL_CHAOS_RUNS` sets the number of kill
//! runs (20 here; `tools/chaos.sh` runs hundreds).

#[path = "support/fund_load_runs.rs"]
mod fund_load_runs;

#[path = "support/checks.rs"]
mod checks;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use checks::{alive, check, parent_of};
use fund_load_runs::{Profile, generated_input, inline_run};
use libtest_mimic::{Arguments, Failed, Trial};

const INPUT_LINES: u64 = 200_000;
/// No run may take longer than this: a run that does is a hang.
const HANG: Duration = Duration::from_secs(60);

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let tests = vec![
        Trial::test(
            "r1_kill_9_of_a_random_worker_loses_nothing_and_leaves_nothing",
            r1,
        ),
        Trial::test("r3_sigterm_mid_run_drains_a_prefix_and_exits_143", r3),
    ];
    libtest_mimic::run(&args, tests).exit();
}

/// The shared input and the inline run's full output on it.
struct Reference {
    dir: tempfile::TempDir,
    input: PathBuf,
    output: Vec<u8>,
    rejects: Vec<u8>,
}

impl Reference {
    fn build() -> Result<Self, Failed> {
        let dir = tempfile::tempdir()?;
        let input = dir.path().join("input.txt");
        generated_input(&input, INPUT_LINES)?;
        let full = dir.path().join("full");
        std::fs::create_dir(&full)?;
        inline_run(&registry(), Profile::Experiment, &input, &full)?;
        Ok(Self {
            output: std::fs::read(full.join("output.txt"))?,
            rejects: std::fs::read(full.join("rejects.jsonl"))?,
            input,
            dir,
        })
    }

    /// The inline run's output and dead letters for the first `k` input lines.
    fn first(&self, k: u64) -> Result<(Vec<u8>, Vec<u8>), Failed> {
        let dir = tempfile::tempdir_in(self.dir.path())?;
        let head = dir.path().join("head.txt");
        let text = std::fs::read(&self.input)?;
        let mut out = std::fs::File::create(&head)?;
        for line in text.split_inclusive(|b| *b == b'\n').take(k as usize) {
            out.write_all(line)?;
        }
        drop(out);
        inline_run(&registry(), Profile::Experiment, &head, dir.path())?;
        Ok((
            std::fs::read(dir.path().join("output.txt"))?,
            std::fs::read(dir.path().join("rejects.jsonl"))?,
        ))
    }

    /// A run reported "complete through `k`": its files hold at least the first `k` records'
    /// results and are a prefix of the full run's (nothing lost, nothing invented).
    fn check_through(&self, k: u64, output: &[u8], rejects: &[u8]) -> Result<(), Failed> {
        let (first_output, first_rejects) = self.first(k)?;
        for (name, got, first, full) in [
            ("output", output, &first_output, &self.output),
            ("rejects", rejects, &first_rejects, &self.rejects),
        ] {
            check(full.starts_with(got), || {
                format!(
                    "{name} ({} bytes) is not a prefix of the full run's ({} bytes)",
                    got.len(),
                    full.len()
                )
            })?;
            check(got.starts_with(first), || {
                format!(
                    "{name} ({} bytes) lacks records reported complete through seq {k} ({} bytes)",
                    got.len(),
                    first.len()
                )
            })?;
        }
        Ok(())
    }
}

fn registry() -> stream_kernel::graph::Registry {
    stream_kernel::apps::fund_load::registry()
}

/// The CLI on the 4-group experiment config, in `dir`.
fn spawn_cli(input: &Path, dir: &Path) -> Result<Child, Failed> {
    let config =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/fund_load_experiment_4proc.yml");
    Ok(Command::new(env!("CARGO_BIN_EXE_stream-kernel"))
        .args(["run", "--quiet", "-c"])
        .arg(&config)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(dir.join("output.txt"))
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?)
}

/// Children of `pid` (its worker processes).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| parent_of(*p) == Some(pid))
        .collect()
}

/// Waits until the CLI has its 4 workers and its output reached `bytes` (or it exited).
fn wait_for_progress(cli: &mut Child, output: &Path, bytes: u64) -> Result<Vec<u32>, Failed> {
    let deadline = Instant::now() + HANG;
    loop {
        if cli.try_wait()?.is_some() {
            return Ok(Vec::new());
        }
        let workers = children_of(cli.id());
        let written = std::fs::metadata(output).map_or(0, |m| m.len());
        if workers.len() == 4 && written >= bytes {
            return Ok(workers);
        }
        check(Instant::now() < deadline, || {
            format!("no progress to {bytes} bytes: a hang")
        })?;
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits for the CLI to exit (a hang otherwise); returns its exit code and stdout.
fn wait_exit(mut cli: Child) -> Result<(Option<i32>, String, String), Failed> {
    let deadline = Instant::now() + HANG;
    while cli.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            let _ = cli.kill();
            return Err("the run did not end: a hang".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = cli.wait_with_output()?;
    Ok((
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// Waits (at most 2 s) until none of `pids` is alive.
fn check_no_orphans(pids: &[u32]) -> Result<(), Failed> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|p| alive(*p)) {
        check(Instant::now() < deadline, || {
            format!(
                "orphaned workers: {:?}",
                pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
            )
        })?;
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// `seq` after `marker` in the CLI's report.
fn reported_seq(stdout: &str, marker: &str) -> Option<u64> {
    let at = stdout.find(marker)? + marker.len();
    stdout[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A small deterministic generator for victims and moments; the seed is printed.
struct Chooser(u64);

impl Chooser {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below.max(1)
    }
}

fn chaos_runs() -> u64 {
    std::env::var("STREAM_KERNEL_CHAOS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// R1: each run kills one random worker with SIGKILL once the output reached a random size;
/// the run must end (no hang), leave no worker behind, and account for every record: the
/// output holds exactly what the full run writes through the reported `seq`.
fn r1() -> Result<(), Failed> {
    let reference = Reference::build()?;
    let seed = std::env::var("STREAM_KERNEL_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 | 1)
        });
    println!("R1 seed {seed} (STREAM_KERNEL_CHAOS_SEED to replay)");
    let mut chooser = Chooser(seed);
    let (mut failed, mut exact) = (0, 0);
    let runs = chaos_runs();
    for run in 0..runs {
        let dir = tempfile::tempdir_in(reference.dir.path())?;
        let threshold = chooser.next(reference.output.len() as u64 * 6 / 10);
        let victim_index = chooser.next(4) as usize;
        let context = |what: String| {
            format!("run {run} (kill worker {victim_index} at {threshold} output bytes): {what}")
        };
        let mut cli = spawn_cli(&reference.input, dir.path())?;
        let workers = wait_for_progress(&mut cli, &dir.path().join("output.txt"), threshold)?;
        let victim = workers.get(victim_index).copied();
        let killed = victim.is_some_and(|pid| {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
        });
        let (code, stdout, stderr) = wait_exit(cli).map_err(|e| context(text(&e)))?;
        check_no_orphans(&workers).map_err(|e| context(text(&e)))?;
        let output = std::fs::read(dir.path().join("output.txt"))?;
        let rejects = std::fs::read(dir.path().join("rejects.jsonl")).unwrap_or_default();
        if code == Some(0) {
            // The run ended before the kill landed: it must be complete.
            check(output == reference.output, || {
                context("a successful run's output differs from the full run's".into())
            })?;
            continue;
        }
        check(killed && code == Some(1), || {
            context(format!("exit {code:?}\n{stdout}\n{stderr}"))
        })?;
        let k = reported_seq(&stdout, "completed through seq ")
            .ok_or_else(|| context(format!("no completed range reported:\n{stdout}")))?;
        check(k <= INPUT_LINES, || context(format!("reported seq {k}")))?;
        reference
            .check_through(k, &output, &rejects)
            .map_err(|e| context(text(&e)))?;
        failed += 1;
        if reference.first(k)?.0 == output {
            exact += 1;
        }
    }
    println!(
        "R1: {runs} runs, {failed} ended by the kill ({exact} with output exactly through the reported seq), 0 hangs, 0 orphans"
    );
    Ok(())
}

/// R3: SIGTERM to the supervisor mid-run drains what was read: exit 143 within the stop
/// timeout, and the output is the full run's output through the reported `seq`, exactly.
fn r3() -> Result<(), Failed> {
    let reference = Reference::build()?;
    for threshold_percent in [5u64, 30, 60] {
        let dir = tempfile::tempdir_in(reference.dir.path())?;
        let threshold = reference.output.len() as u64 * threshold_percent / 100;
        let mut cli = spawn_cli(&reference.input, dir.path())?;
        let workers = wait_for_progress(&mut cli, &dir.path().join("output.txt"), threshold)?;
        check(!workers.is_empty(), || {
            format!("the run ended before {threshold_percent}% of its output")
        })?;
        let signalled = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(cli.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let (code, stdout, stderr) = wait_exit(cli)?;
        let took = signalled.elapsed();
        check(code == Some(143), || {
            format!("exit {code:?}\n{stdout}\n{stderr}")
        })?;
        // The bundled config's stop timeout is the default 30 s.
        check(took < Duration::from_secs(30), || {
            format!("stopping took {took:?}")
        })?;
        check_no_orphans(&workers)?;
        let k = reported_seq(&stdout, "every record through seq ")
            .ok_or_else(|| format!("no stop report:\n{stdout}"))?;
        let output = std::fs::read(dir.path().join("output.txt"))?;
        let rejects = std::fs::read(dir.path().join("rejects.jsonl")).unwrap_or_default();
        let (first_output, first_rejects) = reference.first(k)?;
        check(output == first_output && rejects == first_rejects, || {
            format!(
                "stopped at {threshold_percent}%: output {} bytes, rejects {} bytes; the full run through seq {k} writes {} and {}",
                output.len(),
                rejects.len(),
                first_output.len(),
                first_rejects.len()
            )
        })?;
        check(reference.output.starts_with(&output), || {
            "not a prefix of the full output".into()
        })?;
        println!(
            "R3 at {threshold_percent}%: stopped through seq {k} in {} ms",
            took.as_millis()
        );
    }
    Ok(())
}

fn text(failed: &Failed) -> String {
    failed.message().unwrap_or("failed").to_string()
}
