//! The supervisor's loop: launch, readiness gate, start, run, stop.
//!
//! Worker state machine (changed only here): `starting` (spawned, handshaking) -> `ready`
//! (READY received) -> `running` (START_WORK acknowledged) -> `stopping` (STOP sent) ->
//! `stopped` (reaped), and `failed` from any state with a [`FailureCategory`]. Monitor threads
//! report; [`Supervisor::pump`] applies one event at a time and runs the watchdog (start
//! timeouts, heartbeat timeouts), so every decision happens on one thread in one order.
//!
//! Any worker failure fails the run: the others are stopped gracefully, then forcibly after the
//! largest `stop_timeout_seconds`. Every spawned worker is stopped on every exit path.
//!
//! Rooms: this file holds the run's types, launch and queries; `plan` decides workers and
//! rings, `events` is the loop, `phases` the ready/start/run/stop sequence, `report` the
//! summary, `error` the error type.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::health::{HealthServer, HealthState};
use super::lifecycle::{
    EventKind, FailureCategory, LifecycleEvent, Snapshot, WorkerRecord, snapshot_of,
};
use super::monitor::{Event, spawn_acceptor, spawn_reaper, spawn_signal_thread};
use super::spawn::{WorkerLaunch, current_exe, spawn_worker};
use crate::config::{Config, LifecycleLevel};
use crate::control::{
    ControlListener, ControlServer, DrainReport, EndpointSettings, FrameSender, KeyDirectory,
    MasterKey, RingBinding, SupervisorSessions,
};
use crate::graph::{Graph, Registry};
use crate::runtime::RunSummary;

mod error;
mod events;
mod phases;
mod plan;
mod report;

pub use error::SupervisorError;
pub(crate) use plan::HostEnd;
use plan::{plan_rings, plan_workers};

/// How long a reaped worker's connection may stay open before its exit is judged anyway.
const EXIT_GRACE: Duration = Duration::from_millis(200);

/// How a supervised run is set up.
#[derive(Debug, Clone, Default)]
pub struct SupervisorOptions {
    /// Executable to spawn workers from (default: this process's own binary, which must call
    /// [`crate::worker_entry`] first thing in `main`).
    pub worker_exe: Option<PathBuf>,
    /// Turn SIGTERM / SIGINT into a graceful stop (a second SIGINT forces it). The CLI does.
    pub handle_signals: bool,
    /// Set to request a graceful stop from another thread.
    pub stop: Option<Arc<AtomicBool>>,
    /// The caller is an embedding host (see [`crate::supervisor::Runtime`]): when the pipeline
    /// has no source, plan a ring from the host into each worker of the first group; when its
    /// last node is not a sink, a ring from each worker of the last group back to the host.
    pub host_rings: bool,
    /// Where a resumed run resumes (`--resume`, `--skip N`): records through `resume.after`
    /// are replayed, not written again; the input is checked against the journal's
    /// positions. Empty: a fresh run.
    pub resume: crate::runtime::resume::ResumePlan,
    /// The run journal a resumed run continues (`None`: a fresh journal).
    pub journal: Option<crate::files::journal::Journal>,
    /// Updated from the source worker's heartbeats (at least once a second): records read and
    /// input bytes consumed, for progress bars.
    pub progress: Option<Arc<crate::runtime::RunProgress>>,
    /// The host this supervisor runs (`run --host NAME`), when the config places groups on
    /// hosts: only that host's groups are spawned; edges to other hosts go through the bridge.
    pub host: Option<String>,
    /// The run's identity across hosts (default: [`crate::cross_host::run_key`]).
    pub run_id: Option<String>,
}

/// What the supervisor samples of one ring while the run goes: peak, sum and count of the
/// depths, and the depth and record count over time.
#[derive(Debug, Clone, Default)]
pub(super) struct RingSamples {
    pub(super) peak: u64,
    pub(super) sum: u64,
    pub(super) count: u64,
    pub(super) depth: crate::runtime::Timeline,
    pub(super) records: crate::runtime::Timeline,
}

