//! The fault table of docs/failures-and-resume.md, CI-sized: each test is one row (R1, R2, R3, R4, R6, R11,
//! R12) against real processes, and prints its figure as a line starting with the row id
//! (`tools/reliability.sh` runs the same tests with larger counts and collects those lines).
//!
//! Every run is judged against the inline (memory) profile: a run that fails or stops must
//! hold the full run's records through the `seq` it reports (exactly, when its sink was alive
//! to settle its outputs), and a run that exits 0 must hold all of them, byte for byte.
//! Counts: `STREAM_KERNEL_CHAOS_RUNS` (R1), `STREAM_KERNEL_R6_ALL=1` (every value for every
//! control word), `STREAM_KERNEL_R12_RUNS` (R12).
//!
//! This binary is also the worker executable of the in-process supervisor runs (R12).

#[path = "support/checks.rs"]
mod checks;
#[path = "support/cli_runs.rs"]
mod cli_runs;
#[path = "support/fund_load_runs.rs"]
mod fund_load_runs;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use checks::{alive, check};
use cli_runs::*;
use libtest_mimic::{Failed, Trial};

const INPUT_LINES: u64 = 200_000;
/// The 4-group experiment config every CLI run here starts from.
const FOUR_GROUPS: &str = "fund_load_experiment_4proc";

fn main() {
    checks::run_serially(
        registry,
        vec![
            Trial::test(
                "r1_kill_9_of_a_random_worker_loses_nothing_and_leaves_nothing",
                r1,
            ),
            Trial::test(
                "r2_sigstopped_worker_is_killed_at_detection_and_the_run_ends_accounted",
                r2,
            ),
            Trial::test("r3_sigterm_mid_run_drains_a_prefix_and_exits_143", r3),
            Trial::test(
                "r4_kill_9_of_the_supervisor_leaves_no_worker_and_the_next_run_cleans_up",
                r4,
            ),
            Trial::test(
                "r6_corrupted_ring_control_words_end_identical_or_failed_and_accounted",
                r6,
            ),
            Trial::test(
                "r11_disk_full_reports_exactly_what_is_written_and_leaves_no_torn_line",
                r11,
            ),
            Trial::test(
                "r12_back_to_back_runs_grow_no_fds_threads_memory_or_files",
                r12,
            ),
        ],
    )
}

/// The 4-group config, written to `dir` with `patch` applied.
fn four_groups(
    dir: &Path,
    patch: impl FnOnce(&mut serde_norway::Value),
) -> Result<PathBuf, Failed> {
    variant_config(dir, FOUR_GROUPS, patch)
}

/// R1: each run kills one random worker with SIGKILL once the output reached a random size;
/// the run must end (no hang), leave no worker behind, and account for every record: the
/// output holds exactly what the full run writes through the reported `seq`.
fn r1() -> Result<(), Failed> {
    let reference = Reference::build(INPUT_LINES)?;
    let config = bundled(FOUR_GROUPS);
    let mut chooser = Chooser::seeded("R1");
    let (mut failed, mut exact) = (0, 0);
    let mut detections = Vec::new();
    let runs = runs("STREAM_KERNEL_CHAOS_RUNS", 20);
    for run in 0..runs {
        let dir = tempfile::tempdir_in(reference.dir.path())?;
        let threshold = chooser.next(reference.output.len() as u64 * 6 / 10);
        let victim_index = chooser.next(4) as usize;
        let context = |what: String| {
            format!("run {run} (kill worker {victim_index} at {threshold} output bytes): {what}")
        };
        let mut cli = spawn_cli(&config, &reference.input, dir.path())?;
        let workers = wait_for_progress(&mut cli, &dir.path().join("output.txt"), threshold, 4)?;
        let victim = workers.get(victim_index).copied();
        let killed_at = unix_ms();
        let killed = victim.is_some_and(|pid| {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
        });
        let exit = wait_exit(cli).map_err(|e| context(text(&e)))?;
        check_no_orphans(&workers).map_err(|e| context(text(&e)))?;
        let output = std::fs::read(dir.path().join("output.txt"))?;
        let rejects = std::fs::read(dir.path().join("rejects.jsonl")).unwrap_or_default();
        if exit.code == Some(0) {
            // The run ended before the kill landed: it must be complete.
            check(output == reference.output, || {
                context("a successful run's output differs from the full run's".into())
            })?;
            continue;
        }
        check(killed && exit.code == Some(1), || {
            context(format!(
                "exit {:?}\n{}\n{}",
                exit.code, exit.stdout, exit.stderr
            ))
        })?;
        let k = reported_seq(&exit.stdout, "completed through seq ")
            .ok_or_else(|| context(format!("no completed range reported:\n{}", exit.stdout)))?;
        check(k <= INPUT_LINES, || context(format!("reported seq {k}")))?;
        reference
            .check_through(k, &output, &rejects)
            .map_err(|e| context(text(&e)))?;
        if let Some(ms) = detection_ms(&exit.stderr, killed_at) {
            detections.push(ms);
        }
        failed += 1;
        if reference.first(k)?.0 == output {
            exact += 1;
        }
    }
    detections.sort_unstable();
    println!(
        "R1: {runs} runs, {failed} ended by the kill ({exact} with output exactly through the reported seq), 0 hangs, 0 orphans, 0 losses; detection p50 {} ms, max {} ms",
        percentile(&detections, 50),
        percentile(&detections, 100),
    );
    Ok(())
}

