//! The hand-written fund-load peer of the pipeline bench as a program of its own, for
//! whole-process measurements (callgrind instruction counts, peak RSS, `farm-bench`):
//!
//! ```sh
//! cargo run --release --example fund_load_by_hand -- INPUT OUTPUT REJECTS [baseline|experiment]
//! ```

#[path = "../benches/peer/fund_load_by_hand.rs"]
mod peer;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, rejects, rest @ ..] = args.as_slice() else {
        eprintln!("usage: fund_load_by_hand INPUT OUTPUT REJECTS [baseline|experiment]");
        std::process::exit(2);
    };
    let settings = match rest.first().map(String::as_str) {
        Some("baseline") => peer::Settings::baseline(),
        _ => peer::Settings::experiment(),
    };
    let counts = peer::run(input.as_ref(), output.as_ref(), rejects.as_ref(), &settings)?;
    eprintln!(
        "{} lines, {} accepted, {} on the general path",
        counts.lines, counts.accepted, counts.general_path
    );
    Ok(())
}