/// The first worker failure of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFailure {
    /// The worker.
    pub worker: String,
    /// Its group.
    pub group: String,
    /// Why it failed.
    pub category: FailureCategory,
    /// What failed.
    pub detail: String,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Every sink drained its input.
    Drained,
    /// A worker failed.
    Failed(RunFailure),
    /// Stopped by a signal (SIGTERM / SIGINT) or a stop request (`None`).
    Interrupted(Option<i32>),
}

/// What a supervised run reports.
#[derive(Debug, Clone)]
pub struct SupervisedRun {
    /// How the run ended.
    pub end: RunEnd,
    /// What the run did.
    pub summary: RunSummary,
    /// Highest `seq` every sink completed in order (written, dead-lettered or dropped).
    pub completed_through: u64,
    /// Highest `seq` the source read.
    pub source_last_seq: u64,
    /// Every lifecycle event, in order.
    pub events: Vec<LifecycleEvent>,
    /// What the hand-off to and from other hosts moved (a run with edges to other hosts).
    pub cross_host: Option<crate::cross_host::BridgeCounts>,
}

impl SupervisedRun {
    /// Milliseconds of a supervisor phase (`supervisor_wait_ready`, ...), from its event.
    pub fn phase_ms(&self, kind: EventKind) -> Option<u64> {
        self.events
            .iter()
            .find(|e| e.kind == kind)
            .and_then(|e| e.number("duration_ms"))
    }

    /// Spawn of the first worker to READY of the last: the start-groups and wait-ready phases.
    pub fn startup_ms(&self) -> Option<u64> {
        Some(
            self.phase_ms(EventKind::SupervisorStartGroups)?
                + self.phase_ms(EventKind::SupervisorWaitReady)?,
        )
    }
}

/// A worker the supervisor plans to run.
#[derive(Debug, Clone)]
struct WorkerPlan {
    nodes: Vec<String>,
    heartbeat: Duration,
    start_timeout: Duration,
    stop_timeout: Duration,
    cpus: Option<Vec<u32>>,
    rings: Vec<RingBinding>,
    inherit: Vec<i32>,
    /// The worker reads the supervisor's stdin (it holds a source whose adapter is stdin).
    stdin: bool,
}

/// A supervised run in progress.
pub struct Supervisor {
    config: Config,
    config_yaml: String,
    records: Vec<WorkerRecord>,
    plans: Vec<WorkerPlan>,
    server: Arc<ControlServer>,
    events: Receiver<Event>,
    events_tx: Sender<Event>,
    senders: HashMap<String, FrameSender>,
    sessions: SupervisorSessions,
    log: Vec<LifecycleEvent>,
    health_state: Arc<HealthState>,
    health: Option<HealthServer>,
    acceptor_shutdown: Arc<AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
    signals: Option<signal_hook::iterator::Handle>,
    external_stop: Option<Arc<AtomicBool>>,
    progress: Option<Arc<crate::runtime::RunProgress>>,
    run_id: u64,
    /// Where a resumed run resumes.
    resume: crate::runtime::resume::ResumePlan,
    /// The run journal (this host writes the sink's file).
    journal: Option<crate::runtime::journal::JournalKeeper>,
    /// Control connections refused so far (bad HELLO, idle, garbage).
    refused_connections: u64,
    next_correlation: u64,
    failure: Option<RunFailure>,
    stop_signal: Option<Option<i32>>,
    force_requested: bool,
    /// Per worker that drained: its last completed `seq`, records, and end-of-run report.
    drained: BTreeMap<String, (u64, u64, DrainReport)>,
    lifecycle_enabled: bool,
    lifecycle_level: LifecycleLevel,
    work_started_at: Option<Instant>,
    failure_counts: HashMap<FailureCategory, u64>,
    /// Every ring of the run, mapped here too (metrics, crash accounting).
    rings: Vec<PlannedRing>,
    /// Peak and summed ring depth samples, per ring, for the summary.
    /// When the supervisor launched (the origin of the ring timelines).
    launched_at: Instant,
    /// Per ring: peak, sum and count of the sampled depths, and its occupancy timeline.
    ring_samples: Vec<RingSamples>,
    /// Telemetry rings, drain thread and span exporters (tracing on).
    telemetry: Option<super::telemetry::RunTelemetry>,
    /// The hand-off of edges to and from other hosts.
    bridge: Option<crate::cross_host::Bridge>,
    /// This host runs the chain's last group: it deletes the run's stream once drained.
    holds_chain_end: bool,
    /// What the bridge moved, once it stopped.
    bridge_totals: Option<crate::cross_host::BridgeCounts>,
    /// When the watchdog last ran (a long gap: the supervisor itself was stopped).
    last_watch: Option<Instant>,
    /// The program workers are started from, as failures name it.
    worker_exe: String,
}

