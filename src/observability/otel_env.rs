//! The OpenTelemetry SDK environment variables the engine honours itself, for the keys a config
//! leaves out (a key in the config wins, as programmatic settings do in the SDKs):
//! `OTEL_SDK_DISABLED`, `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, and
//! `OTEL_EXPORTER_OTLP_PROTOCOL` / `OTEL_EXPORTER_OTLP_{TRACES,LOGS}_PROTOCOL`. The endpoint,
//! headers, timeout and certificate variables are read by `opentelemetry-otlp` itself, the
//! service name by `export::resource::service_name`.
//!
//! As the SDK specification asks, an unknown or malformed value is reported at WARN and the
//! default is used; the run does not fail over an environment variable.

use crate::config::reader::Choice;
use crate::config::{Config, LogExporter, OtlpProtocol, SamplerKind, TraceExporter};

/// Reads one variable; the process environment in production, a map in tests.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, with empty values treated as unset (as the specification says).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Resolves, once per run and before anything starts, what `config` leaves to the environment:
/// the sampler and its ratio, each OTLP exporter's protocol, and `OTEL_SDK_DISABLED` (which
/// removes the OpenTelemetry exporters, and turns tracing off when no exporter is left). The
/// supervisor hands the resolved config to its workers, so every process decides alike.
/// Returns what was changed, for the log.
pub fn apply(config: &mut Config, lookup: Lookup<'_>) -> Vec<String> {
    let mut notes = Vec::new();
    let observability = &mut config.runtime.observability;
    let tracing = &mut observability.tracing;
    let (kind, ratio) = sampler(tracing.sampler, tracing.sample_ratio, lookup);
    (tracing.sampler, tracing.sample_ratio) = (Some(kind), Some(ratio));
    let logs = &mut observability.logging.exporters;
    if sdk_disabled(lookup) {
        let before = (tracing.exporters.len(), logs.len());
        tracing
            .exporters
            .retain(|e| !matches!(e, TraceExporter::OtelOtlp(_)));
        logs.retain(|e| !matches!(e, LogExporter::OtelLogsOtlp(_)));
        if (tracing.exporters.len(), logs.len()) != before {
            notes.push("OTEL_SDK_DISABLED=true: the OpenTelemetry exporters are off".to_string());
        }
        if tracing.enabled && tracing.exporters.is_empty() {
            tracing.enabled = false;
            notes.push("OTEL_SDK_DISABLED=true: no span exporter left, tracing is off".to_string());
        }
    }
    for exporter in &mut tracing.exporters {
        if let TraceExporter::OtelOtlp(settings) = exporter {
            settings.protocol = Some(protocol(settings.protocol, Signal::Traces, lookup));
            settings.timeout_seconds = Some(timeout_seconds(
                settings.timeout_seconds,
                Signal::Traces,
                lookup,
            ));
        }
    }
    for exporter in logs.iter_mut() {
        if let LogExporter::OtelLogsOtlp(settings) = exporter {
            settings.protocol = Some(protocol(settings.protocol, Signal::Logs, lookup));
            settings.timeout_seconds = Some(timeout_seconds(
                settings.timeout_seconds,
                Signal::Logs,
                lookup,
            ));
        }
    }
    notes
}

/// `config` with [`apply`] done against the process environment; what changed is logged.
pub fn resolved(config: &Config) -> Config {
    let mut config = config.clone();
    for note in apply(&mut config, &process_env) {
        tracing::info!(worker_id = "supervisor", "{note}");
    }
    config
}

