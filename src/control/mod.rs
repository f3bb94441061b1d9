//! Control plane: the authenticated lifecycle channel between the supervisor and its workers.
//!
//! Owns keys (per-run master key, HKDF per-worker keys, pipe delivery), the frame codec and its
//! receive checks (length, truncation, HMAC tag, routing, body, time window, replay, order),
//! the messages, and the session rules of both sides. It must not decide lifecycle policy
//! (timeouts, failure handling): that is the supervisor's.
//!
//! **Nothing is parsed before a frame's tag verifies, and key material never reaches argv, the
//! environment, a file, a log line or an error message.**

pub mod channel;
pub mod env;
pub mod frame;
pub mod keys;
pub mod messages;
pub mod nonce;
pub mod session;

pub use channel::{
    AcceptError, Accepted, ControlAddress, ControlError, ControlListener, ControlMetrics,
    ControlServer, ControlStream, Endpoint, EndpointSettings, FrameChecker, FrameReceiver,
    FrameSender, Handshakes, KeyDirectory, Received, connect, now_ms, remove_stale_socket_dirs,
};
pub use frame::{Direction, FrameError, FrameHeader, ReadError, RejectKind};
pub use keys::{KEY_FD, KEY_LEN, KeyError, KeyPipe, MasterKey, WorkerKey, read_inherited_key};
pub use messages::{
    BootstrapBundle, ControlMessage, FailureCategory, MessageKind, RingBinding, StopMode,
    WorkerCounters,
};
pub use session::{SessionError, SupervisorSessions, WorkerPhase, WorkerSession};