/// One ring between a worker and a worker of the next group (or the embedding host).
struct PlannedRing {
    name: String,
    segment: crate::data::Segment,
    /// The salt the ring was created with (verifies its checked words).
    salt: u64,
    /// The consuming worker (`None`: the host).
    consumer: Option<usize>,
    /// The end the embedding host holds, for host rings.
    host: Option<HostEnd>,
    /// For a ring whose other end runs on another host: which way the bridge moves records.
    crossing: Option<crate::cross_host::Direction>,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Whatever happened, nothing outlives the supervisor.
        for record in &self.records {
            if record.exit.is_none()
                && let Some(pid) = record.pid
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        self.acceptor_shutdown.store(true, Ordering::Relaxed);
        // The acceptor holds the listener: joining it removes a Unix socket's directory.
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        if let Some(signals) = self.signals.take() {
            signals.close();
        }
        self.health_state.alive.store(false, Ordering::Relaxed);
    }
}

/// Connects the rings whose other end runs on another host to the run's JetStream stream.
fn start_bridge(
    config: &Config,
    options: &SupervisorOptions,
    rings: &[PlannedRing],
    records: &[WorkerRecord],
) -> Result<Option<crate::cross_host::Bridge>, SupervisorError> {
    let (Some(settings), Some(host)) = (&config.runtime.platform.cross_host, &options.host) else {
        return Ok(None);
    };
    let mut bridged = Vec::new();
    for ring in rings {
        let Some(direction) = ring.crossing else {
            continue;
        };
        let (producer, consumer) = ring.name.split_once("->").unwrap_or((&ring.name, ""));
        let worker = match direction {
            crate::cross_host::Direction::Publish => producer,
            crate::cross_host::Direction::Subscribe => consumer,
        };
        debug_assert!(records.iter().any(|r| r.id == worker));
        bridged.push(crate::cross_host::BridgedRing {
            name: ring.name.clone(),
            worker: worker.to_string(),
            direction,
            segment: ring
                .segment
                .try_clone()
                .map_err(|e| SupervisorError::Ring {
                    ring: ring.name.clone(),
                    detail: e.to_string(),
                })?,
        });
    }
    if bridged.is_empty() {
        return Ok(None);
    }
    let run = match &options.run_id {
        Some(id) if crate::cross_host::valid_run_id(id) => id.clone(),
        Some(id) => {
            return Err(SupervisorError::RunId(id.clone()));
        }
        None => crate::cross_host::run_key(config),
    };
    let holds_source = records.iter().any(|r| r.holds_source);
    let input =
        holds_source.then(|| crate::cross_host::input_fingerprint(config, options.resume.after));
    // The stream's room is checked against the input's size before the first publish.
    let input_bytes = match &config.adapters.source {
        crate::config::SourceAdapter::File { path, .. } if holds_source => {
            std::fs::metadata(path).ok().map(|m| m.len())
        }
        _ => None,
    };
    Ok(Some(crate::cross_host::Bridge::start(
        settings,
        &run,
        host,
        input,
        input_bytes,
        bridged,
    )?))
}

