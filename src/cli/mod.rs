//! The command line of a program built on the engine: `run`, `validate`, `schema`,
//! `completions`, `man` (and `gen` when the program has a line generator), with the run's
//! summary, progress bar, reports, signals, exit statuses and run journal. Feature `cli`.
//!
//! A program hands it its node registry and gets every command for its own pipelines; the
//! `stream-kernel` binary is this with the bundled fund-load app:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     stream_kernel::cli::main(|| {
//!         let mut registry = stream_kernel::graph::Registry::new();
//!         registry.line_source("lines");
//!         registry.line_sink("write");
//!         registry
//!     })
//! }
//! ```
//!
//! Workers are this same program, started again without arguments: what a worker needs comes
//! from the config (node sections, `nodes.<name>`, typed with
//! [`NodeFactory::settings_type`](crate::graph::NodeFactory::settings_type)) or from the
//! environment, which workers inherit, never from the command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::adapters::MakeGenerator;
use crate::config::{self, LoadedConfig, SinkAdapter, SourceAdapter};
use crate::graph::Registry;

mod progress;
mod report;
mod run;
mod summary;

/// Exit status for a run that failed.
const EXIT_FAILED: u8 = 1;
/// Exit status for config errors (docs/configuration.md), and for run files that cannot be used (the
/// input is the output, a missing input file).
const EXIT_CONFIG: u8 = 2;
/// Exit status for a run whose hand-off to other hosts cannot start (NATS unreachable within
/// the connect timeout, credentials refused, the run's stream exists with other settings) or
/// cannot go on (the server refuses to store more: a rerun fails the same way).
const EXIT_CROSS_HOST: u8 = 3;
/// Exit status for command-line usage errors (an unknown flag, a missing value): `EX_USAGE`
/// of sysexits.h, distinct from a config error.
const EXIT_USAGE: u8 = 64;
/// Exit status for a run whose input file is missing or cannot be read: `EX_NOINPUT` of
/// sysexits.h (nothing was written).
const EXIT_NO_INPUT: u8 = 66;
/// Exit status for a run whose output, dead-letter, report or log file cannot be created or
/// used: `EX_CANTCREAT` of sysexits.h (nothing was written).
const EXIT_CANT_CREATE: u8 = 73;
/// Exit status for a run whose stdout reader closed it (128 + SIGPIPE), as a shell reports a
/// filter that `| head` cut short.
const EXIT_READER_GONE: u8 = 141;
/// Exit status for a run interrupted by SIGINT (128 + 2).
const EXIT_SIGINT: u8 = 130;

/// Every exit status, as `--help` and the README list them.
const EXIT_CODES_HELP: &str = "\
Exit status:
  0    every record is in the output, the dead letters, or skipped as a blank line
  1    the run failed; the summary names the worker, group and the records not completed
  2    the config is invalid (every error listed), or the run's files contradict each other
       (an output is the input, two outputs are one file)
  3    the hand-off to other hosts cannot start (NATS unreachable, credentials refused, the
       run's stream exists with other settings) or the server refuses to store more (its
       store or the account's JetStream limits are full)
  64   command-line usage error
  66   the input file is missing or cannot be read (nothing was written)
  73   an output file cannot be created or used: a missing directory, no permission, a FIFO,
       a device, a file another run holds (nothing was written)
  128+N  stopped by signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP, 131 SIGQUIT); the summary
       says through which record the output is complete and how to resume
  141  the reader of stdout closed it (`| head`): the run ends quietly, as a filter does; the
       run journal says through which record the output is complete";

/// What `run` does without `-c`: a built-in job on generated input, writing into a directory.
#[derive(Debug, Clone)]
pub struct DefaultJob {
    /// The job's config (YAML).
    pub config_yaml: &'static str,
    /// Lines the program's generator makes for it (seed 1).
    pub lines: u64,
    /// The directory it writes `output.txt` and `rejects.jsonl` into.
    pub out_dir: &'static str,
    /// What it is, for `run --help`.
    pub description: &'static str,
}

