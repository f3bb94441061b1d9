//! The run summary: what a run did, per node, for the CLI and for programs.

use std::fmt::Write as _;
use std::time::Duration;

use super::pipeline::NodeStats;
use super::routes::RouteCacheCounters;

/// One node's share of a run.
#[derive(Debug, Clone)]
pub struct NodeReport {
    pub name: String,
    /// The group that ran it (`inline` in the memory profile).
    pub group: String,
    pub stats: NodeStats,
    /// Estimated self time over the whole run (scaled from the timed sample).
    pub busy_ns: u64,
    /// The node's own counters (`accepted`, `declined.DAILY_AMOUNT_LIMIT`, ...).
    pub counters: Vec<(String, u64)>,
}

/// What a finished (or stopped) run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// `inline` or `process_supervisor`.
    pub profile: String,
    /// Records emitted by the source.
    pub records_in: u64,
    /// Input records skipped before the first one (`--skip`).
    pub skipped: u64,
    /// Highest `seq` completed (written, dead-lettered or dropped) in order.
    pub last_seq: u64,
    pub elapsed: Duration,
    pub dead_lettered: u64,
    pub dead_letter_path: Option<std::path::PathBuf>,
    /// The run was stopped before its input ended (SIGTERM / SIGINT).
    pub interrupted: bool,
    pub nodes: Vec<NodeReport>,
    /// One entry per process that did work (one `inline` entry in the memory profile).
    pub workers: Vec<WorkerReport>,
    /// One entry per ring (empty inline).
    pub rings: Vec<RingReport>,
    /// Route cache counters, summed over workers (`generation`: the highest).
    pub route_cache: RouteCacheCounters,
    /// Span export counters, one entry per exporter (empty with tracing off).
    pub spans: Vec<crate::observability::export::ExporterCounters>,
    /// Peak resident memory of every process of the run together (supervisor included), KiB.
    pub peak_rss_kib: u64,
}

/// One worker process's share of a run.
#[derive(Debug, Clone, Default)]
pub struct WorkerReport {
    pub id: String,
    pub group: String,
    /// START_WORK to DRAINED.
    pub elapsed: Duration,
    /// Of `elapsed`, the time not spent waiting on a ring (idle inbound or full outbound).
    pub busy: Duration,
    pub peak_rss_kib: u64,
}

impl WorkerReport {
    /// `busy / elapsed` in percent.
    pub fn busy_percent(&self) -> f64 {
        let elapsed = self.elapsed.as_secs_f64();
        if elapsed > 0.0 {
            self.busy.as_secs_f64() * 100.0 / elapsed
        } else {
            0.0
        }
    }
}

/// One ring's traffic and occupancy over a run, sampled by the supervisor.
#[derive(Debug, Clone, Default)]
pub struct RingReport {
    /// `producer-worker->consumer-worker`.
    pub name: String,
    pub records: u64,
    pub capacity_bytes: u64,
    pub peak_bytes: u64,
    pub mean_bytes: u64,
}

impl RunSummary {
    pub fn records_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.records_in as f64 / secs
        } else {
            0.0
        }
    }

    /// A node's own counter, by node and counter name.
    pub fn counter(&self, node: &str, name: &str) -> Option<u64> {
        self.nodes
            .iter()
            .filter(|n| n.name == node)
            .flat_map(|n| n.counters.iter())
            .filter(|(k, _)| k == name)
            .map(|(_, v)| *v)
            .reduce(|a, b| a + b)
    }

    /// The node table as text (records in/out, errors, estimated busy time and its share).
    pub fn node_table(&self) -> String {
        let total_busy: u64 = self.nodes.iter().map(|n| n.busy_ns).sum();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "  {:<20} {:<22} {:>10} {:>10} {:>7} {:>10} {:>6}",
            "node", "group", "in", "out", "errors", "busy", "share"
        );
        for node in &self.nodes {
            let busy = node.busy_ns;
            let share = if total_busy > 0 {
                busy as f64 * 100.0 / total_busy as f64
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "  {:<20} {:<22} {:>10} {:>10} {:>7} {:>8.1}ms {:>5.1}%",
                node.name,
                node.group,
                node.stats.records_in,
                node.stats.records_out,
                node.stats.errors,
                busy as f64 / 1e6,
                share
            );
        }
        out
    }

    /// The worker table as text: busy share and peak memory per worker process.
    pub fn worker_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "  {:<28} {:>10} {:>10} {:>6} {:>10}",
            "worker", "elapsed", "busy", "busy%", "peak RSS"
        );
        for w in &self.workers {
            let _ = writeln!(
                out,
                "  {:<28} {:>8.1}ms {:>8.1}ms {:>5.1}% {:>7.1}MiB",
                w.id,
                w.elapsed.as_secs_f64() * 1e3,
                w.busy.as_secs_f64() * 1e3,
                w.busy_percent(),
                w.peak_rss_kib as f64 / 1024.0
            );
        }
        out
    }

    /// The ring table as text: records through each ring and its sampled occupancy.
    pub fn ring_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "  {:<56} {:>10} {:>10} {:>10} {:>6}",
            "ring", "records", "peak", "mean", "peak%"
        );
        for r in &self.rings {
            let percent = if r.capacity_bytes > 0 {
                r.peak_bytes as f64 * 100.0 / r.capacity_bytes as f64
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "  {:<56} {:>10} {:>9}K {:>9}K {:>5.1}%",
                r.name,
                r.records,
                r.peak_bytes / 1024,
                r.mean_bytes / 1024,
                percent
            );
        }
        out
    }
}

fn clean(text: &str) -> String {
    text.replace(['\t', '\n'], " ")
}

/// Node reports as text lines (a worker's DRAINED report): name, group, records in and out,
/// errors, busy ns, sampled busy ns, sampled records, then `counter=value` pairs.
pub fn encode_reports(reports: &[NodeReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let counters: Vec<String> = r
            .counters
            .iter()
            .map(|(k, v)| format!("{}={v}", clean(k).replace([',', '='], "_")))
            .collect();
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            clean(&r.name),
            clean(&r.group),
            r.stats.records_in,
            r.stats.records_out,
            r.stats.errors,
            r.busy_ns,
            r.stats.sampled_busy_ns,
            r.stats.sampled_records,
            counters.join(",")
        );
    }
    out
}

/// Parses [`encode_reports`] lines; malformed lines are skipped (the report comes from another
/// process and is informational).
pub fn decode_reports(text: &str) -> Vec<NodeReport> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != 9 {
                return None;
            }
            let n = |i: usize| f[i].parse::<u64>().ok();
            let counters = f[8]
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k.to_string(), v.parse().ok()?))
                })
                .collect();
            Some(NodeReport {
                name: f[0].to_string(),
                group: f[1].to_string(),
                stats: NodeStats {
                    records_in: n(2)?,
                    records_out: n(3)?,
                    errors: n(4)?,
                    sampled_busy_ns: n(6)?,
                    sampled_records: n(7)?,
                },
                busy_ns: n(5)?,
                counters,
            })
        })
        .collect()
}

/// A `#name=value` field of a worker's report.
pub fn report_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

/// A `#name=true|false` field of a worker's report.
pub fn report_flag(text: &str, name: &str) -> bool {
    text.lines()
        .filter_map(|l| l.strip_prefix('#'))
        .any(|l| l == format!("{name}=true"))
}
