//! A stateful step partitioned by key: a generated access log (`user action` per line) is
//! parsed into events, and a counting node keeps each user's running count of actions; every
//! event comes out as `user action n` (the user's n-th action so far). Run inline, in three
//! process groups, and with the counting group on two workers partitioned by user: the same
//! user always reaches the same worker, in input order, so the outputs are byte-identical.
//!
//! ```text
//! cargo run --release --example running_counts -- [LINES]
//! ```

use std::collections::HashMap;
use std::path::Path;

use stream_kernel::adapters::Line;
use stream_kernel::config::{Config, PipelineBuilder};
use stream_kernel::graph::{
    Emitter, Node, NodeError, NodeState, PartitionKey, RecordContext, Registry,
};
use stream_kernel::supervisor::{RunEnd, SupervisorOptions, run_supervised};

stream_kernel::message! {
    /// One log line, parsed.
    pub struct Event {
        pub user: String,
        pub action: String,
    }
}

stream_kernel::message! {
    /// An event with its user's running count.
    pub struct Counted {
        pub user: String,
        pub action: String,
        pub count: u64,
    }
}

/// Keeps each user's count: state that must never be split across workers by anything but
/// the user.
#[derive(Default)]
struct RunningCount {
    counts: HashMap<String, u64>,
}

impl Node for RunningCount {
    type Input = Event;
    type Output = Counted;

    fn process(
        &mut self,
        event: &Event,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Counted>,
    ) -> Result<(), NodeError> {
        let count = self.counts.entry(event.user.clone()).or_default();
        *count += 1;
        out.emit(&Counted {
            user: event.user.clone(),
            action: event.action.clone(),
            count: *count,
        })
    }
}

/// A stable hash of the partition key (the same in every process).
fn user_key(event: &Event) -> u64 {
    event.user.bytes().fold(0xcbf2_9ce4_8422_2325, |h: u64, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.line_source("lines");
    registry.flat_map("parse", |line: &Line| {
        let text = line.text();
        let mut words = text.split_whitespace();
        match (words.next(), words.next()) {
            (Some(user), Some(action)) => Some(Event {
                user: user.to_string(),
                action: action.to_string(),
            }),
            _ => None,
        }
    });
    registry
        .transform("count", |_| Ok(RunningCount::default()))
        .state(|_| NodeState::Partitioned(PartitionKey::new::<Event>("user", user_key)));
    registry.line_sink_with("write", |c: &Counted, text: &mut Vec<u8>| {
        text.extend_from_slice(format!("{} {} {}", c.user, c.action, c.count).as_bytes());
    });
    registry
}

fn config(placement: &str, input: &Path, output: &Path) -> anyhow::Result<Config> {
    let builder = PipelineBuilder::new("running_counts")
        .nodes(["lines", "parse", "count", "write"])
        .input_file(input)
        .output_file(output);
    let builder = match placement {
        "inline" => builder,
        _ => builder
            .group("read", ["lines", "parse"])
            .group("count", ["count"])
            .workers(if placement == "3 groups, count on 2 workers" {
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

/// A deterministic log: users and actions from a small linear congruential generator.
fn generated_log(lines: u64) -> String {
    let (users, actions) = (
        ["ana", "bo", "chen", "dee", "eli", "fay"],
        ["view", "buy", "rate"],
    );
    let mut x: u64 = 42;
    (0..lines)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let user = users[(x >> 33) as usize % users.len()];
            let action = actions[(x >> 45) as usize % actions.len()];
            format!("{user} {action}\n")
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    // First thing: a worker started from this program becomes one here and never returns.
    stream_kernel::worker_entry(registry);
    let lines: u64 = std::env::args().nth(1).map_or(Ok(100_000), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("access.log");
    std::fs::write(&input, generated_log(lines))?;
    let mut expected: Option<Vec<u8>> = None;
    for (i, placement) in ["inline", "3 groups", "3 groups, count on 2 workers"]
        .into_iter()
        .enumerate()
    {
        let output = dir.path().join(format!("{i}.txt"));
        let config = config(placement, &input, &output)?;
        if config.is_process_mode() {
            let run = run_supervised(&config, &registry(), &SupervisorOptions::default())?;
            anyhow::ensure!(run.end == RunEnd::Drained, "{placement}: {:?}", run.end);
        } else {
            stream_kernel::runtime::run_inline(&config, &registry(), &Default::default())?;
        }
        let written = std::fs::read(&output)?;
        match &expected {
            None => expected = Some(written),
            Some(first) => anyhow::ensure!(
                &written == first,
                "{placement}: the output differs from the inline run's"
            ),
        }
        println!("{placement}: {} lines written", lines);
    }
    let last = expected.unwrap_or_default();
    let tail = String::from_utf8_lossy(&last);
    println!(
        "identical output in every placement; last line: {}",
        tail.lines().last().unwrap_or_default()
    );
    Ok(())
}
