//! `stream-kernel`: run, validate and generate fund-load pipelines.
//!
//! With no arguments it runs the default job: fund-load (experiment profile, four supervised
//! worker processes) on a generated input of one million lines, and prints where the output
//! went and a summary.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use stream_kernel::apps::fund_load;
use stream_kernel::config::{self, Config, LoadedConfig, SinkAdapter, SourceAdapter};
use stream_kernel::runtime::{self, RunError, RunOptions, RunProgress, RunSummary};

#[path = "cli/progress.rs"]
mod progress;
#[path = "cli/report.rs"]
mod report;
#[path = "cli/summary.rs"]
mod summary;

use summary::{absolute, describe_sink, describe_source, render_summary};

/// Exit status for a run that failed.
const EXIT_FAILED: u8 = 1;
/// Exit status for config errors (config.md), and for run files that cannot be used (the
/// input is the output, a missing input file).
const EXIT_CONFIG: u8 = 2;
/// Exit status for a run whose hand-off to other hosts cannot start: NATS unreachable within
/// the connect timeout, credentials refused, or the run's stream exists with other settings.
const EXIT_CROSS_HOST: u8 = 3;
/// Exit status for command-line usage errors (an unknown flag, a missing value): `EX_USAGE`
/// of sysexits.h, distinct from a config error.
const EXIT_USAGE: u8 = 64;
/// Exit status for a run interrupted by SIGINT (128 + 2).
const EXIT_SIGINT: u8 = 130;

/// Every exit status, as `--help` and the README list them.
const EXIT_CODES_HELP: &str = "\
Exit status:
  0    every record is in the output, the dead letters, or skipped as a blank line
  1    the run failed; the summary names the worker, group and the records not completed
  2    the config is invalid (every error listed), or the run's files cannot be used
  3    the hand-off to other hosts cannot start (NATS unreachable, credentials refused, the
       run's stream exists with other settings)
  64   command-line usage error
  128+N  stopped by signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP, 131 SIGQUIT); the summary
       says through which record the output is complete and how to resume";

/// The default job's config (fund-load, experiment profile, four supervised processes).
const DEFAULT_CONFIG: &str = include_str!("../configs/fund_load_experiment_4proc.yml");
/// Lines of generated input for the default job.
const DEFAULT_LINES: u64 = 1_000_000;
/// Where the default job writes.
const DEFAULT_OUT_DIR: &str = "stream-kernel-out";

#[derive(Parser)]
#[command(
    name = "stream-kernel",
    version,
    about = "Dataflow pipelines across supervised processes; fund-load adjudication by default",
    after_help = EXIT_CODES_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline (with no config: the default fund-load job on generated input).
    Run(RunArgs),
    /// Check a config; with --print, show it with every default filled in.
    Validate {
        /// The config file to check (YAML).
        #[arg(short, long)]
        config: PathBuf,
        /// Print the config with every default filled in, instead of "ok".
        #[arg(long)]
        print: bool,
    },
    /// Write a deterministic fund-load input (NDJSON).
    Gen {
        /// How many lines to write.
        #[arg(long)]
        lines: u64,
        /// Seed of the generator: the same seed and line count give the same bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout: `stream-kernel man > stream-kernel.1`.
    Man,
    /// Print the JSON Schema of the config file (for editor completion).
    Schema,
}

