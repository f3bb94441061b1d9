//! The files a run reads and writes, checked against each other before anything is opened.
//!
//! Loading a config is pure; these checks look at the filesystem (and at where this process's
//! stdin and stdout point), so the runtimes call [`check_run_files`] right before they start,
//! after every override (`--input`, `--output`) is applied. They refuse, as config errors:
//!
//! - an output (sink, dead letters, audit, span or log file) that is the input, compared by
//!   file identity (device and inode), so a link, `/dev/fd/N` or a shell redirection of stdin
//!   or stdout cannot hide it: writing would truncate the input before it is read;
//! - two outputs that are the same file (their lines would interleave);
//! - two data streams on stdout (the sink and a span exporter, or a log exporter).
//!
//! Only regular files are compared: two outputs may both be `/dev/null`.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::error::{ConfigErrorCode, ConfigPath, ConfigReport};
use super::model::{Config, LogExporter, SinkAdapter, SourceAdapter, TraceExporter};
use super::reader::Diagnostics;

/// A regular file's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

fn regular_file_id(metadata: std::io::Result<std::fs::Metadata>) -> Option<FileId> {
    let metadata = metadata.ok()?;
    metadata.is_file().then(|| FileId {
        dev: metadata.dev(),
        ino: metadata.ino(),
    })
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
    fn id(&self) -> Option<FileId> {
        match self {
            Self::Path(path) => regular_file_id(std::fs::metadata(path)),
            Self::Stdin => regular_file_id(std::fs::metadata("/proc/self/fd/0")),
            Self::Stdout => regular_file_id(std::fs::metadata("/proc/self/fd/1")),
        }
    }

    /// A path that does not exist yet, made absolute, to compare two new outputs.
    fn planned(&self) -> Option<PathBuf> {
        let Self::Path(path) = self else {
            return None;
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Some(std::fs::canonicalize(parent).ok()?.join(path.file_name()?))
    }

    fn describe(&self) -> String {
        match self {
            Self::Path(path) => path.display().to_string(),
            Self::Stdin => "stdin".to_string(),
            Self::Stdout => "stdout".to_string(),
        }
    }
}

/// One output of the run, with the config path that names it.
struct Output {
    key: ConfigPath,
    what: &'static str,
    place: Place,
}

fn outputs_of(config: &Config) -> Vec<Output> {
    let mut outputs = Vec::new();
    let adapters = ConfigPath::parse("adapters");
    outputs.push(Output {
        key: adapters.key("sink"),
        what: "the sink's output",
        place: match &config.adapters.sink {
            SinkAdapter::File { path } => Place::Path(path.clone()),
            SinkAdapter::Stdout => Place::Stdout,
        },
    });
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
    outputs
}

/// Checks the run's input and outputs against each other (see the module header); every
/// problem is a config error at the path of the output that causes it.
pub fn check_run_files(config: &Config) -> Result<(), ConfigReport> {
    let mut diag = Diagnostics::default();
    let input = match &config.adapters.source {
        SourceAdapter::File { path } => Some(Place::Path(path.clone())),
        SourceAdapter::Stdin => Some(Place::Stdin),
        SourceAdapter::Generator { .. } => None,
    };
    let input_id = input.as_ref().and_then(Place::id);
    let outputs = outputs_of(config);
    for (i, output) in outputs.iter().enumerate() {
        let id = output.place.id();
        if let (Some(input), Some(input_id), Some(id)) = (&input, input_id, id)
            && id == input_id
        {
            diag.error(
                &output.key,
                ConfigErrorCode::SameFile,
                format!(
                    "an output other than the input (writing {} would destroy the input before it is read)",
                    output.what
                ),
                format!("{} is the input {}", output.place.describe(), input.describe()),
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

fn same_output(a: &Output, b: &Output) -> bool {
    match (&a.place, &b.place) {
        (Place::Stdout, Place::Stdout) => true,
        _ => match (a.place.id(), b.place.id()) {
            (Some(x), Some(y)) => x == y,
            _ => {
                a.place.planned().is_some()
                    && a.place.planned() == b.place.planned()
                    && !is_device(&a.place)
            }
        },
    }
}

/// `/dev/null` and other non-regular files may be shared by outputs.
fn is_device(place: &Place) -> bool {
    match place {
        Place::Path(path) => std::fs::metadata(path).is_ok_and(|m| !m.is_file()),
        _ => false,
    }
}
