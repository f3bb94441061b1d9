//! `stream-kernel run --report FILE`: the run as one self-contained page (`.html`: inline CSS
//! and SVG, no script, no external asset) or as its JSON twin (`.json`, for machines). Both
//! hold the same facts: the run's outcome and files, throughput over time, per-worker busy
//! time, per-edge ring occupancy over time, outcomes by reason, span export outcomes, and where
//! the time went (per-node self time).

use std::fmt::Write as _;
use std::path::Path;

use crate::observability::latency::LatencyHistogram;
use crate::runtime::{RunSummary, Timeline};
use serde::{Deserialize, Serialize};

/// Everything a report shows, as plain data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// When, where and what ran: for telling reports apart and comparing them.
    #[serde(default)]
    pub run: RunMeta,
    /// The run this one is compared with (`--report-compare EARLIER.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earlier: Option<Box<Earlier>>,
    pub scenario: String,
    pub profile: String,
    /// `completed`, `stopped` or `failed: ...`.
    pub outcome: String,
    pub exit_status: u8,
    pub records: u64,
    pub elapsed_seconds: f64,
    pub records_per_second: f64,
    pub files: Vec<(String, String)>,
    /// `(seconds since start, records read)`.
    pub records_over_time: Vec<(f64, u64)>,
    pub workers: Vec<WorkerRow>,
    pub rings: Vec<RingRow>,
    /// `(label, records)`: each outcome the nodes declared (by reason where it has reasons),
    /// then dead-lettered.
    pub outcomes: Vec<(String, u64)>,
    pub spans: Vec<SpanRow>,
    pub nodes: Vec<NodeRow>,
    pub peak_rss_bytes: u64,
    /// End-to-end latency of the measured records, from the source's read to the moment their
    /// output was written.
    pub latency: LatencyRow,
}

/// The figures of an earlier run a report compares with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Earlier {
    pub run: RunMeta,
    pub outcome: String,
    pub records: u64,
    pub elapsed_seconds: f64,
    pub records_per_second: f64,
    pub peak_rss_bytes: u64,
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
}

impl RunReport {
    /// Compares this run with the one `earlier` (a report's JSON) describes.
    pub fn compare_with(&mut self, earlier: &RunReport) {
        self.earlier = Some(Box::new(Earlier {
            run: earlier.run.clone(),
            outcome: earlier.outcome.clone(),
            records: earlier.records,
            elapsed_seconds: earlier.elapsed_seconds,
            records_per_second: earlier.records_per_second,
            peak_rss_bytes: earlier.peak_rss_bytes,
            p50_seconds: earlier.latency.p50_seconds,
            p99_seconds: earlier.latency.p99_seconds,
        }));
    }

    /// Reads a report's JSON (`--report-compare`).
    pub fn read_json(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a run report's JSON: {e}", path.display()))
    }

    fn comparison_table(&self, earlier: &Earlier) -> String {
        let ms = |s: Option<f64>| s.map_or("-".to_string(), |s| format!("{:.3} ms", s * 1e3));
        let ratio = |now: f64, then: f64| {
            if then > 0.0 {
                format!("{:.2}x", now / then)
            } else {
                "-".to_string()
            }
        };
        let now_p50 = self.latency.p50_seconds;
        let now_p99 = self.latency.p99_seconds;
        let rows = [
            (
                "started",
                earlier.run.started_at.clone(),
                self.run.started_at.clone(),
                String::new(),
            ),
            (
                "run id",
                earlier.run.run_id.clone(),
                self.run.run_id.clone(),
                String::new(),
            ),
            (
                "version",
                earlier.run.version.clone(),
                self.run.version.clone(),
                String::new(),
            ),
            (
                "host",
                earlier.run.host.clone(),
                self.run.host.clone(),
                String::new(),
            ),
            (
                "config digest",
                earlier.run.config_digest.clone(),
                self.run.config_digest.clone(),
                if earlier.run.config_digest == self.run.config_digest {
                    "same".into()
                } else {
                    "differs".into()
                },
            ),
            (
                "outcome",
                earlier.outcome.clone(),
                self.outcome.clone(),
                String::new(),
            ),
            (
                "records",
                earlier.records.to_string(),
                self.records.to_string(),
                ratio(self.records as f64, earlier.records as f64),
            ),
            (
                "elapsed",
                format!("{:.3} s", earlier.elapsed_seconds),
                format!("{:.3} s", self.elapsed_seconds),
                ratio(self.elapsed_seconds, earlier.elapsed_seconds),
            ),
            (
                "records/s",
                super::progress::si(earlier.records_per_second),
                super::progress::si(self.records_per_second),
                ratio(self.records_per_second, earlier.records_per_second),
            ),
            (
                "latency p50",
                ms(earlier.p50_seconds),
                ms(now_p50),
                ratio(now_p50.unwrap_or(0.0), earlier.p50_seconds.unwrap_or(0.0)),
            ),
            (
                "latency p99",
                ms(earlier.p99_seconds),
                ms(now_p99),
                ratio(now_p99.unwrap_or(0.0), earlier.p99_seconds.unwrap_or(0.0)),
            ),
            (
                "peak RSS",
                format!("{:.1} MiB", earlier.peak_rss_bytes as f64 / 1048576.0),
                format!("{:.1} MiB", self.peak_rss_bytes as f64 / 1048576.0),
                ratio(self.peak_rss_bytes as f64, earlier.peak_rss_bytes as f64),
            ),
        ];
        let mut table = String::from(
            "<table class=\"compare\"><tr><th></th><th>earlier run</th><th>this run</th><th>this / earlier</th></tr>",
        );
        for (what, then, now, change) in rows {
            let _ = write!(
                table,
                "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(what),
                escape(&then),
                escape(&now),
                escape(&change)
            );
        }
        table.push_str("</table>\n");
        table
    }
}

