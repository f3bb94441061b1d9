//! Spans: one per node execution of a sampled record, and the W3C trace context they hang on.
//!
//! Owns the span record that crosses the telemetry ring, head sampling (a pure function of the
//! trace id, so every process of a run takes the same decision without talking), span ids,
//! and the caller's `TRACEPARENT`. Recording a span never blocks: the [`SpanSink`] of the
//! process takes it or counts it as dropped.

use std::time::{SystemTime, UNIX_EPOCH};

use super::otel_env;
use crate::config::{SamplerKind, Tracing};

/// One finished node execution of a sampled record.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SpanRecord {
    /// W3C trace id.
    pub trace_id: [u8; 16],
    /// The span's id.
    pub span_id: u64,
    /// 0 for a root span.
    pub parent_span_id: u64,
    /// The node's name.
    pub name: String,
    /// The group of the worker that ran the node.
    pub process_group: String,
    /// The group that handed the record over, on the first node after a hand-off.
    pub handoff_from: Option<String>,
    /// Cross-group hand-offs before this node.
    pub route_hop: u16,
    /// The worker that ran the node (`group#n`; `inline` inline).
    pub worker_id: String,
    /// The process id of that worker.
    pub pid: u32,
    /// Source sequence number of the record.
    pub seq: u64,
    /// When the node started, unix nanoseconds.
    pub start_unix_ns: u64,
    /// When the node finished, unix nanoseconds.
    pub end_unix_ns: u64,
    /// The node's error message; `None` = status ok.
    pub error: Option<String>,
}

impl SpanRecord {
    /// `ok`, or `error` when the node failed.
    pub fn status(&self) -> &'static str {
        if self.error.is_some() { "error" } else { "ok" }
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Head sampling: whether the record with `trace_id` is traced at `ratio`. Uses the trace
/// id's low 8 bytes (random-looking for derived ids), so all processes agree.
pub fn is_sampled(trace_id: &[u8; 16], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    // 53 uniform bits as a fraction in [0, 1).
    let draw = (mix(u64::from_be_bytes(low)) >> 11) as f64 / (1u64 << 53) as f64;
    draw < ratio
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The span id of node `node` executing record `trace_id` under parent `parent` (never 0).
///
/// Derived, not random, so a run with a fixed run id writes the same spans every time. A node
/// that runs twice for one record under the same parent (fan-out of one value to one node)
/// would repeat an id; no bundled node does that.
pub fn span_id_for(trace_id: &[u8; 16], parent: u64, node: usize) -> u64 {
    let mut high = [0u8; 8];
    high.copy_from_slice(&trace_id[..8]);
    let id = mix(u64::from_be_bytes(high) ^ mix(parent ^ ((node as u64 + 1) << 40)));
    id.max(1)
}

/// The caller's trace context from a W3C `traceparent` value
/// (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The caller's trace id.
    pub trace_id: [u8; 16],
    /// The caller's span id.
    pub span_id: u64,
    /// The caller's sampled flag.
    pub sampled: bool,
}

impl TraceParent {
    /// Parses a `traceparent` value; anything malformed is `None`.
    pub fn parse(value: &str) -> Option<Self> {
        let parts: Vec<&str> = value.trim().split('-').collect();
        let [version, trace, span, flags] = parts.as_slice() else {
            return None;
        };
        if version.len() != 2 || *version == "ff" || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, byte) in trace_id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(trace.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != [0; 16] && span_id != 0).then_some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// `TRACEPARENT` of this process's environment, when set and well formed.
    pub fn from_env() -> Option<Self> {
        std::env::var("TRACEPARENT")
            .ok()
            .and_then(|v| Self::parse(&v))
    }
}

/// Where a process's finished spans go. Must not block.
pub trait SpanSink: Send {
    /// Takes one finished span (never blocks; a full sink drops and counts it).
    fn record(&mut self, span: SpanRecord);
    /// Spans this sink could not take (a full telemetry ring).
    fn dropped(&self) -> u64 {
        0
    }
    /// The process is done producing spans.
    fn close(&mut self) {}
}

/// The head sampling decision, the same in every process (a function of the trace id and the
/// caller's flag only).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    /// Which sampler.
    pub kind: SamplerKind,
    /// The ratio of the `traceidratio` samplers.
    pub ratio: f64,
}

