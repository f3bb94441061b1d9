//! Every run leaves its files exact or refuses: the run journal and `run --resume`, driven
//! through the release CLI as a hostile operator would (kill -9 at random moments, edited
//! inputs, `--report` aimed at the run's own files, write failures, signals while the input
//! blocks, a stopped process group, oversized lines, forged names).
//!
//! Each test names the behaviour that failed before the journal existed; figures are printed
//! on lines starting with their row id (`JOURNAL-KILL`, `JOURNAL-EDIT`, `REPORT`, ...), which
//! `tools/reliability.sh` collects (with raised counts from the environment).

#[path = "support/checks.rs"]
mod checks;
#[path = "support/cli_runs.rs"]
mod cli_runs;
#[path = "support/fund_load_runs.rs"]
mod fund_load_runs;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use checks::check;
use cli_runs::*;
use libtest_mimic::{Failed, Trial};

const INPUT_LINES: u64 = 200_000;
const INLINE: &str = "fund_load_experiment_inline";
const GROUPS: &str = "fund_load_experiment_4proc";

fn main() {
    let cgroup = pids_cgroup_root();
    if cgroup.is_none() {
        println!(
            "ignored: a_supervisor_that_cannot_start_threads_fails_cleanly needs a writable pids cgroup (/sys/fs/cgroup/pids)"
        );
    }
    let tmpfs = can_mount_tmpfs();
    if !tmpfs {
        println!(
            "ignored: a_full_dead_letter_disk_leaves_every_output_exact needs to mount a tmpfs (root)"
        );
    }
    checks::run_serially(
        registry,
        vec![
            Trial::test(
                "a_run_killed_at_a_random_moment_resumes_byte_identical",
                killed_runs_resume,
            ),
            Trial::test(
                "a_resume_on_an_edited_input_is_refused_naming_where_it_differs",
                edited_input_refused,
            ),
            Trial::test(
                "a_complete_run_is_not_redone_and_a_resume_without_a_journal_is_safe",
                resume_rules,
            ),
            Trial::test(
                "a_skip_at_or_past_the_end_of_the_input_is_refused",
                skip_past_end,
            ),
            Trial::test(
                "every_catchable_terminating_signal_drains_with_a_resume_point",
                other_signals,
            ),
            Trial::test(
                "a_stop_is_acted_on_while_the_source_waits_for_input",
                blocked_source_stops,
            ),
            Trial::test(
                "a_report_aimed_at_any_of_the_runs_files_is_refused_and_leaves_it_untouched",
                report_targets,
            ),
            Trial::test(
                "a_file_size_limit_leaves_every_output_exact",
                file_size_limit,
            ),
            Trial::test(
                "a_full_dead_letter_disk_leaves_every_output_exact",
                full_dead_letter_disk,
            )
            .with_ignored_flag(!tmpfs),
            Trial::test("a_run_refused_at_start_changes_no_file", refused_at_start),
            Trial::test("a_stopped_process_group_is_not_judged_dead", stopped_group),
            Trial::test(
                "lines_as_long_as_the_limit_pass_every_placement_and_a_resume",
                long_lines,
            ),
            Trial::test(
                "control_characters_in_names_and_paths_are_refused_or_escaped",
                forged_names,
            ),
            Trial::test(
                "a_supervisor_that_cannot_start_threads_fails_cleanly",
                thread_limit,
            )
            .with_ignored_flag(cgroup.is_none()),
        ],
    )
}

// ---------------------------------------------------------------------------------------------
// helpers

/// A bundled config with the journal written every 50 ms (so that short runs have many
/// completed points) and `patch` applied.
fn journal_config(
    dir: &Path,
    base: &str,
    patch: impl FnOnce(&mut serde_norway::Value),
) -> Result<PathBuf, Failed> {
    variant_config(dir, base, |root| {
        set(root, "runtime.journal.interval_seconds", yaml("0.05"));
        patch(root);
    })
}

/// The CLI running `config` on `input` into `dir/output.txt` (dead letters `rejects.jsonl`,
/// as the bundled configs name them, in `dir`), with `extra` arguments.
fn run_in(config: &Path, input: &Path, dir: &Path, extra: &[&str]) -> Command {
    let mut command = quiet_run(config, input, dir.join("output.txt"));
    command.args(extra).current_dir(dir);
    command
}

