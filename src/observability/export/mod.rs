//! Span export: the bounded queue between span producers and exporters, one export thread per
//! exporter, and the per-exporter counters.
//!
//! Every exporter has its own queue of `queue.max_items` spans, so a slow or failing exporter
//! drops its own spans and never holds up the others or the data plane. Offering a span never
//! blocks: a full queue drops the newest (the offered span) or the oldest (the head), as
//! `drop_policy` says. The export thread takes batches of `export_batch`, or whatever is queued
//! every `flush_interval_ms`, and each export call runs under the exporter's timeout. At the
//! end of a run every span offered is exactly one of exported, dropped or failed.

#[cfg(feature = "jaeger")]
mod bridge;
mod jsonl;
#[cfg(feature = "otlp")]
mod otlp;
mod resource;

pub use resource::{host_name, instance_id, service_name};

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::span::SpanRecord;
use crate::config::{DropPolicy, TraceExporter, Tracing};

/// An exporter failed to start (bad endpoint, unwritable path, ...).
#[derive(Debug, thiserror::Error)]
#[error("span exporter `{kind}`: {message}")]
pub struct ExportSetupError {
    /// The exporter's kind.
    pub kind: &'static str,
    /// What failed.
    pub message: String,
}

/// One export call failed; its batch counts as failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExportError(pub String);

/// What every span of a run shares, for exporters that describe their source.
#[derive(Debug, Clone, Default)]
pub struct RunResource {
    /// The scenario's name.
    pub scenario: String,
    /// Identifies the run (`service.instance.id` with the worker id).
    pub run_id: u64,
    /// The host this process runs the groups of (`run --host`), as placement names it.
    pub placement_host: Option<String>,
}

/// A destination for span batches. Runs on its own thread.
pub trait SpanExporter: Send {
    /// Exports one batch; an error is counted and logged (rate-limited), never fatal.
    fn export(&mut self, batch: &[Arc<SpanRecord>]) -> Result<(), ExportError>;
    /// Where the spans go (an endpoint, a file, an agent), for warnings.
    fn destination(&self) -> String;
    /// Makes what was exported durable (files); called at the end of the run.
    fn flush(&mut self) -> Result<(), ExportError> {
        Ok(())
    }
}

/// Counters of one exporter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExporterCounters {
    /// `jsonl`, `stdout`, `otel_otlp`, `opentracing_bridge`.
    pub kind: String,
    /// Spans the run produced (each exporter sees every one).
    pub produced: u64,
    /// Spans the exporter delivered.
    pub exported: u64,
    /// Dropped before export: the queue (or a worker's telemetry ring) was full.
    pub dropped: u64,
    /// Export calls that failed or timed out, and spans still queued when the run ended.
    pub failed: u64,
    /// How long the end of the run waited for this exporter to empty its queue (bounded by
    /// the largest exporter timeout), in milliseconds.
    pub exit_wait_ms: u64,
    /// The exporter did not finish within that bound; what it held was counted failed.
    pub abandoned: bool,
}

#[derive(Default)]
struct Counts {
    offered: AtomicU64,
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

struct QueueState {
    spans: VecDeque<Arc<SpanRecord>>,
    closing: bool,
    /// Spans inside the export call running now.
    in_flight: u64,
    /// The run ended without this exporter: everything it still held was counted failed.
    abandoned: bool,
}

/// One exporter's queue, counters and thread.
struct Lane {
    kind: &'static str,
    queue: Mutex<QueueState>,
    ready: Condvar,
    counts: Counts,
    max_items: usize,
    drop_policy: DropPolicy,
    /// Set by `finish`: how long the run waited for this exporter at its end.
    exit_wait_ms: AtomicU64,
}

impl Lane {
    fn new(kind: &'static str, max_items: usize, drop_policy: DropPolicy) -> Self {
        Self {
            kind,
            queue: Mutex::new(QueueState {
                spans: VecDeque::new(),
                closing: false,
                in_flight: 0,
                abandoned: false,
            }),
            ready: Condvar::new(),
            counts: Counts::default(),
            max_items,
            drop_policy,
            exit_wait_ms: AtomicU64::new(0),
        }
    }