#[derive(clap::Args, Default)]
struct RunArgs {
    /// Config file (default: the built-in fund-load experiment job on generated input).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Input file, overriding adapters.source (`-` = stdin).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Output file, overriding adapters.sink (`-` = stdout).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Dead-letter file, overriding adapters.dead_letter (relative paths are taken from the
    /// current directory, as every path on the command line).
    #[arg(long, value_name = "PATH")]
    dead_letter: Option<PathBuf>,
    /// Continue the run described by the run journal beside the output (`OUTPUT.journal`):
    /// records it completed are read again to rebuild state and checked against it (another
    /// input is refused), not written again; a complete run is left as it is. Without a
    /// journal, on missing or empty outputs, the run starts from the beginning.
    #[arg(long, conflicts_with = "skip")]
    resume: bool,
    /// Resume after record N, as a stopped or failed run reported it: records 1..N are read
    /// and processed again to rebuild state, not written again; outputs are appended to.
    #[arg(long, default_value_t = 0, value_name = "N")]
    skip: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Write a report of the run: FILE.html (one self-contained page) or FILE.json (the same
    /// facts for machines); may be given more than once.
    #[arg(long, value_name = "FILE")]
    report: Vec<PathBuf>,
    /// Run the process groups placed on host NAME (`process_groups[].host`); edges to groups
    /// on other hosts go through the config's `cross_host` transport.
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// The run's identity shared by all its hosts (names its JetStream stream); default: a
    /// digest of the config's pipeline and placement.
    #[arg(long, value_name = "ID")]
    run_id: Option<String>,
}

fn main() -> ExitCode {
    // Spawned workers are this same binary: become one now if that is what we are.
    stream_kernel::worker_entry(fund_load::registry);
    // A file size limit or a closed reader is a write error of the output that hits it.
    stream_kernel::supervisor::ignore_write_signals();
    STDOUT_CLOSED.store(was_closed(1), Ordering::Relaxed);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    let result = match cli.command {
        None => run(RunArgs::default()),
        Some(Command::Run(args)) => run(args),
        Some(Command::Validate { config, print }) => validate(&config, print),
        Some(Command::Gen {
            lines,
            seed,
            output,
        }) => generate(lines, seed, output.as_deref()),
        Some(Command::Completions { shell }) => completions(shell),
        Some(Command::Man) => man_page(),
        Some(Command::Schema) => print_schema(),
    };
    // The last batch of OTLP log records leaves before the process does.
    stream_kernel::observability::otlp_logs::shutdown();
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Stdout was closed when the process started.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether `fd` was closed when the process started. Rust's runtime opens `/dev/null`
/// read-write on a closed stdin, stdout or stderr before `main` (so that no file the program
/// opens takes their number); a shell's `>/dev/null` or `</dev/null` opens it one way only. So
/// a read-write `/dev/null` there means "was closed".
fn was_closed(fd: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let path = format!("/proc/self/fd/{fd}");
    let (Ok(here), Ok(null)) = (std::fs::metadata(&path), std::fs::metadata("/dev/null")) else {
        return false;
    };
    // SAFETY: `fd` is only inspected (F_GETFL), never closed or replaced.
    let flags = nix::fcntl::fcntl(
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_GETFL,
    );
    let read_write = flags.is_ok_and(|f| {
        nix::fcntl::OFlag::from_bits_truncate(f) & nix::fcntl::OFlag::O_ACCMODE
            == nix::fcntl::OFlag::O_RDWR
    });
    here.rdev() == null.rdev() && here.dev() == null.dev() && read_write
}

/// Help and version go to stdout with status 0; a usage error to stderr with [`EXIT_USAGE`].
fn usage_error(error: &clap::Error) -> ExitCode {
    let _ = error.print();
    if error.use_stderr() {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::SUCCESS
    }
}

/// Rendered into memory first: clap_complete panics on a failed write (a closed pipe).
fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "stream-kernel", &mut script);
    write_stdout(&script, "the completion script")
}

fn print_schema() -> anyhow::Result<ExitCode> {
    let schema = config::schema::config_schema();
    let text = serde_json::to_string_pretty(&schema).context("rendering the schema")?;
    write_stdout(format!("{text}\n").as_bytes(), "the schema")
}

fn man_page() -> anyhow::Result<ExitCode> {
    let command = <Cli as clap::CommandFactory>::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut page)
        .context("rendering the man page")?;
    write_stdout(&page, "the man page")
}