/// `run_in`, spawned with piped output in its own process group.
fn spawn_in(
    config: &Path,
    input: &Path,
    dir: &Path,
    extra: &[&str],
) -> Result<std::process::Child, Failed> {
    Ok(run_in(config, input, dir, extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?)
}

fn files_of(dir: &Path) -> Result<(Vec<u8>, Vec<u8>), Failed> {
    Ok((
        std::fs::read(dir.join("output.txt")).unwrap_or_default(),
        std::fs::read(dir.join("rejects.jsonl")).unwrap_or_default(),
    ))
}

fn journal_of(dir: &Path) -> Result<stream_kernel::files::Journal, Failed> {
    stream_kernel::files::Journal::read(&dir.join("output.txt.journal"))?
        .ok_or_else(|| format!("no journal in {}", dir.display()).into())
}

fn workers_of(config: &str) -> usize {
    if config.ends_with("inline") { 0 } else { 4 }
}

fn said(output: &std::process::Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Kills the CLI with SIGKILL once its output holds `bytes`; waits until it and its workers
/// are gone.
fn kill_at(
    mut child: std::process::Child,
    output: &Path,
    bytes: u64,
    workers: usize,
) -> Result<bool, Failed> {
    let running = wait_for_progress(&mut child, output, bytes, workers)?;
    let ended = running.is_empty() && child.try_wait()?.is_some();
    let _ = child.kill();
    let _ = child.wait();
    check_no_orphans(&running)?;
    Ok(!ended)
}

// ---------------------------------------------------------------------------------------------
// the journal and --resume

/// Defect 4: after `kill -9` of the supervisor (or of an inline run) nothing said where to
/// resume. The journal does: `run --resume` ends byte-identical to an uninterrupted run, with
/// no torn line, whatever the moment of the kill.
fn killed_runs_resume() -> Result<(), Failed> {
    let reference = Reference::build(INPUT_LINES)?;
    let supervisor_kills = runs("STREAM_KERNEL_JOURNAL_KILL_RUNS", 3);
    let inline_kills = supervisor_kills.div_ceil(4);
    let mut chooser = Chooser::seeded("JOURNAL-KILL");
    let mut resumed_mid = 0;
    let plan = std::iter::repeat_n(GROUPS, supervisor_kills as usize)
        .chain(std::iter::repeat_n(INLINE, inline_kills as usize));
    for (run, base) in plan.enumerate() {
        let dir = tempfile::tempdir_in(reference.dir.path())?;
        let config = journal_config(dir.path(), base, |_| {})?;
        let child = spawn_in(&config, &reference.input, dir.path(), &[])?;
        let at = reference.output.len() as u64 * (5 + chooser.next(90)) / 100;
        let killed = kill_at(child, &dir.path().join("output.txt"), at, workers_of(base))?;
        let journal = journal_of(dir.path())?;
        if journal.completed.seq > 0 {
            resumed_mid += 1;
        }
        let resume = run_in(&config, &reference.input, dir.path(), &["--resume"]).output()?;
        check(resume.status.success(), || {
            format!(
                "{base} run {run}: --resume after kill -9: {}",
                said(&resume)
            )
        })?;
        let (output, rejects) = files_of(dir.path())?;
        check(
            output == reference.output && rejects == reference.rejects,
            || {
                format!(
                    "{base} run {run} (killed: {killed}, journal at seq {}): the resumed files differ from an uninterrupted run",
                    journal.completed.seq
                )
            },
        )?;
        let complete = journal_of(dir.path())?;
        check(
            complete.state == stream_kernel::files::journal::RunState::Complete,
            || format!("journal after the resume: {complete:?}"),
        )?;
    }
    println!(
        "JOURNAL-KILL: kill -9 of the supervisor (4 groups) at {supervisor_kills} random moments and of the inline run at {inline_kills}, each resumed with --resume: {supervisor_kills}/{supervisor_kills} and {inline_kills}/{inline_kills} byte-identical to an uninterrupted run, 0 torn lines ({resumed_mid} resumed mid-way, the others from their start)"
    );
    Ok(())
}

/// Defect 3: resuming with another input spliced two inputs into one output. An input with
/// one byte changed (same size) is refused with exit 2, naming the records where it differs,
/// and no file changes.
fn edited_input_refused() -> Result<(), Failed> {
    let reference = Reference::build(INPUT_LINES)?;
    let runs = runs("STREAM_KERNEL_JOURNAL_EDIT_RUNS", 2);
    let mut chooser = Chooser::seeded("JOURNAL-EDIT");
    let original = std::fs::read(&reference.input)?;
    let mut refused = 0;
    let mut run = 0;
    while refused < runs {
        run += 1;
        check(run < runs * 5, || {
            "no run got far enough to be resumed".into()
        })?;
        let base = if run % 2 == 0 { GROUPS } else { INLINE };
        let dir = tempfile::tempdir_in(reference.dir.path())?;
        let config = journal_config(dir.path(), base, |_| {})?;
        let child = spawn_in(&config, &reference.input, dir.path(), &[])?;
        let at = reference.output.len() as u64 * (30 + chooser.next(50)) / 100;
        kill_at(child, &dir.path().join("output.txt"), at, workers_of(base))?;
        let journal = journal_of(dir.path())?;
        if journal.completed.input_bytes < 1000 {
            continue;
        }
        // One byte of the completed input, changed in place: a digit for another digit.
        let mut edited = original.clone();
        let mut offset = chooser.next(journal.completed.input_bytes) as usize;
        while !edited[offset].is_ascii_digit() {
            offset = (offset + 1) % journal.completed.input_bytes as usize;
        }
        edited[offset] = if edited[offset] == b'7' { b'8' } else { b'7' };
        let input = dir.path().join("edited.txt");
        std::fs::write(&input, &edited)?;
        let before = files_of(dir.path())?;
        let resume = run_in(&config, &input, dir.path(), &["--resume"]).output()?;
        let text = said(&resume);
        check(resume.status.code() == Some(2), || {
            format!("{base}: a resume on an input edited at byte {offset}: {text}")
        })?;
        check(
            text.contains("is not the one the run being resumed read") && text.contains("records"),
            || format!("the refusal does not say where: {text}"),
        )?;
        check(files_of(dir.path())? == before, || {
            format!("{base}: the refused resume changed the outputs")
        })?;
        // The same input again resumes and completes.
        let resume = run_in(&config, &reference.input, dir.path(), &["--resume"]).output()?;
        check(resume.status.success(), || said(&resume))?;
        check(
            files_of(dir.path())? == (reference.output.clone(), reference.rejects.clone()),
            || format!("{base}: resumed with the right input, the files differ"),
        )?;
        refused += 1;
    }
    println!(
        "JOURNAL-EDIT: {refused} resumes after changing one byte of the completed input (same size, random offset; 4 groups and inline): refused {refused}/{refused} with exit 2 naming the records where it differs, outputs untouched; resumed on the right input afterwards: identical"
    );
    Ok(())
}

/// A complete run resumed is a no-op (a retried job says `--resume` and leaves it be); a
/// resume with no journal starts fresh on empty outputs and is refused on written ones; a
/// journal of another pipeline is refused.
fn resume_rules() -> Result<(), Failed> {
    let reference = Reference::build(20_000)?;
    let dir = tempfile::tempdir_in(reference.dir.path())?;
    let config = journal_config(dir.path(), GROUPS, |_| {})?;
    let fresh = run_in(&config, &reference.input, dir.path(), &["--resume"]).output()?;
    check(fresh.status.success(), || said(&fresh))?;
    check(
        files_of(dir.path())? == (reference.output.clone(), reference.rejects.clone()),
        || "--resume with no journal and no output: not a whole run".into(),
    )?;
    let again = run_in(&config, &reference.input, dir.path(), &["--resume"]).output()?;
    let text = said(&again);
    check(
        again.status.success()
            && text.contains("the run is complete")
            && text.contains("nothing to do"),
        || format!("--resume on a complete run: {text}"),
    )?;
    check(
        files_of(dir.path())? == (reference.output.clone(), reference.rejects.clone()),
        || "--resume on a complete run changed the outputs".into(),
    )?;
    let other_dir = tempfile::tempdir_in(reference.dir.path())?;
    let other_pipeline = variant_config(other_dir.path(), "fund_load_baseline_4proc", |root| {
        set(root, "runtime.journal.interval_seconds", yaml("0.05"));
    })?;
    std::fs::remove_file(dir.path().join("output.txt.journal"))?;
    let no_journal =
        run_in(&other_pipeline, &reference.input, dir.path(), &["--resume"]).output()?;
    check(no_journal.status.code() == Some(2), || {
        format!(
            "--resume without a journal on a written output: {}",
            said(&no_journal)
        )
    })?;
    let run = run_in(&config, &reference.input, dir.path(), &[]).output()?;
    check(run.status.success(), || said(&run))?;
    let journal = dir.path().join("output.txt.journal");
    let mut text = std::fs::read_to_string(&journal)?;
    text = text.replace("\"complete\"", "\"stopped\"");
    std::fs::write(&journal, text)?;
    let other = run_in(&other_pipeline, &reference.input, dir.path(), &["--resume"]).output()?;
    check(
        other.status.code() == Some(2) && said(&other).contains("another pipeline"),
        || format!("--resume under another pipeline: {}", said(&other)),
    )?;
    println!(
        "RESUME-RULES: --resume on a complete run: exit 0, nothing done; with no journal: a fresh run on empty outputs, exit 2 on written ones; under another pipeline: exit 2"
    );
    Ok(())
}

/// Defect 2: `--skip N` at or past the end of the input exited 0 as done, on a partial output
/// or none. Now: past the end is refused (exit 2), and N at the end checks the output.
fn skip_past_end() -> Result<(), Failed> {
    let reference = Reference::build(20_000)?;
    let mut figures = Vec::new();
    for base in [INLINE, GROUPS] {
        for (case, skip, partial) in [
            ("past the end, partial output", 30_000u64, true),
            ("past the end, no output", 30_000, false),
            ("2^64-1", u64::MAX, true),
            ("at the end, partial output", 20_000, true),
        ] {
            let dir = tempfile::tempdir_in(reference.dir.path())?;
            let (half, half_rejects) = reference.first(10_000)?;
            if partial {
                std::fs::write(dir.path().join("output.txt"), &half)?;
                std::fs::write(dir.path().join("rejects.jsonl"), &half_rejects)?;
            }
            let before = files_of(dir.path())?;
            let run = run_in(
                &bundled(base),
                &reference.input,
                dir.path(),
                &["--skip", &skip.to_string()],
            )
            .output()?;
            check(run.status.code() == Some(2), || {
                format!("{base} --skip {skip} ({case}): {}", said(&run))
            })?;
            check(files_of(dir.path())? == before, || {
                format!("{base} --skip {skip} ({case}): the outputs changed")
            })?;
            figures.push(format!("{base} {case}: exit 2"));
        }
    }
    println!("SKIP-PAST-END: {}; outputs untouched", figures.join("; "));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// signals

/// Defect 4 (signals): SIGUSR1, SIGUSR2 and SIGALRM killed the run with no summary. They
/// drain like SIGTERM: exit 128 + N, a resume point, a journal that says stopped; the resume
/// completes byte-identical.
fn other_signals() -> Result<(), Failed> {
    use nix::sys::signal::Signal;
    let reference = Reference::build(INPUT_LINES)?;
    let mut figures = Vec::new();
    for base in [INLINE, GROUPS] {
        for signal in [Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGALRM] {
            let dir = tempfile::tempdir_in(reference.dir.path())?;
            let config = journal_config(dir.path(), base, |_| {})?;
            let mut child = spawn_in(&config, &reference.input, dir.path(), &[])?;
            let output = dir.path().join("output.txt");
            let running = wait_for_progress(
                &mut child,
                &output,
                reference.output.len() as u64 / 4,
                workers_of(base),
            )?;
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)?;
            let exit = wait_exit(child)?;
            check_no_orphans(&running)?;
            let expected = 128 + signal as i32;
            check(exit.code == Some(expected), || {
                format!(
                    "{base} {signal}: exit {:?}\n{}{}",
                    exit.code, exit.stdout, exit.stderr
                )
            })?;
            check(exit.stdout.contains("resume with --resume"), || {
                exit.stdout.clone()
            })?;
            let journal = journal_of(dir.path())?;
            check(
                journal.state == stream_kernel::files::journal::RunState::Stopped,
                || format!("{base} {signal}: journal {journal:?}"),
            )?;
            let resume = run_in(&config, &reference.input, dir.path(), &["--resume"]).output()?;
            check(resume.status.success(), || said(&resume))?;
            check(
                files_of(dir.path())? == (reference.output.clone(), reference.rejects.clone()),
                || format!("{base} {signal}: resumed files differ"),
            )?;
            figures.push(format!("{base} {signal}: exit {expected}"));
        }
    }
    println!(
        "SIGNALS-ALL: {}; each drained, journal stopped, --resume identical",
        figures.join("; ")
    );
    Ok(())
}

/// Defect 5: one SIGTERM while the source blocked (an idle pipe, a FIFO with no writer,
/// `/dev/zero`) was not acted on until input came, never for `/dev/zero`. The source's waits
/// now end within a poll slice.
fn blocked_source_stops() -> Result<(), Failed> {
    let work = tempfile::tempdir()?;
    let mut figures = Vec::new();
    for base in [INLINE, GROUPS] {
        for input in ["an idle stdin pipe", "a FIFO without a writer", "/dev/zero"] {
            let dir = tempfile::tempdir_in(work.path())?;
            let fifo = dir.path().join("fifo");
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU)?;
            let input_arg = match input {
                "an idle stdin pipe" => PathBuf::from("-"),
                "a FIFO without a writer" => fifo.clone(),
                _ => PathBuf::from("/dev/zero"),
            };
            let mut child = run_in(&bundled(base), &input_arg, dir.path(), &[])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .spawn()?;
            // Keep stdin open and silent.
            let stdin = child.stdin.take();
            let workers = workers_of(base);
            let deadline = Instant::now() + HANG;
            while children_of(child.id()).len() < workers {
                check(Instant::now() < deadline, || "workers did not start".into())?;
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(300));
            let sent = Instant::now();
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )?;
            let exit = wait_exit(child)?;
            let took = sent.elapsed();
            drop(stdin);
            check(exit.code == Some(143), || {
                format!(
                    "{base} on {input}: exit {:?}\n{}{}",
                    exit.code, exit.stdout, exit.stderr
                )
            })?;
            check(took < Duration::from_secs(10), || {
                format!(
                    "{base} on {input}: {} ms from SIGTERM to exit",
                    took.as_millis()
                )
            })?;
            figures.push(format!(
                "{base} on {input}: exit 143 in {} ms",
                took.as_millis()
            ));
        }
    }
    println!("BLOCKED-SOURCE: {}", figures.join("; "));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// files

/// Defect 1: `--report` overwrote the input (also through a symlink), the output, the dead
/// letters, the config, another run's locked output, and the records on stdout; a FIFO hung
/// the run. Every one is refused before anything is written (exit 2), the file untouched.
fn report_targets() -> Result<(), Failed> {
    let reference = Reference::build(20_000)?;
    let rounds = runs("STREAM_KERNEL_REPORT_ROUNDS", 1);
    let mut refused = 0;
    let mut total = 0;
    for _ in 0..rounds {
        for base in [INLINE, GROUPS] {
            let dir = tempfile::tempdir_in(reference.dir.path())?;
            let config = variant_config(dir.path(), base, |_| {})?;
            let input = dir.path().join("input.txt");
            std::fs::copy(&reference.input, &input)?;
            std::os::unix::fs::symlink(&input, dir.path().join("link.txt"))?;
            std::fs::write(dir.path().join("output.txt"), b"earlier output\n")?;
            std::fs::write(dir.path().join("rejects.jsonl"), b"earlier rejects\n")?;
            std::fs::write(dir.path().join("output.txt.journal"), b"{}")?;
            let fifo = dir.path().join("fifo");
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU)?;
            // Another run's output, locked while that run writes it.
            let locked = dir.path().join("other-run.txt");
            std::fs::write(&locked, b"another run's records\n")?;
            let lock = std::fs::OpenOptions::new().write(true).open(&locked)?;
            lock.lock()?;
            let targets: Vec<(&str, PathBuf)> = vec![
                ("the input", input.clone()),
                ("a symlink to the input", dir.path().join("link.txt")),
                ("the output", dir.path().join("output.txt")),
                ("the dead-letter file", dir.path().join("rejects.jsonl")),
                ("the config", config.clone()),
                ("the run journal", dir.path().join("output.txt.journal")),
                ("another run's locked output", locked.clone()),
                ("a FIFO without a reader", fifo.clone()),
            ];
            for (what, target) in &targets {
                let before = if what.contains("FIFO") {
                    Vec::new()
                } else {
                    std::fs::read(target)?
                };
                let run = run_in(&config, &input, dir.path(), &["--report"])
                    .arg(target)
                    .output()?;
                total += 1;
                // A file the run reads or writes itself: the files contradict each other (2);
                // a file that cannot be written at all: an output that cannot be created (73).
                let expected = if what.contains("locked") || what.contains("FIFO") {
                    73
                } else {
                    2
                };
                check(run.status.code() == Some(expected), || {
                    format!("{base}: --report {what}: {}", said(&run))
                })?;
                if !what.contains("FIFO") {
                    check(std::fs::read(target)? == before, || {
                        format!("{base}: --report {what} changed it")
                    })?;
                }
                refused += 1;
            }
            // `--output - --report /dev/stdout`: the records on stdout stay records.
            let run = cli()
                .args(["run", "-c"])
                .arg(&config)
                .arg("--input")
                .arg(&input)
                .args(["--output", "-", "--report", "/dev/stdout"])
                .current_dir(dir.path())
                .output()?;
            total += 1;
            // Refused as two outputs on stdout (2), or as a pipe a report cannot be (73).
            check(
                matches!(run.status.code(), Some(2 | 73)) && run.stdout.is_empty(),
                || format!("{base}: --output - --report /dev/stdout: {}", said(&run)),
            )?;
            refused += 1;
            drop(lock);
        }
    }
    println!(
        "REPORT: --report aimed at each of the run's files (input, a symlink to it, output, dead letters, config, journal, another run's locked output, a FIFO, stdout carrying the records), inline and 4 groups, {rounds} round(s): refused {refused}/{total} (exit 2, or 73 for a locked file or a FIFO), every file untouched"
    );
    Ok(())
}

