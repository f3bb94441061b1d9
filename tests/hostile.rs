//! The release CLI used as a hostile user would (docs/failures-and-resume.md's promise): stdin in every
//! placement, an output that is the input, data streams mixed with logs, idle and garbage
//! connections on the control port, terminal signals, two runs on one output, resumed runs,
//! and the words of failure reports. Each test names the defect it guards against; figures are
//! printed on lines starting with their row id (`STDIN`, `SAME-FILE`, `R7`, ...), which
//! `tools/reliability.sh` collects.

#[path = "support/checks.rs"]
mod checks;
#[path = "support/cli_runs.rs"]
mod cli_runs;
#[path = "support/fund_load_runs.rs"]
mod fund_load_runs;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use checks::check;
use cli_runs::*;
use libtest_mimic::{Failed, Trial};

const INPUT_LINES: u64 = 200_000;

fn main() {
    checks::run_serially(
        registry,
        vec![
            Trial::test(
                "stdin_is_read_in_every_bundled_multiprocess_config",
                stdin_everywhere,
            ),
            Trial::test(
                "an_output_that_is_the_input_is_refused_before_anything_is_written",
                same_file,
            ),
            Trial::test(
                "stdout_output_carries_records_only_in_every_mode",
                stdout_is_data,
            ),
            Trial::test(
                "r7_idle_and_garbage_control_connections_delay_neither_start_nor_exit",
                idle_connections,
            ),
            Trial::test(
                "sighup_sigquit_and_ctrl_c_to_the_group_drain_like_sigterm",
                terminal_signals,
            ),
            Trial::test("a_second_run_on_the_same_output_is_refused", output_lock),
            Trial::test(
                "a_run_resumed_with_skip_appends_and_ends_identical",
                resume_with_skip,
            ),
            Trial::test(
                "a_resume_whose_output_runs_past_the_reported_range_writes_each_record_once",
                resume_past_reported_range,
            ),
            Trial::test("failure_reports_say_what_happened", failure_words),
            Trial::test(
                "a_second_run_on_the_host_does_not_alarm_a_running_one",
                second_run_probe,
            ),
        ],
    )
}

/// The bundled configs that read input in process mode (the embedding config has no source).
fn multiprocess_configs() -> Result<Vec<(String, String)>, Failed> {
    let mut configs = Vec::new();
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs"))? {
        let path = entry?.path();
        let Some(name) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        let loaded = stream_kernel::config::load_file(&path, &registry())
            .map_err(|r| format!("{}: {r}", path.display()))?;
        let config = loaded.config;
        // Configs that place groups on hosts run one supervisor per host (tests/cross_host.rs).
        let on_one_host = config
            .runtime
            .platform
            .process_groups
            .iter()
            .all(|g| g.host.is_none());
        if config.is_process_mode()
            && on_one_host
            && config.pipeline.nodes.first().map(String::as_str) == Some("source")
        {
            configs.push((name, config.scenario.name.clone()));
        }
    }
    configs.sort();
    Ok(configs)
}

/// The public sample when present, else a generated input of the same size.
fn sample_or_generated(dir: &Path) -> Result<(PathBuf, &'static str), Failed> {
    if let Some(sample) = fund_load_runs::sample_input() {
        return Ok((sample, "the public sample"));
    }
    println!("the public sample is absent: using 1000 generated lines");
    let path = dir.join("generated.txt");
    fund_load_runs::generated_input(&path, 1000)?;
    Ok((path, "1000 generated lines"))
}

