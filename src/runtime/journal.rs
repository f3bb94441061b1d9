//! Keeping a run's journal ([`crate::files::journal`]): when a run's sink writes a file, the
//! journal beside it is written before any output changes, advanced at completed records (at
//! most every `runtime.journal.interval_seconds`), and closed with the run's outcome.
//!
//! A completed record is one whose outputs are all handed to the operating system and whose
//! input position is known. The inline runtime has both at every flush (its source and its
//! sinks run on one thread); a supervised run's supervisor gets the source's positions and the
//! sink's lengths from two workers' heartbeats and pairs them by `seq`
//! ([`JournalKeeper::input`], [`JournalKeeper::outputs_at`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{Config, SinkAdapter, SourceAdapter};
use crate::files::journal::{
    Checkpoint, Completed, InputIdentity, Journal, JournalError, OutputLength, RunState,
};
use crate::graph::Registry;

/// Input positions held while waiting for the sink's lengths at the same record: enough for
/// the records in flight between source and sink in any pipeline this engine runs.
const MAX_PENDING_INPUTS: usize = 100_000;

/// The journal of one run, and when it was last written.
#[derive(Debug)]
pub struct JournalKeeper {
    path: PathBuf,
    journal: Journal,
    interval: Duration,
    last_write: Instant,
    dirty: bool,
    /// Input positions of records whose output lengths have not arrived yet, by `seq`.
    pending_inputs: BTreeMap<u64, Checkpoint>,
    /// The latest output lengths whose input position has not arrived yet.
    pending_outputs: Option<(u64, Vec<OutputLength>)>,
    /// A write failed and was reported: later failures are not reported again.
    failed_once: bool,
    /// The source runs on another host (the downstream host of a cross-host run): output
    /// lengths complete records without an input position.
    inputs_elsewhere: bool,
}

/// The journal path of a config's run: beside the sink's file, when the pipeline's last node
/// writes it ([`crate::graph::NodeFactory::writes_sink_file`]); `None` for stdout, for a
/// pipeline that writes no file, or when `runtime.journal.enabled` is off.
pub fn journal_path(config: &Config, registry: &Registry) -> Option<PathBuf> {
    let writes_file = config
        .pipeline
        .nodes
        .last()
        .and_then(|last| registry.get(last))
        .is_some_and(|factory| factory.is_sink_file_writer());
    match &config.adapters.sink {
        SinkAdapter::File { path } if config.runtime.journal.enabled && writes_file => {
            Some(Journal::path_for(path))
        }
        _ => None,
    }
}

/// What the run reads, for its journal.
pub fn input_identity(config: &Config) -> InputIdentity {
    match &config.adapters.source {
        SourceAdapter::File { path, .. } => {
            InputIdentity::of_file(&path.display().to_string(), path)
        }
        SourceAdapter::Stdin { .. } => InputIdentity::named("stdin"),
        SourceAdapter::Generator { lines, seed } => {
            InputIdentity::named(&format!("generator(lines={lines}, seed={seed})"))
        }
    }
}

impl JournalKeeper {
    /// Starts keeping the journal at `path`: a fresh run's (nothing completed), or the one a
    /// resumed run continues. The journal is written at once, before any output changes.
    pub fn start(
        config: &Config,
        path: &Path,
        run_id: String,
        resumed: Option<Journal>,
    ) -> Result<Self, JournalError> {
        let journal = match resumed {
            Some(mut journal) => {
                journal.state = RunState::Running;
                journal.outcome.clear();
                journal
            }
            None => Journal::new(run_id, config.output_digest(), input_identity(config)),
        };
        let mut keeper = Self {
            path: path.to_path_buf(),
            journal,
            interval: Duration::from_secs_f64(config.runtime.journal.interval_seconds),
            last_write: Instant::now(),
            dirty: false,
            pending_inputs: BTreeMap::new(),
            pending_outputs: None,
            failed_once: false,
            inputs_elsewhere: false,
        };
        keeper.journal.write(&keeper.path)?;
        Ok(keeper)
    }

