//! `stream-kernel`: the engine's command line with the bundled fund-load adjudication app.
//!
//! With no arguments it runs the default job: fund-load (experiment profile, four supervised
//! worker processes) on a generated input of one million lines, and prints where the output
//! went and a summary. Every other command is the engine's own (`stream_kernel::cli`).

use stream_kernel::apps::fund_load;
use stream_kernel::cli::{App, DefaultJob};

fn main() -> std::process::ExitCode {
    App::new("stream-kernel", fund_load::registry)
        .about("Dataflow pipelines across supervised processes; fund-load adjudication by default")
        .default_job(DefaultJob {
            config_yaml: include_str!("../configs/fund_load_experiment_4proc.yml"),
            lines: 1_000_000,
            out_dir: "stream-kernel-out",
            description: "fund-load (experiment profile, four worker processes) on 1,000,000 generated lines",
        })
        .generator(fund_load::generator::make)
        .main()
}