/// Output of the CLI on `config` reading `input` as a file, written in `dir`.
fn file_run(config: &Path, input: &Path, dir: &Path) -> Result<Vec<u8>, Failed> {
    let out = quiet_run(config, input, dir.join("output.txt"))
        .current_dir(dir)
        .output()?;
    check(out.status.success(), || {
        format!(
            "{}: {}",
            config.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok(std::fs::read(dir.join("output.txt"))?)
}

/// Defect 1: stdin in every multiprocess config. The source runs in a worker; the input on
/// the supervisor's stdin (a file redirect and a pipe) must reach it, and the output must be
/// the inline profile's, byte for byte.
fn stdin_everywhere() -> Result<(), Failed> {
    let work = tempfile::tempdir()?;
    let (input, what) = sample_or_generated(work.path())?;
    let configs = multiprocess_configs()?;
    check(configs.len() >= 4, || {
        format!("bundled configs: {configs:?}")
    })?;
    for (name, profile) in &configs {
        let inline_dir = tempfile::tempdir_in(work.path())?;
        let expected = file_run(
            &bundled(&format!("fund_load_{profile}_inline")),
            &input,
            inline_dir.path(),
        )?;
        for piped in [false, true] {
            let dir = tempfile::tempdir_in(work.path())?;
            let mut command = cli();
            command
                .args(["run", "-c"])
                .arg(bundled(name))
                .args(["--input", "-", "--output"])
                .arg(dir.path().join("output.txt"))
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let out = if piped {
                let mut child = command.stdin(Stdio::piped()).spawn()?;
                let mut stdin = child.stdin.take().ok_or("stdin")?;
                let bytes = std::fs::read(&input)?;
                let writer = std::thread::spawn(move || stdin.write_all(&bytes));
                let out = child.wait_with_output()?;
                writer.join().map_err(|_| "writer")??;
                out
            } else {
                command
                    .stdin(std::fs::File::open(&input)?)
                    .spawn()?
                    .wait_with_output()?
            };
            let how = if piped { "a pipe" } else { "a file redirect" };
            check(out.status.success(), || {
                format!(
                    "{name} with {how}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
            let got = std::fs::read(dir.path().join("output.txt"))?;
            check(got == expected && !got.is_empty(), || {
                format!(
                    "{name} reading {how} wrote {} bytes; inline writes {}",
                    got.len(),
                    expected.len()
                )
            })?;
        }
    }
    println!(
        "STDIN: {what} through stdin (redirect and pipe) in {} multiprocess configs: output identical to inline in every one",
        configs.len()
    );
    Ok(())
}

/// Defect 3: `--input X --output X` (and the same file through a link, `/dev/fd/N`, or a
/// shell redirection of stdin or stdout) is refused with exit 2 before anything is written:
/// the input is unchanged, in both placements.
fn same_file() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("x.txt");
    fund_load_runs::generated_input(&input, 1000)?;
    let original = std::fs::read(&input)?;
    let link = dir.path().join("link.txt");
    std::os::unix::fs::symlink(&input, &link)?;
    let hard = dir.path().join("hard.txt");
    std::fs::hard_link(&input, &hard)?;
    let mut cases = 0;
    for config in ["fund_load_baseline_inline", "fund_load_experiment_4proc"] {
        let run = |args: &[&std::ffi::OsStr], stdin: Stdio, stdout: Stdio| {
            let mut command = cli();
            command
                .args(["run", "-c"])
                .arg(bundled(config))
                .args(args)
                .current_dir(dir.path())
                .stdin(stdin)
                .stdout(stdout)
                .stderr(Stdio::piped());
            command.output()
        };
        let os = |s: &Path| s.as_os_str().to_owned();
        let input_os = os(&input);
        let variants: Vec<(&str, Vec<std::ffi::OsString>, Stdio, Stdio)> = vec![
            (
                "--input X --output X",
                vec![
                    "--input".into(),
                    input_os.clone(),
                    "--output".into(),
                    input_os.clone(),
                ],
                Stdio::null(),
                Stdio::null(),
            ),
            (
                "--output a symlink to X",
                vec![
                    "--input".into(),
                    input_os.clone(),
                    "--output".into(),
                    os(&link),
                ],
                Stdio::null(),
                Stdio::null(),
            ),
            (
                "--output a hard link to X",
                vec![
                    "--input".into(),
                    input_os.clone(),
                    "--output".into(),
                    os(&hard),
                ],
                Stdio::null(),
                Stdio::null(),
            ),
            (
                "--input - < X --output X",
                vec![
                    "--input".into(),
                    "-".into(),
                    "--output".into(),
                    input_os.clone(),
                ],
                Stdio::from(std::fs::File::open(&input)?),
                Stdio::null(),
            ),
            (
                "--input X --output - >> X",
                vec![
                    "--input".into(),
                    input_os.clone(),
                    "--output".into(),
                    "-".into(),
                ],
                Stdio::null(),
                Stdio::from(std::fs::OpenOptions::new().append(true).open(&input)?),
            ),
        ];
        for (what, args, stdin, stdout) in variants {
            let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            let out = run(&args, stdin, stdout)?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            check(out.status.code() == Some(2), || {
                format!("{config} {what}: exit {:?}\n{stderr}", out.status.code())
            })?;
            check(
                stderr.contains("E_SAME_FILE") && stderr.contains("destroy the input"),
                || format!("{config} {what}: unclear error\n{stderr}"),
            )?;
            check(std::fs::read(&input)? == original, || {
                format!("{config} {what}: the input changed")
            })?;
            cases += 1;
        }
        // /dev/fd/N of an inherited descriptor on X.
        let file = std::fs::File::open(&input)?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let mut command = cli();
        command
            .args(["run", "-c"])
            .arg(bundled(config))
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(format!("/dev/fd/{fd}"))
            .stderr(Stdio::piped());
        // SAFETY: only fcntl between fork and exec, on an fd this process owns.
        unsafe {
            command.pre_exec(move || stream_kernel::data::clear_cloexec(fd).map(|_| ()));
        }
        let out = command.output()?;
        check(out.status.code() == Some(2), || {
            format!("{config} /dev/fd/{fd}: exit {:?}", out.status.code())
        })?;
        check(std::fs::read(&input)? == original, || {
            format!("{config} /dev/fd: the input changed")
        })?;
        cases += 1;
        // Two outputs in one file: the sink and the dead letters.
        let out = quiet_run(bundled(config), &input, dir.path().join("rejects.jsonl"))
            .current_dir(dir.path())
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let expected_code = if config.ends_with("inline") {
            // The inline config keeps no dead letters: nothing to clash with.
            out.status.code()
        } else {
            Some(2)
        };
        check(out.status.code() == expected_code, || {
            format!(
                "{config} sink = dead letters: exit {:?}\n{stderr}",
                out.status.code()
            )
        })?;
    }
    println!(
        "SAME-FILE: {cases} ways of naming the input as an output (same path, symlink, hard link, stdin redirect, stdout append, /dev/fd/N), both placements: exit 2 before anything is written, input unchanged"
    );
    Ok(())
}

/// Defect 4: with `--output -` stdout carries output records only, in every mode: the
/// lifecycle log goes to stderr.
fn stdout_is_data() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in.txt");
    fund_load_runs::generated_input(&input, 20_000)?;
    for config in [
        "fund_load_experiment_inline",
        "fund_load_experiment_4proc",
        "fund_load_baseline_4proc_partitioned",
    ] {
        let out = cli()
            .args(["run", "-c"])
            .arg(bundled(config))
            .arg("--input")
            .arg(&input)
            .args(["--output", "-"])
            .current_dir(dir.path())
            .output()?;
        check(out.status.success(), || {
            String::from_utf8_lossy(&out.stderr).into()
        })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let not_records: Vec<&str> = stdout
            .lines()
            .filter(|l| !(l.starts_with("{\"id\":") && l.ends_with('}')))
            .take(3)
            .collect();
        check(not_records.is_empty(), || {
            format!("{config}: stdout carries non-records: {not_records:?}")
        })?;
        check(stdout.lines().count() > 19_000, || {
            format!("{config}: {} records on stdout", stdout.lines().count())
        })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        check(stderr.contains("records/s"), || {
            format!("{config}: the summary is not on stderr")
        })?;
    }
    // A log exporter on stdout while the sink writes stdout is refused.
    let config = variant_config(dir.path(), "fund_load_experiment_4proc", |c| {
        set(
            c,
            "runtime.observability.logging.exporters",
            yaml("[{kind: stdout}]"),
        );
    })?;
    let out = cli()
        .args(["run", "-c"])
        .arg(&config)
        .arg("--input")
        .arg(&input)
        .args(["--output", "-"])
        .output()?;
    check(
        out.status.code() == Some(2) && out.stdout.is_empty(),
        || {
            format!(
                "stdout logs with stdout data: exit {:?}, {} bytes on stdout",
                out.status.code(),
                out.stdout.len()
            )
        },
    )?;
    Ok(())
}

/// Where a running supervisor listens: its unix socket, found by its pid.
fn wait_for_socket(pid: u32) -> Result<PathBuf, Failed> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(dir) = socket_dirs_of(pid).into_iter().next() {
            let socket = dir.join("control.sock");
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                return Ok(socket);
            }
        }
        check(Instant::now() < deadline, || {
            "no control socket appeared".into()
        })?;
        std::thread::sleep(Duration::from_micros(200));
    }
}

enum Hostile {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

/// Opens `idle` connections that say nothing and `garbage` that send random bytes (some
/// announcing huge frames, some short of a frame), and keeps them open.
fn hostile_connections(
    control: &Control,
    idle: usize,
    garbage: usize,
    chooser: &mut Chooser,
) -> Vec<Hostile> {
    let mut held = Vec::new();
    for n in 0..idle + garbage {
        let connection = match control {
            Control::Unix(path) => std::os::unix::net::UnixStream::connect(path).map(Hostile::Unix),
            Control::Tcp(port) => {
                std::net::TcpStream::connect(("127.0.0.1", *port)).map(Hostile::Tcp)
            }
        };
        let Ok(mut connection) = connection else {
            continue;
        };
        if n >= idle {
            let len = 1 + chooser.next(200) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| chooser.next(256) as u8).collect();
            if n % 3 == 0 {
                bytes.splice(0..0, 0xffff_fff0u32.to_be_bytes());
            }
            let _ = match &mut connection {
                Hostile::Unix(s) => s.write_all(&bytes),
                Hostile::Tcp(s) => s.write_all(&bytes),
            };
        }
        held.push(connection);
    }
    held
}

enum Control {
    Unix(PathBuf),
    Tcp(u16),
}

fn free_port() -> Result<u16, Failed> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Milliseconds after `marker` in a report (`spawn to all READY 12 ms`).
fn ms_after(text: &str, marker: &str) -> Option<u64> {
    reported_seq(text, marker)
}

/// R7 (connections) and defect 6: 100 idle and 100 garbage connections to the control port at
/// launch and again mid-run, over both transports, held open to the end: the output is
/// identical, workers start and the run stops in their usual time.
fn idle_connections() -> Result<(), Failed> {
    let reference = Reference::build(INPUT_LINES)?;
    let mut chooser = Chooser::seeded("R7");
    for transport in ["unix", "tcp_local"] {
        let mut figures = Vec::new();
        for hostile in [false, true] {
            let dir = tempfile::tempdir_in(reference.dir.path())?;
            let port = free_port()?;
            let config = variant_config(dir.path(), "fund_load_experiment_4proc", |c| {
                set(
                    c,
                    "runtime.platform.execution_ipc.control.transport",
                    yaml(transport),
                );
                if transport == "tcp_local" {
                    set(
                        c,
                        "runtime.platform.execution_ipc.control.bind_port",
                        yaml(&port.to_string()),
                    );
                }
            })?;
            let started = Instant::now();
            let mut child = spawn_cli(&config, &reference.input, dir.path())?;
            let mut held = Vec::new();
            if hostile {
                let control = match transport {
                    "unix" => Control::Unix(wait_for_socket(child.id())?),
                    _ => {
                        let deadline = Instant::now() + Duration::from_secs(10);
                        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                            check(Instant::now() < deadline, || "no control port".into())?;
                            std::thread::sleep(Duration::from_micros(200));
                        }
                        Control::Tcp(port)
                    }
                };
                held.extend(hostile_connections(&control, 100, 100, &mut chooser));
                let output = dir.path().join("output.txt");
                let workers =
                    wait_for_progress(&mut child, &output, reference.output.len() as u64 / 3, 4)?;
                if !workers.is_empty() {
                    held.extend(hostile_connections(&control, 100, 100, &mut chooser));
                }
            }
            let exit = wait_exit(child)?;
            let total = started.elapsed();
            drop(held);
            check(exit.code == Some(0), || {
                format!(
                    "{transport} hostile={hostile}: exit {:?}\n{}\n{}",
                    exit.code, exit.stdout, exit.stderr
                )
            })?;
            let output = std::fs::read(dir.path().join("output.txt"))?;
            check(output == reference.output, || {
                format!("{transport} hostile={hostile}: output differs")
            })?;
            let startup = ms_after(&exit.stdout, "spawn to all READY ").unwrap_or(u64::MAX);
            let stop = ms_after(&exit.stdout, "graceful stop ").unwrap_or(u64::MAX);
            // An idle connection used to hold every worker past its start timeout (30 s), or
            // the exit for ~30 s after the summary; the handshake deadline is 5 s.
            check(
                startup < 5_000 && stop < 5_000 && total < Duration::from_secs(30),
                || {
                    format!(
                        "{transport} hostile={hostile}: start {startup} ms, stop {stop} ms, run {total:?}"
                    )
                },
            )?;
            figures.push((startup, stop, total.as_millis()));
        }
        println!(
            "R7 connections ({transport}): 200 idle + 200 garbage connections at launch and mid-run: output identical; start {} ms (quiet run {} ms), stop {} ms ({} ms), whole run {} ms ({} ms)",
            figures[1].0, figures[0].0, figures[1].1, figures[0].1, figures[1].2, figures[0].2
        );
    }
    Ok(())
}

