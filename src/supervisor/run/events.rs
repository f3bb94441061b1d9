//! The event loop: one event at a time from the monitor threads (connections, frames, exits,
//! signals), the watchdog (start and heartbeat timeouts), failure handling and live metrics.
//! Every worker state change happens here, on the supervisor's thread.

use crate::observability::latency::LatencyHistogram;
use crate::observability::logging::LogValue;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{EXIT_GRACE, RunFailure, Supervisor};
use crate::control::{BootstrapBundle, ControlMessage, MessageKind, now_ms};
use crate::supervisor::health::{MetricsView, NodeMetrics, RingMetrics, WorkerMetrics};
use crate::supervisor::lifecycle::{EventKind, FailureCategory, LifecycleEvent, WorkerState};
use crate::supervisor::monitor::{Event, describe_exit, signal_name, spawn_reader};

impl Supervisor {
    fn index_of(&self, worker: &str) -> Option<usize> {
        self.records.iter().position(|r| r.id == worker)
    }

    fn lifecycle_level(&self) -> tracing::Level {
        crate::observability::logging::lifecycle_level(self.lifecycle_level)
    }

    fn record_event(&mut self, event: LifecycleEvent) {
        if self.lifecycle_enabled {
            let worker = event
                .worker_id
                .clone()
                .unwrap_or_else(|| "supervisor".into());
            let pid = event.pid.unwrap_or_else(std::process::id).to_string();
            let pairs = event
                .group
                .iter()
                .map(|g| ("group", LogValue::from(g.as_str())))
                .chain(event.fields.iter().map(|(k, v)| (*k, v.clone())))
                .collect::<Vec<_>>();
            let fields =
                crate::observability::logging::pack_fields(pairs.iter().map(|(k, v)| (*k, v)));
            let kind = event.kind.as_str();
            match self.lifecycle_level() {
                tracing::Level::DEBUG => {
                    tracing::debug!(target: "lifecycle", worker_id = %worker, pid = %pid, lifecycle_fields = %fields, "{kind}")
                }
                _ => {
                    tracing::info!(target: "lifecycle", worker_id = %worker, pid = %pid, lifecycle_fields = %fields, "{kind}")
                }
            }
        }
        self.log.push(event);
    }

    pub(super) fn emit_worker(
        &mut self,
        index: usize,
        kind: EventKind,
        fields: Vec<(&'static str, LogValue)>,
    ) {
        let record = &self.records[index];
        let event = LifecycleEvent {
            ts: now_ms(),
            kind,
            worker_id: Some(record.id.clone()),
            group: Some(record.group.clone()),
            pid: record.pid,
            fields,
        };
        self.record_event(event);
    }

    pub(super) fn emit_phase(&mut self, kind: EventKind, since: Instant) {
        let event = LifecycleEvent {
            ts: now_ms(),
            kind,
            worker_id: None,
            group: None,
            pid: Some(std::process::id()),
            fields: vec![(
                "duration_ms",
                LogValue::UInt(since.elapsed().as_millis() as u64),
            )],
        };
        self.record_event(event);
    }

    /// Waits at most `timeout` for one event and applies it; then runs the watchdog.
    pub fn pump(&mut self, timeout: Duration) {
        match self.events.recv_timeout(timeout) {
            Ok(event) => self.apply(event),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {}
        }
        // Apply everything else already queued before judging timeouts.
        while let Ok(event) = self.events.try_recv() {
            self.apply(event);
        }
        self.watchdog();
        self.watch_bridge();
        if let Some(journal) = self.journal.as_mut() {
            journal.tick();
        }
        if self
            .external_stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
            && self.stop_signal.is_none()
        {
            self.stop_signal = Some(None);
        }
        self.refresh_metrics();
    }

    /// A failed edge to another host fails the run, named after the local worker at its ring.
    fn watch_bridge(&mut self) {
        if self.failure.is_some() {
            return;
        }
        if let Some(failure) = self
            .bridge
            .as_ref()
            .and_then(crate::cross_host::Bridge::failure)
        {
            let category = if failure.refused {
                FailureCategory::CrossHostRefused
            } else {
                FailureCategory::CrossHost
            };
            self.fail(&failure.worker, category, failure.detail);
        }
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Accepted(accepted) => self.on_accepted(*accepted),
            Event::Refused(detail) => {
                // A flood of bad connections must not flood the log: the first few are
                // logged, then one line per hundred.
                self.refused_connections += 1;
                let n = self.refused_connections;
                if n <= 5 || n.is_multiple_of(100) {
                    tracing::warn!(
                        worker_id = "supervisor",
                        refused = n,
                        "control connection refused: {detail}"
                    );
                }
            }
            Event::Frame { worker, received } => self.on_frame(&worker, *received),
            Event::ControlProblem {
                worker,
                detail,
                closed,
            } => {
                if closed && let Some(index) = self.index_of(&worker) {
                    self.records[index].connected = false;
                    // Every frame the worker sent before dying has now been applied.
                    if let Some((status, at)) = self.records[index].pending_exit.take() {
                        self.judge_exit(index, status, at);
                    }
                }
                // A closed connection is judged by the reaper (exit status); a rejected frame
                // on an authenticated connection is a control error.
                if !closed || detail != "control connection closed" {
                    let stopping = self.index_of(&worker).is_some_and(|i| {
                        matches!(
                            self.records[i].state,
                            WorkerState::Stopping | WorkerState::Stopped
                        )
                    });
                    if !stopping && !detail.starts_with("control connection") {
                        self.fail(&worker, FailureCategory::ControlError, detail);
                    }
                }
            }
            Event::Exited { worker, status, at } => self.on_exit(&worker, status, at),
            Event::Signal(signal) => self.on_signal(signal),
        }
    }

