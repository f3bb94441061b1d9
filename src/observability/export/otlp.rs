//! `otel_otlp` span exporter, on `opentelemetry-otlp`: gRPC (tonic) or HTTP/protobuf.
//!
//! Settings left out fall back to the standard variables (`OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`,
//! `_HEADERS`, `_TIMEOUT`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`), which the library
//! reads itself. Spans are sent with one resource per process (service name, optionally per
//! group; `service.instance.id` = run and worker; `process.pid`; `host.name`). Every export
//! call runs under `timeout_seconds`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};

use super::{
    ExportError, ExportSetupError, RunResource, SpanExporter, host_name, instance_id, service_name,
};
use crate::config::{OtlpProtocol, OtlpSettings};
use crate::observability::otel_env::{self, Signal};
use crate::observability::otlp_tls::{self, TlsFiles};
use crate::observability::span::SpanRecord;

/// The endpoint the exporter sends to: the config's, else the standard variables, else the
/// protocol's default (as `opentelemetry-otlp` resolves it).
fn endpoint_of(settings: &OtlpSettings, protocol: OtlpProtocol) -> String {
    settings
        .endpoint
        .clone()
        .or_else(|| otel_env::process_env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .or_else(|| otel_env::process_env("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .unwrap_or_else(|| match protocol {
            OtlpProtocol::Grpc => "http://localhost:4317".to_string(),
            OtlpProtocol::HttpProtobuf => "http://localhost:4318/v1/traces".to_string(),
        })
}

pub struct OtlpExporter {
    /// The endpoint as configured or from the environment (for warnings).
    endpoint: String,
    exporter: opentelemetry_otlp::SpanExporter,
    /// gRPC needs a Tokio reactor; HTTP uses a blocking client and must run outside one.
    runtime: Option<tokio::runtime::Runtime>,
    timeout: Duration,
    service: String,
    by_group: bool,
    resource: RunResource,
    host: String,
    scope: InstrumentationScope,
}

fn setup_error(message: impl std::fmt::Display) -> ExportSetupError {
    ExportSetupError {
        kind: "otel_otlp",
        message: message.to_string(),
    }
}

impl OtlpExporter {
    pub fn new(settings: &OtlpSettings, resource: &RunResource) -> Result<Self, ExportSetupError> {
        let timeout = settings.timeout();
        let headers: std::collections::HashMap<String, String> =
            settings.headers.clone().into_iter().collect();
        let protocol = otel_env::protocol(
            settings.protocol,
            otel_env::Signal::Traces,
            &otel_env::process_env,
        );
        let (exporter, runtime) = match protocol {
            OtlpProtocol::Grpc => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(setup_error)?;
                let _entered = runtime.enter();
                let mut builder = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_timeout(timeout);
                if let Some(endpoint) = &settings.endpoint {
                    builder = builder.with_endpoint(endpoint.clone());
                }
                let files = TlsFiles::from_env(Signal::Traces, &otel_env::process_env);
                if let Some(tls) =
                    otlp_tls::grpc(&endpoint_of(settings, protocol), &files).map_err(setup_error)?
                {
                    builder = builder.with_tls_config(tls);
                }
                if !headers.is_empty() {
                    builder = builder.with_metadata(metadata(&settings.headers)?);
                }
                (builder.build().map_err(setup_error)?, Some(runtime))
            }
            OtlpProtocol::HttpProtobuf => {
                let files = TlsFiles::from_env(Signal::Traces, &otel_env::process_env);
                let client = otlp_tls::http_client(&files, timeout).map_err(setup_error)?;
                let mut builder = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_http_client(client)
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_timeout(timeout);
                if let Some(endpoint) = &settings.endpoint {
                    builder = builder.with_endpoint(endpoint.clone());
                }
                if !headers.is_empty() {
                    builder = builder.with_headers(headers);
                }
                (builder.build().map_err(setup_error)?, None)
            }
        };
        Ok(Self {
            endpoint: endpoint_of(settings, protocol),
            exporter,
            runtime,
            timeout,
            service: service_name(settings.service_name.as_deref()),
            by_group: settings.service_name_by_process_group,
            resource: resource.clone(),
            host: host_name(),
            scope: InstrumentationScope::builder("stream-kernel")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        })
    }

    fn resource_of(&self, span: &SpanRecord) -> Resource {
        let service = if self.by_group {
            format!("{}.{}", self.service, span.process_group)
        } else {
            self.service.clone()
        };
        Resource::builder()
            .with_service_name(service)
            .with_attributes([
                KeyValue::new(
                    "service.instance.id",
                    instance_id(&span.worker_id, span.pid, &self.host),
                ),
                KeyValue::new(
                    "stream_kernel.run_id",
                    format!("{:016x}", self.resource.run_id),
                ),
                KeyValue::new("process.pid", i64::from(span.pid)),
                KeyValue::new("host.name", self.host.clone()),
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            ])
            .with_attributes(
                self.resource
                    .placement_host
                    .iter()
                    .map(|host| KeyValue::new("stream_kernel.host", host.clone())),
            )
            .build()
    }

    fn span_data(&self, span: &SpanRecord) -> SpanData {
        let mut attributes = vec![
            KeyValue::new("process_group", span.process_group.clone()),
            KeyValue::new("route_hop", i64::from(span.route_hop)),
            KeyValue::new("worker_id", span.worker_id.clone()),
            KeyValue::new("seq", span.seq as i64),
            KeyValue::new("scenario", self.resource.scenario.clone()),
            KeyValue::new("status", span.status()),
        ];
        if let Some(from) = &span.handoff_from {
            attributes.push(KeyValue::new("handoff_from", from.clone()));
        }
        if let Some(error) = &span.error {
            attributes.push(KeyValue::new("error.message", error.clone()));
        }
        SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes(span.trace_id),
                SpanId::from_bytes(span.span_id.to_be_bytes()),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from_bytes(span.parent_span_id.to_be_bytes()),
            parent_span_is_remote: span.handoff_from.is_some(),
            // The first node after a hand-off received the record from another process (a
            // ring or another host): a consumer of that message. Every other hop is a call
            // inside the process.
            span_kind: if span.handoff_from.is_some() {
                SpanKind::Consumer
            } else {
                SpanKind::Internal
            },
            name: span.name.clone().into(),
            start_time: UNIX_EPOCH + Duration::from_nanos(span.start_unix_ns),
            end_time: UNIX_EPOCH + Duration::from_nanos(span.end_unix_ns),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: match &span.error {
                Some(error) => Status::error(error.clone()),
                None => Status::Ok,
            },
            instrumentation_scope: self.scope.clone(),
        }
    }

    fn send(&mut self, batch: Vec<SpanData>) -> Result<(), ExportError> {
        let export = self.exporter.export(batch);
        let result = match &self.runtime {
            Some(runtime) => runtime
                .block_on(async { tokio::time::timeout(self.timeout, export).await })
                .map_err(|_| ExportError(format!("export timed out after {:?}", self.timeout)))?,
            None => futures_executor::block_on(export),
        };
        result.map_err(|e| ExportError(e.to_string()))
    }
}

