//! The command line: the default job, config errors, `validate --print`, `gen`, overrides.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stream-kernel"))
}

fn config(name: &str) -> String {
    format!("{}/configs/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `stream-kernel` with no arguments runs the default job on generated input and says where
/// the output went.
#[test]
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
#[test]
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
#[test]
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
#[test]
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
#[test]
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
