//! What an operator's tools see: `/metrics` scraped during a real supervised run and read by
//! the reference Prometheus client's OpenMetrics parser and by `promtool`, the final figures
//! pushed to a real Pushgateway, the health routes, and where the summary says the endpoints
//! were.

#[path = "support/checks.rs"]
mod checks;
#[path = "support/cli_runs.rs"]
mod cli_runs;
#[path = "support/fund_load_runs.rs"]
mod fund_load_runs;
#[path = "support/http.rs"]
mod http;
#[path = "support/needs.rs"]
mod needs;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use checks::check;
use cli_runs::{cli, set, variant_config, yaml};
use http::{http_get, http_get_accept};
use libtest_mimic::Failed;
use needs::{Need, trial};

/// Reads OpenMetrics text on stdin with `prometheus_client`'s parser (the Python reference
/// client) and prints every family as JSON: name, type, samples.
const PARSER: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": family.name, "type": family.type,
                "samples": [[s.name, s.labels, s.value] for s in family.samples]})
print(json.dumps(out))
"#;

#[derive(Debug, Clone)]
struct Family {
    kind: String,
    /// (sample name, sorted labels) -> value
    samples: BTreeMap<(String, Vec<(String, String)>), f64>,
}

/// Runs a Python `script` with `args`, `input` on stdin; its stdout, or a failure naming
/// `what` with its stderr.
fn run_python(script: &str, args: &[&Path], input: &str, what: &str) -> Result<Vec<u8>, Failed> {
    let mut python = Command::new("python3");
    python.args(["-c", script]).args(args);
    run_with_input(python, input, what)
}

/// Runs `command` with `input` on stdin: its stdout, or a failure naming `what` with what it
/// printed.
fn run_with_input(mut command: Command, input: &str, what: &str) -> Result<Vec<u8>, Failed> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    check(out.status.success(), || {
        format!(
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok(out.stdout)
}

/// Parses one scrape with the reference parser; a rejected scrape is a failure.
fn parse(text: &str) -> Result<BTreeMap<String, Family>, Failed> {
    let what = format!("the Prometheus parser rejects the scrape\n{text}");
    let out = run_python(PARSER, &[], text, &what)?;
    let parsed: serde_json::Value = serde_json::from_slice(&out)?;
    let mut families = BTreeMap::new();
    for family in parsed.as_array().ok_or("not a list")? {
        let mut samples = BTreeMap::new();
        for sample in family["samples"].as_array().ok_or("no samples")? {
            let labels: Vec<(String, String)> = sample[1]
                .as_object()
                .ok_or("labels")?
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let name = sample[0].as_str().ok_or("sample name")?.to_string();
            samples.insert((name, labels), sample[2].as_f64().ok_or("value")?);
        }
        families.insert(
            family["name"].as_str().ok_or("name")?.to_string(),
            Family {
                kind: family["type"].as_str().ok_or("type")?.to_string(),
                samples,
            },
        );
    }
    Ok(families)
}

/// The ingress worker's `records_in` counter in one parsed scrape.
fn ingress_records_in(families: &BTreeMap<String, Family>) -> f64 {
    families
        .get("stream_kernel_worker_records_in")
        .map(|f| {
            f.samples
                .iter()
                .filter(|((_, labels), _)| {
                    labels
                        .iter()
                        .any(|(k, v)| k == "group" && v == "execution.ingress")
                })
                .map(|(_, v)| *v)
                .sum()
        })
        .unwrap_or(0.0)
}

fn input_lines(lines: u64, seed: u64) -> Result<Vec<u8>, Failed> {
    let mut bytes = Vec::new();
    stream_kernel::apps::fund_load::generator::write_lines(lines, seed, &mut bytes)?;
    Ok(bytes)
}

/// Waits for the supervisor's log line naming the health address.
fn health_address(lines: &mpsc::Receiver<String>) -> Result<SocketAddr, Failed> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let line = lines.recv_timeout(left)?;
        if let Some(rest) = line.split("health endpoints on http://").nth(1) {
            let address = rest.split_whitespace().next().ok_or("no address")?;
            return Ok(address.parse()?);
        }
    }
    Err("the supervisor never logged its health address".into())
}

