//! The monitor's threads: they watch and report, the supervisor's loop decides.
//!
//! - one acceptor: authenticates each new control connection's HELLO (garbage is dropped, the
//!   run goes on);
//! - one reader per worker connection: forwards every accepted frame and every rejection;
//! - one reaper per child: blocks in `waitpid` (no polling), so a death is seen at once;
//! - one signal thread (when the supervisor owns the process's signals): SIGTERM, SIGINT,
//!   SIGHUP, SIGQUIT.
//!
//! All of them feed one channel of [`Event`]s; the supervisor's loop is the only place that
//! changes worker state.

use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::control::{Accepted, ControlServer, FrameReceiver, ReadError, Received};

/// Something a monitor thread saw.
#[derive(Debug)]
pub enum Event {
    /// A worker connected and authenticated.
    Accepted(Box<Accepted>),
    /// A connection was refused (garbage, wrong key, not a HELLO).
    Refused(String),
    /// A frame from a worker, with every check passed.
    Frame {
        /// The worker.
        worker: String,
        /// The frame.
        received: Box<Received>,
    },
    /// A frame from a worker was rejected, or its connection failed.
    ControlProblem {
        /// The worker.
        worker: String,
        /// What failed.
        detail: String,
        /// Whether the connection is closed.
        closed: bool,
    },
    /// A child exited (reaped).
    Exited {
        /// The worker.
        worker: String,
        /// How it exited.
        status: ExitStatus,
        /// When it was reaped.
        at: Instant,
    },
    /// One of the [`crate::runtime::signals::stop_signals`] arrived.
    Signal(i32),
}

/// Spawns a thread named `name` (names show in `top -H`, debuggers and `/proc/<pid>/task`).
/// A thread that cannot be created (a process or memory limit) is an error the caller reports,
/// never a panic.
pub(crate) fn spawn_named<T: Send + 'static>(
    name: impl Into<String>,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    let name = name.into();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start thread {name}: {e}")))
}

/// Accepts connections until `shutdown` is set (checked at least every 100 ms). Connections
/// wait for their HELLO side by side, each at most the server's handshake deadline, so no connection
/// (idle, slow or garbage) delays another or the supervisor's exit.
#[must_use = "join the acceptor so that the listener (and its socket directory) is dropped"]
pub fn spawn_acceptor(
    server: Arc<ControlServer>,
    events: Sender<Event>,
    shutdown: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    spawn_named("sk-acceptor", move || {
        while !shutdown.load(Ordering::Relaxed) {
            let outcomes = match server.poll_handshakes(Duration::from_millis(100)) {
                Ok(outcomes) => outcomes,
                Err(e) => {
                    let _ = events.send(Event::Refused(e.to_string()));
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            for outcome in outcomes {
                let event = match outcome {
                    Ok(accepted) => Event::Accepted(Box::new(accepted)),
                    // Another run checking whether this socket is alive: not a refusal.
                    Err(crate::control::AcceptError::Probe) => {
                        tracing::debug!(worker_id = "supervisor", "control socket probed");
                        continue;
                    }
                    Err(e) => Event::Refused(e.to_string()),
                };
                if events.send(event).is_err() {
                    return;
                }
            }
        }
    })
}

/// Forwards a worker's frames until its connection closes.
pub fn spawn_reader(
    worker: String,
    mut rx: FrameReceiver,
    events: Sender<Event>,
) -> std::io::Result<()> {
    spawn_named(format!("sk-read-{worker}"), move || {
        loop {
            let event = match rx.recv(Duration::from_millis(500)) {
                Ok(received) => Event::Frame {
                    worker: worker.clone(),
                    received: Box::new(received),
                },
                Err(ReadError::TimedOut) => continue,
                Err(ReadError::Closed) => {
                    let _ = events.send(Event::ControlProblem {
                        worker: worker.clone(),
                        detail: "control connection closed".into(),
                        closed: true,
                    });
                    return;
                }
                Err(ReadError::Io(e)) => {
                    let _ = events.send(Event::ControlProblem {
                        worker: worker.clone(),
                        detail: format!("control connection failed: {e}"),
                        closed: true,
                    });
                    return;
                }
                Err(ReadError::Rejected(e)) => Event::ControlProblem {
                    worker: worker.clone(),
                    detail: e.to_string(),
                    closed: matches!(e, crate::control::FrameError::BadTag),
                },
            };
            if events.send(event).is_err() {
                return;
            }
        }
    })?;
    Ok(())
}

/// Reaps `child` and reports its exit. When no thread can be started, the child is killed
/// and reaped here (it must not outlive an error) and the error returned.
pub fn spawn_reaper(worker: String, child: Child, events: Sender<Event>) -> std::io::Result<()> {
    let child = Arc::new(parking_lot::Mutex::new(Some(child)));
    let held = Arc::clone(&child);
    let spawned = spawn_named(format!("sk-reap-{worker}"), move || {
        let Some(mut child) = held.lock().take() else {
            return;
        };
        let status = loop {
            match child.wait() {
                Ok(status) => break status,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        };
        let _ = events.send(Event::Exited {
            worker,
            status,
            at: Instant::now(),
        });
    });
    if let Err(error) = spawned {
        if let Some(mut child) = child.lock().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        return Err(error);
    }
    Ok(())
}

/// Forwards the [`crate::runtime::signals::stop_signals`] to the loop.
pub fn spawn_signal_thread(
    events: Sender<Event>,
) -> std::io::Result<signal_hook::iterator::Handle> {
    let mut signals = signal_hook::iterator::Signals::new(Vec::<i32>::new())?;
    for sig in crate::runtime::signals::stop_signals() {
        match signals.add_signal(sig) {
            Ok(()) => {}
            // A real-time signal the environment keeps for itself (a debugger, valgrind)
            // cannot be caught here: nobody else can send it to us either.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput && sig >= libc::SIGRTMIN() => {}
            Err(e) => return Err(e),
        }
    }
    let handle = signals.handle();
    spawn_named("sk-signals", move || {
        for signal in signals.forever() {
            if events.send(Event::Signal(signal)).is_err() {
                return;
            }
        }
    })?;
    Ok(handle)
}

/// `exit 0`, `exit 3`, `signal SIGKILL`.
pub fn describe_exit(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("signal {}", signal_name(signal)),
        (None, None) => "unknown".into(),
    }
}

/// The name of signal number `signal` (`SIGKILL`, ...).
pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}