    fn on_accepted(&mut self, accepted: crate::control::Accepted) {
        let worker = accepted.worker_id.clone();
        let Some(index) = self.index_of(&worker) else {
            return;
        };
        if let Err(e) = self.sessions.on_hello(&worker) {
            tracing::warn!(worker_id = %worker, "{e}");
            accepted.endpoint.tx.close();
            return;
        }
        let (tx, rx) = accepted.endpoint.split();
        self.records[index].connected = true;
        if let Err(e) = spawn_reader(worker.clone(), rx, self.events_tx.clone()) {
            self.fail(&worker, FailureCategory::ControlError, e.to_string());
            return;
        }
        self.senders.insert(worker.clone(), tx);
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        if let Err(e) = self.sessions.send_bootstrap(&worker, correlation) {
            self.fail(&worker, FailureCategory::ControlError, e.to_string());
            return;
        }
        let record = &self.records[index];
        let plan = &self.plans[index];
        let bundle = ControlMessage::BootstrapBundle(BootstrapBundle {
            group: record.group.clone(),
            worker_index: record.index,
            workers: self
                .records
                .iter()
                .filter(|r| r.group == record.group)
                .count() as u32,
            config_yaml: self.config_yaml.clone(),
            node_names: plan.nodes.clone(),
            rings: plan.rings.clone(),
            telemetry: self.telemetry.as_ref().and_then(|t| t.binding(index)),
            run_id: self.run_id,
            skip: self.resume.after,
            resume_lengths: self
                .resume
                .output_lengths
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            resume_positions: self
                .resume
                .input_positions
                .iter()
                .map(|c| crate::runtime::resume::mark_of(*c))
                .collect(),
            correlation,
        });
        self.send(&worker, &bundle, correlation);
    }

    pub(super) fn send(
        &mut self,
        worker: &str,
        message: &ControlMessage,
        correlation: u64,
    ) -> bool {
        let Some(tx) = self.senders.get_mut(worker) else {
            return false;
        };
        match tx.send(message, correlation) {
            Ok(()) => true,
            Err(e) => {
                let stopping = self.index_of(worker).is_some_and(|i| {
                    matches!(
                        self.records[i].state,
                        WorkerState::Stopping | WorkerState::Stopped | WorkerState::Failed
                    )
                });
                if !stopping {
                    self.fail(
                        worker,
                        FailureCategory::ControlError,
                        format!("cannot send {}: {e}", message.kind()),
                    );
                }
                false
            }
        }
    }

