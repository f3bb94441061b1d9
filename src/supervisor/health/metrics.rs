//! `/metrics` as Prometheus text or OpenMetrics, rendered from the supervisor's [`MetricsView`]
//! with `prometheus-client` at each scrape.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{MetricsView, NodeMetrics, RingMetrics, WorkerMetrics};
use crate::observability::latency::LatencyHistogram;
use crate::observability::process::ProcessFigures;

type Labels = Vec<(&'static str, String)>;

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_string())).collect()
}

/// A counter family (the text format adds `_total`), one sample per label set.
fn counters(registry: &mut Registry, name: &str, help: &str, values: Vec<(Labels, u64)>) {
    let family = Family::<Labels, Counter>::default();
    for (labels, value) in values {
        family.get_or_create(&labels).inc_by(value);
    }
    registry.register(name, help, family);
}

/// A gauge family of floats, one sample per label set.
fn gauges(registry: &mut Registry, name: &str, help: &str, values: Vec<(Labels, f64)>) {
    let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for (labels, value) in values {
        family.get_or_create(&labels).set(value);
    }
    registry.register(name, help, family);
}

/// A float counter family (CPU seconds).
fn float_counters(registry: &mut Registry, name: &str, help: &str, values: Vec<(Labels, f64)>) {
    let family = Family::<Labels, Counter<f64, AtomicU64>>::default();
    for (labels, value) in values {
        family.get_or_create(&labels).inc_by(value);
    }
    registry.register(name, help, family);
}

/// Renders the view as OpenMetrics text: counters end in `_total`, every figure is in a base
/// unit (seconds, bytes, ratios 0..1).
pub fn render_metrics(view: &MetricsView) -> String {
    let mut registry = Registry::default();
    register_build_and_supervisor(&mut registry, view);
    register_workers(&mut registry, view);
    register_rings(&mut registry, view);
    register_nodes(&mut registry, view);
    register_control(&mut registry, view);
    register_latency(&mut registry, view);
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// The two exposition formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsFormat {
    /// Prometheus text format 0.0.4: what a scraper gets unless it asks for OpenMetrics, and
    /// what a Pushgateway takes.
    PrometheusText,
    /// OpenMetrics 1.0 text, for a scraper whose `Accept` names it.
    OpenMetrics,
}

impl MetricsFormat {
    /// The format a request's `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text` (with a non-zero `q`), else Prometheus text.
    pub fn negotiate(accept: &str) -> Self {
        let wants_openmetrics = accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        });
        if wants_openmetrics {
            Self::OpenMetrics
        } else {
            Self::PrometheusText
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The view in this format.
    pub fn render(self, view: &MetricsView) -> String {
        let openmetrics = render_metrics(view);
        match self {
            Self::OpenMetrics => openmetrics,
            Self::PrometheusText => prometheus_text(&openmetrics),
        }
    }
}

/// OpenMetrics text rewritten as Prometheus text 0.0.4: a counter family's `# HELP` and `#
/// TYPE` name its samples' `_total` name, `# UNIT` and `# EOF` go (the older format has
/// neither). Samples are the same lines in both.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let described = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match described {
            Some(renamed) => out.push_str(&renamed),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// A histogram whose buckets were counted elsewhere (by the workers): `prometheus-client`'s
/// own `Histogram` only counts observations it makes itself.
#[derive(Debug)]
struct CountedHistogram(LatencyHistogram);

impl prometheus_client::encoding::EncodeMetric for CountedHistogram {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.0.sum_ns as f64 / 1e9,
            self.0.count(),
            &self.0.prometheus_buckets(),
            None,
        )
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
    }
}

/// `stream_kernel_record_latency_seconds`: the source's read to the output's write, one record in
/// [`crate::observability::latency::LATENCY_SAMPLE`].
fn register_latency(registry: &mut Registry, view: &MetricsView) {
    registry.register(
        "stream_kernel_record_latency_seconds",
        format!(
            "End-to-end latency of a record, from the source's read to its output's write, measured on one record in {}",
            crate::observability::latency::LATENCY_SAMPLE
        ),
        CountedHistogram(view.latency),
    );
}

fn register_build_and_supervisor(registry: &mut Registry, view: &MetricsView) {
    gauges(
        registry,
        "stream_kernel_build_info",
        "Always 1; the labels say which build is running",
        vec![(
            labels(&[
                ("version", env!("CARGO_PKG_VERSION")),
                ("rust_version", env!("CARGO_PKG_RUST_VERSION")),
            ]),
            1.0,
        )],
    );
    if let Some(p) = view.supervisor {
        let none = Labels::new();
        float_counters(
            registry,
            "process_cpu_seconds",
            "User and system CPU time of the supervisor process",
            vec![(none.clone(), p.cpu_seconds)],
        );
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory of the supervisor",
                p.resident_bytes as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory of the supervisor",
                p.virtual_bytes as f64,
            ),
            (
                "process_start_time_seconds",
                "Start time of the supervisor since the Unix epoch",
                p.start_time_seconds,
            ),
            (
                "process_threads",
                "Threads of the supervisor",
                p.threads as f64,
            ),
        ] {
            gauges(registry, name, help, vec![(none.clone(), value)]);
        }
    }
}

