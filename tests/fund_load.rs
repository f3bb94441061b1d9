//! Fund-load rules (docs/fund-load.md): every check at its boundary, every bad-input reason, the
//! public sample's known results, and the generator's determinism and coverage. Decisions are
//! read back from the audit sink, which records each line's reason code.

#[path = "support/needs.rs"]
mod needs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use needs::{Need, SAMPLE, panicking};
use stream_kernel::apps::fund_load;
use stream_kernel::config::{self, Config, FileAdapter, SinkAdapter, SourceAdapter};
use stream_kernel::runtime::{RunOptions, RunSummary, run_inline};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    Baseline,
    Experiment,
}

fn config_for(profile: Profile, dir: &Path, input: &Path) -> Config {
    let file = match profile {
        Profile::Baseline => "fund_load_baseline_inline.yml",
        Profile::Experiment => "fund_load_experiment_inline.yml",
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("configs")
        .join(file);
    let mut config = config::load_file(&path, &fund_load::registry())
        .unwrap_or_else(|r| panic!("{r}"))
        .config;
    config.adapters.source = SourceAdapter::file(input);
    config.adapters.sink = SinkAdapter::File {
        path: dir.join("output.txt"),
    };
    config.adapters.dead_letter = Some(FileAdapter::File {
        path: dir.join("rejects.jsonl"),
    });
    config.adapters.audit = Some(FileAdapter::File {
        path: dir.join("audit.jsonl"),
    });
    config
}

/// One decision from the audit sink.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decision {
    line: u64,
    id: String,
    accepted: bool,
    reason: String,
    effective: String,
}

struct Outcome {
    decisions: Vec<Decision>,
    output: String,
    dead_letters: Vec<serde_json::Value>,
    summary: RunSummary,
}

impl Outcome {
    fn reason_of(&self, line: u64) -> &str {
        self.decisions
            .iter()
            .find(|d| d.line == line)
            .map(|d| d.reason.as_str())
            .unwrap_or_else(|| panic!("no decision for line {line}: {:?}", self.decisions))
    }
}

fn run_lines(profile: Profile, lines: &[String]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.txt");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    run_file(profile, &input, dir.path())
}

fn run_file(profile: Profile, input: &Path, dir: &Path) -> Outcome {
    let config = config_for(profile, dir, input);
    let summary = run_inline(&config, &fund_load::registry(), &RunOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    let decisions = audit
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Decision {
                line: v["line"].as_u64().unwrap(),
                id: v["id"].as_str().unwrap().to_string(),
                accepted: v["accepted"].as_bool().unwrap(),
                reason: v["reason"].as_str().unwrap().to_string(),
                effective: v["effective_amount"].as_str().unwrap().to_string(),
            }
        })
        .collect();
    let dead_letters = std::fs::read_to_string(dir.join("rejects.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Outcome {
        decisions,
        output: std::fs::read_to_string(dir.join("output.txt")).unwrap(),
        dead_letters,
        summary,
    }
}

fn load(id: u64, customer: &str, amount: &str, time: &str) -> String {
    format!(
        r#"{{"id":"{id}","customer_id":"{customer}","load_amount":"{amount}","time":"{time}"}}"#
    )
}

// Calendar anchors: 2000-01-01 Saturday, 2000-01-02 Sunday, 2000-01-03 Monday.

fn daily_amount_accepts_exactly_5000_and_declines_5000_01() {
    let out = run_lines(
        Profile::Baseline,
        &[
            load(1, "1", "$5000.00", "2000-01-01T00:00:00Z"),
            load(2, "2", "$5000.01", "2000-01-01T00:00:00Z"),
            load(3, "3", "$2500.00", "2000-01-01T01:00:00Z"),
            load(4, "3", "$2500.00", "2000-01-01T02:00:00Z"),
            load(5, "3", "$0.01", "2000-01-01T03:00:00Z"),
            load(6, "3", "$0.01", "2000-01-02T00:00:00Z"),
        ],
    );
    assert_eq!(out.reason_of(1), "ACCEPTED");
    assert_eq!(out.reason_of(2), "DAILY_AMOUNT_LIMIT");
    assert_eq!(out.reason_of(3), "ACCEPTED");
    assert_eq!(out.reason_of(4), "ACCEPTED");
    assert_eq!(out.reason_of(5), "DAILY_AMOUNT_LIMIT");
    assert_eq!(
        out.reason_of(6),
        "ACCEPTED",
        "a new UTC day resets the daily sum"
    );
}

