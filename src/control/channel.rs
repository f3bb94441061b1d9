//! Control transports and authenticated endpoints.
//!
//! Transports: `tcp_local` (a listener on a loopback address; the config refuses others) and
//! `unix` (a socket in a fresh 0700 directory, removed when the listener is dropped). One
//! connection per worker, opened by the worker.
//!
//! An [`Endpoint`] sends and receives frames for one worker. Receiving runs checks 1-3 in
//! `frame.rs`, then here: 4. direction and worker (`Misrouted`); 5. version, kind and rkyv
//! validation of the body (`Malformed`); 6. `issued_at` within the TTL, past or future
//! (`Expired`); 7. nonce not seen (`Replayed`, `NonceCacheFull`) and sequence = previous + 1
//! (`OutOfOrder`). Every rejection is counted by kind in [`ControlMetrics`]; a bad tag closes the
//! connection.
//!
//! The supervisor verifies a frame with the key of the worker its header names (it knows every
//! worker's key) and then checks that this is the worker the connection belongs to, so a frame
//! captured on one worker's connection and replayed on another's is `Misrouted`; a frame
//! reflected back to its sender fails the direction check.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::frame::{
    Direction, FrameError, FrameHeader, PROTOCOL_VERSION, ReadError, RejectKind, encode_frame,
    read_frame,
};
use super::keys::{MasterKey, WorkerKey};
use super::messages::{ControlMessage, MessageKind};
use super::nonce::{NonceCache, NonceVerdict};
use crate::config::{Control, ControlTransport};

/// Rejections by kind, for `/metrics` and the run summary.
#[derive(Debug, Default)]
pub struct ControlMetrics {
    rejected: [AtomicU64; 9],
    accepted_frames: AtomicU64,
}

impl ControlMetrics {
    pub fn record(&self, kind: RejectKind) {
        let index = RejectKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.rejected[index].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self, kind: RejectKind) -> u64 {
        let index = RejectKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.rejected[index].load(Ordering::Relaxed)
    }

    pub fn accepted_frames(&self) -> u64 {
        self.accepted_frames.load(Ordering::Relaxed)
    }

    /// Every rejection counter, by kind.
    pub fn snapshot(&self) -> Vec<(RejectKind, u64)> {
        RejectKind::ALL
            .iter()
            .map(|k| (*k, self.rejected(*k)))
            .collect()
    }
}

/// Settings shared by every endpoint of one side of a run.
#[derive(Debug)]
pub struct EndpointSettings {
    pub ttl_ms: u64,
    pub max_message: u64,
    pub nonces: Mutex<NonceCache>,
    pub metrics: ControlMetrics,
}

impl EndpointSettings {
    pub fn new(ttl: Duration, max_message: u64, nonce_capacity: usize) -> Arc<Self> {
        let ttl_ms = ttl.as_millis() as u64;
        Arc::new(Self {
            ttl_ms,
            max_message,
            nonces: Mutex::new(NonceCache::new(nonce_capacity, ttl_ms)),
            metrics: ControlMetrics::default(),
        })
    }

    pub fn from_config(control: &Control) -> Arc<Self> {
        Self::new(
            Duration::from_secs_f64(control.auth.ttl_seconds),
            control.max_payload_bytes,
            control.auth.nonce_cache_size as usize,
        )
    }
}

/// The supervisor's table of workers: number (1-based) -> id and key.
pub struct KeyDirectory {
    workers: Vec<(String, WorkerKey)>,
}