impl Sampler {
    /// The config's sampler, with the OpenTelemetry variables for what it leaves out.
    pub fn of(tracing: &Tracing) -> Self {
        let (kind, ratio) = otel_env::sampler(
            tracing.sampler,
            tracing.sample_ratio,
            &otel_env::process_env,
        );
        Self { kind, ratio }
    }

    /// Whether a record with derived trace id `derived` is sampled, under the caller's context
    /// `parent` (the `parentbased_*` samplers follow its sampled flag).
    pub fn decide(&self, parent: Option<&TraceParent>, derived: &[u8; 16]) -> bool {
        use SamplerKind::*;
        match (self.kind, parent) {
            (ParentBasedAlwaysOn | ParentBasedAlwaysOff | ParentBasedTraceIdRatio, Some(p)) => {
                p.sampled
            }
            (AlwaysOn | ParentBasedAlwaysOn, _) => true,
            (AlwaysOff | ParentBasedAlwaysOff, _) => false,
            (TraceIdRatio | ParentBasedTraceIdRatio, _) => is_sampled(derived, self.ratio),
        }
    }
}

/// Span production of one process: the settings every span shares and its sink.
pub struct Tracer {
    /// The head sampling decision.
    pub sampler: Sampler,
    /// The process's worker id (`inline` inline).
    pub worker_id: String,
    /// The process id.
    pub pid: u32,
    /// The caller's context: records become children of its span, in its trace.
    pub parent: Option<TraceParent>,
    /// Where finished spans go.
    pub sink: Box<dyn SpanSink>,
    /// Spans handed to the sink.
    pub produced: u64,
}

impl Tracer {
    /// A tracer of `worker_id` with the `TRACEPARENT` of the environment as its parent.
    pub fn new(sampler: Sampler, worker_id: String, sink: Box<dyn SpanSink>) -> Self {
        Self {
            sampler,
            worker_id,
            pid: std::process::id(),
            parent: TraceParent::from_env(),
            sink,
            produced: 0,
        }
    }

    /// The trace id and root parent of a record entering the graph with derived id `derived`,
    /// and whether it is sampled (see [`Sampler::decide`]).
    pub fn root_of(&self, derived: [u8; 16]) -> ([u8; 16], u64, bool) {
        let sampled = self.sampler.decide(self.parent.as_ref(), &derived);
        match self.parent {
            Some(parent) => (parent.trace_id, parent.span_id, sampled),
            None => (derived, 0, sampled),
        }
    }

    /// Hands a finished span to the sink.
    pub fn record(&mut self, span: SpanRecord) {
        self.produced += 1;
        self.sink.record(span);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trip_and_rejects() {
        let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        assert_eq!(hex(&tp.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.span_id, 0x00f0_67aa_0ba9_02b7);
        assert!(tp.sampled);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn sampling_is_a_function_of_the_trace_id_and_near_the_ratio() {
        let ids: Vec<[u8; 16]> = (1..=100_000)
            .map(|seq| crate::observability::ids::trace_id_for(42, seq))
            .collect();
        let sampled = ids.iter().filter(|id| is_sampled(id, 0.1)).count();
        assert!((9_000..=11_000).contains(&sampled), "{sampled}");
        assert!(ids.iter().all(|id| is_sampled(id, 1.0)));
        assert!(!ids.iter().any(|id| is_sampled(id, 0.0)));
        assert_eq!(
            ids.iter().map(|id| is_sampled(id, 0.3)).collect::<Vec<_>>(),
            ids.iter().map(|id| is_sampled(id, 0.3)).collect::<Vec<_>>()
        );
    }
}
