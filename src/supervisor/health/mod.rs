//! Health endpoints on loopback: `/livez`, `/readyz` (gate-aware) and `/metrics` (Prometheus
//! text via `prometheus-client`), plus systemd readiness notifications. This file is the model
//! the supervisor fills in; `metrics` renders it, `server` serves it (both only with the
//! `health` feature), `notify` tells systemd.
//!
//! `/livez` answers 200 while the supervisor's loop runs. `/readyz` answers 503 until the
//! readiness gate opens, 200 while running, and 503 again once stopping. `/metrics` is built at
//! each scrape from the supervisor's current view, so it never lags a state change.

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use crate::observability::latency::LatencyHistogram;
use crate::observability::process::ProcessFigures;
use crate::runtime::routes::RouteCacheCounters;

#[cfg(feature = "health")]
mod metrics;
mod notify;
#[cfg(feature = "health")]
mod server;

#[cfg(feature = "health")]
pub use metrics::MetricsFormat;
pub use notify::{notify_ready, notify_stopping};
#[cfg(feature = "health")]
pub use server::HealthServer;

/// What the endpoints report; the supervisor updates it.
#[derive(Debug, Default)]
pub struct HealthState {
    /// `/livez`: the supervisor's loop is running.
    pub alive: AtomicBool,
    /// `/readyz`: every worker is READY and the gate is open.
    pub gate_open: AtomicBool,
    /// The run is stopping (`/readyz` answers 503).
    pub stopping: AtomicBool,
    /// What `/metrics` shows, refreshed by the supervisor at least once a second.
    pub metrics: Mutex<MetricsView>,
}

/// Everything `/metrics` exposes, as numbers in base units.
// Read by the `/metrics` renderer and server (feature `health`); without it the supervisor
// still keeps the model (the run summary and lifecycle read parts of it).
#[cfg_attr(not(feature = "health"), allow(dead_code))]
#[derive(Debug, Default, Clone)]
pub struct MetricsView {
    /// Every worker.
    pub workers: Vec<WorkerMetrics>,
    /// Workers restarted (none today: a failed worker fails the run).
    pub restarts: u64,
    /// (kind, count)
    pub control_rejections: Vec<(&'static str, u64)>,
    /// (category, count)
    pub failures: Vec<(&'static str, u64)>,
    /// Every ring edge.
    pub rings: Vec<RingMetrics>,
    /// Summed over workers, as of their last heartbeats.
    pub route_cache: RouteCacheCounters,
    /// (exporter, outcome, count): spans produced / exported / dropped / failed.
    pub spans: Vec<(String, &'static str, u64)>,
    /// The supervisor process itself (the standard `process_*` metrics).
    pub supervisor: Option<ProcessFigures>,
    /// Per (group, node), summed over the group's workers.
    pub nodes: Vec<NodeMetrics>,
    /// End-to-end latency of the measured records, summed over the workers where records end.
    pub latency: LatencyHistogram,
}

/// One node of one group, summed over the group's workers (as of their last heartbeats).
#[derive(Debug, Clone, Default)]
pub struct NodeMetrics {
    /// The node's name.
    pub node: String,
    /// The group that runs it.
    pub group: String,
    /// Records the node received.
    pub records_in: u64,
    /// Outputs the node emitted.
    pub records_out: u64,
    /// Records the node failed on.
    pub errors: u64,
    /// The node's own counters of events (`bytes_read`, `blank_lines`, ...).
    pub counters: Vec<(String, u64)>,
    /// The records the node ended, by outcome and reason.
    pub outcomes: Vec<crate::graph::Outcome>,
}

/// One worker as `/metrics` shows it; counters as of its last heartbeat (at least one a
/// second), process figures read from `/proc` at each refresh.
#[cfg_attr(not(feature = "health"), allow(dead_code))]
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    /// The worker's id (`group#n`).
    pub worker: String,
    /// The worker's group.
    pub group: String,
    /// Its lifecycle state.
    pub state: &'static str,
    /// Records its first node received.
    pub records_in: u64,
    /// Outputs its last node emitted.
    pub records_out: u64,
    /// Share of the last heartbeat interval spent not waiting on a ring, 0..1.
    pub busy_ratio: f64,
    /// Its process id, once spawned.
    pub pid: Option<u32>,
    /// Read from `/proc` when `/metrics` is scraped ([`MetricsView::read_processes`]).
    pub process: Option<ProcessFigures>,
}

/// One ring edge as `/metrics` shows it.
// Read by the `/metrics` renderer and server (feature `health`); without it the supervisor
// still keeps the model (the run summary and lifecycle read parts of it).
#[cfg_attr(not(feature = "health"), allow(dead_code))]
#[derive(Debug, Clone)]
pub struct RingMetrics {
    /// The edge's name (`producer->consumer`).
    pub edge: String,
    /// Bytes written and not yet read.
    pub occupancy_bytes: u64,
    /// Bytes of the ring's data area.
    pub capacity_bytes: u64,
    /// Records written to the ring.
    pub records: u64,
}

#[cfg_attr(not(feature = "health"), allow(dead_code))]
impl MetricsView {
    /// Fills in the process figures of the supervisor and every worker with a pid. Called at
    /// scrape time, so the supervisor's loop never reads `/proc`.
    pub fn read_processes(&mut self) {
        self.supervisor = ProcessFigures::current();
        for worker in &mut self.workers {
            worker.process = worker.pid.and_then(ProcessFigures::of);
        }
    }
}

/// Starting the health server failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the health server on {bind}: {detail}")]
pub struct HealthError {
    /// The address asked for.
    pub bind: String,
    /// What failed.
    pub detail: String,
}

/// Whether this build serves the health endpoints (the `health` feature).
pub const AVAILABLE: bool = cfg!(feature = "health");

/// Without the `health` feature: a server that cannot start (the supervisor goes on without
/// one and says so).
#[cfg(not(feature = "health"))]
pub struct HealthServer {
    never: std::convert::Infallible,
}

#[cfg(not(feature = "health"))]
impl HealthServer {
    /// Always an error: this build has no health endpoint.
    pub fn start(bind: &str, _state: std::sync::Arc<HealthState>) -> Result<Self, HealthError> {
        Err(HealthError {
            bind: bind.to_string(),
            detail: "this build of stream-kernel leaves out the `health` feature".to_string(),
        })
    }

    /// The address the server listens on.
    pub fn address(&self) -> std::net::SocketAddr {
        match self.never {}
    }
}