    fn offer(&self, span: &Arc<SpanRecord>) {
        self.counts.offered.fetch_add(1, Ordering::Relaxed);
        let mut queue = self.queue.lock();
        if queue.spans.len() >= self.max_items {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            match self.drop_policy {
                DropPolicy::DropNewest => return,
                DropPolicy::DropOldest => {
                    queue.spans.pop_front();
                }
            }
        }
        queue.spans.push_back(Arc::clone(span));
        drop(queue);
        self.ready.notify_one();
    }

    /// Waits for a batch: `batch` spans, or what is queued after `interval`, or the rest when
    /// closing. `None` when closed and empty.
    fn next_batch(&self, batch: usize, interval: Duration) -> Option<Vec<Arc<SpanRecord>>> {
        let mut queue = self.queue.lock();
        let deadline = Instant::now() + interval;
        while queue.spans.len() < batch && !queue.closing {
            if self.ready.wait_until(&mut queue, deadline).timed_out() {
                break;
            }
        }
        if queue.spans.is_empty() {
            return (!queue.closing).then(Vec::new);
        }
        let take = queue.spans.len().min(batch);
        queue.in_flight = take as u64;
        Some(queue.spans.drain(..take).collect())
    }

    /// Counts the batch that was in flight, unless the run already counted it as failed.
    fn settle(&self, ok: bool) {
        let mut queue = self.queue.lock();
        let n = std::mem::take(&mut queue.in_flight);
        if queue.abandoned {
            return;
        }
        let counter = if ok {
            &self.counts.exported
        } else {
            &self.counts.failed
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn close(&self) {
        self.queue.lock().closing = true;
        self.ready.notify_all();
    }

    /// Spans left in the queue and in flight count as failed (the exporter did not finish
    /// them in time).
    fn abandon_rest(&self) {
        let mut queue = self.queue.lock();
        let left = std::mem::take(&mut queue.spans).len() as u64 + queue.in_flight;
        queue.abandoned = true;
        self.counts.failed.fetch_add(left, Ordering::Relaxed);
    }

    fn counters(&self, upstream_dropped: u64) -> ExporterCounters {
        let offered = self.counts.offered.load(Ordering::Relaxed);
        ExporterCounters {
            kind: self.kind.to_string(),
            produced: offered + upstream_dropped,
            exported: self.counts.exported.load(Ordering::Relaxed),
            dropped: self.counts.dropped.load(Ordering::Relaxed) + upstream_dropped,
            failed: self.counts.failed.load(Ordering::Relaxed),
            exit_wait_ms: self.exit_wait_ms.load(Ordering::Relaxed),
            abandoned: self.queue.lock().abandoned,
        }
    }
}

/// Export failures reach the log as WARN lines naming the exporter, its destination and the
/// error: the first at once, then at most one per [`FailureLog::EVERY`] with the number of
/// failures in between (a dead endpoint fails every batch; the log must not drown).
struct FailureLog {
    last: Option<Instant>,
    since_last: u64,
}

impl FailureLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn new() -> Self {
        Self {
            last: None,
            since_last: 0,
        }
    }

    /// Whether to log this failure now, and how many went unlogged before it.
    fn note(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Self::EVERY)
        {
            self.since_last += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since_last))
    }
}

fn export_loop(lane: &Lane, mut exporter: Box<dyn SpanExporter>, batch: usize, interval: Duration) {
    let mut failures = FailureLog::new();
    while let Some(spans) = lane.next_batch(batch, interval) {
        if spans.is_empty() {
            continue;
        }
        let result = exporter.export(&spans);
        if let Err(error) = &result
            && let Some(unlogged) = failures.note(Instant::now())
        {
            tracing::warn!(
                worker_id = "supervisor",
                exporter = lane.kind,
                destination = %exporter.destination(),
                spans = spans.len(),
                failures_since_last_warning = unlogged,
                "span export via {} to {} failed: {error}",
                lane.kind,
                exporter.destination()
            );
        }
        lane.settle(result.is_ok());
    }
    if let Err(error) = exporter.flush() {
        tracing::warn!(exporter = lane.kind, error = %error, "span exporter flush failed");
    }
}