/// Scraped during a 4-group run fed through stdin, `/metrics` parses with the reference
/// OpenMetrics parser; counters are typed counters named `_total` and only grow; figures are
/// in base units; a worker's counters show up within seconds although `heartbeat_seconds` is
/// 30; `/healthz` and `/readyz?verbose` answer; the summary names the health address.
fn metrics_scraped_during_a_run_follow_prometheus_conventions() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let spans = dir.path().join("spans.jsonl");
    let config = variant_config(dir.path(), "fund_load_experiment_4proc", |root| {
        for group in 0..4 {
            let key = format!("runtime.platform.process_groups[{group}].heartbeat_seconds");
            set(root, &key, yaml("30"));
        }
        let tracing = format!(
            "{{enabled: true, sample_ratio: 0.01, exporters: [{{kind: jsonl, settings: {{path: \"{}\"}}}}]}}",
            spans.display()
        );
        set(root, "runtime.observability.tracing", yaml(&tracing));
    })?;
    let mut child = cli()
        .args(["run", "--input", "-", "-c"])
        .arg(&config)
        .arg("--output")
        .arg(dir.path().join("out.txt"))
        .arg("--dead-letter")
        .arg(dir.path().join("rejects.jsonl"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    let result = scrape_through_the_run(&mut child, &lines);
    if result.is_err() {
        let _ = child.kill();
    }
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .ok_or("no stdout")?
        .read_to_string(&mut stdout)?;
    let status = child.wait()?;
    let log = reader.join().map_err(|_| "stderr reader")?;
    let address = result?;
    check(status.success(), || {
        format!("exit {status}\n{stdout}\n{log}")
    })?;
    check(
        stdout.contains(&format!("health:  http://{address}/metrics")),
        || format!("the summary does not name the health address {address}:\n{stdout}"),
    )
}

fn scrape_through_the_run(
    child: &mut std::process::Child,
    lines: &mpsc::Receiver<String>,
) -> Result<SocketAddr, Failed> {
    let address = health_address(lines)?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    stdin.write_all(&input_lines(1000, 7)?)?;
    stdin.flush()?;
    let mut scrapes = Vec::new();
    // The workers' counters must appear long before the 30 s heartbeat.
    let deadline = Instant::now() + Duration::from_secs(15);
    check_prometheus_text(address)?;
    loop {
        let (status, content_type, text) = http_get_accept(address, "/metrics", OPENMETRICS)?;
        check(status == 200, || format!("/metrics: {status}"))?;
        check(
            content_type.starts_with("application/openmetrics-text"),
            || format!("asked for OpenMetrics, got {content_type}"),
        )?;
        let families = parse(&text)?;
        let seen = ingress_records_in(&families);
        let measured = latency_count(&families);
        scrapes.push(families);
        // 1000 records: 15 of them (seq 64, 128, ..., 960) carry a latency sample; those in the
        // ingress ring's last unpublished batch may wait for more input, the first may not.
        if seen >= 1000.0 && measured >= 1.0 {
            break;
        }
        check(Instant::now() < deadline, || {
            format!(
                "after 15 s /metrics still shows {seen} records into ingress (1000 sent) and \
                 {measured} latency samples"
            )
        })?;
        std::thread::sleep(Duration::from_millis(200));
    }
    for path in ["/healthz", "/livez?verbose", "/readyz?verbose"] {
        let (status, _) = http_get(address, path)?;
        check(status == 200, || format!("{path}: {status}"))?;
    }
    stdin.write_all(&input_lines(1000, 8)?)?;
    drop(stdin);
    // Until the run ends (a refused connection) or a few more scrapes.
    for _ in 0..10 {
        match http_get_accept(address, "/metrics", OPENMETRICS) {
            Ok((200, _, text)) => scrapes.push(parse(&text)?),
            _ => break,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check_conventions(&scrapes)?;
    check_latency_histogram(&scrapes)?;
    check_dashboard_metrics(scrapes.last().ok_or("no scrape")?)?;
    Ok(address)
}

/// What Prometheus sends when it prefers OpenMetrics.
const OPENMETRICS: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A scrape without `Accept` is Prometheus text 0.0.4, and `promtool check metrics` passes it
/// with no finding (every family has help text, counters are named as Prometheus names them).
fn check_prometheus_text(address: SocketAddr) -> Result<(), Failed> {
    let (status, content_type, text) = http_get_accept(address, "/metrics", "*/*")?;
    check(status == 200, || format!("/metrics: {status}"))?;
    check(
        content_type.starts_with("text/plain; version=0.0.4"),
        || format!("a scrape without a preference got {content_type}"),
    )?;
    check(!text.contains("# EOF"), || {
        "Prometheus text with # EOF".into()
    })?;
    let mut promtool = Command::new("promtool");
    promtool.args(["check", "metrics"]);
    run_with_input(promtool, &text, &format!("promtool check metrics\n{text}")).map(drop)
}

/// A real `prometheus-pushgateway` on a free loopback port, stopped when dropped.
struct Pushgateway {
    child: std::process::Child,
    address: SocketAddr,
}

impl Pushgateway {
    fn start() -> Result<Self, Failed> {
        let address = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let gateway = Self { child, address };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(address, "/-/ready").ok().map(|(s, _)| s) != Some(200) {
            check(Instant::now() < deadline, || {
                "the Pushgateway did not become ready in 20 s".into()
            })?;
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(gateway)
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With `health.push_gateway` set, a short 4-group run's final figures reach a real
/// Pushgateway under `job="stream_kernel"`, `instance=<host>`: every record counted, the run
/// marked succeeded, its end time set — what a scrape of a 1-second run would likely miss.
fn final_figures_are_pushed_to_a_pushgateway() -> Result<(), Failed> {
    let gateway = Pushgateway::start()?;
    let dir = tempfile::tempdir()?;
    let url = format!("http://{}", gateway.address);
    let config = variant_config(dir.path(), "fund_load_experiment_4proc", |root| {
        set(
            root,
            "runtime.platform.health.push_gateway",
            yaml(&format!("\"{url}\"")),
        );
    })?;
    let input = dir.path().join("in.txt");
    std::fs::write(&input, input_lines(1000, 3)?)?;
    let out = cli()
        .args(["run", "-q", "-c"])
        .arg(&config)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("out.txt"))
        .arg("--dead-letter")
        .arg(dir.path().join("rejects.jsonl"))
        .output()?;
    check(out.status.success(), || {
        format!(
            "exit {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let (status, pushed) = http_get(gateway.address, "/metrics")?;
    check(status == 200, || format!("Pushgateway /metrics: {status}"))?;
    let sample = |name: &str, group: Option<&str>| -> Option<f64> {
        pushed.lines().find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let labelled = series.starts_with(&format!("{name}{{"));
            let ours = series.contains("job=\"stream_kernel\"") && series.contains("instance=\"");
            let in_group = group.is_none_or(|g| series.contains(&format!("group=\"{g}\"")));
            (labelled && ours && in_group).then(|| value.parse().ok())?
        })
    };
    check(
        sample("stream_kernel_run_succeeded", None) == Some(1.0),
        || format!("no stream_kernel_run_succeeded 1 pushed:\n{pushed}"),
    )?;
    check(
        sample("stream_kernel_run_end_time_seconds", None).is_some_and(|t| t > 1.7e9),
        || format!("no end time pushed:\n{pushed}"),
    )?;
    check(
        sample(
            "stream_kernel_worker_records_in_total",
            Some("execution.ingress"),
        ) == Some(1000.0),
        || format!("the ingress worker's 1000 records were not pushed:\n{pushed}"),
    )
}

/// Every metric name the bundled Grafana dashboard queries.
fn dashboard_metrics() -> Result<Vec<String>, Failed> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let mut names = Vec::new();
    for panel in dashboard["panels"].as_array().ok_or("no panels")? {
        for target in panel["targets"].as_array().ok_or("no targets")? {
            let expr = target["expr"].as_str().ok_or("no expr")?;
            let tokens = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'));
            names.extend(
                tokens
                    .filter(|t| t.starts_with("stream_kernel_") || t.starts_with("process_"))
                    .map(str::to_string),
            );
        }
    }
    Ok(names)
}

/// The dashboard queries only series a live supervisor exposes.
fn check_dashboard_metrics(scrape: &BTreeMap<String, Family>) -> Result<(), Failed> {
    let exposed: Vec<&str> = scrape
        .values()
        .flat_map(|f| f.samples.keys().map(|(name, _)| name.as_str()))
        .collect();
    let queried = dashboard_metrics()?;
    check(queried.len() >= 10, || {
        format!("dashboard queries {queried:?}")
    })?;
    for name in queried {
        check(exposed.contains(&name.as_str()), || {
            format!("the dashboard queries {name}, which /metrics does not expose")
        })?;
    }
    Ok(())
}

/// The systemd unit and the deploy config agree with the binary: `Type=notify`, an
/// ExecStart the CLI accepts, a config that validates, a stop timeout that covers the groups'
/// `stop_timeout_seconds`, exit statuses the CLI documents, and Prometheus scraping the port
/// the config's health endpoint binds.
fn deploy_files_agree_with_the_binary() -> Result<(), Failed> {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let unit = std::fs::read_to_string(deploy.join("systemd/stream-kernel.service"))?;
    let key = |name: &str| -> Option<String> {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    check(key("Type").as_deref() == Some("notify"), || {
        "Type is not notify".into()
    })?;
    let exec = key("ExecStart").ok_or("no ExecStart")?;
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    check(args.first() == Some(&"run"), || format!("ExecStart {exec}"))?;
    let help = String::from_utf8(cli().args(["run", "--help"]).output()?.stdout)?;
    for flag in args.iter().filter(|a| a.starts_with('-')) {
        check(help.contains(flag), || format!("`run` has no flag {flag}"))?;
    }
    let config = deploy.join("stream-kernel.yml");
    let valid = cli().arg("validate").arg("-c").arg(&config).output()?;
    check(valid.status.success(), || {
        String::from_utf8_lossy(&valid.stderr).into_owned()
    })?;
    let loaded = stream_kernel::config::load_file(&config, &cli_runs::registry())
        .map_err(|r| r.to_string())?
        .config;
    let platform = &loaded.runtime.platform;
    let stop = platform
        .process_groups
        .iter()
        .map(|g| g.stop_timeout_seconds)
        .fold(0.0, f64::max);
    let timeout: f64 = key("TimeoutStopSec").ok_or("no TimeoutStopSec")?.parse()?;
    check(timeout >= stop + 10.0, || {
        format!("TimeoutStopSec {timeout} does not cover stop_timeout_seconds {stop} + 10 s")
    })?;
    let top_help = String::from_utf8(cli().arg("--help").output()?.stdout)?;
    for status in key("RestartPreventExitStatus")
        .unwrap_or_default()
        .split_whitespace()
    {
        check(top_help.contains(&format!("  {status} ")), || {
            format!("exit status {status} is not documented by --help")
        })?;
    }
    let port = platform
        .health
        .bind
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let prometheus = std::fs::read_to_string(deploy.join("prometheus.yml"))?;
    check(prometheus.contains(&format!(":{port}\"")), || {
        format!("prometheus.yml does not scrape port {port}")
    })?;
    let compose: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(deploy.join("compose.yml"))?)?;
    for service in ["jaeger", "prometheus", "grafana"] {
        check(compose["services"][service].is_mapping(), || {
            format!("compose.yml has no {service}")
        })?;
    }
    Ok(())
}

fn check_conventions(scrapes: &[BTreeMap<String, Family>]) -> Result<(), Failed> {
    let last = scrapes.last().ok_or("no scrape")?;
    let expected = [
        ("stream_kernel_build_info", "gauge"),
        ("stream_kernel_worker_state", "gauge"),
        ("stream_kernel_worker_records_in", "counter"),
        ("stream_kernel_worker_records_out", "counter"),
        ("stream_kernel_worker_busy_ratio", "gauge"),
        ("stream_kernel_worker_process_cpu_seconds", "counter"),
        (
            "stream_kernel_worker_process_resident_memory_bytes",
            "gauge",
        ),
        ("stream_kernel_worker_restarts", "counter"),
        ("stream_kernel_worker_failures", "counter"),
        ("stream_kernel_ring_occupancy_bytes", "gauge"),
        ("stream_kernel_ring_capacity_bytes", "gauge"),
        ("stream_kernel_ring_records", "counter"),
        ("stream_kernel_node_records_in", "counter"),
        ("stream_kernel_node_records_out", "counter"),
        ("stream_kernel_node_errors", "counter"),
        ("stream_kernel_node_outcomes", "counter"),
        ("stream_kernel_node_events", "counter"),
        ("stream_kernel_control_rejected_frames", "counter"),
        ("stream_kernel_route_cache_lookups", "counter"),
        ("stream_kernel_route_cache_entries", "gauge"),
        ("process_cpu_seconds", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ];
    for (name, kind) in expected {
        let family = last.get(name).ok_or_else(|| format!("{name} missing"))?;
        check(family.kind == kind, || {
            format!("{name} is a {}, not a {kind}", family.kind)
        })?;
        if kind == "counter" {
            for (sample, _) in family.samples.keys() {
                check(
                    sample.ends_with("_total") || sample.ends_with("_created"),
                    || format!("counter sample {sample} does not end in _total"),
                )?;
            }
        }
    }
    for families in scrapes {
        for (name, family) in families {
            check(!name.contains("per_mille"), || {
                format!("{name}: not a base unit")
            })?;
            if name.ends_with("_ratio") {
                for value in family.samples.values() {
                    check((0.0..=1.0).contains(value), || {
                        format!("{name} = {value}, not a ratio")
                    })?;
                }
            }
        }
    }
    // Records per node and per outcome: every record the sink took in has an outcome.
    type LabelFilter<'a> = &'a dyn Fn(&[(String, String)]) -> bool;
    let sum = |family: &str, filter: LabelFilter<'_>| -> f64 {
        last.get(family)
            .map(|f| {
                f.samples
                    .iter()
                    .filter(|((_, labels), _)| filter(labels))
                    .map(|(_, v)| *v)
                    .sum()
            })
            .unwrap_or(0.0)
    };
    let is_sink =
        |labels: &[(String, String)]| labels.iter().any(|(k, v)| k == "node" && v == "sink");
    let sink_in = sum("stream_kernel_node_records_in", &is_sink);
    let outcomes = sum("stream_kernel_node_outcomes", &is_sink);
    check(sink_in > 0.0 && outcomes == sink_in, || {
        format!("sink took in {sink_in} records, outcomes count {outcomes}")
    })?;
    let workers = &last["stream_kernel_worker_process_resident_memory_bytes"];
    check(workers.samples.len() == 4, || {
        format!(
            "resident memory of {} workers, not 4",
            workers.samples.len()
        )
    })?;
    check(workers.samples.values().all(|v| *v > 1e6), || {
        format!("worker resident memory not in bytes: {:?}", workers.samples)
    })?;
    counters_only_grow(scrapes)
}

/// Records measured so far by the end-to-end latency histogram in one parsed scrape.
fn latency_count(families: &BTreeMap<String, Family>) -> f64 {
    families
        .get("stream_kernel_record_latency_seconds")
        .and_then(|f| {
            f.samples
                .iter()
                .find(|((name, _), _)| name.ends_with("_count"))
                .map(|(_, v)| *v)
        })
        .unwrap_or(0.0)
}

/// `stream_kernel_record_latency_seconds` is a histogram whose buckets are cumulative, whose
/// `+Inf` bucket equals its count, and whose count only grows.
fn check_latency_histogram(scrapes: &[BTreeMap<String, Family>]) -> Result<(), Failed> {
    let mut before = 0.0;
    for families in scrapes {
        let family = families
            .get("stream_kernel_record_latency_seconds")
            .ok_or("stream_kernel_record_latency_seconds missing")?;
        check(family.kind == "histogram", || {
            format!("the latency family is a {}, not a histogram", family.kind)
        })?;
        let mut buckets: Vec<(f64, f64)> = family
            .samples
            .iter()
            .filter(|((name, _), _)| name.ends_with("_bucket"))
            .filter_map(|((_, labels), v)| {
                let le = labels.iter().find(|(k, _)| k == "le")?.1.as_str();
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((bound, *v))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        check(buckets.windows(2).all(|w| w[0].1 <= w[1].1), || {
            format!("latency buckets are not cumulative: {buckets:?}")
        })?;
        let count = latency_count(families);
        check(
            buckets
                .last()
                .is_some_and(|(b, v)| b.is_infinite() && *v == count),
            || format!("the +Inf bucket is not the count {count}: {buckets:?}"),
        )?;
        check(count >= before, || {
            format!("latency count went down: {before} -> {count}")
        })?;
        before = count;
    }
    // The exact count (every stamped record once) is checked on a whole run in tests/report.rs.
    check(before >= 1.0, || {
        format!("{before} latency samples at the end of the scrapes")
    })
}

/// Every counter series keeps or raises its value from one scrape to the next.
fn counters_only_grow(scrapes: &[BTreeMap<String, Family>]) -> Result<(), Failed> {
    for pair in scrapes.windows(2) {
        for (name, family) in pair[0].iter().filter(|(_, f)| f.kind == "counter") {
            let Some(next) = pair[1].get(name) else {
                continue;
            };
            for (series, before) in &family.samples {
                if let Some(after) = next.samples.get(series) {
                    check(after >= before, || {
                        format!("counter {series:?} went down: {before} -> {after}")
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// Validates JSON documents (one per line on stdin) against the schema in argv[1] with the
/// reference `jsonschema` implementation; prints one line per document: `ok` or the errors.
const SCHEMA_CHECK: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema)
for line in sys.stdin:
    errors = [e.message for e in validator.iter_errors(json.loads(line))]
    print("ok" if not errors else "; ".join(errors)[:300])
"#;

/// `stream-kernel schema` prints a JSON Schema that the reference validator accepts; every
/// bundled config (and the deploy config) validates against it, and wrong ones do not.
fn schema_accepts_every_bundled_config_and_rejects_wrong_ones() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let schema = cli().arg("schema").output()?;
    check(schema.status.success(), || "schema failed".into())?;
    let schema_path = dir.path().join("schema.json");
    std::fs::write(&schema_path, &schema.stdout)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut documents: Vec<(String, serde_json::Value, bool)> = Vec::new();
    let mut configs: Vec<_> = std::fs::read_dir(root.join("configs"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    configs.push(root.join("deploy/stream-kernel.yml"));
    check(configs.len() >= 10, || format!("{} configs", configs.len()))?;
    for path in &configs {
        let value: serde_json::Value = serde_norway::from_str(&std::fs::read_to_string(path)?)?;
        documents.push((path.display().to_string(), value, true));
    }
    let base: serde_json::Value = serde_norway::from_str(&std::fs::read_to_string(
        root.join("configs/fund_load_experiment_4proc.yml"),
    )?)?;
    let wrong = |patch: &dyn Fn(&mut serde_json::Value)| {
        let mut value = base.clone();
        patch(&mut value);
        value
    };
    documents.push((
        "unknown key".into(),
        wrong(&|v| v["runtime"]["platform"]["bootstrap"]["modee"] = "inline".into()),
        false,
    ));
    documents.push((
        "unknown choice".into(),
        wrong(&|v| v["runtime"]["platform"]["bootstrap"]["mode"] = "threads".into()),
        false,
    ));
    documents.push((
        "wrong type".into(),
        wrong(&|v| v["runtime"]["platform"]["execution_ipc"]["ring_bytes"] = "big".into()),
        false,
    ));
    documents.push((
        "no version".into(),
        wrong(&|v| {
            v.as_object_mut().map(|m| m.remove("version"));
        }),
        false,
    ));
    let mut input = String::new();
    for (_, value, _) in &documents {
        input.push_str(&serde_json::to_string(value)?);
        input.push('\n');
    }
    let out = run_python(
        SCHEMA_CHECK,
        &[&schema_path],
        &input,
        "the validator rejects the schema",
    )?;
    let verdicts: Vec<String> = String::from_utf8(out)?
        .lines()
        .map(str::to_string)
        .collect();
    check(verdicts.len() == documents.len(), || {
        format!("{verdicts:?}")
    })?;
    for ((name, _, valid), verdict) in documents.iter().zip(&verdicts) {
        check((verdict == "ok") == *valid, || {
            format!(
                "{name}: expected {}, got {verdict}",
                if *valid { "valid" } else { "invalid" }
            )
        })?;
    }
    Ok(())
}

/// Every Kubernetes object under `deploy/k8s`, by kind and name.
fn k8s_objects() -> Result<BTreeMap<(String, String), serde_norway::Value>, Failed> {
    use serde::Deserialize;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s");
    let mut objects = BTreeMap::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        for document in serde_norway::Deserializer::from_str(&text) {
            let value = serde_norway::Value::deserialize(document)?;
            let kind = value["kind"].as_str().unwrap_or_default().to_string();
            let name = value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            objects.insert((kind, name), value);
        }
    }
    Ok(objects)
}

fn str_list(value: &serde_norway::Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .map(|v| match v {
                    serde_norway::Value::Number(n) => n.to_string(),
                    other => other.as_str().unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The value after `flag` in `args`.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// The Kubernetes example agrees with the binary (issue: across hosts): one Job per host the
/// ConfigMap's config places groups on, each running `run --host` with flags the CLI has and
/// the config at the path the ConfigMap is mounted on; probes on `/livez` and `/readyz` at the
/// port the config's health endpoint binds (exposed); a grace period that covers the host's
/// groups' stop timeouts; the Job fails at once only on exit statuses `--help` documents as
/// config or usage errors; NATS credentials as files from the Secret, nowhere in args or env.
fn k8s_manifests_agree_with_the_binary() -> Result<(), Failed> {
    let objects = k8s_objects()?;
    let config_map = objects
        .get(&("ConfigMap".into(), "stream-kernel-config".into()))
        .ok_or("no ConfigMap stream-kernel-config")?;
    let text = config_map["data"]["stream-kernel.yml"]
        .as_str()
        .ok_or("the ConfigMap holds no stream-kernel.yml")?;
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("stream-kernel.yml");
    std::fs::write(&config_path, text)?;
    let valid = cli().arg("validate").arg("-c").arg(&config_path).output()?;
    check(valid.status.success(), || {
        format!(
            "the ConfigMap's config: {}",
            String::from_utf8_lossy(&valid.stderr)
        )
    })?;
    let config = stream_kernel::config::load_file(&config_path, &cli_runs::registry())
        .map_err(|r| r.to_string())?
        .config;
    let platform = &config.runtime.platform;
    check(platform.health.expose, || {
        "probes come from beyond loopback: health.expose must be true".into()
    })?;
    let health_port = platform
        .health
        .bind
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .parse::<u64>()?;
    let cross_host = platform.cross_host.as_ref().ok_or("no cross_host block")?;
    let token = cross_host
        .credentials
        .token_file
        .as_ref()
        .ok_or("the config names no token file")?;
    let nats_host = cross_host
        .url
        .as_deref()
        .and_then(|u| u.strip_prefix("nats://"))
        .and_then(|u| u.split(':').next())
        .ok_or("cross_host.url is not nats://HOST:PORT")?;
    check(
        objects.contains_key(&("Service".into(), nats_host.to_string())),
        || format!("no Service {nats_host} for cross_host.url"),
    )?;
    let run_help = String::from_utf8(cli().args(["run", "--help"]).output()?.stdout)?;
    let top_help = String::from_utf8(cli().arg("--help").output()?.stdout)?;
    let mut hosts: Vec<&str> = platform
        .process_groups
        .iter()
        .filter_map(|g| g.host.as_deref())
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    check(hosts.len() >= 2, || format!("hosts {hosts:?}"))?;
    for host in hosts {
        let job = objects
            .get(&("Job".into(), format!("stream-kernel-{host}")))
            .ok_or_else(|| format!("no Job stream-kernel-{host}"))?;
        let pod = &job["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let name = container["name"].as_str().unwrap_or_default();
        let args = str_list(&container["args"]);
        check(args.first().map(String::as_str) == Some("run"), || {
            format!("{host}: args {args:?}")
        })?;
        for flag in args.iter().filter(|a| a.starts_with('-')) {
            check(run_help.contains(flag.as_str()), || {
                format!("{host}: `run` has no flag {flag}")
            })?;
        }
        check(flag_value(&args, "--host") == Some(host), || {
            format!("{host}: --host in {args:?}")
        })?;
        // Volumes by mount path: the config and the credentials come from the ConfigMap
        // and the Secret.
        let volume_of = |path: &Path| -> Option<serde_norway::Value> {
            let mount = container["volumeMounts"]
                .as_sequence()?
                .iter()
                .find(|m| m["mountPath"].as_str().is_some_and(|p| path.starts_with(p)))?;
            pod["volumes"]
                .as_sequence()?
                .iter()
                .find(|v| v["name"] == mount["name"])
                .cloned()
        };
        let config_arg = Path::new(flag_value(&args, "-c").ok_or("no -c")?);
        let config_volume = volume_of(config_arg).ok_or("the config is not mounted")?;
        check(
            config_volume["configMap"]["name"].as_str() == Some("stream-kernel-config")
                && config_arg.file_name() == Some(std::ffi::OsStr::new("stream-kernel.yml")),
            || format!("{host}: -c {config_arg:?} is not the ConfigMap's file"),
        )?;
        let secret = volume_of(token).ok_or("the token file is not mounted")?;
        let secret_name = secret["secret"]["secretName"].as_str().unwrap_or_default();
        check(
            objects.contains_key(&("Secret".into(), secret_name.to_string())),
            || format!("{host}: the token's volume is not a Secret: {secret:?}"),
        )?;
        let spec_text = serde_norway::to_string(container)?;
        check(!spec_text.contains("change-me"), || {
            format!("{host}: a credential in the container spec")
        })?;
        for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
            let get = &container[probe]["httpGet"];
            check(get["path"].as_str() == Some(path), || {
                format!("{host}: {probe} path")
            })?;
            let port = match &get["port"] {
                serde_norway::Value::Number(n) => n.as_u64(),
                named => container["ports"].as_sequence().and_then(|ports| {
                    ports
                        .iter()
                        .find(|p| p["name"] == *named)
                        .and_then(|p| p["containerPort"].as_u64())
                }),
            };
            check(port == Some(health_port), || {
                format!("{host}: {probe} port {port:?}, health binds {health_port}")
            })?;
        }
        let stop = platform
            .process_groups
            .iter()
            .filter(|g| g.host.as_deref() == Some(host))
            .map(|g| g.stop_timeout_seconds)
            .fold(0.0, f64::max);
        let grace = pod["terminationGracePeriodSeconds"]
            .as_f64()
            .ok_or("no terminationGracePeriodSeconds")?;
        check(grace >= stop + 10.0, || {
            format!("{host}: grace {grace} s does not cover stop_timeout_seconds {stop} + 10 s")
        })?;
        let rules = job["spec"]["podFailurePolicy"]["rules"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        for rule in rules.iter().filter(|r| r["action"] == "FailJob") {
            check(
                rule["onExitCodes"]["containerName"].as_str() == Some(name),
                || format!("{host}: a failure rule for another container"),
            )?;
            for status in str_list(&rule["onExitCodes"]["values"]) {
                check(top_help.contains(&format!("  {status} ")), || {
                    format!("{host}: exit status {status} is not documented by --help")
                })?;
                check(!["1", "3"].contains(&status.as_str()), || {
                    format!("{host}: exit {status} means rerun, yet fails the Job")
                })?;
            }
        }
    }
    Ok(())
}

fn main() {
    needs::run(vec![
        trial(
            "metrics_scraped_during_a_run_follow_prometheus_conventions",
            &[
                Need::Python {
                    module: "prometheus_client.openmetrics.parser",
                    package: "prometheus_client",
                },
                Need::tool("promtool", "Debian package prometheus"),
            ],
            metrics_scraped_during_a_run_follow_prometheus_conventions,
        ),
        trial(
            "final_figures_are_pushed_to_a_pushgateway",
            &[Need::tool(
                "prometheus-pushgateway",
                "Debian package prometheus-pushgateway",
            )],
            final_figures_are_pushed_to_a_pushgateway,
        ),
        trial(
            "deploy_files_agree_with_the_binary",
            &[],
            deploy_files_agree_with_the_binary,
        ),
        trial(
            "schema_accepts_every_bundled_config_and_rejects_wrong_ones",
            &[Need::Python {
                module: "jsonschema",
                package: "jsonschema",
            }],
            schema_accepts_every_bundled_config_and_rejects_wrong_ones,
        ),
        trial(
            "k8s_manifests_agree_with_the_binary",
            &[],
            k8s_manifests_agree_with_the_binary,
        ),
    ])
}
