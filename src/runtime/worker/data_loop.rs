//! The worker's data loop: pull the source or read the inbound rings, run the local pipeline,
//! hand records on, and end: DRAINED with counts, or a failure with the completed range.

use crate::observability::ids::trace_id_for;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::GroupIo;
use super::control::Shared;
use super::egress::{OutboundRouting, Watermarks, WorkerEgress};
use super::exit;
use super::failure::{WorkerFailure, ring_failure, stream_failure};
use super::merge::{MergePick, inbound_done_through, merge_pick, wait_on_ring};
use crate::config::Config;
use crate::control::{ControlMessage, DrainReport, FailureCategory, OutputBytes, OutputMark};
use crate::data::{Consumer, EnvelopeHeader, EnvelopeKind, PollError, Segment, StreamCheck};
use crate::graph::{NodeError, PartitionKey, RecordContext};
use crate::runtime::dead_letter::{DeadLetterRecord, DeadLetters};
use crate::runtime::pipeline::{LocalPipeline, NodeFailure, TIMING_SAMPLE};
use crate::runtime::resume::{CHECKPOINT_EVERY, ResumePlan, mark_of};
use crate::runtime::summary::NodeReport;
use crate::runtime::topology::Topology;

/// How long one idle wait on the inbound ring lasts before checking STOP.
pub(super) const WAIT_SLICE: Duration = Duration::from_millis(100);
/// A merge with no record on any ring waits this long on one ring before looking at the next.
pub(super) const MERGE_IDLE_SLICE: Duration = Duration::from_millis(1);
/// Idle merge rounds (about a millisecond each) before it waits in [`WAIT_SLICE`]s.
pub(super) const IDLE_ROUNDS_BEFORE_PARKING: u64 = 200;
/// Records taken from the inbound ring per batch (one release, one publish, one flush).
pub(super) const BATCH: usize = 256;

/// One worker's share of the run.
pub(super) struct GroupData<'a> {
    pub(super) config: &'a Config,
    pub(super) topology: &'a Topology,
    pub(super) span: crate::runtime::topology::GroupSpan,
    pub(super) pipeline: &'a mut LocalPipeline,
    pub(super) shared: &'a Arc<Shared>,
    /// Partition keys of the next group's partitioned nodes (routing to its workers).
    pub(super) next_group_keys: HashMap<usize, PartitionKey>,
    /// Records run by this worker (picks the ones whose node times are sampled).
    pub(super) timed_count: u64,
    /// No outbound ring: this worker is where records end (the sink's worker, or the last
    /// group of a run whose terminal outputs have no reader). It writes dead letters, absorbs
    /// drop markers and publishes its progress for crash accounting.
    pub(super) ends_chain: bool,
    /// Where a resumed run resumes.
    pub(super) resume: ResumePlan,
    /// Highest `seq` this worker handled completely (records arrive in `seq` order).
    pub(super) completed: u64,
    /// The worker where records end: the last checkpoint record whose output lengths were
    /// taken.
    pub(super) marked_through: u64,
    /// Those lengths, until a flush makes them true of the files.
    pub(super) pending_mark: Option<OutputMark>,
}