/// An exporter whose Cargo feature this build leaves out.
#[cfg(not(all(feature = "otlp", feature = "jaeger")))]
fn not_built(exporter: &TraceExporter) -> ExportSetupError {
    let (kind, feature) = match exporter {
        TraceExporter::OtelOtlp(_) => ("otel_otlp", "otlp"),
        _ => ("opentracing_bridge", "jaeger"),
    };
    ExportSetupError {
        kind,
        message: format!("this build of stream-kernel leaves out the `{feature}` feature"),
    }
}

/// Starts the exporters of a run of `config` (`None` with tracing off); `placement_host` is
/// the host the run's groups are placed on (`run --host`).
pub fn start_for_run(
    config: &crate::config::Config,
    run_id: u64,
    placement_host: Option<&str>,
) -> Result<Option<ExportPipeline>, ExportSetupError> {
    let tracing = &config.runtime.observability.tracing;
    if !tracing.enabled {
        return Ok(None);
    }
    let resource = RunResource {
        scenario: config.scenario.name.clone(),
        run_id,
        placement_host: placement_host.map(str::to_string),
    };
    ExportPipeline::start(tracing, &resource).map(Some)
}

/// The queues and export threads of a run.
pub struct ExportPipeline {
    lanes: Vec<Arc<Lane>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Spans dropped before reaching the queues (full telemetry rings), counted for every
    /// exporter.
    upstream_dropped: AtomicU64,
    /// How long `finish` waits for the exporters to empty their queues.
    finish_timeout: Duration,
}

impl ExportPipeline {
    /// Starts one export thread per configured exporter.
    pub fn start(tracing: &Tracing, resource: &RunResource) -> Result<Self, ExportSetupError> {
        let batch = tracing.queue.export_batch.max(1) as usize;
        let interval = Duration::from_millis(tracing.queue.flush_interval_ms.max(1));
        let mut lanes = Vec::new();
        let mut threads = Vec::new();
        // Raised to the largest OTLP timeout (only OTLP exporters have one).
        #[cfg_attr(not(feature = "otlp"), allow(unused_mut))]
        let mut finish_timeout = Duration::from_secs(2);
        for config in &tracing.exporters {
            let (kind, exporter): (&'static str, Box<dyn SpanExporter>) = match config {
                TraceExporter::Jsonl(settings) => (
                    "jsonl",
                    Box::new(jsonl::JsonlExporter::file(settings, resource)?),
                ),
                TraceExporter::Stdout => {
                    ("stdout", Box::new(jsonl::JsonlExporter::stdout(resource)))
                }
                #[cfg(feature = "otlp")]
                TraceExporter::OtelOtlp(settings) => {
                    finish_timeout = finish_timeout.max(settings.timeout());
                    (
                        "otel_otlp",
                        Box::new(otlp::OtlpExporter::new(settings, resource)?),
                    )
                }
                #[cfg(feature = "jaeger")]
                TraceExporter::OpentracingBridge(settings) => (
                    "opentracing_bridge",
                    Box::new(bridge::BridgeExporter::new(settings, resource)?),
                ),
                #[cfg(not(all(feature = "otlp", feature = "jaeger")))]
                #[allow(unreachable_patterns)]
                TraceExporter::OtelOtlp(_) | TraceExporter::OpentracingBridge(_) => {
                    return Err(not_built(config));
                }
            };
            let lane = Arc::new(Lane::new(
                kind,
                tracing.queue.max_items.max(1) as usize,
                tracing.queue.drop_policy,
            ));
            let thread_lane = Arc::clone(&lane);
            let thread = std::thread::Builder::new()
                .name(format!("export-{kind}"))
                .spawn(move || export_loop(&thread_lane, exporter, batch, interval))
                .map_err(|e| ExportSetupError {
                    kind,
                    message: format!("starting the export thread: {e}"),
                })?;
            lanes.push(lane);
            threads.push(thread);
        }
        Ok(Self {
            lanes,
            threads: Mutex::new(threads),
            upstream_dropped: AtomicU64::new(0),
            finish_timeout,
        })
    }

