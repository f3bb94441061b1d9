//! The progress bar of `stream-kernel run` (on a terminal only): records read and their rate
//! (SI, rounded), and for a file input its size in bytes with an ETA; for generated input the
//! line count is the total. Fed from the run's [`RunProgress`] — exact inline, from the source
//! worker's heartbeats (at least once a second) in a supervised run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::{Config, SourceAdapter};
use crate::runtime::{RunProgress, Timeline};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};

/// What the bar counts towards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    /// Bytes of a file input.
    Bytes(u64),
    /// Records of a generated input.
    Records(u64),
    /// Unknown (stdin).
    Unknown,
}

impl Total {
    pub fn of(config: &Config) -> Self {
        match &config.adapters.source {
            SourceAdapter::Generator { lines, .. } => Self::Records(*lines),
            SourceAdapter::File { path, .. } => std::fs::metadata(path)
                .map(|m| Self::Bytes(m.len()))
                .unwrap_or(Self::Unknown),
            SourceAdapter::Stdin { .. } => Self::Unknown,
        }
    }
}

/// `value` with an SI prefix, three significant digits: `950`, `12.3 k`, `1.46 M`.
pub fn si(value: f64) -> String {
    let (scaled, prefix) = match value.abs() {
        v if v >= 1e9 => (value / 1e9, " G"),
        v if v >= 1e6 => (value / 1e6, " M"),
        v if v >= 1e3 => (value / 1e3, " k"),
        _ => return format!("{value:.0}"),
    };
    let digits = if scaled.abs() >= 100.0 {
        0
    } else if scaled.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{scaled:.digits$}{prefix}")
}

/// The bar's text after the bar itself.
fn template(total: Total) -> &'static str {
    match total {
        Total::Bytes(_) => {
            "{wide_bar} {bytes}/{total_bytes}  {records} records  {rate} records/s  eta {eta}"
        }
        Total::Records(_) => "{wide_bar} {records}/{total} records  {rate} records/s  eta {eta}",
        Total::Unknown => "{spinner} {records} records  {rate} records/s",
    }
}

fn style(total: Total, progress: &Arc<RunProgress>, started: Instant) -> ProgressStyle {
    let (records, rate) = (Arc::clone(progress), Arc::clone(progress));
    ProgressStyle::with_template(template(total))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "records",
            move |_: &ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = write!(
                    out,
                    "{}",
                    si(records.records.load(Ordering::Relaxed) as f64)
                );
            },
        )
        .with_key(
            "rate",
            move |_: &ProgressState, out: &mut dyn std::fmt::Write| {
                let seconds = started.elapsed().as_secs_f64().max(1e-3);
                let per_second = rate.records.load(Ordering::Relaxed) as f64 / seconds;
                let _ = write!(out, "{}", si(per_second));
            },
        )
        .with_key(
            "total",
            move |_: &ProgressState, out: &mut dyn std::fmt::Write| {
                if let Total::Records(n) = total {
                    let _ = write!(out, "{}", si(n as f64));
                }
            },
        )
}

/// A progress bar on stderr, drawn by its own thread until [`Reporter::finish`].
pub struct Reporter {
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Reporter {
    /// Starts drawing; `None` when no thread can be started for it (the run goes on without a
    /// bar).
    pub fn start(config: &Config, progress: Arc<RunProgress>) -> Option<Self> {
        let total = Total::of(config);
        let done = Arc::new(AtomicBool::new(false));
        let thread_done = Arc::clone(&done);
        let thread = std::thread::Builder::new()
            .name("sk-progress".into())
            .spawn(move || {
                let started = Instant::now();
                let bar = match total {
                    Total::Bytes(n) | Total::Records(n) => ProgressBar::new(n),
                    Total::Unknown => ProgressBar::new_spinner(),
                }
                .with_style(style(total, &progress, started));
                // Quiet for short runs: the bar appears only after half a second.
                for _ in 0..10 {
                    if thread_done.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let position = || match total {
                    Total::Bytes(_) => progress.input_bytes.load(Ordering::Relaxed),
                    _ => progress.records.load(Ordering::Relaxed),
                };
                while !thread_done.load(Ordering::Relaxed) {
                    bar.set_position(position());
                    std::thread::sleep(Duration::from_millis(100));
                }
                // The last frame shows where the run ended (the final count, not the last
                // heartbeat's), and stays above the summary.
                bar.set_position(position());
                bar.finish();
            });
        Some(Self {
            done,
            thread: thread.ok()?,
        })
    }

    pub fn finish(self) {
        self.done.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// Samples a run's record count into a [`Timeline`] (for the report's throughput chart).
pub struct Sampler {
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Timeline>,
}

impl Sampler {
    /// Starts sampling; `None` when no thread can be started for it (the report then has no
    /// throughput chart).
    pub fn start(progress: Arc<RunProgress>) -> Option<Self> {
        let done = Arc::new(AtomicBool::new(false));
        let thread_done = Arc::clone(&done);
        let thread = std::thread::Builder::new()
            .name("sk-sampler".into())
            .spawn(move || {
                let started = Instant::now();
                let mut timeline = Timeline::default();
                loop {
                    let at = started.elapsed().as_millis() as u64;
                    timeline.record(at, progress.records.load(Ordering::Relaxed));
                    if thread_done.load(Ordering::Relaxed) {
                        return timeline;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        Some(Self {
            done,
            thread: thread.ok()?,
        })
    }

    pub fn finish(self) -> Timeline {
        self.done.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_rounds_to_three_significant_digits() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(950.4), "950");
        assert_eq!(si(12_345.0), "12.3 k");
        assert_eq!(si(1_456_789.0), "1.46 M");
        assert_eq!(si(123_456_789.0), "123 M");
        assert_eq!(si(2.5e9), "2.50 G");
    }

    #[test]
    fn every_template_parses() {
        let progress = Arc::new(RunProgress::default());
        for total in [Total::Bytes(10), Total::Records(10), Total::Unknown] {
            assert!(
                ProgressStyle::with_template(template(total)).is_ok(),
                "{total:?}"
            );
            let _ = style(total, &progress, Instant::now());
        }
    }
}
