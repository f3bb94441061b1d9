//! Spawning workers: a re-exec of the current binary in its hidden worker role.
//!
//! The child finds who it is in the environment (worker id and number, the control address,
//! the supervisor's pid, timeouts: nothing secret) and its key on fd 3, the read end of a pipe
//! the supervisor filled. Ring segment fds are inherited by number (close-on-exec is cleared
//! in the child only). Between fork and exec the child also sets `PR_SET_PDEATHSIG(SIGKILL)`, so
//! it dies with the spawning thread; right after exec it checks that its parent is still the
//! supervisor (the parent may have died before the prctl), see `runtime::worker`.
//!
//! **Spawn from a thread that lives as long as the run**: the death signal is tied to the thread
//! that forked, not to the process.

use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::control::env;
use crate::control::{ControlAddress, KEY_FD, KeyPipe, WorkerKey};
use crate::data::clear_cloexec;

/// What to spawn.
#[derive(Debug, Clone)]
pub struct WorkerLaunch<'a> {
    /// The executable (this process's own binary).
    pub exe: &'a Path,
    /// The worker's id (`group#n`).
    pub worker_id: &'a str,
    /// The worker's 1-based number in the run.
    pub number: u32,
    /// The supervisor's control address.
    pub control: &'a ControlAddress,
    /// How long the worker may take to become READY.
    pub start_timeout: Duration,
    /// Accepted age of a control frame.
    pub control_ttl: Duration,
    /// The largest control message accepted.
    pub control_max_payload: u64,
    /// Fds the worker must inherit (ring segments).
    pub inherit: &'a [RawFd],
    /// CPUs to pin the worker to.
    pub cpus: Option<&'a [u32]>,
    /// Give the worker the supervisor's stdin (the worker that holds a stdin source); every
    /// other worker reads nothing (`/dev/null`).
    pub stdin: bool,
}

/// Spawning a worker failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The worker's key could not be handed over.
    #[error("cannot prepare the key for worker {worker}: {source}")]
    Key {
        /// The worker.
        worker: String,
        /// What failed.
        source: crate::control::KeyError,
    },
    /// The process could not be spawned.
    #[error("cannot spawn worker {worker} from {exe}: {source}")]
    Spawn {
        /// The worker.
        worker: String,
        /// The executable.
        exe: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
}

/// The executable workers are spawned from: this process's own binary.
pub fn current_exe() -> std::io::Result<PathBuf> {
    std::env::current_exe()
}

fn cpu_set(cpus: &[u32]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in cpus {
        if (*cpu as usize) < libc::CPU_SETSIZE as usize {
            // SAFETY: CPU_SET only writes inside `set` for indices below CPU_SETSIZE, checked
            // just above.
            unsafe { libc::CPU_SET(*cpu as usize, &mut set) };
        }
    }
    set
}

/// Spawns one worker with its key on fd 3.
pub fn spawn_worker(launch: &WorkerLaunch<'_>, key: &WorkerKey) -> Result<Child, SpawnError> {
    let pipe = KeyPipe::with_key(key).map_err(|source| SpawnError::Key {
        worker: launch.worker_id.to_string(),
        source,
    })?;
    let key_fd = pipe.read_fd();
    let inherit = launch.inherit.to_vec();
    let affinity = launch.cpus.map(cpu_set);
    let mut command = Command::new(launch.exe);
    command
        .env(env::ROLE, "worker")
        .env(env::WORKER_ID, launch.worker_id)
        .env(env::WORKER_NUMBER, launch.number.to_string())
        .env(env::CONTROL, launch.control.to_string())
        .env(env::SUPERVISOR_PID, std::process::id().to_string())
        .env(
            env::START_TIMEOUT_MS,
            launch.start_timeout.as_millis().to_string(),
        )
        .env(
            env::CONTROL_TTL_MS,
            launch.control_ttl.as_millis().to_string(),
        )
        .env(
            env::CONTROL_MAX_PAYLOAD,
            launch.control_max_payload.to_string(),
        )
        .stdin(if launch.stdin {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    // SAFETY: between fork and exec the closure only calls prctl, dup2, fcntl and
    // sched_setaffinity, which are async-signal-safe, on memory it owns.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // dup2 leaves the new fd 3 without close-on-exec; when the pipe already is fd 3,
            // dup2 does nothing and close-on-exec must be cleared instead.
            if key_fd == KEY_FD {
                clear_cloexec(KEY_FD)?;
            } else if libc::dup2(key_fd, KEY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for fd in &inherit {
                clear_cloexec(*fd)?;
            }
            if let Some(set) = &affinity {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set);
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|source| SpawnError::Spawn {
        worker: launch.worker_id.to_string(),
        exe: launch.exe.to_path_buf(),
        source,
    })?;
    drop(pipe);
    Ok(child)
}
