//! Observability plane: logs (lifecycle events and errors through `tracing`), process resource
//! figures, spans (sampling, telemetry rings) and their exporters. It must never block or slow
//! the data plane.

pub mod export;
pub mod ids;
pub mod latency;
pub mod log_record;
pub mod logging;
pub mod otel_env;
#[cfg(feature = "otlp")]
pub mod otlp_logs;
#[cfg(feature = "otlp")]
pub mod otlp_tls;
/// Without the `otlp` feature there are no OTLP logs to flush.
#[cfg(not(feature = "otlp"))]
pub mod otlp_logs {
    /// Nothing to export.
    pub fn shutdown() {}
}
pub mod process;
pub mod span;
pub mod telemetry;
