//! Observability plane: logs (lifecycle events and errors through `tracing`), process resource
//! figures, spans (sampling, telemetry rings) and their exporters. It must never block or slow
//! the data plane.

pub mod export;
pub mod ids;
pub mod logging;
pub mod otel_env;
pub mod otlp_logs;
pub mod process;
pub mod span;
pub mod telemetry;
