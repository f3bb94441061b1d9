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
use std::os::fd::AsFd;
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
                Ok(Self {
                    inner: ListenerKind::Tcp(listener),
                    address: ControlAddress::Tcp(bound),
                })
            }
            ControlTransport::Unix => {
                remove_stale_socket_dirs();
                // tempfile creates the directory with mode 0700. The owner's pid in the name
                // lets a later run remove it if this process dies without cleaning up.
                let dir = tempfile::Builder::new()
                    .prefix(&format!("{SOCKET_DIR_PREFIX}{}-", std::process::id()))
                    .tempdir()
                    .map_err(ControlError::SocketDir)?;
                let path = dir.path().join("control.sock");
                let listener = UnixListener::bind(&path).map_err(|source| ControlError::Bind {
                    address: path.display().to_string(),
                    source,
                })?;
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

    /// Accepts one connection, waiting at most `timeout`; `Ok(None)` when none came.
    pub fn accept(&self, timeout: Duration) -> Result<Option<ControlStream>, ControlError> {
        let fd = match &self.inner {
            ListenerKind::Tcp(l) => l.as_fd(),
            ListenerKind::Unix { listener, .. } => listener.as_fd(),
        };
        let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
        match nix::poll::poll(
            &mut fds,
            nix::poll::PollTimeout::try_from(millis).unwrap_or(nix::poll::PollTimeout::MAX),
        ) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok(None),
            Err(e) => return Err(ControlError::Io(e.into())),
        }
        let stream = match &self.inner {
            ListenerKind::Tcp(l) => {
                let (stream, _) = l.accept()?;
                stream.set_nodelay(true)?;
                ControlStream::Tcp(stream)
            }
            ListenerKind::Unix { listener, .. } => ControlStream::Unix(listener.accept()?.0),
        };
        Ok(Some(stream))
    }
}

/// Prefix of control socket directories in the temp dir: `<prefix><owner pid>-<random>`.
pub const SOCKET_DIR_PREFIX: &str = "stream-kernel-control-";

/// Removes control socket directories whose owning process no longer exists (a supervisor
/// killed with `kill -9` cannot remove its own).
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
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
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
        }
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

    /// Accepts one connection (waiting at most `timeout`, `Ok(None)` if none) and
    /// authenticates its first frame, which must be the HELLO of a known worker; anything else
    /// closes the connection and is returned as an error (the server keeps running).
    pub fn accept(
        &self,
        timeout: Duration,
        hello_timeout: Duration,
    ) -> Result<Option<Accepted>, AcceptError> {
        let Some(stream) = self.listener.accept(timeout)? else {
            return Ok(None);
        };
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
        let hello = match endpoint.recv(hello_timeout) {
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
        Ok(Some(Accepted {
            worker_id: worker_id.clone(),
            pid: *pid,
            number,
            hello: hello.clone(),
            endpoint,
        }))
    }
}