fn register_workers(registry: &mut Registry, view: &MetricsView) {
    let states = view
        .workers
        .iter()
        .flat_map(|w| {
            crate::supervisor::lifecycle::WorkerState::ALL
                .iter()
                .map(move |s| {
                    let set = labels(&[
                        ("worker", &w.worker),
                        ("group", &w.group),
                        ("state", s.as_str()),
                    ]);
                    (set, f64::from(u8::from(s.as_str() == w.state)))
                })
        })
        .collect();
    gauges(
        registry,
        "stream_kernel_worker_state",
        "1 for each worker's current state",
        states,
    );
    let of = |w: &WorkerMetrics| labels(&[("worker", &w.worker), ("group", &w.group)]);
    let per_worker = |f: &dyn Fn(&WorkerMetrics) -> u64| -> Vec<(Labels, u64)> {
        view.workers.iter().map(|w| (of(w), f(w))).collect()
    };
    counters(
        registry,
        "stream_kernel_worker_records_in",
        "Records each worker took in",
        per_worker(&|w| w.records_in),
    );
    counters(
        registry,
        "stream_kernel_worker_records_out",
        "Records each worker sent on or wrote",
        per_worker(&|w| w.records_out),
    );
    gauges(
        registry,
        "stream_kernel_worker_busy_ratio",
        "Share of each worker's last heartbeat interval not spent waiting on a ring (0..1)",
        view.workers.iter().map(|w| (of(w), w.busy_ratio)).collect(),
    );
    let with_process: Vec<(&WorkerMetrics, ProcessFigures)> = view
        .workers
        .iter()
        .filter_map(|w| w.process.map(|p| (w, p)))
        .collect();
    float_counters(
        registry,
        "stream_kernel_worker_process_cpu_seconds",
        "User and system CPU time of each worker process",
        with_process
            .iter()
            .map(|(w, p)| (of(w), p.cpu_seconds))
            .collect(),
    );
    gauges(
        registry,
        "stream_kernel_worker_process_resident_memory_bytes",
        "Resident memory of each worker process",
        with_process
            .iter()
            .map(|(w, p)| (of(w), p.resident_bytes as f64))
            .collect(),
    );
    counters(
        registry,
        "stream_kernel_worker_restarts",
        "Worker restarts",
        vec![(Labels::new(), view.restarts)],
    );
    counters(
        registry,
        "stream_kernel_worker_failures",
        "Worker failures, by category",
        view.failures
            .iter()
            .map(|(k, v)| (labels(&[("category", k)]), *v))
            .collect(),
    );
}

/// Records per node, per outcome the node declared (`outcome`, `reason` labels), and per event
/// counter.
fn register_nodes(registry: &mut Registry, view: &MetricsView) {
    let of = |n: &NodeMetrics| labels(&[("node", &n.node), ("group", &n.group)]);
    let per_node = |f: &dyn Fn(&NodeMetrics) -> u64| -> Vec<(Labels, u64)> {
        view.nodes.iter().map(|n| (of(n), f(n))).collect()
    };
    counters(
        registry,
        "stream_kernel_node_records_in",
        "Records each node took in",
        per_node(&|n| n.records_in),
    );
    counters(
        registry,
        "stream_kernel_node_records_out",
        "Records each node emitted",
        per_node(&|n| n.records_out),
    );
    counters(
        registry,
        "stream_kernel_node_errors",
        "Records each node failed on",
        per_node(&|n| n.errors),
    );
    let (mut outcomes, mut events) = (Vec::new(), Vec::new());
    for node in &view.nodes {
        let (name, group) = (("node", node.node.as_str()), ("group", node.group.as_str()));
        for outcome in &node.outcomes {
            outcomes.push((
                labels(&[
                    name,
                    group,
                    ("outcome", &outcome.outcome),
                    ("reason", &outcome.reason),
                ]),
                outcome.records,
            ));
        }
        for (event, value) in &node.counters {
            events.push((labels(&[name, group, ("event", event)]), *value));
        }
    }
    counters(
        registry,
        "stream_kernel_node_outcomes",
        "Records by outcome and reason, per node",
        outcomes,
    );
    counters(
        registry,
        "stream_kernel_node_events",
        "Other per-node counts (bytes read, blank lines, ...)",
        events,
    );
}

