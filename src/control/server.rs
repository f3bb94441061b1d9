//! The supervisor's side of the channel: accepting connections without ever blocking on one
//! (handshakes are polled with a deadline and a cap on pending connections), verifying HELLO,
//! and routing each worker's frames by the key its header names.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::channel::{ControlMetrics, Endpoint, EndpointSettings, KeyDirectory, Keys, Received};
use super::frame::{Direction, FrameError, ReadError, RejectKind};
use super::keys::WorkerKey;
use super::messages::{ControlMessage, MessageKind};
use super::transport::{ControlAddress, ControlError, ControlListener, ControlStream};

/// Accepting a worker's connection failed.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The socket failed.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The first frame was refused.
    #[error("connection refused: {0}")]
    Rejected(ReadError),
    /// The first frame was not HELLO.
    #[error("first frame was {kind}, expected HELLO; connection refused")]
    NotHello {
        /// Its kind.
        kind: MessageKind,
    },
    /// HELLO's worker id is not the one its key belongs to.
    #[error("HELLO names worker {claimed:?} but is signed for worker number {number}")]
    WrongIdentity {
        /// The id HELLO names.
        claimed: String,
        /// The worker number the frame is signed for.
        number: u32,
    },
    /// The connection was refused for another reason (bounds, deadline).
    #[error("connection refused: {0}")]
    Refused(String),
    /// The connection closed before sending a byte: a liveness probe (another run checking
    /// whether this socket is in use), not an attempt to talk to the supervisor.
    #[error("a connection closed without sending anything (a liveness probe)")]
    Probe,
}

/// A worker that connected and authenticated with HELLO.
#[derive(Debug)]
pub struct Accepted {
    /// The worker's authenticated endpoint.
    pub endpoint: Endpoint,
    /// The worker's id.
    pub worker_id: String,
    /// The worker's number.
    pub number: u32,
    /// The worker's process id, as HELLO says.
    pub pid: u32,
    /// The HELLO frame.
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
    /// A server on `listener` for the workers of `directory`.
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

    /// Where workers connect.
    pub fn address(&self) -> &ControlAddress {
        self.listener.address()
    }

    /// Rejections and accepted frames.
    pub fn metrics(&self) -> &ControlMetrics {
        &self.settings.metrics
    }

    /// The settings every endpoint shares.
    pub fn settings(&self) -> &Arc<EndpointSettings> {
        &self.settings
    }

    /// Every worker's number, id and key.
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

    /// Whether no connection is waiting for its HELLO.
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
                if have == 0 {
                    return Err(AcceptError::Probe);
                }
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
