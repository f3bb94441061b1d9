//! The command line: the default job, config errors, `validate --print`, `gen`, overrides.

#[path = "support/needs.rs"]
mod needs;

use std::path::Path;
use std::process::Command;

use needs::{Need, panicking};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stream-kernel"))
}

/// `gen --lines LINES --output PATH`, which must succeed.
fn generate(lines: u64, path: &Path) {
    let status = bin()
        .args(["gen", "--lines", &lines.to_string(), "--output"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "gen --lines {lines}");
}

fn config(name: &str) -> String {
    format!("{}/configs/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `stream-kernel` with no arguments runs the default job on generated input and says where
/// the output went.
fn no_arguments_runs_the_default_job() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().current_dir(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("stream-kernel-out/output.txt"), "{stdout}");
    assert!(stdout.contains("records/s"), "{stdout}");
    assert!(
        stdout.contains("accepted:") && stdout.contains("DAILY_AMOUNT_LIMIT"),
        "{stdout}"
    );
    let output = std::fs::read_to_string(dir.path().join("stream-kernel-out/output.txt")).unwrap();
    let rejects =
        std::fs::read_to_string(dir.path().join("stream-kernel-out/rejects.jsonl")).unwrap();
    assert!(output.lines().count() > 990_000);
    assert!(output.lines().count() + rejects.lines().count() <= 1_000_000);
}

/// Config errors exit with status 2, print every error on stderr and nothing on stdout.
fn config_errors_exit_2_with_nothing_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yml");
    std::fs::write(
        &path,
        "version: 2\nscenario: {name: x}\nruntime: {platfrom: {}}\n",
    )
    .unwrap();
    for args in [vec!["validate", "-c"], vec!["run", "-c"]] {
        let out = bin().args(&args).arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("version") && stderr.contains("did you mean `platform`"),
            "{stderr}"
        );
    }
}

