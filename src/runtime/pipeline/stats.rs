//! The local pipeline's figures: per-node counts and busy time for the summary, the
//! end-to-end latency of the records that end in this process, and what a worker publishes
//! for its heartbeat.

use std::sync::Arc;
use std::time::Instant;

use super::LocalPipeline;
use crate::control::NodeCount;
use crate::observability::latency::LatencyHistogram;
use crate::runtime::summary::NodeReport;

/// What a worker's data thread publishes for its heartbeat thread.
#[derive(Debug, Clone, Default)]
pub struct PublishedStats {
    /// Per local node.
    pub nodes: Vec<NodeCount>,
    /// End-to-end latency of the measured records that ended here.
    pub latency: LatencyHistogram,
    /// Input positions the source passed, not yet sent (the heartbeat takes them).
    pub input_marks: Vec<crate::control::InputMark>,
    /// The outputs' lengths at the latest completed checkpoint record (the worker where
    /// records end).
    pub output_marks: Vec<crate::control::OutputMark>,
}

/// Input positions a heartbeat carries at most (the newest): a heartbeat stays far below the
/// control frame limit, and the journal needs only recent ones.
const MAX_MARKS_PER_BEAT: usize = 4096;

/// Where a worker's data thread publishes its figures for the heartbeat thread.
pub type PublishedNodes = Arc<parking_lot::Mutex<PublishedStats>>;

/// How often a worker's node figures are published for its heartbeat (which carries them at
/// least once a second).
const STATS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl LocalPipeline {
    /// Publishes the node figures for the heartbeat, at most every [`STATS_EVERY`] (callers
    /// call it at batch boundaries).
    pub fn publish_stats(&mut self) {
        let Some((out, last)) = &mut self.stats_out else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < STATS_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        let out = Arc::clone(out);
        let counts: Vec<NodeCount> = self
            .reports()
            .into_iter()
            .map(|r| NodeCount {
                node: r.name,
                records_in: r.stats.records_in,
                records_out: r.stats.records_out,
                errors: r.stats.errors,
                counters: r.counters,
                outcomes: r.outcomes,
            })
            .collect();
        let marks = self.trail.drain();
        let mut out = out.lock();
        out.nodes = counts;
        out.latency = self.env.latency.histogram;
        out.input_marks
            .extend(marks.into_iter().map(crate::runtime::resume::mark_of));
        let excess = out.input_marks.len().saturating_sub(MAX_MARKS_PER_BEAT);
        out.input_marks.drain(..excess);
    }

    /// A record born at `born_ns` (0: not measured) ended now in this process. Where records
    /// end (written by the sink, dead-lettered, or handed to the embedding host) its latency
    /// is taken when its output reaches the operating system, at the next
    /// [`LocalPipeline::outputs_written`]: what a reader of the output sees. A record that left
    /// nothing downstream and no output (`nothing_left`, outside the last process) ends here.
    #[inline]
    pub(crate) fn record_ended(&mut self, born_ns: u64, nothing_left: bool) {
        if born_ns == 0 {
            return;
        }
        if self.ends_records {
            self.env.latency.unwritten(born_ns);
        } else if nothing_left {
            self.env.latency.observe_now(born_ns);
        }
    }

    /// Every output of this process reached the operating system (a flush, a published ring
    /// batch): the records waiting in them are now visible to a reader.
    pub(crate) fn outputs_written(&mut self) {
        self.env.latency.written();
    }

    /// End-to-end latency of the measured records that ended in this process.
    pub fn latency(&self) -> LatencyHistogram {
        self.env.latency.histogram
    }

    /// Per-node reports of this process.
    pub fn reports(&self) -> Vec<NodeReport> {
        let mut nodes = Vec::with_capacity(self.stages.len() + 1);
        if let Some(source) = &self.source {
            nodes.push(NodeReport {
                name: self.source_name.clone(),
                group: self.group.clone(),
                busy_ns: self
                    .source_stats
                    .busy_estimate_over(self.source_stats.records_in),
                stats: self.source_stats.clone(),
                counters: source.counters(),
                outcomes: Vec::new(),
            });
        }
        nodes.extend(self.stages.iter().map(|s| NodeReport {
            name: s.name.clone(),
            group: self.group.clone(),
            busy_ns: s.stats.estimated_busy_ns(),
            stats: s.stats.clone(),
            counters: s.node.counters(),
            outcomes: s.node.outcomes(),
        }));
        nodes
    }
}

#[cfg(test)]
mod tests {
    use crate::runtime::summary::NodeStats;

    /// A preempted sample does not dominate a node's estimate; a slow node keeps its time.
    #[test]
    fn an_outlier_sample_is_capped() {
        let mut stats = NodeStats::default();
        for _ in 0..100 {
            stats.add_sample(1_000);
        }
        stats.add_sample(50_000_000);
        assert!(stats.sampled_busy_ns < 100 * 1_000 + 100_000, "{stats:?}");
        let mut slow = NodeStats::default();
        for _ in 0..100 {
            slow.add_sample(2_000_000);
        }
        assert_eq!(slow.sampled_busy_ns, 200_000_000);
    }
}
