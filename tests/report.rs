//! `stream-kernel run --report`: the HTML page and its JSON twin from a real 4-group run; the
//! page opened in headless Chromium (rendered with no console error, a screenshot taken).

#[path = "support/needs.rs"]
mod needs;

use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stream-kernel"))
}

const CHROMIUM: &str = "/usr/bin/chromium";

/// A 4-group run on 20,000 generated lines with both reports; returns (html, json).
fn reported_run(dir: &Path) -> (String, serde_json::Value) {
    reported_run_compared(dir, None)
}

/// [`reported_run`], compared with the earlier run whose report JSON is `earlier`.
fn reported_run_compared(dir: &Path, earlier: Option<&Path>) -> (String, serde_json::Value) {
    let input = dir.join("in.txt");
    let generated = bin()
        .args(["gen", "--lines", "20000", "--output"])
        .arg(&input)
        .status()
        .unwrap();
    assert!(generated.success());
    let name = if earlier.is_some() { "again" } else { "run" };
    let (html, json) = (
        dir.join(format!("{name}.html")),
        dir.join(format!("{name}.json")),
    );
    let out = bin()
        .args(["run", "-c"])
        .arg(format!(
            "{}/configs/fund_load_experiment_4proc.yml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(dir.join("out.txt"))
        .arg("--dead-letter")
        .arg(dir.join("rejects.jsonl"))
        .arg("--report")
        .arg(&html)
        .arg("--report")
        .arg(&json)
        .args(earlier.map(|e| format!("--report-compare={}", e.display())))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    let facts = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (page, facts)
}

/// The sum of the counts of a list of `[label, count]` pairs.
fn sum_of_counts(pairs: &serde_json::Value) -> u64 {
    pairs
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[1].as_u64().unwrap())
        .sum()
}

/// The JSON twin holds the run's facts and they add up; the page has every section and needs
/// nothing from outside itself.
fn report_holds_the_runs_facts_and_is_self_contained() {
    let dir = tempfile::tempdir().unwrap();
    let (page, facts) = reported_run(dir.path());
    assert_eq!(facts["records"], 20_000);
    assert_eq!(facts["exit_status"], 0);
    assert_eq!(facts["outcome"], "completed");
    let outcomes = sum_of_counts(&facts["outcomes"]);
    let written = std::fs::read_to_string(dir.path().join("out.txt"))
        .unwrap()
        .lines()
        .count()
        + std::fs::read_to_string(dir.path().join("rejects.jsonl"))
            .unwrap()
            .lines()
            .count();
    assert_eq!(
        outcomes as usize, written,
        "outcomes do not add up to what was written"
    );
    assert_eq!(facts["workers"].as_array().unwrap().len(), 4);
    assert_eq!(facts["nodes"].as_array().unwrap().len(), 9);
    let rings = facts["rings"].as_array().unwrap();
    assert_eq!(rings.len(), 3);
    assert!(
        rings
            .iter()
            .all(|r| !r["occupancy_over_time"].as_array().unwrap().is_empty())
    );
    assert!(facts["records_over_time"].as_array().unwrap().len() >= 2);
    // End-to-end latency: every record whose seq is a multiple of 64 is measured exactly once,
    // in whichever worker it ended; the buckets add up to that count.
    let latency = &facts["latency"];
    assert_eq!(latency["measured"], 20_000 / 64, "{latency}");
    assert_eq!(sum_of_counts(&latency["buckets"]), 20_000 / 64);
    assert!(latency["p50_at_most_seconds"].as_f64().unwrap() > 0.0);
    // Which run: when, what, where; and every worker's busy time, the source's included.
    let run = &facts["run"];
    assert_eq!(run["version"], env!("CARGO_PKG_VERSION"));
    assert!(run["started_at"].as_str().unwrap().ends_with('Z'), "{run}");
    assert!(!run["run_id"].as_str().unwrap().is_empty(), "{run}");
    assert!(!run["host"].as_str().unwrap().is_empty(), "{run}");
    assert_eq!(run["config_digest"].as_str().unwrap().len(), 16, "{run}");
    for worker in facts["workers"].as_array().unwrap() {
        assert!(worker["busy_seconds"].as_f64().unwrap() > 0.0, "{worker}");
    }
    assert!(
        page.contains("latency p50 / p99"),
        "no latency percentiles on the page"
    );
    for section in [
        "Throughput over time",
        "Ring occupancy over time",
        "Per-worker busy time",
        "Outcomes by reason",
        "Where the time went",
        "End-to-end latency",
        "Span export",
    ] {
        assert!(page.contains(section), "{section} missing");
    }
    for external in ["<script", "<link", "src=", "url(", "https://"] {
        assert!(
            !page.contains(external),
            "the page refers outside itself: {external}"
        );
    }
    let without_namespace = page.replace("http://www.w3.org/2000/svg", "");
    assert!(
        !without_namespace.contains("http://"),
        "an external reference"
    );
}

/// Headless Chromium renders the page with no console error, and takes a screenshot.
fn report_renders_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = reported_run(dir.path());
    let url = format!("file://{}", dir.path().join("run.html").display());
    let browser = |extra: &[&str]| {
        Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let dom = browser(&["--dump-dom"]);
    let rendered = String::from_utf8_lossy(&dom.stdout);
    assert!(rendered.contains("Throughput over time") && rendered.contains("<polyline"));
    // The same job again, compared with the first run: the comparison renders.
    let (_, again) = reported_run_compared(dir.path(), Some(&dir.path().join("run.json")));
    assert!(
        again["earlier"]["records"] == 20_000,
        "{}",
        again["earlier"]
    );
    let url_again = format!("file://{}", dir.path().join("again.html").display());
    let compared = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--dump-dom",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile2").display()
        ))
        .arg(&url_again)
        .output()
        .unwrap();
    let compared = String::from_utf8_lossy(&compared.stdout);
    assert!(
        compared.contains("Compared with an earlier run") && compared.contains("same"),
        "the comparison is not on the rendered page"
    );
    let log = String::from_utf8_lossy(&dom.stderr);
    let console_errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") && (l.contains("ERROR") || l.contains("Uncaught")))
        .collect();
    assert!(
        console_errors.is_empty(),
        "console errors: {console_errors:?}"
    );
    let png = dir.path().join("shot.png");
    let shot = browser(&[
        "--hide-scrollbars",
        "--window-size=1000,1900",
        &format!("--screenshot={}", png.display()),
    ]);
    assert!(shot.status.success());
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.len() > 10_000 && bytes.starts_with(b"\x89PNG"),
        "no screenshot"
    );
}

fn main() {
    needs::run(vec![
        needs::panicking(
            "report_holds_the_runs_facts_and_is_self_contained",
            &[],
            report_holds_the_runs_facts_and_is_self_contained,
        ),
        needs::panicking(
            "report_renders_in_a_real_browser",
            &[needs::Need::tool(CHROMIUM, "Debian package chromium")],
            report_renders_in_a_real_browser,
        ),
    ])
}