/// Defect 7: under `ulimit -f` SIGXFSZ killed the inline writer (exit 153, a torn line) and the
/// 4-group run left a torn line and records past the reported point. Now EFBIG is a write
/// error: exit 1, every output cut back to the same completed record.
fn file_size_limit() -> Result<(), Failed> {
    let reference = Reference::build(600_000)?;
    // Above the 4 MiB rings (memory segments count against the limit too).
    let limit = (reference.output.len() as u64 / 3).max(8 << 20);
    let mut figures = Vec::new();
    for base in [INLINE, GROUPS] {
        let dir = tempfile::tempdir_in(reference.dir.path())?;
        let mut command = run_in(&bundled(base), &reference.input, dir.path(), &[]);
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                nix::sys::resource::setrlimit(
                    nix::sys::resource::Resource::RLIMIT_FSIZE,
                    limit,
                    limit,
                )
                .map_err(std::io::Error::from)
            });
        }
        let run = command.output()?;
        let text = said(&run);
        check(run.status.code() == Some(1), || {
            format!("{base} under a {limit}-byte file size limit: {text}")
        })?;
        let k = reported_seq(&text, "completed through seq ")
            .ok_or_else(|| format!("no completed range: {text}"))?;
        let (output, rejects) = files_of(dir.path())?;
        reference.check_exactly_through(k, &output, &rejects)?;
        figures.push(format!(
            "{base}: exit 1, both files exactly through seq {k}"
        ));
    }
    println!(
        "FILE-SIZE-LIMIT: ulimit -f {limit} bytes: {}; no torn line",
        figures.join("; ")
    );
    Ok(())
}

