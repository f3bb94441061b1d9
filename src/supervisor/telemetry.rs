//! The supervisor's end of tracing: one telemetry ring per worker, the drain thread reading
//! them, and the export pipeline they feed. Exists only when `observability.tracing.enabled`.

use std::sync::Arc;

use crate::config::Config;
use crate::control::RingBinding;
use crate::data::{Consumer, Segment, WaitStrategy};
use crate::observability::export::{ExportPipeline, ExporterCounters, start_for_run};
use crate::observability::telemetry::{DrainThread, TELEMETRY_RING_BYTES};

pub(crate) struct RunTelemetry {
    pipeline: Arc<ExportPipeline>,
    drain: Option<DrainThread>,
    /// Per worker (spawn order): the producer end it inherits.
    bindings: Vec<RingBinding>,
    /// The segments stay mapped here until the workers inherited them.
    _segments: Vec<Segment>,
    finished: Option<Vec<ExporterCounters>>,
}

/// Span export could not be set up: what failed and why.
#[derive(Debug, thiserror::Error)]
#[error("telemetry: {0}")]
pub struct TelemetryError(String);

fn setup(message: impl std::fmt::Display) -> TelemetryError {
    TelemetryError(message.to_string())
}

impl RunTelemetry {
    /// Creates a telemetry ring for each of `workers` (their ids, in spawn order), starts the
    /// exporters and the drain thread. `inherit(i, fd)` adds the fd to worker `i`'s launch.
    pub(crate) fn start(
        config: &Config,
        workers: &[String],
        run_id: u64,
        placement_host: Option<&str>,
        mut inherit: impl FnMut(usize, i32),
    ) -> Result<Option<Self>, TelemetryError> {
        let Some(pipeline) = start_for_run(config, run_id, placement_host).map_err(setup)? else {
            return Ok(None);
        };
        let pipeline = Arc::new(pipeline);
        let len = crate::data::ring_memory_len(TELEMETRY_RING_BYTES);
        let mut bindings = Vec::new();
        let mut segments = Vec::new();
        let mut consumers = Vec::new();
        for (index, worker) in workers.iter().enumerate() {
            let segment = Segment::create(&format!("{worker}.telemetry"), len).map_err(setup)?;
            let mut salt = [0u8; 8];
            getrandom::fill(&mut salt).map_err(setup)?;
            crate::data::init_ring(&segment, TELEMETRY_RING_BYTES, u64::from_le_bytes(salt))
                .map_err(setup)?;
            let fd = segment.inheritable_fd();
            inherit(index, fd);
            bindings.push(RingBinding {
                fd,
                len: len as u64,
                inbound: false,
                node: 0,
                peer: "supervisor".to_string(),
            });
            let reader = segment.try_clone().map_err(setup)?;
            consumers.push((
                worker.clone(),
                Consumer::attach(reader, WaitStrategy::EFFICIENCY).map_err(setup)?,
            ));
            segments.push(segment);
        }
        let drain = DrainThread::spawn(consumers, Arc::clone(&pipeline)).map_err(setup)?;
        Ok(Some(Self {
            pipeline,
            drain: Some(drain),
            bindings,
            _segments: segments,
            finished: None,
        }))
    }

    pub(crate) fn binding(&self, worker: usize) -> Option<RingBinding> {
        self.bindings.get(worker).cloned()
    }

    /// Reads what the workers left in their rings, lets the exporters finish, and returns the
    /// final counters. `worker_dropped`: spans the workers could not put in their rings.
    pub(crate) fn finish(&mut self, worker_dropped: u64) -> Vec<ExporterCounters> {
        if let Some(counters) = &self.finished {
            return counters.clone();
        }
        if let Some(drain) = self.drain.take() {
            drain.finish();
        }
        self.pipeline.note_upstream_dropped(worker_dropped);
        let counters = self.pipeline.finish();
        self.finished = Some(counters.clone());
        counters
    }

    /// Counters so far (final ones once finished).
    pub(crate) fn counters(&self) -> Vec<ExporterCounters> {
        self.finished
            .clone()
            .unwrap_or_else(|| self.pipeline.counters())
    }
}