/// Starts the health endpoints when the config asks for them. A build without the `health`
/// feature runs without them (and says so) rather than refusing the run.
fn start_health(
    config: &Config,
    state: &Arc<HealthState>,
) -> Result<Option<HealthServer>, SupervisorError> {
    let health = &config.runtime.platform.health;
    if !health.enabled {
        return Ok(None);
    }
    let server = match HealthServer::start(&health.bind, Arc::clone(state)) {
        Ok(server) => server,
        Err(error) if !super::health::AVAILABLE => {
            tracing::warn!(worker_id = "supervisor", "{error}: running without them");
            return Ok(None);
        }
        Err(error) => return Err(error.into()),
    };
    tracing::info!(
        worker_id = "supervisor",
        address = %server.address(),
        "health endpoints on http://{} (/livez /healthz /readyz /metrics)",
        server.address()
    );
    if health.expose {
        tracing::warn!(
            worker_id = "supervisor",
            "health endpoints (/metrics included) listen on {} and answer anyone who reaches it (health.expose: true)",
            server.address()
        );
    }
    Ok(Some(server))
}

impl Supervisor {
    /// Plans the workers, opens the control listener and health server, and spawns every
    /// worker in config order (groups in order, workers by index). Returns once all are spawned.
    pub fn launch(
        config: &Config,
        registry: &Registry,
        options: &SupervisorOptions,
    ) -> Result<Self, SupervisorError> {
        let launched_at = Instant::now();
        if std::env::var(crate::control::env::ROLE).as_deref() == Ok("worker") {
            // Started as another run's worker, this program did not become one: it must not
            // start workers of its own (they would do the same, again and again).
            return Err(SupervisorError::NotAWorker);
        }
        let resolved = crate::observability::otel_env::resolved(config);
        let config = &resolved;
        let graph = Graph::checked(config, registry).map_err(SupervisorError::Config)?;
        crate::runtime::room::check_ring_room(config, registry).map_err(SupervisorError::Config)?;
        let files = crate::config::ExtraRunFiles {
            host: options.host.clone(),
            ..Default::default()
        };
        crate::config::check_run_files_with(config, &files).map_err(SupervisorError::Config)?;
        // Whatever the transport: directories of supervisors killed earlier are cleaned here.
        crate::control::remove_stale_socket_dirs();
        let control = config
            .runtime
            .platform
            .execution_ipc
            .control
            .clone()
            .ok_or(SupervisorError::NoControl)?;
        crate::cross_host::check_host(config, options.host.as_deref())?;
        let (records, mut plans) = plan_workers(config, &graph);
        let host = options.host.as_deref();
        let mut rings = plan_rings(
            config,
            &graph,
            &records,
            &mut plans,
            options.host_rings,
            host,
        )?;
        let local = |group: &str| plan::runs_here(config, group, host);
        let holds_chain_end = records.iter().any(|r| r.ends_chain && local(&r.group));
        let (records, mut plans) = plan::keep_local(records, plans, &mut rings, &local);
        let run_id = crate::observability::ids::new_run_id();
        crate::observability::ids::set_current_run(run_id);
        // Everything is checked and no output changed yet: the journal goes first, before any
        // thread or process is started, so that whatever fails from here on leaves one.
        let holds_source = records.iter().any(|r| r.holds_source);
        let journal = match crate::runtime::journal::journal_path(config, registry) {
            Some(path) if holds_chain_end => {
                let keeper = crate::runtime::journal::JournalKeeper::start(
                    config,
                    &path,
                    crate::observability::ids::run_id_text(run_id),
                    options.journal.clone(),
                )
                .map_err(SupervisorError::Journal)?;
                Some(if holds_source {
                    keeper
                } else {
                    keeper.with_inputs_elsewhere()
                })
            }
            _ => None,
        };
        let bridge = start_bridge(config, options, &rings, &records)?;
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        let telemetry = super::telemetry::RunTelemetry::start(
            config,
            &ids,
            run_id,
            options.host.as_deref(),
            |i, fd| {
                plans[i].inherit.push(fd);
            },
        )?;
        let master = MasterKey::generate()?;
        let directory = Arc::new(KeyDirectory::derive(&master, &ids));
        let listener = ControlListener::bind(&control)?;
        let server = Arc::new(
            ControlServer::new(
                listener,
                Arc::clone(&directory),
                EndpointSettings::from_config(&control),
            )
            .with_handshakes(
                Duration::from_secs_f64(control.handshake_timeout_seconds),
                control.max_pending_connections as usize,
            ),
        );
        let health_state = Arc::new(HealthState::default());
        health_state.alive.store(true, Ordering::Relaxed);
        let health = start_health(config, &health_state)?;
        let (events_tx, events) = crossbeam_channel::unbounded();
        let acceptor_shutdown = Arc::new(AtomicBool::new(false));
        let acceptor = spawn_acceptor(
            Arc::clone(&server),
            events_tx.clone(),
            Arc::clone(&acceptor_shutdown),
        )
        .map_err(SupervisorError::Thread)?;
        let signals = if options.handle_signals {
            Some(spawn_signal_thread(events_tx.clone()).map_err(SupervisorError::Signals)?)
        } else {
            None
        };
        let logging = &config.runtime.observability.logging;
        let mut supervisor = Self {
            config_yaml: config.to_yaml(),
            config: config.clone(),
            records,
            plans,
            server,
            events,
            events_tx,
            senders: HashMap::new(),
            sessions: SupervisorSessions::new(ids),
            log: Vec::new(),
            health_state,
            health,
            acceptor_shutdown,
            acceptor: Some(acceptor),
            signals,
            external_stop: options.stop.clone(),
            progress: options.progress.clone(),
            run_id,
            resume: options.resume.clone(),
            journal,
            refused_connections: 0,
            next_correlation: 1,
            failure: None,
            stop_signal: None,
            force_requested: false,
            drained: BTreeMap::new(),
            lifecycle_enabled: logging.lifecycle_events.enabled,
            lifecycle_level: logging.lifecycle_events.level,
            work_started_at: None,
            failure_counts: HashMap::new(),
            ring_samples: vec![RingSamples::default(); rings.len()],
            launched_at,
            rings,
            telemetry,
            bridge,
            holds_chain_end,
            bridge_totals: None,
            last_watch: None,
            worker_exe: String::new(),
        };
        let exe = match &options.worker_exe {
            Some(exe) => exe.clone(),
            None => current_exe().map_err(SupervisorError::WorkerExecutable)?,
        };
        supervisor.worker_exe = crate::text::path(&exe);
        supervisor.spawn_all(&exe, &directory, &control)?;
        supervisor.emit_phase(EventKind::SupervisorStartGroups, launched_at);
        Ok(supervisor)
    }