/// Milliseconds from `killed_at` (unix ms) to the supervisor's `worker_failed` event, from the
/// log line's timestamp (`2026-12-02T17:04:03.731Z`).
fn detection_ms(log: &str, killed_at: u64) -> Option<u64> {
    let failed = log.lines().find(|l| l.contains("worker_failed"))?;
    let stamp = failed.split_whitespace().next()?;
    let (date, time) = stamp.trim_end_matches('Z').split_once('T')?;
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let mut hms = time.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let min: i64 = hms.next()?.parse().ok()?;
    let sec: f64 = hms.next()?.parse().ok()?;
    let at = days * 86_400_000 + h * 3_600_000 + min * 60_000 + (sec * 1000.0).round() as i64;
    u64::try_from(at).ok()?.checked_sub(killed_at)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) * p / 100).min(sorted.len() - 1)]
}

/// R2: a worker stopped with SIGSTOP misses its heartbeats: the supervisor judges it dead
/// within 3 heartbeats (plus slack), kills it at once instead of waiting out its stop timeout,
/// and the run ends accounted.
fn r2() -> Result<(), Failed> {
    let reference = Reference::build(INPUT_LINES)?;
    let dir = tempfile::tempdir_in(reference.dir.path())?;
    let heartbeat = 0.5;
    let config = four_groups(dir.path(), |c| {
        for group in 0..4 {
            let at = format!("runtime.platform.process_groups[{group}]");
            set(
                c,
                &format!("{at}.heartbeat_seconds"),
                yaml(&heartbeat.to_string()),
            );
            set(c, &format!("{at}.stop_timeout_seconds"), yaml("30"));
        }
    })?;
    let mut cli = spawn_cli(&config, &reference.input, dir.path())?;
    let output_path = dir.path().join("output.txt");
    let workers = wait_for_progress(
        &mut cli,
        &output_path,
        reference.output.len() as u64 / 10,
        4,
    )?;
    check(workers.len() == 4, || "the run ended too early".into())?;
    // The policy worker (third spawned): sort by pid, spawn order.
    let mut sorted = workers.clone();
    sorted.sort_unstable();
    let victim = sorted[2];
    let stopped_at = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )?;
    let exit = wait_exit(cli)?;
    let took = stopped_at.elapsed();
    check_no_orphans(&workers)?;
    check(exit.code == Some(1), || {
        format!("exit {:?}\n{}\n{}", exit.code, exit.stdout, exit.stderr)
    })?;
    check(exit.stdout.contains("heartbeat_timeout"), || {
        exit.stdout.clone()
    })?;
    // 3 heartbeats of 0.5 s to be judged, then the kill and an aborting stop: far below the
    // 30 s stop timeout a graceful STOP to the stopped worker would wait out.
    check(took < Duration::from_secs(10), || {
        format!("the run ended {took:?} after SIGSTOP")
    })?;
    let k = reported_seq(&exit.stdout, "completed through seq ").ok_or("no completed range")?;
    let output = std::fs::read(&output_path)?;
    let rejects = std::fs::read(dir.path().join("rejects.jsonl")).unwrap_or_default();
    reference.check_exactly_through(k, &output, &rejects)?;
    let detected = reported_seq(&exit.stdout, "no heartbeat for ").unwrap_or(0);
    println!(
        "R2: SIGSTOP of a worker (heartbeat {heartbeat} s, limit {} ms): detected after {detected} ms without a heartbeat, run ended {} ms after SIGSTOP, complete through seq {k}, accounted",
        (heartbeat * 3000.0) as u64,
        took.as_millis()
    );
    Ok(())
}

