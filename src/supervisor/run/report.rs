//! What a run reports: the summary from every worker's DRAINED report, completion marks, ring
//! reports, and the embedding host's view of the run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{HostEnd, RunEnd, RunFailure, Supervisor};
use crate::observability::latency::LatencyHistogram;
use crate::runtime::routes::RouteCacheCounters;
use crate::runtime::{NodeReport, RingReport, RunSummary, WorkerReport};

impl Supervisor {
    /// The run summary, from every worker's DRAINED report.
    pub fn summary(&self) -> RunSummary {
        let order: HashMap<&str, usize> = self
            .config
            .pipeline
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let mut nodes: Vec<NodeReport> = self
            .drained
            .values()
            .flat_map(|(_, _, report)| report.nodes.iter().map(NodeReport::from_final))
            .collect();
        nodes.sort_by_key(|n| order.get(n.name.as_str()).copied().unwrap_or(usize::MAX));
        // Records the source read: from its DRAINED report, or (a source worker that failed)
        // its last heartbeat.
        let records_in = self
            .records
            .iter()
            .filter(|r| r.holds_source)
            .map(|r| {
                self.drained
                    .get(&r.id)
                    .map_or(r.counters.records_in, |(_, records, _)| *records)
            })
            .sum();
        let elapsed_ns = self
            .drained
            .values()
            .map(|(_, _, r)| r.elapsed_ns)
            .max()
            .unwrap_or(0);
        let workers = self.worker_reports();
        RunSummary {
            profile: "process_supervisor".to_string(),
            records_in,
            skipped: self.resume.after.min(self.source_last_seq()),
            last_seq: self.completed_through(),
            elapsed: if elapsed_ns > 0 {
                Duration::from_nanos(elapsed_ns)
            } else {
                self.work_started_at.map_or(Duration::ZERO, |t| t.elapsed())
            },
            dead_lettered: self.drained.values().map(|(_, _, r)| r.dead_lettered).sum(),
            dead_letter_path: self
                .config
                .adapters
                .dead_letter
                .as_ref()
                .map(|d| d.path().to_path_buf()),
            interrupted: self.drained.values().any(|(_, _, r)| r.interrupted)
                || self.stop_signal.is_some(),
            nodes,
            peak_rss_kib: crate::observability::process::peak_rss_kib().unwrap_or(0)
                + workers.iter().map(|w| w.peak_rss_kib).sum::<u64>(),
            workers,
            health_address: self.health_address(),
            rings: self.ring_report(),
            route_cache: self.route_cache_counters(),
            spans: self
                .telemetry
                .as_ref()
                .map(|t| t.counters())
                .unwrap_or_default(),
            latency: self.drained.values().fold(
                LatencyHistogram::default(),
                |mut sum, (_, _, report)| {
                    sum.merge(&LatencyHistogram::from_parts(
                        &report.latency_buckets,
                        report.latency_sum_ns,
                    ));
                    sum
                },
            ),
            journal: self.journal_point(),
            run_id: crate::observability::ids::run_id_text(self.run_id),
        }
    }

    /// Ends span export: the drain thread reads what the workers left, the exporters get
    /// their deadline. Call after every worker stopped.
    pub(super) fn finish_telemetry(&mut self) {
        let worker_dropped = self.drained.values().map(|(_, _, r)| r.spans_dropped).sum();
        if let Some(telemetry) = self.telemetry.as_mut() {
            telemetry.finish(worker_dropped);
        }
    }

    /// Each worker that reported DRAINED: its elapsed and busy time and peak memory.
    fn worker_reports(&self) -> Vec<WorkerReport> {
        self.records
            .iter()
            .filter_map(|record| {
                let (_, _, report) = self.drained.get(&record.id)?;
                Some(WorkerReport {
                    id: record.id.clone(),
                    group: record.group.clone(),
                    elapsed: Duration::from_nanos(report.elapsed_ns),
                    busy: Duration::from_nanos(report.busy_ns),
                    peak_rss_kib: report.peak_rss_kib,
                })
            })
            .collect()
    }

    /// Route cache counters summed over the workers' DRAINED reports (or, for a worker that
    /// has not drained, its last heartbeat); `generation` is the highest seen.
    pub(super) fn route_cache_counters(&self) -> RouteCacheCounters {
        let mut total = RouteCacheCounters::default();
        for record in &self.records {
            let values = match self.drained.get(&record.id) {
                Some((_, _, report)) => &report.route_cache,
                None => &record.counters.route_cache,
            };
            total.add(values);
        }
        total
    }