fn third_attempt_is_accepted_fourth_is_declined_and_declines_count_as_attempts() {
    let out = run_lines(
        Profile::Baseline,
        &[
            load(1, "7", "$6000.00", "2000-01-01T00:00:00Z"), // declined: amount, still an attempt
            load(2, "7", "$10.00", "2000-01-01T01:00:00Z"),
            load(3, "7", "$10.00", "2000-01-01T02:00:00Z"), // third attempt
            load(4, "7", "$10.00", "2000-01-01T23:59:59Z"), // fourth attempt
            load(5, "7", "$10.00", "2000-01-02T00:00:00Z"), // next day
        ],
    );
    assert_eq!(out.reason_of(1), "DAILY_AMOUNT_LIMIT");
    assert_eq!(out.reason_of(2), "ACCEPTED");
    assert_eq!(out.reason_of(3), "ACCEPTED");
    assert_eq!(out.reason_of(4), "DAILY_ATTEMPT_LIMIT");
    assert_eq!(out.reason_of(5), "ACCEPTED");
}

fn weekly_limit_accepts_exactly_20000_and_declines_one_cent_more() {
    // Monday 2000-01-03 .. Thursday 2000-01-06, one customer, 5000 a day.
    let mut lines: Vec<String> = (0..4)
        .map(|d| {
            load(
                10 + d,
                "9",
                "$5000.00",
                &format!("2000-01-0{}T12:00:00Z", 3 + d),
            )
        })
        .collect();
    lines.push(load(20, "9", "$0.01", "2000-01-09T23:59:59Z")); // Sunday, same week
    lines.push(load(21, "9", "$0.01", "2000-01-10T00:00:00Z")); // Monday, next week
    let out = run_lines(Profile::Baseline, &lines);
    for line in 1..=4 {
        assert_eq!(out.reason_of(line), "ACCEPTED");
    }
    assert_eq!(out.reason_of(5), "WEEKLY_AMOUNT_LIMIT");
    assert_eq!(
        out.reason_of(6),
        "ACCEPTED",
        "weeks start on Monday 00:00 UTC"
    );
}

fn monday_multiplier_applies_from_monday_00_00_00_utc() {
    let lines = [
        load(1, "5", "$3000.00", "2000-01-02T23:59:59Z"), // Sunday
        load(2, "6", "$3000.00", "2000-01-03T00:00:00Z"), // Monday: effective 6000
        load(3, "8", "$2500.00", "2000-01-03T00:00:00Z"), // Monday: effective exactly 5000
        load(4, "4", "$2500.00", "2000-01-03T01:00:00+02:00"), // Sunday 23:00 UTC
    ];
    let experiment = run_lines(Profile::Experiment, &lines);
    assert_eq!(experiment.reason_of(1), "ACCEPTED");
    assert_eq!(experiment.decisions[0].effective, "3000.00");
    assert_eq!(experiment.reason_of(2), "DAILY_AMOUNT_LIMIT");
    assert_eq!(experiment.decisions[1].effective, "6000.00");
    assert_eq!(experiment.reason_of(3), "ACCEPTED");
    assert_eq!(experiment.decisions[2].effective, "5000.00");
    assert_eq!(
        experiment.decisions[3].effective, "2500.00",
        "an offset time is judged in UTC"
    );
    let baseline = run_lines(Profile::Baseline, &lines);
    assert!(baseline.decisions.iter().all(|d| d.accepted));
}