fn register_rings(registry: &mut Registry, view: &MetricsView) {
    let edge = |r: &RingMetrics| labels(&[("edge", &r.edge)]);
    gauges(
        registry,
        "stream_kernel_ring_occupancy_bytes",
        "Bytes waiting in each edge's ring",
        view.rings
            .iter()
            .map(|r| (edge(r), r.occupancy_bytes as f64))
            .collect(),
    );
    gauges(
        registry,
        "stream_kernel_ring_capacity_bytes",
        "Size of each edge's ring",
        view.rings
            .iter()
            .map(|r| (edge(r), r.capacity_bytes as f64))
            .collect(),
    );
    counters(
        registry,
        "stream_kernel_ring_records",
        "Records through each edge's ring",
        view.rings.iter().map(|r| (edge(r), r.records)).collect(),
    );
}

fn register_control(registry: &mut Registry, view: &MetricsView) {
    counters(
        registry,
        "stream_kernel_control_rejected_frames",
        "Control frames rejected, by check",
        view.control_rejections
            .iter()
            .map(|(k, v)| (labels(&[("kind", k)]), *v))
            .collect(),
    );
    let cache = view.route_cache;
    counters(
        registry,
        "stream_kernel_route_cache_lookups",
        "Route cache lookups by result",
        vec![
            (labels(&[("result", "hit")]), cache.hits),
            (labels(&[("result", "negative_hit")]), cache.negative_hits),
            (labels(&[("result", "miss")]), cache.misses),
        ],
    );
    gauges(
        registry,
        "stream_kernel_route_cache_entries",
        "Route cache entries by kind",
        vec![
            (
                labels(&[("kind", "positive")]),
                cache.positive_entries as f64,
            ),
            (
                labels(&[("kind", "negative")]),
                cache.negative_entries as f64,
            ),
        ],
    );
    gauges(
        registry,
        "stream_kernel_route_cache_generation",
        "Generation of the placement table the route caches answer from",
        vec![(Labels::new(), cache.generation as f64)],
    );
    // `produced` is the whole; the outcomes are its parts (plus spans still queued), so they
    // are separate families: summing a family never counts a span twice.
    let (produced, outcomes): (Vec<_>, Vec<_>) =
        view.spans.iter().partition(|(_, o, _)| *o == "produced");
    counters(
        registry,
        "stream_kernel_spans_produced",
        "Spans produced per exporter (each then exported, dropped, failed or still queued)",
        produced
            .iter()
            .map(|(e, _, v)| (labels(&[("exporter", e)]), *v))
            .collect(),
    );
    counters(
        registry,
        "stream_kernel_spans",
        "Spans per exporter by outcome: exported, dropped (queue full) or failed (export error)",
        outcomes
            .iter()
            .map(|(e, o, v)| (labels(&[("exporter", e), ("outcome", o)]), *v))
            .collect(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::routes::RouteCacheCounters;

    /// Counters carry `_total`, figures are in base units, and the route cache's counters and
    /// gauges are separate families.
    #[test]
    fn metrics_follow_prometheus_conventions() {
        let view = MetricsView {
            spans: vec![
                ("otel_otlp".into(), "produced", 10),
                ("otel_otlp".into(), "failed", 7),
            ],
            rings: vec![RingMetrics {
                edge: "a#1->b#1".into(),
                occupancy_bytes: 4096,
                capacity_bytes: 1 << 20,
                records: 12,
            }],
            workers: vec![WorkerMetrics {
                worker: "a#1".into(),
                group: "a".into(),
                state: "running",
                records_in: 5,
                records_out: 4,
                busy_ratio: 0.875,
                pid: Some(std::process::id()),
                process: None,
            }],
            route_cache: RouteCacheCounters {
                hits: 3,
                positive_entries: 2,
                ..RouteCacheCounters::default()
            },
            ..MetricsView::default()
        };
        let mut view = view;
        view.read_processes();
        let text = render_metrics(&view);
        for line in [
            "# TYPE stream_kernel_spans counter",
            r#"stream_kernel_spans_total{exporter="otel_otlp",outcome="failed"} 7"#,
            r#"stream_kernel_spans_produced_total{exporter="otel_otlp"} 10"#,
            r#"stream_kernel_ring_occupancy_bytes{edge="a#1->b#1"} 4096.0"#,
            r#"stream_kernel_ring_records_total{edge="a#1->b#1"} 12"#,
            r#"stream_kernel_worker_busy_ratio{worker="a#1",group="a"} 0.875"#,
            r#"stream_kernel_worker_records_in_total{worker="a#1",group="a"} 5"#,
            r#"stream_kernel_route_cache_lookups_total{result="hit"} 3"#,
            r#"stream_kernel_route_cache_entries{kind="positive"} 2.0"#,
            "# TYPE process_cpu_seconds counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert!(text.contains("stream_kernel_build_info{version=\""));
        assert!(text.contains("stream_kernel_worker_process_resident_memory_bytes{worker=\"a#1\""));
        assert!(!text.contains("per_mille"));
    }
}