impl std::fmt::Debug for KeyDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyDirectory")
            .field(
                "workers",
                &self.workers.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl KeyDirectory {
    /// Derives every worker's key; worker `i` of `ids` gets number `i + 1`.
    pub fn derive(master: &MasterKey, ids: &[String]) -> Self {
        Self {
            workers: ids
                .iter()
                .map(|id| (id.clone(), master.derive(id)))
                .collect(),
        }
    }

    pub fn key(&self, number: u32) -> Option<&WorkerKey> {
        self.entry(number).map(|(_, key)| key)
    }

    pub fn id(&self, number: u32) -> Option<&str> {
        self.entry(number).map(|(id, _)| id.as_str())
    }

    pub fn number_of(&self, id: &str) -> Option<u32> {
        self.workers
            .iter()
            .position(|(w, _)| w == id)
            .map(|i| i as u32 + 1)
    }

    fn entry(&self, number: u32) -> Option<&(String, WorkerKey)> {
        (number as usize)
            .checked_sub(1)
            .and_then(|i| self.workers.get(i))
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }
}

/// A connected control socket.
#[derive(Debug)]
pub enum ControlStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl ControlStream {
    fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_nonblocking(on),
            Self::Unix(s) => s.set_nonblocking(on),
        }
    }

    fn raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Self::Tcp(s) => s.as_raw_fd(),
            Self::Unix(s) => s.as_raw_fd(),
        }
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_read_timeout(timeout),
            Self::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_write_timeout(timeout),
            Self::Unix(s) => s.set_write_timeout(timeout),
        }
    }

    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(match self {
            Self::Tcp(s) => Self::Tcp(s.try_clone()?),
            Self::Unix(s) => Self::Unix(s.try_clone()?),
        })
    }

    /// Closes both directions (pending reads on clones return end of stream).
    pub fn shutdown(&self) {
        let _ = match self {
            Self::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Self::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

impl std::io::Read for ControlStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            Self::Unix(s) => s.read(buf),
        }
    }
}

impl Write for ControlStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(buf),
            Self::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Tcp(s) => s.flush(),
            Self::Unix(s) => s.flush(),
        }
    }
}

/// Where workers connect (not secret: it may travel in the environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAddress {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for ControlAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "tcp:{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl std::str::FromStr for ControlAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(addr) = s.strip_prefix("tcp:") {
            return addr
                .parse()
                .map(Self::Tcp)
                .map_err(|e| format!("control address {s:?}: {e}"));
        }
        if let Some(path) = s.strip_prefix("unix:") {
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        Err(format!(
            "control address {s:?}: expected tcp:HOST:PORT or unix:PATH"
        ))
    }
}

/// Setting up or using the control channel failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot bind the control listener on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error("cannot create the control socket directory: {0}")]
    SocketDir(std::io::Error),
    #[error("cannot connect to the control listener at {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("control socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot encode a control message: {0}")]
    Encode(String),
    #[error("control connection closed")]
    Closed,
}

/// The supervisor's listening socket.
#[derive(Debug)]
pub struct ControlListener {
    inner: ListenerKind,
    address: ControlAddress,
}

#[derive(Debug)]
enum ListenerKind {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        // Removed (with the socket inside) when the listener is dropped.
        _dir: tempfile::TempDir,
    },
}

impl ControlListener {
    /// Binds per the config's control block.
    pub fn bind(control: &Control) -> Result<Self, ControlError> {
        match control.transport {
            ControlTransport::TcpLocal => {
                let address = format!("{}:{}", control.bind_host, control.bind_port);
                let listener =
                    TcpListener::bind(&address).map_err(|source| ControlError::Bind {
                        address: address.clone(),
                        source,
                    })?;
                let bound = listener.local_addr().map_err(ControlError::Io)?;
                listener.set_nonblocking(true).map_err(ControlError::Io)?;
                Ok(Self {
                    inner: ListenerKind::Tcp(listener),
                    address: ControlAddress::Tcp(bound),
                })
            }
            ControlTransport::Unix => {
                // Owner only (0700). The owner's pid in the name lets a later run remove it if
                // this process dies without cleaning up.
                let dir = tempfile::Builder::new()
                    .prefix(&format!("{SOCKET_DIR_PREFIX}{}-", std::process::id()))
                    .permissions(std::fs::Permissions::from_mode(0o700))
                    .tempdir()
                    .map_err(ControlError::SocketDir)?;
                let path = dir.path().join("control.sock");
                let listener = UnixListener::bind(&path).map_err(|source| ControlError::Bind {
                    address: path.display().to_string(),
                    source,
                })?;
                // Owner only: the directory is 0700 already; the socket says so too.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(ControlError::SocketDir)?;
                listener.set_nonblocking(true).map_err(ControlError::Io)?;
                Ok(Self {
                    inner: ListenerKind::Unix {
                        listener,
                        _dir: dir,
                    },
                    address: ControlAddress::Unix(path),
                })
            }
        }
    }

