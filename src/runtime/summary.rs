//! The run summary: what a run did, per node, for the CLI and for programs.

use std::fmt::Write as _;
use std::time::Duration;

use super::routes::RouteCacheCounters;
use crate::control::{NodeCount, NodeFinal};
use crate::graph::Outcome;
use crate::observability::latency::LatencyHistogram;

/// Per-node counters of one process.
#[derive(Debug, Clone, Default)]
pub struct NodeStats {
    /// Records the node received.
    pub records_in: u64,
    /// Outputs the node emitted.
    pub records_out: u64,
    /// Records the node failed on.
    pub errors: u64,
    /// Self time (excluding downstream nodes) of the records that were timed.
    pub sampled_busy_ns: u64,
    /// Records whose self time was measured.
    pub sampled_records: u64,
}

impl NodeStats {
    /// Adds one timed record's self time. A sample far above the node's mean so far (after a
    /// few samples) is capped: on a loaded machine a sampled record may be preempted for
    /// milliseconds, and the 1-in-[`crate::runtime::TIMING_SAMPLE`] scaling would charge that 256 times.
    pub fn add_sample(&mut self, self_ns: u64) {
        const WARM: u64 = 16;
        let sample = if self.sampled_records >= WARM {
            let mean = self.sampled_busy_ns / self.sampled_records;
            self_ns.min(mean.saturating_mul(20).max(50_000))
        } else {
            self_ns
        };
        self.sampled_busy_ns += sample;
        self.sampled_records += 1;
    }

    /// Estimated busy time over all records (self time scaled from the timed sample).
    pub fn estimated_busy_ns(&self) -> u64 {
        self.busy_estimate_over(self.records_in)
    }

    /// The timed sample's self time scaled to `calls` calls.
    pub fn busy_estimate_over(&self, calls: u64) -> u64 {
        if self.sampled_records == 0 {
            return 0;
        }
        (u128::from(self.sampled_busy_ns) * u128::from(calls) / u128::from(self.sampled_records))
            as u64
    }
}

/// One node's share of a run.
#[derive(Debug, Clone)]
pub struct NodeReport {
    /// The node's name.
    pub name: String,
    /// The group that ran it (`inline` in the memory profile).
    pub group: String,
    /// Records in and out, errors, and the timed sample.
    pub stats: NodeStats,
    /// Estimated self time over the whole run (scaled from the timed sample).
    pub busy_ns: u64,
    /// The node's own counters of events (`bytes_read`, `blank_lines`, ...).
    pub counters: Vec<(String, u64)>,
    /// The records the node ended, by outcome (`accepted`, `declined` for a reason, ...).
    pub outcomes: Vec<Outcome>,
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
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Records sent to the dead-letter file.
    pub dead_lettered: u64,
    /// Where dead letters went, when there were any.
    pub dead_letter_path: Option<std::path::PathBuf>,
    /// The run was stopped before its input ended (SIGTERM / SIGINT).
    pub interrupted: bool,
    /// Every node, in pipeline order.
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
    /// Where the health endpoints listened during the run (supervised runs with health on).
    pub health_address: Option<std::net::SocketAddr>,
    /// End-to-end latency (the source's read to the output's write) of the measured records, one in
    /// [`crate::observability::latency::LATENCY_SAMPLE`].
    pub latency: LatencyHistogram,
    /// The run journal, when the run kept one: its file and the last record it completed.
    pub journal: Option<JournalPoint>,
    /// The run's id as its traces and logs carry it (hex).
    pub run_id: String,
}

/// Where a run's journal is and how far it says the run got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalPoint {
    /// The journal's file.
    pub path: std::path::PathBuf,
    /// Every record through this one is in the outputs, as the journal records them.
    pub completed: u64,
}

