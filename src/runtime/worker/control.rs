//! The worker's control side: state shared by its threads, the control thread (START_WORK,
//! STOP, a vanished supervisor) and the heartbeat thread (counters every `heartbeat_seconds`).

use crate::runtime::pipeline::RecordTrace;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::exit;
use crate::control::{
    ControlMessage, FailureCategory, FrameSender, MessageKind, ReadError, StopMode, WorkerCounters,
    WorkerSession,
};

/// STOP as the data loop sees it.
pub(super) const RUNNING: u8 = 0;
pub(super) const STOP_GRACEFUL: u8 = 1;
pub(super) const STOP_ABORT: u8 = 2;

/// State shared by the worker's threads.
pub(super) struct Shared {
    pub(super) worker_id: String,
    pub(super) tx: Mutex<FrameSender>,
    pub(super) session: Mutex<WorkerSession>,
    pub(super) started: (Mutex<bool>, Condvar),
    pub(super) stop: AtomicU8,
    pub(super) records_in: AtomicU64,
    /// The node figures the data thread publishes for the heartbeat.
    pub(super) nodes: crate::runtime::pipeline::PublishedNodes,
    /// Input bytes the source consumed (the worker that holds it).
    pub(super) input_bytes: Arc<AtomicU64>,
    pub(super) records_out: AtomicU64,
    /// Highest `seq` completed in order (the worker where records end: written and flushed).
    pub(super) completed: AtomicU64,
    /// Nanoseconds spent waiting on rings (idle inbound, full outbound) since START_WORK.
    pub(super) idle_ns: AtomicU64,
    /// The route cache's counters as of the last batch.
    pub(super) route_cache: Mutex<Vec<u64>>,
    pub(super) done: AtomicBool,
    /// STOP means "stop ingesting and drain" for the worker that holds the source, "stop at
    /// the next batch" for the others.
    pub(super) holds_source: AtomicBool,
}

impl Shared {
    pub(super) fn send(&self, message: &ControlMessage, correlation: u64) -> bool {
        match self.tx.lock() {
            Ok(mut tx) => tx.send(message, correlation).is_ok(),
            Err(_) => false,
        }
    }

    pub(super) fn is_started(&self) -> bool {
        self.started.0.lock().map(|s| *s).unwrap_or(false)
    }

    pub(super) fn add_idle(&self, waited: Duration) {
        self.idle_ns
            .fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
    }

    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) != RUNNING
    }

    /// The source's worker drains on a graceful STOP (SIGTERM semantics: everything read is
    /// finished); never when the run failed and was aborted.
    pub(super) fn drain_on_stop(&self) -> bool {
        self.holds_source.load(Ordering::Relaxed) && self.stop.load(Ordering::Relaxed) != STOP_ABORT
    }

    /// Blocks until STOP arrives (woken by the control thread, no polling).
    pub(super) fn wait_for_stop(&self) {
        let (lock, signal) = &self.started;
        let Ok(mut guard) = lock.lock() else { return };
        while !self.stopping() {
            match signal.wait_timeout(guard, Duration::from_secs(1)) {
                Ok((next, _)) => guard = next,
                Err(_) => return,
            }
        }
    }

    /// Waits for START_WORK (true) or STOP (false), at most `timeout`.
    pub(super) fn wait_for_start(&self, timeout: Duration) -> bool {
        let (lock, signal) = &self.started;
        let deadline = Instant::now() + timeout;
        let Ok(mut started) = lock.lock() else {
            return false;
        };
        while !*started && !self.stopping() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            match signal.wait_timeout(started, (deadline - now).min(Duration::from_millis(200))) {
                Ok((guard, _)) => started = guard,
                Err(_) => return false,
            }
        }
        *started
    }

    pub(super) fn fail(&self, category: FailureCategory, message: String) {
        self.fail_traced(category, message, None);
    }

    /// Reports a failure (logged with the record's trace, when it is about one).
    pub(super) fn fail_traced(
        &self,
        category: FailureCategory,
        message: String,
        trace: Option<RecordTrace>,
    ) {
        crate::runtime::pipeline::log_failure(&self.worker_id, category.as_str(), &message, trace);
        self.report_failure(category, message);
    }

    /// Tells the supervisor of a failure without logging it here.
    pub(super) fn report_failure(&self, category: FailureCategory, message: String) {
        self.send(&ControlMessage::Failed { category, message }, 0);
    }
}

/// After the work: waits for STOP (the supervisor sends it once every sink drained).
pub(super) fn exit_after_stop(shared: &Arc<Shared>) -> i32 {
    shared.wait_for_stop();
    exit::OK
}