    pub fn address(&self) -> &ControlAddress {
        &self.address
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.inner {
            ListenerKind::Tcp(l) => l.as_fd(),
            ListenerKind::Unix { listener, .. } => listener.as_fd(),
        }
    }

    /// Accepts one connection if one is waiting (the listener is non-blocking).
    fn try_accept(&self) -> Result<Option<ControlStream>, ControlError> {
        let accepted = match &self.inner {
            ListenerKind::Tcp(l) => l.accept().map(|(s, _)| {
                let _ = s.set_nodelay(true);
                ControlStream::Tcp(s)
            }),
            ListenerKind::Unix { listener, .. } => {
                listener.accept().map(|(s, _)| ControlStream::Unix(s))
            }
        };
        match accepted {
            Ok(stream) => Ok(Some(stream)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(None),
            // A connection reset before it was accepted is the peer's problem, not ours.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => Ok(None),
            Err(e) => Err(ControlError::Io(e)),
        }
    }
}

/// Prefix of control socket directories in the temp dir: `<prefix><owner pid>-<random>`.
pub const SOCKET_DIR_PREFIX: &str = "stream-kernel-control-";

/// Removes control socket directories of supervisors that are gone: a supervisor killed with
/// `kill -9` cannot remove its own. A directory is stale when its owner's pid is dead, or (the
/// pid reused by another process) when nothing listens on its socket any more and it is older
/// than a minute (younger ones may belong to a supervisor that is just starting).
pub fn remove_stale_socket_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SOCKET_DIR_PREFIX))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        // (kill with no signal only asks whether the pid exists; pid 0 would mean our group)
        let owner_alive = pid > 0
            && matches!(
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
                Ok(()) | Err(nix::errno::Errno::EPERM)
            );
        if !owner_alive || (nobody_listens(&entry.path()) && older_than_a_minute(&entry)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// True when the directory's control socket is missing or refuses connections.
fn nobody_listens(dir: &std::path::Path) -> bool {
    match UnixStream::connect(dir.join("control.sock")) {
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
        ),
    }
}

fn older_than_a_minute(entry: &std::fs::DirEntry) -> bool {
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > Duration::from_secs(60))
}

/// Connects to a supervisor's control listener.
pub fn connect(address: &ControlAddress) -> Result<ControlStream, ControlError> {
    let failed = |source| ControlError::Connect {
        address: address.to_string(),
        source,
    };
    Ok(match address {
        ControlAddress::Tcp(addr) => {
            let stream = TcpStream::connect(addr).map_err(failed)?;
            stream.set_nodelay(true).map_err(ControlError::Io)?;
            ControlStream::Tcp(stream)
        }
        ControlAddress::Unix(path) => {
            ControlStream::Unix(UnixStream::connect(path).map_err(failed)?)
        }
    })
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How an endpoint finds the key of a received frame.
#[derive(Debug, Clone)]
enum Keys {
    /// A worker knows only its own key.
    Own { number: u32, key: WorkerKey },
    /// The supervisor knows every worker's key.
    Directory(Arc<KeyDirectory>),
}

/// A frame that passed every check, with its decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub header: FrameHeader,
    pub message: ControlMessage,
}

impl Received {
    pub fn kind(&self) -> MessageKind {
        self.message.kind()
    }
}

/// The sending half of an endpoint.
#[derive(Debug)]
pub struct FrameSender {
    stream: ControlStream,
    key: WorkerKey,
    worker: u32,
    direction: Direction,
    next_seq: u64,
    buf: Vec<u8>,
}

impl FrameSender {
    /// Signs and sends `message` with `correlation`.
    pub fn send(&mut self, message: &ControlMessage, correlation: u64) -> Result<(), ControlError> {
        let body = rkyv::to_bytes::<rkyv::rancor::Error>(message)
            .map_err(|e| ControlError::Encode(e.to_string()))?;
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| ControlError::Encode(e.to_string()))?;
        let header = FrameHeader {
            version: PROTOCOL_VERSION,
            kind: message.kind() as u8,
            direction: self.direction as u8,
            worker: self.worker,
            correlation,
            issued_at_ms: now_ms(),
            nonce,
            seq: self.next_seq,
        };
        encode_frame(&self.key, &header, &body, &mut self.buf);
        self.stream
            .write_all(&self.buf)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                    ControlError::Closed
                }
                _ => ControlError::Io(e),
            })?;
        self.next_seq += 1;
        Ok(())
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.stream.shutdown();
    }

    pub fn worker(&self) -> u32 {
        self.worker
    }
}