fn prime_amount_cap_boundary_and_second_prime_of_a_day() {
    // 101, 103, 107 and 109 are prime; 100 and 102 are not. 2000-01-01 is a Saturday.
    let lines = [
        load(101, "1", "$9999.01", "2000-01-01T00:00:00Z"), // over the cap
        load(103, "2", "$9999.00", "2000-01-01T00:00:01Z"), // at the cap, then daily limit
        load(107, "3", "$100.00", "2000-01-01T00:00:02Z"),  // first accepted prime today
        load(109, "4", "$100.00", "2000-01-01T00:00:03Z"),  // second prime today, other customer
        load(100, "4", "$100.00", "2000-01-01T00:00:04Z"),  // not prime
        load(113, "4", "$100.00", "2000-01-02T00:00:00Z"),  // next day
    ];
    let out = run_lines(Profile::Experiment, &lines);
    assert_eq!(out.reason_of(1), "PRIME_AMOUNT_CAP");
    assert_eq!(out.reason_of(2), "DAILY_AMOUNT_LIMIT");
    assert_eq!(
        out.reason_of(3),
        "ACCEPTED",
        "declined primes do not use the daily slot"
    );
    assert_eq!(out.reason_of(4), "PRIME_DAILY_GLOBAL_LIMIT");
    assert_eq!(out.reason_of(5), "ACCEPTED");
    assert_eq!(out.reason_of(6), "ACCEPTED");
    let baseline = run_lines(Profile::Baseline, &lines);
    assert_eq!(baseline.reason_of(1), "DAILY_AMOUNT_LIMIT");
    assert_eq!(baseline.reason_of(4), "ACCEPTED");
}

fn repeated_ids_are_replays_or_conflicts_and_touch_no_window() {
    let lines = [
        load(42, "1", "$100.00", "2000-01-01T00:00:00Z"),
        load(42, "1", "$100.00", "2000-01-01T00:00:00Z"), // replay
        load(42, "1", "$100.00", "2000-01-01T02:00:00+02:00"), // same instant: replay
        load(42, "1", "$100.01", "2000-01-01T00:00:00Z"), // conflict: amount
        load(42, "2", "$100.00", "2000-01-01T00:00:00Z"), // conflict: customer
        load(43, "1", "$100.00", "2000-01-01T05:00:00Z"),
        load(44, "1", "$100.00", "2000-01-01T06:00:00Z"), // third canonical attempt: accepted
    ];
    let out = run_lines(Profile::Baseline, &lines);
    assert_eq!(out.reason_of(1), "ACCEPTED");
    assert_eq!(out.reason_of(2), "ID_DUPLICATE_REPLAY");
    assert_eq!(out.reason_of(3), "ID_DUPLICATE_REPLAY");
    assert_eq!(out.reason_of(4), "ID_DUPLICATE_CONFLICT");
    assert_eq!(out.reason_of(5), "ID_DUPLICATE_CONFLICT");
    assert_eq!(out.reason_of(7), "ACCEPTED", "duplicates are not attempts");
}

