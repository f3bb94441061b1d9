//! Telemetry rings: how spans leave a worker process.
//!
//! Each worker produces its spans into its own SPSC ring in shared memory (the data plane's
//! ring, sized [`TELEMETRY_RING_BYTES`]); a span that does not fit right now is dropped and
//! counted, never waited for. The supervisor's drain thread reads every worker's ring and
//! offers the spans to the export queues.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::export::ExportPipeline;
use super::span::{SpanRecord, SpanSink};
use crate::data::{Consumer, Producer, Segment};

/// Bytes of each worker's telemetry ring: about 20,000 spans in flight (a sampled burst of a
/// fast group outruns a drain thread that shares the cores with the workers at 1 MiB).
pub const TELEMETRY_RING_BYTES: usize = 4 << 20;

/// How long the drain thread sleeps when every ring was empty.
const IDLE_SLEEP: Duration = Duration::from_millis(2);

/// A worker's span sink: its telemetry ring.
pub struct RingSpanSink {
    producer: Producer<Segment>,
    /// Spans the ring had no room for.
    pub dropped: u64,
}

impl RingSpanSink {
    /// A sink writing into `producer`.
    pub fn new(producer: Producer<Segment>) -> Self {
        Self {
            producer,
            dropped: 0,
        }
    }
}

impl SpanSink for RingSpanSink {
    fn record(&mut self, span: SpanRecord) {
        let written = rkyv::to_bytes::<rkyv::rancor::Error>(&span)
            .ok()
            .and_then(|bytes| self.producer.try_push(&bytes).ok())
            .unwrap_or(false);
        if written {
            // Published at once: the drain thread reads what a flush made visible, and a span
            // of a failing record must be there before the worker reports the failure.
            self.producer.flush();
        } else {
            self.dropped += 1;
        }
    }

    fn dropped(&self) -> u64 {
        self.dropped
    }

    fn close(&mut self) {
        self.producer.close();
    }
}

/// Decodes one span from ring bytes (validated: the bytes come from another process).
fn decode(body: &[u8]) -> Option<SpanRecord> {
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(body.len());
    aligned.extend_from_slice(body);
    rkyv::from_bytes::<SpanRecord, rkyv::rancor::Error>(&aligned).ok()
}

/// Reads every worker's telemetry ring until told to stop, then once more to the end.
pub struct DrainThread {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<u64>>,
}

impl DrainThread {
    /// `rings`: (worker id, consumer end). Undecodable records are counted as dropped.
    pub fn spawn(
        rings: Vec<(String, Consumer<Segment>)>,
        pipeline: Arc<ExportPipeline>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("telemetry-drain".into())
            .spawn(move || drain(rings, &pipeline, &flag))?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops after a last full sweep; returns the spans offered.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Release);
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or(0)
    }
}

impl Drop for DrainThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn drain(
    mut rings: Vec<(String, Consumer<Segment>)>,
    pipeline: &ExportPipeline,
    stop: &AtomicBool,
) -> u64 {
    let mut offered = 0;
    loop {
        // Read the flag before the sweep: a sweep that starts after it was set sees every
        // span committed before the workers drained.
        let last = stop.load(Ordering::Acquire);
        let mut read = 0;
        rings.retain_mut(|(worker, ring)| {
            let polled = ring.poll(usize::MAX, |record| {
                match decode(record.body) {
                    Some(span) => {
                        pipeline.offer(span);
                        offered += 1;
                    }
                    None => pipeline.note_upstream_dropped(1),
                }
                Ok::<(), ()>(())
            });
            match polled {
                Ok(n) => {
                    read += n;
                    true
                }
                Err(e) => {
                    tracing::warn!(worker = %worker, error = ?e, "telemetry ring unreadable; its spans are lost");
                    false
                }
            }
        });
        if last {
            return offered;
        }
        if read == 0 {
            std::thread::sleep(IDLE_SLEEP);
        }
    }
}
