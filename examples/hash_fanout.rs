//! A CPU-heavy step of your own, fanned out over worker processes: read lines, hash each one
//! many times, write the digests. The same pipeline runs inline, in three process groups, and
//! with the hashing group on two workers; the outputs must be byte-identical, and the program
//! prints the speed-up it measured.
//!
//! ```text
//! cargo run --release --example hash_fanout -- [LINES] [ROUNDS]
//! ```
//!
//! Defaults: 20,000 lines, 2,000 rounds of SHA-256 per line.

use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use stream_kernel::adapters::Line;
use stream_kernel::config::{Config, PipelineBuilder};
use stream_kernel::graph::Registry;
use stream_kernel::supervisor::{SupervisorOptions, run_supervised};

stream_kernel::message! {
    /// One line's digest.
    pub struct Hashed {
        pub hex: String,
    }
}

/// The hashing node's settings (`nodes.hash`).
#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct HashSettings {
    rounds: u32,
}

/// SHA-256 of `bytes`, `rounds` times over.
fn hash(bytes: &[u8], rounds: u32) -> Hashed {
    let mut digest: [u8; 32] = Sha256::digest(bytes).into();
    for _ in 1..rounds {
        digest = Sha256::digest(digest).into();
    }
    Hashed {
        hex: digest.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.line_source("lines");
    registry
        .transform("hash", |ctx| {
            let settings: HashSettings = ctx.settings()?;
            Ok(HashNode(settings.rounds))
        })
        .settings_type::<HashSettings>();
    registry.line_sink_with("write", |hashed: &Hashed, text: &mut Vec<u8>| {
        text.extend_from_slice(hashed.hex.as_bytes());
    });
    registry
}

/// The hashing step as a node (it reads its rounds from its settings).
struct HashNode(u32);

impl stream_kernel::graph::Node for HashNode {
    type Input = Line;
    type Output = Hashed;

    fn process(
        &mut self,
        line: &Line,
        _ctx: &stream_kernel::graph::RecordContext<'_>,
        out: &mut stream_kernel::graph::Emitter<'_, Hashed>,
    ) -> Result<(), stream_kernel::graph::NodeError> {
        out.emit(&hash(&line.bytes, self.0))
    }
}

/// The pipeline reading `input` into `output`, in `placement`.
fn config(placement: &str, rounds: u32, input: &Path, output: &Path) -> anyhow::Result<Config> {
    let builder = PipelineBuilder::new("hash_fanout")
        .nodes(["lines", "hash", "write"])
        .settings("hash", HashSettings { rounds })
        .input_file(input)
        .output_file(output);
    let builder = match placement {
        "inline" => builder,
        _ => builder
            .group("read", ["lines"])
            .group("hash", ["hash"])
            .workers(if placement == "3 groups, hash on 2 workers" {
                2
            } else {
                1
            })
            .group("write", ["write"]),
    };
    builder
        .build(&registry())
        .map(|loaded| loaded.config)
        .map_err(|report| anyhow::anyhow!("{report}"))
}

fn run(config: &Config) -> anyhow::Result<Duration> {
    let started = Instant::now();
    if config.is_process_mode() {
        let run = run_supervised(config, &registry(), &SupervisorOptions::default())?;
        anyhow::ensure!(
            run.end == stream_kernel::supervisor::RunEnd::Drained,
            "the run did not complete: {:?}",
            run.end
        );
    } else {
        stream_kernel::runtime::run_inline(config, &registry(), &Default::default())?;
    }
    Ok(started.elapsed())
}

fn main() -> anyhow::Result<()> {
    // First thing: a worker started from this program becomes one here and never returns.
    stream_kernel::worker_entry(registry);
    let mut args = std::env::args().skip(1);
    let lines: u64 = args.next().map_or(Ok(20_000), |a| a.parse())?;
    let rounds: u32 = args.next().map_or(Ok(2_000), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("input.txt");
    let text: String = (0..lines).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&input, text)?;

    let mut expected: Option<Vec<u8>> = None;
    let mut timings = Vec::new();
    for placement in ["inline", "3 groups", "3 groups, hash on 2 workers"] {
        let output = dir.path().join(format!("{}.txt", timings.len()));
        let took = run(&config(placement, rounds, &input, &output)?)?;
        let written = std::fs::read(&output)?;
        match &expected {
            None => expected = Some(written),
            Some(first) => anyhow::ensure!(
                &written == first,
                "{placement}: the output differs from the inline run's"
            ),
        }
        println!("{placement:<28} {:>8.3} s", took.as_secs_f64());
        timings.push(took);
    }
    println!(
        "identical output in every placement; speed-up of 2 hashing workers over 1: {:.2}x ({} lines, {rounds} rounds, {} CPUs)",
        timings[1].as_secs_f64() / timings[2].as_secs_f64(),
        lines,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    Ok(())
}