/// The receive checks of one connection, over any byte stream (sockets in use, byte slices in
/// the fuzz harness).
#[derive(Debug)]
pub struct FrameChecker {
    keys: Keys,
    /// The worker this connection belongs to (`None` on the supervisor side until HELLO).
    bound: Option<u32>,
    expect: Direction,
    last_seq: u64,
    settings: Arc<EndpointSettings>,
}

impl FrameChecker {
    /// The checks of a supervisor-side connection (every worker's key known).
    pub fn for_supervisor(directory: Arc<KeyDirectory>, settings: Arc<EndpointSettings>) -> Self {
        Self {
            keys: Keys::Directory(directory),
            bound: None,
            expect: Direction::ToSupervisor,
            last_seq: 0,
            settings,
        }
    }

    /// The checks of worker `number`'s connection.
    pub fn for_worker(number: u32, key: WorkerKey, settings: Arc<EndpointSettings>) -> Self {
        Self {
            keys: Keys::Own { number, key },
            bound: Some(number),
            expect: Direction::ToWorker,
            last_seq: 0,
            settings,
        }
    }

    /// Reads one frame from `reader` and runs checks 1-7, counting any rejection.
    pub fn check(&mut self, reader: &mut impl std::io::Read) -> Result<Received, ReadError> {
        let outcome = self.check_uncounted(reader);
        if let Err(ReadError::Rejected(rejection)) = &outcome {
            self.settings.metrics.record(rejection.kind());
        }
        outcome
    }

    fn check_uncounted(&mut self, reader: &mut impl std::io::Read) -> Result<Received, ReadError> {
        let max = self.settings.max_message;
        let keys = &self.keys;
        let frame = read_frame(reader, max, |worker| match keys {
            Keys::Own { number, key } => (*number == worker).then(|| key.clone()),
            Keys::Directory(directory) => directory.key(worker).cloned(),
        })?;
        let header = frame.header;
        // 4. Direction and worker.
        if header.direction != self.expect as u8 {
            return Err(FrameError::Misrouted {
                detail: format!(
                    "direction {} on a connection that receives {:?}",
                    header.direction, self.expect
                ),
            }
            .into());
        }
        if let Some(bound) = self.bound
            && bound != header.worker
        {
            return Err(FrameError::Misrouted {
                detail: format!(
                    "frame of worker {} on the connection of worker {bound}",
                    header.worker
                ),
            }
            .into());
        }
        // 5. Version, kind, body.
        let message = decode_message(&header, &frame.message)?;
        // 6. Time window, both ways.
        let skew_ms = header.issued_at_ms as i64 - now_ms() as i64;
        if skew_ms.unsigned_abs() > self.settings.ttl_ms {
            return Err(FrameError::Expired {
                skew_ms,
                ttl_ms: self.settings.ttl_ms,
            }
            .into());
        }
        // 7. Nonce (remembered only now), then sequence.
        let verdict = self
            .settings
            .nonces
            .lock()
            .map(|mut cache| cache.admit(header.nonce, now_ms()))
            .unwrap_or(NonceVerdict::Full);
        match verdict {
            NonceVerdict::Fresh => {}
            NonceVerdict::Replayed => return Err(FrameError::Replayed.into()),
            NonceVerdict::Full => return Err(FrameError::NonceCacheFull.into()),
        }
        if header.seq != self.last_seq + 1 {
            return Err(FrameError::OutOfOrder {
                expected: self.last_seq + 1,
                got: header.seq,
            }
            .into());
        }
        self.last_seq = header.seq;
        self.bound = Some(header.worker);
        self.settings
            .metrics
            .accepted_frames
            .fetch_add(1, Ordering::Relaxed);
        Ok(Received { header, message })
    }
}