fn can_mount_tmpfs() -> bool {
    let Ok(dir) = tempfile::tempdir() else {
        return false;
    };
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(dir.path())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        let _ = Command::new("umount").arg(dir.path()).status();
    }
    mounted
}

/// Defect 7: with the dead-letter file on a full disk, the output held records past the
/// reported point (+1,863 inline, +52 in 4 groups). Now both files end at the same record.
fn full_dead_letter_disk() -> Result<(), Failed> {
    let reference = Reference::build(INPUT_LINES)?;
    let mut figures = Vec::new();
    for base in [INLINE, GROUPS] {
        let dir = tempfile::tempdir_in(reference.dir.path())?;
        let small = dir.path().join("small");
        std::fs::create_dir(&small)?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"])
            .arg(&small)
            .status()?;
        check(mounted.success(), || "mount tmpfs".into())?;
        let run = run_in(
            &bundled(base),
            &reference.input,
            dir.path(),
            &["--dead-letter"],
        )
        .arg(small.join("rejects.jsonl"))
        .output();
        let rejects = std::fs::read(small.join("rejects.jsonl")).unwrap_or_default();
        let _ = Command::new("umount").arg(&small).status();
        let run = run?;
        let text = said(&run);
        check(run.status.code() == Some(1), || format!("{base}: {text}"))?;
        let k = reported_seq(&text, "completed through seq ")
            .ok_or_else(|| format!("no completed range: {text}"))?;
        let output = std::fs::read(dir.path().join("output.txt"))?;
        reference.check_exactly_through(k, &output, &rejects)?;
        figures.push(format!(
            "{base}: exit 1, output and dead letters exactly through seq {k}"
        ));
    }
    println!(
        "FULL-DEAD-LETTERS: a 16 KiB tmpfs for dead letters: {}",
        figures.join("; ")
    );
    Ok(())
}