impl DefaultJob {
    /// The job's config, pointed at generated input and its directory (created here).
    pub fn load(&self, registry: &Registry) -> Result<LoadedConfig, config::ConfigReport> {
        let mut loaded = config::load_str(self.config_yaml, registry)?;
        let out_dir = PathBuf::from(self.out_dir);
        if let Err(e) = std::fs::create_dir_all(&out_dir) {
            eprintln!("warning: cannot create {}: {e}", out_dir.display());
        }
        let adapters = &mut loaded.config.adapters;
        adapters.source = SourceAdapter::Generator {
            lines: self.lines,
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
}

/// A program's command line: its name, its nodes, and what it adds (see the module header).
#[derive(Clone)]
pub struct App {
    name: &'static str,
    about: String,
    registry: fn() -> Registry,
    default_job: Option<DefaultJob>,
    generator: Option<MakeGenerator>,
}

impl App {
    /// The command line of program `name` (as its users type it) with the nodes `registry`
    /// makes.
    pub fn new(name: &'static str, registry: fn() -> Registry) -> Self {
        Self {
            name,
            about: "Dataflow pipelines of typed nodes, inline or across supervised processes"
                .to_string(),
            registry,
            default_job: None,
            generator: None,
        }
    }

    /// The one-line description `--help` opens with.
    pub fn about(mut self, about: &str) -> Self {
        self.about = about.to_string();
        self
    }

    /// What `run` does without `-c`.
    pub fn default_job(mut self, job: DefaultJob) -> Self {
        self.default_job = Some(job);
        self
    }

    /// The program's line generator: `gen` writes its lines, and configs may read them
    /// (`adapters.source.kind: generator`).
    pub fn generator(mut self, make: MakeGenerator) -> Self {
        self.generator = Some(make);
        self
    }

    /// Runs the command line: turns this process into a worker when it was started as one,
    /// else parses the arguments and runs the command. Call it first thing in `main`.
    pub fn main(self) -> ExitCode {
        // Spawned workers are this same program: become one now if that is what we are.
        crate::worker_entry(self.registry);
        // A file size limit or a closed reader is a write error of the output that hits it.
        crate::supervisor::ignore_write_signals();
        STDOUT_CLOSED.store(was_closed(1), Ordering::Relaxed);
        let cli = match self.parse() {
            Ok(cli) => cli,
            Err(error) => return usage_error(&error),
        };
        let result = self.dispatch(cli.command);
        // The last batch of OTLP log records leaves before the process does.
        crate::observability::otlp_logs::shutdown();
        match result {
            Ok(code) => code,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::from(EXIT_FAILED)
            }
        }
    }

    /// The clap command under this program's name, `gen` hidden without a generator.
    fn command(&self) -> clap::Command {
        let mut command = Cli::command()
            .name(self.name)
            .bin_name(self.name)
            .about(self.about.clone());
        if self.generator.is_none() {
            command = command.mut_subcommand("gen", |generate| generate.hide(true));
        }
        command
    }

    fn parse(&self) -> Result<Cli, clap::Error> {
        let matches = self.command().try_get_matches()?;
        Cli::from_arg_matches(&matches)
    }

    fn dispatch(&self, command: Option<Command>) -> anyhow::Result<ExitCode> {
        match command {
            None if self.default_job.is_some() => run::run(self, RunArgs::default()),
            None => {
                let _ = self.command().print_help();
                Ok(ExitCode::from(EXIT_USAGE))
            }
            Some(Command::Run(args)) => run::run(self, args),
            Some(Command::Validate { config, print }) => self.validate(&config, print),
            Some(Command::Gen {
                lines,
                seed,
                output,
            }) => self.generate(lines, seed, output.as_deref()),
            Some(Command::Completions { shell }) => self.completions(shell),
            Some(Command::Man { dir }) => self.man_pages(dir.as_deref()),
            Some(Command::Schema) => print_schema(),
        }
    }
}

/// Runs the command line of a program whose nodes `registry` makes (see [`App`] for a name,
/// a default job or a generator). Call it first thing in `main`.
pub fn main(registry: fn() -> Registry) -> ExitCode {
    let name = std::env::args_os()
        .next()
        .and_then(|arg0| {
            Path::new(&arg0)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "stream-kernel".to_string());
    // Named once per process, for clap's lifetime-free names.
    App::new(Box::leak(name.into_boxed_str()), registry).main()
}

#[derive(Parser)]
#[command(name = "stream-kernel", version, after_help = EXIT_CODES_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline (with no config: the program's default job, when it has one).
    #[command(after_help = EXIT_CODES_HELP)]
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
    /// Write the program's generated input (deterministic for a seed).
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
    /// Print the man page (roff) to stdout; with --dir, write one page per command there
    /// (`NAME.1`, `NAME-run.1`, ...).
    Man {
        /// Write every page into this directory (e.g. /usr/local/share/man/man1) instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print the JSON Schema of the config file (for editor completion).
    Schema,
}

#[derive(clap::Args, Default)]
pub(crate) struct RunArgs {
    /// Config file (default: the program's built-in job, when it has one).
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
    /// Only errors on stderr: no progress bar, no summary of a completed run, no warnings, logs
    /// at level `error` (`RUST_LOG`, when set, still decides the log filter). A failed or
    /// stopped run still says where its output is complete and how to resume.
    #[arg(short, long)]
    quiet: bool,
    /// Log level of the run's log destinations, overriding
    /// `runtime.observability.logging.level`. `RUST_LOG` (tracing's filter directives), when
    /// set, takes precedence over both.
    #[arg(long, value_name = "LEVEL", value_enum)]
    log_level: Option<LogLevelArg>,
    /// Write a report of the run: FILE.html (one self-contained page) or FILE.json (the same
    /// facts for machines); may be given more than once.
    #[arg(long, value_name = "FILE")]
    report: Vec<PathBuf>,
    /// Compare this run with an earlier one in the reports: EARLIER.json is that run's
    /// `--report` JSON (records, time, rate, latency, memory, config digest side by side).
    #[arg(long, value_name = "EARLIER.json", requires = "report")]
    report_compare: Option<PathBuf>,
    /// Run the process groups placed on host NAME (`process_groups[].host`); edges to groups
    /// on other hosts go through the config's `cross_host` transport.
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// The run's identity shared by all its hosts (names its JetStream stream); default: a
    /// digest of the config's pipeline and placement.
    #[arg(long, value_name = "ID")]
    run_id: Option<String>,
}

/// `--log-level`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum LogLevelArg {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl From<LogLevelArg> for config::LogLevel {
    fn from(level: LogLevelArg) -> Self {
        match level {
            LogLevelArg::Error => Self::Error,
            LogLevelArg::Warn => Self::Warn,
            LogLevelArg::Info => Self::Info,
            LogLevelArg::Debug => Self::Debug,
            LogLevelArg::Trace => Self::Trace,
        }
    }
}

/// Stdout was closed when the process started.
pub(crate) static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

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

/// Whether stdout's reader has gone (a pipe whose read end is closed, a socket shut down): the
/// kernel then reports an error condition on the write end without anything being written.
pub(crate) fn stdout_reader_gone() -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    // SAFETY: fd 1 is only polled, never closed or replaced.
    let stdout = unsafe { std::os::fd::BorrowedFd::borrow_raw(1) };
    let mut fds = [PollFd::new(stdout, PollFlags::POLLOUT)];
    poll(&mut fds, PollTimeout::ZERO).is_ok_and(|_| {
        fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
    })
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

impl App {
    /// Rendered into memory first: clap_complete panics on a failed write (a closed pipe).
    fn completions(&self, shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
        let mut command = self.command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, self.name, &mut script);
        if shell == clap_complete::Shell::Bash {
            script = bash_states_agree(&script, self.name);
        }
        write_stdout(&script, "the completion script")
    }