/// The receiving half of an endpoint.
#[derive(Debug)]
pub struct FrameReceiver {
    stream: ControlStream,
    checker: FrameChecker,
    closed: bool,
}

impl FrameReceiver {
    /// Receives the next frame, waiting at most `timeout`, and runs every check.
    pub fn recv(&mut self, timeout: Duration) -> Result<Received, ReadError> {
        if self.closed {
            return Err(ReadError::Closed);
        }
        self.stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(ReadError::Io)?;
        let outcome = self.checker.check(&mut self.stream);
        if let Err(ReadError::Rejected(rejection)) = &outcome {
            // A frame that fails authentication ends the connection; so does one that cannot
            // be framed (the stream is no longer at a frame boundary).
            if matches!(
                rejection,
                FrameError::BadTag | FrameError::TooLarge { .. } | FrameError::Truncated { .. }
            ) {
                self.closed = true;
                self.stream.shutdown();
            }
        }
        outcome
    }

    /// The worker this connection belongs to, once known.
    pub fn worker(&self) -> Option<u32> {
        self.checker.bound
    }
}

fn decode_message(header: &FrameHeader, bytes: &[u8]) -> Result<ControlMessage, FrameError> {
    let malformed = |detail: String| FrameError::Malformed { detail };
    if header.version != PROTOCOL_VERSION {
        return Err(malformed(format!("protocol version {}", header.version)));
    }
    let kind = MessageKind::from_u8(header.kind)
        .ok_or_else(|| malformed(format!("unknown message kind {}", header.kind)))?;
    // rkyv needs aligned bytes; the frame's body sits at an arbitrary offset.
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    let message = rkyv::from_bytes::<ControlMessage, rkyv::rancor::Error>(&aligned)
        .map_err(|e| malformed(format!("body does not validate: {e}")))?;
    if message.kind() != kind {
        return Err(malformed(format!(
            "header says {kind}, body is {}",
            message.kind()
        )));
    }
    Ok(message)
}

/// Both halves of one worker's connection.
#[derive(Debug)]
pub struct Endpoint {
    pub tx: FrameSender,
    pub rx: FrameReceiver,
}

/// Write timeout for control frames (they are small; a peer that stops reading is dead).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

impl Endpoint {
    fn new(
        stream: ControlStream,
        key: WorkerKey,
        worker: u32,
        sends: Direction,
        keys: Keys,
        bound: Option<u32>,
        settings: Arc<EndpointSettings>,
    ) -> Result<Self, ControlError> {
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let reader = stream.try_clone()?;
        let expect = match sends {
            Direction::ToWorker => Direction::ToSupervisor,
            Direction::ToSupervisor => Direction::ToWorker,
        };
        Ok(Self {
            tx: FrameSender {
                stream,
                key,
                worker,
                direction: sends,
                next_seq: 1,
                buf: Vec::with_capacity(256),
            },
            rx: FrameReceiver {
                stream: reader,
                checker: FrameChecker {
                    keys,
                    bound,
                    expect,
                    last_seq: 0,
                    settings,
                },
                closed: false,
            },
        })
    }

    /// A worker's endpoint on a connected stream.
    pub fn worker_side(
        stream: ControlStream,
        number: u32,
        key: WorkerKey,
        settings: Arc<EndpointSettings>,
    ) -> Result<Self, ControlError> {
        let keys = Keys::Own {
            number,
            key: key.clone(),
        };
        Self::new(
            stream,
            key,
            number,
            Direction::ToSupervisor,
            keys,
            Some(number),
            settings,
        )
    }

    pub fn send(&mut self, message: &ControlMessage, correlation: u64) -> Result<(), ControlError> {
        self.tx.send(message, correlation)
    }

    pub fn recv(&mut self, timeout: Duration) -> Result<Received, ReadError> {
        self.rx.recv(timeout)
    }

    pub fn split(self) -> (FrameSender, FrameReceiver) {
        (self.tx, self.rx)
    }
}

/// Accepting a worker's connection failed.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("connection refused: {0}")]
    Rejected(ReadError),
    #[error("first frame was {kind}, expected HELLO; connection refused")]
    NotHello { kind: MessageKind },
    #[error("HELLO names worker {claimed:?} but is signed for worker number {number}")]
    WrongIdentity { claimed: String, number: u32 },
    #[error("connection refused: {0}")]
    Refused(String),
}