/// Defect 8: a run refused at start (dead-letter file locked or unopenable) had already
/// emptied the existing output; `--output -` with stdout closed exited 0 with every record
/// gone. Both are refused (exit 2) and no file changes.
fn refused_at_start() -> Result<(), Failed> {
    let reference = Reference::build(20_000)?;
    let mut figures = Vec::new();
    for base in [INLINE, GROUPS] {
        for case in ["locked", "a directory"] {
            let dir = tempfile::tempdir_in(reference.dir.path())?;
            std::fs::write(dir.path().join("output.txt"), &reference.output)?;
            let rejects = dir.path().join("rejects.jsonl");
            let _lock = if case == "locked" {
                std::fs::write(&rejects, b"x\n")?;
                let file = std::fs::OpenOptions::new().write(true).open(&rejects)?;
                file.lock()?;
                Some(file)
            } else {
                std::fs::create_dir(&rejects)?;
                None
            };
            let run = run_in(&bundled(base), &reference.input, dir.path(), &[]).output()?;
            check(run.status.code() == Some(73), || {
                format!("{base}, dead-letter file {case}: {}", said(&run))
            })?;
            check(
                std::fs::read(dir.path().join("output.txt"))? == reference.output,
                || format!("{base}, dead-letter file {case}: the existing output changed"),
            )?;
            figures.push(format!("{base} dead-letter file {case}: exit 73"));
        }
        let dir = tempfile::tempdir_in(reference.dir.path())?;
        let mut command = cli();
        command
            .args(["run", "-c"])
            .arg(bundled(base))
            .arg("--input")
            .arg(&reference.input)
            .args(["--output", "-"])
            .current_dir(dir.path())
            .stderr(Stdio::piped());
        // SAFETY: close(2) is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::close(1).map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let run = command.output()?;
        check(run.status.code() == Some(73), || {
            format!("{base}, stdout closed: {}", said(&run))
        })?;
        figures.push(format!("{base} stdout closed: exit 73"));
    }
    println!(
        "REFUSED-AT-START: {}; existing output untouched",
        figures.join("; ")
    );
    Ok(())
}