    fn on_frame(&mut self, worker: &str, received: crate::control::Received) {
        let Some(index) = self.index_of(worker) else {
            return;
        };
        match received.message {
            ControlMessage::Ack { kind, correlation } => {
                let Some(kind) = MessageKind::from_u8(kind) else {
                    return;
                };
                if let Err(e) = self.sessions.on_ack(worker, kind, correlation) {
                    self.fail(worker, FailureCategory::ControlError, e.to_string());
                    return;
                }
                match kind {
                    MessageKind::BootstrapBundle => {
                        self.emit_worker(
                            index,
                            EventKind::WorkerBootstrapLoaded,
                            vec![("correlation_id", LogValue::UInt(correlation))],
                        );
                    }
                    MessageKind::StartWork => {
                        self.records[index].state = WorkerState::Running;
                        self.records[index].last_heartbeat = Some(Instant::now());
                        self.emit_worker(index, EventKind::WorkerRunning, Vec::new());
                    }
                    _ => {}
                }
            }
            ControlMessage::Ready { .. } => {
                if let Err(e) = self.sessions.on_ready(worker) {
                    self.fail(worker, FailureCategory::ControlError, e.to_string());
                    return;
                }
                let record = &mut self.records[index];
                record.state = WorkerState::Ready;
                record.last_heartbeat = Some(Instant::now());
                let startup_ms = record.spawned_at.map_or(0, |t| t.elapsed().as_millis());
                self.emit_worker(
                    index,
                    EventKind::WorkerReady,
                    vec![("startup_ms", LogValue::UInt(startup_ms as u64))],
                );
            }
            ControlMessage::Heartbeat { mut counters, .. } => {
                // The marks go to the journal, not into the record's counters.
                let input_marks = std::mem::take(&mut counters.input_marks);
                let output_marks = std::mem::take(&mut counters.output_marks);
                let record = &mut self.records[index];
                record.last_heartbeat = Some(Instant::now());
                if let (true, Some(progress)) = (record.holds_source, &self.progress) {
                    progress
                        .records
                        .store(counters.records_in, Ordering::Relaxed);
                    progress
                        .input_bytes
                        .store(counters.input_bytes, Ordering::Relaxed);
                }
                record.counters = counters;
                self.note_marks(&input_marks, &output_marks);
            }
            ControlMessage::Drained {
                last_seq,
                records,
                report,
                input_marks,
                output_mark,
            } => {
                let record = &mut self.records[index];
                record.drained = true;
                // The end-of-run count is final: a short run may end before any heartbeat.
                record.counters.records_in = record.counters.records_in.max(records);
                if let (true, Some(progress)) = (record.holds_source, &self.progress) {
                    progress.records.fetch_max(records, Ordering::Relaxed);
                    // The bytes through the last record read: a bar stops where the run did,
                    // not at the last heartbeat's figure.
                    let read = input_marks.iter().map(|m| m.bytes).max().unwrap_or(0);
                    progress.input_bytes.fetch_max(read, Ordering::Relaxed);
                }
                self.note_marks(&input_marks, output_mark.as_slice());
                self.drained
                    .insert(worker.to_string(), (last_seq, records, report));
            }
            ControlMessage::Failed { category, message } => {
                self.fail(worker, category, message);
            }
            other => {
                self.fail(
                    worker,
                    FailureCategory::ControlError,
                    format!("unexpected {} from a worker", other.kind()),
                );
            }
        }
    }

    fn on_exit(&mut self, worker: &str, status: std::process::ExitStatus, at: Instant) {
        let Some(index) = self.index_of(worker) else {
            return;
        };
        if self.records[index].connected {
            // Its last frames (a FAILED saying why) may still be in the socket: judge the exit
            // once the reader reaches the end of the connection (or after a short grace).
            self.records[index].pending_exit = Some((status, at));
            return;
        }
        self.judge_exit(index, status, at);
    }

    /// Records a reaped worker: a stop it was asked for, or a failure by exit status.
    fn judge_exit(&mut self, index: usize, status: std::process::ExitStatus, at: Instant) {
        let worker = self.records[index].id.clone();
        let worker = worker.as_str();
        let exit = describe_exit(&status);
        let record = &mut self.records[index];
        record.exit = Some(exit.clone());
        let lifetime_ms = record
            .spawned_at
            .map_or(0, |t| at.duration_since(t).as_millis());
        // Told to stop, or done: a worker that reported DRAINED and exits cleanly (a source's
        // worker drains and ends on the STOP that interrupts its input) did what it was for.
        let expected =
            record.state == WorkerState::Stopping || (record.drained && status.success());
        let failed_before = record.state == WorkerState::Failed;
        if !expected && !failed_before {
            use std::os::unix::process::ExitStatusExt;
            let (category, detail) = match status.signal() {
                Some(signal) => (
                    FailureCategory::Crashed,
                    format!("killed by {}", signal_name(signal)),
                ),
                // Never said HELLO: the program did not become a worker when started as one.
                None if record.state == WorkerState::Starting && record.pid.is_some() => (
                    FailureCategory::Exited,
                    format!(
                        "{exit} before connecting to its supervisor: its program ({}) must call stream_kernel::worker_entry first thing in main (workers are the program started again, without arguments)",
                        self.worker_exe
                    ),
                ),
                None => (FailureCategory::Exited, format!("unexpected {exit}")),
            };
            self.fail(worker, category, detail);
        }
        let record = &mut self.records[index];
        if record.state != WorkerState::Failed {
            record.state = WorkerState::Stopped;
        }
        let mode = record.stop_mode.unwrap_or("none");
        self.emit_worker(
            index,
            EventKind::WorkerStopped,
            vec![
                ("mode", mode.into()),
                ("exit", exit.into()),
                ("duration_ms", LogValue::UInt(lifetime_ms as u64)),
            ],
        );
    }

