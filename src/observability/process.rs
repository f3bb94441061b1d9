//! Process resource figures for the run summary: peak resident memory of this process.

/// Peak resident set size of this process in KiB (`VmHWM` in `/proc/self/status`), or `None`
/// where procfs is not available.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_rss_is_reported_on_linux() {
        let kib = super::peak_rss_kib().expect("procfs");
        assert!(kib > 100, "{kib} KiB");
    }
}
