//! The files a run reads and writes, checked against each other before anything is opened.
//!
//! Loading a config is pure; these checks look at the filesystem (and at where this process's
//! stdin and stdout point), so the runtimes call [`check_run_files`] right before they start,
//! after every override (`--input`, `--output`) is applied; the CLI adds the files only it
//! writes (`--report`) and reads (the config file) with [`check_run_files_with`]. Every path
//! the run writes — the sink's output, dead letters, audit, span and log files, reports, the
//! run journal — is refused, as a config error, when it:
//!
//! - is the input or the config file, compared by file identity (device and inode), so a
//!   link, `/dev/fd/N` or a shell redirection of stdin or stdout cannot hide it: writing
//!   would destroy what the run reads;
//! - is another of the run's outputs (their lines would interleave or overwrite each other),
//!   or a second data stream on stdout;
//! - is not a regular file: a FIFO (a report to a FIFO without a reader would hang the end of
//!   the run), a terminal, a socket or a directory. `/dev/null` is accepted, and stdout is
//!   named `-`;
//! - is locked by another run that is writing it;
//! - cannot be created (its directory is missing);
//! - is stdout while stdout is closed.
//!
//! Nothing is opened for writing here, so nothing is changed by a refused run.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::error::{ConfigErrorCode, ConfigPath, ConfigReport};
use super::model::{Config, LogExporter, SinkAdapter, SourceAdapter, TraceExporter};
use super::reader::Diagnostics;

/// A file's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

fn file_id(metadata: &std::fs::Metadata) -> FileId {
    FileId {
        dev: metadata.dev(),
        ino: metadata.ino(),
    }
}

/// Where one of the run's streams is.
#[derive(Debug, Clone)]
enum Place {
    Path(PathBuf),
    /// This process's stdin (fd 0) or stdout (fd 1).
    Stdin,
    Stdout,
}

impl Place {
    fn metadata(&self) -> Option<std::fs::Metadata> {
        match self {
            Self::Path(path) => std::fs::metadata(path).ok(),
            Self::Stdin => std::fs::metadata("/proc/self/fd/0").ok(),
            Self::Stdout => std::fs::metadata("/proc/self/fd/1").ok(),
        }
    }

    /// The identity of the regular file this names now, when it is one (a terminal or a
    /// pipe may well be both stdin and stdout of an interactive run).
    fn id(&self) -> Option<FileId> {
        self.metadata()
            .filter(|m| m.is_file())
            .as_ref()
            .map(file_id)
    }

    /// A path that does not exist yet, made absolute, to compare two new outputs.
    fn planned(&self) -> Option<PathBuf> {
        let Self::Path(path) = self else {
            return None;
        };
        Some(
            std::fs::canonicalize(parent_of(path))
                .ok()?
                .join(path.file_name()?),
        )
    }