    fn on_signal(&mut self, signal: i32) {
        let interrupt = signal == signal_hook::consts::SIGINT;
        if interrupt && self.stop_signal == Some(Some(signal)) {
            self.force_requested = true;
        }
        if self.stop_signal.is_none() {
            self.stop_signal = Some(Some(signal));
        }
    }

    /// Input positions and output lengths from the workers go to the journal, which pairs
    /// them by record.
    fn note_marks(
        &mut self,
        inputs: &[crate::control::InputMark],
        outputs: &[crate::control::OutputMark],
    ) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        for mark in inputs {
            journal.input(crate::runtime::resume::checkpoint_of(mark));
        }
        for mark in outputs {
            let lengths = mark
                .outputs
                .iter()
                .map(|o| crate::files::journal::OutputLength {
                    key: o.key.clone(),
                    path: o.path.clone(),
                    bytes: o.bytes,
                })
                .collect();
            journal.outputs_at(mark.seq, lengths);
        }
    }

    /// Marks `worker` failed (first failure of the run is kept) and emits `worker_failed`.
    pub(super) fn fail(&mut self, worker: &str, category: FailureCategory, detail: String) {
        let Some(index) = self.index_of(worker) else {
            return;
        };
        let record = &mut self.records[index];
        if matches!(record.state, WorkerState::Failed | WorkerState::Stopped) {
            return;
        }
        record.state = WorkerState::Failed;
        record.failure = Some((category, detail.clone()));
        *self.failure_counts.entry(category).or_default() += 1;
        if self.failure.is_none() {
            self.failure = Some(RunFailure {
                worker: worker.to_string(),
                group: record.group.clone(),
                category,
                detail: detail.clone(),
            });
        }
        self.emit_worker(
            index,
            EventKind::WorkerFailed,
            vec![
                ("category", category.as_str().into()),
                ("detail", detail.into()),
            ],
        );
        if category == FailureCategory::HeartbeatTimeout {
            // Judged dead: it would not hear a STOP, so waiting for one only delays the end.
            self.kill(index);
        }
    }

    /// SIGKILL to worker `index` if it is still alive.
    fn kill(&mut self, index: usize) {
        let record = &mut self.records[index];
        if record.exit.is_some() {
            return;
        }
        record.stop_mode = Some("forced");
        if let Some(pid) = record.pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// Start timeouts, heartbeat timeouts, and exits whose connection never closed.
    fn watchdog(&mut self) {
        let now = Instant::now();
        self.discount_own_pause(now);
        for index in 0..self.records.len() {
            if let Some((status, at)) = self.records[index].pending_exit
                && now.duration_since(at) > EXIT_GRACE
            {
                self.records[index].pending_exit = None;
                self.records[index].connected = false;
                self.judge_exit(index, status, at);
            }
        }
        let mut late: Vec<(String, FailureCategory, String)> = Vec::new();
        for (record, plan) in self.records.iter().zip(&self.plans) {
            match record.state {
                WorkerState::Starting => {
                    if let Some(spawned) = record.spawned_at
                        && now.duration_since(spawned) > plan.start_timeout
                    {
                        late.push((
                            record.id.clone(),
                            FailureCategory::StartTimeout,
                            format!("no READY within {:.1} s", plan.start_timeout.as_secs_f64()),
                        ));
                    }
                }
                WorkerState::Ready | WorkerState::Running => {
                    let limit = plan.heartbeat * 3;
                    if let Some(last) = record.last_heartbeat
                        && now.duration_since(last) > limit
                        && !record.drained
                    {
                        late.push((
                            record.id.clone(),
                            FailureCategory::HeartbeatTimeout,
                            format!(
                                "no heartbeat for {} ms (limit {} ms)",
                                now.duration_since(last).as_millis(),
                                limit.as_millis()
                            ),
                        ));
                    }
                }
                _ => {}
            }
        }
        for (worker, category, detail) in late {
            self.fail(&worker, category, detail);
        }
    }

    /// The loop runs every few milliseconds; a much longer gap since its last round means the
    /// supervisor itself did not run (the whole process group stopped with SIGSTOP or a
    /// terminal's Ctrl-Z, the machine suspended). Heartbeats could not be read meanwhile, so
    /// that time is not held against any worker: their clocks move on by the gap.
    fn discount_own_pause(&mut self, now: Instant) {
        const OWN_PAUSE: Duration = Duration::from_secs(1);
        let Some(last) = self.last_watch.replace(now) else {
            return;
        };
        let gap = now.saturating_duration_since(last);
        if gap < OWN_PAUSE {
            return;
        }
        tracing::info!(
            worker_id = "supervisor",
            "the supervisor did not run for {} ms (stopped or suspended): heartbeat and start deadlines move on by as much",
            gap.as_millis()
        );
        for record in &mut self.records {
            record.last_heartbeat = record.last_heartbeat.map(|t| t + gap);
            record.spawned_at = record.spawned_at.map(|t| t + gap);
        }
    }

    pub(super) fn refresh_metrics(&mut self) {
        // Depths come from shared memory a crashing peer may have scribbled on: bounded by the
        // ring's size, summed without overflow.
        let capacity = self.config.runtime.platform.execution_ipc.ring_bytes;
        for (ring, sample) in self.rings.iter().zip(self.ring_samples.iter_mut()) {
            let depth = crate::data::read_depth(&ring.segment).min(capacity);
            let at = self.launched_at.elapsed().as_millis() as u64;
            sample.peak = sample.peak.max(depth);
            sample.sum = sample.sum.saturating_add(depth);
            sample.count += 1;
            sample.depth.record(at, depth);
            sample
                .records
                .record(at, crate::data::read_counts(&ring.segment).0);
        }
        let view = MetricsView {
            workers: self
                .records
                .iter()
                .map(|r| WorkerMetrics {
                    worker: r.id.clone(),
                    group: r.group.clone(),
                    state: r.state.as_str(),
                    records_in: r.counters.records_in,
                    records_out: r.counters.records_out,
                    busy_ratio: f64::from(r.counters.busy_per_mille) / 1000.0,
                    pid: r.pid,
                    process: None,
                })
                .collect(),
            restarts: 0,
            control_rejections: self
                .server
                .metrics()
                .snapshot()
                .into_iter()
                .map(|(k, v)| (k.as_str(), v))
                .collect(),
            failures: FailureCategory::ALL
                .iter()
                .map(|c| (c.as_str(), self.failure_counts.get(c).copied().unwrap_or(0)))
                .collect(),
            rings: self
                .rings
                .iter()
                .map(|r| RingMetrics {
                    edge: r.name.clone(),
                    occupancy_bytes: crate::data::read_depth(&r.segment).min(capacity),
                    capacity_bytes: capacity,
                    records: crate::data::read_counts(&r.segment).0,
                })
                .collect(),
            route_cache: self.route_cache_counters(),
            spans: self
                .telemetry
                .as_ref()
                .map(|t| t.counters())
                .unwrap_or_default()
                .iter()
                .flat_map(|c| {
                    [
                        (c.kind.clone(), "produced", c.produced),
                        (c.kind.clone(), "exported", c.exported),
                        (c.kind.clone(), "dropped", c.dropped),
                        (c.kind.clone(), "failed", c.failed),
                    ]
                })
                .collect(),
            supervisor: None,
            nodes: node_metrics(&self.records),
            latency: self
                .records
                .iter()
                .fold(LatencyHistogram::default(), |mut sum, r| {
                    sum.merge(&LatencyHistogram::from_parts(
                        &r.counters.latency_buckets,
                        r.counters.latency_sum_ns,
                    ));
                    sum
                }),
        };
        if let Ok(mut metrics) = self.health_state.metrics.lock() {
            *metrics = view;
        }
    }
}

/// Per (group, node): the figures of the group's workers summed.
fn node_metrics(records: &[crate::supervisor::lifecycle::WorkerRecord]) -> Vec<NodeMetrics> {
    let mut nodes: Vec<NodeMetrics> = Vec::new();
    for record in records {
        for count in &record.counters.nodes {
            let at = match nodes
                .iter()
                .position(|n| n.node == count.node && n.group == record.group)
            {
                Some(at) => at,
                None => {
                    nodes.push(NodeMetrics {
                        node: count.node.clone(),
                        group: record.group.clone(),
                        ..NodeMetrics::default()
                    });
                    nodes.len() - 1
                }
            };
            let node = &mut nodes[at];
            node.records_in += count.records_in;
            node.records_out += count.records_out;
            node.errors += count.errors;
            for (name, value) in &count.counters {
                match node.counters.iter_mut().find(|(n, _)| n == name) {
                    Some((_, total)) => *total += value,
                    None => node.counters.push((name.clone(), *value)),
                }
            }
            crate::graph::Outcome::sum_into(&mut node.outcomes, &count.outcomes);
        }
    }
    nodes
}
