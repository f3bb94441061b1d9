//! The signals of a run: which ones stop it gracefully (the supervisor's or the inline run's
//! handlers turn them into a drain; workers ignore them, their supervisor drives them), and
//! which ones are ignored because the error they stand for is reported where it happens.

/// The signals that stop a run gracefully: ingestion stops, the pipeline drains, the summary
/// and the run journal say where to resume, and the exit status is 128 + the signal.
///
/// Every signal whose default action would end the process and that a process may catch is
/// here, so that none ends a run unaccounted: SIGTERM, SIGINT, SIGHUP (a closed terminal or
/// session), SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGXCPU (a CPU time
/// limit), SIGIO, SIGPWR, SIGSTKFLT and the real-time signals. Not here: SIGPIPE and SIGXFSZ
/// are ignored (a closed reader or a file size limit is a write error of the output that
/// hits it), SIGKILL and SIGSTOP cannot be caught, and the fault signals (SIGSEGV, SIGBUS,
/// SIGILL, SIGFPE, SIGTRAP, SIGSYS) mean a bug, for which the run journal is the record.
pub fn stop_signals() -> Vec<i32> {
    use signal_hook::consts::*;
    let mut signals = vec![
        SIGTERM,
        SIGINT,
        SIGHUP,
        SIGQUIT,
        SIGUSR1,
        SIGUSR2,
        SIGALRM,
        SIGVTALRM,
        SIGPROF,
        SIGXCPU,
        SIGIO,
        libc::SIGPWR,
        libc::SIGSTKFLT,
    ];
    signals.extend(libc::SIGRTMIN()..=libc::SIGRTMAX());
    signals
}

/// Ignores SIGXFSZ (a write past `ulimit -f` then fails with `EFBIG`, which the output that
/// hits it reports and cuts back cleanly, instead of the signal killing the process with a
/// torn line) and SIGPIPE (already ignored by Rust's runtime: a closed reader is `EPIPE`).
pub fn ignore_write_signals() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for sig in [Signal::SIGXFSZ, Signal::SIGPIPE] {
        // SAFETY: installing SIG_IGN runs no handler code and replaces only the default
        // action of these two signals, which nothing in this crate handles.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
}
