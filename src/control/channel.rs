//! Authenticated endpoints: per-worker key lookup, frame sending and the receive checks.
//!
//! Transports live in `transport.rs`, the supervisor's accepting side in `server.rs`.
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
use super::transport::{ControlError, ControlStream};
use crate::config::Control;

/// Rejections by kind, for `/metrics` and the run summary.
#[derive(Debug, Default)]
pub struct ControlMetrics {
    rejected: [AtomicU64; 9],
    accepted_frames: AtomicU64,
}

impl ControlMetrics {
    /// Counts one rejected frame.
    pub fn record(&self, kind: RejectKind) {
        let index = RejectKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.rejected[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Frames rejected with `kind` so far.
    pub fn rejected(&self, kind: RejectKind) -> u64 {
        let index = RejectKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.rejected[index].load(Ordering::Relaxed)
    }

    /// Frames that passed every check so far.
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
    /// Accepted age of a frame, in milliseconds.
    pub ttl_ms: u64,
    /// The largest message accepted, in bytes.
    pub max_message: u64,
    /// Nonces seen within the time window.
    pub nonces: Mutex<NonceCache>,
    /// Rejections and accepted frames.
    pub metrics: ControlMetrics,
}

impl EndpointSettings {
    /// Settings with a time window, a message limit and a nonce cache of `nonce_capacity`.
    pub fn new(ttl: Duration, max_message: u64, nonce_capacity: usize) -> Arc<Self> {
        let ttl_ms = ttl.as_millis() as u64;
        Arc::new(Self {
            ttl_ms,
            max_message,
            nonces: Mutex::new(NonceCache::new(nonce_capacity, ttl_ms)),
            metrics: ControlMetrics::default(),
        })
    }

    /// Settings from the config's `control` block.
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

    /// The key of worker `number`.
    pub fn key(&self, number: u32) -> Option<&WorkerKey> {
        self.entry(number).map(|(_, key)| key)
    }

    /// The id of worker `number`.
    pub fn id(&self, number: u32) -> Option<&str> {
        self.entry(number).map(|(id, _)| id.as_str())
    }

    /// The number of the worker with this id.
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

    /// Workers in the directory.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether the directory has no worker.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How an endpoint finds the key of a received frame.
#[derive(Debug, Clone)]
pub(super) enum Keys {
    /// A worker knows only its own key.
    Own { number: u32, key: WorkerKey },
    /// The supervisor knows every worker's key.
    Directory(Arc<KeyDirectory>),
}

/// A frame that passed every check, with its decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The frame's header.
    pub header: FrameHeader,
    /// The decoded message.
    pub message: ControlMessage,
}

impl Received {
    /// The message's kind.
    pub fn kind(&self) -> MessageKind {
        self.message.kind()
    }
}

/// The sending half of an endpoint.
#[derive(Debug)]
pub struct FrameSender {
    stream: ControlStream,
    pub(super) key: WorkerKey,
    pub(super) worker: u32,
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

    /// The worker number the sender signs as.
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
    pub(super) checker: FrameChecker,
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
    /// The sending half.
    pub tx: FrameSender,
    /// The receiving half.
    pub rx: FrameReceiver,
}

/// Write timeout for control frames (they are small; a peer that stops reading is dead).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

impl Endpoint {
    pub(super) fn new(
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

    /// Signs and sends `message` with `correlation`.
    pub fn send(&mut self, message: &ControlMessage, correlation: u64) -> Result<(), ControlError> {
        self.tx.send(message, correlation)
    }

    /// Receives the next frame that passes every check, waiting at most `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<Received, ReadError> {
        self.rx.recv(timeout)
    }

    /// The two halves, for a reader thread and a writer.
    pub fn split(self) -> (FrameSender, FrameReceiver) {
        (self.tx, self.rx)
    }
}
