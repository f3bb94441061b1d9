//! Process resource figures: peak resident memory of this process for the run summary, and
//! CPU time and resident memory of any process (the supervisor and its workers) for
//! `/metrics`.

/// Peak resident set size of this process in KiB (`VmHWM` in `/proc/self/status`), or `None`
/// where procfs is not available.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// What `/proc/<pid>` says about one process, in base units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessFigures {
    /// User plus system CPU time.
    pub cpu_seconds: f64,
    /// Resident memory.
    pub resident_bytes: u64,
    /// Virtual memory.
    pub virtual_bytes: u64,
    /// Threads.
    pub threads: u64,
    /// Start time since the Unix epoch.
    pub start_time_seconds: f64,
}

impl ProcessFigures {
    /// The figures of process `pid` (`None`: gone, or no procfs).
    pub fn of(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
        let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
        let ticks = clock_ticks_per_second()?;
        let boot = boot_time_seconds()?;
        Some(Self {
            cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
            threads: field(20)?,
            start_time_seconds: boot + field(22)? as f64 / ticks,
            virtual_bytes: field(23)?,
            resident_bytes: field(24)?.saturating_mul(page_size()?),
        })
    }

    /// The figures of this process.
    pub fn current() -> Option<Self> {
        Self::of(std::process::id())
    }
}

fn clock_ticks_per_second() -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some(ticks as f64)
}

fn page_size() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|s| *s > 0)
}

fn boot_time_seconds() -> Option<f64> {
    static BOOT: std::sync::OnceLock<Option<f64>> = std::sync::OnceLock::new();
    *BOOT.get_or_init(read_boot_time_seconds)
}

fn read_boot_time_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(|s| s as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_is_reported_on_linux() {
        let kib = super::peak_rss_kib().expect("procfs");
        assert!(kib > 100, "{kib} KiB");
    }

    /// The figures agree with what the process knows of itself.
    #[test]
    fn process_figures_of_this_process() {
        let before = ProcessFigures::current().expect("procfs");
        let mut x = 0u64;
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = ProcessFigures::current().expect("procfs");
        assert!(after.cpu_seconds >= before.cpu_seconds);
        assert!(after.resident_bytes > 1 << 20, "{after:?}");
        assert!(after.virtual_bytes >= after.resident_bytes);
        assert!(after.threads >= 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(after.start_time_seconds <= now + 1.0 && after.start_time_seconds > now - 3600.0);
        assert!(ProcessFigures::of(u32::MAX).is_none());
    }
}