fn every_bad_input_reason_declines_and_changes_no_window() {
    let lines: Vec<String> = vec![
        r#"{"id":"1","customer_id":"1","load_amount":"$10.00"}"#.into(), // no time
        r#"{"id":"2x","customer_id":"1","load_amount":"$10.00","time":"2000-01-01T00:00:00Z"}"#
            .into(),
        r#"{"id":"3","customer_id":"1","load_amount":"$10.001","time":"2000-01-01T00:00:00Z"}"#
            .into(),
        r#"{"id":"4","customer_id":"1","load_amount":"$10.00","time":"2000-02-30T00:00:00Z"}"#
            .into(),
        "not json at all".into(),
        r#"{"id":5,"customer_id":"1","load_amount":"$10.00","time":"2000-01-01T00:00:00Z"}"#.into(),
        "   ".into(),
        r#"{"id":"6","customer_id":"1","load_amount":"$10.00","time":"2000-01-01T00:00:00Z"}"#
            .into(),
        r#"{"id":"7","customer_id":"1","load_amount":"$10.00","time":"2000-01-01T00:00:00Z"}"#
            .into(),
        r#"{"id":"8","customer_id":"1","load_amount":"$10.00","time":"2000-01-01T00:00:00Z"}"#
            .into(),
        r#"{"id":"9","customer_id":"1","load_amount":"$10.00","time":"2000-01-01T00:00:00Z"}"#
            .into(),
    ];
    let out = run_lines(Profile::Baseline, &lines);
    assert_eq!(out.reason_of(1), "INPUT_PARSE_ERROR");
    assert_eq!(out.reason_of(2), "INVALID_ID_FORMAT");
    assert_eq!(out.reason_of(3), "INVALID_AMOUNT_FORMAT");
    assert_eq!(out.reason_of(4), "INVALID_TIMESTAMP");
    // Unreadable lines (no JSON, non-string id) go only to the dead-letter file.
    let dead: Vec<u64> = out
        .dead_letters
        .iter()
        .map(|d| d["line"].as_u64().unwrap())
        .collect();
    assert_eq!(dead, [5, 6]);
    assert!(
        out.dead_letters
            .iter()
            .all(|d| d["reason"] == "INPUT_PARSE_ERROR")
    );
    assert!(
        out.decisions
            .iter()
            .all(|d| d.line != 5 && d.line != 6 && d.line != 7)
    );
    assert_eq!(
        out.summary.counter("parse_load_attempt", "blank_lines"),
        Some(1)
    );
    // Bad lines made no attempts: lines 8, 9, 10 are the first three of the day.
    assert_eq!(out.reason_of(8), "ACCEPTED");
    assert_eq!(out.reason_of(9), "ACCEPTED");
    assert_eq!(out.reason_of(10), "ACCEPTED");
    assert_eq!(out.reason_of(11), "DAILY_ATTEMPT_LIMIT");
    // Readable ids still get their output line, in input order.
    let output: Vec<&str> = out.output.lines().collect();
    assert_eq!(output.len(), 8);
    assert_eq!(
        output[1],
        r#"{"id":"2x","customer_id":"1","accepted":false}"#
    );
}

fn output_lines_are_exact_compact_json_in_input_order() {
    let out = run_lines(
        Profile::Baseline,
        &[
            load(15887, "0528", "USD$3318.47", "2000-01-01T00:00:00Z"),
            load(30081, "154", " $ 1413.18 ", "2000-01-01T01:01:22Z"),
        ],
    );
    assert_eq!(
        out.output,
        "{\"id\":\"15887\",\"customer_id\":\"0528\",\"accepted\":true}\n{\"id\":\"30081\",\"customer_id\":\"154\",\"accepted\":true}\n"
    );
}

/// The inline run measures the end-to-end latency of every record whose `seq` is a multiple
/// of 64 (blank, unreadable and declined lines included), once each.
fn inline_run_measures_one_record_in_64() {
    let mut lines: Vec<String> = (1..=200u64)
        .map(|i| load(i, "1", "$1.00", "2000-01-03T00:00:00Z"))
        .collect();
    lines[63] = String::new(); // seq 64: a blank line
    lines[127] = "not json".to_string(); // seq 128: dead-lettered
    let out = run_lines(Profile::Baseline, &lines);
    let latency = out.summary.latency;
    assert_eq!(latency.count(), 3, "{latency:?}");
    assert!(latency.mean().is_some());
}

fn accepted_lines(output: &str) -> usize {
    output
        .lines()
        .filter(|l| l.ends_with("\"accepted\":true}"))
        .count()
}

/// The public sample's well-known results: 753 accepted (baseline), 658 (experiment).
fn public_sample_gives_753_baseline_and_658_experiment() {
    for (profile, expected) in [(Profile::Baseline, 753), (Profile::Experiment, 658)] {
        let dir = tempfile::tempdir().unwrap();
        let out = run_file(profile, Path::new(SAMPLE), dir.path());
        assert_eq!(out.output.lines().count(), 1000, "{profile:?}");
        assert_eq!(accepted_lines(&out.output), expected, "{profile:?}");
        assert_eq!(
            out.summary.outcome_records("accepted"),
            Some(expected as u64)
        );
    }
}

/// `gen` is deterministic: same seed, same bytes; another seed, other bytes.
fn generator_is_deterministic() {
    let generate = |seed| {
        let mut out = Vec::new();
        fund_load::generator::write_lines(20_000, seed, &mut out).unwrap();
        out
    };
    assert_eq!(generate(1), generate(1));
    assert_ne!(generate(1), generate(2));
}

