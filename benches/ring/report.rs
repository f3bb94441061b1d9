//! The final table: every peer's p50 next to ours and the calibration hop, how each peer was
//! driven, and the targets as met or missed with their measured values.

use std::process::Command;

use stream_kernel::data::ENVELOPE_HEADER;

use crate::calib::WAKE_GAP;
use crate::common::{BATCH, SIZES, p50};
use crate::{PEERS, Peer};

fn fmt_time(seconds: f64) -> String {
    if seconds < 1e-6 {
        format!("{:.1} ns", seconds * 1e9)
    } else if seconds < 1e-3 {
        format!("{:.2} us", seconds * 1e6)
    } else {
        format!("{:.2} ms", seconds * 1e3)
    }
}

fn value(id: &str) -> f64 {
    p50(id).unwrap_or(f64::NAN)
}

/// A calibration hop above this is not a cache line moving between two cores: the two
/// processes took turns on one core, or waited for one (a sane hop is 50-300 ns).
const MAX_SANE_HOP: f64 = 2e-6;
/// A spinning calibration thread that received less CPU than this share of its wall time was
/// sharing its core with something else.
const MIN_CPU_SHARE: f64 = 0.9;

/// Why the run's figures cannot be judged (the machine was oversubscribed), if they cannot.
fn invalid_because(hop_first: f64, hop_last: f64) -> Option<String> {
    let mut reasons = Vec::new();
    for (label, hop) in [("first", hop_first), ("last", hop_last)] {
        // A NaN hop (no samples) is as invalid as a slow one.
        if hop.is_nan() || hop > MAX_SANE_HOP {
            reasons.push(format!(
                "the {label} calibration hop took {} (above {}): the two processes did not run on two cores at once",
                fmt_time(hop),
                fmt_time(MAX_SANE_HOP)
            ));
        }
        if let Some(share) = p50(&format!("calib/cpu-share-{label}"))
            && share < MIN_CPU_SHARE
        {
            reasons.push(format!(
                "the {label} calibration's spinning thread was on a CPU {:.0}% of the time it spun (below {:.0}%): something else ran on its core",
                share * 100.0,
                MIN_CPU_SHARE * 100.0
            ));
        }
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

pub fn report(idle_share: f64) {
    let hop_first = value("calib/hop-first");
    let hop_last = value("calib/hop-last");
    let drift = (hop_last - hop_first).abs() / hop_first;
    let hop = (hop_first + hop_last) / 2.0;
    let invalid = invalid_because(hop_first, hop_last);
    println!();
    println!("== stream-kernel ring benchmark ==");
    println!(
        "machine: {} ({} vCPU); date: {}; command: cargo bench --bench ring (tools/bench-ring.sh)",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        today()
    );
    println!(
        "calibration hop (cache-line ping-pong, one way): first {} / last {} -> {}",
        fmt_time(hop_first),
        fmt_time(hop_last),
        if drift > 0.2 {
            format!(
                "DRIFT {:.0}% > 20%: this run is DISCARDED, run it again",
                drift * 100.0
            )
        } else {
            format!("drift {:.0}% (ok)", drift * 100.0)
        }
    );
    if let (Some(futex), Some(after_idle)) =
        (p50("calib/futex-rtt"), p50("calib/futex-rtt-after-idle"))
    {
        println!(
            "futex round trip between two processes: {} busy, {} after a {:?} idle gap",
            fmt_time(futex),
            fmt_time(after_idle),
            WAKE_GAP
        );
    }
    println!();
    println!(
        "peers (how each is driven; streams publish every {BATCH} messages where a peer can):"
    );
    for Peer { id, how, .. } in PEERS {
        println!("  {id:<22} {how}");
    }
    for size in SIZES {
        print_size(size, hop);
    }
    match invalid {
        Some(reason) => {
            println!();
            println!("-- targets, same run --");
            println!("run INVALID, no target is judged: {reason}");
        }
        None => print_targets(hop, idle_share),
    }
}

fn print_size(size: usize, hop: f64) {
    println!();
    println!("-- rtt/{size}: one-way latency (rtt/2), p50 --");
    println!(
        "{:<22} {:>12} {:>10} {:>10}",
        "peer", "one-way", "x ours", "x hop"
    );
    let ours = value(&format!("rtt/{size}/ours-latency")) / 2.0;
    for Peer { id, .. } in PEERS {
        if let Some(rtt) = p50(&format!("rtt/{size}/{id}")) {
            let one_way = rtt / 2.0;
            println!(
                "{id:<22} {:>12} {:>10.2} {:>10.2}",
                fmt_time(one_way),
                one_way / ours,
                one_way / hop
            );
        }
    }
    println!("-- tput/{size}: one-way stream, p50 per message --");
    println!(
        "{:<22} {:>12} {:>12} {:>11} {:>8}",
        "peer", "per msg", "msgs/s", "MB/s", "x ours"
    );
    let ours = value(&format!("tput/{size}/ours-latency"));
    for Peer { id, .. } in PEERS {
        if let Some(per) = p50(&format!("tput/{size}/{id}")) {
            println!(
                "{id:<22} {:>12} {:>12.0} {:>11.1} {:>8.2}",
                fmt_time(per),
                1.0 / per,
                (size + ENVELOPE_HEADER) as f64 / per / 1e6,
                per / ours
            );
        }
    }
}

fn print_targets(hop: f64, idle_share: f64) {
    println!();
    println!("-- targets, same run --");
    let ours64 = value("rtt/64/ours-latency") / 2.0;
    let ice64 = value("rtt/64/iceoryx2") / 2.0;
    target(
        "one-way latency 64 B <= 2.0 hops",
        ours64 / hop,
        "hops",
        ours64 / hop <= 2.0,
    );
    target(
        "one-way latency 64 B <= 0.5x iceoryx2",
        ours64 / ice64,
        "x",
        ours64 / ice64 <= 0.5,
    );
    let t_ours = value("tput/64/ours-latency");
    let rate = 1.0 / t_ours / 1e6;
    target("stream 64 B >= 50 M msgs/s", rate, "M/s", rate >= 50.0);
    for (what, peer, floor) in [
        (
            "stream 64 B >= 3x Unix socket (buffered)",
            "unix-socket",
            3.0,
        ),
        ("stream 64 B >= 3x pipe (buffered)", "pipe", 3.0),
        ("stream 64 B >= 0.8x rtrb typed slots", "rtrb-slots", 0.8),
    ] {
        let ratio = value(&format!("tput/64/{peer}")) / t_ours;
        target(what, ratio, "x", ratio >= floor);
    }
    if let (Some(rtrb), Some(ours), Some(row)) = (
        p50("minimal/rtrb"),
        p50("minimal/ours"),
        p50("tput/64/rtrb-slots"),
    ) {
        println!(
            "(minimal two-thread loops, 64 B, no harness: rtrb {} and ours {} per message)",
            fmt_time(rtrb),
            fmt_time(ours)
        );
        target(
            "rtrb-slots row within 1.2x of a minimal rtrb loop",
            row / rtrb,
            "x",
            row / rtrb <= 1.2,
        );
        target(
            "stream 64 B >= 0.8x rtrb, minimal two-thread loops",
            rtrb / ours,
            "x",
            rtrb / ours >= 0.8,
        );
    }
    let t_big = value(&format!("tput/{}/ours-latency", 64 * 1024));
    let memcpy = value("memcpy/64K");
    target(
        "stream 64 KiB >= 0.8x memcpy bandwidth",
        memcpy / t_big,
        "x",
        memcpy / t_big >= 0.8,
    );
    target(
        "balanced idle consumer < 5% of a core",
        idle_share * 100.0,
        "%",
        idle_share < 0.05,
    );
    let wake = value("wake/balanced-parked-rtt");
    let futex = value("calib/futex-rtt-after-idle");
    target(
        "parked wake-up rtt <= 1.5 futex rtt (same gap)",
        wake / futex,
        "futex rtt",
        wake / futex <= 1.5,
    );
}

fn target(what: &str, value: f64, unit: &str, met: bool) {
    println!(
        "{:<46} {:>10.2} {:<10} {}",
        what,
        value,
        unit,
        if met { "met" } else { "MISSED" }
    );
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

fn today() -> String {
    Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