    fn describe(&self) -> String {
        match self {
            Self::Path(path) => crate::text::path(path),
            Self::Stdin => "stdin".to_string(),
            Self::Stdout => "stdout".to_string(),
        }
    }
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// One file the run writes, with the config path (or flag) that names it.
struct Output {
    key: ConfigPath,
    what: &'static str,
    place: Place,
}

/// What the CLI adds to a run's own files.
#[derive(Debug, Clone, Default)]
pub struct ExtraRunFiles {
    /// Files the run only reads besides its input: the config file.
    pub reads: Vec<PathBuf>,
    /// Reports the run writes at its end (`--report`).
    pub reports: Vec<PathBuf>,
    /// The host this supervisor runs (`--host`) when the config places groups on hosts: only
    /// the files of this host's groups are this run's (the input where the source runs, the
    /// outputs where the sink runs).
    pub host: Option<String>,
}

fn runs_on(config: &Config, node: Option<&String>, host: Option<&str>) -> bool {
    node.is_none_or(|node| config.runs_on_host(node, host))
}

fn outputs_of(config: &Config, extra: &ExtraRunFiles) -> Vec<Output> {
    let mut outputs = Vec::new();
    let adapters = ConfigPath::parse("adapters");
    let writes_sink = runs_on(config, config.pipeline.nodes.last(), extra.host.as_deref());
    if writes_sink {
        record_outputs(config, &adapters, &mut outputs);
    }
    telemetry_outputs(config, &mut outputs);
    for (i, report) in extra.reports.iter().enumerate() {
        outputs.push(Output {
            key: ConfigPath::root().key("--report").index(i),
            what: "a run report",
            place: Place::Path(report.clone()),
        });
    }
    outputs
}

/// The sink's output, its journal, dead letters and audit.
fn record_outputs(config: &Config, adapters: &ConfigPath, outputs: &mut Vec<Output>) {
    outputs.push(Output {
        key: adapters.key("sink"),
        what: "the sink's output",
        place: match &config.adapters.sink {
            SinkAdapter::File { path } => Place::Path(path.clone()),
            SinkAdapter::Stdout => Place::Stdout,
        },
    });
    if let SinkAdapter::File { path } = &config.adapters.sink
        && config.runtime.journal.enabled
        && unusable(&Place::Path(path.clone())).is_none()
    {
        // Beside the sink's file: checked when that one is usable (else it says why).
        outputs.push(Output {
            key: ConfigPath::parse("runtime.journal"),
            what: "the run journal",
            place: Place::Path(crate::files::journal::Journal::path_for(path)),
        });
    }
    if let Some(dead_letter) = &config.adapters.dead_letter {
        outputs.push(Output {
            key: adapters.key("dead_letter"),
            what: "the dead-letter file",
            place: Place::Path(dead_letter.path().to_path_buf()),
        });
    }
    if let Some(audit) = &config.adapters.audit {
        outputs.push(Output {
            key: adapters.key("audit"),
            what: "the audit file",
            place: Place::Path(audit.path().to_path_buf()),
        });
    }
}

/// Span and log files, and their streams on stdout.
fn telemetry_outputs(config: &Config, outputs: &mut Vec<Output>) {
    let observability = ConfigPath::parse("runtime.observability");
    let tracing = &config.runtime.observability.tracing;
    if tracing.enabled {
        for (i, exporter) in tracing.exporters.iter().enumerate() {
            let key = observability.key("tracing").key("exporters").index(i);
            let place = match exporter {
                TraceExporter::Jsonl(settings) => Place::Path(settings.path.clone()),
                TraceExporter::Stdout => Place::Stdout,
                _ => continue,
            };
            outputs.push(Output {
                key,
                what: "a span exporter",
                place,
            });
        }
    }
    for (i, exporter) in config
        .runtime
        .observability
        .logging
        .exporters
        .iter()
        .enumerate()
    {
        let key = observability.key("logging").key("exporters").index(i);
        let place = match exporter {
            LogExporter::Jsonl { path } => Place::Path(path.clone()),
            LogExporter::Stdout => Place::Stdout,
            _ => continue,
        };
        outputs.push(Output {
            key,
            what: "a log exporter",
            place,
        });
    }
}

/// Checks the run's input and outputs against each other (see the module header); every
/// problem is a config error at the path of the output that causes it.
pub fn check_run_files(config: &Config) -> Result<(), ConfigReport> {
    check_run_files_with(config, &ExtraRunFiles::default())
}

/// [`check_run_files`] with the files the CLI adds: the config file it read, the reports it
/// will write.
pub fn check_run_files_with(config: &Config, extra: &ExtraRunFiles) -> Result<(), ConfigReport> {
    let mut diag = Diagnostics::default();
    // What the run reads: (as found, what writing it would destroy, identity).
    let mut reads: Vec<(String, &str, FileId)> = Vec::new();
    let reads_input = runs_on(config, config.pipeline.nodes.first(), extra.host.as_deref());
    let input = match &config.adapters.source {
        _ if !reads_input => None,
        SourceAdapter::File { path, .. } => Some(Place::Path(path.clone())),
        SourceAdapter::Stdin { .. } => Some(Place::Stdin),
        SourceAdapter::Generator { .. } => None,
    };
    if let Some(input) = &input
        && let Some(id) = input.id()
    {
        reads.push((
            format!("the input {}", input.describe()),
            "the input before it is read",
            id,
        ));
    }
    for path in &extra.reads {
        if let Some(metadata) = std::fs::metadata(path).ok().filter(|m| m.is_file()) {
            reads.push((
                format!("the config file {}", crate::text::path(path)),
                "the config file",
                file_id(&metadata),
            ));
        }
    }
    let outputs = outputs_of(config, extra);
    for (i, output) in outputs.iter().enumerate() {
        if let Some(problem) = unusable(&output.place) {
            diag.error(
                &output.key,
                ConfigErrorCode::UnusableFile,
                format!("a file {} can write", output.what),
                problem,
            );
            continue;
        }
        if let Some(id) = output.place.id()
            && let Some((read, destroyed, _)) = reads.iter().find(|(_, _, r)| *r == id)
        {
            diag.error(
                &output.key,
                ConfigErrorCode::SameFile,
                format!(
                    "a file other than what the run reads (writing {} would destroy {destroyed})",
                    output.what
                ),
                format!("{} is {read}", output.place.describe()),
            );
            continue;
        }
        let Some(earlier) = outputs[..i].iter().find(|other| same_output(other, output)) else {
            continue;
        };
        let expected = if matches!(output.place, Place::Stdout) {
            format!(
                "stdout for one data stream only ({} already writes stdout at `{}`); log to stderr or a file",
                earlier.what, earlier.key
            )
        } else {
            format!(
                "a file of its own ({} already writes it at `{}`)",
                earlier.what, earlier.key
            )
        };
        diag.error(
            &output.key,
            ConfigErrorCode::SameFile,
            expected,
            output.place.describe(),
        );
    }
    if diag.errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigReport {
            errors: diag.errors,
            warnings: Vec::new(),
        }
        .sorted())
    }
}