    /// The source runs on another host: the outputs' lengths alone complete a record (a
    /// resumed downstream host replays its records from the stream, not from an input).
    pub fn with_inputs_elsewhere(mut self) -> Self {
        self.inputs_elsewhere = true;
        self
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last completed record.
    pub fn completed_seq(&self) -> u64 {
        self.journal.completed.seq
    }

    /// The source passed input position `at` (its outputs' lengths may come later).
    pub fn input(&mut self, at: Checkpoint) {
        if at.seq <= self.journal.completed.seq {
            return;
        }
        if at.digest.is_some() {
            self.journal.add_checkpoint(at);
        }
        self.pending_inputs.insert(at.seq, at);
        while self.pending_inputs.len() > MAX_PENDING_INPUTS {
            self.pending_inputs.pop_first();
        }
        if let Some((seq, outputs)) = self.pending_outputs.take_if(|(seq, _)| *seq == at.seq) {
            self.outputs_at(seq, outputs);
        }
    }

    /// Every output holds exactly `outputs` for the records through `seq`: when the input
    /// position of `seq` is known, `seq` is completed.
    pub fn outputs_at(&mut self, seq: u64, outputs: Vec<OutputLength>) {
        if seq <= self.journal.completed.seq {
            return;
        }
        if self.inputs_elsewhere {
            self.pending_inputs.insert(
                seq,
                Checkpoint {
                    seq,
                    bytes: 0,
                    digest: None,
                },
            );
        }
        let Some(at) = self.pending_inputs.get(&seq).copied() else {
            // The source's position may come later (the workers report independently).
            if self.pending_outputs.as_ref().is_none_or(|(s, _)| *s < seq) {
                self.pending_outputs = Some((seq, outputs));
            }
            return;
        };
        self.pending_inputs = self.pending_inputs.split_off(&seq);
        self.journal.completed = Completed {
            seq,
            input_bytes: at.bytes,
            input_digest: at.digest,
            outputs,
        };
        self.dirty = true;
        self.write_when_due();
    }

    /// Record `at.seq` is completed with these output lengths (both known at once).
    pub fn completed(&mut self, at: Checkpoint, outputs: Vec<OutputLength>) {
        self.input(at);
        self.outputs_at(at.seq, outputs);
    }

    /// Writes the journal if a completed record is waiting and the interval has passed
    /// (a supervisor calls it from its loop, so a completion is written without waiting for
    /// the next one).
    pub fn tick(&mut self) {
        self.write_when_due();
    }

    fn write_when_due(&mut self) {
        if self.dirty && self.last_write.elapsed() >= self.interval {
            self.write_now();
        }
    }

    fn write_now(&mut self) -> bool {
        self.last_write = Instant::now();
        match self.journal.write(&self.path) {
            Ok(()) => {
                self.dirty = false;
                true
            }
            Err(e) => {
                if !self.failed_once {
                    tracing::warn!(
                        worker_id = "supervisor",
                        "{e}: the journal keeps its last update (a resume redoes more records)"
                    );
                    self.failed_once = true;
                }
                false
            }
        }
    }

    /// Closes the journal with the run's outcome (written at once).
    pub fn finish(&mut self, state: RunState, outcome: &str) -> Result<(), JournalError> {
        self.journal.state = state;
        self.journal.outcome = outcome.to_string();
        self.last_write = Instant::now();
        self.journal.write(&self.path)?;
        self.dirty = false;
        Ok(())
    }
}

/// How a run starts, given its journal and the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeChoice {
    /// From the start: outputs are replaced, a fresh journal is written.
    Fresh,
    /// After `plan.after`, continuing `journal` when there is one.
    Resume {
        /// What the run replays and checks.
        plan: super::resume::ResumePlan,
        /// The journal it continues.
        journal: Option<Journal>,
    },
    /// The journal says the run is complete: nothing to do.
    Complete {
        /// The journal's file.
        path: PathBuf,
        /// The journal.
        journal: Journal,
    },
}

/// A resume that cannot start; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ResumeStartError {
    /// `--resume` without a journal, on outputs that already hold something.
    #[error(
        "--resume: there is no run journal {journal} to resume from, and the output {output} is not empty; rerun from the start (without --resume), or use --skip N with the point the stopped run reported"
    )]
    NoJournal {
        /// Where the journal would be.
        journal: PathBuf,
        /// The output.
        output: PathBuf,
    },
    /// `--resume` on a run whose sink is not a file (stdout cannot be resumed).
    #[error(
        "--resume needs the sink to write a file (adapters.sink), with its run journal beside it"
    )]
    NotAFile,
    /// The journal could not be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The journal was written by a run of another pipeline.
    #[error(
        "the run journal {journal} was written by a run of another pipeline (its nodes, their settings, the error policy or the side files differ): resume with the config it was written with, or rerun from the start"
    )]
    ConfigChanged {
        /// The journal's file.
        journal: PathBuf,
    },
    /// An output the journal records is missing or shorter than recorded.
    #[error(
        "{path} holds {found} bytes, but the run journal {journal} recorded {recorded} at record {seq}: it is not the output of the run being resumed; rerun from the start"
    )]
    OutputShorter {
        /// The output.
        path: String,
        /// Its length now.
        found: u64,
        /// The length recorded.
        recorded: u64,
        /// The completed record.
        seq: u64,
        /// The journal's file.
        journal: PathBuf,
    },
    /// The run writes other files than the run being resumed.
    #[error(
        "the run being resumed wrote {recorded}, this run writes {now}: resume with the same output, dead-letter and audit files, or rerun from the start"
    )]
    OutputsDiffer {
        /// The journal's outputs.
        recorded: String,
        /// This run's.
        now: String,
    },
    /// `--skip N` below what the journal says is complete.
    #[error(
        "--skip {skip}: the run journal {journal} says records 1 to {completed} are complete; skipping fewer would write them twice (use --resume, or --skip {completed})"
    )]
    SkipBelowJournal {
        /// The `--skip` given.
        skip: u64,
        /// The journal's completed record.
        completed: u64,
        /// The journal's file.
        journal: PathBuf,
    },
}

