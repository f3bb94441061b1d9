//! How spans and logs name where they come from: the service name, the host, and one
//! `service.instance.id` scheme for every process (shared by every exporter, OTLP or not).

/// The service name: the settings', else `OTEL_SERVICE_NAME`, else `stream-kernel`.
pub fn service_name(configured: Option<&str>) -> String {
    configured
        .map(str::to_string)
        .or_else(|| {
            std::env::var("OTEL_SERVICE_NAME")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "stream-kernel".to_string())
}

/// `service.instance.id` of one process, the same for its spans and its OTLP logs:
/// `worker/pid@host` (`supervisor/...` for the supervisor).
pub fn instance_id(worker: &str, pid: u32, host: &str) -> String {
    format!("{worker}/{pid}@{host}")
}

/// This host's name (the kernel's hostname), `unknown` when it cannot be read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}