/// Defect 8: SIGHUP and SIGQUIT drain like SIGTERM (exit 128 + signal, a summary with the
/// resume point, the output exactly the full run's through it), in both placements; a Ctrl-C
/// that reaches the whole process group (workers included) drains too.
fn terminal_signals() -> Result<(), Failed> {
    use nix::sys::signal::Signal;
    let reference = Reference::build(INPUT_LINES)?;
    let mut figures = Vec::new();
    for (config, workers) in [
        ("fund_load_experiment_inline", 0),
        ("fund_load_experiment_4proc", 4),
    ] {
        for (signal, to_group) in [
            (Signal::SIGHUP, false),
            (Signal::SIGQUIT, false),
            (Signal::SIGINT, true),
        ] {
            let dir = tempfile::tempdir_in(reference.dir.path())?;
            let mut command = cli();
            command
                .args(["run", "-c"])
                .arg(bundled(config))
                .arg("--input")
                .arg(&reference.input)
                .arg("--output")
                .arg(dir.path().join("output.txt"))
                .current_dir(dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // Its own process group, as a shell gives a foreground job.
                .process_group(0);
            let mut child = command.spawn()?;
            let output = dir.path().join("output.txt");
            let threshold = reference.output.len() as u64 / 5;
            let running = wait_for_progress(&mut child, &output, threshold, workers)?;
            check(!running.is_empty() || workers == 0, || {
                "ended too early".into()
            })?;
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            if to_group {
                nix::sys::signal::killpg(pid, signal)?;
            } else {
                nix::sys::signal::kill(pid, signal)?;
            }
            let exit = wait_exit(child)?;
            check_no_orphans(&running)?;
            let expected = 128 + signal as i32;
            check(exit.code == Some(expected), || {
                format!(
                    "{config} {signal}: exit {:?} (signal {:?}), expected {expected}\n{}\n{}",
                    exit.code, exit.signal, exit.stdout, exit.stderr
                )
            })?;
            let k = reported_seq(&exit.stdout, "every record through seq ")
                .ok_or_else(|| format!("{config} {signal}: no resume point:\n{}", exit.stdout))?;
            check(
                exit.stdout.contains(&format!("resume with --skip {k}")),
                || exit.stdout.clone(),
            )?;
            let output = std::fs::read(&output)?;
            let rejects = std::fs::read(dir.path().join("rejects.jsonl")).unwrap_or_default();
            reference.check_exactly_through(k, &output, &rejects)?;
            figures.push(format!(
                "{config} {signal}{}: exit {expected} through seq {k}",
                if to_group { " to the group" } else { "" }
            ));
        }
    }
    println!("SIGNALS: {}", figures.join("; "));
    Ok(())
}

/// Defect 10: two runs writing one output at once: the second is refused (the first holds the
/// file's lock) and the first completes untouched.
fn output_lock() -> Result<(), Failed> {
    let reference = Reference::build(INPUT_LINES)?;
    for config in ["fund_load_experiment_inline", "fund_load_experiment_4proc"] {
        let dir = tempfile::tempdir_in(reference.dir.path())?;
        let output = dir.path().join("output.txt");
        let mut first = spawn_cli(&bundled(config), &reference.input, dir.path())?;
        let workers = if config.ends_with("inline") { 0 } else { 4 };
        wait_for_progress(&mut first, &output, 1, workers)?;
        let second = quiet_run(bundled(config), &reference.input, &output)
            .current_dir(tempfile::tempdir_in(reference.dir.path())?.path())
            .output()?;
        let stderr = String::from_utf8_lossy(&second.stderr);
        let said = format!("{}{stderr}", String::from_utf8_lossy(&second.stdout));
        // Refused before it starts, as an output that cannot be used (EX_CANTCREAT).
        check(
            second.status.code() == Some(73) && said.contains("locked"),
            || {
                format!(
                    "{config}: second run: exit {:?}\n{said}",
                    second.status.code()
                )
            },
        )?;
        let exit = wait_exit(first)?;
        check(exit.code == Some(0), || {
            format!("{config}: first run: {}", exit.stderr)
        })?;
        check(std::fs::read(&output)? == reference.output, || {
            format!("{config}: the first run's output was disturbed")
        })?;
    }
    println!(
        "LOCK: a second run on a running run's output is refused before it starts (exit 73, \"locked\"), both placements; the first run's output is intact"
    );
    Ok(())
}

/// A run stopped by SIGTERM, then resumed with the `--skip` it printed and the same paths:
/// the outputs end byte-identical to an uninterrupted run (the resume appends).
fn resume_with_skip() -> Result<(), Failed> {
    let reference = Reference::build(INPUT_LINES)?;
    for config in ["fund_load_experiment_inline", "fund_load_experiment_4proc"] {
        let dir = tempfile::tempdir_in(reference.dir.path())?;
        let output = dir.path().join("output.txt");
        let mut first = spawn_cli(&bundled(config), &reference.input, dir.path())?;
        let workers = if config.ends_with("inline") { 0 } else { 4 };
        wait_for_progress(
            &mut first,
            &output,
            reference.output.len() as u64 / 3,
            workers,
        )?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(first.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let exit = wait_exit(first)?;
        check(exit.code == Some(143), || {
            format!("{config}: {}", exit.stderr)
        })?;
        let skip = reported_seq(&exit.stdout, "resume with --skip ").ok_or("no resume point")?;
        let resumed = quiet_run(bundled(config), &reference.input, &output)
            .arg("--skip")
            .arg(skip.to_string())
            .current_dir(dir.path())
            .output()?;
        check(resumed.status.success(), || {
            format!(
                "{config}: resume: {}",
                String::from_utf8_lossy(&resumed.stderr)
            )
        })?;
        check(std::fs::read(&output)? == reference.output, || {
            format!(
                "{config}: stopped at seq {skip} and resumed, the output differs from a whole run"
            )
        })?;
        check(
            std::fs::read(dir.path().join("rejects.jsonl")).unwrap_or_default()
                == reference.rejects,
            || format!("{config}: the dead letters differ after the resume"),
        )?;
        println!(
            "RESUME {config}: stopped through seq {skip}, resumed with --skip {skip}: output and dead letters identical to a whole run"
        );
    }
    Ok(())
}

/// The R1 gap: a worker killed between a flush and publishing it leaves records in the output
/// past the range the run reported. Resumed with the reported `--skip`, the outputs end
/// byte-identical to a whole run (the records past the range are cut, then written once);
/// an output holding less than the replayed records is refused, not appended to.
fn resume_past_reported_range() -> Result<(), Failed> {
    let reference = Reference::build(INPUT_LINES)?;
    let (reported, written) = (INPUT_LINES * 2 / 5, INPUT_LINES * 3 / 5);
    let (past_output, past_rejects) = reference.first(written)?;
    let (short_output, short_rejects) = reference.first(reported / 2)?;
    for config in ["fund_load_experiment_inline", "fund_load_experiment_4proc"] {
        let resume = |output: &[u8], rejects: &[u8]| -> Result<_, Failed> {
            let dir = tempfile::tempdir_in(reference.dir.path())?;
            std::fs::write(dir.path().join("output.txt"), output)?;
            std::fs::write(dir.path().join("rejects.jsonl"), rejects)?;
            let run = quiet_run(
                bundled(config),
                &reference.input,
                dir.path().join("output.txt"),
            )
            .arg("--skip")
            .arg(reported.to_string())
            .current_dir(dir.path())
            .output()?;
            let files = (
                std::fs::read(dir.path().join("output.txt"))?,
                std::fs::read(dir.path().join("rejects.jsonl"))?,
            );
            Ok((run, files))
        };
        let (run, (output, rejects)) = resume(&past_output, &past_rejects)?;
        check(run.status.success(), || {
            format!("{config}: resume: {}", String::from_utf8_lossy(&run.stderr))
        })?;
        check(
            output == reference.output && rejects == reference.rejects,
            || {
                format!(
                    "{config}: output through seq {written}, resumed with --skip {reported}: the files differ from a whole run"
                )
            },
        )?;
        let (run, _) = resume(&short_output, &short_rejects)?;
        let stderr = String::from_utf8_lossy(&run.stderr);
        check(
            !run.status.success() && stderr.contains("not the output of the run being resumed"),
            || format!("{config}: an output shorter than the replayed records: {stderr}"),
        )?;
        println!(
            "RESUME-PAST {config}: output through seq {written}, resumed with --skip {reported}: identical to a whole run; an output through seq {} refused",
            reported / 2
        );
    }
    Ok(())
}

/// Defect 11: the words of a failed run. A run that fails mid-way reports how many records
/// it read (not "0 records"), a stopping worker is not a node error, and a category appears
/// once.
fn failure_words() -> Result<(), Failed> {
    let reference = Reference::build(INPUT_LINES)?;
    let dir = tempfile::tempdir_in(reference.dir.path())?;
    let mut child = spawn_cli(
        &bundled("fund_load_experiment_4proc"),
        &reference.input,
        dir.path(),
    )?;
    let workers = wait_for_progress(
        &mut child,
        &dir.path().join("output.txt"),
        reference.output.len() as u64 / 3,
        4,
    )?;
    check(workers.len() == 4, || "ended too early".into())?;
    let mut sorted = workers.clone();
    sorted.sort_unstable();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sorted[3] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let exit = wait_exit(child)?;
    check(exit.code == Some(1), || exit.stdout.clone())?;
    let first_line = exit.stdout.lines().next().unwrap_or_default();
    check(!first_line.contains(" 0 records in"), || {
        format!("a failed run says it read nothing: {first_line}")
    })?;
    check(!exit.stderr.contains("stopped category=node_error"), || {
        "a worker stopped by the supervisor is reported as a node error".into()
    })?;
    // An output that cannot be created is refused before the run starts, naming it.
    let out = cli()
        .args(["run", "-c"])
        .arg(bundled("fund_load_experiment_4proc"))
        .arg("--input")
        .arg(&reference.input)
        .args(["--output", "/nonexistent-dir/out.txt"])
        .output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    check(out.status.code() == Some(73), || said.clone())?;
    check(
        said.contains("/nonexistent-dir/out.txt") && said.contains("does not exist"),
        || said.clone(),
    )?;
    Ok(())
}

/// A second run on the host checks the socket directories it finds (is that run alive?) by
/// connecting to their control sockets; the running supervisor must not log that probe as a
/// refused connection.
fn second_run_probe() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let config = variant_config(dir.path(), "fund_load_experiment_4proc", |root| {
        set(
            root,
            "runtime.platform.execution_ipc.control.transport",
            yaml("unix"),
        );
    })?;
    let mut first = cli()
        .args(["run", "--input", "-", "-c"])
        .arg(&config)
        .arg("--output")
        .arg(dir.path().join("first.txt"))
        .arg("--dead-letter")
        .arg(dir.path().join("first.rejects.jsonl"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Let it start (its socket directory exists once its workers connect).
    std::thread::sleep(Duration::from_millis(1500));
    let second = cli()
        .args(["run", "-c"])
        .arg(&config)
        .arg("--input")
        .arg("/dev/null")
        .arg("--output")
        .arg(dir.path().join("second.txt"))
        .arg("--dead-letter")
        .arg(dir.path().join("second.rejects.jsonl"))
        .output()?;
    check(second.status.success(), || {
        String::from_utf8_lossy(&second.stderr).into_owned()
    })?;
    drop(first.stdin.take());
    let exit = wait_exit(first)?;
    check(exit.code == Some(0), || exit.stderr.clone())?;
    check(!exit.stderr.contains("control connection refused"), || {
        format!(
            "the running supervisor logged the second run's probe:\n{}",
            exit.stderr
        )
    })?;
    println!(
        "PROBE: a second run on the host leaves a running unix-transport supervisor's log clean"
    );
    Ok(())
}
