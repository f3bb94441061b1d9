//! The release CLI driven as a user (or an attacker) would: spawned with a config, signalled,
//! starved, and judged against the inline profile's output.
//!
//! [`Reference`] holds a generated input and the inline run's full output on it; a run that
//! failed or stopped must hold exactly the full run's records through the `seq` it reports.
//! [`variant_config`] writes one of the bundled configs with some keys changed.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::Failed;

use super::checks::{alive, check, parent_of};
use super::fund_load_runs::{Profile, generated_input, inline_run};

/// No run may take longer than this: a run that does is a hang.
pub const HANG: Duration = Duration::from_secs(60);

pub fn registry() -> stream_kernel::graph::Registry {
    stream_kernel::apps::fund_load::registry()
}

pub fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stream-kernel"))
}

/// `stream-kernel run -c CONFIG --input INPUT --output OUTPUT`.
pub fn quiet_run(
    config: impl AsRef<std::ffi::OsStr>,
    input: impl AsRef<std::ffi::OsStr>,
    output: impl AsRef<std::ffi::OsStr>,
) -> Command {
    let mut command = cli();
    command
        .args(["run", "-c"])
        .arg(config)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output);
    command
}

pub fn bundled(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs")
        .join(format!("{name}.yml"))
}

/// Writes `configs/<base>.yml` to `dir/config.yml` with `patch` applied to its YAML tree.
pub fn variant_config(
    dir: &Path,
    base: &str,
    patch: impl FnOnce(&mut serde_norway::Value),
) -> Result<PathBuf, Failed> {
    let text = std::fs::read_to_string(bundled(base))?;
    let mut value: serde_norway::Value = serde_norway::from_str(&text)?;
    patch(&mut value);
    let path = dir.join("config.yml");
    std::fs::write(&path, serde_norway::to_string(&value)?)?;
    Ok(path)
}

/// Sets the value at a dotted path (mappings are created on the way; `groups[N]` indexes).
pub fn set(root: &mut serde_norway::Value, dotted: &str, value: serde_norway::Value) {
    let mut at = root;
    for part in dotted.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((key, rest)) => (key, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !at.is_mapping() {
            *at = serde_norway::Value::Mapping(Default::default());
        }
        let map = at.as_mapping_mut().expect("a mapping");
        let key = serde_norway::Value::String(key.to_string());
        if !map.contains_key(&key) {
            map.insert(key.clone(), serde_norway::Value::Null);
        }
        at = map.get_mut(&key).expect("inserted");
        if let Some(index) = index {
            at = at
                .as_sequence_mut()
                .and_then(|s| s.get_mut(index))
                .expect("an existing sequence item");
        }
    }
    *at = value;
}

/// A YAML value from its text (`"{transport: unix}"`, `"0.5"`).
pub fn yaml(text: &str) -> serde_norway::Value {
    serde_norway::from_str(text).expect("test YAML")
}

/// The shared input and the inline run's full output on it.
pub struct Reference {
    pub dir: tempfile::TempDir,
    pub input: PathBuf,
    pub lines: u64,
    pub output: Vec<u8>,
    pub rejects: Vec<u8>,
}

impl Reference {
    /// `lines` generated lines and the experiment profile's inline output on them.
    pub fn build(lines: u64) -> Result<Self, Failed> {
        let dir = tempfile::tempdir()?;
        let input = dir.path().join("input.txt");
        generated_input(&input, lines)?;
        let full = dir.path().join("full");
        std::fs::create_dir(&full)?;
        inline_run(&registry(), Profile::Experiment, &input, &full)?;
        Ok(Self {
            output: std::fs::read(full.join("output.txt"))?,
            rejects: std::fs::read(full.join("rejects.jsonl"))?,
            input,
            lines,
            dir,
        })
    }

    /// The inline run's output and dead letters for the first `k` input lines.
    pub fn first(&self, k: u64) -> Result<(Vec<u8>, Vec<u8>), Failed> {
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
    pub fn check_through(&self, k: u64, output: &[u8], rejects: &[u8]) -> Result<(), Failed> {
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

    /// A run reported "complete through `k`" and its sink was alive to settle its outputs:
    /// they hold exactly the full run's records through `k`, nothing more.
    pub fn check_exactly_through(
        &self,
        k: u64,
        output: &[u8],
        rejects: &[u8],
    ) -> Result<(), Failed> {
        let (first_output, first_rejects) = self.first(k)?;
        check(output == first_output && rejects == first_rejects, || {
            format!(
                "complete through seq {k}: output {} bytes, rejects {} bytes; the full run through seq {k} writes {} and {}",
                output.len(),
                rejects.len(),
                first_output.len(),
                first_rejects.len()
            )
        })
    }
}

/// The CLI on `config`, reading `input`, writing `output.txt` (and the config's dead letters)
/// in `dir`.
pub fn spawn_cli(config: &Path, input: &Path, dir: &Path) -> Result<Child, Failed> {
    Ok(cli()
        .args(["run", "-c"])
        .arg(config)
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
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| parent_of(*p) == Some(pid))
        .collect()
}

/// Waits until the CLI has `workers` workers and its output reached `bytes` (or it exited:
/// then the list is empty).
pub fn wait_for_progress(
    cli: &mut Child,
    output: &Path,
    bytes: u64,
    workers: usize,
) -> Result<Vec<u32>, Failed> {
    let deadline = Instant::now() + HANG;
    loop {
        if cli.try_wait()?.is_some() {
            return Ok(Vec::new());
        }
        let children = children_of(cli.id());
        let written = std::fs::metadata(output).map_or(0, |m| m.len());
        if children.len() == workers && written >= bytes {
            return Ok(children);
        }
        check(Instant::now() < deadline, || {
            format!("no progress to {bytes} bytes: a hang")
        })?;
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How a CLI run ended.
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Waits for the CLI to exit (a hang otherwise).
pub fn wait_exit(mut cli: Child) -> Result<Exit, Failed> {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + HANG;
    // Drain the pipes meanwhile: a full pipe would block the run.
    let read_all = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read_all(cli.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read_all(cli.stderr.take().map(|p| Box::new(p) as _));
    let status = loop {
        if let Some(status) = cli.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = cli.kill();
            return Err("the run did not end: a hang".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Exit {
        code: status.code(),
        signal: status.signal(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Waits (at most 2 s) until none of `pids` is alive.
pub fn check_no_orphans(pids: &[u32]) -> Result<(), Failed> {
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

/// The number after `marker` in a report.
pub fn reported_seq(text: &str, marker: &str) -> Option<u64> {
    let at = text.find(marker)? + marker.len();
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A small deterministic generator for victims and moments; the seed is printed.
pub struct Chooser(pub u64);

impl Chooser {
    /// Seeded from `STREAM_KERNEL_CHAOS_SEED`, else the clock; prints the seed under `row`.
    pub fn seeded(row: &str) -> Self {
        let seed = std::env::var("STREAM_KERNEL_CHAOS_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64 | 1)
            });
        println!("{row} seed {seed} (STREAM_KERNEL_CHAOS_SEED to replay)");
        Self(seed | 1)
    }

    pub fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below.max(1)
    }
}

/// A count from the environment (`tools/reliability.sh` raises them), else `default`.
pub fn runs(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn text(failed: &Failed) -> String {
    failed.message().unwrap_or("failed").to_string()
}

/// Control socket directories in the temp dir owned by `pid`.
pub fn socket_dirs_of(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("{}{pid}-", stream_kernel::control::SOCKET_DIR_PREFIX);
    std::fs::read_dir(std::env::temp_dir())
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}