/// One worker process's share of a run.
#[derive(Debug, Clone, Default)]
pub struct WorkerReport {
    /// The worker's id (`group#n`, `inline` inline).
    pub id: String,
    /// The worker's group.
    pub group: String,
    /// START_WORK to DRAINED.
    pub elapsed: Duration,
    /// Of `elapsed`, the time not spent waiting on a ring (idle inbound or full outbound).
    pub busy: Duration,
    /// Peak resident memory of the process, KiB.
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
    /// Records written to the ring.
    pub records: u64,
    /// Bytes of the ring's data area.
    pub capacity_bytes: u64,
    /// The most bytes written and not yet read at one sample.
    pub peak_bytes: u64,
    /// Mean of the sampled occupancy, bytes.
    pub mean_bytes: u64,
    /// Occupancy in bytes over the run.
    pub timeline: Timeline,
    /// Records through the ring so far, over the run (sampled with `timeline`).
    pub records_timeline: Timeline,
}

/// A value sampled over a run: `(milliseconds since the start, value)` points, at most one per
/// interval and at most [`Timeline::MAX_POINTS`] (when full, every other point is dropped and
/// the interval doubles, so a long run keeps an even picture in bounded memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// `(milliseconds since the start, value)`, oldest first.
    pub points: Vec<(u64, u64)>,
    every_ms: u64,
}

impl Default for Timeline {
    fn default() -> Self {
        Self {
            points: Vec::new(),
            every_ms: 50,
        }
    }
}

impl Timeline {
    /// The most points kept.
    pub const MAX_POINTS: usize = 1024;

    /// Records `value` at `at_ms`, unless the last point is less than an interval ago.
    pub fn record(&mut self, at_ms: u64, value: u64) {
        if let Some((last, _)) = self.points.last()
            && at_ms < last + self.every_ms
        {
            return;
        }
        if self.points.len() >= Self::MAX_POINTS {
            let mut keep = false;
            self.points.retain(|_| {
                keep = !keep;
                keep
            });
            self.every_ms *= 2;
        }
        self.points.push((at_ms, value));
    }

    /// The timeline with a last point at `at_ms` whatever the interval (the value at the end
    /// of a run, which a short run would otherwise never sample).
    pub fn ended(&self, at_ms: u64, value: u64) -> Self {
        let mut ended = self.clone();
        ended.points.retain(|(t, _)| *t < at_ms);
        ended.points.push((at_ms, value));
        ended
    }
}