    fn spawn_all(
        &mut self,
        exe: &std::path::Path,
        directory: &KeyDirectory,
        control: &crate::config::Control,
    ) -> Result<(), SupervisorError> {
        let address = self.server.address().clone();
        for i in 0..self.records.len() {
            let (id, number) = (self.records[i].id.clone(), self.records[i].number);
            let plan = &self.plans[i];
            let key = directory
                .key(number)
                .cloned()
                .ok_or_else(|| SupervisorError::NoKey(id.clone()))?;
            let launch = WorkerLaunch {
                exe,
                worker_id: &id,
                number,
                control: &address,
                start_timeout: plan.start_timeout,
                control_ttl: Duration::from_secs_f64(control.auth.ttl_seconds),
                control_max_payload: control.max_payload_bytes,
                inherit: &plan.inherit,
                cpus: plan.cpus.as_deref(),
                stdin: plan.stdin,
            };
            let child = match spawn_worker(&launch, &key) {
                Ok(child) => child,
                Err(e) => {
                    self.stop_all();
                    return Err(e.into());
                }
            };
            let record = &mut self.records[i];
            record.pid = Some(child.id());
            record.spawned_at = Some(Instant::now());
            if let Err(e) = spawn_reaper(id.clone(), child, self.events_tx.clone()) {
                self.stop_all();
                return Err(SupervisorError::Thread(e));
            }
            self.emit_worker(i, EventKind::WorkerSpawned, Vec::new());
        }
        self.refresh_metrics();
        Ok(())
    }