fn is_null_device(metadata: &std::fs::Metadata) -> bool {
    std::fs::metadata("/dev/null").is_ok_and(|null| file_id(&null) == file_id(metadata))
}

/// Why the run cannot write `place`, if it cannot.
fn unusable(place: &Place) -> Option<String> {
    let path = match place {
        Place::Stdout => {
            // A closed stdout would swallow every record: Rust's stdout ignores EBADF.
            let open = nix::fcntl::fcntl(
                // SAFETY: fd 1 is only inspected (F_GETFD), never closed or written here.
                unsafe { std::os::fd::BorrowedFd::borrow_raw(1) },
                nix::fcntl::FcntlArg::F_GETFD,
            )
            .is_ok();
            return (!open).then(|| "stdout, which is closed".to_string());
        }
        Place::Stdin => return None,
        Place::Path(path) => path,
    };
    let shown = crate::text::path(path);
    match std::fs::metadata(path) {
        Ok(metadata) if is_null_device(&metadata) => None,
        Ok(metadata) => {
            let kind = metadata.file_type();
            let other = if kind.is_dir() {
                Some("a directory")
            } else if kind.is_fifo() {
                Some("a FIFO (write to stdout with `-` and pipe it instead)")
            } else if kind.is_char_device() || kind.is_block_device() {
                Some("a device (only /dev/null is accepted)")
            } else if kind.is_socket() {
                Some("a socket")
            } else {
                None
            };
            if let Some(other) = other {
                return Some(format!("{shown}, which is {other}"));
            }
            locked_by_another_run(path).then(|| {
                format!("{shown}, which another run is writing (it is locked); wait for that run to end or choose another path")
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = parent_of(path);
            match std::fs::metadata(&parent) {
                Ok(m) if m.is_dir() => None,
                Ok(_) => Some(format!("{shown}, whose parent is not a directory")),
                Err(_) => Some(format!(
                    "{shown}, whose directory {} does not exist",
                    crate::text::path(&parent)
                )),
            }
        }
        Err(e) => Some(format!("{shown}, which cannot be inspected: {e}")),
    }
}

/// Whether another process holds the run lock on `path` (see [`crate::files::writer`]): a
/// shared lock on a read-only descriptor conflicts with its exclusive one, and is let go at
/// once.
fn locked_by_another_run(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    matches!(
        file.try_lock_shared(),
        Err(std::fs::TryLockError::WouldBlock)
    )
}

fn same_output(a: &Output, b: &Output) -> bool {
    match (&a.place, &b.place) {
        (Place::Stdout, Place::Stdout) => true,
        _ => match (a.place.id(), b.place.id()) {
            (Some(x), Some(y)) => x == y,
            _ => {
                a.place.metadata().is_none()
                    && a.place.planned().is_some()
                    && a.place.planned() == b.place.planned()
            }
        },
    }
}
