//! Embedding stream-kernel in a host program: the host is the supervisor of four fund-load
//! worker processes (re-executions of this same binary), submits input lines with its own
//! correlation ids and receives each line's response.
//!
//! ```text
//! cargo run --release --example embed_fund_load -- [INPUT] [--lines N]
//! ```
//!
//! INPUT defaults to `../shared/data/fund_load/input.txt` when present, otherwise 1000
//! generated lines. The program prints one `reply_to<TAB>response` line per input line, in
//! input order, then a one-line summary on stderr.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use stream_kernel::apps::fund_load;
use stream_kernel::apps::fund_load::generator::Generator;
use stream_kernel::apps::fund_load::messages::{OutputLine, RawLine};
use stream_kernel::supervisor::{ReplyKind, SupervisorOptions};
use stream_kernel::{Runtime, config};

const CONFIG: &str = include_str!("../configs/fund_load_embedded_4proc.yml");

fn main() -> anyhow::Result<()> {
    // First thing: a worker spawned from this binary becomes a worker here and never returns.
    stream_kernel::worker_entry(fund_load::registry);

    let lines = input_lines()?;
    let registry = fund_load::registry();
    let config = config::load_str(CONFIG, &registry)
        .map_err(|report| anyhow::anyhow!("{report}"))?
        .config;
    let started = Instant::now();
    let mut runtime = Runtime::start(&config, &registry, &SupervisorOptions::default())?;

    // Correlation ids are the host's own: here, 1000 + the line's index.
    let mut responses: BTreeMap<u64, String> = BTreeMap::new();
    for (index, line) in lines.iter().enumerate() {
        let reply_to = 1000 + index as u64;
        runtime.submit(
            reply_to,
            &RawLine {
                bytes: line.clone(),
            },
        )?;
        // Read whatever already came back; replies stream while we submit.
        while let Some(reply) = runtime.recv(Duration::ZERO)? {
            responses.insert(reply.reply_to, describe(&reply)?);
        }
    }
    let (rest, run) = runtime.finish()?;
    for reply in rest {
        responses.insert(reply.reply_to, describe(&reply)?);
    }
    if responses.len() != lines.len() {
        bail!(
            "{} lines submitted, {} answered",
            lines.len(),
            responses.len()
        );
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (reply_to, response) in &responses {
        writeln!(out, "{reply_to}\t{response}")?;
    }
    out.flush()?;
    eprintln!(
        "{} lines through {} worker processes in {:.3} s",
        lines.len(),
        run.summary.workers.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A reply as one line of text.
fn describe(reply: &stream_kernel::supervisor::Reply) -> anyhow::Result<String> {
    Ok(match &reply.kind {
        ReplyKind::Output => {
            let output = reply.value::<OutputLine>()?;
            String::from_utf8_lossy(&output.text).into_owned()
        }
        ReplyKind::Dropped => "(no response: blank line)".to_string(),
        ReplyKind::DeadLettered { reason, detail, .. } => {
            format!("(rejected: {reason}: {detail})")
        }
    })
}

fn input_lines() -> anyhow::Result<Vec<Vec<u8>>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = args
        .iter()
        .position(|a| a == "--lines")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse::<u64>())
        .transpose()
        .context("--lines needs a number")?;
    let path = args
        .iter()
        .find(|a| !a.starts_with("--") && a.parse::<u64>().is_err())
        .cloned()
        .or_else(|| {
            let sample = "../shared/data/fund_load/input.txt";
            std::path::Path::new(sample)
                .exists()
                .then(|| sample.to_string())
        });
    let mut lines: Vec<Vec<u8>> = match (&path, count) {
        (Some(path), _) => std::fs::read(path)
            .with_context(|| format!("reading {path}"))?
            .split(|b| *b == b'\n')
            .map(<[u8]>::to_vec)
            .collect(),
        (None, n) => {
            let mut generator = Generator::new(n.unwrap_or(1000), 1);
            let mut lines = Vec::new();
            let mut line = Vec::new();
            while generator.next_line(&mut line) {
                lines.push(std::mem::take(&mut line));
            }
            lines
        }
    };
    if lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    if let Some(n) = count {
        lines.truncate(n as usize);
    }
    Ok(lines)
}
