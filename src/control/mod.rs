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
pub mod server;
pub mod session;
pub mod transport;

pub use channel::{
    ControlMetrics, Endpoint, EndpointSettings, FrameChecker, FrameReceiver, FrameSender,
    KeyDirectory, Received, now_ms,
};
pub use frame::{Direction, FrameError, FrameHeader, ReadError, RejectKind};
pub use keys::{KEY_FD, KEY_LEN, KeyError, KeyPipe, MasterKey, WorkerKey, read_inherited_key};
pub use messages::{
    BootstrapBundle, ControlMessage, DrainReport, FailureCategory, InputMark, MessageKind,
    NodeCount, NodeFinal, OutputBytes, OutputMark, RingBinding, StopMode, WorkerCounters,
};
pub use server::{AcceptError, Accepted, ControlServer, Handshakes};
pub use session::{SessionError, SupervisorSessions, WorkerPhase, WorkerSession};
pub use transport::{
    ControlAddress, ControlError, ControlListener, ControlStream, SOCKET_DIR_PREFIX, connect,
    remove_stale_socket_dirs,
};
