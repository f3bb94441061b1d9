//! Per-record end-to-end latency: how long a record takes from the source's read to the moment
//! its output reaches the operating system, which is when a reader of the output can see it.
//!
//! One record in [`LATENCY_SAMPLE`] (by `seq`) is stamped with the wall-clock time at which the
//! source handed it on, right after the read that brought it (time spent waiting for input is
//! not the record's); the stamp travels with the record (in the envelope's trace context
//! across rings and hosts), and the process where the record ends takes `now - stamp` when
//! the output holding it is written (flushed to the file or pipe, or handed to the embedding
//! host), not when a buffer accepted it. A record that ends without output (dropped,
//! dead-lettered) counts when it ends. Sampling keeps the clock reads off the other 63
//! records; the histogram describes the sample.
//!
//! Wall-clock (unix) time, not a monotonic clock, so that the stamp means the same thing in
//! every process and on every host; across hosts the figure includes their clock offset. A
//! stamp from the future (the clock stepped back) counts as zero.
//!
//! Buckets are fixed ([`BOUNDS_SECONDS`]), so histograms of different workers add up and the
//! Prometheus histogram `stream_kernel_record_latency_seconds` is their sum.

use std::time::Duration;

/// One record in this many (those whose `seq` is a multiple of it) is measured.
pub const LATENCY_SAMPLE: u64 = 64;

/// Upper bounds of the buckets, in seconds; a last bucket (`+Inf`) takes the rest.
pub const BOUNDS_SECONDS: [f64; 20] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets, the `+Inf` one included.
pub const BUCKETS: usize = BOUNDS_SECONDS.len() + 1;

/// Whether record `seq` is stamped at the source.
#[inline]
pub fn is_measured(seq: u64) -> bool {
    seq.is_multiple_of(LATENCY_SAMPLE)
}

/// Counts of observed latencies per bucket (not cumulative) and their sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Observations per bucket, in [`BOUNDS_SECONDS`] order, `+Inf` last.
    pub buckets: [u64; BUCKETS],
    /// Sum of the observations, nanoseconds.
    pub sum_ns: u64,
}

impl LatencyHistogram {
    /// Counts one record that took `ns` nanoseconds.
    pub fn observe(&mut self, ns: u64) {
        let seconds = ns as f64 / 1e9;
        let bucket = BOUNDS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS - 1);
        self.buckets[bucket] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    /// Counts a record stamped at `born_unix_ns`, as of `now_unix_ns`.
    pub fn observe_since(&mut self, born_unix_ns: u64, now_unix_ns: u64) {
        self.observe(now_unix_ns.saturating_sub(born_unix_ns));
    }

    /// Records observed.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Adds another histogram's observations (another worker's, say).
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }

    /// The upper bound of the bucket that holds quantile `q` (0..=1): "at most this long".
    /// `None` without observations; `Duration::MAX` when it falls in the `+Inf` bucket.
    pub fn quantile_bound(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(
                    BOUNDS_SECONDS
                        .get(i)
                        .map_or(Duration::MAX, |s| Duration::from_secs_f64(*s)),
                );
            }
        }
        Some(Duration::MAX)
    }

    /// An estimate of quantile `q` (0..=1): linear within the bucket that holds it, as
    /// Prometheus's `histogram_quantile` estimates it (the lower bound of the first bucket is
    /// 0). `None` without observations; the last finite bound when it falls in `+Inf`.
    pub fn quantile_estimate(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut seen = 0u64;
        let mut lower = 0.0;
        for (i, n) in self.buckets.iter().enumerate() {
            let Some(&upper) = BOUNDS_SECONDS.get(i) else {
                return Some(Duration::from_secs_f64(lower));
            };
            if *n > 0 && (seen + n) as f64 >= rank {
                let within = (rank - seen as f64) / *n as f64;
                return Some(Duration::from_secs_f64(lower + (upper - lower) * within));
            }
            seen += n;
            lower = upper;
        }
        Some(Duration::from_secs_f64(lower))
    }

    /// Mean of the observations.
    pub fn mean(&self) -> Option<Duration> {
        let count = self.count();
        (count > 0).then(|| Duration::from_nanos(self.sum_ns / count))
    }

    /// The buckets as a list (for messages that carry them).
    pub fn to_vec(&self) -> Vec<u64> {
        self.buckets.to_vec()
    }

    /// A histogram from a list [`Self::to_vec`] made and its sum; a list of another length
    /// (another build's buckets) gives an empty histogram rather than a wrong one.
    pub fn from_parts(buckets: &[u64], sum_ns: u64) -> Self {
        match <[u64; BUCKETS]>::try_from(buckets) {
            Ok(buckets) => Self { buckets, sum_ns },
            Err(_) => Self::default(),
        }
    }

    /// `(upper bound in seconds, count)` per bucket, `+Inf` last: what a Prometheus histogram
    /// encoder takes.
    pub fn prometheus_buckets(&self) -> Vec<(f64, u64)> {
        BOUNDS_SECONDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let mut h = LatencyHistogram::default();
        h.observe(5_000); // 5 µs: on the first bound
        h.observe(10_000); // 10 µs: on the second
        h.observe(2_000_000); // 2 ms
        h.observe(60_000_000_000); // a minute
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[8], 1, "2 ms is in the 2.5 ms bucket");
        assert_eq!(h.buckets[BUCKETS - 1], 1);
        assert_eq!(h.count(), 4);
        assert_eq!(h.sum_ns, 5_000 + 10_000 + 2_000_000 + 60_000_000_000);
    }

    #[test]
    fn quantiles_are_bucket_bounds() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.quantile_bound(0.5), None);
        for _ in 0..99 {
            h.observe(300_000); // 0.3 ms -> 0.5 ms bucket
        }
        h.observe(3_000_000_000); // 3 s -> 5 s bucket
        assert_eq!(h.quantile_bound(0.5), Some(Duration::from_micros(500)));
        assert_eq!(h.quantile_bound(0.99), Some(Duration::from_micros(500)));
        assert_eq!(h.quantile_bound(1.0), Some(Duration::from_secs(5)));
    }

    #[test]
    fn estimates_interpolate_within_the_bucket() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.quantile_estimate(0.5), None);
        for _ in 0..100 {
            h.observe(300_000); // 0.3 ms -> (0.25 ms, 0.5 ms]
        }
        let p50 = h.quantile_estimate(0.5).unwrap();
        assert_eq!(p50, Duration::from_secs_f64(0.000_375));
        let p99 = h.quantile_estimate(0.99).unwrap();
        assert!(p99 > p50 && p99 <= Duration::from_micros(500));
        h.observe(60_000_000_000);
        assert_eq!(h.quantile_estimate(1.0), Some(Duration::from_secs(10)));
    }

    #[test]
    fn merge_and_parts_round_trip() {
        let mut a = LatencyHistogram::default();
        a.observe(1_000);
        let mut b = LatencyHistogram::default();
        b.observe(20_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 2);
        let back = LatencyHistogram::from_parts(&a.to_vec(), a.sum_ns);
        assert_eq!(back, a);
        assert_eq!(
            LatencyHistogram::from_parts(&[1, 2, 3], 9),
            LatencyHistogram::default()
        );
        let buckets = a.prometheus_buckets();
        assert_eq!(buckets.len(), BUCKETS);
        assert!(buckets.last().is_some_and(|(b, _)| b.is_infinite()));
    }

    #[test]
    fn a_stamp_from_the_future_counts_as_zero() {
        let mut h = LatencyHistogram::default();
        h.observe_since(2_000, 1_000);
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.sum_ns, 0);
    }
}
