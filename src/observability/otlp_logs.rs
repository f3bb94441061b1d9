//! `otel_logs_otlp` log exporter: every log event (lifecycle events and errors included) as an
//! OTLP log record, through the OpenTelemetry SDK's batch processor and `opentelemetry-otlp`.
//!
//! gRPC export needs a Tokio reactor while the SDK's batch thread is a plain thread, so the
//! gRPC exporter is wrapped to run each export on its own small runtime. Call [`shutdown`]
//! before the process exits so the last batch leaves.

use std::sync::Mutex;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLogger, SdkLoggerProvider};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

use super::export::ExportSetupError;
use super::log_record::{Fields, LogIdentity, resolve};
use crate::config::{OtlpProtocol, OtlpSettings};

/// Providers to shut down at exit.
static PROVIDERS: Mutex<Vec<SdkLoggerProvider>> = Mutex::new(Vec::new());

/// Exports what is still batched; waits at most each exporter's timeout.
pub fn shutdown() {
    let providers = PROVIDERS
        .lock()
        .map(|mut p| std::mem::take(&mut *p))
        .unwrap_or_default();
    for provider in providers {
        let _ = provider.shutdown();
    }
}

/// The OTLP gRPC log exporter, driven on its own current-thread Tokio runtime.
#[derive(Debug)]
struct GrpcLogs {
    inner: opentelemetry_otlp::LogExporter,
    runtime: tokio::runtime::Runtime,
    timeout: Duration,
}

impl LogExporter for GrpcLogs {
    fn export(
        &self,
        batch: LogBatch<'_>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let result = self
            .runtime
            .block_on(async { tokio::time::timeout(self.timeout, self.inner.export(batch)).await })
            .unwrap_or_else(|_| {
                Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                    "log export timed out".into(),
                ))
            });
        std::future::ready(result)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

fn setup_error(message: impl std::fmt::Display) -> ExportSetupError {
    ExportSetupError {
        kind: "otel_logs_otlp",
        message: message.to_string(),
    }
}

fn resource(settings: &OtlpSettings, identity: &LogIdentity) -> Resource {
    Resource::builder()
        .with_service_name(super::export::service_name(
            settings.service_name.as_deref(),
        ))
        .with_attributes([
            KeyValue::new(
                "service.instance.id",
                super::export::instance_id(
                    &identity.name,
                    identity.pid,
                    &super::export::host_name(),
                ),
            ),
            KeyValue::new("process.pid", i64::from(identity.pid)),
            KeyValue::new("host.name", super::export::host_name()),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        .build()
}

/// The logs endpoint as the exporter will resolve it (for the TLS decision).
fn logs_endpoint(settings: &OtlpSettings) -> String {
    use super::otel_env::process_env;
    settings
        .endpoint
        .clone()
        .or_else(|| process_env("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"))
        .or_else(|| process_env("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .unwrap_or_default()
}

fn provider(
    settings: &OtlpSettings,
    identity: &LogIdentity,
) -> Result<SdkLoggerProvider, ExportSetupError> {
    let timeout = settings.timeout();
    let builder = SdkLoggerProvider::builder().with_resource(resource(settings, identity));
    let protocol = super::otel_env::protocol(
        settings.protocol,
        super::otel_env::Signal::Logs,
        &super::otel_env::process_env,
    );
    let tls_files = super::otlp_tls::TlsFiles::from_env(
        super::otel_env::Signal::Logs,
        &super::otel_env::process_env,
    );
    let builder = match protocol {
        OtlpProtocol::Grpc => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(setup_error)?;
            let inner = {
                let _entered = runtime.enter();
                let mut exporter = opentelemetry_otlp::LogExporter::builder()
                    .with_tonic()
                    .with_timeout(timeout);
                if let Some(endpoint) = &settings.endpoint {
                    exporter = exporter.with_endpoint(endpoint.clone());
                }
                if let Some(tls) = super::otlp_tls::grpc(&logs_endpoint(settings), &tls_files)
                    .map_err(setup_error)?
                {
                    exporter = exporter.with_tls_config(tls);
                }
                exporter.build().map_err(setup_error)?
            };
            builder.with_batch_exporter(GrpcLogs {
                inner,
                runtime,
                timeout,
            })
        }
        OtlpProtocol::HttpProtobuf => {
            let client = super::otlp_tls::http_client(&tls_files, timeout).map_err(setup_error)?;
            let mut exporter = opentelemetry_otlp::LogExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_timeout(timeout);
            if let Some(endpoint) = &settings.endpoint {
                exporter = exporter.with_endpoint(endpoint.clone());
            }
            if !settings.headers.is_empty() {
                exporter = exporter.with_headers(settings.headers.clone().into_iter().collect());
            }
            builder.with_batch_exporter(exporter.build().map_err(setup_error)?)
        }
    };
    Ok(builder.build())
}

/// A `tracing` layer that turns every event into an OTLP log record.
pub struct OtlpLogLayer {
    identity: LogIdentity,
    logger: SdkLogger,
}

impl OtlpLogLayer {
    /// A layer exporting log records as `identity` with `settings`.
    pub fn new(settings: &OtlpSettings, identity: LogIdentity) -> Result<Self, ExportSetupError> {
        let provider = provider(settings, &identity)?;
        let logger = provider.logger("stream-kernel");
        if let Ok(mut providers) = PROVIDERS.lock() {
            providers.push(provider);
        }
        Ok(Self { identity, logger })
    }
}

/// A typed log field as an OTLP attribute value (numbers stay numbers).
fn any_value(value: super::log_record::LogValue) -> AnyValue {
    use super::log_record::LogValue;
    match value {
        LogValue::Text(text) => AnyValue::from(text),
        LogValue::Int(n) => AnyValue::Int(n),
        LogValue::UInt(n) => {
            i64::try_from(n).map_or_else(|_| AnyValue::from(n.to_string()), AnyValue::Int)
        }
        LogValue::Float(x) => AnyValue::Double(x),
        LogValue::Bool(b) => AnyValue::Boolean(b),
    }
}

fn severity(level: &Level) -> (Severity, &'static str) {
    match *level {
        Level::ERROR => (Severity::Error, "ERROR"),
        Level::WARN => (Severity::Warn, "WARN"),
        Level::INFO => (Severity::Info, "INFO"),
        Level::DEBUG => (Severity::Debug, "DEBUG"),
        Level::TRACE => (Severity::Trace, "TRACE"),
    }
}

impl<S: Subscriber> Layer<S> for OtlpLogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let (worker, pid) = resolve(&self.identity, &fields);
        let (number, text) = severity(event.metadata().level());
        let mut record = self.logger.create_log_record();
        record.set_timestamp(std::time::SystemTime::now());
        record.set_severity_number(number);
        record.set_severity_text(text);
        record.set_target(event.metadata().target().to_string());
        record.set_body(AnyValue::from(fields.message.clone()));
        record.add_attribute("worker_id", worker);
        // A number, as the resource's `process.pid` is.
        match pid.parse::<i64>() {
            Ok(number) => record.add_attribute("pid", number),
            Err(_) => record.add_attribute("pid", pid),
        }
        if let Some(run) = super::ids::current_run() {
            record.add_attribute("stream_kernel.run_id", run);
        }
        for (key, value) in fields.pairs {
            if key != "worker_id" && key != "pid" {
                record.add_attribute(key, any_value(value));
            }
        }
        self.logger.emit(record);
    }
}