    /// The run ended: its final figures go to the Pushgateway when one is configured, and the
    /// health endpoint keeps answering `linger_seconds` (a last scrape finds them). Neither
    /// changes the run's outcome: a failed push is a warning.
    #[cfg_attr(not(feature = "health"), allow(unused_variables))]
    fn publish_final_metrics(&mut self, succeeded: bool) {
        let health = self.config.runtime.platform.health.clone();
        if health.push_gateway.is_none() && (health.linger_seconds == 0 || self.health.is_none()) {
            return;
        }
        self.refresh_metrics();
        #[cfg(feature = "health")]
        if let Some(gateway) = &health.push_gateway {
            let mut view = self
                .health_state
                .metrics
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default();
            self.with_final_figures(&mut view);
            let ended = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let url = super::push::push_url(
                gateway,
                &health.push_job,
                &crate::observability::export::host_name(),
            );
            let body = super::push::final_figures(&view, succeeded, ended);
            match super::push::push(&url, body) {
                Ok(()) => tracing::info!(worker_id = "supervisor", "final metrics pushed to {url}"),
                Err(error) => tracing::warn!(worker_id = "supervisor", "{error}"),
            }
        }
        #[cfg(not(feature = "health"))]
        if health.push_gateway.is_some() {
            tracing::warn!(
                worker_id = "supervisor",
                "health.push_gateway: this build of stream-kernel leaves out the `health` feature"
            );
        }
        if health.linger_seconds > 0 && self.health.is_some() {
            tracing::info!(
                worker_id = "supervisor",
                "health endpoint answers {} s more for a final scrape (health.linger_seconds)",
                health.linger_seconds
            );
            std::thread::sleep(Duration::from_secs(health.linger_seconds));
        }
    }

    /// The node figures and latency of the run's end reports (a heartbeat's may be older, or
    /// missing for a run shorter than a heartbeat).
    #[cfg(feature = "health")]
    fn with_final_figures(&self, view: &mut super::health::MetricsView) {
        let summary = self.summary();
        view.nodes = summary
            .nodes
            .iter()
            .map(|n| super::health::NodeMetrics {
                node: n.name.clone(),
                group: n.group.clone(),
                records_in: n.stats.records_in,
                records_out: n.stats.records_out,
                errors: n.stats.errors,
                counters: n.counters.clone(),
                outcomes: n.outcomes.clone(),
            })
            .collect();
        view.latency = summary.latency;
    }

    /// The health server's address, when enabled.
    pub fn health_address(&self) -> Option<std::net::SocketAddr> {
        self.health.as_ref().map(HealthServer::address)
    }

    /// Group -> workers: id, pid, state, last heartbeat age, counters.
    pub fn snapshot(&self) -> Snapshot {
        snapshot_of(&self.records)
    }

    /// The lifecycle events so far, in order.
    pub fn events(&self) -> &[LifecycleEvent] {
        &self.log
    }

    /// The pid of a worker.
    pub fn pid_of(&self, worker: &str) -> Option<u32> {
        self.records
            .iter()
            .find(|r| r.id == worker)
            .and_then(|r| r.pid)
    }

    /// Control-plane rejections by kind.
    pub fn control_metrics(&self) -> &crate::control::ControlMetrics {
        self.server.metrics()
    }

    /// The first failure, if any.
    pub fn failure(&self) -> Option<&RunFailure> {
        self.failure.as_ref()
    }

    /// What the bridge moved between hosts, when this run has edges to other hosts.
    pub fn bridge_counts(&self) -> Option<crate::cross_host::BridgeCounts> {
        self.bridge
            .as_ref()
            .map(crate::cross_host::Bridge::counts)
            .or(self.bridge_totals)
    }