    /// The program's page, or (with `dir`) one page per visible command written there.
    fn man_pages(&self, dir: Option<&Path>) -> anyhow::Result<ExitCode> {
        let mut command = self.command().disable_help_subcommand(true);
        command.build();
        let Some(dir) = dir else {
            let page = man_page(command).context("rendering the man page")?;
            return write_stdout(&page, "the man page");
        };
        let mut pages = vec![command.clone()];
        pages.extend(
            command
                .get_subcommands()
                .filter(|c| !c.is_hide_set())
                .cloned(),
        );
        for page in pages {
            let name = page
                .get_display_name()
                .unwrap_or(page.get_name())
                .to_string();
            let path = dir.join(format!("{name}.1"));
            let text = man_page(page).with_context(|| format!("rendering {name}(1)"))?;
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("{}", path.display());
        }
        Ok(ExitCode::SUCCESS)
    }

    fn validate(&self, path: &Path, print: bool) -> anyhow::Result<ExitCode> {
        let registry = (self.registry)();
        let loaded = config::load_file(path, &registry).and_then(|loaded| {
            crate::runtime::room::check_ring_room(&loaded.config, &registry)?;
            Ok(loaded)
        });
        match loaded {
            Ok(loaded) => {
                print_warnings(&loaded);
                if print {
                    print!("{}", loaded.config.to_yaml());
                } else {
                    println!("{}: ok", crate::text::path(path));
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(report) => {
                eprint!("{}: {report}", crate::text::path(path));
                Ok(ExitCode::from(EXIT_CONFIG))
            }
        }
    }

    fn generate(&self, lines: u64, seed: u64, output: Option<&Path>) -> anyhow::Result<ExitCode> {
        let Some(make) = self.generator else {
            eprintln!("error: {} has no line generator", self.name);
            return Ok(ExitCode::from(EXIT_USAGE));
        };
        let mut writer: Box<dyn Write> = match output {
            Some(path) => Box::new(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            ),
            None => Box::new(std::io::stdout().lock()),
        };
        let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut writer);
        let mut generator = make(lines, seed);
        let mut line = Vec::with_capacity(256);
        while generator.next_line(&mut line) {
            line.push(b'\n');
            out.write_all(&line).context("writing generated lines")?;
        }
        out.flush().context("flushing generated lines")?;
        Ok(ExitCode::SUCCESS)
    }
}

/// clap_complete's bash script names a subcommand's state one way in the loop that walks the
/// words (`stream__kernel__subcmd__run`: the name's hyphens as `__`) and another in the `case`
/// arms (`stream__subcmd__kernel__subcmd__run`), so nothing completes after a subcommand of a
/// program whose name has a hyphen (clap-rs/clap#6421). The arms are respelled the loop's way.
fn bash_states_agree(script: &[u8], name: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(script);
    if !name.contains('-') {
        return script.to_vec();
    }
    let arms = name.replace('-', "__subcmd__");
    let walked = name.replace('-', "__");
    text.replace(&format!("{arms}__subcmd__"), &format!("{walked}__subcmd__"))
        .into_bytes()
}

fn print_schema() -> anyhow::Result<ExitCode> {
    let schema = config::schema::config_schema();
    let text = serde_json::to_string_pretty(&schema).context("rendering the schema")?;
    write_stdout(format!("{text}\n").as_bytes(), "the schema")
}

/// One command's man page: name, synopsis, description, options, subcommands, and EXIT STATUS
/// (for the program and `run`) as a section of its own rather than clap_mangen's "EXTRA".
fn man_page(command: clap::Command) -> std::io::Result<Vec<u8>> {
    use clap_mangen::roff::{Roff, roman};
    let with_status = command.get_name() == "run" || command.get_after_help().is_some();
    let man = clap_mangen::Man::new(command.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if command.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if command.has_subcommands() {
        man.render_subcommands_section(&mut page)?;
    }
    if with_status {
        let mut roff = Roff::default();
        roff.control("SH", ["EXIT STATUS"]);
        for (status, meaning) in exit_statuses() {
            roff.control("TP", []);
            roff.text([roman(status)]);
            roff.text([roman(meaning)]);
        }
        roff.to_writer(&mut page)?;
    }
    if command.get_version().is_some() {
        man.render_version_section(&mut page)?;
    }
    Ok(page)
}

/// [`EXIT_CODES_HELP`] as (status, meaning) pairs (continuation lines joined).
fn exit_statuses() -> Vec<(String, String)> {
    let mut statuses: Vec<(String, String)> = Vec::new();
    for line in EXIT_CODES_HELP.lines().skip(1) {
        let text = line.trim();
        match text.split_once(char::is_whitespace) {
            Some((status, meaning)) if line.starts_with("  ") && !line.starts_with("   ") => {
                statuses.push((status.to_string(), meaning.trim().to_string()));
            }
            _ => {
                if let Some((_, meaning)) = statuses.last_mut() {
                    meaning.push(' ');
                    meaning.push_str(text);
                }
            }
        }
    }
    statuses
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

fn print_warnings(loaded: &LoadedConfig) {
    for warning in &loaded.warnings {
        eprintln!("{warning}");
    }
}
