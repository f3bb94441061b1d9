//! `opentracing_bridge` span exporter: Jaeger agent UDP (compact thrift) through
//! `rustracing_jaeger`, for OpenTracing-era stacks.
//!
//! Each span keeps its ids (trace id high/low, span id), its parent as a ChildOf reference, its
//! attributes as tags, and an error as the tag `error=true` plus a log entry
//! `{event: error, error.kind, message}`. Spans go out in packets of at most
//! [`SPANS_PER_PACKET`] to stay under the agent's UDP limit.

use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use rustracing::sampler::AllSampler;
use rustracing::tag::Tag;
use rustracing_jaeger::Tracer;
use rustracing_jaeger::reporter::JaegerCompactReporter;
use rustracing_jaeger::span::{
    FinishedSpan, SpanContext, SpanContextStateBuilder, SpanReceiver, TraceId,
};

use super::{ExportError, ExportSetupError, RunResource, SpanExporter};
use crate::config::BridgeSettings;
use crate::observability::span::SpanRecord;

pub const SPANS_PER_PACKET: usize = 40;

pub struct BridgeExporter {
    agent: String,
    tracer: Tracer,
    finished: SpanReceiver,
    reporter: JaegerCompactReporter,
    scenario: String,
}

fn setup_error(message: impl std::fmt::Display) -> ExportSetupError {
    ExportSetupError {
        kind: "opentracing_bridge",
        message: message.to_string(),
    }
}

fn trace_id(bytes: &[u8; 16]) -> TraceId {
    let mut high = [0u8; 8];
    let mut low = [0u8; 8];
    high.copy_from_slice(&bytes[..8]);
    low.copy_from_slice(&bytes[8..]);
    TraceId {
        high: u64::from_be_bytes(high),
        low: u64::from_be_bytes(low),
    }
}

impl BridgeExporter {
    pub fn new(
        settings: &BridgeSettings,
        resource: &RunResource,
    ) -> Result<Self, ExportSetupError> {
        let agent = settings
            .agent
            .to_socket_addrs()
            .map_err(|e| setup_error(format!("agent {}: {e}", settings.agent)))?
            .next()
            .ok_or_else(|| setup_error(format!("agent {}: no address", settings.agent)))?;
        let service = super::service_name(settings.service_name.as_deref());
        let mut reporter = JaegerCompactReporter::new(&service).map_err(setup_error)?;
        reporter.set_agent_addr(agent);
        let (tracer, finished) = Tracer::new(AllSampler);
        Ok(Self {
            agent: settings.agent.clone(),
            tracer,
            finished,
            reporter,
            scenario: resource.scenario.clone(),
        })
    }

    /// Builds and finishes the OpenTracing span of `span` (it arrives on `self.finished`).
    fn emit(&self, span: &SpanRecord) {
        let trace = trace_id(&span.trace_id);
        let state = SpanContextStateBuilder::new()
            .trace_id(trace)
            .span_id(span.span_id)
            .finish();
        let mut options = self
            .tracer
            .span(span.name.clone())
            .start_time(UNIX_EPOCH + Duration::from_nanos(span.start_unix_ns))
            .tag(Tag::new("process_group", span.process_group.clone()))
            .tag(Tag::new("route_hop", i64::from(span.route_hop)))
            .tag(Tag::new("worker_id", span.worker_id.clone()))
            .tag(Tag::new("seq", span.seq as i64))
            .tag(Tag::new("scenario", self.scenario.clone()))
            .tag(Tag::new("status", span.status()));
        if let Some(from) = &span.handoff_from {
            options = options.tag(Tag::new("handoff_from", from.clone()));
        }
        if span.parent_span_id != 0 {
            let parent = SpanContext::new(
                SpanContextStateBuilder::new()
                    .trace_id(trace)
                    .span_id(span.parent_span_id)
                    .finish(),
                Vec::new(),
            );
            options = options.child_of(&parent);
        }
        let mut started = options.start_with_state(state);
        if let Some(error) = &span.error {
            let message = error.clone();
            started.error_log(|log| {
                log.kind("node_error").message(message);
            });
        }
        let end = UNIX_EPOCH + Duration::from_nanos(span.end_unix_ns);
        started.set_finish_time(|| end);
    }
}

impl SpanExporter for BridgeExporter {
    fn destination(&self) -> String {
        format!("udp://{}", self.agent)
    }

    fn export(&mut self, batch: &[Arc<SpanRecord>]) -> Result<(), ExportError> {
        for chunk in batch.chunks(SPANS_PER_PACKET) {
            for span in chunk {
                self.emit(span);
            }
            let spans: Vec<FinishedSpan> = self.finished.try_iter().collect();
            self.reporter
                .report(&spans)
                .map_err(|e| ExportError(e.to_string()))?;
        }
        Ok(())
    }
}