    /// Stops the bridge; the host of the chain's end deletes the run's stream after a
    /// drained run (a failed run leaves it, for the restarted host to resume from).
    fn finish_bridge(&mut self, drained: bool) {
        let Some(mut bridge) = self.bridge.take() else {
            return;
        };
        bridge.stop();
        let counts = bridge.counts();
        tracing::info!(
            worker_id = "supervisor",
            stream = bridge.stream(),
            published_records = counts.published_records,
            published_messages = counts.published_messages,
            received_records = counts.received_records,
            received_messages = counts.received_messages,
            duplicate_records = counts.duplicate_records,
            "cross-host: published {} records in {} messages, received {} records in {} messages ({} duplicates skipped)",
            counts.published_records,
            counts.published_messages,
            counts.received_records,
            counts.received_messages,
            counts.duplicate_records
        );
        self.bridge_totals = Some(counts);
        if drained
            && self.holds_chain_end
            && let Err(e) = bridge.delete_stream()
        {
            tracing::warn!(worker_id = "supervisor", "{e}");
        }
    }
}

impl Supervisor {
    /// Closes the journal with the run's outcome: its completed record is the last one whose
    /// input position and output lengths both arrived.
    fn finish_journal(&mut self, end: &RunEnd) {
        use crate::files::journal::RunState;
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        let (state, outcome) = match end {
            RunEnd::Drained => (RunState::Complete, "completed".to_string()),
            RunEnd::Interrupted(_) => (RunState::Stopped, "stopped".to_string()),
            RunEnd::Failed(failure) => (
                RunState::Failed,
                format!(
                    "failed: worker {} (group {}) {}: {}",
                    failure.worker, failure.group, failure.category, failure.detail
                ),
            ),
        };
        if let Err(e) = journal.finish(state, &outcome) {
            tracing::warn!(worker_id = "supervisor", "{e}");
        }
    }

    /// The run journal's file and last completed record, when this run keeps one.
    pub fn journal_point(&self) -> Option<crate::runtime::JournalPoint> {
        self.journal.as_ref().map(|j| crate::runtime::JournalPoint {
            path: j.path().to_path_buf(),
            completed: j.completed_seq(),
        })
    }
}

/// Runs a whole supervised batch: launch, wait for readiness, start, run until the sinks
/// drain (or a failure or a signal), stop everyone, and report.
pub fn run_supervised(
    config: &Config,
    registry: &Registry,
    options: &SupervisorOptions,
) -> Result<SupervisedRun, SupervisorError> {
    let mut supervisor = Supervisor::launch(config, registry, options)?;
    if let Err(e) = supervisor
        .wait_ready()
        .and_then(|()| supervisor.start_work())
    {
        supervisor.stop_all();
        return Err(e);
    }
    let end = supervisor.run_until_done();
    Ok(finish_run(supervisor, end))
}

/// Stops every worker after a run ended with `end` (an interrupted run drains first) and
/// builds the report.
pub(crate) fn finish_run(mut supervisor: Supervisor, end: RunEnd) -> SupervisedRun {
    match &end {
        RunEnd::Interrupted(_) => supervisor.drain_then_stop(),
        RunEnd::Failed(failure) if failure.category == FailureCategory::NodeError => {
            supervisor.drain_after_node_error(failure);
            supervisor.stop_all();
        }
        _ => supervisor.stop_all(),
    }
    supervisor.finish_bridge(matches!(end, RunEnd::Drained) && supervisor.failure().is_none());
    supervisor.finish_telemetry();
    // A run that drained but had a worker fail while stopping is still a failed run.
    let end = match (&end, supervisor.failure()) {
        (RunEnd::Drained, Some(failure)) => RunEnd::Failed(failure.clone()),
        _ => end,
    };
    supervisor.finish_journal(&end);
    supervisor.publish_final_metrics(matches!(end, RunEnd::Drained));
    SupervisedRun {
        summary: supervisor.summary(),
        completed_through: supervisor.completed_through(),
        source_last_seq: supervisor.source_last_seq(),
        events: supervisor.events().to_vec(),
        cross_host: supervisor.bridge_counts(),
        end,
    }
}
