//! Small helpers shared by the process tests: a failing check with a message, and process
//! facts read from `/proc`.

#![allow(dead_code)]

use libtest_mimic::Failed;

/// `Ok` when `condition` holds, else a failure with `message()`.
pub fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), Failed> {
    if condition {
        Ok(())
    } else {
        Err(message().into())
    }
}

/// The parent pid of `pid`, from `/proc/<pid>/stat`.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` is a live process (a zombie still has a /proc entry: look at its state).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rfind(')')
                .map(|i| !s[i + 2..].starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// The `main` of a test binary that doubles as the worker executable: a spawned worker runs
/// its group and never returns; otherwise `tests` run one at a time (they share ports, CPUs
/// and the process table, and some count processes).
pub fn run_serially(
    registry: fn() -> stream_kernel::graph::Registry,
    tests: Vec<libtest_mimic::Trial>,
) -> ! {
    stream_kernel::worker_entry(registry);
    let mut args = libtest_mimic::Arguments::from_args();
    args.test_threads = Some(1);
    libtest_mimic::run(&args, tests).exit()
}