/// R3: SIGTERM to the supervisor mid-run drains what was read: exit 143 within the stop
/// timeout, and the output is the full run's output through the reported `seq`, exactly.
fn r3() -> Result<(), Failed> {
    let reference = Reference::build(INPUT_LINES)?;
    let config = bundled(FOUR_GROUPS);
    let mut chooser = Chooser::seeded("R3");
    let runs = runs("STREAM_KERNEL_R3_RUNS", 3);
    let moments: Vec<u64> = (0..runs)
        .map(|n| match n {
            0 => 5,
            1 => 30,
            2 => 60,
            _ => 1 + chooser.next(80),
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for threshold_percent in moments {
        let dir = tempfile::tempdir_in(reference.dir.path())?;
        let threshold = reference.output.len() as u64 * threshold_percent / 100;
        let mut cli = spawn_cli(&config, &reference.input, dir.path())?;
        let workers = wait_for_progress(&mut cli, &dir.path().join("output.txt"), threshold, 4)?;
        check(!workers.is_empty(), || {
            format!("the run ended before {threshold_percent}% of its output")
        })?;
        let signalled = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(cli.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let exit = wait_exit(cli)?;
        let took = signalled.elapsed();
        check(exit.code == Some(143), || {
            format!("exit {:?}\n{}\n{}", exit.code, exit.stdout, exit.stderr)
        })?;
        // The bundled config's stop timeout is the default 30 s.
        check(took < Duration::from_secs(30), || {
            format!("stopping took {took:?}")
        })?;
        check_no_orphans(&workers)?;
        let k = reported_seq(&exit.stdout, "every record through seq ")
            .ok_or_else(|| format!("no stop report:\n{}", exit.stdout))?;
        let output = std::fs::read(dir.path().join("output.txt"))?;
        let rejects = std::fs::read(dir.path().join("rejects.jsonl")).unwrap_or_default();
        reference.check_exactly_through(k, &output, &rejects)?;
        slowest = slowest.max(took);
    }
    println!(
        "R3: {runs} SIGTERMs mid-run: every run exit 143 with its output exactly the full run's through the seq it reported; slowest stop {} ms (stop timeout 30 s)",
        slowest.as_millis()
    );
    Ok(())
}

/// Entries of `/dev/shm` (memfd segments never appear there; a leak of a named one would).
fn dev_shm() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|e| {
            e.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// R4: `kill -9` of the supervisor: every worker is gone within a second (they die with it),
/// nothing appears in `/dev/shm`, and the control socket directory it could not remove (unix
/// transport) is removed by the next run, whatever that run's transport.
fn r4() -> Result<(), Failed> {
    let reference = Reference::build(INPUT_LINES)?;
    let shm_before = dev_shm();
    let dir = tempfile::tempdir_in(reference.dir.path())?;
    let config = four_groups(dir.path(), |c| {
        set(
            c,
            "runtime.platform.execution_ipc.control.transport",
            yaml("unix"),
        );
    })?;
    let mut cli = spawn_cli(&config, &reference.input, dir.path())?;
    let workers = wait_for_progress(&mut cli, &dir.path().join("output.txt"), 1, 4)?;
    check(workers.len() == 4, || "the run ended too early".into())?;
    let socket_dirs = socket_dirs_of(cli.id());
    check(socket_dirs.len() == 1, || {
        format!("socket dirs {socket_dirs:?}")
    })?;
    {
        use std::os::unix::fs::PermissionsExt;
        let dir_mode = std::fs::metadata(&socket_dirs[0])?.permissions().mode() & 0o777;
        let socket_mode = std::fs::metadata(socket_dirs[0].join("control.sock"))?
            .permissions()
            .mode()
            & 0o777;
        check(dir_mode == 0o700 && socket_mode == 0o600, || {
            format!("socket dir mode {dir_mode:o}, socket mode {socket_mode:o}")
        })?;
    }
    let killed = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(cli.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let _ = cli.wait();
    while workers.iter().any(|p| alive(*p)) && killed.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let gone_after = killed.elapsed();
    check(!workers.iter().any(|p| alive(*p)), || {
        format!("workers {workers:?} outlived the supervisor")
    })?;
    check(gone_after < Duration::from_secs(1), || {
        format!("workers took {gone_after:?} to exit")
    })?;
    check(socket_dirs[0].exists(), || {
        "a killed supervisor cannot remove its socket dir; the test expects it there".into()
    })?;
    // The next run (default transport, tcp) cleans it.
    let next = tempfile::tempdir_in(reference.dir.path())?;
    let small = next.path().join("small.txt");
    std::fs::write(&small, &std::fs::read(&reference.input)?[..20_000])?;
    let out = cli_runs::cli()
        .args(["run", "-c"])
        .arg(bundled(FOUR_GROUPS))
        .arg("--input")
        .arg(&small)
        .arg("--output")
        .arg(next.path().join("o.txt"))
        .current_dir(next.path())
        .output()?;
    check(out.status.success(), || {
        String::from_utf8_lossy(&out.stderr).into()
    })?;
    check(!socket_dirs[0].exists(), || {
        format!("{} survived the next run", socket_dirs[0].display())
    })?;
    check(dev_shm() == shm_before, || "/dev/shm changed".into())?;
    println!(
        "R4: kill -9 of the supervisor: all 4 workers gone {} ms after, nothing in /dev/shm, its socket dir (0700, socket 0600) removed by the next run",
        gone_after.as_millis()
    );
    Ok(())
}

/// Overwrites `bytes` at `offset` of the ring named `ring` through the supervisor's fd.
fn corrupt_ring(supervisor: u32, ring: &str, offset: usize, bytes: &[u8]) -> Result<(), Failed> {
    for entry in std::fs::read_dir(format!("/proc/{supervisor}/fd"))?.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if target.contains("memfd:") && target.contains(ring) {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(entry.path())?;
            file.write_at(bytes, offset as u64)?;
            return Ok(());
        }
    }
    Err(format!("ring {ring} not found among the supervisor's fds").into())
}

/// One corruption of a live ring.
struct Corruption {
    label: String,
    offset: usize,
    bytes: Vec<u8>,
}

fn corruptions(chooser: &mut Chooser, all: bool) -> Vec<Corruption> {
    use stream_kernel::data::ring::fault_offsets::CONTROL_WORDS;
    let mut cases = Vec::new();
    let random = |chooser: &mut Chooser| chooser.next(u64::MAX) ^ (chooser.next(u64::MAX) << 32);
    for (name, offset) in CONTROL_WORDS {
        let mut values = vec![("random", random(chooser))];
        if all {
            values.extend([("0", 0), ("1", 1), ("max", u64::MAX), ("+4096", 4096)]);
        }
        // The cases of the reported defect: a closed flag set mid-run.
        if name == "producer_closed" {
            values.push(("1", 1));
        }
        for (what, value) in values {
            cases.push(Corruption {
                label: format!("{name}={what}"),
                offset,
                bytes: value.to_le_bytes().to_vec(),
            });
        }
    }
    for _ in 0..if all { 20 } else { 3 } {
        let offset = chooser.next(480) as usize;
        let len = 1 + chooser.next(512 - offset as u64) as usize;
        let bytes = (0..len).map(|_| chooser.next(256) as u8).collect();
        cases.push(Corruption {
            label: format!("random span {offset}+{len}"),
            offset,
            bytes,
        });
    }
    cases.push(Corruption {
        label: "random 0+512".into(),
        offset: 0,
        bytes: (0..512).map(|_| chooser.next(256) as u8).collect(),
    });
    cases
}

/// R6: a word of a live ring's control block (each in turn, and random spans) overwritten
/// mid-run: every run ends either byte-identical with exit 0, or failed (`ring_corrupted`)
/// with its outputs holding exactly the records through the reported `seq`. Never short with
/// exit 0, never a hang, never a panic.
fn r6() -> Result<(), Failed> {
    let reference = Reference::build(INPUT_LINES)?;
    let config = bundled(FOUR_GROUPS);
    let mut chooser = Chooser::seeded("R6");
    let all = std::env::var("STREAM_KERNEL_R6_ALL").is_ok_and(|v| v == "1");
    let (mut identical, mut failed) = (0, 0);
    let cases = corruptions(&mut chooser, all);
    for case in &cases {
        let dir = tempfile::tempdir_in(reference.dir.path())?;
        let output_path = dir.path().join("output.txt");
        let mut cli = spawn_cli(&config, &reference.input, dir.path())?;
        let threshold = reference.output.len() as u64 / 4;
        let workers = wait_for_progress(&mut cli, &output_path, threshold, 4)?;
        let context = |what: String| format!("{}: {what}", case.label);
        if !workers.is_empty() {
            corrupt_ring(
                cli.id(),
                "features#1->execution.policy#1",
                case.offset,
                &case.bytes,
            )
            .map_err(|e| context(text(&e)))?;
        }
        let exit = wait_exit(cli).map_err(|e| context(text(&e)))?;
        check_no_orphans(&workers).map_err(|e| context(text(&e)))?;
        check(!exit.stderr.contains("panicked"), || {
            context(format!("a panic:\n{}", exit.stderr))
        })?;
        let output = std::fs::read(&output_path)?;
        let rejects = std::fs::read(dir.path().join("rejects.jsonl")).unwrap_or_default();
        match exit.code {
            Some(0) => {
                check(
                    output == reference.output && rejects == reference.rejects,
                    || {
                        context(format!(
                            "exit 0 with output {} of {} bytes: short or different",
                            output.len(),
                            reference.output.len()
                        ))
                    },
                )?;
                identical += 1;
            }
            Some(1) => {
                let k = reported_seq(&exit.stdout, "completed through seq ")
                    .ok_or_else(|| context(format!("no range:\n{}", exit.stdout)))?;
                reference
                    .check_exactly_through(k, &output, &rejects)
                    .map_err(|e| context(text(&e)))?;
                check(exit.stdout.contains("ring_corrupted"), || {
                    context(format!(
                        "failed, but not as ring_corrupted:\n{}",
                        exit.stdout
                    ))
                })?;
                failed += 1;
            }
            other => {
                return Err(context(format!("exit {other:?}\n{}", exit.stderr)).into());
            }
        }
    }
    println!(
        "R6: {} corruptions of a live ring's control block ({} words{}, random spans): {identical} byte-identical, {failed} failed as ring_corrupted with exact accounting, 0 short with exit 0, 0 panics",
        cases.len(),
        stream_kernel::data::ring::fault_offsets::CONTROL_WORDS.len(),
        if all {
            " x 5 values"
        } else {
            ", one random value each"
        }
    );
    Ok(())
}

/// A small filesystem to fill: a 1 MiB tmpfs when this process may mount one, else a file
/// size limit (RLIMIT_FSIZE) on the run's processes. Either way writes really fail.
struct SmallDisk {
    dir: tempfile::TempDir,
    mounted: bool,
    bytes: u64,
}

impl SmallDisk {
    fn new(under: &Path, bytes: u64) -> Result<Self, Failed> {
        let dir = tempfile::tempdir_in(under)?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        Ok(Self {
            dir,
            mounted,
            bytes,
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn describe(&self) -> String {
        if self.mounted {
            format!("a {} KiB tmpfs", self.bytes / 1024)
        } else {
            format!("a {} KiB file size limit", self.bytes / 1024)
        }
    }

    /// The CLI on `config`, its output on this disk.
    fn spawn(
        &self,
        config: &Path,
        input: &Path,
        work: &Path,
    ) -> Result<std::process::Child, Failed> {
        let mut command = quiet_run(config, input, self.path().join("output.txt"));
        command
            .current_dir(work)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !self.mounted {
            let limit = self.bytes;
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit and signal disposition calls between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    nix::sys::resource::setrlimit(
                        nix::sys::resource::Resource::RLIMIT_FSIZE,
                        limit,
                        limit,
                    )
                    .map_err(std::io::Error::from)?;
                    // Beyond the limit a write fails with EFBIG instead of killing the writer.
                    nix::sys::signal::signal(
                        nix::sys::signal::Signal::SIGXFSZ,
                        nix::sys::signal::SigHandler::SigIgn,
                    )
                    .map_err(std::io::Error::from)?;
                    Ok(())
                });
            }
        }
        Ok(command.spawn()?)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// R11: the output's filesystem fills up mid-run (both profiles): the run fails naming the
/// path, the completed range it reports is exactly what the output holds (no torn last line),
/// and the dead letters end at the same record.
fn r11() -> Result<(), Failed> {
    let reference = Reference::build(INPUT_LINES)?;
    for profile in ["fund_load_experiment_inline", FOUR_GROUPS] {
        let work = tempfile::tempdir_in(reference.dir.path())?;
        let disk = SmallDisk::new(reference.dir.path(), 1 << 20)?;
        let config = variant_config(work.path(), profile, |c| {
            set(
                c,
                "adapters.dead_letter",
                yaml(&format!(
                    "{{kind: file, path: {}}}",
                    work.path().join("rejects.jsonl").display()
                )),
            );
        })?;
        let cli = disk.spawn(&config, &reference.input, work.path())?;
        let exit = wait_exit(cli)?;
        let output_path = disk.path().join("output.txt");
        check(exit.code == Some(1), || {
            format!(
                "{profile}: exit {:?}\n{}\n{}",
                exit.code, exit.stdout, exit.stderr
            )
        })?;
        let report = format!("{}{}", exit.stdout, exit.stderr);
        check(report.contains(&output_path.display().to_string()), || {
            format!("{profile}: the failure does not name the output path:\n{report}")
        })?;
        let k = reported_seq(&exit.stdout, "completed through seq ")
            .ok_or_else(|| format!("{profile}: no completed range:\n{}", exit.stdout))?;
        let output = std::fs::read(&output_path)?;
        let rejects = std::fs::read(work.path().join("rejects.jsonl")).unwrap_or_default();
        check(output.ends_with(b"\n"), || {
            format!("{profile}: a torn last line")
        })?;
        reference.check_exactly_through(k, &output, &rejects)?;
        println!(
            "R11 {profile}: output on {}: failed at {} bytes written, complete through seq {k}; output and dead letters hold exactly the records through seq {k}, no torn line",
            disk.describe(),
            output.len()
        );
    }
    Ok(())
}

/// Process figures of this process: open fds, threads, resident KiB.
fn process_figures() -> (usize, u64, u64) {
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (fds, field("Threads:"), field("VmRSS:"))
}

/// Names of this process's threads, with counts.
fn thread_names() -> std::collections::BTreeMap<String, usize> {
    let mut names = std::collections::BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        *names.entry(name.trim().to_string()).or_insert(0) += 1;
    }
    names
}

fn temp_entries() -> usize {
    std::fs::read_dir(std::env::temp_dir()).map_or(0, |d| {
        d.flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(stream_kernel::control::SOCKET_DIR_PREFIX)
            })
            .count()
    })
}

/// R12: back-to-back supervised runs in one process (the embedding case): after warm-up, no
/// growth in open fds, threads, resident memory (beyond allocator noise) or files.
fn r12() -> Result<(), Failed> {
    let registry = registry();
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("input.txt");
    fund_load_runs::generated_input(&input, 5_000)?;
    let mut config = fund_load_runs::bundled_config(
        &registry,
        fund_load_runs::Profile::Experiment,
        "4proc",
        &input,
        dir.path(),
    )?;
    if let Some(control) = config.runtime.platform.execution_ipc.control.as_mut() {
        control.transport = stream_kernel::config::ControlTransport::Unix;
    }
    let options = stream_kernel::supervisor::SupervisorOptions::default();
    let run = |n: u64| -> Result<(), Failed> {
        let report = stream_kernel::supervisor::run_supervised(&config, &registry, &options)
            .map_err(|e| format!("run {n}: {e}"))?;
        check(
            report.end == stream_kernel::supervisor::RunEnd::Drained,
            || format!("run {n}: {:?}", report.end),
        )
    };
    for n in 0..5 {
        run(n)?;
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = (process_figures(), temp_entries(), dev_shm());
    let runs = runs("STREAM_KERNEL_R12_RUNS", 20);
    for n in 0..runs {
        run(n)?;
    }
    // The health server's HTTP library lets its idle pool threads linger 5 s after it is
    // dropped: give them that long, then count.
    let peak_threads = process_figures().1;
    let settle = Instant::now() + Duration::from_secs(10);
    while process_figures().1 > before.0.1 && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = (process_figures(), temp_entries(), dev_shm());
    let ((fds0, threads0, rss0), tmp0, shm0) = &before;
    let ((fds1, threads1, rss1), tmp1, shm1) = &after;
    check(fds1 <= fds0, || format!("fds {fds0} -> {fds1}"))?;
    check(threads1 <= threads0, || {
        format!("threads {threads0} -> {threads1}: {:?}", thread_names())
    })?;
    check(tmp1 <= tmp0 && shm1 == shm0, || {
        format!("files: socket dirs {tmp0} -> {tmp1}, /dev/shm {shm0:?} -> {shm1:?}")
    })?;
    // Allocator noise, not growth: well under a MiB per run would still be a leak over
    // hundreds of runs, so the bound is absolute and small.
    check(*rss1 <= rss0 + 8 * 1024, || {
        format!("RSS {rss0} KiB -> {rss1} KiB")
    })?;
    println!(
        "R12: {runs} back-to-back runs: fds {fds0} -> {fds1}, threads {threads0} -> {threads1} (peak {peak_threads} while idle HTTP pool threads linger 5 s), RSS {rss0} -> {rss1} KiB, socket dirs {tmp0} -> {tmp1}, /dev/shm unchanged"
    );
    Ok(())
}