/// Starts the thread that reads the supervisor's frames (an error: no thread could start).
pub(super) fn spawn_control_thread(
    mut rx: crate::control::FrameReceiver,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let thread = std::thread::Builder::new().name("sk-control".into());
    thread.spawn(move || {
        loop {
            match rx.recv(Duration::from_millis(500)) {
                Ok(received) => handle_control(&shared, received),
                Err(ReadError::TimedOut) => {}
                Err(ReadError::Rejected(e)) => {
                    tracing::warn!(worker_id = %shared.worker_id, "control frame rejected: {e}");
                }
                Err(ReadError::Closed | ReadError::Io(_)) => {
                    // The supervisor is gone: nothing may outlive it.
                    std::process::exit(exit::CONTROL);
                }
            }
        }
    })?;
    Ok(())
}

pub(super) fn handle_control(shared: &Arc<Shared>, received: crate::control::Received) {
    let correlation = received.header.correlation;
    match received.message {
        ControlMessage::StartWork { .. } => {
            let accepted = shared
                .session
                .lock()
                .map(|mut s| s.on_start_work())
                .unwrap_or(Ok(()));
            match accepted {
                Ok(()) => {
                    let (lock, signal) = &shared.started;
                    if let Ok(mut started) = lock.lock() {
                        *started = true;
                    }
                    signal.notify_all();
                    shared.send(
                        &ControlMessage::Ack {
                            kind: MessageKind::StartWork as u8,
                            correlation,
                        },
                        correlation,
                    );
                }
                Err(e) => tracing::warn!(worker_id = %shared.worker_id, "{e}"),
            }
        }
        ControlMessage::Stop { mode, .. } => {
            if let Ok(mut session) = shared.session.lock() {
                session.on_stop();
            }
            shared.send(
                &ControlMessage::Ack {
                    kind: MessageKind::Stop as u8,
                    correlation,
                },
                correlation,
            );
            if mode == StopMode::Forced {
                std::process::exit(exit::OK);
            }
            // Set under the lock the waiters sleep on, so none misses the notification.
            let stop = if mode == StopMode::Abort {
                STOP_ABORT
            } else {
                STOP_GRACEFUL
            };
            if let Ok(_guard) = shared.started.0.lock() {
                shared.stop.store(stop, Ordering::Relaxed);
            }
            shared.started.1.notify_all();
        }
        _ => {}
    }
}

/// Busy share between two heartbeats: wall time minus time spent waiting on rings.
#[derive(Default)]
pub(super) struct BusyMeter {
    pub(super) last: Option<(Instant, u64)>,
}

impl BusyMeter {
    pub(super) fn sample(&mut self, working: bool, idle_ns: u64) -> u32 {
        let now = Instant::now();
        let previous = self.last.replace((now, idle_ns));
        let (Some((then, idle_then)), true) = (previous, working) else {
            return 0;
        };
        let wall = now.duration_since(then).as_nanos().max(1) as u64;
        let idle = idle_ns.saturating_sub(idle_then).min(wall);
        ((wall - idle) * 1000 / wall) as u32
    }
}

/// Heartbeats carry the counters `/metrics` shows and the positions the run journal records,
/// so they go at least this often even when `heartbeat_seconds` is longer (the liveness
/// judgement still uses `heartbeat_seconds`).
const COUNTERS_REFRESH: Duration = Duration::from_millis(250);

/// Starts the heartbeat thread (an error: no thread could start).
pub(super) fn spawn_heartbeat_thread(
    interval: Duration,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let interval = interval.min(COUNTERS_REFRESH);
    let thread = std::thread::Builder::new().name("sk-heartbeat".into());
    thread.spawn(move || {
        let mut busy = BusyMeter::default();
        loop {
            let working = shared.is_started() && !shared.done.load(Ordering::Relaxed);
            let published = {
                let mut published = shared.nodes.lock();
                let marks = std::mem::take(&mut published.input_marks);
                (published.clone(), marks)
            };
            let (published, input_marks) = published;
            let counters = WorkerCounters {
                records_in: shared.records_in.load(Ordering::Relaxed),
                input_bytes: shared.input_bytes.load(Ordering::Relaxed),
                records_out: shared.records_out.load(Ordering::Relaxed),
                completed: shared.completed.load(Ordering::Relaxed),
                busy_per_mille: busy.sample(working, shared.idle_ns.load(Ordering::Relaxed)),
                route_cache: shared
                    .route_cache
                    .lock()
                    .map(|c| c.clone())
                    .unwrap_or_default(),
                nodes: published.nodes,
                latency_buckets: published.latency.to_vec(),
                latency_sum_ns: published.latency.sum_ns,
                input_marks,
                output_marks: published.output_marks,
            };
            let beat = ControlMessage::Heartbeat {
                worker_id: shared.worker_id.clone(),
                counters,
            };
            if !shared.send(&beat, 0) {
                std::process::exit(exit::CONTROL);
            }
            std::thread::sleep(interval);
        }
    })?;
    Ok(())
}