/// Defect 9: stopping the whole process group (job control) and continuing it failed the
/// run with a false `heartbeat_timeout`. The supervisor's own pause is not held against its
/// workers.
fn stopped_group() -> Result<(), Failed> {
    let reference = Reference::build(INPUT_LINES)?;
    let dir = tempfile::tempdir_in(reference.dir.path())?;
    let config = variant_config(dir.path(), GROUPS, |root| {
        for group in 0..4 {
            set(
                root,
                &format!("runtime.platform.process_groups[{group}].heartbeat_seconds"),
                yaml("0.2"),
            );
        }
    })?;
    let pause = Duration::from_secs(runs("STREAM_KERNEL_STOP_SECONDS", 2));
    let mut child = spawn_in(&config, &reference.input, dir.path(), &[])?;
    wait_for_progress(
        &mut child,
        &dir.path().join("output.txt"),
        reference.output.len() as u64 / 4,
        4,
    )?;
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGSTOP)?;
    std::thread::sleep(pause);
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGCONT)?;
    let exit = wait_exit(child)?;
    check(exit.code == Some(0), || {
        format!(
            "after a {} s stop: exit {:?}\n{}{}",
            pause.as_secs(),
            exit.code,
            exit.stdout,
            exit.stderr
        )
    })?;
    check(!exit.stderr.contains("heartbeat_timeout"), || {
        exit.stderr.clone()
    })?;
    check(
        files_of(dir.path())? == (reference.output.clone(), reference.rejects.clone()),
        || "the files differ after a stopped group".into(),
    )?;
    println!(
        "STOPPED-GROUP: the whole process group stopped {} s (heartbeats every 0.2 s, limit 0.6 s) and continued: exit 0, no heartbeat_timeout, output identical",
        pause.as_secs()
    );
    Ok(())
}