/// `OTEL_SDK_DISABLED=true` (case-insensitive): no OpenTelemetry export at all (the `otel_otlp`
/// span exporter and the `otel_logs_otlp` log exporter are left out; the engine's own jsonl,
/// stdout and Jaeger exporters are not OpenTelemetry SDK components and stay).
pub fn sdk_disabled(lookup: Lookup<'_>) -> bool {
    lookup("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The head sampler: the config's, else `OTEL_TRACES_SAMPLER`, else `parentbased_traceidratio`;
/// the ratio: the config's, else `OTEL_TRACES_SAMPLER_ARG`, else 1.0.
pub fn sampler(
    configured: Option<SamplerKind>,
    configured_ratio: Option<f64>,
    lookup: Lookup<'_>,
) -> (SamplerKind, f64) {
    let kind = configured
        .or_else(|| {
            let value = lookup("OTEL_TRACES_SAMPLER")?;
            let kind = choice::<SamplerKind>(&value);
            if kind.is_none() {
                warn_ignored("OTEL_TRACES_SAMPLER", &value, SamplerKind::CANONICAL);
            }
            kind
        })
        .unwrap_or(SamplerKind::ParentBasedTraceIdRatio);
    let ratio = configured_ratio
        .or_else(|| {
            let value = lookup("OTEL_TRACES_SAMPLER_ARG")?;
            let ratio = value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r));
            if ratio.is_none() {
                warn_ignored("OTEL_TRACES_SAMPLER_ARG", &value, &["a ratio in 0..1"]);
            }
            ratio
        })
        .unwrap_or(1.0);
    (kind, ratio)
}

/// Which signal an OTLP exporter sends (its own protocol variable comes first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Spans (`OTEL_EXPORTER_OTLP_TRACES_*`).
    Traces,
    /// Log records (`OTEL_EXPORTER_OTLP_LOGS_*`).
    Logs,
}

/// The OTLP protocol: the config's, else the signal's variable, else
/// `OTEL_EXPORTER_OTLP_PROTOCOL`, else gRPC. `http/json` is not supported: reported, and the
/// next source is used.
pub fn protocol(
    configured: Option<OtlpProtocol>,
    signal: Signal,
    lookup: Lookup<'_>,
) -> OtlpProtocol {
    let specific = match signal {
        Signal::Traces => "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        Signal::Logs => "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    };
    configured
        .or_else(|| from_variable(specific, lookup))
        .or_else(|| from_variable("OTEL_EXPORTER_OTLP_PROTOCOL", lookup))
        .unwrap_or(OtlpProtocol::Grpc)
}

/// An export call's deadline in seconds: the config's, else the signal's
/// `OTEL_EXPORTER_OTLP_{TRACES,LOGS}_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT` (both in
/// milliseconds, as the specification gives them), else 10.
pub fn timeout_seconds(configured: Option<f64>, signal: Signal, lookup: Lookup<'_>) -> f64 {
    let specific = match signal {
        Signal::Traces => "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        Signal::Logs => "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
    };
    let from = |name: &str| -> Option<f64> {
        let value = lookup(name)?;
        let millis = value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|m| *m > 0.0 && m.is_finite());
        if millis.is_none() {
            warn_ignored(name, &value, &["a positive number of milliseconds"]);
        }
        millis.map(|m| m / 1000.0)
    };
    configured
        .or_else(|| from(specific))
        .or_else(|| from("OTEL_EXPORTER_OTLP_TIMEOUT"))
        .unwrap_or(crate::config::DEFAULT_OTLP_TIMEOUT_SECONDS)
}

fn from_variable(name: &str, lookup: Lookup<'_>) -> Option<OtlpProtocol> {
    let value = lookup(name)?;
    let protocol = choice::<OtlpProtocol>(&value);
    if protocol.is_none() {
        warn_ignored(name, &value, OtlpProtocol::CANONICAL);
    }
    protocol
}

fn choice<T: Choice>(value: &str) -> Option<T> {
    let value = value.trim().to_ascii_lowercase();
    T::ACCEPTED
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, v)| *v)
}