/// A worker that connected and authenticated with HELLO.
#[derive(Debug)]
pub struct Accepted {
    pub endpoint: Endpoint,
    pub worker_id: String,
    pub number: u32,
    pub pid: u32,
    pub hello: Received,
}

/// The supervisor's side of the control plane: listener, keys, shared replay cache, metrics.
#[derive(Debug)]
pub struct ControlServer {
    listener: ControlListener,
    directory: Arc<KeyDirectory>,
    settings: Arc<EndpointSettings>,
    /// Connections waiting for their HELLO, and outcomes not yet handed out by `accept`.
    accepting: Mutex<AcceptState>,
}

/// The acceptor's state, kept across calls.
#[derive(Debug)]
struct AcceptState {
    handshakes: Handshakes,
    ready: std::collections::VecDeque<Result<Accepted, AcceptError>>,
}

impl ControlServer {
    pub fn new(
        listener: ControlListener,
        directory: Arc<KeyDirectory>,
        settings: Arc<EndpointSettings>,
    ) -> Self {
        Self {
            listener,
            directory,
            settings,
            accepting: Mutex::new(AcceptState {
                handshakes: Handshakes::new(DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_PENDING),
                ready: std::collections::VecDeque::new(),
            }),
        }
    }

    /// Sets the handshake deadline and the bound on connections waiting for their HELLO.
    pub fn with_handshakes(self, timeout: Duration, max_pending: usize) -> Self {
        if let Ok(mut state) = self.accepting.lock() {
            state.handshakes = Handshakes::new(timeout, max_pending);
        }
        self
    }

    pub fn address(&self) -> &ControlAddress {
        self.listener.address()
    }

    pub fn metrics(&self) -> &ControlMetrics {
        &self.settings.metrics
    }

    pub fn settings(&self) -> &Arc<EndpointSettings> {
        &self.settings
    }

    pub fn directory(&self) -> &Arc<KeyDirectory> {
        &self.directory
    }