fn metadata(
    headers: &BTreeMap<String, String>,
) -> Result<tonic::metadata::MetadataMap, ExportSetupError> {
    let mut map = tonic::metadata::MetadataMap::new();
    for (key, value) in headers {
        let key = tonic::metadata::MetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes())
            .map_err(|e| setup_error(format!("header {key}: {e}")))?;
        let value = value
            .parse()
            .map_err(|e| setup_error(format!("header value: {e}")))?;
        map.insert(key, value);
    }
    Ok(map)
}

impl SpanExporter for OtlpExporter {
    fn destination(&self) -> String {
        self.endpoint.clone()
    }

    fn export(&mut self, batch: &[Arc<SpanRecord>]) -> Result<(), ExportError> {
        // One request per process (resource), in the order the spans came.
        let mut by_process: Vec<(u32, Vec<SpanData>, Resource)> = Vec::new();
        for span in batch {
            match by_process.iter_mut().find(|(pid, ..)| *pid == span.pid) {
                Some((_, spans, _)) => spans.push(self.span_data(span)),
                None => {
                    by_process.push((span.pid, vec![self.span_data(span)], self.resource_of(span)))
                }
            }
        }
        let mut first_error = None;
        for (_, spans, resource) in by_process {
            self.exporter.set_resource(&resource);
            if let Err(error) = self.send(spans) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
