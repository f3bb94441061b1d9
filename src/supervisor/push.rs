//! The batch-job end of metrics: when a run ends, its final figures are pushed to a Prometheus
//! Pushgateway (`runtime.platform.health.push_gateway`), because a scrape every few seconds
//! misses most of a short run and none of a push. One `PUT` replaces the figures of the run's
//! grouping key (`job/<push_job>/instance/<host>`), so the gateway always holds the last run.

use std::time::Duration;

use super::health::{MetricsFormat, MetricsView};

/// How long a push may take before the run gives up on it (the run's outcome stands).
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// A push that did not reach the gateway.
#[derive(Debug, thiserror::Error)]
#[error("pushing the final metrics to {url} failed: {detail}")]
pub struct PushError {
    /// Where the figures went.
    pub url: String,
    /// What failed.
    pub detail: String,
}

/// The final figures of a run, in Prometheus text, with the two gauges a batch job's alerts
/// are written against: when it ended and whether it succeeded.
pub fn final_figures(view: &MetricsView, succeeded: bool, ended_unix_seconds: f64) -> String {
    let mut text = MetricsFormat::PrometheusText.render(view);
    text.push_str(
        "# HELP stream_kernel_run_end_time_seconds When the run ended, since the Unix epoch\n\
         # TYPE stream_kernel_run_end_time_seconds gauge\n",
    );
    text.push_str(&format!(
        "stream_kernel_run_end_time_seconds {ended_unix_seconds}\n"
    ));
    text.push_str(
        "# HELP stream_kernel_run_succeeded 1 when every record was accounted for, 0 when the run failed or was stopped\n\
         # TYPE stream_kernel_run_succeeded gauge\n",
    );
    text.push_str(&format!(
        "stream_kernel_run_succeeded {}\n",
        u8::from(succeeded)
    ));
    text
}

/// The grouping key's URL under `gateway`: `/metrics/job/<job>/instance/<host>`. Label values
/// are kept to characters that need no escaping in a path.
pub fn push_url(gateway: &str, job: &str, host: &str) -> String {
    let safe = |value: &str| -> String {
        value
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!(
        "{}/metrics/job/{}/instance/{}",
        gateway.trim_end_matches('/'),
        safe(job),
        safe(host)
    )
}

/// `PUT`s `body` to `url` (replacing what the grouping key held).
pub fn push(url: &str, body: String) -> Result<(), PushError> {
    let failed = |detail: String| PushError {
        url: url.to_string(),
        detail,
    };
    let client = reqwest::blocking::Client::builder()
        .timeout(PUSH_TIMEOUT)
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let response = client
        .put(url)
        .header("Content-Type", MetricsFormat::PrometheusText.content_type())
        .body(body)
        .send()
        .map_err(|e| failed(format!("{e:#}")))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let answer = response.text().unwrap_or_default();
    Err(failed(format!("HTTP {status}: {}", answer.trim())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grouping_key_needs_no_escaping() {
        assert_eq!(
            push_url("http://gw:9091/", "stream_kernel", "host a/b"),
            "http://gw:9091/metrics/job/stream_kernel/instance/host_a_b"
        );
    }

    #[test]
    fn final_figures_say_when_and_whether() {
        let text = final_figures(&MetricsView::default(), true, 12.5);
        assert!(text.contains("\nstream_kernel_run_succeeded 1\n"), "{text}");
        assert!(
            text.contains("\nstream_kernel_run_end_time_seconds 12.5\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
    }
}
