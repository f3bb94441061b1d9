//! Cross-host benchmark (README, "Across hosts"): the fund-load experiment job on a generated
//! 1 M-line input, the single-host 4-group run vs the same four groups split over two hosts
//! handed off through a real `nats-server -js` (file storage), for several
//! `records_per_message`. Rounds alternate the variants so that all see the same machine;
//! each prints records/s (wall clock from spawning the supervisors to the last one's exit,
//! start-up included for both) and the median ratio to the single-host run.
//!
//! `cargo bench --bench cross_host` (`XH_LINES`, `XH_ROUNDS`, `XH_BATCHES=16,256,1024`
//! override the defaults). Both "hosts" run on this machine: the hand-off crosses loopback.

#[path = "../tests/support/checks.rs"]
mod checks;
#[path = "../tests/support/cli_runs.rs"]
mod cli_runs;
#[path = "../tests/support/fund_load_runs.rs"]
mod fund_load_runs;
#[path = "../tests/support/nats.rs"]
mod nats;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Instant;

use cli_runs::{cli, set, variant_config, yaml};
use fund_load_runs::generated_input;
use libtest_mimic::Failed;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn spawn(args: &[&str], config: &Path, input: &Path, dir: &Path) -> Result<Child, Failed> {
    Ok(cli()
        .args(["run", "--quiet"])
        .args(args)
        .arg("-c")
        .arg(config)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(dir.join("output.txt"))
        .arg("--dead-letter")
        .arg(dir.join("rejects.jsonl"))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?)
}

/// Waits for every child; fails naming the first that did not exit 0.
fn wait_all(children: Vec<Child>) -> Result<(), Failed> {
    for child in children {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(format!(
                "a run exited {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
    }
    Ok(())
}

/// Seconds of one single-host 4-group run.
fn single_host(input: &Path) -> Result<f64, Failed> {
    let dir = tempfile::tempdir()?;
    let config = cli_runs::bundled("fund_load_experiment_4proc");
    let started = Instant::now();
    wait_all(vec![spawn(&[], &config, input, dir.path())?])?;
    Ok(started.elapsed().as_secs_f64())
}

/// Seconds of one two-host run with `per_message` records per JetStream message.
fn two_hosts(input: &Path, url: &str, per_message: u64, round: u64) -> Result<f64, Failed> {
    let dir = tempfile::tempdir()?;
    let config = variant_config(dir.path(), "fund_load_experiment_2host", |root| {
        let at = "runtime.platform.cross_host";
        set(root, &format!("{at}.url"), yaml(&format!("{url:?}")));
        set(
            root,
            &format!("{at}.records_per_message"),
            yaml(&per_message.to_string()),
        );
    })?;
    let run = format!("bench-{}-{per_message}-{round}", std::process::id());
    let started = Instant::now();
    let children = ["upstream", "downstream"]
        .iter()
        .map(|host| {
            spawn(
                &["--host", host, "--run-id", &run],
                &config,
                input,
                dir.path(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    wait_all(children)?;
    Ok(started.elapsed().as_secs_f64())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<(), Failed> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    if nats::nats_binary().is_none() {
        println!("cross_host bench not run: no nats-server binary (apt install nats-server)");
        return Ok(());
    }
    let nats = nats::Nats::start(&[])?;
    let lines = env_or("XH_LINES", 1_000_000);
    let rounds = env_or("XH_ROUNDS", 5);
    let batches: Vec<u64> = std::env::var("XH_BATCHES")
        .unwrap_or_else(|_| "16,256,1024".into())
        .split(',')
        .filter_map(|b| b.trim().parse().ok())
        .collect();
    let data = tempfile::tempdir()?;
    let input: PathBuf = data.path().join("input.txt");
    generated_input(&input, lines)?;
    let mut single = Vec::new();
    let mut split: Vec<Vec<f64>> = vec![Vec::new(); batches.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); batches.len()];
    for round in 0..rounds {
        let base = single_host(&input)?;
        single.push(lines as f64 / base);
        for (i, per_message) in batches.iter().enumerate() {
            let seconds = two_hosts(&input, &nats.url(), *per_message, round)?;
            split[i].push(lines as f64 / seconds);
            ratios[i].push(base / seconds);
        }
    }
    println!("cross_host: {lines} lines, {rounds} rounds, medians");
    println!(
        "  single host, 4 groups               {:>8.0} k rec/s",
        median(&mut single) / 1e3
    );
    for (i, per_message) in batches.iter().enumerate() {
        println!(
            "  two hosts, {per_message:>5} records/message   {:>8.0} k rec/s   {:.2}x single host",
            median(&mut split[i]) / 1e3,
            median(&mut ratios[i])
        );
    }
    Ok(())
}