    /// Highest `seq` every sink completed: from its DRAINED report, or, when the sink's
    /// worker died, from the progress it published in its inbound ring after each flush (a
    /// progress word that fails its check falls back to the last heartbeat's figure).
    pub fn completed_through(&self) -> u64 {
        (0..self.records.len())
            .filter(|i| self.records[*i].ends_chain)
            .map(|i| match self.drained.get(&self.records[i].id) {
                Some((last, _, _)) => *last,
                None => self
                    .rings
                    .iter()
                    .filter(|r| r.consumer == Some(i))
                    .map(|r| {
                        crate::data::read_progress(&r.segment, r.salt)
                            .unwrap_or(self.records[i].counters.completed)
                    })
                    .min()
                    .unwrap_or(0),
            })
            .min()
            .unwrap_or(0)
    }

    /// Per ring: records through it, and its peak and mean occupancy as sampled at every
    /// supervisor wake-up (heartbeats, control frames, and at least every 50 ms).
    pub fn ring_report(&self) -> Vec<RingReport> {
        let capacity = self.config.runtime.platform.execution_ipc.ring_bytes;
        let now = self.launched_at.elapsed().as_millis() as u64;
        self.rings
            .iter()
            .zip(&self.ring_samples)
            .map(|(r, s)| {
                let records = crate::data::read_counts(&r.segment).0;
                let depth = crate::data::read_depth(&r.segment).min(capacity);
                RingReport {
                    name: r.name.clone(),
                    records,
                    capacity_bytes: capacity,
                    peak_bytes: s.peak,
                    mean_bytes: s.sum.checked_div(s.count).unwrap_or(0),
                    timeline: s.depth.ended(now, depth),
                    records_timeline: s.records.ended(now, records),
                }
            })
            .collect()
    }

    /// The run's id (trace ids of its records derive from it).
    pub fn run_id(&self) -> u64 {
        self.run_id
    }

    /// The rings whose other end belongs to an embedding host.
    pub(crate) fn host_rings(
        &self,
    ) -> impl Iterator<Item = (&str, HostEnd, &crate::data::Segment)> {
        self.rings
            .iter()
            .filter_map(|r| Some((r.name.as_str(), r.host?, &r.segment)))
    }

    /// Waits, at most the largest stop timeout, for the last group to report DRAINED (an
    /// embedding host has sent end of stream and read every reply).
    pub(crate) fn wait_drained(&mut self) -> RunEnd {
        let deadline = Instant::now() + self.largest_stop_timeout();
        loop {
            if let Some(failure) = &self.failure {
                return RunEnd::Failed(failure.clone());
            }
            if self.last_group_drained() {
                return RunEnd::Drained;
            }
            if Instant::now() >= deadline {
                return RunEnd::Interrupted(None);
            }
            self.pump(Duration::from_millis(20));
        }
    }

    /// A node error (policy `fail`) leaves its worker alive long enough to pass on every
    /// record before the failing one, with end of stream: the groups after it complete those
    /// (at most the largest stop timeout) so the report says exactly what was done.
    pub(super) fn drain_after_node_error(&mut self, failure: &RunFailure) {
        let failed_at_end = self
            .records
            .iter()
            .any(|r| r.id == failure.worker && r.ends_chain);
        if failed_at_end {
            return;
        }
        let deadline = Instant::now() + self.largest_stop_timeout();
        let last_group_gone = |s: &Self| {
            s.records
                .iter()
                .any(|r| r.ends_chain && r.exit.is_some() && !s.drained.contains_key(&r.id))
        };
        while !self.last_group_drained()
            && !last_group_gone(self)
            && !self.force_requested
            && Instant::now() < deadline
        {
            self.pump(Duration::from_millis(5));
        }
    }

    /// The chain's last group drained; on a host without it, every local worker drained and
    /// the bridge handed every edge on.
    pub(super) fn last_group_drained(&self) -> bool {
        if !self.holds_chain_end && self.bridge.is_some() {
            return self.all_drained();
        }
        let mut last = self.records.iter().filter(|r| r.ends_chain).peekable();
        last.peek().is_some() && last.all(|r| self.drained.contains_key(&r.id))
    }

    pub(super) fn largest_stop_timeout(&self) -> Duration {
        self.plans
            .iter()
            .map(|p| p.stop_timeout)
            .max()
            .unwrap_or(Duration::from_secs(30))
    }

    /// Every worker's id and pid.
    pub fn workers(&self) -> Vec<(String, Option<u32>)> {
        self.records.iter().map(|r| (r.id.clone(), r.pid)).collect()
    }

    /// Highest `seq` the source read (from its DRAINED report or its last heartbeat).
    pub fn source_last_seq(&self) -> u64 {
        self.records
            .iter()
            .filter(|r| r.holds_source)
            .map(|r| {
                self.drained
                    .get(&r.id)
                    .map_or(r.counters.records_in, |(last, _, _)| *last)
            })
            .max()
            .unwrap_or(0)
    }
}