/// 100k generated lines exercise every rule: each reason code occurs, and some lines are
/// blank or dead-lettered.
fn generated_input_exercises_every_reason_code() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("gen.txt");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    fund_load::generator::write_lines(100_000, 1, &mut file).unwrap();
    drop(file);
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut dead_lettered = 0;
    let mut blank = 0;
    for profile in [Profile::Baseline, Profile::Experiment] {
        let run_dir = dir.path().join(format!("{profile:?}"));
        std::fs::create_dir(&run_dir).unwrap();
        let out = run_file(profile, &input, &run_dir);
        for decision in &out.decisions {
            *counts.entry(decision.reason.clone()).or_default() += 1;
        }
        dead_lettered += out.dead_letters.len();
        blank += out
            .summary
            .counter("parse_load_attempt", "blank_lines")
            .unwrap_or(0);
        let declines = out.summary.outcome_records("declined").unwrap();
        let accepted = out.summary.outcome_records("accepted").unwrap();
        // Every line is accounted for: an output line, a dead letter, or a skipped blank.
        assert_eq!(
            accepted
                + declines
                + out.dead_letters.len() as u64
                + out
                    .summary
                    .counter("parse_load_attempt", "blank_lines")
                    .unwrap(),
            100_000
        );
    }
    for reason in [
        "ACCEPTED",
        "INPUT_PARSE_ERROR",
        "INVALID_ID_FORMAT",
        "INVALID_AMOUNT_FORMAT",
        "INVALID_TIMESTAMP",
        "ID_DUPLICATE_REPLAY",
        "ID_DUPLICATE_CONFLICT",
        "DAILY_ATTEMPT_LIMIT",
        "PRIME_AMOUNT_CAP",
        "PRIME_DAILY_GLOBAL_LIMIT",
        "DAILY_AMOUNT_LIMIT",
        "WEEKLY_AMOUNT_LIMIT",
    ] {
        assert!(
            counts.get(reason).copied().unwrap_or(0) > 0,
            "{reason} never occurred: {counts:?}"
        );
    }
    assert!(dead_lettered > 0 && blank > 0);
}

/// R9 (CI slice): random and mutated NDJSON lines (bit flips, cut lines, random bytes,
/// invalid UTF-8, nested and huge values, blank lines) never panic and every line is
/// accounted for exactly once: a decision (with a reason), a dead letter (with a reason), or
/// a counted blank line. The 4-group profile writes the same bytes. `STREAM_KERNEL_R9_LINES`
/// raises the count (`tools/reliability.sh`).
fn r9_mutated_input_lines_are_each_accounted_once() {
    let count: usize = std::env::var("STREAM_KERNEL_R9_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut generator = stream_kernel::apps::fund_load::generator::Generator::new(count as u64, 7);
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below.max(1)
    };
    let mut input = Vec::new();
    let mut line = Vec::new();
    let mut blank = 0u64;
    while generator.next_line(&mut line) {
        match next(10) {
            0 if !line.is_empty() => {
                let at = next(line.len() as u64) as usize;
                line[at] ^= 1 << next(8);
            }
            1 => line.truncate(next(line.len() as u64) as usize),
            2 => {
                line = (0..next(120))
                    .map(|_| next(256) as u8)
                    .filter(|b| *b != b'\n')
                    .collect();
            }
            3 => line.extend_from_slice(b"\xff\xfe"),
            4 => {
                line = format!(
                    "{{\"id\":\"1\",\"x\":{}1{}}}",
                    "[".repeat(next(300) as usize),
                    "]".repeat(next(300) as usize)
                )
                .into_bytes();
            }
            5 => {
                line = format!("{{\"id\":\"{}\",\"customer_id\":\"1\",\"load_amount\":\"$1\",\"time\":\"2000-01-01T00:00:00Z\"}}", "9".repeat(next(5000) as usize)).into_bytes();
            }
            6 if next(4) == 0 => line = b"   ".to_vec(),
            _ => {}
        }
        // Blank means JSON whitespace only (a form feed is not).
        if line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
            blank += 1;
        }
        input.extend_from_slice(&line);
        input.push(b'\n');
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.txt");
    std::fs::write(&path, &input).unwrap();
    let out = run_file(Profile::Experiment, &path, dir.path());
    let mut seen = vec![0u8; count + 1];
    for decision in &out.decisions {
        seen[decision.line as usize] += 1;
        assert!(!decision.reason.is_empty());
    }
    for letter in &out.dead_letters {
        let line = letter["line"].as_u64().unwrap() as usize;
        seen[line] += 1;
        assert!(
            letter["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{letter}"
        );
    }
    let counted_blank = out
        .summary
        .counter("parse_load_attempt", "blank_lines")
        .unwrap_or(0);
    assert_eq!(counted_blank, blank);
    let twice = seen.iter().filter(|n| **n > 1).count();
    let never = seen[1..].iter().filter(|n| **n == 0).count() as u64;
    assert_eq!(twice, 0, "lines accounted twice");
    assert_eq!(
        never, blank,
        "lines accounted nowhere besides the blank ones"
    );
    // The 4-group profile on the same bytes writes the same output and dead letters.
    let four = dir.path().join("four");
    std::fs::create_dir(&four).unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_stream-kernel"))
        .args(["run", "-c"])
        .arg(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("configs/fund_load_experiment_4proc.yml"),
        )
        .arg("--input")
        .arg(&path)
        .arg("--output")
        .arg(four.join("output.txt"))
        .current_dir(&four)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(four.join("output.txt")).unwrap(),
        out.output
    );
    let inline_rejects = std::fs::read(dir.path().join("rejects.jsonl")).unwrap();
    assert_eq!(
        std::fs::read(four.join("rejects.jsonl")).unwrap(),
        inline_rejects
    );
    println!(
        "R9: {count} mutated input lines: {} decisions, {} dead letters, {blank} blank, each line accounted once, 0 panics; the 4-group profile wrote the same bytes",
        out.decisions.len(),
        out.dead_letters.len()
    );
}