impl GroupData<'_> {
    pub(super) fn run(&mut self, io: GroupIo) -> i32 {
        let dead_letters = if self.ends_chain {
            let resume = self.resume.resume_point(DeadLetters::KEY);
            match DeadLetters::open(self.config.adapters.dead_letter.as_ref(), resume) {
                Ok(dead_letters) => Some(dead_letters),
                Err(e) => {
                    self.shared.fail(FailureCategory::NodeError, e.to_string());
                    return exit::NODE_ERROR;
                }
            }
        } else {
            None
        };
        let mut egress = WorkerEgress {
            outbound: io.outbound,
            group_index: self.span.index,
            run_id: self.pipeline.run_id,
            dead_letters,
            arena: rkyv::ser::allocator::Arena::new(),
            forwarded: 0,
            sent: 0,
            shared: self.shared,
            ring_error: None,
            routing: OutboundRouting {
                keys: std::mem::take(&mut self.next_group_keys),
                ..OutboundRouting::default()
            },
            marks: Watermarks::default(),
        };
        let started = Instant::now();
        let mut inbound = io.inbound;
        let outcome = if self.pipeline.source.is_some() {
            self.run_source(&mut egress)
        } else {
            self.run_inbound(&mut inbound, &mut egress)
        };
        let (last_seq, records, interrupted) = match outcome {
            Ok(done) => done,
            Err(failure) if failure.is_stopped() => (
                self.completed,
                self.shared.records_in.load(Ordering::Relaxed),
                true,
            ),
            Err(failure) => {
                self.complete_before_failure(&failure, &mut egress, &inbound);
                if failure.reader_gone {
                    tracing::info!(
                        worker_id = %self.shared.worker_id,
                        "the reader of stdout closed it: {}",
                        failure.message
                    );
                    self.shared
                        .report_failure(failure.category, failure.message);
                } else {
                    self.shared
                        .fail_traced(failure.category, failure.message, failure.trace);
                }
                return exit::NODE_ERROR;
            }
        };
        let elapsed = started.elapsed();
        let idle = Duration::from_nanos(self.shared.idle_ns.load(Ordering::Relaxed));
        let latency = self.pipeline.latency();
        let mut report = DrainReport {
            nodes: self
                .pipeline
                .reports()
                .iter()
                .map(NodeReport::to_final)
                .collect(),
            dead_lettered: egress.dead_letters.as_ref().map_or(0, DeadLetters::count),
            elapsed_ns: saturating_ns(elapsed),
            busy_ns: saturating_ns(elapsed.saturating_sub(idle)),
            peak_rss_kib: crate::observability::process::peak_rss_kib().unwrap_or(0),
            interrupted,
            route_cache: self
                .pipeline
                .env
                .routes
                .cache_counters()
                .pairs()
                .iter()
                .map(|(_, value)| *value)
                .collect(),
            latency_buckets: latency.buckets.to_vec(),
            latency_sum_ns: latency.sum_ns,
            spans_dropped: 0,
        };
        if let Some(tracer) = self.pipeline.env.tracer.as_mut() {
            tracer.sink.close();
            report.spans_dropped = tracer.sink.dropped();
        }
        self.shared.done.store(true, Ordering::Relaxed);
        let input_marks = self
            .pipeline
            .trail
            .drain()
            .into_iter()
            .map(mark_of)
            .collect();
        let output_mark = self.ends_chain.then(|| OutputMark {
            seq: last_seq,
            outputs: self.output_bytes(&mut egress),
        });
        self.shared.send(
            &ControlMessage::Drained {
                last_seq,
                records,
                report,
                input_marks,
                output_mark,
            },
            0,
        );
        exit::OK
    }

    /// The run failed here: every record before the failing one (or before what an output
    /// could not write) is good, so it is completed rather than lost. The worker where records
    /// end settles its outputs to exactly that range and publishes it as its progress; any
    /// other worker, for a node error, publishes what it forwarded and passes end of stream
    /// on, and the supervisor lets the groups after it drain before stopping them.
    pub(super) fn complete_before_failure(
        &mut self,
        failure: &WorkerFailure,
        egress: &mut WorkerEgress<'_>,
        inbound: &[Consumer<Segment>],
    ) {
        let mut through = failure
            .failed_seq
            .map_or(self.completed, |seq| seq.saturating_sub(1));
        if let Some(written) = failure.written_through {
            through = through.min(written);
        }
        if self.ends_chain {
            let settled = self.pipeline.settle_outputs(egress, through);
            for consumer in inbound {
                consumer.publish_progress(settled);
            }
            return;
        }
        let Some(seq) = failure.failed_seq else {
            return;
        };
        egress.flush();
        // Best effort: the push gives up when the supervisor stops the run.
        let _ = egress.marker(
            EnvelopeKind::EndOfStream,
            &EnvelopeHeader::data(seq.saturating_sub(1), 0),
        );
        egress.flush();
    }

    pub(super) fn node_failure(
        &self,
        failure: NodeFailure,
        egress: &WorkerEgress<'_>,
    ) -> WorkerFailure {
        if let Some(ring) = &egress.ring_error {
            return WorkerFailure::ring(ring.clone());
        }
        let message = format!(
            "node `{}` failed on seq {}: {}",
            failure.node, failure.seq, failure.error
        );
        // An input that did not validate is the transport's fault, not the node's.
        if matches!(failure.error, NodeError::Payload(_)) {
            return WorkerFailure::ring(message);
        }
        if let Some(refused) = crate::runtime::resume::refusal_of(&failure.error) {
            return WorkerFailure::refused(refused);
        }
        WorkerFailure {
            category: FailureCategory::NodeError,
            stopped: false,
            message,
            failed_seq: Some(failure.seq),
            written_through: failure.error.written_through(),
            reader_gone: failure.error.reader_gone(),
            trace: failure.trace,
        }
    }

    /// The worker that holds the source: pull, run the local chain, forward; then drain.
    pub(super) fn run_source(
        &mut self,
        egress: &mut WorkerEgress<'_>,
    ) -> Result<(u64, u64, bool), WorkerFailure> {
        let shared = Arc::clone(self.shared);
        let stop = move || shared.stopping();
        let run = self
            .pipeline
            .drive_source(egress, 0, &stop, &self.shared.records_in);
        self.completed = run.last_seq;
        if let Some(failure) = run.failure {
            return Err(self.node_failure(failure, egress));
        }
        if let Some(refused) = run.refused {
            return Err(WorkerFailure::refused(refused));
        }
        match self.finish(egress, run.last_seq) {
            Ok(()) => Ok((run.last_seq, run.emitted, run.interrupted)),
            // Aborted while passing end of stream on: what was read is reported as such.
            Err(failure) if failure.is_stopped() => Ok((run.last_seq, run.emitted, true)),
            Err(failure) => Err(failure),
        }
    }

    /// Runs end of stream locally, flushes, and passes end of stream on.
    pub(super) fn finish(
        &mut self,
        egress: &mut WorkerEgress<'_>,
        last_seq: u64,
    ) -> Result<(), WorkerFailure> {
        if let Some(failure) = self.pipeline.finish(egress, last_seq) {
            return Err(self.node_failure(failure, egress));
        }
        if self.ends_chain {
            self.pipeline
                .finish_outputs(egress)
                .map_err(|failure| WorkerFailure::flush(&failure))?;
        }
        self.flush_sink(egress)?;
        if !egress.outbound.is_empty() {
            egress
                .marker(
                    EnvelopeKind::EndOfStream,
                    &EnvelopeHeader::data(last_seq, 0),
                )
                .map_err(|e| WorkerFailure::handing_on("passing end of stream on", e))?;
        }
        egress.flush();
        Ok(())
    }

    /// In the worker where records end: hands every output to the operating system (a batch
    /// boundary).
    pub(super) fn flush_sink(
        &mut self,
        egress: &mut WorkerEgress<'_>,
    ) -> Result<(), WorkerFailure> {
        if !self.ends_chain {
            return Ok(());
        }
        self.pipeline
            .flush_outputs(egress)
            .map_err(|failure| WorkerFailure::flush(&failure))?;
        // The lengths taken at the last checkpoint record are now what the files hold.
        if let Some(mark) = self.pending_mark.take_if(|m| m.seq <= self.completed)
            && let Some((out, _)) = &self.pipeline.stats_out
        {
            out.lock().output_marks = vec![mark];
        }
        Ok(())
    }

    /// Every output's length now, for the supervisor's journal.
    pub(super) fn output_bytes(&self, egress: &mut WorkerEgress<'_>) -> Vec<OutputBytes> {
        self.pipeline
            .output_lengths(egress)
            .into_iter()
            .map(|o| OutputBytes {
                key: o.key,
                path: o.path,
                bytes: o.bytes,
            })
            .collect()
    }

    /// In the worker where records end, before record `seq` is handled: at the first record
    /// after a checkpoint record, every record through that one is written (records arrive in
    /// `seq` order), so the outputs' lengths now are their lengths at it.
    #[inline]
    fn mark_outputs_before(&mut self, seq: u64, egress: &mut WorkerEgress<'_>) {
        let boundary = seq.saturating_sub(1) / CHECKPOINT_EVERY * CHECKPOINT_EVERY;
        if boundary <= self.marked_through {
            return;
        }
        self.marked_through = boundary;
        if seq - 1 == boundary {
            self.pending_mark = Some(OutputMark {
                seq: boundary,
                outputs: self.output_bytes(egress),
            });
        }
    }

    /// A worker fed by the previous group: consume, run the local chain in place in the ring,
    /// forward; on end of stream, drain.
    pub(super) fn run_inbound(
        &mut self,
        inbound: &mut [Consumer<Segment>],
        egress: &mut WorkerEgress<'_>,
    ) -> Result<(u64, u64, bool), WorkerFailure> {
        if inbound.len() > 1 {
            return self.run_merged(inbound, egress);
        }
        let trusted = !self.config.runtime.platform.execution_ipc.validate_payloads;
        let mut completed = 0u64;
        let mut consumed = 0u64;
        let mut streams = vec![StreamCheck::default(); inbound.len()];
        while !streams.iter().all(StreamCheck::ended) {
            if self.shared.stopping() && !self.shared.drain_on_stop() {
                // Abort: report how far this worker got.
                return Ok((completed, consumed, true));
            }
            let mut any = false;
            for (r, consumer) in inbound.iter_mut().enumerate() {
                let stream = &mut streams[r];
                if stream.ended() {
                    continue;
                }
                let mut step = BatchStep::default();
                let polled = consumer.poll(BATCH, |record| {
                    self.handle_record(record.body, trusted, egress, &mut step, stream)
                });
                match polled {
                    Ok(n) => {
                        any |= n > 0;
                        consumed += n as u64;
                    }
                    Err(PollError::Corrupted(e)) => return Err(ring_failure(e)),
                    Err(PollError::Handler(failure)) => return Err(failure),
                }
                completed = completed.max(step.completed);
            }
            if self.ends_chain && any {
                self.flush_sink(egress)?;
                self.publish_progress(inbound, completed);
            }
            egress.marks.upstream = inbound_done_through(inbound, &streams)?;
            egress.flush();
            self.publish_counters(consumed, egress);
            if !any && let Some(r) = streams.iter().position(|s| !s.ended()) {
                wait_on_ring(&mut inbound[r], &streams[r], WAIT_SLICE, self.shared)?;
            }
        }
        self.finish(egress, completed)?;
        if self.ends_chain {
            self.publish_progress(inbound, completed);
        }
        Ok((completed, consumed, false))
    }

    /// A worker fed by several rings (the previous group runs several workers): a k-way merge
    /// by `seq`. The smallest head is taken once every other ring's head is past it or its
    /// watermark says nothing at or below it will come; a ring whose end of stream arrived
    /// no longer holds anything back. So the local chain sees records in `seq` order, as inline.
    pub(super) fn run_merged(
        &mut self,
        inbound: &mut [Consumer<Segment>],
        egress: &mut WorkerEgress<'_>,
    ) -> Result<(u64, u64, bool), WorkerFailure> {
        let trusted = !self.config.runtime.platform.execution_ipc.validate_payloads;
        let mut streams = vec![StreamCheck::default(); inbound.len()];
        let mut heads = vec![None; inbound.len()];
        let (mut completed, mut consumed) = (0u64, 0u64);
        let mut idle_rounds = 0u64;
        while !streams.iter().all(StreamCheck::ended) {
            if self.shared.stopping() && !self.shared.drain_on_stop() {
                return Ok((completed, consumed, true));
            }
            let mut step = BatchStep::default();
            let mut taken = 0;
            let mut blocked_on = None;
            let mut idle = false;
            while taken < BATCH {
                match merge_pick(inbound, &mut streams, &mut heads)? {
                    MergePick::Take(r) => {
                        heads[r] = None;
                        let body = inbound[r].peek().map_err(ring_failure)?.ok_or_else(|| {
                            WorkerFailure::ring("inbound ring: a peeked record vanished".into())
                        })?;
                        self.handle_record(body, trusted, egress, &mut step, &mut streams[r])?;
                        inbound[r].advance().map_err(ring_failure)?;
                        taken += 1;
                    }
                    MergePick::Wait(r) => {
                        blocked_on = Some(r);
                        break;
                    }
                    MergePick::Idle => {
                        idle = true;
                        break;
                    }
                    MergePick::Ended => break,
                }
            }
            for consumer in inbound.iter_mut() {
                consumer.release();
            }
            consumed += taken as u64;
            completed = completed.max(step.completed);
            if self.ends_chain && taken > 0 {
                self.flush_sink(egress)?;
                self.publish_progress(inbound, completed);
            }
            egress.marks.upstream = inbound_done_through(inbound, &streams)?;
            egress.flush();
            self.publish_counters(consumed, egress);
            idle_rounds = if idle && taken == 0 {
                idle_rounds + 1
            } else {
                0
            };
            let wait_on = match (taken, blocked_on, idle) {
                (0, Some(r), _) => Some((r, WAIT_SLICE)),
                // Nothing anywhere: the next record may come on any ring, so look at them in
                // turn with short waits; after a while of nothing, park for longer.
                (0, None, true) => {
                    let open: Vec<usize> = (0..inbound.len())
                        .filter(|r| !streams[*r].ended())
                        .collect();
                    let slice = if idle_rounds > IDLE_ROUNDS_BEFORE_PARKING {
                        WAIT_SLICE
                    } else {
                        MERGE_IDLE_SLICE
                    };
                    open.get(idle_rounds as usize % open.len().max(1))
                        .map(|r| (*r, slice))
                }
                _ => None,
            };
            if let Some((r, slice)) = wait_on {
                wait_on_ring(&mut inbound[r], &streams[r], slice, self.shared)?;
            }
        }
        self.finish(egress, completed)?;
        if self.ends_chain {
            self.publish_progress(inbound, completed);
        }
        Ok((completed, consumed, false))
    }

    /// In the worker where records end: every record through `seq` is written (flushed).
    pub(super) fn publish_progress(&self, inbound: &[Consumer<Segment>], seq: u64) {
        for consumer in inbound {
            consumer.publish_progress(seq);
        }
        self.shared.completed.store(seq, Ordering::Relaxed);
    }

    /// What the heartbeat thread reports: records in and out, route cache counters.
    pub(super) fn publish_counters(&mut self, consumed: u64, egress: &WorkerEgress<'_>) {
        self.pipeline.publish_stats();
        self.shared.records_in.store(consumed, Ordering::Relaxed);
        self.shared
            .records_out
            .store(egress.sent, Ordering::Relaxed);
        if let Ok(mut counters) = self.shared.route_cache.lock() {
            counters.clear();
            let route = self.pipeline.env.routes.cache_counters();
            counters.extend(route.pairs().iter().map(|(_, v)| *v));
        }
    }

    /// One inbound envelope.
    pub(super) fn handle_record(
        &mut self,
        body: &[u8],
        trusted: bool,
        egress: &mut WorkerEgress<'_>,
        step: &mut BatchStep,
        stream: &mut StreamCheck,
    ) -> Result<(), WorkerFailure> {
        let (header, payload) = EnvelopeHeader::read(body)
            .map_err(|e| WorkerFailure::ring(format!("inbound envelope: {e}")))?;
        stream.admit(&header).map_err(stream_failure)?;
        let ends_chain = self.ends_chain;
        if ends_chain && header.kind != EnvelopeKind::EndOfStream {
            self.mark_outputs_before(header.seq, egress);
        }
        let forwarded_failure = |e: NodeError| {
            WorkerFailure::handing_on(format_args!("forwarding seq {}", header.seq), e)
        };
        match header.kind {
            EnvelopeKind::EndOfStream => return Ok(()),
            EnvelopeKind::DropMarker if ends_chain => {
                self.pipeline.record_ended(header.born_unix_ns, true)
            }
            EnvelopeKind::DeadLetter if ends_chain => {
                self.pipeline.record_ended(header.born_unix_ns, true);
                let record =
                    <DeadLetterRecord as crate::graph::Message>::access(payload).map_err(|e| {
                        WorkerFailure::ring(format!("dead letter of seq {}: {e}", header.seq))
                    })?;
                if let Some(dead_letters) = &mut egress.dead_letters {
                    dead_letters
                        .write(
                            header.seq,
                            record.node.as_str(),
                            record.reason.as_str(),
                            record.detail.as_str(),
                        )
                        .map_err(|e| WorkerFailure {
                            written_through: e.written_through(),
                            ..WorkerFailure::node(e.to_string())
                        })?;
                }
            }
            EnvelopeKind::DropMarker | EnvelopeKind::DeadLetter => {
                egress
                    .forward_raw(&header, payload)
                    .map_err(forwarded_failure)?;
            }
            EnvelopeKind::Data => {
                let target = header.target as usize;
                let local = self.pipeline.position_of(target);
                let Some(position) = local else {
                    egress
                        .forward_raw(&header, payload)
                        .map_err(forwarded_failure)?;
                    step.completed = step.completed.max(header.seq);
                    self.completed = self.completed.max(header.seq);
                    return Ok(());
                };
                self.run_local(position, &header, payload, trusted, egress)?;
            }
        }
        step.completed = step.completed.max(header.seq);
        self.completed = self.completed.max(header.seq);
        Ok(())
    }

    /// Runs the local pipeline on one envelope's payload (decoded once for its first node).
    pub(super) fn run_local(
        &mut self,
        position: usize,
        header: &EnvelopeHeader,
        payload: &[u8],
        trusted: bool,
        egress: &mut WorkerEgress<'_>,
    ) -> Result<(), WorkerFailure> {
        let handoff_from = self.topology.name_of(header.source_group);
        let ctx = RecordContext {
            seq: header.seq,
            // No trace context on the wire: the run's own id for this `seq` (egress left it out).
            trace_id: if header.trace_id == [0; 16] {
                trace_id_for(self.pipeline.run_id, header.seq)
            } else {
                header.trace_id
            },
            process_group: &self.span.name,
            handoff_from,
            route_hop: header.route_hop,
            reply_to: header.reply_to,
            parent_span: u64::from_be_bytes(header.parent_span_id),
            sampled: header.trace_flags & 1 == 1,
            born_ns: header.born_unix_ns,
        };
        egress.forwarded = 0;
        // Sample by this worker's own count, not by `seq`: with round robin over workers,
        // every multiple of the sample period could land on one worker.
        self.timed_count = self.timed_count.wrapping_add(1);
        self.pipeline.env.timing = self.timed_count.is_multiple_of(TIMING_SAMPLE);
        let result = self
            .pipeline
            .run_encoded(position, payload, trusted, &ctx, egress);
        if result.as_ref().is_err_and(NodeError::is_stopped) {
            return Err(WorkerFailure::stopped());
        }
        if result.is_err() {
            let failure = self.pipeline.env.failure.take().unwrap_or(NodeFailure {
                node: self
                    .pipeline
                    .stages
                    .get(position)
                    .map_or_else(String::new, |s| s.name.clone()),
                seq: header.seq,
                error: NodeError::failed("failed without a recorded failure"),
                trace: None,
            });
            return Err(self.node_failure(failure, egress));
        }
        // Nothing left this worker for a record that did not end here: a drop, marked so
        // that the sink's accounting of `seq` stays complete.
        if egress.forwarded == 0 && !self.ends_chain {
            egress
                .marker(EnvelopeKind::DropMarker, header)
                .map_err(|e| {
                    WorkerFailure::handing_on(format_args!("marking seq {} dropped", header.seq), e)
                })?;
        }
        Ok(())
    }
}

/// What one inbound batch saw.
#[derive(Default)]
pub(super) struct BatchStep {
    pub(super) completed: u64,
}

/// A duration in nanoseconds, saturating (a u64 of nanoseconds holds 584 years).
fn saturating_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
