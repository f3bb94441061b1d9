//! The run's phases in order: readiness gate, START_WORK, run until the sinks drain (with the
//! accounting check), and stopping — gracefully, by draining, or by force.

use crate::observability::logging::LogValue;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{RunEnd, Supervisor, SupervisorError};
use crate::control::{ControlMessage, StopMode, now_ms};
use crate::supervisor::health::{notify_ready, notify_stopping};
use crate::supervisor::lifecycle::{EventKind, FailureCategory, WorkerState};

impl Supervisor {
    fn all_in(&self, states: &[WorkerState]) -> bool {
        self.records.iter().all(|r| states.contains(&r.state))
    }

    /// Waits until every worker is READY. Fails at once when a worker fails, and at
    /// `readiness_timeout_seconds` naming every worker that is not ready and its state.
    pub fn wait_ready(&mut self) -> Result<(), SupervisorError> {
        let started = Instant::now();
        let timeout = Duration::from_secs_f64(
            self.config
                .runtime
                .platform
                .readiness
                .readiness_timeout_seconds,
        );
        loop {
            if let Some(failure) = &self.failure {
                return Err(SupervisorError::WorkerFailed(failure.clone()));
            }
            if self.all_in(&[WorkerState::Ready, WorkerState::Running]) {
                self.emit_phase(EventKind::SupervisorWaitReady, started);
                return Ok(());
            }
            if started.elapsed() >= timeout {
                let laggards = self
                    .records
                    .iter()
                    .filter(|r| r.state != WorkerState::Ready)
                    .map(|r| (r.id.clone(), r.state))
                    .collect();
                return Err(SupervisorError::NotReady {
                    waited_ms: started.elapsed().as_millis(),
                    laggards,
                });
            }
            self.pump(Duration::from_millis(20));
        }
    }

