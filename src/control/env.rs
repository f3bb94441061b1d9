//! The worker role's environment: how a spawned worker learns who it is before it has a
//! config. The supervisor writes these variables (`supervisor::spawn`), the worker reads them
//! (`runtime::worker`); both depend on this contract, which depends on neither. Values are
//! never secret: the key arrives on fd 3 ([`super::KEY_FD`]), never in the environment.

/// `worker` when the process was spawned as a worker.
pub const ROLE: &str = "STREAM_KERNEL_ROLE";
/// The worker's id (`group#n`).
pub const WORKER_ID: &str = "STREAM_KERNEL_WORKER_ID";
/// The worker's 1-based number in the run.
pub const WORKER_NUMBER: &str = "STREAM_KERNEL_WORKER_NUMBER";
/// The supervisor's control address (`tcp:host:port` or `unix:path`).
pub const CONTROL: &str = "STREAM_KERNEL_CONTROL";
/// The supervisor's pid (a worker whose parent is gone exits).
pub const SUPERVISOR_PID: &str = "STREAM_KERNEL_SUPERVISOR_PID";
/// Milliseconds the worker waits for its bootstrap bundle.
pub const START_TIMEOUT_MS: &str = "STREAM_KERNEL_START_TIMEOUT_MS";
/// Control frame time window and size limit (the config's, before it has the config).
pub const CONTROL_TTL_MS: &str = "STREAM_KERNEL_CONTROL_TTL_MS";
/// The largest control message accepted, in bytes.
pub const CONTROL_MAX_PAYLOAD: &str = "STREAM_KERNEL_CONTROL_MAX_PAYLOAD";