    /// Accepts one authenticated worker, waiting at most `timeout` (`Ok(None)` if none came),
    /// for callers that handle one connection at a time; a refused connection is returned as
    /// an error. Connections that arrive meanwhile keep waiting for the next call.
    pub fn accept(&self, timeout: Duration) -> Result<Option<Accepted>, AcceptError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(outcome) = self.lock_accepting()?.ready.pop_front() {
                return outcome.map(Some);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let outcomes = self.poll_handshakes(deadline - now)?;
            self.lock_accepting()?.ready.extend(outcomes);
        }
    }

    fn lock_accepting(&self) -> Result<std::sync::MutexGuard<'_, AcceptState>, ControlError> {
        self.accepting
            .lock()
            .map_err(|_| ControlError::Io(std::io::Error::other("handshake state poisoned")))
    }

    /// One round of accepting: waits at most `timeout` for new connections or handshake bytes,
    /// then returns every connection that completed its HELLO (authenticated) or was refused.
    /// Unauthenticated connections never block: each is read only when it has bytes, closed
    /// after the handshake deadline, and at most `max_pending` wait at once (the oldest is
    /// closed to admit a new one), so idle or garbage connections cannot delay a worker.
    pub fn poll_handshakes(
        &self,
        timeout: Duration,
    ) -> Result<Vec<Result<Accepted, AcceptError>>, ControlError> {
        let mut state = self.lock_accepting()?;
        let handshakes = &mut state.handshakes;
        let mut outcomes = Vec::new();
        let now = std::time::Instant::now();
        let wait = handshakes
            .next_deadline()
            .map_or(timeout, |d| d.saturating_duration_since(now).min(timeout));
        let (listener_ready, readable) = self.wait_readable(handshakes, wait)?;
        if listener_ready {
            for _ in 0..ACCEPTS_PER_ROUND {
                let Some(stream) = self.listener.try_accept()? else {
                    break;
                };
                if let Some(evicted) = handshakes.admit(stream) {
                    self.settings.metrics.record(RejectKind::Truncated);
                    outcomes.push(Err(evicted));
                }
            }
        }
        for index in readable.into_iter().rev() {
            match handshakes.read(index) {
                Ok(None) => {}
                Ok(Some((stream, frame))) => outcomes.push(self.authenticate(stream, &frame)),
                Err(refused) => {
                    if matches!(refused, AcceptError::Rejected(ReadError::Rejected(_))) {
                        self.settings.metrics.record(RejectKind::TooLarge);
                    }
                    outcomes.push(Err(refused));
                }
            }
        }
        for expired in handshakes.expire(std::time::Instant::now()) {
            self.settings.metrics.record(RejectKind::Truncated);
            outcomes.push(Err(expired));
        }
        Ok(outcomes)
    }

    /// Polls the listener and every pending connection; returns whether the listener has a
    /// connection and which pending connections (by index) have bytes or hung up.
    fn wait_readable(
        &self,
        handshakes: &Handshakes,
        timeout: Duration,
    ) -> Result<(bool, Vec<usize>), ControlError> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let streams: Vec<std::os::fd::BorrowedFd<'_>> = handshakes
            .pending
            .iter()
            // SAFETY: each fd belongs to a stream held in `handshakes` for this whole call.
            .map(|p| unsafe { std::os::fd::BorrowedFd::borrow_raw(p.stream.raw_fd()) })
            .collect();
        let mut fds = Vec::with_capacity(streams.len() + 1);
        fds.push(PollFd::new(self.listener.fd(), PollFlags::POLLIN));
        fds.extend(streams.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)));
        let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
        match poll(
            &mut fds,
            PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok((false, Vec::new())),
            Err(e) => return Err(ControlError::Io(e.into())),
        }
        let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
        let listener_ready = ready(&fds[0]);
        let readable = fds[1..]
            .iter()
            .enumerate()
            .filter(|(_, fd)| ready(fd))
            .map(|(i, _)| i)
            .collect();
        Ok((listener_ready, readable))
    }

    /// Checks a complete first frame: it must be the HELLO of a known worker.
    fn authenticate(&self, stream: ControlStream, frame: &[u8]) -> Result<Accepted, AcceptError> {
        stream.set_nonblocking(false).map_err(ControlError::Io)?;
        let keys = Keys::Directory(Arc::clone(&self.directory));
        // The sending key is fixed once the worker is known; until then a placeholder.
        let placeholder = WorkerKey::from_bytes([0; 32]);
        let mut endpoint = Endpoint::new(
            stream,
            placeholder,
            0,
            Direction::ToWorker,
            keys,
            None,
            Arc::clone(&self.settings),
        )?;
        let hello = match endpoint.rx.checker.check(&mut &frame[..]) {
            Ok(hello) => hello,
            Err(e) => {
                endpoint.tx.close();
                return Err(AcceptError::Rejected(e));
            }
        };
        let ControlMessage::Hello { worker_id, pid } = &hello.message else {
            endpoint.tx.close();
            return Err(AcceptError::NotHello { kind: hello.kind() });
        };
        let number = hello.header.worker;
        if self.directory.id(number) != Some(worker_id.as_str()) {
            endpoint.tx.close();
            self.settings.metrics.record(RejectKind::Misrouted);
            return Err(AcceptError::WrongIdentity {
                claimed: worker_id.clone(),
                number,
            });
        }
        let key = self
            .directory
            .key(number)
            .cloned()
            .ok_or(AcceptError::Rejected(ReadError::Rejected(
                FrameError::BadTag,
            )))?;
        endpoint.tx.key = key;
        endpoint.tx.worker = number;
        Ok(Accepted {
            worker_id: worker_id.clone(),
            pid: *pid,
            number,
            hello: hello.clone(),
            endpoint,
        })
    }
}

/// Connections admitted per accept round (the rest wait for the next round).
const ACCEPTS_PER_ROUND: usize = 64;
/// Connections that may wait for their HELLO at once, by default.
pub const DEFAULT_MAX_PENDING: usize = 64;
/// How long a new connection may take to send its HELLO, by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest first frame a connection may announce: a HELLO is a few hundred bytes.
const MAX_HELLO_FRAME: usize = 4096;