/// Which run a report is about.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunMeta {
    /// When the run started, UTC, RFC 3339.
    pub started_at: String,
    /// The run's identity (`--run-id`, else a digest of its pipeline and placement).
    pub run_id: String,
    /// The program's version.
    pub version: String,
    /// The host it ran on.
    pub host: String,
    /// xxh3-64 of the config as run (every default filled in), hex: equal digests, equal
    /// configs.
    pub config_digest: String,
}

impl RunMeta {
    /// The metadata of a run of `config` that took `elapsed` and ended now.
    pub fn of(config: &crate::config::Config, run_id: &str, elapsed: std::time::Duration) -> Self {
        let started = std::time::SystemTime::now()
            .checked_sub(elapsed)
            .unwrap_or(std::time::UNIX_EPOCH);
        Self {
            started_at: rfc3339(started),
            run_id: run_id.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
            config_digest: format!(
                "{:016x}",
                xxhash_rust::xxh3::xxh3_64(config.to_yaml().as_bytes())
            ),
        }
    }
}

/// `time` as `YYYY-MM-DDTHH:MM:SSZ` (UTC), from the days-from-civil algorithm.
fn rfc3339(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The latency histogram of a run (one record in `LATENCY_SAMPLE` measured).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyRow {
    /// Records measured.
    pub measured: u64,
    pub mean_seconds: Option<f64>,
    /// Upper bound of the bucket holding the median (`None`: no record, or above the last
    /// bound).
    pub p50_at_most_seconds: Option<f64>,
    pub p99_at_most_seconds: Option<f64>,
    /// The median estimated within its bucket (linear, as Prometheus's `histogram_quantile`).
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    /// `(upper bound, records)` per bucket, labelled as Prometheus labels them (`+Inf` last).
    pub buckets: Vec<(String, u64)>,
}

impl LatencyRow {
    fn of(latency: &LatencyHistogram) -> Self {
        let bound = |q| {
            latency
                .quantile_bound(q)
                .filter(|d| *d != std::time::Duration::MAX)
                .map(|d| d.as_secs_f64())
        };
        Self {
            measured: latency.count(),
            mean_seconds: latency.mean().map(|d| d.as_secs_f64()),
            p50_at_most_seconds: bound(0.5),
            p99_at_most_seconds: bound(0.99),
            p50_seconds: latency.quantile_estimate(0.5).map(|d| d.as_secs_f64()),
            p99_seconds: latency.quantile_estimate(0.99).map(|d| d.as_secs_f64()),
            buckets: latency
                .prometheus_buckets()
                .into_iter()
                .map(|(le, n)| {
                    let label = if le.is_infinite() {
                        "+Inf".to_string()
                    } else {
                        le.to_string()
                    };
                    (label, n)
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerRow {
    pub worker: String,
    pub group: String,
    pub elapsed_seconds: f64,
    pub busy_seconds: f64,
    pub peak_rss_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RingRow {
    pub edge: String,
    pub records: u64,
    pub capacity_bytes: u64,
    pub peak_bytes: u64,
    /// `(seconds since launch, bytes waiting)`.
    pub occupancy_over_time: Vec<(f64, u64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpanRow {
    pub exporter: String,
    pub produced: u64,
    pub exported: u64,
    pub dropped: u64,
    pub failed: u64,
    pub exit_wait_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRow {
    pub node: String,
    pub group: String,
    pub records_in: u64,
    pub errors: u64,
    pub busy_seconds: f64,
}

/// Records through the rings that leave the source's group (rings whose producer is no ring's
/// consumer), summed over those rings point by point (`None` in the inline profile).
fn source_rings(summary: &RunSummary) -> Option<Vec<(u64, u64)>> {
    let ends = |name: &str| {
        name.split_once("->")
            .map(|(p, c)| (p.to_string(), c.to_string()))
    };
    let consumers: Vec<String> = summary
        .rings
        .iter()
        .filter_map(|r| Some(ends(&r.name)?.1))
        .collect();
    let leaving: Vec<&Timeline> = summary
        .rings
        .iter()
        .filter(|r| ends(&r.name).is_some_and(|(p, _)| !consumers.contains(&p)))
        .map(|r| &r.records_timeline)
        .collect();
    let first = leaving.first()?;
    let points = first
        .points
        .iter()
        .enumerate()
        .map(|(i, (at, _))| {
            let total = leaving
                .iter()
                .filter_map(|t| t.points.get(i))
                .map(|p| p.1)
                .sum();
            (*at, total)
        })
        .collect();
    Some(points)
}

/// The sampled counts, ending with the run's exact total (a supervised run's samples come
/// from heartbeats and may miss the last second).
fn with_final_count(mut points: Vec<(f64, u64)>, elapsed: f64, total: u64) -> Vec<(f64, u64)> {
    points.retain(|(t, _)| *t < elapsed);
    points.push((elapsed, total));
    points
}

fn seconds(points: &[(u64, u64)]) -> Vec<(f64, u64)> {
    points
        .iter()
        .map(|(ms, v)| (*ms as f64 / 1000.0, *v))
        .collect()
}

impl RunReport {
    pub fn new(
        config: &crate::config::Config,
        summary: &RunSummary,
        outcome: String,
        exit_status: u8,
        files: Vec<(String, String)>,
        records_over_time: &Timeline,
    ) -> Self {
        // An outcome without reasons is one bar; one with reasons, a bar per reason.
        let mut outcomes: Vec<(String, u64)> = summary
            .outcomes()
            .into_iter()
            .filter(|o| o.reason.is_empty() || o.records > 0)
            .map(|o| {
                let label = if o.reason.is_empty() {
                    o.outcome
                } else {
                    o.reason
                };
                (label, o.records)
            })
            .collect();
        if summary.dead_lettered > 0 {
            outcomes.push(("dead-lettered".to_string(), summary.dead_lettered));
        }
        Self {
            run: RunMeta::of(config, &summary.run_id, summary.elapsed),
            earlier: None,
            scenario: config.scenario.name.clone(),
            profile: summary.profile.clone(),
            outcome,
            exit_status,
            records: summary.records_in,
            elapsed_seconds: summary.elapsed.as_secs_f64(),
            records_per_second: summary.records_per_sec(),
            files,
            records_over_time: match source_rings(summary) {
                // Supervised: records leaving the source's group, sampled by the supervisor.
                Some(points) => seconds(&points),
                None => with_final_count(
                    seconds(&records_over_time.points),
                    summary.elapsed.as_secs_f64(),
                    summary.records_in,
                ),
            },
            workers: summary
                .workers
                .iter()
                .map(|w| WorkerRow {
                    worker: w.id.clone(),
                    group: w.group.clone(),
                    elapsed_seconds: w.elapsed.as_secs_f64(),
                    busy_seconds: w.busy.as_secs_f64(),
                    peak_rss_bytes: w.peak_rss_kib * 1024,
                })
                .collect(),
            rings: summary
                .rings
                .iter()
                .map(|r| RingRow {
                    edge: r.name.clone(),
                    records: r.records,
                    capacity_bytes: r.capacity_bytes,
                    peak_bytes: r.peak_bytes,
                    occupancy_over_time: seconds(&r.timeline.points),
                })
                .collect(),
            outcomes,
            spans: summary
                .spans
                .iter()
                .map(|s| SpanRow {
                    exporter: s.kind.clone(),
                    produced: s.produced,
                    exported: s.exported,
                    dropped: s.dropped,
                    failed: s.failed,
                    exit_wait_ms: s.exit_wait_ms,
                })
                .collect(),
            nodes: summary
                .nodes
                .iter()
                .map(|n| NodeRow {
                    node: n.name.clone(),
                    group: n.group.clone(),
                    records_in: n.stats.records_in,
                    errors: n.stats.errors,
                    busy_seconds: n.busy_ns as f64 / 1e9,
                })
                .collect(),
            peak_rss_bytes: summary.peak_rss_kib * 1024,
            latency: LatencyRow::of(&summary.latency),
        }
    }

    /// Writes the report: JSON for a `.json` path, else the HTML page.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            serde_json::to_string_pretty(self).map_err(std::io::Error::other)?
        } else {
            self.html()
        };
        write_replacing(path, text.as_bytes())
    }

    /// The self-contained page.
    pub fn html(&self) -> String {
        let mut page = String::with_capacity(32 * 1024);
        let title = format!("stream-kernel run: {}", self.scenario);
        let _ = write!(
            page,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
            escape(&title),
            escape(&title)
        );
        self.html_overview(&mut page);
        if let Some(earlier) = &self.earlier {
            section(
                &mut page,
                "Compared with an earlier run",
                &self.comparison_table(earlier),
            );
        }
        section(&mut page, "Throughput over time", &self.throughput_chart());
        section(&mut page, "Ring occupancy over time", &self.ring_chart());
        section(&mut page, "Per-worker busy time", &self.worker_bars());
        section(&mut page, "Outcomes by reason", &self.outcome_bars());
        section(
            &mut page,
            "Where the time went (node self time)",
            &self.node_bars(),
        );
        section(
            &mut page,
            "End-to-end latency (read to output written, sampled records)",
            &self.latency_bars(),
        );
        section(&mut page, "Span export", &self.span_table());
        page.push_str("</body></html>\n");
        page
    }

    fn html_overview(&self, page: &mut String) {
        let ms = |s: Option<f64>| s.map_or("-".to_string(), |s| format!("{:.3} ms", s * 1e3));
        let _ = writeln!(
            page,
            "<table class=\"facts\"><tr><th>started</th><td>{}</td></tr><tr><th>run id</th><td>{}</td></tr><tr><th>version</th><td>{}</td></tr><tr><th>host</th><td>{}</td></tr><tr><th>config digest</th><td>{}</td></tr><tr><th>latency p50 / p99</th><td>{} / {} (read to output written, {} records measured)</td></tr></table>",
            escape(&self.run.started_at),
            escape(&self.run.run_id),
            escape(&self.run.version),
            escape(&self.run.host),
            escape(&self.run.config_digest),
            ms(self.latency.p50_seconds),
            ms(self.latency.p99_seconds),
            self.latency.measured
        );
        let _ = write!(
            page,
            "<table class=\"facts\"><tr><th>outcome</th><td>{} (exit {})</td></tr><tr><th>profile</th><td>{}</td></tr><tr><th>records</th><td>{}</td></tr><tr><th>elapsed</th><td>{:.3} s</td></tr><tr><th>rate</th><td>{} records/s</td></tr><tr><th>peak RSS</th><td>{:.1} MiB (all processes)</td></tr>",
            escape(&self.outcome),
            self.exit_status,
            escape(&self.profile),
            self.records,
            self.elapsed_seconds,
            super::progress::si(self.records_per_second),
            self.peak_rss_bytes as f64 / (1024.0 * 1024.0)
        );
        for (what, path) in &self.files {
            let _ = write!(
                page,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(what),
                escape(path)
            );
        }
        page.push_str("</table>\n");
    }

    fn throughput_chart(&self) -> String {
        let rates: Vec<(f64, f64)> = distinct_counts(&self.records_over_time)
            .windows(2)
            .filter(|w| w[1].0 > w[0].0)
            .map(|w| {
                let rate = w[1].1.saturating_sub(w[0].1) as f64 / (w[1].0 - w[0].0);
                (w[1].0, rate)
            })
            .collect();
        if rates.is_empty() {
            return "<p>The run was too short to sample.</p>".to_string();
        }
        line_chart(&[("records/s".to_string(), rates)], "records/s")
    }

    fn ring_chart(&self) -> String {
        if self.rings.is_empty() {
            return "<p>No rings: every node ran in one process.</p>".to_string();
        }
        let series: Vec<(String, Vec<(f64, f64)>)> = self
            .rings
            .iter()
            .map(|r| {
                let capacity = r.capacity_bytes.max(1) as f64;
                let points = r
                    .occupancy_over_time
                    .iter()
                    .map(|(t, b)| (*t, *b as f64 * 100.0 / capacity))
                    .collect();
                (r.edge.clone(), points)
            })
            .collect();
        line_chart(&series, "% of capacity")
    }

    fn worker_bars(&self) -> String {
        let rows: Vec<(String, f64, String)> = self
            .workers
            .iter()
            .map(|w| {
                let share = if w.elapsed_seconds > 0.0 {
                    w.busy_seconds / w.elapsed_seconds
                } else {
                    0.0
                };
                (
                    w.worker.clone(),
                    share,
                    format!("{:.0}% of {:.3} s", share * 100.0, w.elapsed_seconds),
                )
            })
            .collect();
        bars(&rows, 1.0)
    }

    fn outcome_bars(&self) -> String {
        let most = self.outcomes.iter().map(|(_, v)| *v).max().unwrap_or(0) as f64;
        let rows: Vec<(String, f64, String)> = self
            .outcomes
            .iter()
            .map(|(reason, n)| (reason.clone(), *n as f64, n.to_string()))
            .collect();
        if rows.is_empty() {
            return "<p>The sink reported no outcomes.</p>".to_string();
        }
        bars(&rows, most.max(1.0))
    }

    fn node_bars(&self) -> String {
        let total: f64 = self.nodes.iter().map(|n| n.busy_seconds).sum();
        let rows: Vec<(String, f64, String)> = self
            .nodes
            .iter()
            .map(|n| {
                let share = if total > 0.0 {
                    n.busy_seconds / total
                } else {
                    0.0
                };
                (
                    format!("{} ({})", n.node, n.group),
                    share,
                    format!("{:.1}% ({:.1} ms)", share * 100.0, n.busy_seconds * 1e3),
                )
            })
            .collect();
        bars(&rows, 1.0)
    }

    fn latency_bars(&self) -> String {
        if self.latency.measured == 0 {
            return "<p>No record was measured (runs shorter than the sample period, or an \
                    embedded pipeline).</p>"
                .to_string();
        }
        let full = self.latency.measured as f64;
        let rows: Vec<(String, f64, String)> = self
            .latency
            .buckets
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(le, n)| {
                let label = match le.parse::<f64>() {
                    Ok(seconds) if seconds < 1e-3 => format!("<= {:.0} µs", seconds * 1e6),
                    Ok(seconds) if seconds < 1.0 => format!("<= {} ms", seconds * 1e3),
                    Ok(seconds) => format!("<= {seconds} s"),
                    Err(_) => "more".to_string(),
                };
                (label, *n as f64, format!("{n} records"))
            })
            .collect();
        bars(&rows, full)
    }

    fn span_table(&self) -> String {
        if self.spans.is_empty() {
            return "<p>Tracing was off.</p>".to_string();
        }
        let mut table = String::from(
            "<table><tr><th>exporter</th><th>produced</th><th>exported</th><th>dropped</th><th>failed</th><th>exit wait</th></tr>",
        );
        for s in &self.spans {
            let _ = write!(
                table,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td></tr>",
                escape(&s.exporter),
                s.produced,
                s.exported,
                s.dropped,
                s.failed,
                s.exit_wait_ms
            );
        }
        table.push_str("</table>");
        table
    }
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:960px}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}table{border-collapse:collapse}\
th,td{padding:2px 10px;text-align:left;border-bottom:1px solid #eee}.facts th{color:#666}\
.bar{display:flex;align-items:center;margin:2px 0}.bar .label{width:340px;overflow:hidden;white-space:nowrap}\
.bar .track{flex:1;background:#f0f0f0;height:14px;margin:0 8px}.bar .fill{background:#4a78c2;height:14px}\
.bar .value{width:160px;color:#555}svg text{font:11px sans-serif;fill:#555}.legend span{margin-right:14px}";

const COLORS: [&str; 6] = [
    "#4a78c2", "#d9822b", "#3c9a5f", "#b03a48", "#7d5ba6", "#8c6d31",
];

/// The samples where the count changed (and the last one): a count sampled twice between two
/// updates of its source (a heartbeat) is not a stall, and its rate is the rate over the whole
/// span, not 0 then a spike.
fn distinct_counts(points: &[(f64, u64)]) -> Vec<(f64, u64)> {
    let mut kept: Vec<(f64, u64)> = Vec::with_capacity(points.len());
    for (i, point) in points.iter().enumerate() {
        let last = i + 1 == points.len();
        if kept.last().is_none_or(|k| k.1 != point.1) || last {
            kept.push(*point);
        }
    }
    kept
}

fn section(page: &mut String, title: &str, body: &str) {
    let _ = write!(page, "<h2>{}</h2>\n{body}\n", escape(title));
}

/// Text for HTML content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Horizontal bars: `(label, value, text)`, scaled so that `full` fills the track.
fn bars(rows: &[(String, f64, String)], full: f64) -> String {
    let mut out = String::new();
    for (label, value, text) in rows {
        let width = (value / full * 100.0).clamp(0.0, 100.0);
        let _ = write!(
            out,
            "<div class=\"bar\"><span class=\"label\">{}</span><span class=\"track\"><span class=\"fill\" style=\"display:block;width:{width:.1}%\"></span></span><span class=\"value\">{}</span></div>",
            escape(label),
            escape(text)
        );
    }
    out
}

/// An SVG line chart of `series` (seconds on x), with axes labels and a legend.
fn line_chart(series: &[(String, Vec<(f64, f64)>)], unit: &str) -> String {
    const W: f64 = 900.0;
    const H: f64 = 240.0;
    const LEFT: f64 = 60.0;
    const BOTTOM: f64 = 24.0;
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let (max_t, max_v) = all.fold((0.0f64, 0.0f64), |(t, v), (pt, pv)| {
        (t.max(*pt), v.max(*pv))
    });
    let (max_t, max_v) = (max_t.max(1e-3), max_v.max(1e-9));
    let x = |t: f64| LEFT + t / max_t * (W - LEFT - 10.0);
    let y = |v: f64| (H - BOTTOM) - v / max_v * (H - BOTTOM - 10.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\">\
<line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/><line x1=\"{LEFT}\" y1=\"10\" x2=\"{LEFT}\" y2=\"{}\" stroke=\"#999\"/>\
<text x=\"2\" y=\"14\">{}</text><text x=\"2\" y=\"{}\">0</text><text x=\"{}\" y=\"{}\">{:.2} s</text>",
        H - BOTTOM,
        W - 10.0,
        H - BOTTOM,
        H - BOTTOM,
        escape(&format!("{} {unit}", super::progress::si(max_v))),
        H - BOTTOM,
        W - 60.0,
        H - 6.0,
        max_t
    );
    for (i, (_, points)) in series.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>",
            COLORS[i % COLORS.len()],
            path.join(" ")
        );
    }
    svg.push_str("</svg><div class=\"legend\">");
    for (i, (name, _)) in series.iter().enumerate() {
        let _ = write!(
            svg,
            "<span style=\"color:{}\">&#9632; {}</span>",
            COLORS[i % COLORS.len()],
            escape(name)
        );
    }
    svg.push_str("</div>");
    svg
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`: a report is
/// never seen half written, and a symlink at `path` is replaced, not followed. `/dev/null`
/// is written as it is.
fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return std::fs::write(path, bytes);
    }
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let temp = path.with_file_name(name);
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_sampled_twice_between_updates_is_not_a_stall() {
        // A heartbeat updates the count once a second; the sampler looks every 250 ms.
        let sampled = [
            (0.0, 0),
            (0.25, 0),
            (0.5, 1000),
            (0.75, 1000),
            (1.0, 1000),
            (1.25, 2000),
        ];
        let kept = distinct_counts(&sampled);
        assert_eq!(kept, [(0.0, 0), (0.5, 1000), (1.25, 2000)]);
        let last_repeated = [(0.0, 0), (1.0, 500), (2.0, 500)];
        assert_eq!(distinct_counts(&last_repeated), last_repeated);
    }

    #[test]
    fn rfc3339_of_known_times() {
        let at = |s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(1_796_666_137)), "2026-12-07T17:55:37Z");
        assert_eq!(rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn a_chart_is_one_svg_with_a_line_per_series() {
        let chart = line_chart(
            &[
                ("a".into(), vec![(0.0, 1.0), (1.0, 2.0)]),
                ("b<".into(), vec![(0.5, 0.0)]),
            ],
            "x",
        );
        assert_eq!(chart.matches("<polyline").count(), 2);
        assert!(chart.contains("b&lt;") && !chart.contains("b<"));
    }
}
