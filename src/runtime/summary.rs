//! The run summary: what a run did, per node, for the CLI and for programs.

use std::fmt::Write as _;
use std::time::Duration;

use super::chain::NodeStats;

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
}