/// A connection that has not completed its first frame.
#[derive(Debug)]
struct Pending {
    stream: ControlStream,
    /// Bytes of the first frame read so far (length prefix included).
    frame: Vec<u8>,
    since: std::time::Instant,
}

/// Connections waiting for their HELLO (see [`ControlServer::poll_handshakes`]).
#[derive(Debug)]
pub struct Handshakes {
    pending: Vec<Pending>,
    timeout: Duration,
    max_pending: usize,
}

impl Handshakes {
    /// Each connection gets `timeout` to send its HELLO; at most `max_pending` wait at once.
    pub fn new(timeout: Duration, max_pending: usize) -> Self {
        Self {
            pending: Vec::new(),
            timeout,
            max_pending: max_pending.max(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Connections waiting now.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    fn next_deadline(&self) -> Option<std::time::Instant> {
        self.pending.iter().map(|p| p.since + self.timeout).min()
    }

    /// Admits a new connection; when full, the oldest waiting one is closed and returned as
    /// refused (a worker sends its HELLO at once, so the oldest is the likeliest idler).
    fn admit(&mut self, stream: ControlStream) -> Option<AcceptError> {
        if stream.set_nonblocking(true).is_err() {
            stream.shutdown();
            return None;
        }
        let evicted = (self.pending.len() >= self.max_pending).then(|| {
            let oldest = self.pending.remove(0);
            oldest.stream.shutdown();
            AcceptError::Refused(format!(
                "more than {} connections waiting for HELLO; closed the oldest",
                self.max_pending
            ))
        });
        self.pending.push(Pending {
            stream,
            frame: Vec::with_capacity(256),
            since: std::time::Instant::now(),
        });
        evicted
    }

    /// Reads what pending connection `index` has; returns it with its first frame once the
    /// frame is complete, an error when it is refused, `None` while it is incomplete.
    #[allow(clippy::type_complexity)]
    fn read(&mut self, index: usize) -> Result<Option<(ControlStream, Vec<u8>)>, AcceptError> {
        use std::io::Read;
        let pending = &mut self.pending[index];
        let wanted = match pending.frame.get(..4) {
            None => 4,
            Some(prefix) => {
                let declared = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
                if (declared as usize) < super::frame::FRAME_OVERHEAD {
                    let pending = self.pending.remove(index);
                    pending.stream.shutdown();
                    return Err(AcceptError::Rejected(ReadError::Rejected(
                        FrameError::BadTag,
                    )));
                }
                if declared as usize > MAX_HELLO_FRAME {
                    let pending = self.pending.remove(index);
                    pending.stream.shutdown();
                    return Err(AcceptError::Rejected(ReadError::Rejected(
                        FrameError::TooLarge {
                            declared: u64::from(declared),
                            max: MAX_HELLO_FRAME as u64,
                        },
                    )));
                }
                4 + declared as usize
            }
        };
        let have = pending.frame.len();
        let mut chunk = vec![0u8; wanted - have];
        match pending.stream.read(&mut chunk) {
            Ok(0) => {
                let pending = self.pending.remove(index);
                pending.stream.shutdown();
                Err(AcceptError::Refused(format!(
                    "connection closed after {have} bytes, before a complete HELLO"
                )))
            }
            Ok(n) => {
                pending.frame.extend_from_slice(&chunk[..n]);
                if pending.frame.len() >= 4 && pending.frame.len() == wanted && wanted > 4 {
                    let pending = self.pending.remove(index);
                    return Ok(Some((pending.stream, pending.frame)));
                }
                Ok(None)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(e) => {
                let pending = self.pending.remove(index);
                pending.stream.shutdown();
                Err(AcceptError::Control(ControlError::Io(e)))
            }
        }
    }

    /// Closes every connection whose handshake deadline passed.
    fn expire(&mut self, now: std::time::Instant) -> Vec<AcceptError> {
        let timeout = self.timeout;
        let mut expired = Vec::new();
        self.pending.retain(|p| {
            let late = now.duration_since(p.since) >= timeout;
            if late {
                p.stream.shutdown();
                expired.push(AcceptError::Refused(format!(
                    "no complete HELLO within {} ms ({} bytes received); closed",
                    timeout.as_millis(),
                    p.frame.len()
                )));
            }
            !late
        });
        expired
    }
}