/// Defect 6: a line under the 1 MiB limit could not pass the 5-group configs, and `--skip`
/// could not get past it; a 64 KiB ring passed `validate` and then failed on a 16 KB record.
/// Now rings hold the largest line (the ring's largest record is half of it), `validate`
/// refuses a ring too small for the limit with the arithmetic, and a resume replays it.
fn long_lines() -> Result<(), Failed> {
    let work = tempfile::tempdir()?;
    let input = work.path().join("input.txt");
    let limit = stream_kernel::config::DEFAULT_MAX_LINE_BYTES as usize;
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&input)?);
        fund_load_runs::write_generated(&mut file, 5_000)?;
        // A valid attempt padded with spaces to one byte under the limit.
        let attempt = br#"{"id":"99999901","customer_id":"77","load_amount":"$1.00","time":"2000-01-03T00:00:00Z"}"#;
        file.write_all(attempt)?;
        file.write_all(&vec![b' '; limit - 1 - attempt.len()])?;
        file.write_all(b"\n")?;
        // A line far over the limit: cut, then unreadable.
        file.write_all(&vec![b'x'; 3 * limit])?;
        file.write_all(b"\n")?;
        fund_load_runs::write_generated(&mut file, 5_000)?;
    }
    let inline_dir = tempfile::tempdir_in(work.path())?;
    let inline = run_in(&bundled(INLINE), &input, inline_dir.path(), &[]).output()?;
    check(inline.status.success(), || said(&inline))?;
    let expected = files_of(inline_dir.path())?;
    let mut placements = Vec::new();
    for base in [
        "fund_load_experiment_4proc",
        "fund_load_experiment_5proc",
        "fund_load_baseline_4proc_partitioned",
    ] {
        if !bundled(base).exists() {
            continue;
        }
        let dir = tempfile::tempdir_in(work.path())?;
        let reference_dir = tempfile::tempdir_in(work.path())?;
        let inline_base = base
            .replace("_4proc_partitioned", "_inline")
            .replace("_5proc", "_inline")
            .replace("_4proc", "_inline");
        let reference =
            run_in(&bundled(&inline_base), &input, reference_dir.path(), &[]).output()?;
        check(reference.status.success(), || said(&reference))?;
        let run = run_in(&bundled(base), &input, dir.path(), &[]).output()?;
        check(run.status.success(), || format!("{base}: {}", said(&run)))?;
        check(
            files_of(dir.path())? == files_of(reference_dir.path())?,
            || format!("{base}: the files differ from inline"),
        )?;
        // A resume past the long line replays it through the rings.
        let resumed_dir = tempfile::tempdir_in(work.path())?;
        let (output, rejects) = files_of(dir.path())?;
        let head: Vec<u8> = output
            .split_inclusive(|b| *b == b'\n')
            .take(5_001)
            .flatten()
            .copied()
            .collect();
        std::fs::write(resumed_dir.path().join("output.txt"), &head)?;
        std::fs::write(resumed_dir.path().join("rejects.jsonl"), &rejects)?;
        let resume = run_in(
            &bundled(base),
            &input,
            resumed_dir.path(),
            &["--skip", "5002"],
        )
        .output()?;
        check(resume.status.success(), || {
            format!("{base} --skip past the long lines: {}", said(&resume))
        })?;
        placements.push(base);
    }
    check(
        String::from_utf8_lossy(&expected.0)
            .contains(r#"{"id":"99999901","customer_id":"77","accepted":true}"#),
        || "the long line's decision is not in the output".into(),
    )?;
    // A 64 KiB ring cannot hold a 1 MiB line: refused by validate, with the arithmetic.
    let small = variant_config(work.path(), GROUPS, |root| {
        set(
            root,
            "runtime.platform.execution_ipc.ring_bytes",
            yaml("65536"),
        );
    })?;
    let validate = cli().args(["validate", "-c"]).arg(&small).output()?;
    let text = said(&validate);
    check(
        validate.status.code() == Some(2)
            && text.contains("ring_bytes")
            && text.contains("holds records of at most")
            && text.contains("max_line_bytes to"),
        || format!("validate with a 64 KiB ring: {text}"),
    )?;
    println!(
        "LONG-LINES: a line of {} bytes and one of {} bytes pass {}, byte-identical to inline, and a --skip past them replays them; a 64 KiB ring is refused by validate with the arithmetic",
        limit - 1,
        3 * limit,
        placements.join(", ")
    );
    Ok(())
}