/// Writes `bytes` to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(bytes: &[u8], what: &str) -> anyhow::Result<ExitCode> {
    match std::io::stdout().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).with_context(|| format!("writing {what}"))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn validate(path: &Path, print: bool) -> anyhow::Result<ExitCode> {
    let registry = fund_load::registry();
    let loaded = config::load_file(path, &registry).and_then(|loaded| {
        runtime::room::check_ring_room(&loaded.config, &registry)?;
        Ok(loaded)
    });
    match loaded {
        Ok(loaded) => {
            print_warnings(&loaded);
            if print {
                print!("{}", loaded.config.to_yaml());
            } else {
                println!("{}: ok", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(report) => {
            eprint!("{}: {report}", path.display());
            Ok(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn print_warnings(loaded: &LoadedConfig) {
    for warning in &loaded.warnings {
        eprintln!("{warning}");
    }
}

fn generate(lines: u64, seed: u64, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut writer: Box<dyn Write> = match output {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut buffered = std::io::BufWriter::with_capacity(1 << 20, &mut writer);
    fund_load::generator::write_lines(lines, seed, &mut buffered)
        .context("writing generated lines")?;
    buffered.flush().context("flushing generated lines")?;
    Ok(ExitCode::SUCCESS)
}

/// The config of a run: the file given, or the default job, with CLI overrides applied.
fn run_config(args: &RunArgs) -> Result<(Config, Vec<config::ConfigWarning>), ExitCode> {
    let registry = fund_load::registry();
    let loaded = match &args.config {
        Some(path) => config::load_file(path, &registry).map_err(|report| {
            eprint!("{}: {report}", path.display());
            ExitCode::from(EXIT_CONFIG)
        })?,
        None => default_job(&registry).map_err(|report| {
            eprint!("built-in default job: {report}");
            ExitCode::from(EXIT_CONFIG)
        })?,
    };
    let mut config = loaded.config;
    if let Some(input) = &args.input {
        // The config's line limit stays: only where the lines come from changes.
        let max_line_bytes = config
            .adapters
            .source
            .max_line_bytes()
            .unwrap_or(config::DEFAULT_MAX_LINE_BYTES);
        config.adapters.source = if input.as_os_str() == "-" {
            SourceAdapter::Stdin { max_line_bytes }
        } else {
            SourceAdapter::File {
                path: input.clone(),
                max_line_bytes,
            }
        };
    }
    if let Some(output) = &args.output {
        config.adapters.sink = if output.as_os_str() == "-" {
            SinkAdapter::Stdout
        } else {
            SinkAdapter::File {
                path: output.clone(),
            }
        };
    }
    if let Some(path) = &args.dead_letter {
        config.adapters.dead_letter = Some(config::FileAdapter::File { path: path.clone() });
    }
    // Before the log exporters start: OTEL_SDK_DISABLED and the protocol variables apply to
    // them too.
    let otel_env = stream_kernel::observability::otel_env::process_env;
    for note in stream_kernel::observability::otel_env::apply(&mut config, &otel_env) {
        eprintln!("{note}");
    }
    Ok((config, loaded.warnings))
}

fn default_job(
    registry: &stream_kernel::graph::Registry,
) -> Result<LoadedConfig, config::ConfigReport> {
    let mut loaded = config::load_str(DEFAULT_CONFIG, registry)?;
    let out_dir = PathBuf::from(DEFAULT_OUT_DIR);
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        eprintln!("warning: cannot create {}: {e}", out_dir.display());
    }
    let adapters = &mut loaded.config.adapters;
    adapters.source = SourceAdapter::Generator {
        lines: DEFAULT_LINES,
        seed: 1,
    };
    adapters.sink = SinkAdapter::File {
        path: out_dir.join("output.txt"),
    };
    adapters.dead_letter = Some(config::FileAdapter::File {
        path: out_dir.join("rejects.jsonl"),
    });
    Ok(loaded)
}

/// SIGINT / SIGTERM / SIGHUP / SIGQUIT: the first stops ingestion and drains; a second SIGINT
/// exits at once.
struct Interrupts {
    stop: Arc<AtomicBool>,
    /// The first stop signal that arrived (0: none).
    signal: Arc<std::sync::atomic::AtomicI32>,
}

impl Interrupts {
    fn install() -> anyhow::Result<Self> {
        use signal_hook::consts::SIGINT;
        let stop = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(std::sync::atomic::AtomicI32::new(0));
        // Registered before the flag, so only a SIGINT arriving after the first one exits.
        signal_hook::flag::register_conditional_shutdown(
            SIGINT,
            i32::from(EXIT_SIGINT),
            Arc::clone(&stop),
        )?;
        for sig in stream_kernel::supervisor::stop_signals() {
            let first = Arc::clone(&signal);
            // SAFETY: the handler only does an atomic compare-exchange (async-signal-safe).
            let registered = unsafe {
                signal_hook::low_level::register(sig, move || {
                    let _ = first.compare_exchange(0, sig, Ordering::Relaxed, Ordering::Relaxed);
                })
            };
            match registered {
                Ok(_) => {
                    signal_hook::flag::register(sig, Arc::clone(&stop))?;
                }
                // A real-time signal the environment keeps for itself (a debugger, valgrind)
                // cannot be caught here: nobody else can send it to us either.
                Err(e)
                    if e.kind() == std::io::ErrorKind::InvalidInput && sig >= libc::SIGRTMIN() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Self { stop, signal })
    }

    fn exit_code(&self) -> u8 {
        exit_code_of(Some(self.signal.load(Ordering::Relaxed)))
    }
}

/// 128 + the signal that stopped a run (SIGINT when none is known).
fn exit_code_of(signal: Option<i32>) -> u8 {
    match signal {
        Some(s) if s > 0 && s < 128 => 128 + s as u8,
        _ => EXIT_SIGINT,
    }
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (config, warnings) = match run_config(&args) {
        Ok(parts) => parts,
        Err(code) => return Ok(code),
    };
    for warning in &warnings {
        eprintln!("{warning}");
    }
    if STDOUT_CLOSED.load(Ordering::Relaxed) && matches!(config.adapters.sink, SinkAdapter::Stdout)
    {
        eprintln!("error: the sink writes stdout, which is closed: the records would go nowhere");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    // Before anything is opened for writing (log files included).
    let extra = config::ExtraRunFiles {
        reads: args.config.iter().cloned().collect(),
        reports: args.report.clone(),
        host: args.host.clone(),
    };
    if let Err(report) = config::check_run_files_with(&config, &extra) {
        eprint!("{report}");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let chosen = runtime::journal::choose_resume(
        &config,
        &fund_load::registry(),
        args.resume,
        args.skip,
        args.host.as_deref(),
    );
    let (resume, journal) = match chosen {
        Ok(runtime::journal::ResumeChoice::Fresh) => (Default::default(), None),
        Ok(runtime::journal::ResumeChoice::Resume { plan, journal }) => (plan, journal),
        Ok(runtime::journal::ResumeChoice::Complete { path, journal }) => {
            println!(
                "{}: the run is complete (records 1 to {}, {}): nothing to do; run without --resume to run it again",
                summary::shown(&path.display().to_string()),
                journal.completed.seq,
                journal.outcome
            );
            return Ok(ExitCode::SUCCESS);
        }
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let identity = stream_kernel::observability::logging::LogIdentity::current("supervisor");
    stream_kernel::observability::logging::init(&config.runtime.observability.logging, identity)
        .context("opening the log destinations")?;
    let progress = Arc::new(RunProgress::default());
    // A bar only on a terminal: a redirected stderr gets the summary and the log, nothing else.
    let bar = (!args.quiet && std::io::stderr().is_terminal())
        .then(|| progress::Reporter::start(&config, Arc::clone(&progress)))
        .flatten();
    let reports = Reports::start(&args.report, &progress);
    if args.host.is_some() && !config.is_process_mode() {
        eprintln!("error: --host needs a process_supervisor config whose groups name hosts");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    if config.is_process_mode() {
        let result = run_process_groups(&config, &args, resume, journal, progress, reports);
        if let Some(bar) = bar {
            bar.finish();
        }
        return result;
    }
    let interrupts = Interrupts::install().context("installing signal handlers")?;
    let options = RunOptions {
        stop: Some(Arc::clone(&interrupts.stop)),
        progress: Some(progress),
        resume,
        journal,
    };
    let registry = fund_load::registry();
    let result = runtime::run_inline(&config, &registry, &options);
    if let Some(bar) = bar {
        bar.finish();
    }
    let to_stderr = matches!(config.adapters.sink, SinkAdapter::Stdout);
    let mut report = String::new();
    let code = match result {
        Ok(summary) => {
            report.push_str(&render_summary(&config, &summary));
            let code = if summary.interrupted {
                report.push_str(&summary::stopped_line(&summary, summary.last_seq));
                interrupts.exit_code()
            } else {
                0
            };
            let outcome = if code == 0 { "completed" } else { "stopped" };
            reports.write(&config, &summary, outcome, code);
            code
        }
        Err(RunError::Config(report)) => {
            eprint!("{report}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        Err(RunError::NodeFailed {
            node,
            seq,
            message,
            completed_through,
            summary,
        }) => {
            report.push_str(&render_summary(&config, &summary));
            let failed = format!("failed: node_error in `{node}` on seq {seq}: {message}");
            report.push_str(&format!(
                "  FAILED: node_error in `{node}` on seq {seq}: {message}\n  completed through seq {completed_through}; records from seq {} on were not completed\n",
                completed_through + 1
            ));
            report.push_str(&summary::resume_line(&summary, completed_through));
            reports.write(&config, &summary, &failed, EXIT_FAILED);
            EXIT_FAILED
        }
        Err(RunError::ResumeRefused { refused, summary }) => {
            eprintln!("error: resume refused: {refused}");
            reports.write(&config, &summary, "resume refused", EXIT_CONFIG);
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        Err(error @ RunError::Journal(_)) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        Err(error @ RunError::Bootstrap { .. }) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    };
    if to_stderr {
        eprint!("{report}");
    } else {
        print!("{report}");
    }
    Ok(ExitCode::from(code))
}

/// A `process_supervisor` run: workers in their groups, supervised until the sinks drain.
fn run_process_groups(
    config: &Config,
    args: &RunArgs,
    resume: runtime::resume::ResumePlan,
    journal: Option<stream_kernel::files::Journal>,
    progress: Arc<RunProgress>,
    reports: Reports,
) -> anyhow::Result<ExitCode> {
    use stream_kernel::cross_host::CrossHostError;
    use stream_kernel::supervisor::{RunEnd, SupervisorError, SupervisorOptions, run_supervised};
    let registry = fund_load::registry();
    let options = SupervisorOptions {
        handle_signals: true,
        resume,
        journal,
        progress: Some(progress),
        host: args.host.clone(),
        run_id: args.run_id.clone(),
        ..SupervisorOptions::default()
    };
    let mut run = match run_supervised(config, &registry, &options) {
        Ok(run) => run,
        Err(SupervisorError::Config(report)) => {
            eprint!("{report}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        Err(error @ SupervisorError::Journal(_)) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        Err(SupervisorError::CrossHost(error @ CrossHostError::Placement(_))) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        Err(error @ SupervisorError::CrossHost(_)) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(EXIT_CROSS_HOST));
        }
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    };
    if let Some(moved) = &run.cross_host
        && run.summary.records_in == 0
    {
        // A host without the source: its records are the ones other hosts handed to it.
        run.summary.records_in = moved.received_records;
    }
    let mut report = render_summary(config, &run.summary);
    use stream_kernel::supervisor::EventKind;
    if let (Some(startup), Some(stop)) = (
        run.startup_ms(),
        run.phase_ms(EventKind::SupervisorGracefulStop),
    ) {
        report.push_str(&format!(
            "  workers: spawn to all READY {startup} ms; graceful stop {stop} ms\n"
        ));
    }
    if let Some(moved) = run.cross_host {
        report.push_str(&format!(
            "  cross-host: published {} records in {} messages; received {} records in {} messages ({} duplicates skipped)\n",
            moved.published_records,
            moved.published_messages,
            moved.received_records,
            moved.received_messages,
            moved.duplicate_records
        ));
    }
    let (code, outcome) = match &run.end {
        RunEnd::Drained => (0, "completed".to_string()),
        RunEnd::Failed(failure)
            if failure.category == stream_kernel::control::FailureCategory::ResumeRefused =>
        {
            eprintln!("error: resume refused: {}", failure.detail);
            reports.write(config, &run.summary, "resume refused", EXIT_CONFIG);
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        RunEnd::Failed(failure) => {
            report.push_str(&format!(
                "  FAILED: worker {} (group {}) {}: {}\n  completed through seq {}; records from seq {} on were not completed{}\n",
                failure.worker,
                failure.group,
                failure.category,
                failure.detail,
                run.completed_through,
                run.completed_through + 1,
                if run.source_last_seq > run.completed_through {
                    format!(" (the source had read through seq {})", run.source_last_seq)
                } else {
                    String::new()
                }
            ));
            report.push_str(&summary::resume_line(&run.summary, run.completed_through));
            let outcome = format!(
                "failed: worker {} (group {}) {}: {}",
                failure.worker, failure.group, failure.category, failure.detail
            );
            (EXIT_FAILED, outcome)
        }
        RunEnd::Interrupted(signal) => {
            report.push_str(&summary::stopped_line(&run.summary, run.completed_through));
            (exit_code_of(*signal), "stopped".to_string())
        }
    };
    reports.write(config, &run.summary, &outcome, code);
    if matches!(config.adapters.sink, SinkAdapter::Stdout) {
        eprint!("{report}");
    } else {
        print!("{report}");
    }
    Ok(ExitCode::from(code))
}

/// The `--report` files of a run, and the sampler that feeds their throughput chart.
struct Reports {
    paths: Vec<PathBuf>,
    sampler: Option<progress::Sampler>,
}

impl Reports {
    fn start(paths: &[PathBuf], run_progress: &Arc<RunProgress>) -> Self {
        Self {
            paths: paths.to_vec(),
            sampler: (!paths.is_empty())
                .then(|| progress::Sampler::start(Arc::clone(run_progress)))
                .flatten(),
        }
    }

    /// Writes every report; a report that cannot be written is said on stderr (the run's
    /// outcome stands).
    fn write(self, config: &Config, summary: &RunSummary, outcome: &str, code: u8) {
        if self.paths.is_empty() {
            return;
        }
        let timeline = self
            .sampler
            .map(progress::Sampler::finish)
            .unwrap_or_default();
        let mut files = vec![
            (
                "input".to_string(),
                describe_source(&config.adapters.source),
            ),
            ("output".to_string(), describe_sink(&config.adapters.sink)),
        ];
        if let Some(path) = &summary.dead_letter_path {
            files.push(("rejects".to_string(), absolute(path)));
        }
        if let Some(audit) = &config.adapters.audit {
            files.push(("audit".to_string(), absolute(audit.path())));
        }
        let report = report::RunReport::new(
            &config.scenario.name,
            summary,
            outcome.to_string(),
            code,
            files,
            &timeline,
        );
        for path in &self.paths {
            if let Err(e) = report.write(path) {
                eprintln!("error: cannot write the report {}: {e}", path.display());
            }
        }
    }
}
