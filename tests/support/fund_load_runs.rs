//! Fund-load runs for the process tests: the bundled configs pointed at a test's input and
//! directory, in either placement.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use libtest_mimic::Failed;
use stream_kernel::apps::fund_load::generator::Generator;
use stream_kernel::config::{self, Config, FileAdapter, SinkAdapter, SourceAdapter};
use stream_kernel::graph::Registry;
use stream_kernel::supervisor::{SupervisedRun, SupervisorOptions, run_supervised};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Baseline,
    Experiment,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Experiment => "experiment",
        }
    }
}

/// The public sample, when present.
pub fn sample_input() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/fund_load/input.txt");
    path.exists().then_some(path)
}

/// Writes `lines` generated input lines (seed 1) to `out`.
pub fn write_generated(out: &mut impl std::io::Write, lines: u64) -> Result<(), Failed> {
    stream_kernel::apps::fund_load::generator::write_lines(lines, 1, out)?;
    Ok(())
}

/// Writes `lines` generated lines (seed 1) to `path`.
pub fn generated_input(path: &Path, lines: u64) -> Result<(), Failed> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut generator = Generator::new(lines, 1);
    let mut line = Vec::new();
    while generator.next_line(&mut line) {
        out.write_all(&line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// The bundled config of `profile` in `placement` (`inline` or `4proc`), reading `input` and
/// writing `output.txt` and `rejects.jsonl` in `dir`.
pub fn bundled_config(
    registry: &Registry,
    profile: Profile,
    placement: &str,
    input: &Path,
    dir: &Path,
) -> Result<Config, Failed> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "configs/fund_load_{}_{placement}.yml",
        profile.name()
    ));
    let mut config = config::load_file(&path, registry)
        .map_err(|r| format!("{}: {r}", path.display()))?
        .config;
    point_at(&mut config, input, dir);
    Ok(config)
}

/// Points `config` at `input`, writing `output.txt` and `rejects.jsonl` in `dir`.
pub fn point_at(config: &mut Config, input: &Path, dir: &Path) {
    config.adapters.source = SourceAdapter::file(input);
    config.adapters.sink = SinkAdapter::File {
        path: dir.join("output.txt"),
    };
    config.adapters.dead_letter = Some(FileAdapter::File {
        path: dir.join("rejects.jsonl"),
    });
}

/// The inline (memory) profile on `input`, output in `dir`.
pub fn inline_run(
    registry: &Registry,
    profile: Profile,
    input: &Path,
    dir: &Path,
) -> Result<(), Failed> {
    let config = bundled_config(registry, profile, "inline", input, dir)?;
    stream_kernel::runtime::run_inline(&config, registry, &Default::default())
        .map_err(|e| format!("inline run: {e}"))?;
    Ok(())
}

/// The 4-group profile on `input`, output in `dir`; workers are this test binary.
pub fn process_run(
    registry: &Registry,
    profile: Profile,
    input: &Path,
    dir: &Path,
) -> Result<SupervisedRun, Failed> {
    let config = bundled_config(registry, profile, "4proc", input, dir)?;
    run_supervised(&config, registry, &SupervisorOptions::default())
        .map_err(|e| e.to_string().into())
}

/// An example program built next to this test binary (`cargo test` builds examples).
pub fn example_binary(name: &str) -> Result<PathBuf, Failed> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("test binary has no profile directory")?;
    let path = profile_dir.join("examples").join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build it with `cargo build --example {name}` (cargo test does)",
            path.display()
        )
        .into())
    }
}
