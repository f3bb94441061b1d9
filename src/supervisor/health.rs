//! Health endpoints on loopback: `/livez`, `/readyz` (gate-aware) and `/metrics` (Prometheus
//! text via `prometheus-client`), plus systemd readiness notifications.
//!
//! `/livez` answers 200 while the supervisor's loop runs. `/readyz` answers 503 until the
//! readiness gate opens, 200 while running, and 503 again once stopping. `/metrics` is built at
//! each scrape from the supervisor's current view, so it never lags a state change.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// What the endpoints report; the supervisor updates it.
#[derive(Debug, Default)]
pub struct HealthState {
    pub alive: AtomicBool,
    pub gate_open: AtomicBool,
    pub stopping: AtomicBool,
    pub metrics: Mutex<MetricsView>,
}

/// Everything `/metrics` exposes, as numbers.
#[derive(Debug, Default, Clone)]
pub struct MetricsView {
    /// (worker, group, state)
    pub workers: Vec<(String, String, &'static str)>,
    pub restarts: u64,
    /// (kind, count)
    pub control_rejections: Vec<(&'static str, u64)>,
    /// (category, count)
    pub failures: Vec<(&'static str, u64)>,
    /// (edge, bytes in the ring)
    pub ring_depths: Vec<(String, u64)>,
    /// (edge, records through the ring)
    pub ring_records: Vec<(String, u64)>,
    /// (worker, records in)
    pub worker_records: Vec<(String, u64)>,
    /// (worker, busy share of its last heartbeat interval in per mille)
    pub worker_busy: Vec<(String, u64)>,
    /// (counter, value): route cache counters.
    pub route_cache: Vec<(&'static str, u64)>,
    /// (exporter, outcome, count): spans exported / dropped / failed.
    pub spans: Vec<(String, &'static str, u64)>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: String,
    group: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EdgeLabel {
    edge: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabel {
    worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpanLabels {
    exporter: String,
    outcome: String,
}

fn gauge_family<
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, i64)>,
) {
    let family = Family::<L, Gauge>::default();
    for (labels, value) in values {
        family.get_or_create(&labels).set(value);
    }
    registry.register(name, help, family);
}

/// Renders the view as Prometheus text.
pub fn render_metrics(view: &MetricsView) -> String {
    let mut registry = Registry::with_prefix("stream_kernel");
    let states = view.workers.iter().flat_map(|(worker, group, state)| {
        crate::supervisor::lifecycle::WorkerState::ALL
            .iter()
            .map(move |s| {
                (
                    WorkerLabels {
                        worker: worker.clone(),
                        group: group.clone(),
                        state: s.as_str().to_string(),
                    },
                    i64::from(s.as_str() == *state),
                )
            })
    });
    gauge_family(
        &mut registry,
        "worker_state",
        "1 for each worker's current state",
        states,
    );
    let restarts = Gauge::<i64>::default();
    restarts.set(view.restarts as i64);
    registry.register("worker_restarts", "Worker restarts", restarts);
    gauge_family(
        &mut registry,
        "control_rejected_frames",
        "Control frames rejected, by check",
        view.control_rejections.iter().map(|(k, v)| {
            (
                KindLabel {
                    kind: k.to_string(),
                },
                *v as i64,
            )
        }),
    );
    gauge_family(
        &mut registry,
        "worker_failures",
        "Worker failures, by category",
        view.failures.iter().map(|(k, v)| {
            (
                KindLabel {
                    kind: k.to_string(),
                },
                *v as i64,
            )
        }),
    );
    gauge_family(
        &mut registry,
        "ring_depth_bytes",
        "Bytes waiting in each edge's ring",
        view.ring_depths
            .iter()
            .map(|(e, v)| (EdgeLabel { edge: e.clone() }, *v as i64)),
    );
    gauge_family(
        &mut registry,
        "ring_records",
        "Records through each edge's ring",
        view.ring_records
            .iter()
            .map(|(e, v)| (EdgeLabel { edge: e.clone() }, *v as i64)),
    );
    gauge_family(
        &mut registry,
        "worker_records_in",
        "Records each worker took in",
        view.worker_records
            .iter()
            .map(|(w, v)| (WorkerLabel { worker: w.clone() }, *v as i64)),
    );
    gauge_family(
        &mut registry,
        "worker_busy_per_mille",
        "Share of the last heartbeat interval each worker spent not waiting on a ring",
        view.worker_busy
            .iter()
            .map(|(w, v)| (WorkerLabel { worker: w.clone() }, *v as i64)),
    );
    gauge_family(
        &mut registry,
        "route_cache",
        "Route cache counters",
        view.route_cache.iter().map(|(k, v)| {
            (
                KindLabel {
                    kind: k.to_string(),
                },
                *v as i64,
            )
        }),
    );
    gauge_family(
        &mut registry,
        "spans",
        "Spans per exporter by outcome",
        view.spans.iter().map(|(e, o, v)| {
            (
                SpanLabels {
                    exporter: e.clone(),
                    outcome: o.to_string(),
                },
                *v as i64,
            )
        }),
    );
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// The running health server.
pub struct HealthServer {
    server: Arc<tiny_http::Server>,
    address: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starting the health server failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the health server on {bind}: {detail}")]
pub struct HealthError {
    pub bind: String,
    pub detail: String,
}

impl HealthServer {
    pub fn start(bind: &str, state: Arc<HealthState>) -> Result<Self, HealthError> {
        let server = tiny_http::Server::http(bind).map_err(|e| HealthError {
            bind: bind.to_string(),
            detail: e.to_string(),
        })?;
        let address = server.server_addr().to_ip().ok_or_else(|| HealthError {
            bind: bind.to_string(),
            detail: "not an IP socket".into(),
        })?;
        let server = Arc::new(server);
        let serving = Arc::clone(&server);
        let thread = super::monitor::spawn_named("sk-health", move || {
            for request in serving.incoming_requests() {
                let (status, body, content_type) = respond(request.url(), &state);
                let header =
                    tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
                        .unwrap_or_else(|()| unreachable!("static header is valid"));
                let response = tiny_http::Response::from_string(body)
                    .with_status_code(status)
                    .with_header(header);
                let _ = request.respond(response);
            }
        });
        Ok(Self {
            server,
            address,
            thread: Some(thread),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn respond(url: &str, state: &HealthState) -> (u16, String, &'static str) {
    let text = "text/plain; charset=utf-8";
    match url {
        "/livez" if state.alive.load(Ordering::Relaxed) => (200, "ok\n".into(), text),
        "/livez" => (503, "supervisor loop not running\n".into(), text),
        "/readyz" => {
            let ready =
                state.gate_open.load(Ordering::Relaxed) && !state.stopping.load(Ordering::Relaxed);
            if ready {
                (200, "ready\n".into(), text)
            } else if state.stopping.load(Ordering::Relaxed) {
                (503, "stopping\n".into(), text)
            } else {
                (503, "not ready\n".into(), text)
            }
        }
        "/metrics" => {
            let view = state.metrics.lock().map(|m| m.clone()).unwrap_or_default();
            (
                200,
                render_metrics(&view),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        }
        _ => (404, "not found\n".into(), text),
    }
}

/// Tells systemd (when `NOTIFY_SOCKET` is set) that the service is ready.
pub fn notify_ready() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
}

/// Tells systemd (when `NOTIFY_SOCKET` is set) that the service is stopping.
pub fn notify_stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Span counters appear per exporter and outcome, next to the ring and worker figures.
    #[test]
    fn metrics_render_span_ring_and_worker_figures() {
        let view = MetricsView {
            spans: vec![
                ("otel_otlp".into(), "produced", 10),
                ("otel_otlp".into(), "failed", 7),
                ("otel_otlp".into(), "dropped", 3),
            ],
            ring_depths: vec![("a#1->b#1".into(), 4096)],
            worker_busy: vec![("a#1".into(), 875)],
            ..MetricsView::default()
        };
        let text = render_metrics(&view);
        for line in [
            r#"stream_kernel_spans{exporter="otel_otlp",outcome="failed"} 7"#,
            r#"stream_kernel_spans{exporter="otel_otlp",outcome="dropped"} 3"#,
            r#"stream_kernel_ring_depth_bytes{edge="a#1->b#1"} 4096"#,
            r#"stream_kernel_worker_busy_per_mille{worker="a#1"} 875"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