/// `validate --print` prints the complete config, defaults filled in.
fn validate_print_shows_defaults() {
    let out = bin()
        .args(["validate", "--print", "-c"])
        .arg(config("fund_load_baseline_inline.yml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: serde_json::Value =
        serde_norway::from_slice(&out.stdout).expect("printed config is YAML");
    assert_eq!(
        printed["runtime"]["platform"]["execution_ipc"]["ring_bytes"],
        4_194_304
    );
    assert_eq!(
        printed["runtime"]["observability"]["logging"]["level"],
        "info"
    );
}

/// `gen` writes the same bytes for the same seed.
fn gen_is_deterministic_through_the_cli() {
    let run = |seed: &str| {
        bin()
            .args(["gen", "--lines", "5000", "--seed", seed])
            .output()
            .unwrap()
            .stdout
    };
    let a = run("3");
    assert_eq!(a, run("3"));
    assert_ne!(a, run("4"));
    assert_eq!(a.iter().filter(|b| **b == b'\n').count(), 5000);
}

/// `--input` and `--output` override the adapters; `-` means stdin / stdout, and the summary
/// then goes to stderr so the output stays clean.
fn input_and_output_overrides_with_stdio() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(
        &input,
        "{\"id\":\"1\",\"customer_id\":\"1\",\"load_amount\":\"$1.00\",\"time\":\"2000-01-01T00:00:00Z\"}\n",
    )
    .unwrap();
    let out = bin()
        .current_dir(dir.path())
        .args(["run", "-c"])
        .arg(config("fund_load_baseline_inline.yml"))
        .args(["--input"])
        .arg(&input)
        .args(["--output", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"id\":\"1\",\"customer_id\":\"1\",\"accepted\":true}\n"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("records/s"));
}

/// A usage error (unknown flag, missing value) exits 64, distinct from a config error (2);
/// `--help` lists every exit status; `--version` prints the crate version with status 0.
fn usage_errors_exit_64_and_help_lists_every_exit_code() {
    let out = bin().args(["run", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
    let out = bin().args(["gen"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "missing --lines is a usage error"
    );
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for code in ["0 ", "1 ", "2 ", "64 ", "128+N", "130", "143"] {
        assert!(
            help.contains(code),
            "exit code {code} missing from help:\n{help}"
        );
    }
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("stream-kernel {}", env!("CARGO_PKG_VERSION"))
    );
}

/// Every flag of every subcommand has help text (and `--help` itself succeeds).
fn every_flag_has_help_text() {
    for sub in ["run", "validate", "gen", "completions", "man", "schema"] {
        let out = bin().args([sub, "--help"]).output().unwrap();
        assert!(
            out.status.success(),
            "`{sub} --help` exited {:?}",
            out.status.code()
        );
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(!help.trim().is_empty(), "`{sub} --help` printed nothing");
        let bare: Vec<&str> = help
            .lines()
            .filter(|l| l.trim_start().starts_with('-') || l.trim_start().starts_with('<'))
            .filter(|l| l.split("  ").filter(|p| !p.trim().is_empty()).count() < 2)
            .collect();
        assert!(
            bare.is_empty(),
            "`{sub}` flags without help: {bare:?}\n{help}"
        );
    }
}

/// `completions bash` prints a script bash accepts (`bash -n`) that completes the subcommands
/// and run's flags; `man` prints a roff page; a closed pipe is not an error.
fn completions_and_man_page() {
    let out = bin().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout).to_string();
    for word in ["validate", "--dead-letter", "--skip", "completions"] {
        assert!(
            script.contains(word),
            "{word} missing from the bash completion"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stream-kernel.bash");
    std::fs::write(&path, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).status().unwrap();
    assert!(check.success(), "bash -n rejects the completion script");
    for shell in ["zsh", "fish"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    let out = bin().arg("man").output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH stream-kernel 1"), "{page}");
    assert!(
        page.contains(".SH \"EXIT STATUS\"") && !page.contains(".SH EXTRA"),
        "exit statuses are not their own section of the man page:\n{page}"
    );
    let mut child = bin()
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    assert!(
        child.wait().unwrap().success(),
        "a closed pipe fails the command"
    );
}

/// What bash offers at `stream-kernel ARGS<TAB>`, from the generated script sourced in a real
/// bash (its completion function called as bash's `complete -F` calls it).
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    let words_text = words
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let current = words.last().copied().unwrap_or("");
    let previous = words.len().checked_sub(2).map_or("", |i| words[i]);
    let program = format!(
        "source '{}'\n\
         COMP_WORDS=({words_text})\n\
         COMP_CWORD={}\n\
         COMP_LINE=\"${{COMP_WORDS[*]}}\"\n\
         COMP_POINT=${{#COMP_LINE}}\n\
         fn=$(complete -p stream-kernel | sed -E 's/.*-F ([^ ]+).*/\\1/')\n\
         \"$fn\" stream-kernel '{current}' '{previous}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        words.len() - 1
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// In a real bash, the completion script completes subcommands and, after a subcommand, that
/// subcommand's flags (clap_complete's script alone offers nothing there for a program whose
/// name has a hyphen).
fn bash_completes_subcommands_and_their_flags() {
    let out = bin().args(["completions", "bash"]).output().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("stream-kernel.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let top = bash_completes(&script, &["stream-kernel", ""]);
    assert!(top.iter().any(|w| w == "run"), "top level: {top:?}");
    let run = bash_completes(&script, &["stream-kernel", "run", "--"]);
    for flag in ["--config", "--resume", "--quiet", "--log-level"] {
        assert!(
            run.iter().any(|w| w == flag),
            "run --<TAB> lacks {flag}: {run:?}"
        );
    }
    let validate = bash_completes(&script, &["stream-kernel", "validate", "--p"]);
    assert_eq!(validate, ["--print"], "validate --p<TAB>");
}

/// `man --dir` writes a page for the program and one per subcommand; `run`'s page holds its
/// flags and the exit statuses, and every page the top page refers to exists.
fn man_pages_for_every_subcommand() {
    written_man_pages();
}

/// Every page `man --dir` writes renders with `groff` without a warning.
fn man_pages_render_with_groff() {
    let (dir, names) = written_man_pages();
    for name in &names {
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(dir.path().join(name))
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "groff on {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The pages `man --dir` wrote (their directory and file names), checked for completeness.
fn written_man_pages() -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("man")
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for expected in [
        "stream-kernel.1",
        "stream-kernel-run.1",
        "stream-kernel-validate.1",
        "stream-kernel-man.1",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing: {names:?}"
        );
    }
    let top = std::fs::read_to_string(dir.path().join("stream-kernel.1")).unwrap();
    for line in top.lines().filter(|l| l.contains("stream\\-kernel\\-")) {
        let referred = line.split('(').next().unwrap_or("").replace("\\-", "-");
        let referred = referred
            .trim()
            .trim_start_matches(".TP")
            .trim()
            .trim_start_matches("\\fB")
            .trim_end_matches("\\fR");
        if referred.starts_with("stream-kernel-") {
            assert!(
                names.contains(&format!("{referred}.1")),
                "the top page refers to {referred}(1), which is not generated"
            );
        }
    }
    let run = std::fs::read_to_string(dir.path().join("stream-kernel-run.1")).unwrap();
    for flag in ["\\-\\-resume", "\\-\\-log\\-level", "EXIT STATUS"] {
        assert!(
            run.contains(flag),
            "{flag} missing from stream-kernel-run(1)"
        );
    }
    (dir, names)
}

/// `-q` leaves nothing on stderr or stdout for a completed run; `--log-level debug` and
/// `RUST_LOG` change what the log shows.
fn quiet_and_log_levels() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str], rust_log: Option<&str>| {
        let mut command = bin();
        command
            .args([
                "run",
                "-c",
                &config("fund_load_baseline_4proc.yml"),
                "--output",
            ])
            .arg(dir.path().join("out.txt"))
            .arg("--dead-letter")
            .arg(dir.path().join("rejects.jsonl"))
            .args(extra)
            .current_dir(dir.path())
            .env_remove("RUST_LOG");
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let input = dir.path().join("in.txt");
    generate(500, &input);
    let input = input.to_string_lossy().into_owned();
    let (stdout, stderr) = run(&["-q", "--input", &input], None);
    assert!(
        stdout.is_empty() && stderr.is_empty(),
        "-q printed:\n{stdout}\n{stderr}"
    );
    let (_, normal) = run(&["--input", &input], None);
    assert!(
        normal.contains(" INFO "),
        "the default level shows INFO:\n{normal}"
    );
    assert!(
        !normal.contains(" DEBUG "),
        "the default level hides DEBUG:\n{normal}"
    );
    let (_, warn) = run(&["--log-level", "warn", "--input", &input], None);
    assert!(
        !warn.contains(" INFO "),
        "--log-level warn shows INFO:\n{warn}"
    );
    let (_, filtered) = run(&["--input", &input], Some("error"));
    assert!(
        !filtered.contains(" INFO "),
        "RUST_LOG=error shows INFO:\n{filtered}"
    );
}

/// A missing input exits 66 and an output that cannot be created 73 (sysexits), before
/// anything is written; `--output -` into a reader that closes early ends quietly with 141.
fn unusable_files_and_a_closed_reader_have_their_own_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.txt");
    std::fs::write(&output, "keep me\n").unwrap();
    // `run -c CONFIG --input IN --output OUT --dead-letter DIR/rejects.jsonl`: its exit status.
    let status_of = |input: &Path, output: &Path| {
        let out = bin()
            .args([
                "run",
                "-c",
                &config("fund_load_experiment_inline.yml"),
                "--input",
            ])
            .arg(input)
            .arg("--output")
            .arg(output)
            .arg("--dead-letter")
            .arg(dir.path().join("rejects.jsonl"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (missing, said) = status_of(&dir.path().join("missing.txt"), &output);
    assert_eq!(missing, Some(66), "{said}");
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "keep me\n");
    let input = dir.path().join("in.txt");
    generate(2000, &input);
    let (uncreatable, said) = status_of(&input, &dir.path().join("no/such/dir/out.txt"));
    assert_eq!(uncreatable, Some(73), "{said}");
    let big = dir.path().join("big.txt");
    generate(200_000, &big);
    for config_name in [
        "fund_load_experiment_inline.yml",
        "fund_load_experiment_4proc.yml",
    ] {
        let mut child = bin()
            .args(["run", "-c", &config(config_name), "--input"])
            .arg(&big)
            .args(["--output", "-", "--dead-letter"])
            .arg(dir.path().join(format!("{config_name}.rejects.jsonl")))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 64];
        std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{config_name}: {stderr}");
        assert!(
            !stderr.contains("ERROR") && !stderr.contains("FAILED"),
            "{config_name}: not quiet:\n{stderr}"
        );
    }
}

/// `--dead-letter` overrides the config's dead-letter path, nothing lands in the current
/// directory, and the summary names every file with its absolute path.
fn dead_letter_override_and_the_summary_says_where_files_went() {
    let work = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let input = work.path().join("in.txt");
    std::fs::write(
        &input,
        "{\"id\":\"1\",\"customer_id\":\"1\",\"load_amount\":\"$1.00\",\"time\":\"2000-01-01T00:00:00Z\"}\nnot json\n",
    )
    .unwrap();
    let (output, rejects) = (work.path().join("o.txt"), work.path().join("dead.jsonl"));
    let inline_run = |dead_letter: Option<&Path>| {
        let mut command = bin();
        command
            .current_dir(cwd.path())
            .args(["run", "-c"])
            .arg(config("fund_load_experiment_inline.yml"))
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output);
        if let Some(path) = dead_letter {
            command.arg("--dead-letter").arg(path);
        }
        command.output().unwrap()
    };
    let out = inline_run(Some(&rejects));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&rejects).unwrap().lines().count(),
        1
    );
    let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "files left in the current directory: {left:?}"
    );
    for path in [&input, &output, &rejects] {
        assert!(
            stdout.contains(&path.display().to_string()),
            "{} missing from the summary:\n{stdout}",
            path.display()
        );
    }
    // A relative config path is shown absolute.
    let relative = inline_run(None);
    let stdout = String::from_utf8_lossy(&relative.stdout);
    let expected = cwd.path().join("rejects.jsonl");
    assert!(
        stdout.contains(&format!("rejects: {}", expected.display())),
        "{stdout}"
    );
}

/// On a terminal (a pseudo-terminal from `script`) a supervised run reading a slow stdin draws
/// a progress line with records and an SI-rounded rate; with stderr not a terminal it draws
/// nothing. (The file-input bar adds bytes and an ETA: its template is unit-tested.)
fn progress_bar_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    generate(20000, &input);
    let run = format!(
        "{{ cat {input}; sleep 2; }} | {exe} run -c {config} --input - --output {out} --dead-letter {rejects}",
        input = input.display(),
        exe = env!("CARGO_BIN_EXE_stream-kernel"),
        config = config("fund_load_experiment_4proc.yml"),
        out = dir.path().join("out.txt").display(),
        rejects = dir.path().join("rejects.jsonl").display()
    );
    let typescript = dir.path().join("tty.log");
    let status = Command::new("script")
        .args(["-qec", &run])
        .arg(&typescript)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let screen = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).to_string();
    let bar = screen
        .split(['\r', '\n'])
        .rfind(|l| l.contains("records/s") && !l.contains("stream-kernel:"))
        .unwrap_or_else(|| panic!("no progress line on the terminal:\n{screen}"));
    assert!(bar.contains("20.0 k records"), "{bar}");
    let before_unit = bar.split(" records/s").next().unwrap_or_default();
    let number = before_unit
        .split_whitespace()
        .rev()
        .find(|t| t.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or_default();
    assert!(
        !number.is_empty() && number.len() <= 4,
        "rate not rounded to 3 digits: {bar}"
    );
    let plain = bin()
        .args(["run", "-c"])
        .arg(config("fund_load_experiment_4proc.yml"))
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("out2.txt"))
        .arg("--dead-letter")
        .arg(dir.path().join("rejects2.jsonl"))
        .output()
        .unwrap();
    assert!(plain.status.success());
    assert!(
        !String::from_utf8_lossy(&plain.stderr).contains("records/s"),
        "a progress bar on a non-terminal stderr"
    );
}

/// In a real terminal (a tmux pane, 150 columns), the log lines a supervised run writes while
/// its bar is drawn replace the bar's frame instead of leaving stale frames above them, and the
/// last frame shows the whole file read (not the last heartbeat's share of it).
fn progress_bar_leaves_no_stale_frames_and_ends_at_the_input_end() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    // Long enough for the bar to appear (after half a second) on a fast machine.
    generate(2_000_000, &input);
    let session = format!("sk-progress-{}", std::process::id());
    let run = format!(
        "{exe} run -c {config} --input {input} --output {out} --dead-letter {rejects} >/dev/null; echo run-exit-status=$?; sleep 60",
        exe = env!("CARGO_BIN_EXE_stream-kernel"),
        config = config("fund_load_baseline_4proc.yml"),
        input = input.display(),
        out = dir.path().join("out.txt").display(),
        rejects = dir.path().join("rejects.jsonl").display()
    );
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &session])
            .args(args)
            .output()
            .unwrap()
    };
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "150",
        "-y",
        "50",
        "bash",
        "-c",
        &run,
    ]);
    assert!(started.status.success(), "{started:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let screen = loop {
        let shown = tmux(&["capture-pane", "-p", "-J", "-S", "-", "-t", &session]);
        let screen = String::from_utf8_lossy(&shown.stdout).into_owned();
        if screen.contains("run-exit-status=") || std::time::Instant::now() > deadline {
            break screen;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let _ = tmux(&["kill-server"]);
    assert!(
        screen.contains("run-exit-status=0"),
        "the run did not end with 0:\n{screen}"
    );
    let frames: Vec<&str> = screen.lines().filter(|l| l.contains("records/s")).collect();
    assert_eq!(
        frames.len(),
        1,
        "stale bar frames on the terminal:\n{screen}"
    );
    // `████ 190.73 MiB/190.73 MiB  2.00 M records ...`: read through the end.
    let fraction = frames[0].split("  ").next().unwrap_or_default();
    let (read, total) = fraction.split_once('/').unwrap_or_default();
    let read: Vec<&str> = read.split_whitespace().rev().take(2).collect();
    let total: Vec<&str> = total.split_whitespace().rev().collect();
    assert!(
        !read.is_empty() && read == total,
        "the last frame does not show the whole input read: {}",
        frames[0]
    );
}

fn main() {
    needs::run(vec![
        panicking(
            "no_arguments_runs_the_default_job",
            &[],
            no_arguments_runs_the_default_job,
        ),
        panicking(
            "config_errors_exit_2_with_nothing_on_stdout",
            &[],
            config_errors_exit_2_with_nothing_on_stdout,
        ),
        panicking(
            "validate_print_shows_defaults",
            &[],
            validate_print_shows_defaults,
        ),
        panicking(
            "gen_is_deterministic_through_the_cli",
            &[],
            gen_is_deterministic_through_the_cli,
        ),
        panicking(
            "input_and_output_overrides_with_stdio",
            &[],
            input_and_output_overrides_with_stdio,
        ),
        panicking(
            "usage_errors_exit_64_and_help_lists_every_exit_code",
            &[],
            usage_errors_exit_64_and_help_lists_every_exit_code,
        ),
        panicking("every_flag_has_help_text", &[], every_flag_has_help_text),
        panicking("completions_and_man_page", &[], completions_and_man_page),
        panicking(
            "bash_completes_subcommands_and_their_flags",
            &[],
            bash_completes_subcommands_and_their_flags,
        ),
        panicking(
            "man_pages_for_every_subcommand",
            &[],
            man_pages_for_every_subcommand,
        ),
        panicking(
            "man_pages_render_with_groff",
            &[Need::tool("groff", "Debian package groff")],
            man_pages_render_with_groff,
        ),
        panicking("quiet_and_log_levels", &[], quiet_and_log_levels),
        panicking(
            "unusable_files_and_a_closed_reader_have_their_own_statuses",
            &[],
            unusable_files_and_a_closed_reader_have_their_own_statuses,
        ),
        panicking(
            "dead_letter_override_and_the_summary_says_where_files_went",
            &[],
            dead_letter_override_and_the_summary_says_where_files_went,
        ),
        panicking(
            "progress_bar_on_a_terminal_only",
            &[Need::tool("script", "Debian package util-linux")],
            progress_bar_on_a_terminal_only,
        ),
        panicking(
            "progress_bar_leaves_no_stale_frames_and_ends_at_the_input_end",
            &[Need::Tool {
                program: "tmux",
                probe: "-V",
                package: "Debian package tmux",
            }],
            progress_bar_leaves_no_stale_frames_and_ends_at_the_input_end,
        ),
    ])
}