/// An environment value that cannot be used. Said on stderr, not through the log: the
/// environment is read before the log destinations exist (and a value that cannot be used
/// must not vanish with an unconfigured logger).
fn warn_ignored(name: &str, value: &str, accepted: &[&str]) {
    eprintln!(
        "warning: {name}={value:?} is not supported (accepted: {}); using the next setting or the default",
        accepted.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn sampler_from_config_then_environment_then_default() {
        let none = env(&[]);
        assert_eq!(
            sampler(None, None, &none),
            (SamplerKind::ParentBasedTraceIdRatio, 1.0)
        );
        let set = env(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]);
        assert_eq!(sampler(None, None, &set), (SamplerKind::TraceIdRatio, 0.25));
        assert_eq!(
            sampler(Some(SamplerKind::AlwaysOff), Some(0.5), &set),
            (SamplerKind::AlwaysOff, 0.5)
        );
        let bad = env(&[
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ]);
        assert_eq!(
            sampler(None, None, &bad),
            (SamplerKind::ParentBasedTraceIdRatio, 1.0)
        );
        let upper = env(&[("OTEL_TRACES_SAMPLER", "ParentBased_Always_Off")]);
        assert_eq!(
            sampler(None, None, &upper).0,
            SamplerKind::ParentBasedAlwaysOff
        );
    }

    #[test]
    fn protocol_from_config_then_signal_then_general_variable() {
        let general = env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]);
        assert_eq!(
            protocol(None, Signal::Traces, &general),
            OtlpProtocol::HttpProtobuf
        );
        assert_eq!(
            protocol(Some(OtlpProtocol::Grpc), Signal::Traces, &general),
            OtlpProtocol::Grpc
        );
        let both = env(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ]);
        assert_eq!(protocol(None, Signal::Traces, &both), OtlpProtocol::Grpc);
        assert_eq!(
            protocol(None, Signal::Logs, &both),
            OtlpProtocol::HttpProtobuf
        );
        let json = env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]);
        assert_eq!(protocol(None, Signal::Traces, &json), OtlpProtocol::Grpc);
    }

    /// The environment fills what the config leaves out, and OTEL_SDK_DISABLED removes only the
    /// OpenTelemetry exporters.
    #[test]
    fn apply_resolves_a_config() {
        let yaml = "version: 1\nscenario: {name: baseline}\nruntime:\n  observability:\n    tracing:\n      enabled: true\n      exporters:\n        - {kind: otel_otlp, settings: {}}\n        - {kind: otel_otlp, settings: {protocol: grpc}}\n        - {kind: stdout, settings: {}}\n";
        struct AnyNodes;
        impl crate::config::NodeCatalog for AnyNodes {
            fn check(&self, _: &mut Config, _: &mut crate::config::reader::Diagnostics) {}
        }
        let load = || {
            crate::config::load_str(yaml, &AnyNodes)
                .expect("valid")
                .config
        };
        let mut config = load();
        let notes = apply(
            &mut config,
            &env(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_TRACES_SAMPLER", "always_off"),
            ]),
        );
        assert!(notes.is_empty());
        let tracing = &config.runtime.observability.tracing;
        assert_eq!(tracing.sampler, Some(SamplerKind::AlwaysOff));
        let protocols: Vec<_> = tracing
            .exporters
            .iter()
            .filter_map(|e| match e {
                TraceExporter::OtelOtlp(s) => s.protocol,
                _ => None,
            })
            .collect();
        assert_eq!(protocols, [OtlpProtocol::HttpProtobuf, OtlpProtocol::Grpc]);
        let mut config = load();
        let notes = apply(&mut config, &env(&[("OTEL_SDK_DISABLED", "true")]));
        assert_eq!(notes.len(), 1, "{notes:?}");
        let tracing = &config.runtime.observability.tracing;
        assert!(tracing.enabled);
        assert_eq!(tracing.exporters, [TraceExporter::Stdout]);
    }

    #[test]
    fn sdk_disabled_only_when_true() {
        assert!(sdk_disabled(&env(&[("OTEL_SDK_DISABLED", "TRUE")])));
        assert!(!sdk_disabled(&env(&[("OTEL_SDK_DISABLED", "false")])));
        assert!(!sdk_disabled(&env(&[("OTEL_SDK_DISABLED", "1")])));
        assert!(!sdk_disabled(&env(&[])));
    }
}