/// Defect 11: control characters in group names and paths forged log and summary lines.
/// Names are refused; paths are printed escaped.
fn forged_names() -> Result<(), Failed> {
    let reference = Reference::build(2_000)?;
    let dir = tempfile::tempdir_in(reference.dir.path())?;
    let config = variant_config(dir.path(), GROUPS, |root| {
        set(
            root,
            "runtime.platform.process_groups[0].name",
            serde_norway::Value::String("ingress\nERROR forged".into()),
        );
    })?;
    let validate = cli().args(["validate", "-c"]).arg(&config).output()?;
    check(
        validate.status.code() == Some(2) && said(&validate).contains("process_groups[0].name"),
        || format!("a group name with a newline: {}", said(&validate)),
    )?;
    let empty = variant_config(dir.path(), GROUPS, |root| {
        set(root, "runtime.platform.process_groups[1].nodes", yaml("[]"));
    })?;
    let validate = cli().args(["validate", "-c"]).arg(&empty).output()?;
    check(
        validate.status.code() == Some(2) && said(&validate).contains("process_groups[1].nodes"),
        || format!("a group without nodes: {}", said(&validate)),
    )?;
    for base in [INLINE, GROUPS] {
        let forged = dir.path().join("out\nERROR forged.txt");
        let run = cli()
            .args(["run", "-c"])
            .arg(bundled(base))
            .arg("--input")
            .arg(&reference.input)
            .arg("--output")
            .arg(&forged)
            .current_dir(dir.path())
            .output()?;
        let text = said(&run);
        check(run.status.success(), || text.clone())?;
        check(
            !text.lines().any(|l| l.starts_with("ERROR forged"))
                && text.contains("out\\nERROR forged.txt"),
            || format!("{base}: a path with a newline was printed raw:\n{text}"),
        )?;
    }
    println!(
        "NAMES: a group name with a newline and a group without nodes are refused by validate; a path with a newline is printed escaped in the summary and the log, inline and 4 groups"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// a supervisor without threads

fn pids_cgroup_root() -> Option<PathBuf> {
    let root = PathBuf::from("/sys/fs/cgroup/pids");
    let probe = root.join(format!("stream-kernel-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    let writable = std::fs::write(probe.join("pids.max"), "10").is_ok();
    let _ = std::fs::remove_dir(&probe);
    writable.then_some(root)
}

/// Defect 4 (threads): a supervisor that could not start a thread panicked (exit 101). Under
/// every task limit from 2 to 24 the supervisor now fails with a named error (exit 1), leaves
/// no process behind and no output changed, or completes.
fn thread_limit() -> Result<(), Failed> {
    let Some(root) = pids_cgroup_root() else {
        return Err("no pids cgroup".into());
    };
    let reference = Reference::build(20_000)?;
    let mut outcomes = Vec::new();
    for limit in 2..=24u32 {
        let dir = tempfile::tempdir_in(reference.dir.path())?;
        std::fs::write(dir.path().join("output.txt"), b"earlier output\n")?;
        let cgroup = root.join(format!("stream-kernel-test-{}-{limit}", std::process::id()));
        std::fs::create_dir(&cgroup)?;
        std::fs::write(cgroup.join("pids.max"), limit.to_string())?;
        let procs = cgroup.join("cgroup.procs");
        let mut command = run_in(&bundled(GROUPS), &reference.input, dir.path(), &[]);
        // SAFETY: the closure only writes this process's pid to a file (open/write/close).
        unsafe {
            command.pre_exec(move || std::fs::write(&procs, std::process::id().to_string()));
        }
        let run = command.output();
        // Whatever ran in the group must be gone before the group can be removed.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&cgroup).is_err() {
            check(Instant::now() < deadline, || {
                format!("processes left in the cgroup with limit {limit}")
            })?;
            std::thread::sleep(Duration::from_millis(20));
        }
        let run = run?;
        let text = said(&run);
        check(
            !text.contains("panicked") && run.status.code() != Some(101),
            || format!("task limit {limit}: {text}"),
        )?;
        match run.status.code() {
            Some(0) => {
                check(files_of(dir.path())?.0 == reference.output, || {
                    format!("task limit {limit}: completed with another output")
                })?;
                outcomes.push(format!("{limit}: completed"));
            }
            Some(1) => {
                check(text.contains("error") || text.contains("FAILED"), || {
                    text.clone()
                })?;
                outcomes.push(format!("{limit}: exit 1"));
            }
            other => return Err(format!("task limit {limit}: exit {other:?}: {text}").into()),
        }
    }
    println!(
        "THREADS: the 4-group run under task limits 2 to 24 (pids cgroup): {}; never a panic, nothing left behind",
        outcomes.join(", ")
    );
    Ok(())
}