/// The files a config's run writes, as paths (sink, dead letters, audit).
fn output_files(config: &Config) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let SinkAdapter::File { path } = &config.adapters.sink {
        files.push(path.clone());
    }
    files.extend(
        config
            .adapters
            .dead_letter
            .iter()
            .map(|a| a.path().to_path_buf()),
    );
    files.extend(config.adapters.audit.iter().map(|a| a.path().to_path_buf()));
    files
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::path::absolute(a), std::path::absolute(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Decides how a run starts: `resume` is `--resume`, `skip` is `--skip N` (0: none), `host`
/// is `--host` (a host that does not write the sink's file keeps no journal: `--resume` there
/// starts its groups afresh, and the hand-off between hosts takes each record once).
///
/// - `--resume` continues the run the journal beside the sink's file describes: after its
///   completed record, with its outputs checked (each at least as long as recorded) and its
///   input positions to check; a complete journal is a no-op; no journal on empty or missing
///   outputs starts fresh (so that a retried job can always say `--resume`).
/// - `--skip N` resumes after record N; with a journal, its input positions are checked too
///   (and N may not be below its completed record).
/// - Neither: a fresh run.
pub fn choose_resume(
    config: &Config,
    registry: &Registry,
    resume: bool,
    skip: u64,
    host: Option<&str>,
) -> Result<ResumeChoice, ResumeStartError> {
    let path = journal_path(config, registry);
    if !resume && skip == 0 {
        return Ok(ResumeChoice::Fresh);
    }
    let writes_sink = config
        .pipeline
        .nodes
        .last()
        .is_none_or(|last| config.runs_on_host(last, host));
    if resume && !writes_sink {
        return Ok(ResumeChoice::Fresh);
    }
    let journal = match &path {
        Some(path) => Journal::read(path)?,
        None if resume => return Err(ResumeStartError::NotAFile),
        None => None,
    };
    let (Some(path), Some(journal)) = (path, journal) else {
        if !resume {
            return Ok(ResumeChoice::Resume {
                plan: super::resume::ResumePlan::after(skip),
                journal: None,
            });
        }
        let written = output_files(config)
            .into_iter()
            .find(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0));
        return match written {
            None => Ok(ResumeChoice::Fresh),
            Some(output) => Err(ResumeStartError::NoJournal {
                journal: Journal::path_for(&output),
                output,
            }),
        };
    };
    if journal.config_digest != config.output_digest() {
        return Err(ResumeStartError::ConfigChanged { journal: path });
    }
    if resume && journal.state == crate::files::journal::RunState::Complete {
        return Ok(ResumeChoice::Complete { path, journal });
    }
    check_outputs(config, &path, &journal)?;
    let completed = &journal.completed;
    let after = if resume { completed.seq } else { skip };
    if after < completed.seq {
        return Err(ResumeStartError::SkipBelowJournal {
            skip,
            completed: completed.seq,
            journal: path,
        });
    }
    let output_lengths = if after == completed.seq {
        completed
            .outputs
            .iter()
            .map(|o| (o.key.clone(), o.bytes))
            .collect()
    } else {
        BTreeMap::new()
    };
    let plan = super::resume::ResumePlan {
        after,
        output_lengths,
        input_positions: journal.expected_positions(),
    };
    Ok(ResumeChoice::Resume {
        plan,
        journal: Some(journal),
    })
}

/// The journal's outputs must be this run's outputs, each at least as long as recorded.
fn check_outputs(config: &Config, path: &Path, journal: &Journal) -> Result<(), ResumeStartError> {
    let now = output_files(config);
    let recorded: Vec<&OutputLength> = journal.completed.outputs.iter().collect();
    let listed = |paths: &mut dyn Iterator<Item = String>| paths.collect::<Vec<_>>().join(", ");
    let differs = recorded.len() != now.len()
        || recorded
            .iter()
            .any(|o| !now.iter().any(|f| same_file(Path::new(&o.path), f)));
    if journal.completed.seq > 0 && differs {
        return Err(ResumeStartError::OutputsDiffer {
            recorded: listed(&mut recorded.iter().map(|o| o.path.clone())),
            now: listed(&mut now.iter().map(|f| f.display().to_string())),
        });
    }
    for output in recorded {
        let found = std::fs::metadata(&output.path).map_or(0, |m| m.len());
        if found < output.bytes {
            return Err(ResumeStartError::OutputShorter {
                path: output.path.clone(),
                found,
                recorded: output.bytes,
                seq: journal.completed.seq,
                journal: path.to_path_buf(),
            });
        }
    }
    Ok(())
}