    /// Hands one span to every exporter's queue. Never blocks on an exporter.
    pub fn offer(&self, span: SpanRecord) {
        let span = Arc::new(span);
        for lane in &self.lanes {
            lane.offer(&span);
        }
    }

    /// Records `n` spans lost before the queues (full telemetry ring of a worker).
    pub fn note_upstream_dropped(&self, n: u64) {
        self.upstream_dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Counters so far.
    pub fn counters(&self) -> Vec<ExporterCounters> {
        let upstream = self.upstream_dropped.load(Ordering::Relaxed);
        self.lanes.iter().map(|l| l.counters(upstream)).collect()
    }

    /// Closes the queues, lets every exporter export what is queued until the largest
    /// export timeout, counts what is left as failed, and returns the final counters.
    pub fn finish(&self) -> Vec<ExporterCounters> {
        for lane in &self.lanes {
            lane.close();
        }
        let started = Instant::now();
        let deadline = started + self.finish_timeout;
        for (lane, thread) in self
            .lanes
            .iter()
            .zip(std::mem::take(&mut *self.threads.lock()))
        {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            let waited = started.elapsed().as_millis().min(u128::from(u64::MAX)) as u64;
            lane.exit_wait_ms.store(waited, Ordering::Relaxed);
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                // A hung exporter: its thread is left to its own export timeout; the spans it
                // did not take are failed now, and whatever it is holding is failed by it.
                lane.abandon_rest();
            }
        }
        self.counters()
    }
}

/// The span sink of the inline runtime: straight into the export queues.
pub struct PipelineSink(pub Arc<ExportPipeline>);

impl super::span::SpanSink for PipelineSink {
    fn record(&mut self, span: SpanRecord) {
        self.0.offer(span);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(policy: DropPolicy) -> Lane {
        Lane::new("test", 4, policy)
    }

    fn span(seq: u64) -> Arc<SpanRecord> {
        Arc::new(SpanRecord {
            trace_id: [1; 16],
            span_id: seq,
            parent_span_id: 0,
            name: "n".into(),
            process_group: "g".into(),
            handoff_from: None,
            route_hop: 0,
            worker_id: "w".into(),
            pid: 1,
            seq,
            start_unix_ns: 0,
            end_unix_ns: 0,
            error: None,
        })
    }

    fn queued(lane: &Lane) -> Vec<u64> {
        lane.queue.lock().spans.iter().map(|s| s.seq).collect()
    }

    /// OBS-04 (policy semantics): a full queue keeps the first spans under `drop_newest`
    /// and the last ones under `drop_oldest`; either way every offer is counted once.
    #[test]
    fn obs_04_drop_policies_keep_the_right_end() {
        for (policy, kept) in [
            (DropPolicy::DropNewest, vec![1, 2, 3, 4]),
            (DropPolicy::DropOldest, vec![7, 8, 9, 10]),
        ] {
            let lane = lane(policy);
            for seq in 1..=10 {
                lane.offer(&span(seq));
            }
            assert_eq!(queued(&lane), kept, "{policy:?}");
            let batch = lane.next_batch(3, Duration::ZERO).expect("open");
            assert_eq!(batch.len(), 3);
            lane.settle(true);
            lane.close();
            lane.abandon_rest();
            let c = lane.counters(2);
            assert_eq!(
                (c.produced, c.exported, c.dropped, c.failed),
                (12, 3, 8, 1),
                "{policy:?}"
            );
        }
    }
}
