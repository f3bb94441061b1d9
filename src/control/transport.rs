//! Control transports: `tcp_local` (a listener on a loopback address; the config refuses others)
//! and `unix` (a socket in a fresh 0700 directory, removed when the listener is dropped, and
//! directories of killed supervisors swept at launch). One connection per worker, opened by
//! the worker.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Control, ControlTransport};

/// A connected control socket.
#[derive(Debug)]
pub enum ControlStream {
    /// Loopback TCP.
    Tcp(TcpStream),
    /// A Unix domain socket.
    Unix(UnixStream),
}

impl ControlStream {
    pub(super) fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_nonblocking(on),
            Self::Unix(s) => s.set_nonblocking(on),
        }
    }

    pub(super) fn raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Self::Tcp(s) => s.as_raw_fd(),
            Self::Unix(s) => s.as_raw_fd(),
        }
    }

    pub(super) fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_read_timeout(timeout),
            Self::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    pub(super) fn set_write_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_write_timeout(timeout),
            Self::Unix(s) => s.set_write_timeout(timeout),
        }
    }

    /// A second handle on the same socket (one for reading, one for writing).
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
    /// A loopback TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path in a private directory.
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
    /// Binding the listener failed.
    #[error("cannot bind the control listener on {address}: {source}")]
    Bind {
        /// The address asked for.
        address: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// The private socket directory could not be created.
    #[error("cannot create the control socket directory: {0}")]
    SocketDir(std::io::Error),
    /// Connecting to the supervisor failed.
    #[error("cannot connect to the control listener at {address}: {source}")]
    Connect {
        /// The supervisor's address.
        address: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// The socket failed.
    #[error("control socket error: {0}")]
    Io(#[from] std::io::Error),
    /// A message did not encode.
    #[error("cannot encode a control message: {0}")]
    Encode(String),
    /// The peer closed the connection.
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

    /// Where workers connect.
    pub fn address(&self) -> &ControlAddress {
        &self.address
    }

    pub(super) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.inner {
            ListenerKind::Tcp(l) => l.as_fd(),
            ListenerKind::Unix { listener, .. } => listener.as_fd(),
        }
    }

    /// Accepts one connection if one is waiting (the listener is non-blocking).
    pub(super) fn try_accept(&self) -> Result<Option<ControlStream>, ControlError> {
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