impl RunSummary {
    /// Input records per second of wall time.
    pub fn records_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.records_in as f64 / secs
        } else {
            0.0
        }
    }

    /// The records the run's nodes ended, by outcome and reason, summed over nodes and workers
    /// (in the order they were first declared).
    pub fn outcomes(&self) -> Vec<Outcome> {
        let mut total = Vec::new();
        for node in &self.nodes {
            Outcome::sum_into(&mut total, &node.outcomes);
        }
        total
    }

    /// Records that ended with `outcome`, over every reason (`None` when no node declared it).
    pub fn outcome_records(&self, outcome: &str) -> Option<u64> {
        self.outcomes()
            .iter()
            .filter(|o| o.outcome == outcome)
            .map(|o| o.records)
            .reduce(|a, b| a + b)
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

    /// The worker table as text: busy share, the busy time per record spent outside the
    /// nodes (ring pushes and polls, routing, merging: the cost of the process boundary), and
    /// peak memory per worker process.
    pub fn worker_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "  {:<28} {:>10} {:>10} {:>6} {:>14} {:>10}",
            "worker", "elapsed", "busy", "busy%", "edge ns/rec", "peak RSS"
        );
        for w in &self.workers {
            let edge = self
                .edge_ns_per_record(w)
                .map_or_else(|| "-".to_string(), |ns| format!("{ns:.0}"));
            let _ = writeln!(
                out,
                "  {:<28} {:>8.1}ms {:>8.1}ms {:>5.1}% {:>14} {:>7.1}MiB",
                w.id,
                w.elapsed.as_secs_f64() * 1e3,
                w.busy.as_secs_f64() * 1e3,
                w.busy_percent(),
                edge,
                w.peak_rss_kib as f64 / 1024.0
            );
        }
        out
    }

    /// A worker's busy time outside its nodes per record it took in: its share of the group's
    /// busy time minus its share of the group's node self time (an estimate: node times are
    /// sampled, and a partitioned group's workers are assumed to share the work evenly).
    pub fn edge_ns_per_record(&self, worker: &WorkerReport) -> Option<f64> {
        let peers = self
            .workers
            .iter()
            .filter(|w| w.group == worker.group)
            .count()
            .max(1) as f64;
        let nodes = self.nodes.iter().filter(|n| n.group == worker.group);
        let (node_ns, records) = nodes.fold((0u64, 0u64), |(ns, most), n| {
            (ns + n.busy_ns, most.max(n.stats.records_in))
        });
        if records == 0 {
            return None;
        }
        let outside = worker.busy.as_nanos() as f64 - node_ns as f64 / peers;
        Some((outside / (records as f64 / peers)).max(0.0))
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

impl NodeReport {
    /// This node's final figures for a worker's DRAINED report.
    pub fn to_final(&self) -> NodeFinal {
        NodeFinal {
            count: NodeCount {
                node: self.name.clone(),
                records_in: self.stats.records_in,
                records_out: self.stats.records_out,
                errors: self.stats.errors,
                counters: self.counters.clone(),
                outcomes: self.outcomes.clone(),
            },
            group: self.group.clone(),
            busy_ns: self.busy_ns,
            sampled_busy_ns: self.stats.sampled_busy_ns,
            sampled_records: self.stats.sampled_records,
        }
    }

    /// A node's figures as a worker reported them.
    pub fn from_final(node: &NodeFinal) -> Self {
        Self {
            name: node.count.node.clone(),
            group: node.group.clone(),
            stats: NodeStats {
                records_in: node.count.records_in,
                records_out: node.count.records_out,
                errors: node.count.errors,
                sampled_busy_ns: node.sampled_busy_ns,
                sampled_records: node.sampled_records,
            },
            busy_ns: node.busy_ns,
            counters: node.count.counters.clone(),
            outcomes: node.count.outcomes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::NodeStats;

    fn node(name: &str, group: &str, records_in: u64, busy_ns: u64) -> NodeReport {
        NodeReport {
            name: name.into(),
            group: group.into(),
            stats: NodeStats {
                records_in,
                ..NodeStats::default()
            },
            busy_ns,
            counters: Vec::new(),
            outcomes: Vec::new(),
        }
    }

    fn worker(id: &str, group: &str, busy_ms: u64) -> WorkerReport {
        WorkerReport {
            id: id.into(),
            group: group.into(),
            elapsed: Duration::from_millis(busy_ms * 2),
            busy: Duration::from_millis(busy_ms),
            peak_rss_kib: 0,
        }
    }

    /// The edge cost is the worker's busy time its nodes do not account for, per record.
    /// A timeline keeps one point per interval and stays bounded, thinning evenly.
    #[test]
    fn timeline_is_bounded_and_even() {
        let mut timeline = Timeline::default();
        for ms in 0..1_000_000 {
            timeline.record(ms, ms * 2);
        }
        assert!(timeline.points.len() <= Timeline::MAX_POINTS);
        assert!(timeline.points.len() > Timeline::MAX_POINTS / 2);
        let gaps: Vec<u64> = timeline
            .points
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .collect();
        let (min, max) = (gaps.iter().min().copied(), gaps.iter().max().copied());
        assert!(
            max.zip(min).is_some_and(|(max, min)| max <= 2 * min),
            "{min:?} {max:?}"
        );
        assert!(timeline.points.iter().all(|(ms, v)| *v == ms * 2));
    }

    #[test]
    fn edge_cost_is_busy_time_outside_the_nodes_per_record() {
        let summary = RunSummary {
            nodes: vec![
                node("a", "g", 1_000_000, 30_000_000),
                node("b", "g", 1_000_000, 20_000_000),
                node("c", "h", 500, 0),
            ],
            workers: vec![
                worker("g#1", "g", 70),
                worker("h#1", "h", 1),
                worker("h#2", "h", 1),
            ],
            ..RunSummary::default()
        };
        let g = summary.edge_ns_per_record(&summary.workers[0]);
        assert_eq!(g.map(f64::round), Some(20.0));
        // Two workers share the group's 500 records: 1 ms over 250 records each.
        let h = summary.edge_ns_per_record(&summary.workers[1]);
        assert_eq!(h.map(f64::round), Some(4000.0));
        assert!(summary.worker_table().contains("edge ns/rec"));
    }
}
