//! The run summary the CLI prints: the run's outcome, files, outcomes by reason, per-node,
//! per-worker and per-edge figures, route cache, span export, latency, health address, memory.

use std::path::Path;
use std::time::Duration;

use crate::config::{Config, SinkAdapter, SourceAdapter};
use crate::observability::latency::{self, LATENCY_SAMPLE, LatencyHistogram};
use crate::runtime::{self, RunSummary};

pub(crate) fn describe_source(source: &SourceAdapter) -> String {
    match source {
        SourceAdapter::File { path, .. } => absolute(path),
        SourceAdapter::Stdin { .. } => "stdin".to_string(),
        SourceAdapter::Generator { lines, seed } => {
            format!("generated (gen --lines {lines} --seed {seed})")
        }
    }
}

pub(crate) fn describe_sink(sink: &SinkAdapter) -> String {
    match sink {
        SinkAdapter::File { path } => absolute(path),
        SinkAdapter::Stdout => "stdout".to_string(),
    }
}

/// A path as the summary shows it: absolute, so that a relative path in a config says where
/// the file really went, with control characters escaped.
pub(crate) fn absolute(path: &Path) -> String {
    crate::text::path(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// Text from outside as the summary shows it (control characters escaped).
pub(crate) fn shown(text: &str) -> String {
    crate::text::printable(text).into_owned()
}

/// The line of a stopped run: how far the outputs are complete and how to resume.
pub(crate) fn stopped_line(summary: &RunSummary, through: u64) -> String {
    format!(
        "  stopped: every record through seq {through} is written; {}",
        resume_line(summary, through).trim_start()
    )
}

/// How to resume a stopped or failed run: with its journal, or by `--skip`.
pub(crate) fn resume_line(summary: &RunSummary, through: u64) -> String {
    match &summary.journal {
        Some(journal) => format!(
            "  resume with --resume (same config and files; the journal {} records seq {} complete), or resume with --skip {through}\n",
            absolute(&journal.path),
            journal.completed
        ),
        None => format!("  resume with --skip {through} (same config and files)\n"),
    }
}

fn with_commas(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn render_summary(config: &Config, summary: &RunSummary) -> String {
    let mut out = String::new();
    let rate = summary.records_per_sec();
    out.push_str(&format!(
        "stream-kernel: scenario `{}` [{}] {} records in {:.3} s = {:.2} M records/s\n",
        config.scenario.name,
        summary.profile,
        with_commas(summary.records_in),
        summary.elapsed.as_secs_f64(),
        rate / 1e6
    ));
    out.push_str(&format!(
        "  input:   {}\n",
        describe_source(&config.adapters.source)
    ));
    out.push_str(&format!(
        "  output:  {}\n",
        describe_sink(&config.adapters.sink)
    ));
    match &summary.dead_letter_path {
        Some(path) => out.push_str(&format!(
            "  rejects: {} ({} dead-lettered)\n",
            absolute(path),
            with_commas(summary.dead_lettered)
        )),
        None if summary.dead_lettered > 0 => out.push_str(&format!(
            "  rejects: {} dead-lettered and not kept (configure adapters.dead_letter to keep them)\n",
            with_commas(summary.dead_lettered)
        )),
        None => {}
    }
    if let Some(audit) = &config.adapters.audit {
        out.push_str(&format!("  audit:   {}\n", absolute(audit.path())));
    }
    out.push_str(&outcome_lines(&summary.outcomes()));
    if summary.skipped > 0 {
        out.push_str(&format!(
            "  resumed: records through seq {} replayed to rebuild state, not written again\n",
            summary.skipped
        ));
    }
    if let Some(blank) = summary
        .counter("parse_load_attempt", "blank_lines")
        .filter(|b| *b > 0)
    {
        out.push_str(&format!("  blank lines skipped: {}\n", with_commas(blank)));
    }
    out.push_str(&format!(
        "  per-node busy time (self time, sampled 1 in {} records):\n",
        runtime::TIMING_SAMPLE
    ));
    out.push_str(&summary.node_table());
    if !summary.rings.is_empty() {
        out.push_str("  per-worker busy time (not waiting on a ring):\n");
        out.push_str(&summary.worker_table());
        out.push_str("  per-edge ring occupancy (sampled by the supervisor):\n");
        out.push_str(&summary.ring_table());
    }
    let route = summary.route_cache;
    if route.hits + route.misses + route.negative_hits > 0 {
        out.push_str(&format!(
            "  route cache: {} hits, {} negative hits, {} misses, {} + {} entries, generation {}\n",
            route.hits,
            route.negative_hits,
            route.misses,
            route.positive_entries,
            route.negative_entries,
            route.generation
        ));
    }
    for exporter in &summary.spans {
        out.push_str(&format!(
            "  spans via {}: {} produced, {} exported, {} dropped, {} failed; exit wait {} ms{}\n",
            exporter.kind,
            exporter.produced,
            exporter.exported,
            exporter.dropped,
            exporter.failed,
            exporter.exit_wait_ms,
            if exporter.abandoned {
                " (did not finish in time: what it held counts as failed)"
            } else {
                ""
            }
        ));
    }
    if let Some(line) = latency_line(&summary.latency) {
        out.push_str(&line);
    }
    if let Some(address) = summary.health_address {
        out.push_str(&format!(
            "  health:  http://{address}/metrics (/livez /healthz /readyz), served during the run\n"
        ));
    }
    out.push_str(&format!(
        "  peak RSS: {:.1} MiB (all processes)\n",
        summary.peak_rss_kib as f64 / 1024.0
    ));
    out
}

/// The summary's latency line: p50 and p99 estimated within their buckets, with the
/// buckets' bounds ("at most"), and the mean.
fn latency_line(latency: &LatencyHistogram) -> Option<String> {
    let quantile = |q| -> Option<String> {
        Some(format!(
            "{} ({})",
            duration_text(latency.quantile_estimate(q)?),
            at_most(latency.quantile_bound(q)?)
        ))
    };
    Some(format!(
        "  end-to-end latency (read to output written, 1 in {} records, {} measured): p50 {}, p99 {}, mean {}\n",
        LATENCY_SAMPLE,
        with_commas(latency.count()),
        quantile(0.5)?,
        quantile(0.99)?,
        duration_text(latency.mean()?)
    ))
}

/// A bucket bound as "<= 250 µs" (the `+Inf` bucket: "> 10 s").
fn at_most(bound: Duration) -> String {
    if bound == Duration::MAX {
        let last = latency::BOUNDS_SECONDS[latency::BOUNDS_SECONDS.len() - 1];
        format!("> {}", duration_text(Duration::from_secs_f64(last)))
    } else {
        format!("<= {}", duration_text(bound))
    }
}

/// A duration in the unit that reads best: µs, ms or s.
fn duration_text(d: Duration) -> String {
    let seconds = d.as_secs_f64();
    if seconds < 1e-3 {
        format!("{:.0} µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{seconds:.2} s")
    }
}

/// The records the pipeline's nodes ended, one line per outcome with its total, then each
/// reason that ended records (`Node::outcomes`; none for a pipeline that declares none).
fn outcome_lines(outcomes: &[crate::graph::Outcome]) -> String {
    let mut out = String::new();
    let mut names: Vec<&str> = Vec::new();
    for outcome in outcomes {
        if !names.contains(&outcome.outcome.as_str()) {
            names.push(&outcome.outcome);
        }
    }
    for name in names {
        let of_name = || outcomes.iter().filter(move |o| o.outcome == name);
        let total: u64 = of_name().map(|o| o.records).sum();
        out.push_str(&format!("  {name}: {}\n", with_commas(total)));
        for outcome in of_name().filter(|o| !o.reason.is_empty() && o.records > 0) {
            out.push_str(&format!(
                "    {:<26} {:>10}\n",
                outcome.reason,
                with_commas(outcome.records)
            ));
        }
    }
    out
}