fn main() {
    needs::run(vec![
        panicking(
            "daily_amount_accepts_exactly_5000_and_declines_5000_01",
            &[],
            daily_amount_accepts_exactly_5000_and_declines_5000_01,
        ),
        panicking(
            "third_attempt_is_accepted_fourth_is_declined_and_declines_count_as_attempts",
            &[],
            third_attempt_is_accepted_fourth_is_declined_and_declines_count_as_attempts,
        ),
        panicking(
            "weekly_limit_accepts_exactly_20000_and_declines_one_cent_more",
            &[],
            weekly_limit_accepts_exactly_20000_and_declines_one_cent_more,
        ),
        panicking(
            "monday_multiplier_applies_from_monday_00_00_00_utc",
            &[],
            monday_multiplier_applies_from_monday_00_00_00_utc,
        ),
        panicking(
            "prime_amount_cap_boundary_and_second_prime_of_a_day",
            &[],
            prime_amount_cap_boundary_and_second_prime_of_a_day,
        ),
        panicking(
            "repeated_ids_are_replays_or_conflicts_and_touch_no_window",
            &[],
            repeated_ids_are_replays_or_conflicts_and_touch_no_window,
        ),
        panicking(
            "every_bad_input_reason_declines_and_changes_no_window",
            &[],
            every_bad_input_reason_declines_and_changes_no_window,
        ),
        panicking(
            "output_lines_are_exact_compact_json_in_input_order",
            &[],
            output_lines_are_exact_compact_json_in_input_order,
        ),
        panicking(
            "inline_run_measures_one_record_in_64",
            &[],
            inline_run_measures_one_record_in_64,
        ),
        panicking(
            "public_sample_gives_753_baseline_and_658_experiment",
            &[Need::Sample],
            public_sample_gives_753_baseline_and_658_experiment,
        ),
        panicking(
            "generator_is_deterministic",
            &[],
            generator_is_deterministic,
        ),
        panicking(
            "generated_input_exercises_every_reason_code",
            &[],
            generated_input_exercises_every_reason_code,
        ),
        panicking(
            "r9_mutated_input_lines_are_each_accounted_once",
            &[],
            r9_mutated_input_lines_are_each_accounted_once,
        ),
    ])
}