    /// Opens the readiness gate and sends START_WORK to every worker.
    pub fn start_work(&mut self) -> Result<(), SupervisorError> {
        let started = Instant::now();
        let required = self.sessions.start_work()?;
        self.health_state.gate_open.store(true, Ordering::Relaxed);
        notify_ready();
        self.work_started_at = Some(Instant::now());
        let workers: Vec<String> = self.records.iter().map(|r| r.id.clone()).collect();
        for worker in &workers {
            let correlation = self.next_correlation;
            self.next_correlation += 1;
            let message = ControlMessage::StartWork {
                required: required.clone(),
            };
            self.send(worker, &message, correlation);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.all_in(&[WorkerState::Running, WorkerState::Stopped])
            && self.failure.is_none()
            && Instant::now() < deadline
        {
            self.pump(Duration::from_millis(10));
        }
        self.emit_phase(EventKind::SupervisorStartWorkload, started);
        // The gate is open: a failure from here on belongs to the run, which
        // `run_until_done` reports with its accounting.
        Ok(())
    }

    /// Runs until every worker drained, a worker fails, or a stop is requested. A drained run
    /// is checked before it counts as one: the sinks must have completed exactly what the
    /// source read, or the run fails as `ring_corrupted` naming the records in no output.
    pub fn run_until_done(&mut self) -> RunEnd {
        loop {
            if let Some(failure) = &self.failure {
                return RunEnd::Failed(failure.clone());
            }
            if let Some(signal) = self.stop_signal {
                return RunEnd::Interrupted(signal);
            }
            if self.all_drained() {
                self.check_accounting();
                return match &self.failure {
                    Some(failure) => RunEnd::Failed(failure.clone()),
                    None => RunEnd::Drained,
                };
            }
            self.pump(Duration::from_millis(50));
        }
    }

    /// Every worker drained, and every edge to or from another host carried its end of stream.
    pub(super) fn all_drained(&self) -> bool {
        self.records
            .iter()
            .all(|r| self.drained.contains_key(&r.id))
            && self
                .bridge
                .as_ref()
                .is_none_or(crate::cross_host::Bridge::finished)
    }

    /// Every record the source read must be completed by the sinks (written, dead-lettered
    /// or dropped on purpose): end of stream is proven by the counts, never assumed.
    fn check_accounting(&mut self) {
        let read = self
            .records
            .iter()
            .filter(|r| r.holds_source)
            .filter_map(|r| self.drained.get(&r.id).map(|(last, _, _)| *last))
            .max();
        // Records submitted by an embedding host are accounted for by its replies.
        let Some(read) = read else { return };
        let completed = self.completed_through();
        if completed == read {
            return;
        }
        let Some(sink) = self
            .records
            .iter()
            .find(|r| r.ends_chain)
            .map(|r| r.id.clone())
        else {
            return;
        };
        let detail = if completed < read {
            format!(
                "the source read through seq {read} but the sinks completed through seq {completed}: records {} to {read} reached no output",
                completed + 1
            )
        } else {
            format!(
                "the sinks report seq {completed} complete, beyond what the source read (seq {read})"
            )
        };
        self.fail(&sink, FailureCategory::RingCorrupted, detail);
    }

    /// An interrupted run (SIGTERM, SIGINT, stop request): the workers holding sources stop
    /// ingesting at their next record and end-of-stream drains the pipeline; once every sink
    /// reported DRAINED (or the largest stop timeout passed, or a second SIGINT), everyone stops.
    pub fn drain_then_stop(&mut self) {
        let stop_timeout = self.largest_stop_timeout();
        let deadline_ms = now_ms() + stop_timeout.as_millis() as u64;
        self.health_state.stopping.store(true, Ordering::Relaxed);
        let sources: Vec<usize> = (0..self.records.len())
            .filter(|i| self.records[*i].holds_source && self.records[*i].exit.is_none())
            .collect();
        for index in sources {
            let worker = self.records[index].id.clone();
            let correlation = self.next_correlation;
            self.next_correlation += 1;
            self.send(
                &worker,
                &ControlMessage::Stop {
                    mode: StopMode::Graceful,
                    deadline_ms,
                },
                correlation,
            );
        }
        let deadline = Instant::now() + stop_timeout;
        while !self.last_group_drained()
            && self.failure.is_none()
            && !self.force_requested
            && Instant::now() < deadline
        {
            self.pump(Duration::from_millis(5));
        }
        self.stop_all();
    }

    /// Stops every worker: STOP (graceful) to those that can hear it, then SIGKILL to whoever
    /// is alive after the largest `stop_timeout_seconds` (or at once after a second SIGINT).
    pub fn stop_all(&mut self) {
        self.health_state.stopping.store(true, Ordering::Relaxed);
        notify_stopping();
        let graceful_started = Instant::now();
        let stop_timeout = self.largest_stop_timeout();
        let deadline_ms = now_ms() + stop_timeout.as_millis() as u64;
        let mut immediate: Vec<usize> = Vec::new();
        for index in 0..self.records.len() {
            let record = &self.records[index];
            // Gone, or already killed (judged dead): nothing to ask.
            if record.exit.is_some() || record.stop_mode == Some("forced") {
                continue;
            }
            // A worker that never said READY runs no control thread yet: it cannot hear STOP.
            let can_hear = matches!(
                self.sessions.phase(&record.id),
                Some(
                    crate::control::session::SupervisorPhase::Ready
                        | crate::control::session::SupervisorPhase::Running
                )
            );
            if !can_hear {
                immediate.push(index);
                continue;
            }
            let worker = record.id.clone();
            if record.state != WorkerState::Failed {
                self.records[index].state = WorkerState::Stopping;
            }
            self.records[index].stop_mode = Some("graceful");
            self.emit_worker(
                index,
                EventKind::WorkerStopping,
                vec![("mode", LogValue::from("graceful"))],
            );
            let correlation = self.next_correlation;
            self.next_correlation += 1;
            // A failed run is not drained: a crashed peer may leave a ring that never
            // empties, and the source's worker would wait on it until killed.
            let mode = if self.failure.is_some() {
                StopMode::Abort
            } else {
                StopMode::Graceful
            };
            self.send(
                &worker,
                &ControlMessage::Stop { mode, deadline_ms },
                correlation,
            );
        }
        let deadline = Instant::now() + stop_timeout;
        while !immediate.is_empty() || self.records.iter().any(|r| r.exit.is_none()) {
            if !immediate.is_empty() || self.force_requested || Instant::now() >= deadline {
                break;
            }
            self.pump(Duration::from_millis(5));
        }
        self.emit_phase(EventKind::SupervisorGracefulStop, graceful_started);
        if self.records.iter().any(|r| r.exit.is_none()) {
            self.force_stop();
        }
        self.acceptor_shutdown.store(true, Ordering::Relaxed);
        self.health_state.gate_open.store(false, Ordering::Relaxed);
    }

    fn force_stop(&mut self) {
        let started = Instant::now();
        for index in 0..self.records.len() {
            if self.records[index].exit.is_some() {
                continue;
            }
            if self.records[index].state != WorkerState::Failed {
                self.records[index].state = WorkerState::Stopping;
            }
            self.records[index].stop_mode = Some("forced");
            self.emit_worker(
                index,
                EventKind::WorkerStopping,
                vec![("mode", LogValue::from("forced"))],
            );
            if let Some(pid) = self.records[index].pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.records.iter().any(|r| r.exit.is_none()) && Instant::now() < deadline {
            self.pump(Duration::from_millis(5));
        }
        self.emit_phase(EventKind::SupervisorForceStop, started);
    }
}
