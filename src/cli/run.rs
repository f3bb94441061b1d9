//! `run`: one pipeline run from the command line, inline or supervised, with its summary,
//! progress bar, reports, signals, run journal and exit status.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;

use super::summary::{self, absolute, describe_sink, describe_source, render_summary};
use super::{
    App, EXIT_CANT_CREATE, EXIT_CONFIG, EXIT_CROSS_HOST, EXIT_FAILED, EXIT_NO_INPUT,
    EXIT_READER_GONE, EXIT_SIGINT, EXIT_USAGE, RunArgs, STDOUT_CLOSED, progress, report,
};
use crate::config::{self, Config, SinkAdapter, SourceAdapter};
use crate::runtime::{self, RunError, RunOptions, RunProgress, RunSummary};

/// The config of a run: the file given, or the default job, with CLI overrides applied.
fn run_config(app: &App, args: &RunArgs) -> Result<(Config, Vec<config::ConfigWarning>), ExitCode> {
    let registry = (app.registry)();
    let loaded = match &args.config {
        Some(path) => config::load_file(path, &registry).map_err(|report| {
            eprint!("{}: {report}", path.display());
            ExitCode::from(EXIT_CONFIG)
        })?,
        None => match &app.default_job {
            Some(job) => job.load(&registry).map_err(|report| {
                eprint!("built-in default job: {report}");
                ExitCode::from(EXIT_CONFIG)
            })?,
            None => {
                eprintln!("error: run needs a config: -c CONFIG (this program has no default job)");
                return Err(ExitCode::from(EXIT_USAGE));
            }
        },
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
    // Workers take their level from the config the supervisor hands them.
    let logging = &mut config.runtime.observability.logging;
    if let Some(level) = args.log_level {
        logging.level = level.into();
    } else if args.quiet {
        logging.level = config::LogLevel::Error;
    }
    // Before the log exporters start: OTEL_SDK_DISABLED and the protocol variables apply to
    // them too.
    let otel_env = crate::observability::otel_env::process_env;
    for note in crate::observability::otel_env::apply(&mut config, &otel_env) {
        if !args.quiet {
            eprintln!("{note}");
        }
    }
    Ok((config, loaded.warnings))
}

/// The exit status of run files refused before the run: 73 when only outputs cannot be
/// created or used, 2 when files contradict each other (an output that is the input) or the
/// errors are mixed with others.
fn file_check_status(report: &config::ConfigReport) -> u8 {
    let only_unusable = !report.errors.is_empty()
        && report
            .errors
            .iter()
            .all(|e| e.code == config::ConfigErrorCode::UnusableFile);
    if only_unusable {
        EXIT_CANT_CREATE
    } else {
        EXIT_CONFIG
    }
}

/// Why the run's input file cannot be read, when it is a file that cannot be (`--input FILE`
/// or the config's `adapters.source.path`, read by the bundled and line sources). Asked
/// before a run for `--input` (a named input is checked before anything is written), and
/// after a failed one for the config's path (a source node of the program's own may not read
/// it at all, so it is not refused up front).
fn unreadable_input(config: &Config) -> Option<String> {
    let SourceAdapter::File { path, .. } = &config.adapters.source else {
        return None;
    };
    // Not opened: opening a FIFO without a writer would block.
    let shown = crate::text::path(path);
    match std::fs::metadata(path) {
        Err(e) => Some(format!("{shown}: {e}")),
        Ok(_) => nix::unistd::access(path, nix::unistd::AccessFlags::R_OK)
            .err()
            .map(|e| format!("{shown}: {}", std::io::Error::from(e))),
    }
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
        for sig in crate::supervisor::stop_signals() {
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

pub(super) fn run(app: &App, args: RunArgs) -> anyhow::Result<ExitCode> {
    let (config, warnings) = match run_config(app, &args) {
        Ok(parts) => parts,
        Err(code) => return Ok(code),
    };
    if !args.quiet {
        for warning in &warnings {
            eprintln!("{warning}");
        }
    }
    if STDOUT_CLOSED.load(Ordering::Relaxed) && matches!(config.adapters.sink, SinkAdapter::Stdout)
    {
        eprintln!("error: the sink writes stdout, which is closed: the records would go nowhere");
        return Ok(ExitCode::from(EXIT_CANT_CREATE));
    }
    // Before anything is opened for writing (log files included).
    let extra = config::ExtraRunFiles {
        reads: args.config.iter().cloned().collect(),
        reports: args.report.clone(),
        host: args.host.clone(),
    };
    if args.input.as_ref().is_some_and(|i| i.as_os_str() != "-")
        && args.host.is_none()
        && let Some(why) = unreadable_input(&config)
    {
        eprintln!("error: the input cannot be read: {why}");
        return Ok(ExitCode::from(EXIT_NO_INPUT));
    }
    if let Err(report) = config::check_run_files_with(&config, &extra) {
        eprint!("{report}");
        return Ok(ExitCode::from(file_check_status(&report)));
    }
    // Read before anything is written: a report that cannot be compared refuses the run.
    let earlier = match args
        .report_compare
        .as_deref()
        .map(report::RunReport::read_json)
    {
        Some(Err(error)) => {
            eprintln!("error: --report-compare: {error}");
            return Ok(ExitCode::from(EXIT_NO_INPUT));
        }
        Some(Ok(earlier)) => Some(earlier),
        None => None,
    };
    let chosen = runtime::journal::choose_resume(
        &config,
        &(app.registry)(),
        args.resume,
        args.skip,
        args.host.as_deref(),
    );
    let (resume, journal) = match chosen {
        Ok(runtime::journal::ResumeChoice::Fresh) => (Default::default(), None),
        Ok(runtime::journal::ResumeChoice::Resume { plan, journal }) => (plan, journal),
        Ok(runtime::journal::ResumeChoice::Complete { .. }) if args.quiet => {
            return Ok(ExitCode::SUCCESS);
        }
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
    let identity = crate::observability::logging::LogIdentity::current("supervisor");
    crate::observability::logging::init(&config.runtime.observability.logging, identity)
        .context("opening the log destinations")?;
    let progress = Arc::new(RunProgress::default());
    // A bar only on a terminal: a redirected stderr gets the summary and the log, nothing else.
    let bar = (!args.quiet && std::io::stderr().is_terminal())
        .then(|| progress::Reporter::start(&config, Arc::clone(&progress)))
        .flatten();
    let reports = Reports::start(&args.report, earlier, &progress);
    if args.host.is_some() && !config.is_process_mode() {
        eprintln!("error: --host needs a process_supervisor config whose groups name hosts");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    if config.is_process_mode() {
        let result = run_process_groups(app, &config, &args, resume, journal, progress, reports);
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
    let registry = (app.registry)();
    let result = runtime::run_inline(&config, &registry, &options);
    if let Some(bar) = bar {
        bar.finish();
    }
    let (summary, ending) = match result {
        Ok(summary) => {
            let ending = if summary.interrupted {
                Ending::Stopped {
                    code: interrupts.exit_code(),
                    through: summary.last_seq,
                }
            } else {
                Ending::Completed
            };
            (summary, ending)
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
        }) => (
            *summary,
            Ending::Failed {
                what: format!("node_error in `{node}` on seq {seq}: {message}"),
                through: completed_through,
                source_read: 0,
                before_start: false,
                status: EXIT_FAILED,
            },
        ),
        Err(RunError::ResumeRefused { refused, summary }) => {
            (*summary, Ending::ResumeRefused(refused.to_string()))
        }
        Err(error @ RunError::Journal(_)) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        Err(error @ RunError::Bootstrap { .. }) => {
            eprintln!("error: {error}");
            let code = if unreadable_input(&config).is_some() {
                EXIT_NO_INPUT
            } else {
                EXIT_FAILED
            };
            return Ok(ExitCode::from(code));
        }
    };
    let report = render_summary(&config, &summary);
    Ok(finish(
        &config, args.quiet, &summary, report, ending, reports,
    ))
}

/// How a run ended, whatever its placement: what its summary's end says, its `--report`
/// outcome and its exit status are made from this one value.
enum Ending {
    /// Every record is accounted for.
    Completed,
    /// Stopped by a signal (`code`: 128 + the signal) with every record through `through`
    /// written.
    Stopped { code: u8, through: u64 },
    /// A node or a worker failed: `what` names it; records through `through` are complete,
    /// the source had read through `source_read`.
    Failed {
        what: String,
        through: u64,
        source_read: u64,
        /// The failure is a worker that could not set itself up.
        before_start: bool,
        /// The exit status: a failed run's, or the hand-off's when the server refused to
        /// store more (a rerun fails the same way until its limits change).
        status: u8,
    },
    /// The run journal refused the resume; nothing was written.
    ResumeRefused(String),
}

/// Writes the reports, prints the summary and its end, and returns the exit status.
fn finish(
    config: &Config,
    quiet: bool,
    summary: &RunSummary,
    report: String,
    ending: Ending,
    reports: Reports,
) -> ExitCode {
    let mut end = String::new();
    let (code, outcome) = match &ending {
        Ending::Completed => (0, "completed".to_string()),
        Ending::Stopped { code, through } => {
            end.push_str(&summary::stopped_line(summary, *through));
            (*code, "stopped".to_string())
        }
        Ending::Failed {
            what,
            through,
            source_read,
            status,
            ..
        } => {
            end.push_str(&format!(
                "  FAILED: {what}\n  completed through seq {through}; records from seq {} on were not completed{}\n",
                through + 1,
                if source_read > through {
                    format!(" (the source had read through seq {source_read})")
                } else {
                    String::new()
                }
            ));
            end.push_str(&summary::resume_line(summary, *through));
            (*status, format!("failed: {what}"))
        }
        Ending::ResumeRefused(refused) => {
            eprintln!("error: resume refused: {refused}");
            reports.write(config, summary, "resume refused", EXIT_CONFIG);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    reports.write(config, summary, &outcome, code);
    if code == EXIT_FAILED && reader_gone(config) {
        return ExitCode::from(EXIT_READER_GONE);
    }
    let failed_to_start = matches!(
        ending,
        Ending::Failed {
            before_start: true,
            ..
        }
    );
    // A worker that could not start because the input cannot be read: the input's status.
    let code = if failed_to_start && unreadable_input(config).is_some() {
        EXIT_NO_INPUT
    } else {
        code
    };
    print_outcome(config, quiet, &report, &end);
    ExitCode::from(code)
}

/// A failed run that writes stdout, whose reader closed it (`| head`): it ends the way a Unix
/// filter does, quietly with 141; the run journal says through which record the output is
/// complete.
fn reader_gone(config: &Config) -> bool {
    matches!(config.adapters.sink, SinkAdapter::Stdout) && super::stdout_reader_gone()
}

/// Prints a run's summary and its end (a failure or a stop: where the output is complete, how
/// to resume): on stdout, or on stderr when the records go to stdout. `--quiet` keeps only the
/// end, on stderr.
fn print_outcome(config: &Config, quiet: bool, summary: &str, end: &str) {
    if quiet {
        eprint!("{end}");
    } else if matches!(config.adapters.sink, SinkAdapter::Stdout) {
        eprint!("{summary}{end}");
    } else {
        print!("{summary}{end}");
    }
}

/// A `process_supervisor` run: workers in their groups, supervised until the sinks drain.
fn run_process_groups(
    app: &App,
    config: &Config,
    args: &RunArgs,
    resume: runtime::resume::ResumePlan,
    journal: Option<crate::files::Journal>,
    progress: Arc<RunProgress>,
    reports: Reports,
) -> anyhow::Result<ExitCode> {
    use crate::cross_host::CrossHostError;
    use crate::supervisor::{RunEnd, SupervisorError, SupervisorOptions, run_supervised};
    let registry = (app.registry)();
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
    use crate::supervisor::EventKind;
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
    let ending = match &run.end {
        RunEnd::Drained => Ending::Completed,
        RunEnd::Failed(failure)
            if failure.category == crate::control::FailureCategory::ResumeRefused =>
        {
            Ending::ResumeRefused(failure.detail.clone())
        }
        RunEnd::Failed(failure) => Ending::Failed {
            what: format!(
                "worker {} (group {}) {}: {}",
                failure.worker, failure.group, failure.category, failure.detail
            ),
            through: run.completed_through,
            source_read: run.source_last_seq,
            before_start: failure.category == crate::control::FailureCategory::BootstrapError,
            status: if failure.category == crate::control::FailureCategory::CrossHostRefused {
                EXIT_CROSS_HOST
            } else {
                EXIT_FAILED
            },
        },
        RunEnd::Interrupted(signal) => Ending::Stopped {
            code: exit_code_of(*signal),
            through: run.completed_through,
        },
    };
    Ok(finish(
        config,
        args.quiet,
        &run.summary,
        report,
        ending,
        reports,
    ))
}

/// The `--report` files of a run, and the sampler that feeds their throughput chart.
struct Reports {
    paths: Vec<PathBuf>,
    /// `--report-compare`: an earlier run's report.
    earlier: Option<report::RunReport>,
    sampler: Option<progress::Sampler>,
}

impl Reports {
    fn start(
        paths: &[PathBuf],
        earlier: Option<report::RunReport>,
        run_progress: &Arc<RunProgress>,
    ) -> Self {
        Self {
            paths: paths.to_vec(),
            earlier,
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
        let mut report =
            report::RunReport::new(config, summary, outcome.to_string(), code, files, &timeline);
        if let Some(earlier) = &self.earlier {
            report.compare_with(earlier);
        }
        for path in &self.paths {
            if let Err(e) = report.write(path) {
                eprintln!("error: cannot write the report {}: {e}", path.display());
            }
        }
    }
}
