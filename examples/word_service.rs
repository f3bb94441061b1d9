//! A request/reply service embedded in your program: the program is the supervisor of its
//! worker processes, submits requests of its own type with its own correlation ids, and gets
//! each reply back decoded to its own type. The same service runs in one group, in two groups,
//! and with its busy group on two workers; every placement must answer every request alike.
//!
//! ```text
//! cargo run --release --example word_service -- [REQUESTS]
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use stream_kernel::config::{Config, PipelineBuilder};
use stream_kernel::graph::Registry;
use stream_kernel::supervisor::{ReplyKind, SupervisorOptions};

stream_kernel::message! {
    /// A request: a sentence.
    #[derive(Debug, Clone)]
    pub struct Request {
        pub text: String,
    }
}

stream_kernel::message! {
    /// The reply: the sentence's words, and its longest word in capitals.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Answer {
        pub words: u32,
        pub longest: String,
    }
}

stream_kernel::message! {
    /// Between the two steps: the sentence split into words.
    pub struct Words {
        pub words: Vec<String>,
    }
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.map("split", |request: &Request| Words {
        words: request
            .text
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    });
    registry.map("answer", answer);
    registry
}

/// The service's answer to a sentence split into words (what the program checks replies
/// against, too).
fn answer(words: &Words) -> Answer {
    let longest = words
        .words
        .iter()
        .max_by_key(|w| w.len())
        .map_or_else(String::new, |w| w.to_uppercase());
    Answer {
        words: words.words.len() as u32,
        longest,
    }
}

fn config(placement: &str) -> anyhow::Result<Config> {
    let builder = PipelineBuilder::new("word_service").nodes(["split", "answer"]);
    let builder = match placement {
        "one group" => builder.group("service", ["split", "answer"]),
        "two groups" => builder
            .group("split", ["split"])
            .group("answer", ["answer"]),
        _ => builder
            .group("split", ["split"])
            .workers(2)
            .group("answer", ["answer"]),
    };
    builder
        .set("runtime.platform.health.enabled", false)
        .build(&registry())
        .map(|loaded| loaded.config)
        .map_err(|report| anyhow::anyhow!("{report}"))
}

/// Serves `requests` in `placement`; the replies by correlation id.
fn serve(placement: &str, requests: &[Request]) -> anyhow::Result<BTreeMap<u64, Answer>> {
    let mut runtime = stream_kernel::Runtime::start(
        &config(placement)?,
        &registry(),
        &SupervisorOptions::default(),
    )?;
    let mut replies = BTreeMap::new();
    let mut take = |reply: stream_kernel::supervisor::Reply| -> anyhow::Result<()> {
        anyhow::ensure!(
            reply.kind == ReplyKind::Output,
            "no answer: {:?}",
            reply.kind
        );
        replies.insert(reply.reply_to, reply.decode::<Answer>()?);
        Ok(())
    };
    for (id, request) in requests.iter().enumerate() {
        runtime.submit(id as u64 + 1, request)?;
        while let Some(reply) = runtime.recv(Duration::ZERO)? {
            take(reply)?;
        }
    }
    let (rest, _run) = runtime.finish()?;
    for reply in rest {
        take(reply)?;
    }
    Ok(replies)
}

fn main() -> anyhow::Result<()> {
    // First thing: a worker started from this program becomes one here and never returns.
    stream_kernel::worker_entry(registry);
    let count: usize = std::env::args().nth(1).map_or(Ok(10_000), |a| a.parse())?;
    let vocabulary = [
        "stream",
        "kernel",
        "ring",
        "node",
        "supervisor",
        "worker",
        "a",
        "of",
    ];
    let requests: Vec<Request> = (0..count)
        .map(|i| Request {
            text: (0..=(i % 7))
                .map(|j| vocabulary[(i * 3 + j) % vocabulary.len()])
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect();
    for placement in ["one group", "two groups", "two groups, split on 2 workers"] {
        let replies = serve(placement, &requests)?;
        anyhow::ensure!(
            replies.len() == requests.len(),
            "{placement}: replies missing"
        );
        for (id, request) in requests.iter().enumerate() {
            let words = Words {
                words: request
                    .text
                    .split_whitespace()
                    .map(str::to_string)
                    .collect(),
            };
            anyhow::ensure!(
                replies.get(&(id as u64 + 1)) == Some(&answer(&words)),
                "{placement}: request {} answered wrongly",
                id + 1
            );
        }
        println!(
            "{placement}: {} requests, every reply right",
            requests.len()
        );
    }
    println!("identical answers in every placement");
    Ok(())
}
